#include "kload/load/loader.h"

#include "kload/cache/cache.h"
#include "kload/format/oci_writer.h"
#include "kload/format/verify.h"
#include "kload/node/ctr_client.h"
#include "kload/util/parallel.h"
#include "kload/util/process.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <unistd.h>

namespace kload::load {

using util::Digest;

namespace {

constexpr std::string_view staging_prefix = "localhost/kload-staging/";

std::string make_nonce() {
  std::random_device rd;
  return fmt::format("{}-{}-{:08x}", static_cast<long>(std::time(nullptr)), ::getpid(), rd());
}

// Builds what the planner needs from a full inventory plus image statuses.
plan::NodeView view_from_inventory(const node::NodeInventory& inv, const std::vector<node::ImageStatus>& statuses) {
  plan::NodeView view;
  view.blobs = inv.blobs;
  auto ids_of = [&](const Digest& target) {
    std::vector<Digest> ids;
    if (auto it = inv.manifest_config.find(target); it != inv.manifest_config.end()) {
      ids.push_back(it->second);
    }
    if (auto it = inv.index_children.find(target); it != inv.index_children.end()) {
      for (const auto& child : it->second) {
        if (auto c = inv.manifest_config.find(child); c != inv.manifest_config.end()) {
          ids.push_back(c->second);
        }
      }
    }
    return ids;
  };
  for (const auto& s : statuses) {
    view.names[s.name] = plan::NamedImage{s.target, ids_of(s.target), s.complete};
  }
  return view;
}

// The view a single `images check` gives: a name counts as holding our image only
// when it points at exactly our manifest. Anything else needs the full inventory.
plan::NodeView view_from_check(const std::vector<const format::Image*>& images,
                               const std::vector<node::ImageStatus>& statuses) {
  plan::NodeView view;
  for (const auto& s : statuses) {
    plan::NamedImage named{s.target, {}, s.complete};
    for (const auto* image : images) {
      if (image->manifest.digest == s.target) {
        named.ids.push_back(image->id);
      }
    }
    view.names[s.name] = named;
  }
  return view;
}

// The view from a cached record, corrected by a fresh `images check` of the wanted
// names: the check is the truth for those names, the record a hint for the rest.
plan::NodeView view_from_record(const cache::NodeRecord& record, const std::vector<const format::Image*>& images,
                                const std::vector<std::string>& wanted,
                                const std::vector<node::ImageStatus>& statuses) {
  plan::NodeView view;
  view.blobs = record.blobs;
  for (const auto& [name, n] : record.names) {
    view.names[name] = plan::NamedImage{n.target, n.ids, n.complete};
  }
  for (const auto& name : wanted) {
    view.names.erase(name);
  }
  for (const auto& st : statuses) {
    plan::NamedImage named{st.target, {}, st.complete};
    if (auto it = record.target_ids.find(st.target); it != record.target_ids.end()) {
      named.ids = it->second;
    }
    for (const auto* image : images) {
      if (image->manifest.digest == st.target &&
          std::find(named.ids.begin(), named.ids.end(), image->id) == named.ids.end()) {
        named.ids.push_back(image->id);
      }
    }
    view.names[st.name] = named;
  }
  return view;
}

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::vector<std::string> all_names(const std::vector<const format::Image*>& images) {
  std::vector<std::string> names;
  for (const auto* image : images) {
    names.insert(names.end(), image->names.begin(), image->names.end());
  }
  return names;
}

class NodeLoader {
public:
  NodeLoader(format::ImageSet& set, const std::vector<const format::Image*>& images, const Target& target,
             Observer& observer, std::mutex& verify_mutex, cache::Cache* cache)
      : set_(set), images_(images), target_(target), client_(*target.transport), observer_(observer),
        verify_mutex_(verify_mutex), cache_(cache) {
    report_.node = target.uri.display();
    report_.uri = target.uri.text;
  }

  // Phase 1: find out what the node has and plan. False when the node failed.
  bool plan() {
    const auto start = std::chrono::steady_clock::now();
    const bool ok = plan_node_now();
    report_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return ok;
  }

  [[nodiscard]] const plan::NodePlan& node_plan() const { return plan_; }
  [[nodiscard]] bool ok() const { return report_.status == NodeStatus::ok; }

  // Lists the node and stores what it holds in the cache.
  util::Result<void> refresh() {
    if (!full_inventory()) {
      return util::fail(util::ErrorKind::node, report_.error);
    }
    return {};
  }

private:
  bool plan_node_now() {
    ++report_.ctr_calls;
    auto quick = client_.check(all_names(images_));
    if (!quick) {
      return failed(quick.error().message);
    }
    plan_ = plan::plan_node(images_, view_from_check(images_, *quick));
    if (plan_.nothing_to_do()) {
      observer_.planned(report_.node, plan_);
      return true;
    }
    if (plan_from_cache(*quick)) {
      observer_.planned(report_.node, plan_);
      return true;
    }
    if (!full_inventory()) {
      return false;
    }
    observer_.planned(report_.node, plan_);
    return true;
  }

  // Plans from the cached record when there is one from this node's current life
  // (same containerd UUID): no listing. Mistakes surface at import or tag time and
  // lead to one re-listing and retry.
  bool plan_from_cache(const std::vector<node::ImageStatus>& quick) {
    if (cache_ == nullptr) {
      return false;
    }
    auto record = cache_->node(target_.uri.text);
    if (!record || !*record || (*record)->listed_at == 0 || (*record)->interrupted_load()) {
      return false;
    }
    ++report_.ctr_calls;
    auto uuid = client_.server_uuid();
    if (!uuid || *uuid != (*record)->server_uuid) {
      return false;  // a recreated node, or no answer: list it (which reports errors)
    }
    plan_ = plan::plan_node(images_, view_from_record(**record, images_, all_names(images_), quick));
    from_cache_ = true;
    return true;
  }

public:
  // Phase 2: send and commit. Returns the final report.
  NodeReport execute(DryRun dry_run) {
    const auto start = std::chrono::steady_clock::now();
    if (ok() && dry_run == DryRun::no) {
      run_plan();
    }
    if (ok()) {
      for (const auto& step : plan_.steps) {
        report_.images.push_back(ImageOutcome{step.image, step.action, step.names, step.retag_from});
      }
      report_.layers_skipped = plan_.skipped_layers;
      report_.bytes_skipped = plan_.skipped_bytes;
    }
    report_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report_;
  }

  NodeReport& report() { return report_; }

private:
  bool failed(const std::string& message) {
    report_.status = NodeStatus::failed;
    report_.error = message;
    return false;
  }

  // Lists the node's content and images, and plans from that.
  bool full_inventory() {
    report_.ctr_calls += 4;  // version, content ls, images ls, images check
    const auto listing_started = unix_now();
    auto inv = client_.inventory();
    if (!inv) {
      return failed(inv.error().message);
    }
    auto statuses = client_.check({});
    if (!statuses) {
      return failed(statuses.error().message);
    }
    remove_stale_staging(*statuses);
    const auto view = view_from_inventory(*inv, *statuses);
    plan_ = plan::plan_node(images_, view);
    from_cache_ = false;
    ++report_.listings;
    if (cache_ != nullptr) {
      cache::NodeRecord record;
      record.server_uuid = inv->server_uuid;
      record.listed_at = unix_now();
      record.blobs = view.blobs;
      for (const auto& [name, named] : view.names) {
        if (!is_staging_name(name)) {
          record.names[name] = cache::NameRecord{named.target, named.ids, named.complete, false, record.listed_at};
        }
        record.target_ids[named.target] = named.ids;
      }
      // What each listed manifest (and index) needs, so that re-pointing a name later
      // tells the cache which blobs GC will take.
      for (const auto& [manifest, config] : inv->manifest_config) {
        auto& blobs = record.target_blobs[manifest];
        blobs = {manifest, config};
        if (auto it = inv->manifest_layers.find(manifest); it != inv->manifest_layers.end()) {
          blobs.insert(blobs.end(), it->second.begin(), it->second.end());
        }
      }
      for (const auto& [index, children] : inv->index_children) {
        auto& blobs = record.target_blobs[index];
        blobs = {index};
        for (const auto& child : children) {
          if (auto it = record.target_blobs.find(child); it != record.target_blobs.end()) {
            blobs.insert(blobs.end(), it->second.begin(), it->second.end());
          }
        }
      }
      // Keeps the marks of loads still sending (their blobs may postdate this listing);
      // a cache that cannot be written is only slower.
      (void)cache_->update_node(target_.uri.text, [&](cache::NodeRecord& r) {
        r.forget_interrupted_loads();
        record.sending = std::move(r.sending);
        if (r.server_uuid == record.server_uuid && r.updated_at >= listing_started) {
          // Another load recorded what it sent while this listing ran: keep that, or
          // the older listing would hide it.
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
    return true;
  }

  // Staging names left by a run that died more than an hour ago.
  void remove_stale_staging(const std::vector<node::ImageStatus>& statuses) {
    std::vector<std::string> stale;
    const auto now = static_cast<long>(std::time(nullptr));
    for (const auto& s : statuses) {
      if (!is_staging_name(s.name)) {
        continue;
      }
      const auto colon = s.name.rfind(':');
      const long when = colon == std::string::npos ? 0 : std::atol(s.name.c_str() + colon + 1);
      if (now - when > 3600) {
        stale.push_back(s.name);
      }
    }
    if (!stale.empty()) {
      ++report_.ctr_calls;
      (void)client_.remove(stale); // best effort: a leftover name is harmless
    }
  }

  void run_plan() {
    if (plan_.count(plan::Action::send) > 0 && !send_and_commit()) {
      return;
    }
    for (const auto& step : plan_.steps) {
      if (step.action != plan::Action::retag) {
        continue;
      }
      for (const auto& name : step.names) {
        ++report_.ctr_calls;
        if (auto r = client_.tag(step.retag_from, name); !r) {
          if (from_cache_ && !report_.retried) {
            // The cached source name may be gone: list the node and start over once.
            report_.retried = true;
            if (full_inventory()) {
              run_plan();
            }
            return;
          }
          failed(r.error().message);
          return;
        }
      }
    }
    if (confirm()) {
      remember();
    }
  }

  // Marks the node's record before the first blob goes out: if this process dies
  // before remember(), the next load lists the node rather than trusting a record
  // that misses what arrived.
  void mark_sending() {
    if (cache_ == nullptr) {
      return;
    }
    const auto token = util::own_process_token();
    (void)cache_->update_node(target_.uri.text, [&](cache::NodeRecord& r) {
      if (std::find(r.sending.begin(), r.sending.end(), token) == r.sending.end()) {
        r.sending.push_back(token);
      }
    });
  }

  // Records in the cache what this load put on the node.
  void remember() {
    if (cache_ == nullptr) {
      return;
    }
    const auto now = unix_now();
    (void)cache_->update_node(target_.uri.text, [&](cache::NodeRecord& r) {
      for (const auto& step : plan_.steps) {
        const auto& image = *step.image;
        if (step.action == plan::Action::send) {
          for (const auto& d : format::ImageSet::blobs_of(image)) {
            r.blobs.insert(d);
          }
          r.target_ids[image.manifest.digest] = {image.id};
          r.target_blobs[image.manifest.digest] = format::ImageSet::blobs_of(image);
        }
        const auto target = step.action == plan::Action::retag && r.names.contains(step.retag_from)
                                ? r.names[step.retag_from].target
                                : image.manifest.digest;
        for (const auto& name : step.names) {
          r.names[name] = cache::NameRecord{target, {image.id}, true, true, now};
        }
      }
      r.forget_unreferenced();
      std::erase(r.sending, util::own_process_token());
    });
  }

  bool send_and_commit() {
    if (!snapshotter_) {
      if (!target_.uri.snapshotter.empty()) {
        snapshotter_ = target_.uri.snapshotter;
      } else {
        ++report_.ctr_calls;
        auto s = client_.snapshotter();
        if (!s) {
          return failed(s.error().message);
        }
        snapshotter_ = *s;
      }
    }
    mark_sending();
    std::vector<std::string> kept_staging;  // from a first attempt, until the retry ends
    for (int attempt = 0; attempt < 2; ++attempt) {
      const auto nonce = make_nonce();
      std::vector<format::ThinEntry> entries;
      for (const auto& step : plan_.steps) {
        if (step.action == plan::Action::send) {
          entries.push_back(format::ThinEntry{step.image, staging_name(*step.image, nonce)});
        }
      }
      const std::unordered_set<Digest> layers(plan_.layers.begin(), plan_.layers.end());
      std::optional<format::ThinStats> stats;
      std::optional<util::Error> write_error;
      const auto total = plan_.layer_bytes;
      std::uint64_t streamed = 0;  // layer bytes written, also when the stream broke
      auto feed = [&](int fd) -> util::Result<void> {
        auto r = format::write_thin_archive(fd, set_, entries, layers, [&](std::uint64_t done) {
          streamed = done;
          observer_.progress(report_.node, done, total);
        });
        if (!r) {
          write_error = r.error();
          return std::unexpected(r.error());
        }
        stats = *r;
        return {};
      };
      ++report_.ctr_calls;
      auto imported = client_.import(feed, *snapshotter_, node::AllPlatforms::no);
      std::vector<std::string> staging = kept_staging;
      for (const auto& e : entries) {
        staging.push_back(e.ref);
      }
      if (stats) {
        report_.layers_sent += stats->layers_sent;
        report_.layer_bytes_sent += stats->layer_bytes;
        report_.bytes_sent += stats->total_bytes;
      } else {
        report_.layer_bytes_sent += streamed;
        report_.bytes_sent += streamed;
      }
      std::optional<util::Digest> missing;
      if (imported) {
        // ctr can succeed and still leave an incomplete image (a blob the node was
        // thought to hold is gone, but its snapshot is there): check before commit.
        std::vector<std::string> current;
        for (const auto& e : entries) {
          current.push_back(e.ref);
        }
        ++report_.ctr_calls;
        auto statuses = client_.check(current);
        if (!statuses) {
          ++report_.ctr_calls;
          (void)client_.remove(staging);
          return failed(statuses.error().message);
        }
        for (const auto& ref : current) {
          const auto it = std::find_if(statuses->begin(), statuses->end(),
                                       [&](const node::ImageStatus& st) { return st.name == ref; });
          if (it == statuses->end() || !it->complete) {
            missing = util::Digest{};
          }
        }
      }
      if (!imported || missing) {
        const bool stale = missing || imported.error().failure == node::ImportFailure::missing_content;
        if (stale && attempt == 0 && !(write_error && write_error->kind == util::ErrorKind::bad_input)) {
          // The import may have created image records pointing at an incomplete
          // image, under staging names only. They stay until the retry is done: they
          // hold what did arrive, which GC would otherwise take while we re-list.
          kept_staging = staging;
          // The node lost a blob since it was listed (GC, crictl rmi, discarded
          // layers): list again and retry once.
          report_.retried = true;
          if (!full_inventory()) {
            ++report_.ctr_calls;
            (void)client_.remove(staging);
            return false;
          }
          if (plan_.count(plan::Action::send) == 0) {
            ++report_.ctr_calls;
            (void)client_.remove(staging);
            return true;
          }
          // The new plan may need blobs no node needed before: prove them first.
          std::vector<Digest> more(plan_.layers.begin(), plan_.layers.end());
          std::lock_guard lock(verify_mutex_);
          if (auto v = format::verify_blobs(set_, more, 1); !v) {
            ++report_.ctr_calls;
            (void)client_.remove(staging);
            return failed(v.error().message);
          }
          continue;
        }
        // Incomplete records carry staging names only, and go now.
        ++report_.ctr_calls;
        (void)client_.remove(staging);
        if (write_error && write_error->kind == util::ErrorKind::bad_input) {
          return failed(write_error->message);
        }
        if (missing) {
          return failed(fmt::format("node {}: the image is still incomplete after re-listing the node's content "
                                    "and retrying",
                                    report_.node));
        }
        return failed(imported.error().error.message);
      }
      // Commit: point every real name at the now complete image, then drop staging.
      // A second, tiny import (manifests and configs only, every blob is there now)
      // does it: containerd's importer updates an existing name's target in one
      // step, where `ctr images tag --force` deletes the name and creates it again,
      // leaving a moment without it and losing it if the second step fails.
      std::vector<format::ThinEntry> commits;
      for (const auto& step : plan_.steps) {
        if (step.action != plan::Action::send) {
          continue;
        }
        for (const auto& name : step.names) {
          commits.push_back(format::ThinEntry{step.image, name});
        }
      }
      auto commit_feed = [&](int fd) -> util::Result<void> {
        auto r = format::write_thin_archive(fd, set_, commits, {});
        if (!r) {
          return std::unexpected(r.error());
        }
        report_.bytes_sent += r->total_bytes;
        return {};
      };
      ++report_.ctr_calls;
      if (auto r = client_.import(commit_feed, *snapshotter_, node::AllPlatforms::no); !r) {
        ++report_.ctr_calls;
        (void)client_.remove(staging);
        return failed(r.error().error.message);
      }
      ++report_.ctr_calls;
      if (auto r = client_.remove(staging); !r) {
        return failed(r.error().message);
      }
      return true;
    }
    return true;
  }

  // After commit, every name must resolve to a complete image with the right ID.
  bool confirm() {
    std::vector<std::string> names;
    for (const auto& step : plan_.steps) {
      if (step.action != plan::Action::skip) {
        names.insert(names.end(), step.names.begin(), step.names.end());
      }
    }
    if (names.empty()) {
      return true;
    }
    ++report_.ctr_calls;
    auto statuses = client_.check(names);
    if (!statuses) {
      failed(statuses.error().message);
      return false;
    }
    for (const auto& step : plan_.steps) {
      for (const auto& name : step.names) {
        const auto it = std::find_if(statuses->begin(), statuses->end(),
                                     [&](const node::ImageStatus& s) { return s.name == name; });
        if (it == statuses->end()) {
          failed(fmt::format("node {}: {} is missing after the load", report_.node, name));
          return false;
        }
        if (!it->complete) {
          failed(fmt::format("node {}: {} is incomplete after the load", report_.node, name));
          return false;
        }
        if (step.action == plan::Action::send && it->target != step.image->manifest.digest) {
          failed(fmt::format("node {}: {} points at {}, expected {}", report_.node, name, it->target.str(),
                             step.image->manifest.digest.str()));
          return false;
        }
      }
    }
    return true;
  }

  format::ImageSet& set_;
  const std::vector<const format::Image*>& images_;
  const Target& target_;
  node::CtrClient client_;
  Observer& observer_;
  std::mutex& verify_mutex_;
  cache::Cache* cache_;
  bool from_cache_ = false;  // the plan came from the cache, not a listing
  plan::NodePlan plan_;
  NodeReport report_;
  std::optional<std::string> snapshotter_;
};

} // namespace

bool LoadReport::all_ok() const {
  return std::all_of(nodes.begin(), nodes.end(), [](const NodeReport& n) { return n.status == NodeStatus::ok; });
}

util::Result<void> refresh_node(const Target& target, cache::Cache& cache) {
  format::ImageSet set;
  const std::vector<const format::Image*> none;
  std::mutex verify_mutex;
  struct Quiet final : Observer {
    void planned(const std::string&, const plan::NodePlan&) override {}
    void progress(const std::string&, std::uint64_t, std::uint64_t) override {}
    void finished(const NodeReport&) override {}
  } quiet;
  NodeLoader loader(set, none, target, quiet, verify_mutex, &cache);
  return loader.refresh();
}

std::string staging_name(const format::Image& image, const std::string& nonce) {
  return fmt::format("{}{}:{}", staging_prefix, image.id.short_hex(), nonce);
}

bool is_staging_name(const std::string& name) { return name.starts_with(staging_prefix); }

util::Result<LoadReport> load(format::ImageSet& set, const std::vector<const format::Image*>& images,
                              const std::vector<Target>& targets, const LoadOptions& options, Observer& observer) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<NodeLoader>> loaders;
  std::mutex verify_mutex;
  for (const auto& t : targets) {
    loaders.push_back(std::make_unique<NodeLoader>(set, images, t, observer, verify_mutex, options.cache));
  }
  // Phase 1: every node's inventory and plan, in parallel.
  util::parallel_for(loaders.size(), options.jobs, [&](std::size_t i) { loaders[i]->plan(); });

  // Phase 2: prove every blob some node will receive, once, before anything is sent.
  std::vector<Digest> to_send;
  std::unordered_set<Digest> seen;
  for (const auto& l : loaders) {
    if (!l->ok()) {
      continue;
    }
    for (const auto& step : l->node_plan().steps) {
      if (step.action != plan::Action::send) {
        continue;
      }
      for (const auto& d : {step.image->manifest.digest, step.image->config.digest}) {
        if (seen.insert(d).second) {
          to_send.push_back(d);
        }
      }
    }
    for (const auto& d : l->node_plan().layers) {
      if (seen.insert(d).second) {
        to_send.push_back(d);
      }
    }
  }
  LoadReport report;
  auto verified = format::verify_blobs(set, to_send, std::min(options.jobs, util::default_jobs()));
  if (!verified) {
    return std::unexpected(verified.error());
  }
  report.blobs_hashed = verified->blobs_hashed;
  report.bytes_hashed = verified->bytes_hashed;

  // Phase 3: send and commit, nodes in parallel.
  report.nodes.resize(loaders.size());
  util::parallel_for(loaders.size(), options.jobs, [&](std::size_t i) {
    report.nodes[i] = loaders[i]->execute(options.dry_run);
    observer.finished(report.nodes[i]);
  });
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

} // namespace kload::load
