#pragma once
// What the loader asks of a containerd node, whatever carries the question: the
// queries and commands of one load, and the count of processes they started there.
// CtrClient answers through `ctr`; tests answer from memory.

#include "kload/util/digest.h"
#include "kload/util/error.h"
#include "kload/util/process.h"

#include <expected>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kload::node {

// What a node's content store holds, as far as planning needs it.
struct NodeInventory {
  // Committed content that some image reaches (through index, manifest, config and
  // layer gc labels): only that is safe from garbage collection until the next import.
  std::unordered_set<util::Digest> blobs;
  // From the gc labels containerd puts on manifest and index blobs:
  // manifest -> config, index -> its child manifests.
  std::unordered_map<util::Digest, util::Digest> manifest_config;
  std::unordered_map<util::Digest, std::vector<util::Digest>> index_children;
  // manifest -> its layer blobs (gc.ref.content.l.N), in no particular order.
  std::unordered_map<util::Digest, std::vector<util::Digest>> manifest_layers;
};

// One line of `ctr images check`.
struct ImageStatus {
  std::string name;
  util::Digest target;
  bool complete = false;  // every blob the image needs is present
};

// Why an import failed, when ctr said so in a way kload can act on.
enum class ImportFailure {
  missing_content,  // "content digest sha256:...: not found": the inventory was stale
  name_taken,       // 'image "NAME": already exists': another writer created a name the
                    // import was about to create (containerd 1.x's importer updates a
                    // name, then creates it when absent, without a retry between)
  other,
};

struct ImportError {
  ImportFailure failure = ImportFailure::other;
  std::optional<util::Digest> missing;  // the missing blob, for missing_content
  util::Error error;                    // one line naming the node
};

// How an import's stream crosses to the node: as written, or zstd-compressed and
// decompressed on the node by `zstd -dc` (which must be on its PATH).
enum class WireCompression { none, zstd };

// What a load asks first: every name's status, and what planning may need besides.
struct ProbeRequest {
  bool uuid = false;         // server_uuid()
  bool inventory = false;    // inventory() of every name checked
  bool snapshotter = false;  // snapshotter()
  bool zstd = false;         // whether `zstd` is on the node's PATH
};

struct Probe {
  std::vector<ImageStatus> images;  // check({}): every name
  std::optional<std::string> uuid;
  std::optional<NodeInventory> inventory;
  std::optional<std::string> snapshotter;
  // Whether the node has `zstd`, when asked and the node said (a cut answer leaves
  // it unknown).
  std::optional<bool> zstd;
};

// Whether a registry is spoken to in plain HTTP rather than HTTPS.
enum class PlainHttp { no, yes };

// Images a node pulls from a registry with its own containerd, each by digest
// ("HOST/REPO@sha256:..."), so that it fetches only the blobs it lacks. Each pull
// creates an image named as its reference.
struct Pull {
  std::vector<std::string> references;
  PlainHttp plain_http = PlainHttp::no;
};

// `ctr images tag`: points `target` at what `source` points at now. On containerd
// 1.x, with Replace::yes (--force) an existing `target` is deleted and created again,
// leaving a moment without it; with Replace::no only a name that does not exist is
// created, in one step, and an existing one fails the step ("already exists").
// containerd 2.x's ctr tags through the Transfer API: created or updated in one step,
// either way.
enum class Replace { no, yes };
struct Tag {
  std::string source;
  std::string target;
  Replace replace = Replace::yes;
};

// The steps that change a node, in this order, each only when all before it
// succeeded: a check that the node is the one planned for, an import or pulls, a
// gate, tags, a removal, then a check of names.
struct Changes {
  std::string expect_uuid;                    // when set: containerd's UUID must be this
  const util::StdinFeeder* import = nullptr;  // none when null
  const Pull* pull = nullptr;                 // none when null; never with an import
  std::string snapshotter;                    // for the import or the pulls
  WireCompression wire = WireCompression::none;  // what `import` writes: zstd, decompressed on the node
  // When not empty: every name here must be complete at exactly its target, checked
  // on the node after the import or pulls, else nothing after it runs (Step::gate).
  std::vector<std::pair<std::string, util::Digest>> gate;
  std::vector<Tag> tags;
  std::vector<std::string> remove;
  std::vector<std::string> check;  // none when empty
};

struct ChangeError {
  // node_changed: the UUID was not expect_uuid (or could not be read); nothing ran.
  // gate: a name of Changes::gate was missing, incomplete or at another target
  // (ImportFailure::missing_content), or the check itself failed.
  enum class Step { node_changed, import, pull, gate, tag, remove, check } step = Step::import;
  ImportError error;  // failure kinds beyond `other` only for the import
};

// The names of Changes::gate.
std::vector<std::string> gate_names(const std::vector<std::pair<std::string, util::Digest>>& gate);

// Why a gate stopped apply(), after "node NAME: ".
extern const char* const incomplete_import;

// "node NAME: containerd's UUID is not the one kload's cache knows ...".
std::string node_changed_message(const std::string& node);

class NodeClient {
public:
  virtual ~NodeClient() = default;

  // The node's name for messages ("node NAME").
  [[nodiscard]] virtual std::string display() const = 0;

  // The containerd server's UUID (changes when the node is recreated; may be empty).
  // Error (node): the node does not answer.
  virtual util::Result<std::string> server_uuid() = 0;

  // The snapshotter imports unpack into (CRI's, where the node says). Error (node).
  virtual util::Result<std::string> snapshotter() = 0;

  // The node's content: every blob that some image in `images` reaches (through
  // index, manifest, config and layer gc labels) and the gc-label maps; only such blobs
  // are safe from garbage collection until the next import. `images` is a fresh
  // check of every name. Error (node): unreachable or unparsable output.
  virtual util::Result<NodeInventory> inventory(const std::vector<ImageStatus>& images) = 0;

  // Every image named in `names` (all images when empty): its target and whether it is
  // complete. Names that do not exist are absent. Error (node).
  virtual util::Result<std::vector<ImageStatus>> check(const std::vector<std::string>& names) = 0;

  // Imports the OCI archive `feed` writes (its index entries carry
  // io.containerd.image.name), unpacking into `snapshotter`. A name that exists is
  // re-pointed in one step. On failure, `missing` is set when the node lacked a blob
  // the archive counted on.
  virtual std::expected<void, ImportError> import(const util::StdinFeeder& feed,
                                                  const std::string& snapshotter) = 0;

  // Pulls `reference` (HOST/REPO@sha256:...) from its registry with the node's own
  // containerd, fetching only the blobs the node lacks, unpacking into `snapshotter`,
  // and names the image `reference`. No credentials are handed to the node. Error
  // (node): the registry is unreachable from the node, refuses, or lacks the image
  // (one line naming the node and the reference, with ctr's message).
  virtual util::Result<void> pull(const std::string& reference, const std::string& snapshotter,
                                  PlainHttp plain_http) = 0;

  // Points `t.target` at what `t.source` points at now (see Tag). Error (node),
  // also when Replace::no finds the name there.
  virtual util::Result<void> tag(const Tag& t) = 0;

  // Removes image names; names that do not exist are not an error. Error (node).
  virtual util::Result<void> remove(const std::vector<std::string>& names) = 0;

  // Processes started on the node (or for it) so far.
  [[nodiscard]] virtual int calls() const = 0;

  // The round trips of a load. A client that can run several steps in one process on
  // the node overrides these; the defaults call the steps above one by one.

  // check({}), then what `want` asks; the default answers zstd with false (a client
  // without a shell on the node has no pipe to decompress through). Error (node): the
  // first step that failed.
  virtual util::Result<Probe> probe(const ProbeRequest& want);

  // Runs `changes`; returns the statuses of `changes.check`. The default imports only
  // an uncompressed stream: WireCompression::zstd fails the import step (node).
  virtual std::expected<std::vector<ImageStatus>, ChangeError> apply(const Changes& changes);
};

} // namespace kload::node
