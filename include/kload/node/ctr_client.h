#pragma once
// What kload asks of a containerd node, expressed as ctr commands through a
// Transport: inventory, import, tag, remove, check. Parses ctr's text output and turns
// its error messages into typed failures.

#include "kload/node/transport.h"
#include "kload/util/digest.h"

#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kload::node {

struct NodeImage {
  std::string name;         // the image's ref, e.g. docker.io/library/app:v1
  util::Digest target;      // manifest or index digest it points to
  std::string media_type;   // the target's media type
};

// Everything kload needs to know about a node to plan a load.
struct NodeInventory {
  std::string server_uuid;                          // from `ctr version`, may be empty
  // Committed content that some image reaches (through index, manifest, config and
  // layer gc labels): only that is safe from garbage collection until the next import.
  std::unordered_set<util::Digest> blobs;
  std::vector<NodeImage> images;                    // every image record
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
  other,
};

struct ImportError {
  ImportFailure failure = ImportFailure::other;
  std::optional<util::Digest> missing;  // the missing blob, for missing_content
  util::Error error;                    // one line naming the node
};

enum class AllPlatforms { no, yes };

class CtrClient {
public:
  explicit CtrClient(Transport& transport) : transport_(transport) {}

  // `ctr version`: the server UUID (changes when the node is recreated). Error (node):
  // the node does not answer, with ctr's message.
  util::Result<std::string> server_uuid();

  // The snapshotter to import with: the URI's snapshotter= if given; else, on docker
  // and ssh nodes, CRI's snapshotter from `containerd config dump` run on the node (as
  // kind reads it, both configuration layouts); else a guess from `ctr plugins ls`:
  // overlayfs if loaded, else another loaded one, else native, else "overlayfs".
  // Error (node): unreachable or unparsable output of `ctr plugins ls`.
  util::Result<std::string> snapshotter();

  // Full inventory: `ctr version`, `ctr content ls` (digests and gc labels) and
  // `ctr images ls`. Error (node): unreachable or unparsable output.
  util::Result<NodeInventory> inventory();

  // `ctr images check` restricted to `names` (all images when empty): one cheap call.
  // Names that do not exist are absent from the result. Error (node): unreachable or
  // unparsable output.
  util::Result<std::vector<ImageStatus>> check(const std::vector<std::string>& names);

  // `ctr images import --snapshotter S [--all-platforms] -` with stdin from `feed` (a
  // thin OCI archive whose index entries carry io.containerd.image.name; no --digests,
  // which would add a stray "import-DATE@sha256:..." image per manifest). No timeout.
  // On failure returns an ImportError whose `missing` is set when ctr reported missing
  // content; a feeder error is reported as such unless ctr failed first. When
  // containerd 2.x's Transfer API refuses the snapshotter ("no unpack platforms
  // defined"), the import is run again, once, with --local, and so are later ones.
  std::expected<void, ImportError> import(const util::StdinFeeder& feed,
                                          const std::string& snapshotter,
                                          AllPlatforms all_platforms);

  // `ctr images tag --force SOURCE TARGET`. Error (node).
  util::Result<void> tag(const std::string& source, const std::string& target);

  // `ctr images rm NAME...`; names that do not exist are not an error. Error (node).
  util::Result<void> remove(const std::vector<std::string>& names);

private:
  Transport& transport_;
  // Set once a Transfer API import refused the snapshotter: imports then use --local.
  bool local_import_ = false;
};

} // namespace kload::node
