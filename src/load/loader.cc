#include "kload/load/loader.h"

#include "kload/cache/cache.h"
#include "kload/format/oci_writer.h"
#include "kload/format/verify.h"
#include "kload/util/parallel.h"
#include "kload/util/process.h"
#include "kload/util/temp_dir.h"
#include "kload/util/zstd_stream.h"

#include "node_record.h"
#include "spool.h"
#include "staging.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <utility>

namespace kload::load {

using util::Digest;

namespace {

const node::ImageStatus* find_status(const std::vector<node::ImageStatus>& statuses, const std::string& name) {
  const auto it = std::find_if(statuses.begin(), statuses.end(),
                               [&](const node::ImageStatus& s) { return s.name == name; });
  return it == statuses.end() ? nullptr : &*it;
}

// The blobs a plan sends from here: the metadata (indexes, manifests, configs) of the
// images sent or retagged, and the layers, unless the node pulls them from a registry
// (`via`; the push proves what it uploads).
std::vector<Digest> blobs_to_send(const plan::NodePlan& plan, const Via* via) {
  std::vector<Digest> blobs;
  for (const auto& step : plan.steps) {
    if (step.action != plan::Action::skip) {  // a retag may be a commit import too
      const auto metadata = format::ImageSet::metadata_of(*step.image);
      blobs.insert(blobs.end(), metadata.begin(), metadata.end());
    }
  }
  if (via == nullptr) {
    blobs.insert(blobs.end(), plan.layers.begin(), plan.layers.end());
  }
  return blobs;
}

// Whether a node's record can be planned from: listed once, no load that died while
// sending. Whether it is still this node, the UUID says.
bool plannable(const cache::NodeRecord& record) { return record.listed_at != 0 && !record.interrupted_load(); }

// The cache's record of node `uri`, if it has one.
std::optional<cache::NodeRecord> stored_record(cache::Cache* cache, const std::string& uri) {
  if (cache == nullptr) {
    return std::nullopt;
  }
  auto record = cache->node(uri);
  if (!record || !*record) {
    return std::nullopt;
  }
  return std::move(**record);
}

// Whether probe `p` holds all that `want` asks.
bool answers(const node::Probe& p, const node::ProbeRequest& want) {
  return (!want.uuid || p.uuid) && (!want.inventory || p.inventory) && (!want.snapshotter || p.snapshotter) &&
         (!want.zstd || p.zstd);
}

// What the nodes of one load share: the import streams' bodies, and the blobs their
// writers proved (hashed on the way and matching), which the load records in the set
// (Blob::computed) once every stream is done: no stream reads one another writes.
struct Shared {
  Spools spools;
  std::mutex proven_mutex;
  std::unordered_set<Digest> proven;

  void add_proven(const std::vector<Digest>& digests) {
    const std::lock_guard lock(proven_mutex);
    proven.insert(digests.begin(), digests.end());
  }
};

// The image IDs of `images`, in order.
std::vector<Digest> image_ids(const std::vector<const format::Image*>& images) {
  std::vector<Digest> ids;
  for (const auto* image : images) {
    ids.push_back(image->id);
  }
  return ids;
}

// Whether every layer of `image` is among the `layers` a stream carries (its indexes,
// manifest and config always are).
bool carried_whole(const format::Image& image, const std::unordered_set<util::Digest>& layers) {
  return std::all_of(image.layers.begin(), image.layers.end(),
                     [&](const format::Layer& layer) { return layers.contains(layer.blob.digest); });
}

// The images a plan sends, each target once, in the plan's order.
std::vector<const format::Image*> images_sent(const plan::NodePlan& plan) {
  std::vector<const format::Image*> images;
  for (const auto& step : plan.steps) {
    const bool first = std::none_of(images.begin(), images.end(), [&](const format::Image* i) {
      return i->target().digest == step.image->target().digest;
    });
    if (step.action == plan::Action::send && first) {
      images.push_back(step.image);
    }
  }
  return images;
}

// Writes the thin archive of `entries` into `fd`: its body, copied from `spool` when
// other nodes are sent the same (else written here from `set`), then this node's own
// index.json, each in a zstd frame of its own when `content.wire` says. Counts in
// `on_wire` the bytes that went into `fd` (also when it fails). A failure leaves the
// stream cut before index.json, so it names no image.
util::Result<format::ThinStats> write_stream(int fd, const format::ImageSet& set, const BodyContent& content,
                                             Spool* spool, const std::vector<format::ThinEntry>& entries,
                                             const format::ProgressFn& progress, std::uint64_t& on_wire) {
  const util::ByteSink pipe = [&, out = util::fd_sink(fd, "the import stream")](std::string_view bytes) {
    auto r = out(bytes);
    on_wire += r ? bytes.size() : 0;
    return r;
  };
  auto stats = [&]() -> util::Result<format::ThinStats> {
    if (spool == nullptr) {
      return in_frame<format::ThinStats>(pipe, content.wire, [&](const util::ByteSink& out) {
        return format::write_thin_body(out, set, content.images, content.layers, progress);
      });
    }
    auto copied = spool->copy_to(fd, progress);
    on_wire += copied ? spool->size() : 0;
    return copied;
  }();
  if (!stats) {
    return stats;
  }
  auto tail = in_frame<std::uint64_t>(
      pipe, content.wire, [&](const util::ByteSink& out) { return format::write_thin_tail(out, entries); });
  if (!tail) {
    return std::unexpected(tail.error());
  }
  stats->total_bytes += *tail;
  return stats;
}

// One node's load. plan() finds out what the node holds and plans; execute() runs the
// commit protocol: stage (import what is missing under staging names, check it),
// commit (point the real names at it in one import), retag, confirm, remember. When
// every name the node is given is new there, stage and commit are one round trip.
class NodeLoader {
public:
  NodeLoader(format::ImageSet& set, const std::vector<const format::Image*>& images, const Target& target,
             Observer& observer, Shared& shared, const LoadOptions& options)
      : set_(set), images_(images), target_(target), client_(*target.client), observer_(observer),
        shared_(shared), cache_(options.cache), via_(options.via), wire_option_(options.wire) {
    report_.node = target.uri.display();
    report_.uri = target.uri.text;
  }

  // Phase 1. False when the node failed.
  bool plan() {
    const auto start = std::chrono::steady_clock::now();
    observer_.phase(report_.node, Phase::planning);
    const bool ok = plan_now();
    if (ok) {
      report_.layers_planned = plan_.layers.size();
      report_.layer_bytes_planned = plan_.layer_bytes;
      observer_.planned(report_.node, plan_);
    }
    report_.ctr_calls = client_.calls();
    report_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return ok;
  }

  [[nodiscard]] const plan::NodePlan& node_plan() const { return plan_; }

  // What this node's stream body will hold, as planned; none when it sends nothing
  // or pulls from a registry.
  [[nodiscard]] std::optional<BodyContent> planned_body() const {
    if (!ok() || via_ != nullptr || plan_.count(plan::Action::send) == 0) {
      return std::nullopt;
    }
    return BodyContent{images_sent(plan_), {plan_.layers.begin(), plan_.layers.end()},
                       wire_compression(target_.uri, wire_option_, has_zstd_)};
  }
  [[nodiscard]] bool ok() const { return report_.status == NodeStatus::ok; }

  // The registry could not take the images this node lacks: it fails, unless it
  // lacks none.
  void not_published(const util::Error& error) {
    if (ok() && plan_.count(plan::Action::send) > 0) {
      // The registry's failure, not the node's: no asking whether the node went away.
      report_.status = NodeStatus::failed;
      report_.error_kind = util::cancelled_by() != 0 ? util::ErrorKind::interrupted : error.kind;
      report_.error = error.message;
    }
  }

  // Phase 3: the commit protocol, unless dry. Returns the final report.
  NodeReport execute(DryRun dry_run) {
    const auto start = std::chrono::steady_clock::now();
    if (ok() && dry_run == DryRun::no) {
      if (plan_.nothing_to_do()) {
        (void)client_.remove(abandoned_);  // best effort: a leftover costs space only
      } else {
        run();
      }
    }
    if (ok()) {
      for (const auto& step : plan_.steps) {
        report_.images.push_back(ImageOutcome{step.image, step.action, step.names, step.retag_from});
      }
      report_.layers_skipped = plan_.skipped_layers;
      report_.bytes_skipped = plan_.skipped_bytes;
    } else {
      note_lacking();
    }
    report_.ctr_calls = client_.calls();
    report_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report_;
  }

private:
  // Fails the node with `message`, which says so when a node that answered earlier in
  // this load no longer does (see unless_gone). Whatever went wrong talking to the node
  // (a stream it stopped taking included) is the node's failure; `kind` says otherwise
  // only for what kload found locally.
  bool failed(const std::string& message, util::ErrorKind kind = util::ErrorKind::node) {
    report_.status = NodeStatus::failed;
    // Once the run is cancelled, what fails was most likely failed by the cancel.
    report_.error_kind = util::cancelled_by() != 0 ? util::ErrorKind::interrupted : kind;
    report_.error = answered_ && report_.error_kind == util::ErrorKind::node ? unless_gone(message) : message;
    return false;
  }
  bool failed(const util::Error& error) { return failed(error.message, error.kind); }

  // The images a failed node may lack: see NodeReport::lacks.
  void note_lacking() {
    for (const auto* image : images_) {
      const auto step = std::find_if(plan_.steps.begin(), plan_.steps.end(),
                                     [&](const plan::ImageStep& s) { return s.image == image; });
      if (step == plan_.steps.end() || step->action != plan::Action::skip) {
        report_.lacks.push_back(image);
      }
    }
  }

  // `message`, or, when the node no longer answers at all (one `ctr version` asks),
  // `message` saying that it went away during the load and what a rerun does.
  std::string unless_gone(const std::string& message) {
    if (client_.server_uuid()) {
      return message;
    }
    return message + "; the node no longer answers: it went away during the load. Once it is back, a rerun "
                     "resumes: it sends only what the node still lacks";
  }

  // --- planning ---

  // One check of every name on the node is the truth for names. When kload has no
  // record of the node, the same round trip lists its content, UUID and snapshotter,
  // so that a first load needs no second query. A plan that sends asks the record or,
  // failing that, a listing which blobs the node has, to send only the missing ones.
  // A plan from the record holds only for the node the record describes: when the
  // record suggests a send, the first round trip asks containerd's UUID beside the
  // check; otherwise, should the plan send after all, the staging round trip checks it
  // before its import (see import_staged).
  bool plan_now() {
    const auto stored = stored_record(cache_, target_.uri.text);
    const auto record = stored && plannable(*stored) ? stored : std::nullopt;
    const auto want =
        first_probe_request(cache_, stored ? &*stored : nullptr, target_.uri, wire_option_, image_ids(images_));
    if (stored) {
      has_zstd_ = stored->zstd;  // what the node had when asked; unknown: asked now, when it matters
    }
    if (target_.probed && answers(target_.probed->probe, want)) {
      take_probe(target_.probed->probe, target_.probed->started);
    } else if (!probe(want)) {
      return false;
    }
    if (record && !record->snapshotter.empty()) {
      snapshotter_ = record->snapshotter;  // as unconfirmed as the record
    }
    plan_ = plan::plan_node(images_, view_of(statuses_, {}, {}, images_));
    if (plan_.count(plan::Action::send) > 0 && !plan_from_record(record) && !plan_from_listing()) {
      return false;
    }
    find_abandoned_staging();
    return true;
  }

  // One round trip: every name, and what `want` asks.
  bool probe(const node::ProbeRequest& want) {
    const auto started = unix_now();
    auto p = client_.probe(want);
    if (!p) {
      return failed(p.error().message);
    }
    take_probe(std::move(*p), started);
    return true;
  }

  // What a probe begun at `started` found, taken as the node's state; a listing is
  // planned from and stored at once.
  void take_probe(node::Probe p, std::int64_t started) {
    answered_ = true;
    statuses_ = std::move(p.images);
    if (p.uuid) {
      server_uuid_ = std::move(p.uuid);
    }
    if (p.snapshotter) {
      snapshotter_ = std::move(p.snapshotter);
    }
    if (p.zstd) {
      remember_zstd(*p.zstd);
    }
    if (p.inventory) {
      ++report_.listings;
      auto record = record_from_listing(server_uuid_.value_or(""), *p.inventory, statuses_, unix_now());
      record.snapshotter = snapshotter_.value_or("");
      record.zstd = zstd_seen_;
      listing_ = record.blobs;
      known_ids_ = record.target_ids;
      if (cache_ != nullptr) {
        store_listing(*cache_, target_.uri.text, std::move(record), started);
      }
    }
  }

  // Whether the node has zstd, as a probe of this load saw it: kept in the node's
  // record at once, so that later loads need not ask.
  void remember_zstd(bool has) {
    has_zstd_ = zstd_seen_ = has;
    if (cache_ != nullptr) {
      (void)cache_->update_node(target_.uri.text, [&](cache::NodeRecord& r) { r.zstd = has; });
    }
  }

  bool plan_from_record(const std::optional<cache::NodeRecord>& record) {
    if (listing_) {
      plan_ = plan::plan_node(images_, view_of(statuses_, known_ids_, *listing_, images_));
      return true;
    }
    if (!record) {
      return false;
    }
    if (server_uuid_ && *server_uuid_ != record->server_uuid) {
      snapshotter_.reset();  // the record's, and the record is of another containerd
      return false;
    }
    // Asked in the probe (a send was likely) or, failing that, before the import.
    unconfirmed_uuid_ = server_uuid_ ? "" : record->server_uuid;
    known_ids_ = record->target_ids;
    plan_ = plan::plan_node(images_, view_of(statuses_, known_ids_, record->blobs, images_));
    return true;
  }

  // A fresh check and listing (and the snapshotter, when still unknown) in one round
  // trip, planned from.
  bool plan_from_listing() {
    if (!probe({.uuid = true, .inventory = true, .snapshotter = !snapshotter_, .zstd = false})) {
      return false;
    }
    plan_ = plan::plan_node(images_, view_of(statuses_, known_ids_, *listing_, images_));
    return true;
  }

  // Staging names whose load has provably ended (see staging_abandoned). What they
  // hold counts as present (the listing reaches it through them), so they go only
  // with this load's own staging names, after the commit.
  void find_abandoned_staging() {
    const auto now = unix_now();
    for (const auto& s : statuses_) {
      if (staging_abandoned(s.name, now)) {
        abandoned_.push_back(s.name);
      }
    }
  }

  // The one retry path: the node was not what the plan thought. Check and list it
  // again, and plan again (the stream proves what the new plan sends).
  bool replan() {
    report_.retried = true;
    return plan_from_listing();
  }

  // --- the commit protocol ---

  void run() {
    StagingGuard staging(client_);
    for (const auto& name : abandoned_) {
      staging.add(name);
    }
    Staged staged = Staged::ok;
    if (plan_.count(plan::Action::send) > 0) {
      staged = stage(staging);
    }
    if (staged == Staged::committed || (staged == Staged::ok && finish(staging))) {
      remember();
    }
  }

  // node_changed: the record planned from was of another containerd; nothing was sent.
  // committed: the round trip that staged also set and confirmed every name.
  enum class Staged { ok, committed, stale, node_changed, failed };

  // Imports what the plan sends under staging names and checks it is complete; on a
  // stale plan (the node lost a blob it was thought to hold: GC, crictl rmi,
  // discarded layers) re-plans and tries once more. What arrived in the first attempt
  // stays under its staging names until the end, so GC cannot take it meanwhile.
  // Returns ok, committed or failed.
  Staged stage(StagingGuard& staging) {
    observer_.phase(report_.node, Phase::sending);
    if (!find_snapshotter()) {
      return Staged::failed;
    }
    mark_sending();
    for (int attempt = 0;; ++attempt) {
      const auto staged = via_ != nullptr ? pull_staged(staging) : import_staged(staging);
      if (staged == Staged::node_changed) {
        // Not a retry: the plan never reached this node. List it and plan afresh.
        snapshotter_.reset();  // the record's, and the record was of another node
        unconfirmed_uuid_.clear();
        if (!plan_from_listing() || !find_snapshotter()) {
          return Staged::failed;
        }
        --attempt;
        if (plan_.count(plan::Action::send) == 0) {
          return Staged::ok;
        }
        continue;
      }
      if (staged != Staged::stale) {
        return staged;
      }
      if (attempt > 0) {
        failed(fmt::format("node {}: the image is still incomplete after re-listing the node's content "
                           "and retrying",
                           report_.node));
        return Staged::failed;
      }
      if (!replan()) {
        return Staged::failed;
      }
      if (plan_.count(plan::Action::send) == 0) {
        return Staged::ok;
      }
    }
  }

  bool find_snapshotter() {
    if (snapshotter_) {
      return true;
    }
    auto s = client_.snapshotter();
    if (!s) {
      return failed(s.error().message);
    }
    snapshotter_ = *s;
    return true;
  }

  // One round trip: the import, then a check of the staging names (ctr can succeed and
  // still leave an incomplete image: a blob the node was thought to hold is gone, but
  // its snapshot is there). When the plan only sends, the same round trip commits
  // (commit_by_tag).
  Staged import_staged(StagingGuard& staging) {
    std::vector<format::ThinEntry> entries;
    node::Changes then;
    const bool commit = commits_by_tag();
    const std::unordered_set<Digest> layers(plan_.layers.begin(), plan_.layers.end());
    for (const auto* image : images_sent(plan_)) {
      entries.push_back(format::ThinEntry{image, make_staging_name(image->target().digest)});
      staging.add(entries.back().ref);
      // An image whose every blob is in the stream is complete once the import
      // succeeded (containerd verified each blob on the way in; the staging name, which
      // only this load knows, keeps them from GC): no gate. An image that relies on
      // blobs the node held passes it before any name is set.
      if (!commit || !carried_whole(*image, layers)) {
        then.gate.emplace_back(entries.back().ref, image->target().digest);
      }
    }
    if (commit) {
      commit_by_tag(entries, staging, then);
    } else {
      for (auto& [name, target] : std::exchange(then.gate, {})) {
        then.check.push_back(name);
      }
    }
    then.expect_uuid = unconfirmed_uuid_;
    std::optional<util::Error> write_error;
    auto statuses = send_archive(entries, layers, then, write_error);
    if (write_error && write_error->kind == util::ErrorKind::bad_input) {
      failed(*write_error);  // a blob's bytes are not its digest's
      return Staged::failed;
    }
    if (!statuses) {
      const auto& e = statuses.error();
      if (e.step == node::ChangeError::Step::node_changed) {
        return Staged::node_changed;
      }
      if ((e.step == node::ChangeError::Step::import || e.step == node::ChangeError::Step::gate) &&
          e.error.failure == node::ImportFailure::missing_content) {
        return Staged::stale;
      }
      if (commit && e.step == node::ChangeError::Step::tag) {
        // Staged and complete, but a name is there (containerd 1.x's tag does not
        // re-point one; or another load made it since the probe): the commit import
        // re-points it.
        return Staged::ok;
      }
      failed(e.error.error.message);
      return Staged::failed;
    }
    if (!unconfirmed_uuid_.empty()) {
      server_uuid_ = std::exchange(unconfirmed_uuid_, {});  // the node said so
    }
    if (commit) {
      staging.removed();
      return confirm(*statuses) ? Staged::committed : Staged::failed;
    }
    const bool complete = std::all_of(then.check.begin(), then.check.end(), [&](const std::string& ref) {
      const auto* s = find_status(*statuses, ref);
      return s != nullptr && s->complete;
    });
    return complete ? Staged::ok : Staged::stale;
  }

  // Whether the plan only sends (or skips) images: then each name can be set from
  // its staging name in the import's round trip (commit_by_tag).
  [[nodiscard]] bool commits_by_tag() const {
    return std::all_of(plan_.steps.begin(), plan_.steps.end(), [&](const plan::ImageStep& step) {
      return step.action == plan::Action::skip || step.action == plan::Action::send;
    });
  }

  // The commit in the import's round trip, after its gate (every staged image complete
  // at its target, checked on the node): each name is set from its target's staging
  // name by `tag` without --force, the staging names go, and the names are checked.
  // A new name is created in one step. An existing one: containerd 2.x's ctr tags
  // through the Transfer API, which updates the name in one step; 1.x's refuses
  // ("already exists"), and the commit import (finish) re-points it instead.
  void commit_by_tag(const std::vector<format::ThinEntry>& entries, const StagingGuard& staging,
                        node::Changes& then) {
    for (const auto& step : plan_.steps) {
      if (step.action != plan::Action::send) {
        continue;
      }
      const auto& target = step.image->target().digest;
      const auto staged = std::find_if(entries.begin(), entries.end(), [&](const format::ThinEntry& e) {
        return e.image->target().digest == target;
      });
      for (const auto& name : step.names) {
        then.tags.push_back(node::Tag{staged->ref, name, node::Replace::no});
        expected_[name] = target;
      }
    }
    then.remove = staging.names();
    for (const auto& [name, target] : expected_) {
      then.check.push_back(name);
    }
  }

  // One round trip: the node pulls each image the plan sends (one per manifest) from
  // the registry by digest, which fetches only the blobs it lacks, under the
  // reference's own name; each is tagged with a staging name at once, and the staging
  // names are checked. The references' names go with the staging names (the guard
  // holds them from before the pull, so a failed pull leaves none), except a name the
  // node already had.
  Staged pull_staged(StagingGuard& staging) {
    node::Pull pull{{}, via_->plain_http};
    node::Changes then;
    for (const auto& step : plan_.steps) {
      const auto& reference = via_->references.at(step.image);
      if (step.action != plan::Action::send ||
          std::find(pull.references.begin(), pull.references.end(), reference) != pull.references.end()) {
        continue;
      }
      pull.references.push_back(reference);
      then.check.push_back(make_staging_name(step.image->manifest.digest));
      then.tags.push_back(node::Tag{reference, then.check.back()});
      staging.add(then.check.back());
      if (find_status(statuses_, reference) == nullptr) {
        staging.add(reference);
      }
    }
    then.pull = &pull;
    then.snapshotter = *snapshotter_;
    then.expect_uuid = unconfirmed_uuid_;
    auto statuses = client_.apply(then);
    if (!statuses) {
      if (statuses.error().step == node::ChangeError::Step::node_changed) {
        return Staged::node_changed;
      }
      const auto& message = statuses.error().error.error.message;
      failed(statuses.error().step == node::ChangeError::Step::pull ? pull_failure(message) : message);
      return Staged::failed;
    }
    if (!unconfirmed_uuid_.empty()) {
      server_uuid_ = std::exchange(unconfirmed_uuid_, {});
    }
    for (const auto& ref : then.check) {
      const auto* s = find_status(*statuses, ref);
      if (s == nullptr || !s->complete) {
        failed(fmt::format("node {}: the image pulled from {} is incomplete on the node", report_.node,
                           via_->pull_address));
        return Staged::failed;
      }
    }
    report_.layers_pulled = plan_.layers.size();
    report_.layer_bytes_pulled = plan_.layer_bytes;
    return Staged::ok;
  }

  // ctr's failure to pull, with what to do about it.
  [[nodiscard]] std::string pull_failure(const std::string& message) const {
    return fmt::format("{}; the node could not pull from registry {}: it must reach the registry at that address "
                       "(--via-pull-address gives the address nodes use), over plain HTTP only with --plain-http, "
                       "and nodes pull without credentials",
                       message, via_->pull_address);
  }

  // One import of `entries` carrying the blobs in `layers`, then the steps of `then`,
  // in one round trip; counted in the report.
  std::expected<std::vector<node::ImageStatus>, node::ChangeError> send_archive(
      const std::vector<format::ThinEntry>& entries, const std::unordered_set<Digest>& layers, node::Changes then,
      std::optional<util::Error>& write_error) {
    const auto total = plan_.layer_bytes;
    std::uint64_t streamed = 0;  // layer bytes written, also when the stream broke
    std::uint64_t on_wire = 0;   // bytes into the pipe, compressed or not
    std::optional<format::ThinStats> stats;
    then.wire = wire_compression(target_.uri, wire_option_, has_zstd_);
    BodyContent content;
    for (const auto& e : entries) {
      content.images.push_back(e.image);
    }
    content.layers = layers;
    content.wire = then.wire;
    std::shared_ptr<Spool> spool;
    if (shared_.spools.shared(content)) {
      auto body = shared_.spools.body(set_, content);
      if (!body) {
        const auto error = body.error().with_context("node " + report_.node);
        return std::unexpected(node::ChangeError{node::ChangeError::Step::import, {node::ImportFailure::other,
                                                                                   std::nullopt, error}});
      }
      spool = *body;
    }
    const util::StdinFeeder feed = [&](int fd) -> util::Result<void> {
      on_wire = 0;  // a retry with --local feeds again
      auto r = write_stream(fd, set_, content, spool.get(), entries, [&](std::uint64_t done) {
        streamed = done;
        observer_.progress(report_.node, done, total);
      }, on_wire);
      if (!r) {
        write_error = r.error();
        return std::unexpected(r.error());
      }
      stats = *r;
      shared_.add_proven(r->proven);
      return {};
    };
    then.import = &feed;
    then.snapshotter = *snapshotter_;
    auto applied = client_.apply(then);
    report_.wire = then.wire;
    report_.wire_bytes += on_wire;
    if (stats) {
      report_.layers_sent += stats->layers_sent;
      report_.layer_bytes_sent += stats->layer_bytes;
      report_.bytes_sent += stats->total_bytes;
    } else {
      report_.layer_bytes_sent += streamed;
      report_.bytes_sent += streamed;
    }
    return applied;
  }

  // One round trip sets every name and proves it: a second, tiny import (indexes,
  // manifests and configs; every layer is on the node now) points the real names of
  // the images sent, and of those retagged from a name at the very same target or
  // named at an index, at their targets (Image::target)
  // (containerd's importer updates an existing name's target in one step, where `ctr
  // images tag --force` deletes the name and creates it again, leaving a moment
  // without it); `tag --force` gives a name its image only from a name at another
  // manifest of the same image ID, which this load's check saw complete; the staging
  // names go; a check of every name set ends it, and confirm() holds each to exactly
  // the target intended.
  bool finish(StagingGuard& staging) {
    observer_.phase(report_.node, Phase::committing);
    std::vector<format::ThinEntry> commits;
    node::Changes changes;
    for (const auto& step : plan_.steps) {
      if (step.action == plan::Action::send) {
        for (const auto& name : step.names) {
          commits.push_back(format::ThinEntry{step.image, name});
          expected_[name] = step.image->target().digest;
        }
      } else if (step.action == plan::Action::retag) {
        const auto* source = find_status(statuses_, step.retag_from);
        if (source == nullptr) {
          return failed(fmt::format("node {}: {} vanished before it could be retagged", report_.node, step.retag_from));
        }
        // A source at this very target, or an image named at its index (the import
        // brings the index, manifest and config; the source, complete, holds the
        // layers): the commit import sets the name in one step. Another manifest of
        // the image: `tag --force`, so the name points where its source does.
        const bool by_import = source->target == step.image->target().digest || step.image->targets_index();
        for (const auto& name : step.names) {
          if (by_import) {
            commits.push_back(format::ThinEntry{step.image, name});
          } else {
            changes.tags.push_back(node::Tag{step.retag_from, name});
          }
          expected_[name] = by_import ? step.image->target().digest : source->target;
        }
      }
    }
    changes.remove = staging.names();
    for (const auto& [name, target] : expected_) {
      changes.check.push_back(name);
    }
    if (!commits.empty() && !find_snapshotter()) {
      return false;
    }
    // containerd 1.x's importer fails when another load creates the same name between
    // its update and its create; the next attempt's update then finds the name.
    constexpr int attempts = 3;
    for (int attempt = 1;; ++attempt) {
      std::optional<util::Error> write_error;
      auto statuses = commits.empty() ? client_.apply(changes) : send_archive(commits, {}, changes, write_error);
      if (statuses) {
        staging.removed();
        return confirm(*statuses);
      }
      const auto& e = statuses.error();
      const bool raced = e.step == node::ChangeError::Step::import && e.error.failure == node::ImportFailure::name_taken;
      if (write_error || !raced || attempt == attempts) {
        const bool changed = write_error && write_error->kind == util::ErrorKind::bad_input;
        return failed(write_error ? write_error->message : e.error.error.message,
                      changed ? util::ErrorKind::bad_input : util::ErrorKind::node);
      }
    }
  }

  // Every name set must now resolve, complete, to exactly the target intended (the
  // index or manifest).
  bool confirm(const std::vector<node::ImageStatus>& statuses) {
    observer_.phase(report_.node, Phase::confirming);
    for (const auto& [name, target] : expected_) {
      const auto* s = find_status(statuses, name);
      if (s == nullptr) {
        return failed(fmt::format("node {}: {} is missing after the load", report_.node, name));
      }
      if (!s->complete) {
        return failed(fmt::format("node {}: {} is incomplete after the load", report_.node, name));
      }
      if (s->target != target) {
        return failed(fmt::format("node {}: {} points at {}, expected {}", report_.node, name, s->target.str(),
                                  target.str()));
      }
    }
    return true;
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

  // Records what this load put on the node and what its check saw.
  void remember() {
    if (cache_ == nullptr) {
      return;
    }
    const auto now = unix_now();
    (void)cache_->update_node(target_.uri.text, [&](cache::NodeRecord& r) {
      if (r.server_uuid.empty() && server_uuid_) {
        r.server_uuid = *server_uuid_;
      }
      if (snapshotter_ && server_uuid_ && r.server_uuid == *server_uuid_) {
        r.snapshotter = *snapshotter_;
      }
      for (const auto& s : statuses_) {
        if (auto it = r.names.find(s.name); it != r.names.end() && !is_staging_name(s.name)) {
          it->second.target = s.target;
          it->second.complete = s.complete;
          const auto known = known_ids_.find(s.target);
          it->second.ids = known == known_ids_.end() ? std::vector<Digest>{} : known->second;
        }
      }
      for (const auto& step : plan_.steps) {
        const auto& image = *step.image;
        if (step.action == plan::Action::send) {
          for (const auto& d : format::ImageSet::blobs_of(image)) {
            r.blobs.insert(d);
          }
          r.target_ids[image.target().digest] = {image.id};
          r.target_blobs[image.target().digest] = format::ImageSet::blobs_of(image);
        }
        for (const auto& name : step.names) {
          r.names[name] = cache::NameRecord{expected_[name], {image.id}, true, true, now};
        }
      }
      r.forget_unreferenced();
      std::erase(r.sending, util::own_process_token());
    });
  }

  format::ImageSet& set_;
  const std::vector<const format::Image*>& images_;
  const Target& target_;
  node::NodeClient& client_;
  Observer& observer_;
  Shared& shared_;
  cache::Cache* cache_;
  const Via* via_;
  node::WireCompression wire_option_;

  std::vector<node::ImageStatus> statuses_;  // every name on the node, from this load's check
  TargetIds known_ids_;                      // what each target reaches, from the record or a listing
  bool answered_ = false;                    // a probe of this load reached the node
  std::optional<std::string> server_uuid_;   // as the node said it
  std::string unconfirmed_uuid_;             // the record's, planned from, not yet seen on the node
  std::optional<std::string> snapshotter_;
  std::optional<bool> has_zstd_;             // whether the node has zstd: the record's, or a probe's
  std::optional<bool> zstd_seen_;            // what a probe of this load said of it
  std::optional<std::unordered_set<Digest>> listing_;  // blobs, from this load's listing
  plan::NodePlan plan_;
  std::map<std::string, Digest> expected_;   // each name set -> the target it must resolve to
  std::vector<std::string> abandoned_;       // staging names of loads that provably ended
  NodeReport report_;
};

// Records in `set` what the streams proved that no earlier read had, and counts it as
// hashed by this load.
void record_proven(format::ImageSet& set, const std::unordered_set<Digest>& proven, LoadReport& report) {
  for (const auto& d : proven) {
    auto it = set.blobs.find(d);
    if (it != set.blobs.end() && !it->second.computed) {
      it->second.computed = d;
      ++report.blobs_hashed;
      report.bytes_hashed += it->second.size;
    }
  }
}

// Every blob some node's plan sends from here, each once.
std::vector<Digest> blobs_any_node_needs(const std::vector<std::unique_ptr<NodeLoader>>& loaders, const Via* via) {
  std::vector<Digest> out;
  std::unordered_set<Digest> seen;
  for (const auto& l : loaders) {
    if (!l->ok()) {
      continue;
    }
    for (const auto& d : blobs_to_send(l->node_plan(), via)) {
      if (seen.insert(d).second) {
        out.push_back(d);
      }
    }
  }
  return out;
}

// Through a registry: puts the images some node lacks there, once, before any node
// pulls; when that fails, every node that lacks an image fails with its error.
ViaReport publish(const Via& via, const std::vector<std::unique_ptr<NodeLoader>>& loaders) {
  ViaReport report{via.pull_address, false, {}};
  std::vector<const format::Image*> lacked;
  for (const auto& l : loaders) {
    if (!l->ok()) {
      continue;
    }
    for (const auto& step : l->node_plan().steps) {
      if (step.action == plan::Action::send && std::find(lacked.begin(), lacked.end(), step.image) == lacked.end()) {
        lacked.push_back(step.image);
      }
    }
  }
  if (lacked.empty()) {
    return report;
  }
  report.published = true;
  auto published = via.publish(lacked);
  if (!published) {
    for (const auto& l : loaders) {
      l->not_published(published.error());
    }
    return report;
  }
  report.uploaded = *published;
  return report;
}

} // namespace

bool LoadReport::all_ok() const {
  return std::all_of(nodes.begin(), nodes.end(), [](const NodeReport& n) { return n.status == NodeStatus::ok; });
}

util::Result<void> refresh_node(const Target& target, cache::Cache& cache) {
  const auto started = unix_now();
  auto p = target.client->probe({.uuid = true, .inventory = true, .snapshotter = false, .zstd = false});
  if (!p) {
    return std::unexpected(p.error());
  }
  store_listing(cache, target.uri.text, record_from_listing(*p->uuid, *p->inventory, p->images, unix_now()), started);
  return {};
}

bool record_holds_all(const cache::NodeRecord& record, const std::vector<util::Digest>& ids) {
  return std::all_of(ids.begin(), ids.end(), [&](const util::Digest& id) {
    return std::any_of(record.names.begin(), record.names.end(), [&](const auto& entry) {
      const auto& held = entry.second;
      return held.complete &&
             (held.target == id || std::find(held.ids.begin(), held.ids.end(), id) != held.ids.end());
    });
  });
}

node::ProbeRequest first_probe_request(const cache::Cache* cache, const cache::NodeRecord* record,
                                       const node::NodeUri& uri, node::WireCompression wire,
                                       const std::vector<util::Digest>& ids) {
  const bool first_contact = cache != nullptr && (record == nullptr || !plannable(*record));
  const bool likely_sends = cache != nullptr && !first_contact && !record_holds_all(*record, ids);
  const bool unknown = record == nullptr || !record->zstd;
  const bool ask_zstd = unknown && wire_compression(uri, wire, true) != node::WireCompression::none;
  return {.uuid = first_contact || likely_sends,
          .inventory = first_contact,
          .snapshotter = first_contact,
          .zstd = ask_zstd};
}

node::WireCompression wire_compression(const node::NodeUri& uri, node::WireCompression wire,
                                       std::optional<bool> node_has_zstd) {
  const bool far = uri.kind == node::TransportKind::ssh;
  return far && wire == node::WireCompression::zstd && node_has_zstd.value_or(false) ? node::WireCompression::zstd
                                                                                     : node::WireCompression::none;
}

bool is_staging_name(const std::string& name) { return name.starts_with(staging_prefix); }

std::string_view phase_name(Phase phase) {
  switch (phase) {
  case Phase::planning:
    return "planning";
  case Phase::sending:
    return "sending";
  case Phase::committing:
    return "committing";
  case Phase::confirming:
    return "confirming";
  }
  return "?";
}

util::Result<LoadReport> load(format::ImageSet& set, const std::vector<const format::Image*>& images,
                              const std::vector<Target>& targets, const LoadOptions& options, Observer& observer) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<NodeLoader>> loaders;
  Shared shared;
  for (const auto& t : targets) {
    loaders.push_back(std::make_unique<NodeLoader>(set, images, t, observer, shared, options));
  }
  // Phase 1: every node's plan, in parallel.
  util::parallel_for(loaders.size(), options.jobs, [&](std::size_t i) { loaders[i]->plan(); });

  // Nodes sent the same body share one written once (spool.h).
  for (const auto& l : loaders) {
    if (auto body = l->planned_body()) {
      shared.spools.expect(*body);
    }
  }

  // Phase 2, dry runs only: prove what the nodes would receive, since no stream will.
  // A load's streams prove what they carry as they go (format::write_thin_body): the
  // input is read once.
  LoadReport report;
  if (options.dry_run == DryRun::yes) {
    auto verified = format::verify_blobs(set, blobs_any_node_needs(loaders, options.via),
                                         std::min(options.jobs, util::default_jobs()));
    if (!verified) {
      return std::unexpected(verified.error());
    }
    report.blobs_hashed = verified->blobs_hashed;
    report.bytes_hashed = verified->bytes_hashed;
  }
  if (options.via != nullptr && options.dry_run == DryRun::no) {
    report.via = publish(*options.via, loaders);
  } else if (options.via != nullptr) {
    report.via = ViaReport{options.via->pull_address, false, {}};
  }

  // Phase 3: the commit protocol, nodes in parallel.
  report.nodes.resize(loaders.size());
  util::parallel_for(loaders.size(), options.jobs, [&](std::size_t i) {
    report.nodes[i] = loaders[i]->execute(options.dry_run);
    observer.finished(report.nodes[i]);
  });
  record_proven(set, shared.proven, report);
  report.stream_bodies = shared.spools.count();
  report.stream_bytes = shared.spools.bytes();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

} // namespace kload::load
