// `kload docker-image`: images from the local Docker engine, saved only when some
// node lacks something.
//
// Passes:
//   1. nodes: --node URIs, or the kind cluster's node containers
//   2. inspect: one `docker image inspect` of every image: IDs, tags, platform
//   3. pre-check: one `ctr images check` per node, in parallel: does every name
//      already point, complete, at this image?
//   4. save: only if some node said no, one `docker save` of the images lacked, read
//      once as a stream
//   5. load: load::load of those images into exactly the nodes that said no; its plan
//      skips, retags or sends per image, as for image-archive
//   6. remember (cache): which config a containerd-store index stands for, so the
//      next pre-check recognises the image without a save

#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/format/image_ref.h"
#include "kload/load/loader.h"
#include "kload/node/ctr_client.h"
#include "kload/plan/planner.h"
#include "kload/source/docker.h"
#include "kload/util/human.h"
#include "kload/util/parallel.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kload::cli {

using util::Digest;
using util::Result;

namespace {

// One image as asked for: a Docker image and the names it is to have on the nodes.
struct Wanted {
  source::DockerImage docker;     // what inspect said (the first ref naming it)
  std::vector<std::string> refs;  // every ref the user gave for it, tagged for `docker save`
  std::vector<std::string> names; // normalised: what the nodes' names must point at
  // False when --platform asks for another platform than the one inspect describes:
  // Docker's ID then says nothing about what is to be loaded.
  bool platform_ok = true;
};

// What the pre-check learned about one node.
struct NodeCheck {
  bool failed = false;
  std::string error;
  std::vector<bool> held; // per wanted image: every name of it points at it, complete
  bool holds_all = false;
  double seconds = 0;
};

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

bool contains(const std::vector<Digest>& v, const Digest& d) {
  return std::find(v.begin(), v.end(), d) != v.end();
}

// `ref` with ":latest" when it names no tag or digest. Docker saves every tag of a
// repository named without one; the tag keeps the save to what was asked for.
std::string tagged(const std::string& ref) {
  const auto slash = ref.rfind('/');
  const auto last = ref.substr(slash == std::string::npos ? 0 : slash + 1);
  if (last.find(':') != std::string::npos || last.find('@') != std::string::npos) {
    return ref;
  }
  return ref + ":latest";
}

// The images to load: Docker's answer grouped per image ID, with the names to set.
// Error (bad_input): a ref that is no valid name. Error (usage): a ref that is not one
// of its image's tags (an image ID or a digest: neither gives a name to set).
Result<std::vector<Wanted>> wanted_images(const std::vector<source::DockerImage>& inspected,
                                          const std::optional<format::Platform>& platform) {
  std::vector<Wanted> out;
  for (const auto& d : inspected) {
    auto name = format::normalize_image_name(d.ref);
    if (!name || !std::count(d.repo_tags.begin(), d.repo_tags.end(), *name)) {
      return util::fail(util::ErrorKind::usage,
                        d.repo_tags.empty()
                            ? fmt::format("\"{}\" ({}) has no tag in Docker, so there is no name to load it under; "
                                          "give it one first: docker tag {} NAME:TAG",
                                          d.ref, d.id.short_hex(), d.ref)
                            : fmt::format("\"{}\" is not one of the image's tags in Docker (an ID or a digest?); name "
                                          "it by a tag, which is what kload sets on the nodes: {}",
                                          d.ref, d.repo_tags.front()));
    }
    auto it = std::find_if(out.begin(), out.end(), [&](const Wanted& w) { return w.docker.id == d.id; });
    if (it == out.end()) {
      Wanted w;
      w.docker = d;
      w.platform_ok = !platform || d.platform.matches(*platform);
      out.push_back(std::move(w));
      it = std::prev(out.end());
    }
    if (!std::count(it->names.begin(), it->names.end(), *name)) {
      it->names.push_back(*name);
      it->refs.push_back(tagged(d.ref));
    }
  }
  return out;
}

// Whether a fresh `images check` row for a wanted name shows the node holding the
// Docker image, complete. Only content-addressed facts are used, so a cached one is
// never stale: a manifest digest fixes its config, an index digest its children.
//   - The name points at Docker's ID itself (containerd store: .Id is the manifest
//     or index digest, and a full `ctr import` keeps the index as the target).
//   - CRI's "sha256:<ID>" ref (kind nodes add one for every image, naming its config
//     digest) points at the same manifest: the classic store's ID, on any cache.
//   - The cache maps the name's target to its config, and that is Docker's ID
//     (classic store) or the config kload loaded for Docker's index (containerd store).
bool holds(const Wanted& w, const node::ImageStatus& status, const std::vector<node::ImageStatus>& statuses,
           const cache::NodeRecord* record) {
  const auto& id = w.docker.id;
  if (!status.complete || !w.platform_ok) {
    return false; // another platform than inspect describes: the loader decides, after a save
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
  const auto stands_for = record->target_ids.find(id);
  return stands_for != record->target_ids.end() &&
         std::any_of(stands_for->second.begin(), stands_for->second.end(),
                     [&](const Digest& c) { return contains(held->second, c); });
}

// Asks one node (one `ctr images check`) which wanted images it holds.
NodeCheck check_node(node::NodeClient& client, const std::string& key, const std::vector<Wanted>& wanted,
                     cache::Cache* cache) {
  const auto start = std::chrono::steady_clock::now();
  NodeCheck out;
  std::vector<std::string> names;
  for (const auto& w : wanted) {
    names.insert(names.end(), w.names.begin(), w.names.end());
  }
  for (const auto& w : wanted) {
    names.push_back(w.docker.id.str());
  }
  auto statuses = client.check(names);
  if (!statuses) {
    out.failed = true;
    out.error = statuses.error().message;
  } else {
    std::optional<cache::NodeRecord> record;
    if (cache != nullptr) {
      if (auto r = cache->node(key); r && *r) {
        record = std::move(**r);
      }
    }
    for (const auto& w : wanted) {
      out.held.push_back(std::all_of(w.names.begin(), w.names.end(), [&](const std::string& name) {
        const auto it = std::find_if(statuses->begin(), statuses->end(),
                                     [&](const node::ImageStatus& s) { return s.name == name; });
        return it != statuses->end() && holds(w, *it, *statuses, record ? &*record : nullptr);
      }));
    }
    out.holds_all = std::all_of(out.held.begin(), out.held.end(), [](bool b) { return b; });
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

// Keeps the saved images that carry a wanted name, each with only the wanted names.
// Error (bad_input): a wanted name that no saved image carries.
Result<void> keep_wanted(format::ImageSet& set, const std::vector<Wanted>& wanted, const std::string& input) {
  std::vector<std::string> all;
  for (const auto& w : wanted) {
    all.insert(all.end(), w.names.begin(), w.names.end());
  }
  for (auto& image : set.images) {
    std::erase_if(image.names, [&](const std::string& n) { return !std::count(all.begin(), all.end(), n); });
  }
  std::erase_if(set.images, [](const format::Image& i) { return i.names.empty(); });
  for (auto& u : set.unavailable) {
    std::erase_if(u.names, [&](const std::string& n) { return !std::count(all.begin(), all.end(), n); });
  }
  std::erase_if(set.unavailable, [](const format::UnavailableImage& u) { return u.names.empty(); });
  for (const auto& name : all) {
    const auto named = [&](const auto& i) { return std::count(i.names.begin(), i.names.end(), name) > 0; };
    if (std::none_of(set.images.begin(), set.images.end(), named) &&
        std::none_of(set.unavailable.begin(), set.unavailable.end(), named)) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("{}: the archive Docker wrote has no image named {}", input, name));
    }
  }
  return {};
}

// The config digest a containerd-store index stands for, when the saved archive
// proves it: the index blob itself (hashed as it streamed by) lists the manifest of
// the image that was loaded, on the platform inspect described.
std::optional<Digest> config_of_index(const format::ImageSet& set, const Wanted& w, const format::Image& loaded) {
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

// True when the saved image is the one inspect described: Docker's ID is its config
// (classic store), its manifest, or an index in the archive listing its manifest
// (containerd store). False when the tag moved between inspect and save.
bool saved_as_inspected(const format::ImageSet& set, const Wanted& w, const format::Image& loaded) {
  return loaded.id == w.docker.id || loaded.manifest.digest == w.docker.id || config_of_index(set, w, loaded) ||
         !loaded.platform.matches(w.docker.platform);
}

const format::Image* loaded_image(const std::vector<const format::Image*>& images, const Wanted& w) {
  for (const auto* i : images) {
    if (std::count(i->names.begin(), i->names.end(), w.names.front())) {
      return i;
    }
  }
  return nullptr;
}

// A Docker image as the pre-check's report shows it: its names and Docker's ID.
format::Image stand_in(const Wanted& w) {
  format::Image image;
  image.names = w.names;
  image.id = w.docker.id;
  image.platform = w.docker.platform;
  image.source = "docker";
  return image;
}

} // namespace

Result<int> docker_image(const DockerImageOptions& options, Console& console) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  util::SystemProcessRunner runner;

  // 1. Nodes.
  auto uris = select_nodes(NodeSelection{options.nodes, options.cluster, options.kind_nodes}, runner, console);
  if (!uris) {
    return std::unexpected(uris.error());
  }

  // 2. What Docker has: one inspect for every image.
  std::vector<std::string> refs;
  for (const auto& ref : options.images) {
    if (auto n = format::normalize_image_name(ref); !n) {
      return std::unexpected(n.error().with_context(fmt::format("image \"{}\"", ref)));
    }
    if (!std::count(refs.begin(), refs.end(), ref)) {
      refs.push_back(ref);
    }
  }
  auto inspected = source::inspect_images(refs, runner);
  if (!inspected) {
    return std::unexpected(inspected.error());
  }
  auto wanted = wanted_images(*inspected, options.platform);
  if (!wanted) {
    return std::unexpected(wanted.error());
  }

  // 3. Pre-check every node, in parallel: one `ctr images check` each.
  auto cache = open_cache(options.no_cache, options.cache_dir, console);
  std::vector<std::unique_ptr<node::Transport>> transports;
  std::vector<std::unique_ptr<node::CtrClient>> clients;
  for (const auto& uri : *uris) {
    transports.push_back(node::make_transport(uri, runner));
    clients.push_back(std::make_unique<node::CtrClient>(*transports.back()));
  }
  std::vector<NodeCheck> checks(uris->size());
  util::parallel_for(checks.size(), options.jobs, [&](std::size_t i) {
    checks[i] = check_node(*clients[i], (*uris)[i].text, *wanted, cache.get());
  });

  // Reports for the nodes the pre-check settled: they hold everything, or failed.
  std::vector<format::Image> stand_ins;
  stand_ins.reserve(wanted->size());
  for (const auto& w : *wanted) {
    stand_ins.push_back(stand_in(w));
  }
  auto observer = make_console_observer(console);
  load::LoadReport report;
  report.nodes.resize(uris->size());
  std::vector<load::Target> needy;
  std::vector<std::size_t> needy_at;
  for (std::size_t i = 0; i < uris->size(); ++i) {
    auto& r = report.nodes[i];
    r.node = (*uris)[i].display();
    r.uri = (*uris)[i].text;
    r.ctr_calls = 1;
    r.seconds = checks[i].seconds;
    if (checks[i].failed) {
      r.status = load::NodeStatus::failed;
      r.error = checks[i].error;
      observer->finished(r);
    } else if (checks[i].holds_all) {
      plan::NodePlan plan;
      for (const auto& image : stand_ins) {
        plan.steps.push_back(plan::ImageStep{&image, plan::Action::skip, "", {}});
        r.images.push_back(load::ImageOutcome{&image, plan::Action::skip, {}, ""});
      }
      observer->planned(r.node, plan);
      observer->finished(r);
    } else {
      needy.push_back(load::Target{(*uris)[i], clients[i].get()});
      needy_at.push_back(i);
    }
  }
  if (needy.empty()) {
    report.seconds = elapsed();
    return print_load_report(report, LoadSummary{wanted->size(), options.dry_run, options.json, false}, console);
  }

  // 4. Save, once, the images some node lacks (an unchanged sidecar next to a rebuilt
  // app is not saved).
  std::vector<Wanted> to_save;
  std::vector<const format::Image*> not_saved;
  for (std::size_t j = 0; j < wanted->size(); ++j) {
    const bool lacked =
        std::any_of(needy_at.begin(), needy_at.end(), [&](std::size_t i) { return !checks[i].held[j]; });
    if (lacked) {
      to_save.push_back((*wanted)[j]);
    } else {
      not_saved.push_back(&stand_ins[j]);
    }
  }
  std::vector<std::string> save_refs;
  for (const auto& w : to_save) {
    save_refs.insert(save_refs.end(), w.refs.begin(), w.refs.end());
  }
  const std::string input = "docker save " + joined(save_refs);
  console.line(fmt::format("{}: needed by {} of {} node(s)", input, needy.size(), uris->size()));
  const auto save_start = std::chrono::steady_clock::now();
  auto saved = source::save_images(save_refs);
  if (!saved) {
    return std::unexpected(saved.error());
  }
  console.line(fmt::format(
      "docker save: read {} in {}", util::human_bytes(saved->stats.bytes_expanded),
      util::human_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - save_start).count())));
  auto& set = saved->set;
  if (auto kept = keep_wanted(set, to_save, input); !kept) {
    return std::unexpected(kept.error());
  }
  auto images = plan::select_images(set, options.platform);
  if (!images) {
    return std::unexpected(images.error());
  }
  for (const auto& w : to_save) {
    const auto* loaded = loaded_image(*images, w);
    if (loaded != nullptr && w.platform_ok && !saved_as_inspected(set, w, *loaded)) {
      console.warn(fmt::format("{} changed in Docker while kload ran (inspect said {}, docker save wrote {}); loading "
                               "what was saved",
                               w.names.front(), w.docker.id.str(), loaded->id.str()));
    }
  }

  // 5. Load into the nodes that lack something; the loader plans each of them afresh.
  // What it was not given, they hold (the pre-check said so).
  load::LoadOptions load_options;
  load_options.jobs = options.jobs;
  load_options.dry_run = options.dry_run ? load::DryRun::yes : load::DryRun::no;
  load_options.cache = cache.get();
  auto loaded = load::load(set, *images, needy, load_options, *observer);
  if (!loaded) {
    return std::unexpected(loaded.error());
  }
  for (std::size_t k = 0; k < needy_at.size(); ++k) {
    auto& r = report.nodes[needy_at[k]];
    const double precheck_seconds = r.seconds;
    r = loaded->nodes[k];  // its ctr_calls count the pre-check too: the client is the same
    r.seconds += precheck_seconds;
    for (const auto* image : not_saved) {
      r.images.push_back(load::ImageOutcome{image, plan::Action::skip, {}, ""});
    }
  }
  report.blobs_hashed = loaded->blobs_hashed;
  report.bytes_hashed = loaded->bytes_hashed;

  // 6. Remember which config each containerd-store index stands for on the nodes now
  // holding it, so the next pre-check recognises it (kind issue 4236).
  if (cache && !options.dry_run) {
    for (const auto& w : to_save) {
      const auto* image = loaded_image(*images, w);
      const auto config = image != nullptr ? config_of_index(set, w, *image) : std::nullopt;
      if (!config) {
        continue;
      }
      for (std::size_t k = 0; k < needy.size(); ++k) {
        if (loaded->nodes[k].status == load::NodeStatus::ok) {
          (void)cache->update_node(needy[k].uri.text,
                                   [&](cache::NodeRecord& r) { r.target_ids[w.docker.id] = {*config}; });
        }
      }
    }
  }
  report.seconds = elapsed();
  return print_load_report(report, LoadSummary{wanted->size(), options.dry_run, options.json, true}, console);
}

} // namespace kload::cli
