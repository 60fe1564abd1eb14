#pragma once
// Images on nodes by name, apart from any load: what `kload ls` reads, what `kload rm`
// removes and what `kload prune` clears away. The node is the truth: every answer
// comes from `ctr images check` on the node and every removal is confirmed by another
// check. The cache is never read for an answer, only kept honest: a name removed
// leaves its node's record, and prune drops the records of the nodes it is given.
// Nodes are served in parallel; a node that fails is reported, never fatal.

#include "kload/load/loader.h"
#include "kload/node/node_client.h"
#include "kload/util/error.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kload::load {

// Normalises image names given on the command line as loads normalise theirs
// (format::normalize_image_name: "app" is docker.io/library/app:latest), each once, in
// the order given. Error (usage), naming the argument: not a valid reference.
util::Result<std::vector<std::string>> normalize_names(const std::vector<std::string>& images);

// What one node answered to one `ctr images check`.
struct NodeNames {
  std::string error;                      // one line naming the node, when the check failed
  std::vector<node::ImageStatus> images;  // the names shown (shown_names), sorted by name
  std::optional<node::NodeInventory> inventory;  // its content, when layers were asked for
  [[nodiscard]] bool failed() const { return !error.empty(); }
};

// Whether read_names lists each node's content as well (`ls --layers`).
enum class Layers { left_out, shown };

// The rows of a check that `ls` shows: exactly the names of `wanted` when it is not
// empty; else every name but kload's staging names and CRI's own "sha256:<ID>"
// references (CRI adds one per image, named by its ID: no name anyone gave). Sorted by
// name.
std::vector<node::ImageStatus> shown_names(std::vector<node::ImageStatus> statuses,
                                           const std::vector<std::string>& wanted);

// Asks every target, at most `jobs` at once, one `images check` of `wanted` (every name
// when empty), kept by shown_names; with Layers::shown, every name and the node's
// content in the same round trip (NodeClient::probe). Never fails: a node that cannot
// be asked has its error in its NodeNames.
std::vector<NodeNames> read_names(const std::vector<Target>& targets, const std::vector<std::string>& wanted,
                                  unsigned jobs, Layers layers = Layers::left_out);

// A name on one node, or across the nodes.
enum class NameState {
  present,     // there, complete, and every node holding it agrees on its target
  missing,     // not there
  incomplete,  // there, but some blob of its image is not
  different,   // there, complete, but the nodes holding it disagree on its target
  unknown,     // the node could not be asked
};

// "present", "missing", "incomplete", "different", "unknown".
std::string_view state_text(NameState state);

// One name across the nodes.
struct NameRow {
  std::string name;
  std::vector<std::optional<node::ImageStatus>> on;  // per node: the name there; nullopt when not (or unknown)
  std::vector<NameState> states;                     // per node
  NameState state = NameState::present;              // the row's, see name_rows
};

// The table of `ls`, pure: one row per name of `wanted`, or, when it is empty, per name
// some node shows; sorted by name. A cell is unknown (its node failed), missing,
// incomplete, different (the nodes holding the name disagree on its target) or
// present, in that order of precedence. A row is different when some cell is, else
// incomplete when some cell is, else missing when some cell is, else present; unknown
// when every node failed.
std::vector<NameRow> name_rows(const std::vector<NodeNames>& nodes, const std::vector<std::string>& wanted);

// One layer of the image a name points at, across the nodes.
struct LayerRow {
  util::Digest digest;
  std::size_t shared_by = 0;             // how many of the rows' names have it in their image
  std::vector<std::optional<bool>> held;  // per node: whether it holds the layer; nullopt: unknown
};

// The layers of the image `row` names, pure, from the nodes' content (read_names with
// Layers::shown; `nodes` in the order of the row's cells), sorted by digest. A node
// holds a layer when it has the blob, or when some name of `rows` is complete there
// and its image has the layer (unpacked: kind's nodes discard layer blobs once
// unpacked). A layer's
// images are those of the manifest the name points at, or of every platform manifest
// of an index the node has. Unknown where the node failed or its content is not known.
std::vector<LayerRow> layer_rows(const NameRow& row, const std::vector<NameRow>& rows,
                                 const std::vector<NodeNames>& nodes);

// The names `kload rm` removes: normalize_names, and none in kload's staging
// namespace. Error (usage), naming the argument: not a valid reference, or a staging
// name (`kload prune` removes those whose load has ended).
util::Result<std::vector<std::string>> names_to_remove(const std::vector<std::string>& images);

// What a removal did on one node.
struct Removal {
  std::string error;                 // one line naming the node, when it failed
  std::vector<std::string> removed;  // the names gone, as the second check saw (dry run: that would go)
  std::vector<std::string> absent;   // the names that were not there: nothing to do
  [[nodiscard]] bool failed() const { return !error.empty(); }
};

// Removes exactly `names` (from names_to_remove) from every target, at most
// `options.jobs` nodes at once: per node one check of the names, one removal of those
// present, and a second check that none is left (made even when the removal fails).
// Then each name gone or absent leaves the node's record in `options.cache`, and the
// blobs only it kept go with it, as containerd's GC takes them. With DryRun::yes, only the first check. Never fails: a
// node that cannot be asked, a removal that fails or a name still there after it is
// that node's error.
std::vector<Removal> remove_names(const std::vector<Target>& targets, const std::vector<std::string>& names,
                                  const LoadOptions& options);

// What a prune did on one node.
struct Pruning {
  std::string error;                 // one line naming the node, when it failed
  std::vector<std::string> removed;  // staging names of ended loads gone, as the second check saw (dry run: to go)
  std::size_t kept = 0;              // staging names of loads that may still run: never removed
  bool record_forgotten = false;     // the node's cache record was (dry run: would be) dropped
  [[nodiscard]] bool failed() const { return !error.empty(); }
};

// Clears kload's leftovers from every target, at most `options.jobs` nodes at once:
// per node one check of every name, the removal of the staging names whose load has
// provably ended at `now` (staging_abandoned; a live load's never), and a second check
// that they are gone. Then the node's record leaves `options.cache`, whether or not
// the node answered (a node that is gone is the one whose record is stalest). With
// DryRun::yes, only the first check. Never fails: a node's failure is its error.
std::vector<Pruning> prune(const std::vector<Target>& targets, const LoadOptions& options, std::int64_t now);

} // namespace kload::load
