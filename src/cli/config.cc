#include "kload/cli/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kload::cli {

using util::ErrorKind;
using util::Result;

const ConfiguredCluster* Config::cluster(std::string_view name) const {
  for (const auto& c : clusters) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

namespace {

// The keys of `table` that are not in `known`, as one error; nothing when all are known.
Result<void> only_known_keys(const toml::table& table, std::initializer_list<std::string_view> known,
                             const std::string& where) {
  for (const auto& [key, value] : table) {
    if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
      std::vector<std::string> names(known.begin(), known.end());
      return util::fail(ErrorKind::usage, fmt::format("{}: unknown key \"{}\" (known here: {})", where, key.str(),
                                                      fmt::join(names, ", ")));
    }
  }
  return {};
}

Result<ConfiguredCluster> cluster_of(const std::string& name, const toml::node& node, const std::string& path) {
  const auto where = fmt::format("{}: clusters.{}", path, name);
  const auto* table = node.as_table();
  if (table == nullptr) {
    return util::fail(ErrorKind::usage, where + ": is not a table; write [clusters." + name + "] with nodes = [...]");
  }
  if (auto known = only_known_keys(*table, {"nodes"}, where); !known) {
    return std::unexpected(known.error());
  }
  const auto* nodes = (*table)["nodes"].as_array();
  if (nodes == nullptr || nodes->empty()) {
    return util::fail(ErrorKind::usage, where + ": no nodes; give nodes = [\"docker://NAME\", \"ssh://HOST\", ...]");
  }
  ConfiguredCluster out{name, {}};
  for (const auto& n : *nodes) {
    const auto* uri = n.as_string();
    if (uri == nullptr) {
      return util::fail(ErrorKind::usage, where + ": every node must be a URI in quotes");
    }
    out.nodes.push_back(uri->get());
  }
  return out;
}

} // namespace

Result<Config> parse_config(std::string_view text, const std::string& path) {
  toml::table doc;
  try {
    // Debian's toml++ is built with exceptions: a parse error is thrown, not returned.
    doc = toml::parse(text);
  } catch (const toml::parse_error& e) {
    return util::fail(ErrorKind::usage, fmt::format("{}: line {}, column {}: {}", path, e.source().begin.line,
                                                    e.source().begin.column, e.description()));
  }
  if (auto known = only_known_keys(doc, {"default", "clusters"}, path); !known) {
    return std::unexpected(known.error());
  }
  Config out{path, {}, doc["default"].value_or<std::string>("")};
  if (const auto* clusters = doc["clusters"].as_table(); clusters != nullptr) {
    for (const auto& [name, node] : *clusters) {
      auto cluster = cluster_of(std::string(name.str()), node, path);
      if (!cluster) {
        return std::unexpected(cluster.error());
      }
      out.clusters.push_back(std::move(*cluster));
    }
  } else if (doc.contains("clusters")) {
    return util::fail(ErrorKind::usage, path + ": clusters must be tables: [clusters.NAME] with nodes = [...]");
  }
  if (!out.default_cluster.empty() && out.cluster(out.default_cluster) == nullptr) {
    return util::fail(ErrorKind::usage,
                      fmt::format("{}: default = \"{}\" names no [clusters.{}]", path, out.default_cluster,
                                  out.default_cluster));
  }
  return out;
}

std::filesystem::path default_config_path() {
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::filesystem::path(xdg) / "kload" / "config.toml";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".config" / "kload" / "config.toml";
  }
  return {};
}

Result<Config> read_config(const std::string& explicit_path) {
  std::string given = explicit_path;
  if (const char* env = std::getenv("KLOAD_CONFIG"); given.empty() && env != nullptr) {
    given = env;
  }
  const auto path = given.empty() ? default_config_path() : std::filesystem::path(given);
  if (path.empty()) {
    return Config{};
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (given.empty() && !std::filesystem::exists(path)) {
      return Config{};
    }
    return util::fail(ErrorKind::usage, fmt::format("{}: cannot read the config file: {}", path.string(),
                                                    std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path.string());
}

} // namespace kload::cli
