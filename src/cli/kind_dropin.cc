// kload as `kind` (see kind_dropin.h).
//
// Passes:
//   1. route: read the arguments as kind's parser does; serve `load docker-image` and
//      `load image-archive`, hand on everything else
//   2. hand on: the first other `kind` on PATH replaces this process (execv), so its
//      output, signals and exit code are the caller's without kload in between
//   3. serve: the command's options become kload's TargetOptions and docker_image or
//      image_archive runs them, with kind's messages and exit codes

#include "kload/cli/kind_dropin.h"

#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/format/image_ref.h"
#include "kload/load/loader.h"
#include "kload/node/kind.h"
#include "kload/util/fd.h"
#include "kload/util/parallel.h"
#include "kload/util/temp_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>

namespace kload::cli {

namespace {

// The flags kind takes on `load docker-image` and `load image-archive`: the command's
// own and the global ones every kind command inherits.
enum class FlagValue { text, list, number, boolean };

struct KindFlag {
  std::string_view name;
  char shorthand;  // '\0': none
  FlagValue value;
};

constexpr KindFlag kind_flags[] = {
    {"name", 'n', FlagValue::text},        {"nodes", '\0', FlagValue::list},
    {"verbosity", 'v', FlagValue::number}, {"quiet", 'q', FlagValue::boolean},
    {"help", 'h', FlagValue::boolean},
};

const KindFlag* flag_named(std::string_view name) {
  const auto* it = std::ranges::find(kind_flags, name, &KindFlag::name);
  return it == std::end(kind_flags) ? nullptr : it;
}

const KindFlag* flag_by_shorthand(char c) {
  const auto* it = std::ranges::find(kind_flags, c, &KindFlag::shorthand);
  return c == '\0' || it == std::end(kind_flags) ? nullptr : it;
}

// Go's strconv.ParseBool, which pflag uses for --quiet=VALUE.
std::optional<bool> go_bool(std::string_view text) {
  for (const std::string_view yes : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (text == yes) {
      return true;
    }
  }
  for (const std::string_view no : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (text == no) {
      return false;
    }
  }
  return std::nullopt;
}

// What the flags said, and the words that are not flags (command words, then inputs).
struct Reading {
  std::vector<std::string> words;
  std::optional<std::string> name;
  std::vector<std::string> nodes;
  bool quiet = false;
  bool help = false;
  int verbosity = 0;
};

// Sets `flag` to `value` as pflag would. Returns why kind would refuse it ("" when
// it is taken).
std::string set_flag(Reading& r, const KindFlag& flag, std::string_view value) {
  switch (flag.value) {
  case FlagValue::text:
    r.name = std::string(value);
    return "";
  case FlagValue::list:
    // A string slice: comma-separated, each use adds to the last; "" adds nothing.
    for (std::size_t start = 0; !value.empty() && start <= value.size();) {
      const auto comma = value.find(',', start);
      const auto end = comma == std::string_view::npos ? value.size() : comma;
      r.nodes.emplace_back(value.substr(start, end - start));
      start = end + 1;
    }
    return "";
  case FlagValue::number: {
    int n = 0;
    const auto* last = value.data() + value.size();
    const auto [ptr, ec] = std::from_chars(value.data(), last, n);
    if (ec != std::errc{} || ptr != last || value.empty()) {
      return fmt::format("--{} takes a number, not \"{}\"", flag.name, value);
    }
    r.verbosity = n;
    return "";
  }
  case FlagValue::boolean: {
    const auto b = go_bool(value);
    if (!b) {
      return fmt::format("--{} takes true or false, not \"{}\"", flag.name, value);
    }
    (flag.name == "quiet" ? r.quiet : r.help) = *b;
    return "";
  }
  }
  return "";
}

// Reads `args` into `r`. Returns why kind, not kload, is to answer ("" when read).
std::string read_args(std::span<const std::string> args, Reading& r) {
  bool flags_ended = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (flags_ended || a == "-" || !a.starts_with('-')) {
      r.words.emplace_back(a);
      continue;
    }
    if (a == "--") {
      flags_ended = true;
      continue;
    }
    if (a.starts_with("--")) {
      const auto body = a.substr(2);
      const auto eq = body.find('=');
      const auto* flag = flag_named(body.substr(0, eq));
      if (flag == nullptr) {
        return fmt::format("kload does not take the flag {}", a);
      }
      std::string_view value;
      if (eq != std::string_view::npos) {
        value = body.substr(eq + 1);
      } else if (flag->value == FlagValue::boolean) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return fmt::format("--{} needs a value", flag->name);
      }
      if (auto why = set_flag(r, *flag, value); !why.empty()) {
        return why;
      }
      continue;
    }
    // Shorthands, possibly several in one word: -q, -qn NAME, -nNAME, -n=NAME, -q=false.
    for (std::size_t j = 1; j < a.size(); ++j) {
      const auto* flag = flag_by_shorthand(a[j]);
      if (flag == nullptr) {
        return fmt::format("kload does not take the flag -{} (in {})", a[j], a);
      }
      const bool assigned = j + 1 < a.size() && a[j + 1] == '=';
      std::string_view value;
      if (flag->value == FlagValue::boolean && !assigned) {
        value = "true";
      } else if (j + 1 < a.size()) {
        value = a.substr(assigned ? j + 2 : j + 1);
        j = a.size();
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return fmt::format("-{} needs a value", a[j]);
      }
      if (auto why = set_flag(r, *flag, value); !why.empty()) {
        return why;
      }
    }
  }
  return "";
}

std::string usage(KindVerb verb) {
  const bool images = verb == KindVerb::docker_image;
  return fmt::format(
      "{}\n"
      "(kload answers this kind command: each node is sent only the layers it lacks)\n"
      "\n"
      "Usage:\n"
      "  kind load {} [flags]\n"
      "\n"
      "Flags:\n"
      "  -h, --help            help for {}\n"
      "  -n, --name string     the cluster context name (default \"kind\", or $KIND_CLUSTER_NAME)\n"
      "      --nodes strings   comma separated list of nodes to load images into\n"
      "\n"
      "Global Flags:\n"
      "  -q, --quiet             silence all stderr output\n"
      "  -v, --verbosity int32   info log verbosity, higher value produces more output\n",
      images ? "Loads docker images from host into all or specified nodes by name"
             : "Loads docker image from archive into all or specified nodes by name",
      images ? "docker-image <IMAGE> [IMAGE...]" : "image-archive <IMAGE.tar> [IMAGE.tar...]",
      images ? "docker-image" : "image-archive");
}

// kind's lines per image, in kind's words, with kload's per-node lines (sending,
// done, FAILED, progress) from the console observer. The name an image is shown by is
// the one the user gave for it, as kind shows it.
class KindObserver final : public load::Observer {
public:
  KindObserver(Console& console, std::map<std::string, std::string> given_names)
      : console_(console), inner_(make_console_observer(console, ImageLines::left_out)),
        given_(std::move(given_names)) {}

  void planned(const std::string& node, const plan::NodePlan& plan) override {
    for (const auto& step : plan.steps) {
      const auto& image = *step.image;
      const auto name = shown_name(image);
      const auto id = image.id.str();
      switch (step.action) {
      case plan::Action::send:
        console_.line(
            fmt::format("Image: \"{}\" with ID \"{}\" not yet present on node \"{}\", loading...", name, id, node));
        break;
      case plan::Action::retag:
        console_.line(fmt::format("Image with ID: {} already present on the node {} but is missing the tag {}. "
                                  "re-tagging...",
                                  id, node, step.names.empty() ? name : step.names.front()));
        break;
      case plan::Action::skip:
        break;
      }
      // By name: Docker's ID (a pre-check's) and the loaded config's differ with
      // Docker's containerd image store.
      std::lock_guard lock(mutex_);
      auto& seen = seen_[name];
      if (seen.order == 0) {
        seen = Seen{name, id, seen_.size(), false};
      }
      seen.acted = seen.acted || step.action != plan::Action::skip;
    }
    inner_->planned(node, plan);
  }

  void phase(const std::string& node, load::Phase phase) override { inner_->phase(node, phase); }

  void progress(const std::string& node, std::uint64_t done, std::uint64_t total) override {
    inner_->progress(node, done, total);
  }

  void finished(const load::NodeReport& report) override {
    if (report.status == load::NodeStatus::failed) {
      std::lock_guard lock(mutex_);
      failures_.push_back(report.error.starts_with("node " + report.node)
                              ? report.error
                              : fmt::format("node \"{}\": {}", report.node, report.error));
    }
    inner_->finished(report);
  }

  // kind's one ERROR line for nodes that failed, "" when none did.
  std::string failure() {
    std::lock_guard lock(mutex_);
    if (failures_.empty()) {
      return "";
    }
    return fmt::format("failed to load images: {}{}", failures_.front(),
                       failures_.size() > 1 ? fmt::format(" (and {} more node(s))", failures_.size() - 1) : "");
  }

  // kind's line for each image that no node needed: called once the load is over.
  void present_everywhere() {
    std::lock_guard lock(mutex_);
    if (!failures_.empty()) {
      return;
    }
    std::vector<const Seen*> idle;
    for (const auto& [key, seen] : seen_) {
      if (!seen.acted) {
        idle.push_back(&seen);
      }
    }
    std::ranges::sort(idle, {}, &Seen::order);
    for (const auto* seen : idle) {
      console_.line(fmt::format("Image: \"{}\" with ID \"{}\" found to be already present on all nodes.", seen->name,
                                seen->id));
    }
  }

private:
  struct Seen {
    std::string name;
    std::string id;
    std::size_t order = 0;
    bool acted = false;
  };

  std::string shown_name(const format::Image& image) const {
    for (const auto& n : image.names) {
      if (auto it = given_.find(n); it != given_.end()) {
        return it->second;
      }
    }
    return image.names.empty() ? image.id.str() : image.names.front();
  }

  Console& console_;
  std::unique_ptr<load::Observer> inner_;
  std::map<std::string, std::string> given_;  // normalised name -> as the user gave it
  std::mutex mutex_;
  std::map<std::string, Seen> seen_;  // by shown name
  std::vector<std::string> failures_;  // per node that failed, its error naming it
};

// The normalised name of each image as given -> as given.
std::map<std::string, std::string> given_names(const std::vector<std::string>& images) {
  std::map<std::string, std::string> out;
  for (const auto& image : images) {
    if (auto n = format::normalize_image_name(image)) {
      out.emplace(*n, image);
    }
  }
  return out;
}

// -q: kind writes nothing to stderr, kload's console and its children's included.
void silence_stderr() {
  if (auto null = util::open_fd("/dev/null", O_WRONLY)) {
    (void)dup2(null->get(), STDERR_FILENO);
  }
}

int serve(const KindLoad& load) {
  if (load.help) {
    std::cout << usage(load.verb) << std::flush;
    return 0;
  }
  if (load.quiet) {
    silence_stderr();
  }
  util::install_cleanup_signal_handlers();
  Console console;
  if (load.verbosity > 0) {
    console.set_verbosity(Verbosity::verbose);
  }
  const bool images = load.verb == KindVerb::docker_image;
  KindObserver observer(console, images ? given_names(load.inputs) : std::map<std::string, std::string>{});
  TargetOptions target;
  target.cluster = load.cluster;
  target.kind_nodes = load.nodes;
  target.jobs = std::max(8u, util::default_jobs());  // kload's default: serving a node is mostly waiting
  target.observer = &observer;
  target.config_use = ConfigUse::ignored;  // kind's --name names a kind cluster only
  const auto result = images ? docker_image(DockerImageOptions{load.inputs, target}, console)
                             : image_archive(LoadCommandOptions{load.inputs, "", target}, console);
  if (!result) {
    // kind's error line; kload's messages may span several.
    std::string_view message = result.error().message;
    for (std::size_t start = 0; start <= message.size();) {
      const auto end = std::min(message.find('\n', start), message.size());
      console.error(fmt::format("ERROR: {}", message.substr(start, end - start)));
      start = end + 1;
    }
    return 1;
  }
  if (const auto failed = observer.failure(); !failed.empty()) {
    console.error("ERROR: " + failed);
    return 1;
  }
  observer.present_everywhere();
  return *result == 0 ? 0 : 1;
}

std::string passed_text(std::span<const FileId> ids) {
  std::string out;
  for (const auto& id : ids) {
    out += fmt::format("{}{}:{}", out.empty() ? "" : " ", id.device, id.inode);
  }
  return out;
}

int hand_on(std::span<char*> argv, const KindHandOn& why) {
  const char* passed_env = std::getenv(kind_passed_env);
  auto skip = parse_passed(passed_env != nullptr ? passed_env : "");
  if (const auto self = file_id("/proc/self/exe")) {
    skip.push_back(*self);
  }
  const char* path = std::getenv("PATH");
  const auto real = find_real_kind(path != nullptr ? path : "", skip);
  if (!real) {
    std::string command = "kind";
    for (const char* word : argv.subspan(argv.empty() ? 0 : 1)) {
      command += fmt::format(" {}", word);
    }
    std::cerr << fmt::format("kload: no other kind on PATH to run \"{}\": kload serves only kind load "
                             "docker-image and kind load image-archive (handed on: {}); install kind "
                             "(https://kind.sigs.k8s.io) in a directory later on PATH than this one",
                             command, why.why)
              << std::endl;
    return 127;
  }
  (void)setenv(kind_passed_env, passed_text(skip).c_str(), 1);
  execv(real->c_str(), argv.data());
  std::cerr << fmt::format("kload: cannot run {}: {}", real->string(), std::strerror(errno)) << std::endl;
  return 126;
}

} // namespace

KindRoute route_kind_args(std::span<const std::string> args, const char* cluster_env, const char* provider_env) {
  Reading r;
  if (auto why = read_args(args, r); !why.empty()) {
    return KindHandOn{why};
  }
  if (r.words.size() < 2 || r.words[0] != "load" || (r.words[1] != "docker-image" && r.words[1] != "image-archive")) {
    return KindHandOn{"another kind command"};
  }
  KindLoad load;
  load.verb = r.words[1] == "docker-image" ? KindVerb::docker_image : KindVerb::image_archive;
  load.inputs.assign(r.words.begin() + 2, r.words.end());
  load.nodes = std::move(r.nodes);
  load.quiet = r.quiet;
  load.help = r.help;
  load.verbosity = r.verbosity;
  if (r.name) {
    load.cluster = *r.name;
  } else if (cluster_env != nullptr && *cluster_env != '\0') {
    load.cluster = cluster_env;
  } else {
    load.cluster = "kind";
  }
  if (load.help) {
    return load;
  }
  if (load.inputs.empty()) {
    return KindHandOn{"no image or archive given"};
  }
  if (load.cluster.empty()) {
    return KindHandOn{"an empty --name"};
  }
  const auto provider = node::parse_kind_provider(provider_env);
  if (!provider) {
    return KindHandOn{fmt::format("{}={}", node::kind_provider_env, provider_env)};
  }
  if (*provider == node::KindProvider::podman && load.verb == KindVerb::docker_image) {
    return KindHandOn{"docker-image from Podman's image store"};
  }
  return load;
}

std::span<char*> kind_argv(int argc, char** argv) {
  if (argc < 1 || argv[0] == nullptr) {
    return {};
  }
  const std::span<char*> all(argv, static_cast<std::size_t>(argc));
  if (std::filesystem::path(argv[0]).filename() == "kind") {
    return all;
  }
  if (argc >= 2 && std::string_view(argv[1]) == "kind") {
    return all.subspan(1);
  }
  return {};
}

std::optional<FileId> file_id(const std::filesystem::path& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) {
    return std::nullopt;
  }
  return FileId{st.st_dev, st.st_ino};
}

std::optional<std::filesystem::path> find_real_kind(std::string_view path, std::span<const FileId> skip) {
  for (std::size_t start = 0; start <= path.size();) {
    const auto end = std::min(path.find(':', start), path.size());
    const auto dir = path.substr(start, end - start);
    start = end + 1;
    const auto candidate = std::filesystem::path(dir.empty() ? "." : std::string(dir)) / "kind";
    struct stat st{};
    if (stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(candidate.c_str(), X_OK) != 0) {
      continue;
    }
    if (std::ranges::find(skip, FileId{st.st_dev, st.st_ino}) != skip.end()) {
      continue;
    }
    return candidate;
  }
  return std::nullopt;
}

std::vector<FileId> parse_passed(std::string_view text) {
  std::vector<FileId> out;
  for (std::size_t start = 0; start < text.size();) {
    const auto end = std::min(text.find(' ', start), text.size());
    const auto word = text.substr(start, end - start);
    start = end + 1;
    const auto colon = word.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    const auto dev_text = word.substr(0, colon);
    const auto ino_text = word.substr(colon + 1);
    const auto d = std::from_chars(dev_text.data(), dev_text.data() + dev_text.size(), device);
    const auto i = std::from_chars(ino_text.data(), ino_text.data() + ino_text.size(), inode);
    if (d.ec != std::errc{} || d.ptr != dev_text.data() + dev_text.size() || i.ec != std::errc{} ||
        i.ptr != ino_text.data() + ino_text.size() || dev_text.empty() || ino_text.empty()) {
      continue;
    }
    out.push_back(FileId{static_cast<dev_t>(device), static_cast<ino_t>(inode)});
  }
  return out;
}

int run_as_kind(std::span<char*> argv) {
  const std::vector<std::string> args(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
  const auto route = route_kind_args(args, std::getenv("KIND_CLUSTER_NAME"), std::getenv(node::kind_provider_env));
  if (const auto* load = std::get_if<KindLoad>(&route)) {
    return serve(*load);
  }
  return hand_on(argv, std::get<KindHandOn>(route));
}

} // namespace kload::cli
