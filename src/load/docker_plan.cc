#include "kload/load/docker_plan.h"

#include "kload/format/image_ref.h"
#include "kload/load/loader.h"
#include "node_record.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace kload::load {

using util::Digest;
using util::Result;

namespace {

template <typename T> bool contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The error for a ref that is not one of its image's tags.
util::Error untagged(const source::DockerImage& d) {
  return util::Error{
      util::ErrorKind::usage,
      d.repo_tags.empty()
          ? fmt::format("\"{}\" ({}) has no tag in Docker, so there is no name to load it under; give it one first: "
                        "docker tag {} NAME:TAG",
                        d.ref, d.id.short_hex(), d.ref)
          : fmt::format("\"{}\" is not one of the image's tags in Docker (an ID or a digest?); name it by a tag, which "
                        "is what kload sets on the nodes: {}",
                        d.ref, d.repo_tags.front())};
}

// Whether one `images check` row shows `w`, complete. Only content-addressed facts
// are used, so a cached one is never stale: a manifest digest fixes its config, an
// index digest its children.
bool name_holds(const DockerWanted& w, const node::ImageStatus& status, const std::vector<node::ImageStatus>& statuses,
                const cache::NodeRecord* record) {
  const auto& id = w.docker.id;
  if (!status.complete || !w.platform_ok) {
    return false;  // another platform than inspect describes: the loader decides, after a save
  }
  if (status.target == id) {
    return true;
  }
  const auto id_ref =
      std::find_if(statuses.begin(), statuses.end(), [&](const node::ImageStatus& s) { return s.name == id.str(); });
  if (id_ref != statuses.end() && id_ref->target == status.target) {
    return true;
  }
  if (record == nullptr) {
    return false;
  }
  const auto held = record->target_ids.find(status.target);
  if (held == record->target_ids.end()) {
    return false;
  }
  if (contains(held->second, id)) {
    return true;
  }
  // Docker's ID is a manifest or index (the containerd store) that the name is not
  // at. For this machine's platform a load names the image at that index, so a name
  // elsewhere (an older load's, at the bare manifest) is not held: the load re-points
  // it. For another platform the name is at the manifest, which the record maps.
  if (w.docker.platform.matches(format::Platform::host())) {
    return false;
  }
  const auto stands_for = record->target_ids.find(id);
  return stands_for != record->target_ids.end() &&
         std::any_of(stands_for->second.begin(), stands_for->second.end(),
                     [&](const Digest& c) { return contains(held->second, c); });
}

// Drops from `names` those not in `keep`.
void keep_names(std::vector<std::string>& names, const std::vector<std::string>& keep) {
  std::erase_if(names, [&](const std::string& n) { return !contains(keep, n); });
}

} // namespace

Result<std::vector<std::string>> docker_refs(const std::vector<std::string>& images) {
  std::vector<std::string> refs;
  for (const auto& ref : images) {
    auto name = format::normalize_image_name(ref);
    if (!name) {
      return std::unexpected(name.error().with_context(fmt::format("image \"{}\"", ref)));
    }
    if (is_staging_name(*name)) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("image \"{}\": localhost/kload-staging/ is kload's private staging namespace; no "
                                    "image is loaded under it",
                                    ref));
    }
    if (!contains(refs, ref)) {
      refs.push_back(ref);
    }
  }
  return refs;
}

std::string tagged_ref(const std::string& ref) {
  const auto slash = ref.rfind('/');
  const auto last = ref.substr(slash == std::string::npos ? 0 : slash + 1);
  if (last.find(':') != std::string::npos || last.find('@') != std::string::npos) {
    return ref;
  }
  return ref + ":latest";
}

Result<std::vector<DockerWanted>> wanted_images(const std::vector<source::DockerImage>& inspected,
                                                const std::optional<format::Platform>& platform) {
  std::vector<DockerWanted> out;
  for (const auto& d : inspected) {
    auto name = format::normalize_image_name(d.ref);
    if (!name || !contains(d.repo_tags, *name)) {
      return std::unexpected(untagged(d));
    }
    auto it = std::find_if(out.begin(), out.end(), [&](const DockerWanted& w) { return w.docker.id == d.id; });
    if (it == out.end()) {
      out.push_back(DockerWanted{d, {}, {}, !platform || d.platform.matches(*platform)});
      it = std::prev(out.end());
    }
    if (!contains(it->names, *name)) {
      it->names.push_back(*name);
      it->refs.push_back(tagged_ref(d.ref));
    }
  }
  return out;
}

namespace {

// The image ID Docker gave each of `wanted`, or an ID no record holds where
// --platform asks for another platform than Docker's, whose ID then says nothing (the
// load will likely send).
std::vector<util::Digest> image_ids(const std::vector<DockerWanted>& wanted) {
  std::vector<util::Digest> ids;
  for (const auto& w : wanted) {
    ids.push_back(w.platform_ok ? w.docker.id : util::Digest{});
  }
  return ids;
}

} // namespace

bool node_holds(const DockerWanted& w, const std::vector<node::ImageStatus>& statuses,
                const cache::NodeRecord* record) {
  return std::all_of(w.names.begin(), w.names.end(), [&](const std::string& name) {
    const auto it =
        std::find_if(statuses.begin(), statuses.end(), [&](const node::ImageStatus& s) { return s.name == name; });
    return it != statuses.end() && name_holds(w, *it, statuses, record);
  });
}

bool NodeCheck::holds_all() const {
  return !failed() && std::all_of(held.begin(), held.end(), [](bool b) { return b; });
}

NodeCheck precheck_node(const Target& target, const std::vector<DockerWanted>& wanted, cache::Cache* cache,
                        node::WireCompression wire) {
  const auto start = std::chrono::steady_clock::now();
  const auto started = unix_now();
  NodeCheck out;
  std::optional<cache::NodeRecord> record;
  if (cache != nullptr) {
    if (auto r = cache->node(target.uri.text); r && *r) {
      record = std::move(**r);
    }
  }
  const auto* known = record ? &*record : nullptr;
  auto probe = target.client->probe(first_probe_request(cache, known, target.uri, wire, image_ids(wanted)));
  if (!probe) {
    out.error = probe.error().message;
  } else {
    for (const auto& w : wanted) {
      out.held.push_back(node_holds(w, probe->images, known));
    }
    out.probe = std::make_shared<const EarlierProbe>(EarlierProbe{std::move(*probe), started});
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

SavePlan plan_save(const std::vector<DockerWanted>& wanted, const std::vector<NodeCheck>& checks) {
  SavePlan plan;
  for (std::size_t i = 0; i < checks.size(); ++i) {
    if (!checks[i].failed() && !checks[i].holds_all()) {
      plan.needy.push_back(i);
    }
  }
  for (std::size_t j = 0; j < wanted.size(); ++j) {
    const bool lacked = std::any_of(plan.needy.begin(), plan.needy.end(),
                                    [&](std::size_t i) { return j >= checks[i].held.size() || !checks[i].held[j]; });
    if (lacked) {
      plan.save.push_back(j);
      plan.save_refs.insert(plan.save_refs.end(), wanted[j].refs.begin(), wanted[j].refs.end());
    } else {
      plan.held.push_back(j);
    }
  }
  return plan;
}

Result<void> keep_wanted(format::ImageSet& set, const std::vector<DockerWanted>& wanted, const std::string& input) {
  std::vector<std::string> all;
  for (const auto& w : wanted) {
    all.insert(all.end(), w.names.begin(), w.names.end());
  }
  for (auto& image : set.images) {
    keep_names(image.names, all);
  }
  std::erase_if(set.images, [](const format::Image& i) { return i.names.empty(); });
  for (auto& u : set.unavailable) {
    keep_names(u.names, all);
  }
  std::erase_if(set.unavailable, [](const format::UnavailableImage& u) { return u.names.empty(); });
  for (const auto& name : all) {
    const auto named = [&](const auto& i) { return contains(i.names, name); };
    if (std::none_of(set.images.begin(), set.images.end(), named) &&
        std::none_of(set.unavailable.begin(), set.unavailable.end(), named)) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("{}: the archive Docker wrote has no image named {}", input, name));
    }
  }
  return {};
}

const format::Image* loaded_image(const std::vector<const format::Image*>& images, const DockerWanted& w) {
  for (const auto* i : images) {
    if (!w.names.empty() && contains(i->names, w.names.front())) {
      return i;
    }
  }
  return nullptr;
}

std::optional<Digest> config_of_index(const format::ImageSet& set, const DockerWanted& w,
                                      const format::Image& loaded) {
  if (loaded.id == w.docker.id || loaded.manifest.digest == w.docker.id ||
      !loaded.platform.matches(w.docker.platform)) {
    return std::nullopt;
  }
  const auto* blob = set.find(w.docker.id);
  if (blob == nullptr || !blob->where.memory || blob->computed != w.docker.id) {
    return std::nullopt;
  }
  const auto index = nlohmann::json::parse(*blob->where.memory, nullptr, false);
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return std::nullopt;
  }
  for (const auto& m : index["manifests"]) {
    if (m.is_object() && m.contains("digest") && m["digest"].is_string() &&
        m["digest"].get<std::string>() == loaded.manifest.digest.str()) {
      return loaded.id;
    }
  }
  return std::nullopt;
}

bool saved_as_inspected(const format::ImageSet& set, const DockerWanted& w, const format::Image& loaded) {
  return loaded.id == w.docker.id || loaded.manifest.digest == w.docker.id || config_of_index(set, w, loaded) ||
         !loaded.platform.matches(w.docker.platform);
}

void remember_index_configs(cache::Cache& cache, const format::ImageSet& set,
                            const std::vector<const format::Image*>& images, const std::vector<DockerWanted>& saved,
                            const std::vector<std::string>& ok_nodes) {
  for (const auto& w : saved) {
    const auto* image = loaded_image(images, w);
    const auto config = image != nullptr ? config_of_index(set, w, *image) : std::nullopt;
    if (!config) {
      continue;
    }
    for (const auto& uri : ok_nodes) {
      (void)cache.update_node(uri, [&](cache::NodeRecord& r) { r.target_ids[w.docker.id] = {*config}; });
    }
  }
}

} // namespace kload::load
