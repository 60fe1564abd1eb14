#pragma once
// kind clusters: the node containers of a cluster, found the way kind finds them, so
// that `--name CLUSTER` can stand for a list of docker:// (or podman://) nodes. One
// `docker ps` (or `podman ps`) call through a ProcessRunner, so tests substitute a fake.

#include "kload/util/error.h"
#include "kload/util/process.h"

#include <string>
#include <string_view>
#include <vector>

namespace kload::node {

// The cluster kind itself uses when given no --name.
inline constexpr std::string_view kind_default_cluster = "kind";

// kind labels every node container with its cluster and its role.
inline constexpr std::string_view kind_cluster_label = "io.x-k8s.kind.cluster";
inline constexpr std::string_view kind_role_label = "io.x-k8s.kind.role";
// The role of the haproxy container of multi-control-plane clusters: it runs no
// containerd, so images are never loaded into it (kind leaves it out too).
inline constexpr std::string_view kind_load_balancer_role = "external-load-balancer";

// The container engine kind runs a cluster's nodes on, as kind chooses it from
// $KIND_EXPERIMENTAL_PROVIDER: unset or "docker" is Docker, "podman" is Podman.
enum class KindProvider { docker, podman };

// The variable kind reads its provider from.
inline constexpr const char* kind_provider_env = "KIND_EXPERIMENTAL_PROVIDER";

// The provider that `value` (the variable's value; null or empty when unset) names.
// Error (usage): "nerdctl" (kind's third provider: kload cannot reach nerdctl-hosted
// nodes, and says so) or any other value, naming the values kload knows.
util::Result<KindProvider> parse_kind_provider(const char* value);

// The engine's program and node URI scheme: "docker" or "podman".
[[nodiscard]] std::string_view engine_program(KindProvider provider);

struct KindNode {
  std::string name;                            // the container name, e.g. kind-worker
  std::string role;                            // control-plane or worker (empty if the label is missing)
  KindProvider provider = KindProvider::docker; // the engine the container runs on

  // The node URI that reaches it: "docker://NAME" or "podman://NAME".
  [[nodiscard]] std::string uri() const { return std::string(engine_program(provider)) + "://" + name; }
};

// The exact argv that lists a cluster's node containers, stopped ones included (as
// kind does, so a stopped node fails loudly instead of being skipped):
//   docker ps -a --filter label=io.x-k8s.kind.cluster=CLUSTER
//          --format {{.Names}}\t{{.Label "io.x-k8s.kind.role"}}
//   podman ps -a --filter label=io.x-k8s.kind.cluster=CLUSTER
//          --format {{.Names}}\t{{index .Labels "io.x-k8s.kind.role"}}
// where "\t" is the two characters the engine's formatter turns into a tab (Podman's
// listing has no .Label method, only the .Labels map). kind asks for the names only
// and then inspects each node for its role; the role in the same listing saves those
// calls.
std::vector<std::string> kind_list_argv(KindProvider provider, std::string_view cluster);

// Parses the listing: one "NAME<TAB>ROLE" line per container on `provider`. Leaves
// out the external load balancer; sorted by name, duplicates dropped. Never fails:
// lines without a tab are a name without a role, blank lines are skipped.
std::vector<KindNode> parse_kind_nodes(KindProvider provider, std::string_view out);

// Lists the nodes of `cluster` on `provider` with kind_list_argv through `runner`.
// Error (usage): an empty cluster name; the engine cannot be run (not installed) or
// fails (daemon not running: its own line is quoted); no node containers, worded as
//   no nodes for kind cluster "X"; is it running? (docker ps -a --filter label=...)
util::Result<std::vector<KindNode>> list_kind_nodes(std::string_view cluster, KindProvider provider,
                                                    util::ProcessRunner& runner);

// The nodes named in `picks` (container names, as `--nodes a,b`), in that order,
// each once; all of `nodes` when `picks` is empty. Error (usage): a name that is not
// a node of the cluster, with the names that are.
util::Result<std::vector<KindNode>> pick_kind_nodes(const std::vector<KindNode>& nodes,
                                                    const std::vector<std::string>& picks, std::string_view cluster);

} // namespace kload::node
