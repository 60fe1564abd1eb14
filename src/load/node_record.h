#pragma once
// From what a node says to what the planner and the cache need: the planner's view of
// a node, and the cache record a full listing makes.

#include "kload/cache/cache.h"
#include "kload/format/model.h"
#include "kload/node/node_client.h"
#include "kload/plan/planner.h"

#include <cstdint>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

namespace kload::load {

// Manifest or index digest -> the image IDs it reaches. Content-addressed: what a
// digest reaches never changes, so such a map is never stale, only incomplete.
using TargetIds = std::map<util::Digest, std::vector<util::Digest>>;

// The planner's view of a node: its names from a fresh check of every name (the
// truth; staging names left out, so they are never a retag source), the image IDs of
// each from `known` and from `images` (whose manifests say what they reach), and
// `blobs`, a hint that a failed import corrects.
plan::NodeView view_of(const std::vector<node::ImageStatus>& statuses, const TargetIds& known,
                       const std::unordered_set<util::Digest>& blobs,
                       const std::vector<const format::Image*>& images);

// What a full listing says of a node: its blobs, names and gc-label maps, at `now`.
cache::NodeRecord record_from_listing(const std::string& server_uuid, const node::NodeInventory& inv,
                                      const std::vector<node::ImageStatus>& statuses, std::int64_t now);

// Replaces the node's record by a listing's, keeping the marks of loads still
// sending, the snapshotter and whether it has zstd when the listing does not say and
// it is the same containerd, and what other loads recorded since `listing_started`. Best effort: a cache
// that cannot be written is only slower.
void store_listing(cache::Cache& cache, const std::string& key, cache::NodeRecord record,
                   std::int64_t listing_started);

std::int64_t unix_now();

} // namespace kload::load
