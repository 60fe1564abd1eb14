#include "node_record.h"

#include "kload/load/loader.h"

#include <algorithm>
#include <ctime>

namespace kload::load {

using util::Digest;

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

plan::NodeView view_of(const std::vector<node::ImageStatus>& statuses, const TargetIds& known,
                       const std::unordered_set<Digest>& blobs, const std::vector<const format::Image*>& images) {
  plan::NodeView view;
  view.blobs = blobs;
  for (const auto& s : statuses) {
    if (is_staging_name(s.name)) {
      continue;
    }
    plan::NamedImage named{s.target, {}, s.complete};
    if (auto it = known.find(s.target); it != known.end()) {
      named.ids = it->second;
    }
    for (const auto* image : images) {
      if (image->target().digest == s.target &&
          std::find(named.ids.begin(), named.ids.end(), image->id) == named.ids.end()) {
        named.ids.push_back(image->id);
      }
    }
    view.names[s.name] = std::move(named);
  }
  return view;
}

namespace {

TargetIds target_ids_of(const node::NodeInventory& inv) {
  TargetIds ids;
  for (const auto& [manifest, config] : inv.manifest_config) {
    ids[manifest] = {config};
  }
  for (const auto& [index, children] : inv.index_children) {
    auto& of_index = ids[index];
    for (const auto& child : children) {
      if (auto c = inv.manifest_config.find(child); c != inv.manifest_config.end()) {
        of_index.push_back(c->second);
      }
    }
  }
  return ids;
}

// What each listed manifest (and index) needs, so that re-pointing a name later tells
// the cache which blobs GC will take.
std::map<Digest, std::vector<Digest>> target_blobs_of(const node::NodeInventory& inv) {
  std::map<Digest, std::vector<Digest>> blobs;
  for (const auto& [manifest, config] : inv.manifest_config) {
    auto& of = blobs[manifest];
    of = {manifest, config};
    if (auto it = inv.manifest_layers.find(manifest); it != inv.manifest_layers.end()) {
      of.insert(of.end(), it->second.begin(), it->second.end());
    }
  }
  for (const auto& [index, children] : inv.index_children) {
    std::vector<Digest> of{index};
    for (const auto& child : children) {
      if (auto it = blobs.find(child); it != blobs.end()) {
        of.insert(of.end(), it->second.begin(), it->second.end());
      }
    }
    blobs[index] = std::move(of);
  }
  return blobs;
}

} // namespace

cache::NodeRecord record_from_listing(const std::string& server_uuid, const node::NodeInventory& inv,
                                      const std::vector<node::ImageStatus>& statuses, std::int64_t now) {
  cache::NodeRecord record;
  record.server_uuid = server_uuid;
  record.listed_at = now;
  record.blobs = inv.blobs;
  record.target_ids = target_ids_of(inv);
  record.target_blobs = target_blobs_of(inv);
  for (const auto& s : statuses) {
    if (is_staging_name(s.name)) {
      continue;
    }
    std::vector<Digest> ids;
    if (auto it = record.target_ids.find(s.target); it != record.target_ids.end()) {
      ids = it->second;
    }
    record.names[s.name] = cache::NameRecord{s.target, std::move(ids), s.complete, false, now};
  }
  return record;
}

void store_listing(cache::Cache& cache, const std::string& key, cache::NodeRecord record,
                   std::int64_t listing_started) {
  (void)cache.update_node(key, [&](cache::NodeRecord& r) {
    r.forget_interrupted_loads();
    record.sending = std::move(r.sending);
    if (record.snapshotter.empty() && r.server_uuid == record.server_uuid) {
      record.snapshotter = std::move(r.snapshotter);
    }
    if (!record.zstd && r.server_uuid == record.server_uuid) {
      record.zstd = r.zstd;
    }
    if (r.server_uuid == record.server_uuid && r.updated_at >= listing_started) {
      // Another load recorded what it sent while this listing ran: keep that, or the
      // older listing would hide it.
      record.blobs.insert(r.blobs.begin(), r.blobs.end());
      for (auto& [name, n] : r.names) {
        if (n.learned_at >= listing_started) {
          record.names[name] = std::move(n);
        }
      }
      record.target_ids.merge(r.target_ids);
      record.target_blobs.merge(r.target_blobs);
    }
    r = std::move(record);
  });
}

} // namespace kload::load
