#pragma once
// Node addresses: how a user names a containerd node.
//   containerd:///run/containerd/containerd.sock   a local socket, via `ctr -a`
//   docker://CONTAINER                             `docker exec -i CONTAINER ctr ...`
//   podman://CONTAINER                             `podman exec -i CONTAINER ctr ...`
//   ssh://[user@]host[:port]                       `ssh host ctr ...`
// Query parameters: ?namespace=k8s.io (default) &snapshotter=overlayfs (default: the
// node's own, else overlayfs) &address=/run/k3s/containerd/containerd.sock (docker,
// podman and ssh only: the containerd socket on the node, given to ctr as `-a`; default: ctr's
// own, $CONTAINERD_ADDRESS there or /run/containerd/containerd.sock).

#include "kload/util/error.h"

#include <string>
#include <string_view>

namespace kload::node {

// docker and podman differ only in the engine program node_argv runs (transport.h).
enum class TransportKind { containerd_socket, docker, podman, ssh };

struct NodeUri {
  TransportKind kind = TransportKind::containerd_socket;
  std::string target;          // socket path, container name or host
  std::string user;            // ssh only, may be empty
  int port = 0;                // ssh only, 0 = ssh's default
  std::string ns = "k8s.io";   // containerd namespace
  std::string snapshotter;     // empty: ask the node, else overlayfs
  std::string address;         // docker, podman and ssh only: ctr's -a on the node; empty: its default
  std::string text;            // the URI as the user wrote it, for messages and keys

  // A short name for messages: the container, the host, or for a socket the name of
  // the directory holding it ("node1" for /lab/node1/sock).
  [[nodiscard]] std::string display() const;
};

// Whether two URIs name the same node the same way: all but how they were written
// (`?namespace=k8s.io` is the default written out).
bool same_node(const NodeUri& a, const NodeUri& b);

// Parses a node URI. Error (usage): unknown scheme, empty target, bad port, unknown
// or repeated query parameter, an address that is not an absolute socket path (or any
// address on containerd://, whose socket is the target), or characters that could
// never be a container, host or user name.
util::Result<NodeUri> parse_node_uri(std::string_view text);

} // namespace kload::node
