#pragma once
// The decisions of `kload docker-image`, apart from running anything: which images
// the user asked for and under which names, whether a node's `ctr images check`
// shows it holding them, which images `docker save` must write and for which nodes,
// whether what was saved is what Docker described, and what to remember of it.
// Pure except precheck_node (one round trip to a node) and remember_index_configs (the
// cache); tested with plain values.
//
// Docker has two image stores. The classic one reports the config digest as .Id,
// which is kload's image ID. The containerd image store reports the manifest or
// index digest instead (kind issue 4236); kload then recognises the image by CRI's
// "sha256:<ID>" reference or by what the cache learned from an earlier save.

#include "kload/cache/cache.h"
#include "kload/format/model.h"
#include "kload/load/loader.h"
#include "kload/node/node_client.h"
#include "kload/source/docker.h"
#include "kload/util/digest.h"
#include "kload/util/error.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kload::load {

// One image as asked for: a Docker image and the names it is to have on the nodes.
struct DockerWanted {
  source::DockerImage docker;      // what inspect said (the first ref naming it)
  std::vector<std::string> refs;   // every ref the user gave for it, tagged for `docker save`
  std::vector<std::string> names;  // normalised: what the nodes' names must point at
  // False when --platform asks for another platform than the one inspect describes:
  // Docker's ID then says nothing about what is to be loaded.
  bool platform_ok = true;
};

// The refs to ask Docker about, each once, in the order given. Error (bad_input),
// naming the ref: one that is no valid image name (format::normalize_image_name) or
// lies in kload's staging namespace.
util::Result<std::vector<std::string>> docker_refs(const std::vector<std::string>& images);

// `ref` with ":latest" when it names no tag or digest. Docker saves every tag of a
// repository named without one; the tag keeps the save to what was asked for.
std::string tagged_ref(const std::string& ref);

// The images to load: inspect's answers grouped per image ID, with the names to set.
// Error (usage): a ref that is not one of its image's tags (an ID or a digest:
// neither gives a name to set), or an image with no tag at all.
util::Result<std::vector<DockerWanted>> wanted_images(const std::vector<source::DockerImage>& inspected,
                                                      const std::optional<format::Platform>& platform);

// Whether a node's `images check` rows show it holding `w` under every one of its
// names, complete. A name counts when its target is Docker's ID itself (containerd
// store), or is also the target of CRI's "sha256:<ID>" reference (classic store), or
// `record` maps its target to Docker's ID or to the config kload loaded for Docker's
// index. Never for a wanted image whose platform_ok is false.
bool node_holds(const DockerWanted& w, const std::vector<node::ImageStatus>& statuses,
                const cache::NodeRecord* record);

// What the pre-check learned about one node.
struct NodeCheck {
  std::string error;       // set when the check failed: the node is then failed
  std::vector<bool> held;  // per wanted image: node_holds
  // What the node answered, for the load to plan from (Target::probed).
  std::shared_ptr<const EarlierProbe> probe;
  double seconds = 0;
  [[nodiscard]] bool failed() const { return !error.empty(); }
  [[nodiscard]] bool holds_all() const;
};

// Asks one node which wanted images it holds, in the round trip a load would begin
// with (a check of every name, with the node's listing on a first contact: see
// first_probe_request, for the load's `wire`), with the node's record from `cache`
// when there is one. Never fails: a node that cannot be asked gives a NodeCheck with
// its error.
NodeCheck precheck_node(const Target& target, const std::vector<DockerWanted>& wanted, cache::Cache* cache,
                        node::WireCompression wire);

// What to save and for whom, from every node's pre-check.
struct SavePlan {
  std::vector<std::size_t> needy;     // nodes (indexes of the checks) lacking some image
  std::vector<std::size_t> save;      // wanted images some needy node lacks
  std::vector<std::size_t> held;      // wanted images every needy node holds: not saved
  std::vector<std::string> save_refs; // the refs of `save`, for `docker save`
  [[nodiscard]] bool nothing_to_save() const { return needy.empty(); }
};

// Decides the save: a node that failed its check or holds everything is settled; the
// others are needy, and an image is saved when some needy node lacks it.
SavePlan plan_save(const std::vector<DockerWanted>& wanted, const std::vector<NodeCheck>& checks);

// Keeps the saved images that carry a wanted name, each with only the wanted names.
// Error (bad_input), naming `input`: a wanted name that no saved image carries.
util::Result<void> keep_wanted(format::ImageSet& set, const std::vector<DockerWanted>& wanted,
                               const std::string& input);

// The loaded image carrying `w`'s first name, or nullptr.
const format::Image* loaded_image(const std::vector<const format::Image*>& images, const DockerWanted& w);

// The config digest a containerd-store index stands for, when the saved archive
// proves it: the index blob itself (hashed as it streamed by) lists the manifest of
// `loaded`, on the platform inspect described. Else nullopt.
std::optional<util::Digest> config_of_index(const format::ImageSet& set, const DockerWanted& w,
                                            const format::Image& loaded);

// True when the saved image is the one inspect described: Docker's ID is its config
// (classic store), its manifest, or an index in the archive listing its manifest
// (containerd store). False when the tag moved between inspect and save.
bool saved_as_inspected(const format::ImageSet& set, const DockerWanted& w, const format::Image& loaded);

// Records, for every node of `ok_nodes`, which config each saved containerd-store
// index stands for, so the next pre-check recognises the image without a save.
// Cache failures are ignored: the cache is a hint.
void remember_index_configs(cache::Cache& cache, const format::ImageSet& set,
                            const std::vector<const format::Image*>& images, const std::vector<DockerWanted>& saved,
                            const std::vector<std::string>& ok_nodes);

} // namespace kload::load
