#include "kload/node/kind.h"
#include "kload/util/text.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>

namespace kload::node {

namespace {

using util::ErrorKind;

// `docker ps` answers in well under a second; this only catches a hung daemon.
constexpr std::chrono::milliseconds list_timeout{60'000};

using util::trim;

// Docker's last non-empty stderr line ("Cannot connect to the Docker daemon at ...").
std::string last_line(std::string_view err) {
  std::string_view last;
  while (!err.empty()) {
    const auto nl = err.find('\n');
    const auto line = trim(err.substr(0, nl));
    if (!line.empty()) {
      last = line;
    }
    if (nl == std::string_view::npos) {
      break;
    }
    err.remove_prefix(nl + 1);
  }
  return std::string(last);
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    // Quoted as a user would type it, so the hint can be pasted into a shell.
    out += a.find_first_of(" \t\"{}") == std::string::npos ? a : util::shell_quote(a);
  }
  return out;
}

} // namespace

util::Result<KindProvider> parse_kind_provider(const char* value) {
  const std::string_view v = value != nullptr ? value : "";
  if (v.empty() || v == "docker") {
    return KindProvider::docker;
  }
  if (v == "podman") {
    return KindProvider::podman;
  }
  if (v == "nerdctl") {
    return util::fail(ErrorKind::usage, fmt::format("{}=nerdctl: kload cannot reach nerdctl-hosted kind nodes; "
                                                    "unset it (docker) or set it to podman",
                                                    kind_provider_env));
  }
  std::string shown(v); // a value is one line in the message whatever it holds
  std::replace_if(shown.begin(), shown.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }, '?');
  return util::fail(ErrorKind::usage, fmt::format("{}=\"{}\": unknown kind provider (known: docker, podman)",
                                                  kind_provider_env, shown));
}

std::string_view engine_program(KindProvider provider) {
  return provider == KindProvider::podman ? "podman" : "docker";
}

std::vector<std::string> kind_list_argv(KindProvider provider, std::string_view cluster) {
  const auto role = provider == KindProvider::podman ? fmt::format("index .Labels \"{}\"", kind_role_label)
                                                     : fmt::format(".Label \"{}\"", kind_role_label);
  return {std::string(engine_program(provider)),
          "ps",
          "-a",
          "--filter",
          fmt::format("label={}={}", kind_cluster_label, cluster),
          "--format",
          fmt::format("{{{{.Names}}}}\\t{{{{{}}}}}", role)};
}

std::vector<KindNode> parse_kind_nodes(KindProvider provider, std::string_view out) {
  std::vector<KindNode> nodes;
  while (!out.empty()) {
    const auto nl = out.find('\n');
    const auto line = out.substr(0, nl);
    out.remove_prefix(nl == std::string_view::npos ? out.size() : nl + 1);
    const auto tab = line.find('\t');
    auto name = trim(line.substr(0, tab));
    const auto role = tab == std::string_view::npos ? std::string_view{} : trim(line.substr(tab + 1));
    // .Names lists a container's legacy link aliases after its own name, comma-separated.
    name = name.substr(0, name.find(','));
    if (name.empty() || role == kind_load_balancer_role) {
      continue;
    }
    nodes.push_back(KindNode{std::string(name), std::string(role), provider});
  }
  std::sort(nodes.begin(), nodes.end(), [](const KindNode& a, const KindNode& b) { return a.name < b.name; });
  nodes.erase(
      std::unique(nodes.begin(), nodes.end(), [](const KindNode& a, const KindNode& b) { return a.name == b.name; }),
      nodes.end());
  return nodes;
}

util::Result<std::vector<KindNode>> list_kind_nodes(std::string_view cluster, KindProvider provider,
                                                    util::ProcessRunner& runner) {
  if (cluster.empty()) {
    return util::fail(ErrorKind::usage, "--name: the kind cluster name is empty");
  }
  const auto argv = kind_list_argv(provider, cluster);
  const auto engine = engine_program(provider);
  const auto context = fmt::format("cannot list the nodes of kind cluster \"{}\"", cluster);
  auto r = runner.run(argv, {}, list_timeout);
  if (!r) {
    return util::fail(ErrorKind::usage,
                      fmt::format("{}: {} is not installed or not on PATH ({})", context, engine, r.error().message));
  }
  if (r->timed_out) {
    return util::fail(ErrorKind::usage, fmt::format("{}: {} ps gave no answer within {} s", context, engine,
                                                    list_timeout.count() / 1000));
  }
  if (r->exit_code != 0) {
    auto why = last_line(r->err);
    if (why.empty()) {
      why = r->signal != 0 ? fmt::format("killed by signal {}", r->signal)
                           : fmt::format("exited with status {}", r->exit_code);
    }
    return util::fail(ErrorKind::usage, fmt::format("{}: {} ps failed: {}", context, engine, why));
  }
  auto nodes = parse_kind_nodes(provider, r->out);
  if (nodes.empty()) {
    return util::fail(ErrorKind::usage, fmt::format("no nodes for kind cluster \"{}\"; is it running? ({})", cluster,
                                                    command_line({argv.begin(), argv.begin() + 5})));
  }
  return nodes;
}

util::Result<std::vector<KindNode>> pick_kind_nodes(const std::vector<KindNode>& nodes,
                                                    const std::vector<std::string>& picks, std::string_view cluster) {
  if (picks.empty()) {
    return nodes;
  }
  std::vector<KindNode> out;
  for (const auto& pick : picks) {
    const auto it = std::find_if(nodes.begin(), nodes.end(), [&](const KindNode& n) { return n.name == pick; });
    if (it == nodes.end()) {
      std::string known;
      for (const auto& n : nodes) {
        known += (known.empty() ? "" : ", ") + n.name;
      }
      return util::fail(ErrorKind::usage, fmt::format("--nodes: unknown node \"{}\" in kind cluster \"{}\"; its nodes "
                                                      "are: {}",
                                                      pick, cluster, known));
    }
    if (std::none_of(out.begin(), out.end(), [&](const KindNode& n) { return n.name == pick; })) {
      out.push_back(*it);
    }
  }
  return out;
}

} // namespace kload::node
