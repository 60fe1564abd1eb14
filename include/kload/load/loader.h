#pragma once
// Loading an image set into nodes: plan each node from what it holds, send each node
// one thin archive with only its missing blobs, each proven by the read that sends it,
// and commit names only once the image is complete. Nodes run in parallel.

#include "kload/format/model.h"
#include "kload/node/node_client.h"
#include "kload/node/node_uri.h"
#include "kload/plan/planner.h"
#include "kload/util/error.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kload::cache {
class Cache;
struct NodeRecord;
}

namespace kload::load {

enum class DryRun { no, yes };

// What a registry received from a load through it (--via).
struct Published {
  std::uint64_t blobs_uploaded = 0;
  std::uint64_t bytes_uploaded = 0;
};

// A load through a registry (--via): the images some node lacks are put in the
// registry once, and each node that lacks one pulls it with its own containerd (only
// the blobs it lacks) under a staging name, instead of receiving a thin archive; the
// commit, confirm and remember steps are those of a direct load.
struct Via {
  std::string pull_address;  // the registry as nodes reach it, HOST[:PORT], for messages
  node::PlainHttp plain_http = node::PlainHttp::no;
  // Each image's reference as nodes pull it, by manifest digest:
  // PULL_ADDRESS/REPOSITORY@sha256:<manifest>. Every image of the load has one.
  std::map<const format::Image*, std::string> references;
  // Puts `images` in the registry, only the blobs it lacks; called once, after every
  // node is planned and before any pulls, and only when some node lacks an image. Its
  // error fails every node that lacks an image, with its message.
  std::function<util::Result<Published>(const std::vector<const format::Image*>& images)> publish;
};

struct LoadOptions {
  unsigned jobs = 1;               // nodes served at once; hashing uses min(jobs, cores)
  DryRun dry_run = DryRun::no;
  cache::Cache* cache = nullptr;   // the inventory cache, or none
  const Via* via = nullptr;        // through a registry, or (nullptr) straight to the nodes
  // zstd: compress the stream to ssh nodes that have `zstd` (wire_compression); none:
  // never.
  node::WireCompression wire = node::WireCompression::zstd;
};

// The zstd level of the stream: 1. Measured on 256 MiB of /usr's files (a tar) on 2
// loaded cores: level 1 compresses at ~330 MB/s to 52%, level 3 at ~160 MB/s to 49%;
// level 1 keeps kload ahead of a 1 Gb/s link, level 3 would barely.
inline constexpr int wire_zstd_level = 1;

// How the stream to node `uri` travels, given `wire` (the load's option) and whether
// the node has zstd (unknown: no). Only ssh nodes get it compressed: the others are on
// this machine, where compressing costs CPU and saves nothing.
node::WireCompression wire_compression(const node::NodeUri& uri, node::WireCompression wire,
                                       std::optional<bool> node_has_zstd);

// What happened to one image on one node.
struct ImageOutcome {
  const format::Image* image = nullptr;
  plan::Action action = plan::Action::skip;
  std::vector<std::string> names;  // names (re)pointed
  std::string retag_from;
};

enum class NodeStatus { ok, failed };

struct NodeReport {
  std::string node;        // display name
  std::string uri;
  NodeStatus status = NodeStatus::ok;
  std::string error;       // one line, when failed
  // When failed: what kind of failure (node, also when reading the input failed
  // mid-stream, which ctr's failure reports; interrupted when the run was cancelled;
  // bad_input when a blob sent does not hash to its digest), and the images not known
  // to be complete under all their names on the node: those its plan sent or
  // retagged, or every image when it failed before a plan.
  util::ErrorKind error_kind = util::ErrorKind::node;
  std::vector<const format::Image*> lacks;
  std::vector<ImageOutcome> images;
  std::uint64_t layers_sent = 0;
  std::uint64_t layer_bytes_sent = 0;
  std::uint64_t bytes_sent = 0;       // whole stream: tar framing, manifests, configs
  std::uint64_t wire_bytes = 0;       // what left for the node: bytes_sent, compressed when `wire` says
  node::WireCompression wire = node::WireCompression::none;  // how the streams sent travelled
  std::uint64_t layers_skipped = 0;
  std::uint64_t bytes_skipped = 0;
  std::uint64_t layers_pulled = 0;    // through a registry: the layers the node lacked and pulled
  std::uint64_t layer_bytes_pulled = 0;
  std::uint64_t layers_planned = 0;   // the plan's layers to send (what a dry run would send)
  std::uint64_t layer_bytes_planned = 0;
  int ctr_calls = 0;                  // processes started on the node (NodeClient::calls)
  int listings = 0;                   // full inventory listings (content ls, images ls)
  bool retried = false;               // the inventory was stale and the load retried once
  double seconds = 0;
};

// A load through a registry, as a whole.
struct ViaReport {
  std::string pull_address;
  bool published = false;  // the registry was asked (some node lacked an image)
  Published uploaded;      // what left this machine for the registry, once
};

struct LoadReport {
  std::vector<NodeReport> nodes;
  std::optional<ViaReport> via;  // set for a load through a registry
  // Blobs proven by this load that no earlier read had proven (as they were sent; by
  // a dry run, before), and their bytes.
  std::uint64_t blobs_hashed = 0;
  std::uint64_t bytes_hashed = 0;
  // The import streams' bodies written, one per distinct content (however many nodes
  // were sent it), and their bytes: what the nodes' streams read from the input.
  std::uint64_t stream_bodies = 0;
  std::uint64_t stream_bytes = 0;
  double seconds = 0;
  [[nodiscard]] bool all_ok() const;
};

// The steps of one node's load, in order; a node that has nothing to send or name
// goes from planning to finished.
enum class Phase {
  planning,    // asking the node what it holds, and planning
  sending,     // importing (or pulling) the missing blobs under staging names
  committing,  // pointing the real names at the images
  confirming,  // checking each name resolves as intended, and remembering it
};

// The word for `phase`: "planning", "sending", "committing", "confirming".
std::string_view phase_name(Phase phase);

// Hears about progress; called from worker threads, so implementations serialize.
class Observer {
public:
  virtual ~Observer() = default;
  // A node entered `phase` (each phase at most once per load, in order).
  virtual void phase(const std::string& node, Phase phase) = 0;
  // The plan for a node, before anything is sent.
  virtual void planned(const std::string& node, const plan::NodePlan& plan) = 0;
  // Layer bytes sent so far to a node, of `total`.
  virtual void progress(const std::string& node, std::uint64_t done, std::uint64_t total) = 0;
  // A node finished, well or not.
  virtual void finished(const NodeReport& report) = 0;
};

// A probe of a node that the caller made just before the load (docker-image's
// pre-check), and when it began (unix seconds).
struct EarlierProbe {
  node::Probe probe;
  std::int64_t started = 0;
};

// A node to load into, with the client that speaks to it (owned by the caller).
struct Target {
  node::NodeUri uri;
  node::NodeClient* client = nullptr;
  // When set, the load plans from it instead of probing the node again, provided it
  // holds all that first_probe_request asks. The rest of the protocol checks the node
  // as after a probe of its own: the staging round trip's check, the confirm.
  std::shared_ptr<const EarlierProbe> probed;
};

// Whether `record` says the node holds each of `ids`, complete, under some name: an
// image ID (config digest), or the manifest or index a name points at (what Docker's
// containerd image store gives as an image's ID). A load of them will most likely
// send nothing there (at most retag).
bool record_holds_all(const cache::NodeRecord& record, const std::vector<util::Digest>& ids);

// What a load's first round trip to node `uri` asks besides every name: the node's
// UUID, content and snapshotter as well on a first contact, when there is a cache but
// `record` (the node's record in it, nullptr when none) cannot be planned from; the
// UUID alone when the record can be planned from but does not hold all the image IDs
// `ids` that the load brings (a plan from it will likely send, and holds only if the
// node is still the containerd the record describes); and whether it has zstd, when
// `wire` would compress to it and no record says.
node::ProbeRequest first_probe_request(const cache::Cache* cache, const cache::NodeRecord* record,
                                       const node::NodeUri& uri, node::WireCompression wire,
                                       const std::vector<util::Digest>& ids);

// Loads `images` (from `set`) into every target. Per-node failures are reported in
// the NodeReport and do not stop the other nodes; a blob sent that does not hash to
// its digest fails the nodes whose streams carry it (bad_input). Error (bad_input): in
// a dry run, a blob that would be sent does not match its digest.
util::Result<LoadReport> load(format::ImageSet& set, const std::vector<const format::Image*>& images,
                              const std::vector<Target>& targets, const LoadOptions& options, Observer& observer);

// Lists one node in full and replaces its record in `cache`. Error (node): the node
// cannot be listed.
util::Result<void> refresh_node(const Target& target, cache::Cache& cache);

// Where the private names live that images are imported under before their real
// names are committed.
inline constexpr std::string_view staging_prefix = "localhost/kload-staging/";
// True for names kload's staging uses.
bool is_staging_name(const std::string& name);

} // namespace kload::load
