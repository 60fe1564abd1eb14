#pragma once
// The node's containerd configuration as `containerd config dump` prints it, read the
// way kind reads it: which snapshotter CRI unpacks images with.

#include <optional>
#include <string>
#include <string_view>

namespace kload::node {

// The snapshotter CRI uses, from the TOML of `containerd config dump`: for
// configuration version 1 and 2 `plugins."io.containerd.grpc.v1.cri".containerd.
// snapshotter`, for version 3 (containerd 2.x) `plugins."io.containerd.cri.v1.images".
// snapshotter`. Nothing when the text is not TOML, the key is absent or empty (a node
// without CRI), or not a string: the caller then falls back to what is loaded.
std::optional<std::string> cri_snapshotter(std::string_view config_toml);

} // namespace kload::node
