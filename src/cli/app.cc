#include "kload/cli/app.h"

#include "kload/cli/commands.h"
#include "kload/cli/completion.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/cli/kind_dropin.h"
#include "kload/util/parallel.h"
#include "kload/util/text.h"
#include "kload/util/temp_dir.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <csignal>
#include <cstdio>

namespace kload::cli {

int exit_code_for(const util::Error& error) {
  switch (error.kind) {
  case util::ErrorKind::bad_input:
  case util::ErrorKind::usage:
    return exit_bad_input;
  case util::ErrorKind::node:
    return exit_node_failure;
  case util::ErrorKind::io:
    return exit_local_failure;
  case util::ErrorKind::interrupted: {
    const int signal = util::cancelled_by();
    return 128 + (signal != 0 ? signal : SIGINT);
  }
  }
  return exit_node_failure;
}

namespace {

std::optional<format::Platform> parse_platform(const std::string& text) {
  if (text.empty()) {
    return std::nullopt;
  }
  auto p = format::Platform::parse(text);
  if (!p) {
    throw CLI::ValidationError("--platform", "expected OS/ARCH[/VARIANT], e.g. linux/amd64");
  }
  return p;
}

// Which nodes, and how many at once: the options of every command that talks to
// nodes, registered once.
void add_node_options(CLI::App* cmd, TargetOptions& target, unsigned& jobs, const std::string& jobs_help) {
  auto* node =
      cmd->add_option("-n,--node", target.nodes,
                      "A node: docker://CONTAINER, podman://CONTAINER, containerd:///path/to.sock or\n"
                      "ssh://[user@]host[:port];\n"
                      "add ?namespace=NS (default k8s.io) or &snapshotter=S (default: the node's).\n"
                      "Repeatable. Without --node: the URIs in $KLOAD_NODES (separated by spaces or\n"
                      "newlines) unless --name or --nodes is given, else the nodes of the kind cluster --name");
  auto* name = cmd->add_option("--name", target.cluster,
                               "The cluster whose nodes to use: one of the config file's clusters, else a kind\n"
                               "cluster (its node containers, found with docker ps, or podman ps when\n"
                               "$KIND_EXPERIMENTAL_PROVIDER=podman, less the external load balancer).\n"
                               "Default: the config's default, else \"kind\", like kind's --name");
  auto* picks = cmd->add_option("--nodes", target.kind_nodes,
                                "Only these nodes of the cluster, by name (a kind node's container name): a,b")
                    ->delimiter(',');
  auto* config = cmd->add_option("--config", target.config,
                                 "The config file naming clusters and their nodes (default $KLOAD_CONFIG, else\n"
                                 "$XDG_CONFIG_HOME/kload/config.toml, else ~/.config/kload/config.toml)");
  node->excludes(name);
  node->excludes(picks);
  node->excludes(config);
  cmd->add_option("-j,--jobs", jobs, jobs_help)->check(CLI::Range(1u, 256u));
}

// Which inventory cache, or none: --cache and --no-cache.
void add_cache_options(CLI::App* cmd, TargetOptions& target) {
  cmd->add_option("--cache", target.cache_dir,
                  "Inventory cache directory (default $KLOAD_CACHE, else $XDG_CACHE_HOME/kload,\n"
                  "else ~/.cache/kload)");
  cmd->add_flag("--no-cache", target.no_cache, "Ask every node afresh; remember nothing");
}

// The options of every command that loads into nodes (TargetOptions), registered
// once; --platform and --json say what is particular to the command.
void add_target_options(CLI::App* cmd, TargetOptions& target, unsigned& jobs, std::string& platform_text,
                        const std::string& platform_help, const std::string& json_help) {
  add_node_options(cmd, target, jobs,
                   "Serve at most this many nodes at once (default 8, or the number of cores if\n"
                   "more); hashing uses at most one thread per core");
  cmd->add_option("--platform", platform_text, platform_help);
  cmd->add_flag("--dry-run", target.dry_run, "Show what each node would get; change nothing");
  cmd->add_flag("--json", target.json, json_help);
  cmd->add_flag_callback(
      "--no-lint", [&target] { target.lint = Lint::off; },
      "Do not warn about images that will crash-loop (a daemon forking away, no command)");
  cmd->add_option("--wire-compression", target.wire,
                  "zstd (default): compress the stream to ssh nodes that have zstd on their PATH;\n"
                  "none: send it as it is. Nodes on this machine never get it compressed")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, node::WireCompression>{{"none", node::WireCompression::none},
                                                       {"zstd", node::WireCompression::zstd}},
          CLI::ignore_case));
  add_cache_options(cmd, target);
}

// A load through a registry: --via and what goes with it, registered once.
void add_via_options(CLI::App* cmd, ViaOptions& via) {
  cmd->add_option("--via", via.registry,
                  "HOST[:PORT][/PREFIX]: push the images the nodes lack to this registry (only the\n"
                  "blobs it lacks, once), and have each node pull them with its own containerd (only\n"
                  "the layers it lacks) instead of receiving them from here. Names as for push");
  cmd->add_option("--via-pull-address", via.pull_address,
                  "HOST[:PORT]: the --via registry as the nodes reach it, when that differs from\n"
                  "where kload pushes (kind's local registry: --via localhost:5001\n"
                  "--via-pull-address kind-registry:5000)");
  cmd->add_flag("--plain-http", via.plain_http, "With --via: speak plain HTTP to the registry (push and pulls)");
  cmd->add_option("--creds", via.creds,
                  "With --via: USER:PASSWORD for the push (default as for push); the nodes pull\n"
                  "without credentials");
}

// What a load says on stderr: -q and -v, registered once.
void add_verbosity_options(CLI::App* cmd, bool& quiet, bool& verbose) {
  auto* q = cmd->add_flag("-q,--quiet", quiet,
                          "Print only errors on stderr (failed nodes, error lines): no progress, no other lines");
  auto* v = cmd->add_flag("-v,--verbose", verbose,
                          "Also print every command run on a node: the command (cut to fit a terminal),\n"
                          "its duration in ms and its exit status (a batch's: each command's)");
  q->excludes(v);
}

Verbosity verbosity_of(bool quiet, bool verbose) {
  return quiet ? Verbosity::quiet : verbose ? Verbosity::verbose : Verbosity::normal;
}

// Completes `target` once parsed. Throws CLI::ValidationError: a bad --platform.
void finish_target_options(CLI::App* cmd, TargetOptions& target, unsigned jobs, const std::string& platform_text) {
  target.platform = parse_platform(platform_text);
  // Serving a node is mostly waiting on it, so more nodes than cores run at once.
  target.jobs = cmd->count("--jobs") > 0 ? jobs : std::max(8u, jobs);
}
// Every command's options, filled in by parsing.
struct Commands {
  unsigned jobs = util::default_jobs();
  std::string platform_text;
  bool quiet = false;    // -q of image-archive and docker-image
  bool verbose = false;  // -v of image-archive and docker-image
  InspectOptions inspect;
  LoadCommandOptions archive;
  DockerImageOptions docker;
  CacheCommandOptions cache;
  NodeImagesOptions ls;
  NodeImagesOptions rm;
  TargetOptions prune;
  PushCommandOptions push;
  CLI::App* inspect_cmd = nullptr;
  CLI::App* archive_cmd = nullptr;
  CLI::App* docker_cmd = nullptr;
  CLI::App* cache_cmd = nullptr;
  CLI::App* ls_cmd = nullptr;
  CLI::App* rm_cmd = nullptr;
  CLI::App* prune_cmd = nullptr;
  CLI::App* push_cmd = nullptr;
  std::string help_topic;
  std::string shell;
  CLI::App* help_cmd = nullptr;
  CLI::App* version_cmd = nullptr;
  CLI::App* completion_cmd = nullptr;
};

void add_inspect(CLI::App& app, Commands& c) {
  c.inspect_cmd = app.add_subcommand("inspect", "Show the images in archives: names, IDs, layers, sharing, warnings");
  c.inspect_cmd->add_option("archive", c.inspect.archives,
                            "Image archives (docker save, skopeo, OCI; plain, gzip, zstd or xz; '-' for stdin)")
      ->required();
  auto* cmd = c.inspect_cmd;
  cmd->add_flag("--verify", c.inspect.verify, "Hash every blob (in parallel) and check every digest");
  cmd->add_flag("--json", c.inspect.json, "Print a JSON document (schema kload.inspect/v1) on stdout");
  cmd->add_option("--platform", c.platform_text, "Only this platform, e.g. linux/arm64");
  cmd->add_option("-j,--jobs", c.jobs, "Hash with at most this many threads")->check(CLI::Range(1u, 256u));
  cmd->footer("Example:\n  docker save app:dev | kload inspect --verify -");
}

void add_image_archive(CLI::App& app, Commands& c) {
  c.archive_cmd = app.add_subcommand(
      "image-archive", "Load images from archives into nodes, sending each node only the layers it lacks");
  c.archive_cmd->add_option("archive", c.archive.archives,
                            "Image archives (docker save, skopeo, OCI; plain, gzip, zstd or xz; '-' for stdin)")
      ->required();
  add_target_options(c.archive_cmd, c.archive.target, c.jobs, c.platform_text,
                     "Load this platform of multi-platform images (default: the host's)",
                     "Print a JSON report (schema kload.load/v2, docs/json.md) on stdout");
  add_verbosity_options(c.archive_cmd, c.quiet, c.verbose);
  add_via_options(c.archive_cmd, c.archive.target.via);
  c.archive_cmd->add_option("--name-as", c.archive.name_as,
                            "NAME[:TAG] for every image that has no name (saved by ID; an OCI ref name that is\n"
                            "only a tag); without it such an image is an error");
  c.archive_cmd->footer("Examples:\n"
                        "  kload image-archive app.tar                   # every node of kind cluster \"kind\"\n"
                        "  kload image-archive app.tar --name dev        # every node of cluster \"dev\"\n"
                        "  kload image-archive app.tar --name dev --nodes dev-worker,dev-worker2\n"
                        "  docker save app:dev | kload image-archive - --name dev\n"
                        "  kload image-archive app.tar --node containerd:///run/containerd/containerd.sock\n"
                        "  kload image-archive app.tar --node docker://kind-worker --node ssh://root@10.0.0.5\n"
                        "  kload image-archive oci.tar --name-as app:dev   # an image saved without a name\n"
                        "Each image is imported under a private staging name and its real names are set only\n"
                        "once it is complete, so a failed load never leaves a name on a broken image.");
}

void add_docker_image(CLI::App& app, Commands& c) {
  c.docker_cmd = app.add_subcommand(
      "docker-image", "Load images from the local Docker engine; docker save runs only if some node lacks them");
  c.docker_cmd->add_option("image", c.docker.images, "Images by name, as Docker knows them: app:dev, "
                                                     "registry.example.com/team/app:v1")
      ->required();
  add_target_options(c.docker_cmd, c.docker.target, c.jobs, c.platform_text,
                     "Load this platform (default: the host's; with Docker's containerd image store a\n"
                     "saved multi-platform image holds only the platforms that were pulled)",
                     "Print a JSON report (schema kload.load/v2, plus \"dockerSaved\") on stdout");
  add_verbosity_options(c.docker_cmd, c.quiet, c.verbose);
  add_via_options(c.docker_cmd, c.docker.target.via);
  c.docker_cmd->add_flag("--watch", c.docker.watch,
                         "Then follow Docker's image events and load again whenever an image's ID changes\n"
                         "(a rebuild), one line per reload: the build-and-reload loop. Ctrl-C ends it");
  c.docker_cmd->footer(
      "Examples:\n"
      "  kload docker-image app:dev                          # every node of kind cluster \"kind\"\n"
      "  kload docker-image app:dev --watch                  # and after every docker build\n"
      "  kload docker-image app:dev sidecar:dev --name dev   # every node of cluster \"dev\"\n"
      "  kload docker-image app:dev --name dev --nodes dev-worker,dev-worker2\n"
      "  kload docker-image app:dev --node docker://kind-worker --dry-run --json\n"
      "First 'docker image inspect' (one call) and one round trip per node (a check of its\n"
      "names, which the load then starts from): a node whose names already point at the\n"
      "images, complete, is done. Only if some node lacks an\n"
      "image does 'docker save' run, once, for the images lacked; its stream is read once and\n"
      "each of those nodes gets only the layers it lacks. Both Docker image stores work: the\n"
      "classic one and the containerd one (whose image ID is a manifest or index digest, and\n"
      "whose saves list platforms they do not hold: the host's, or --platform, is loaded).");
}

constexpr std::array<const char*, 4> cache_actions{"ls", "stats", "forget", "refresh"};
constexpr std::array<const char*, 3> shells{"bash", "zsh", "fish"};

void add_cache(CLI::App& app, Commands& c) {
  c.cache_cmd = app.add_subcommand("cache", "Show or prune what kload remembers about nodes");
  c.cache_cmd->add_option("action", c.cache.action,
                          "ls: what each node holds; stats: size and counts; forget: drop nodes (all when no\n"
                          "--node) and with --inputs the input-file records; refresh: list nodes again")
      ->required()
      ->check(CLI::IsMember(std::vector<std::string>(cache_actions.begin(), cache_actions.end())));
  c.cache_cmd->add_option("-n,--node", c.cache.nodes,
                          "Only this node: its URI, or its name as loads show it (kind-worker, a host);\n"
                          "repeatable");
  c.cache_cmd->add_flag("--inputs", c.cache.inputs,
                        "forget: forget which input blobs were verified (with --node: those nodes too)");
  c.cache_cmd->add_flag("--yes", c.cache.yes, "forget: forget every node without asking");
  c.cache_cmd->add_flag("--json", c.cache.json,
                        "ls, stats: print a JSON document (schema kload.cache-ls/v1, kload.cache-stats/v1)");
  c.cache_cmd->add_option("--cache", c.cache.cache_dir, "Cache directory (as for image-archive)");
}

constexpr const char* nodes_jobs_help =
    "Ask at most this many nodes at once (default 8, or the number of cores if more)";

void add_ls(CLI::App& app, Commands& c) {
  c.ls_cmd = app.add_subcommand("ls", "Show which image names each node holds, asking the nodes themselves");
  c.ls_cmd->add_option("image", c.ls.images, "Only these names (app:dev is docker.io/library/app:dev)");
  add_node_options(c.ls_cmd, c.ls.target, c.jobs, nodes_jobs_help);
  c.ls_cmd->add_flag("--json", c.ls.target.json, "Print a JSON document (schema kload.ls/v2) on stdout");
  c.ls_cmd->add_flag_callback(
      "--layers", [&c] { c.ls.layers = load::Layers::shown; },
      "Also list each image's layers: how many of the names shown share each, which\nnode holds it (the same round trip lists each node's content)");
  c.ls_cmd->footer(
      "Examples:\n"
      "  kload ls                          # every name on the nodes of kind cluster \"kind\"\n"
      "  kload ls app:dev --name dev       # one image on the nodes of cluster \"dev\"\n"
      "  kload ls --node docker://kind-worker --json\n"
      "A cell is the first 12 hex digits of the manifest (or index) the name points at on\n"
      "that node, then \"*\" when the image is incomplete there (a blob is missing) or \"!\"\n"
      "when the nodes disagree on the target; \"-\": the name is not there. Without IMAGE:\n"
      "every name but kload's staging names and CRI's own sha256:<ID> references. A table\n"
      "wider than 80 columns (many nodes, long names) becomes one block per node, with the\n"
      "state in words: present, missing, incomplete or different. One 'ctr images check'\n"
      "per node, in parallel; the cache is not read.");
}

void add_rm(CLI::App& app, Commands& c) {
  c.rm_cmd = app.add_subcommand("rm", "Remove image names from nodes");
  c.rm_cmd->add_option("image", c.rm.images, "The names to remove (app:dev is docker.io/library/app:dev)")
      ->required();
  add_node_options(c.rm_cmd, c.rm.target, c.jobs, nodes_jobs_help);
  c.rm_cmd->add_flag("--dry-run", c.rm.target.dry_run, "Show what each node would lose; change nothing");
  c.rm_cmd->add_flag("--json", c.rm.target.json, "Print a JSON report (schema kload.rm/v2) on stdout");
  add_cache_options(c.rm_cmd, c.rm.target);
  c.rm_cmd->footer(
      "Examples:\n"
      "  kload rm app:dev                          # from the nodes of kind cluster \"kind\"\n"
      "  kload rm app:dev app:old --name dev --dry-run\n"
      "  kload rm registry.example.com/team/app:v1 --node docker://kind-worker\n"
      "Names are normalised as for loading, and only a name equal to one of them is\n"
      "removed. A name that is not on a node is reported, not an error. Each node is\n"
      "checked again afterwards: a name still there fails that node. As 'ctr images rm',\n"
      "it removes names: containerd collects the content once no name holds it. On a\n"
      "node with CRI (kind's), CRI's own sha256:<ID> reference keeps the image until the\n"
      "kubelet's image garbage collection or 'crictl rmi' removes it.");
}

void add_prune(CLI::App& app, Commands& c) {
  c.prune_cmd = app.add_subcommand("prune", "Remove what kload left behind on nodes and in its cache");
  add_node_options(c.prune_cmd, c.prune, c.jobs, nodes_jobs_help);
  c.prune_cmd->add_flag("--dry-run", c.prune.dry_run, "Show what would go; change nothing");
  add_cache_options(c.prune_cmd, c.prune);
  c.prune_cmd->footer(
      "Examples:\n"
      "  kload prune                       # the nodes of kind cluster \"kind\"\n"
      "  kload prune --name dev --dry-run\n"
      "Removes the staging names (localhost/kload-staging/...) of loads that have provably\n"
      "ended: made on this machine by a process that is gone, or over an hour old. A load\n"
      "still running keeps its own. Then forgets the cache records of these nodes, even of\n"
      "one that does not answer: the next load lists each node afresh.");
}

void add_help_version_completion(CLI::App& app, Commands& c) {
  c.help_cmd = app.add_subcommand("help", "Show the help of kload or of one command");
  c.help_cmd->add_option("command", c.help_topic, "The command: image-archive, docker-image, ls...");
  c.version_cmd = app.add_subcommand("version", "Print kload's version");
  c.completion_cmd = app.add_subcommand("completion", "Print a shell completion script: bash, zsh or fish");
  c.completion_cmd->add_option("shell", c.shell, "bash, zsh or fish")->required();
  c.completion_cmd->footer("Examples:\n"
                           "  source <(kload completion bash)       # in ~/.bashrc\n"
                           "  source <(kload completion zsh)        # in ~/.zshrc, after compinit\n"
                           "  kload completion fish | source        # in ~/.config/fish/config.fish\n"
                           "Commands, their options, image archives (files), Docker's images for\n"
                           "docker-image and the kind clusters Docker runs for --name are completed.");
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// The commands and options the parser knows, as the completion scripts list them.
std::vector<CompletionCommand> completion_commands(CLI::App& app) {
  std::vector<CompletionCommand> out;
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    CompletionCommand c{sub->get_name(), first_line(sub->get_description()), {}, Positional::none, {}};
    for (const auto* o : sub->get_options()) {
      if (!o->nonpositional()) {
        continue;
      }
      std::vector<std::string> names;
      for (const auto& n : o->get_snames()) {
        names.push_back("-" + n);
      }
      for (const auto& n : o->get_lnames()) {
        names.push_back("--" + n);
      }
      c.options.push_back(CompletionOption{names, o->get_items_expected_max() > 0, first_line(o->get_description())});
    }
    const auto& name = c.name;
    if (name == "inspect" || name == "image-archive" || name == "push") {
      c.positional = Positional::files;
    } else if (name == "docker-image") {
      c.positional = Positional::docker_images;
    } else if (name == "cache") {
      c.positional = Positional::words;
      c.words.assign(cache_actions.begin(), cache_actions.end());
    } else if (name == "completion") {
      c.positional = Positional::words;
      c.words.assign(shells.begin(), shells.end());
    }
    out.push_back(std::move(c));
  }
  for (auto& c : out) {
    if (c.name == "help") {
      c.positional = Positional::words;
      for (const auto& other : out) {
        c.words.push_back(other.name);
      }
    }
  }
  return out;
}

CLI::App* find_command(CLI::App& app, const std::string& name) {
  auto found = app.get_subcommands([&](CLI::App* sub) { return sub->get_name() == name; });
  return found.empty() ? nullptr : found.front();
}

// "unknown command 'NAME'; the commands are: ...", for `kload NAME` and `kload help NAME`.
std::string unknown_command(CLI::App& app, const std::string& name) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
  }
  return fmt::format("unknown command '{}'; the commands are: {}", name, util::joined(names, ", "));
}

// help, version and completion: they only print.
util::Result<int> print_about(CLI::App& app, Commands& c) {
  std::string text;
  if (c.version_cmd->parsed()) {
    text = "kload " KLOAD_VERSION "\n";
  } else if (c.completion_cmd->parsed()) {
    auto script = completion_script(c.shell, completion_commands(app));
    if (!script) {
      return std::unexpected(script.error());
    }
    text = std::move(*script);
  } else if (c.help_topic.empty()) {
    // App::help() would show the help of the command parsed: help's own.
    text = app.get_formatter()->make_help(&app, "kload", CLI::AppFormatMode::Normal);
  } else {
    auto* sub = find_command(app, c.help_topic);
    if (sub == nullptr) {
      return util::fail(util::ErrorKind::usage, unknown_command(app, c.help_topic));
    }
    text = sub->help("kload");
  }
  std::fputs(text.c_str(), stdout);
  return 0;
}

// Runs the command that was parsed. Throws CLI::ValidationError: a bad --platform.
util::Result<int> dispatch(CLI::App& app, Commands& c, Console& console) {
  if (c.help_cmd->parsed() || c.version_cmd->parsed() || c.completion_cmd->parsed()) {
    return print_about(app, c);
  }
  if (c.inspect_cmd->parsed()) {
    c.inspect.platform = parse_platform(c.platform_text);
    c.inspect.jobs = c.jobs;
    return inspect(c.inspect, console);
  }
  if (c.archive_cmd->parsed()) {
    finish_target_options(c.archive_cmd, c.archive.target, c.jobs, c.platform_text);
    console.set_verbosity(verbosity_of(c.quiet, c.verbose));
    return image_archive(c.archive, console);
  }
  if (c.docker_cmd->parsed()) {
    finish_target_options(c.docker_cmd, c.docker.target, c.jobs, c.platform_text);
    console.set_verbosity(verbosity_of(c.quiet, c.verbose));
    return docker_image(c.docker, console);
  }
  if (c.cache_cmd->parsed()) {
    return cache_command(c.cache, console);
  }
  if (c.ls_cmd->parsed()) {
    finish_target_options(c.ls_cmd, c.ls.target, c.jobs, c.platform_text);
    return list_images(c.ls, console);
  }
  if (c.rm_cmd->parsed()) {
    finish_target_options(c.rm_cmd, c.rm.target, c.jobs, c.platform_text);
    return remove_images(c.rm, console);
  }
  if (c.prune_cmd->parsed()) {
    finish_target_options(c.prune_cmd, c.prune, c.jobs, c.platform_text);
    return prune_nodes(c.prune, console);
  }
  if (c.push_cmd->parsed()) {
    return push_images(c.push, console);
  }
  return 0;
}

// The schema of the document the parsed command writes: empty without --json.
std::string_view parsed_schema(const Commands& c) {
  const std::pair<const CLI::App*, bool> commands[] = {
      {c.inspect_cmd, c.inspect.json}, {c.archive_cmd, c.archive.target.json}, {c.docker_cmd, c.docker.target.json},
      {c.ls_cmd, c.ls.target.json},    {c.rm_cmd, c.rm.target.json},          {c.push_cmd, c.push.json},
      {c.cache_cmd, c.cache.json}};
  for (const auto& [cmd, json] : commands) {
    if (cmd->parsed() && json) {
      return schema_of(cmd->get_name(), c.cache.action);
    }
  }
  return "";
}

// The schema of the document asked for on a command line that did not parse:
// COMMAND ... --json, the cache's action being its first word that is one.
std::string_view argv_schema(int argc, char** argv) {
  std::string_view action;
  bool json = false;
  for (int i = 2; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    const std::string_view word = argv[i];
    json = json || word == "--json";
    if (action.empty() && std::find(cache_actions.begin(), cache_actions.end(), word) != cache_actions.end()) {
      action = word;
    }
  }
  return argc > 1 && json ? schema_of(argv[1], action) : "";
}

// Prints an error, one "kload: error:" line per line of its message, and returns
// its exit code.
int report_error(const util::Error& error, Console& console) {
  const auto& message = error.message;
  std::size_t start = 0;
  while (start < message.size()) {
    const auto end = message.find('\n', start);
    console.error("kload: error: " + message.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return exit_code_for(error);
}

// How the run ends: the command's exit code, or its error (the interrupt in its
// place once cancelled) printed and, when `schema` is not empty, written as that
// schema's document. A command that returned a code under --json wrote its document,
// and that code stands.
int finish(const util::Result<int>& result, std::string_view schema, Console& console) {
  if (result && util::cancelled_by() == 0) {
    return *result;
  }
  const auto error = unless_interrupted(result ? std::nullopt : std::optional(result.error()));
  const int code = report_error(*error, console);
  if (schema.empty()) {
    return code;
  }
  return result ? *result : write_document({{"schema", schema}}, error);
}

} // namespace

int run(int argc, char** argv) {
  // As kind first: a command handed on to the real kind must not inherit kload's
  // signal handling.
  if (const auto kind = kind_argv(argc, argv); !kind.empty()) {
    return run_as_kind(kind);
  }
  util::install_cleanup_signal_handlers(util::OnSignal::cancel);
  Console console;
  CLI::App app{"kload: load container images into Kubernetes nodes without a registry.\n"
               "Sends each node only the layers it is missing, and commits an image on a node\n"
               "only once all of it is there.",
               "kload"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kload " KLOAD_VERSION);
  app.footer("Exit codes: 0 success, 1 a node failed, 2 bad input or usage, 3 a local failure (temporary\n"
             "space, the cache), 130/143 interrupted. With --json a document is written on every one.\n"
             "Run 'kload help COMMAND' (or 'kload COMMAND --help') for a command's options.");
  Commands commands;
  add_inspect(app, commands);
  add_image_archive(app, commands);
  add_docker_image(app, commands);
  add_cache(app, commands);
  add_ls(app, commands);
  add_rm(app, commands);
  add_prune(app, commands);
  commands.push_cmd = add_push_command(app, commands.push);
  // Listed for --help only: run() answers `kload kind ...` before parsing.
  app.add_subcommand("kind", "Answer as kind (also as a link named kind): serve 'kind load docker-image' and\n"
                             "'kind load image-archive', hand every other kind command to the real kind on PATH");
  add_help_version_completion(app, commands);
  if (argc > 1 && argv[1][0] != '-' && find_command(app, argv[1]) == nullptr) {
    console.error("kload: error: " + unknown_command(app, argv[1]));
    console.error("Run 'kload --help' for usage.");
    return exit_bad_input;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      const int code = finish(util::fail(util::ErrorKind::usage, e.what()), argv_schema(argc, argv), console);
      console.error("Run 'kload --help' for usage.");
      return code;
    }
    return app.exit(e);
  }
  util::Result<int> result = 0;
  try {
    result = dispatch(app, commands, console);
  } catch (const CLI::ValidationError& e) {
    result = util::fail(util::ErrorKind::usage, e.what());
  }
  return finish(result, parsed_schema(commands), console);
}

} // namespace kload::cli
