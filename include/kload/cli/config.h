#pragma once
// The config file: clusters named once, with their nodes' URIs, so `--name CLUSTER`
// stands for them as it stands for a kind cluster's node containers. TOML:
//
//   default = "lab"                      # with no --node, --name, --nodes or KLOAD_NODES
//   [clusters.lab]
//   nodes = ["ssh://root@10.0.0.5", "ssh://root@10.0.0.6"]
//
// Read from --config FILE, else $KLOAD_CONFIG, else $XDG_CONFIG_HOME/kload/config.toml,
// else ~/.config/kload/config.toml; a default file that does not exist is no config.

#include "kload/util/error.h"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kload::cli {

struct ConfiguredCluster {
  std::string name;
  std::vector<std::string> nodes;  // node URIs as written, in order
};

struct Config {
  std::string path;                        // where it was read from; empty: no file
  std::vector<ConfiguredCluster> clusters;  // in the file's order
  std::string default_cluster;             // empty: none

  // The cluster called `name`, or nullptr.
  [[nodiscard]] const ConfiguredCluster* cluster(std::string_view name) const;
};

// Parses a config file's text; `path` names it in errors. Error (usage), one line
// starting with the path: a TOML syntax error (with line and column), a key kload does
// not know (a typo must not pass unnoticed), a cluster without nodes or with a node
// that is not a string, a `default` that names no cluster.
util::Result<Config> parse_config(std::string_view text, const std::string& path);

// Where the config is read from when neither --config nor $KLOAD_CONFIG names a
// file: $XDG_CONFIG_HOME/kload/config.toml, else $HOME/.config/kload/config.toml
// (empty when neither variable is set).
std::filesystem::path default_config_path();

// Reads `explicit_path` (--config), else $KLOAD_CONFIG, else default_config_path().
// Error (usage): a file named by --config or $KLOAD_CONFIG that cannot be read (a
// missing default file is an empty Config), or as parse_config.
util::Result<Config> read_config(const std::string& explicit_path);

} // namespace kload::cli
