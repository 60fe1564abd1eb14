#pragma once
// The planner: inventories in, plan out. Pure: no process, no socket, no file, so it
// is tested with plain values and benchmarked at cluster scale.

#include "kload/format/model.h"
#include "kload/util/digest.h"
#include "kload/util/error.h"

#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kload::plan {

// What is known of one image name on a node.
struct NamedImage {
  util::Digest target;                // manifest or index the name points to
  std::vector<util::Digest> ids;      // image IDs (config digests) reachable from it; empty if unknown
  bool complete = false;              // every blob of the image is on the node
};

// What a node holds, as far as kload knows: from a fresh inventory or a cache.
struct NodeView {
  std::unordered_set<util::Digest> blobs;
  std::unordered_map<std::string, NamedImage> names;
};

enum class Action {
  skip,   // every name already points at this image ID, complete
  retag,  // the ID is there, complete, under another name: only names change
  send,   // blobs are missing: import, then point the names at it
};

struct ImageStep {
  const format::Image* image = nullptr;
  Action action = Action::skip;
  std::string retag_from;          // retag: a name on the node that holds the image
  std::vector<std::string> names;  // the names to point at the image (empty for skip)
};

struct NodePlan {
  std::vector<ImageStep> steps;
  std::vector<util::Digest> layers;  // layer blobs to send, each once, in image order
  std::uint64_t layer_bytes = 0;
  std::uint64_t skipped_layers = 0;  // layers some sent image needs that the node has
  std::uint64_t skipped_bytes = 0;

  // True when nothing at all has to happen on the node.
  [[nodiscard]] bool nothing_to_do() const;
  [[nodiscard]] std::size_t count(Action a) const;
};

// Plans one node for `images`, each to be reachable under all its names.
NodePlan plan_node(const std::vector<const format::Image*>& images, const NodeView& node);

// Chooses the images to load from a set: for every name, the image of `platform`
// (when set) or of the host's platform, or the only one there is. Error (bad_input):
// no image has a name; a name whose wanted platform is unavailable or absent.
util::Result<std::vector<const format::Image*>> select_images(const format::ImageSet& set,
                                                              const std::optional<format::Platform>& platform);

// Chooses the images to push when no platform is asked for: every platform of a name
// whose images are the whole of one index (all reached through the same outermost
// index of one input, none of its platforms unavailable), so that the index can be
// pushed; for the other names, select_images' pick. Error: as select_images.
util::Result<std::vector<const format::Image*>> select_every_platform(const format::ImageSet& set);

} // namespace kload::plan
