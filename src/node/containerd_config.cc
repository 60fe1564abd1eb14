#include "kload/node/containerd_config.h"

#include <toml++/toml.h>

namespace kload::node {

std::optional<std::string> cri_snapshotter(std::string_view config_toml) {
  toml::table config;
  try {
    // Debian's toml++ is built with exceptions: a parse error is thrown, not returned.
    config = toml::parse(config_toml);
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
  // containerd reads a file without `version` as version 1, which keeps the CRI
  // plugin's version 2 layout for this key.
  const auto version = config["version"].value_or<std::int64_t>(1);
  const auto plugins = config["plugins"];
  const auto snapshotter = version >= 3 ? plugins["io.containerd.cri.v1.images"]["snapshotter"]
                                        : plugins["io.containerd.grpc.v1.cri"]["containerd"]["snapshotter"];
  auto name = snapshotter.value<std::string>();
  if (!name || name->empty()) {
    return std::nullopt;
  }
  return name;
}

} // namespace kload::node
