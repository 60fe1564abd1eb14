#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/app.h"
#include "kload/cli/config.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/format/run_lint.h"
#include "kload/load/image_names.h"
#include "kload/load/loader.h"
#include "kload/node/ctr_client.h"
#include "kload/node/kind.h"
#include "kload/node/node_uri.h"
#include "kload/registry/auth.h"
#include "kload/registry/names.h"
#include "kload/util/human.h"
#include "kload/util/text.h"

#include <fmt/format.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>

namespace kload::cli {

using util::Result;

namespace {

const char* action_name(plan::Action a, bool dry_run) {
  switch (a) {
  case plan::Action::skip:
    return "present";
  case plan::Action::retag:
    return dry_run ? "would-retag" : "retagged";
  case plan::Action::send:
    return dry_run ? "would-send" : "sent";
  }
  return "?";
}

using Clock = std::chrono::steady_clock;

// Prints kind-style lines per node and, on a terminal, the live progress block
// (progress_lines): redrawn when a node enters a phase or finishes, and as bytes go
// out at most every 100 ms. The block goes when the observer does.
class ConsoleObserver final : public load::Observer {
public:
  ConsoleObserver(Console& console, ImageLines lines) : console_(console), lines_(lines) {}
  ~ConsoleObserver() override { console_.show({}); }
  ConsoleObserver(const ConsoleObserver&) = delete;
  ConsoleObserver& operator=(const ConsoleObserver&) = delete;

  void phase(const std::string& node, load::Phase phase) override {
    std::lock_guard lock(mutex_);
    auto& n = entry(node);
    n.view.phase = phase;
    if (phase == load::Phase::sending) {
      n.sending_since = Clock::now();
    }
    redraw();
  }

  void planned(const std::string& node, const plan::NodePlan& plan) override {
    print_plan(node, plan);
    std::lock_guard lock(mutex_);
    entry(node).view.total = plan.layer_bytes;
    redraw();
  }

  void progress(const std::string& node, std::uint64_t done, std::uint64_t total) override {
    std::lock_guard lock(mutex_);
    auto& n = entry(node);
    n.view.done = done;
    n.view.total = total;
    const double seconds = std::chrono::duration<double>(Clock::now() - n.sending_since).count();
    // Too early a rate swings wildly: the first buffers fill at memory speed.
    if (seconds >= 0.25 && done > 0) {
      n.view.rate = static_cast<double>(done) / seconds;
      n.view.seconds_left = static_cast<double>(total - std::min(done, total)) / n.view.rate;
    }
    if (Clock::now() - drawn_ >= std::chrono::milliseconds(100)) {
      redraw();
    }
  }

  void finished(const load::NodeReport& r) override {
    if (r.status == load::NodeStatus::failed) {
      console_.error(fmt::format("node \"{}\": FAILED: {}", r.node, r.error));
    } else {
      const auto pulled = r.layers_pulled > 0 ? fmt::format(", pulled {} layers ({}) from the registry",
                                                            r.layers_pulled, util::human_bytes(r.layer_bytes_pulled))
                                               : std::string();
      console_.line(fmt::format("node \"{}\": done in {}: sent {} layers ({}, {} on the wire{}){}{}", r.node,
                                util::human_seconds(r.seconds), r.layers_sent, util::human_bytes(r.layer_bytes_sent),
                                util::human_bytes(r.wire_bytes),
                                r.wire == node::WireCompression::zstd ? ", zstd" : "", pulled,
                                r.retried ? ", after re-listing a stale inventory" : ""));
    }
    std::lock_guard lock(mutex_);
    entry(r.node).view.outcome = r.status;
    redraw();
  }

private:
  struct Entry {
    NodeProgress view;
    Clock::time_point sending_since{};
  };

  // The lines kind prints for a node's plan, and what kload sends it.
  void print_plan(const std::string& node, const plan::NodePlan& plan) {
    for (const auto& step : plan.steps) {
      if (lines_ == ImageLines::left_out) {
        break;
      }
      const auto& image = *step.image;
      const std::string name = image.names.empty() ? image.id.str() : image.names.front();
      switch (step.action) {
      case plan::Action::skip:
        console_.line(fmt::format("Image: \"{}\" with ID \"{}\" found to be already present on node \"{}\"", name,
                                  image.id.str(), node));
        break;
      case plan::Action::retag:
        console_.line(fmt::format("Image: \"{}\" with ID \"{}\" present on node \"{}\" as \"{}\", adding the name",
                                  name, image.id.str(), node, step.retag_from));
        break;
      case plan::Action::send:
        break;
      }
    }
    if (plan.count(plan::Action::send) > 0) {
      std::size_t total_layers = 0;
      for (const auto& step : plan.steps) {
        if (step.action == plan::Action::send) {
          total_layers += step.image->layers.size();
        }
      }
      for (const auto& step : plan.steps) {
        if (step.action == plan::Action::send && lines_ == ImageLines::shown) {
          const auto& image = *step.image;
          console_.line(fmt::format("Image: \"{}\" with ID \"{}\" not yet present on node \"{}\"",
                                    image.names.empty() ? image.id.str() : image.names.front(), image.id.str(), node));
        }
      }
      console_.line(fmt::format("node \"{}\": sending {} of {} layers ({}), {} already there ({})", node,
                                plan.layers.size(), total_layers, util::human_bytes(plan.layer_bytes),
                                plan.skipped_layers, util::human_bytes(plan.skipped_bytes)));
    }
  }

  // With mutex_ held: the node's entry, made on first mention (nodes keep that order).
  Entry& entry(const std::string& node) {
    const auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const Entry& e) { return e.view.node == node; });
    if (it != nodes_.end()) {
      return *it;
    }
    nodes_.push_back(Entry{NodeProgress{node, load::Phase::planning, std::nullopt, 0, 0, 0, std::nullopt}, {}});
    return nodes_.back();
  }

  // With mutex_ held: the block as the nodes stand, fitted to the terminal as it is now.
  void redraw() {
    const auto size = console_.terminal_size();
    if (!size || console_.verbosity() == Verbosity::quiet) {
      return;
    }
    std::vector<NodeProgress> views;
    for (const auto& e : nodes_) {
      views.push_back(e.view);
    }
    console_.show(progress_lines(views, *size));
    drawn_ = Clock::now();
  }

  Console& console_;
  ImageLines lines_;
  std::mutex mutex_;
  std::vector<Entry> nodes_;
  Clock::time_point drawn_{};
};

nlohmann::json image_ref_json(const format::Image& image) { return {{"id", image.id.str()}, {"names", image.names}}; }

nlohmann::json node_json(const load::NodeReport& n, bool dry_run) {
  nlohmann::json images = nlohmann::json::array();
  for (const auto& i : n.images) {
    images.push_back({{"id", i.image->id.str()},
                      {"names", i.image->names},
                      {"action", action_name(i.action, dry_run)},
                      {"namesSet", i.names}});
  }
  nlohmann::json lacks = nlohmann::json::array();
  for (const auto* image : n.lacks) {
    lacks.push_back(image_ref_json(*image));
  }
  const bool ok = n.status == load::NodeStatus::ok;
  return {{"node", n.node},
          {"uri", n.uri},
          {"ok", ok},
          {"error", ok ? nlohmann::json(nullptr) : error_json(util::Error{n.error_kind, n.error})},
          {"lacks", lacks},
          {"images", images},
          {"layersSent", n.layers_sent},
          {"layerBytesSent", n.layer_bytes_sent},
          {"bytesSent", n.bytes_sent},
          {"wireBytes", n.wire_bytes},
          {"wireCompression", n.wire == node::WireCompression::zstd ? "zstd" : "none"},
          {"layersSkipped", n.layers_skipped},
          {"bytesSkipped", n.bytes_skipped},
          {"layersPulled", n.layers_pulled},
          {"layerBytesPulled", n.layer_bytes_pulled},
          {"layersPlanned", n.layers_planned},
          {"layerBytesPlanned", n.layer_bytes_planned},
          {"ctrCalls", n.ctr_calls},
          {"listings", n.listings},
          {"retried", n.retried},
          {"seconds", rounded_seconds(n.seconds)}};
}

// What a direct load would have sent: the layers each node lacked, summed over nodes.
std::uint64_t direct_layer_bytes(const load::LoadReport& report) {
  std::uint64_t bytes = 0;
  for (const auto& n : report.nodes) {
    bytes += n.layer_bytes_planned;
  }
  return bytes;
}

// The kload.load/v2 document, less what write_document adds.
nlohmann::json report_json(const load::LoadReport& report, bool dry_run) {
  nlohmann::json out;
  out["schema"] = schema_load;
  out["dryRun"] = dry_run;
  out["seconds"] = rounded_seconds(report.seconds);
  out["hashed"] = {{"blobs", report.blobs_hashed}, {"bytes", report.bytes_hashed}};
  out["streamed"] = {{"bodies", report.stream_bodies}, {"bytes", report.stream_bytes}};
  out["nodes"] = nlohmann::json::array();
  for (const auto& n : report.nodes) {
    out["nodes"].push_back(node_json(n, dry_run));
  }
  out["via"] = nullptr;
  if (report.via) {
    out["via"] = {{"pullAddress", report.via->pull_address},
                  {"published", report.via->published},
                  {"blobsUploaded", report.via->uploaded.blobs_uploaded},
                  {"bytesUploaded", report.via->uploaded.bytes_uploaded},
                  {"directLayerBytes", direct_layer_bytes(report)}};
  }
  return out;
}

// How far from this machine a failure lies, for the one kind a load with several
// failed nodes ends with: an interrupt, then bad input, then a local failure, then
// the nodes' own.
int severity(util::ErrorKind kind) {
  switch (kind) {
  case util::ErrorKind::interrupted:
    return 4;
  case util::ErrorKind::bad_input:
  case util::ErrorKind::usage:
    return 3;
  case util::ErrorKind::io:
    return 2;
  case util::ErrorKind::node:
    return 1;
  }
  return 1;
}

} // namespace

std::unique_ptr<load::Observer> make_console_observer(Console& console, ImageLines lines) {
  return std::make_unique<ConsoleObserver>(console, lines);
}

// The last line of a load: what was sent, what the nodes already had (layers skipped
// in the images sent, and nodes that held every image), and every failed node.
std::string summary_line(const load::LoadReport& report, const LoadSummary& summary) {
  std::uint64_t layers = 0;
  std::uint64_t bytes = 0;
  std::uint64_t skipped_layers = 0;
  std::uint64_t skipped_bytes = 0;
  std::uint64_t wire_bytes = 0;
  bool compressed = false;
  std::size_t holding = 0;
  std::string failed;
  for (const auto& n : report.nodes) {
    layers += summary.dry_run ? n.layers_planned : n.layers_sent;
    bytes += summary.dry_run ? n.layer_bytes_planned : n.layer_bytes_sent;
    wire_bytes += n.wire_bytes;
    compressed = compressed || n.wire != node::WireCompression::none;
    skipped_layers += n.layers_skipped;
    skipped_bytes += n.bytes_skipped;
    if (n.status == load::NodeStatus::failed) {
      failed += fmt::format("{}\"{}\"", failed.empty() ? "" : ", ", n.node);
    } else if (std::none_of(n.images.begin(), n.images.end(),
                            [](const load::ImageOutcome& i) { return i.action == plan::Action::send; })) {
      ++holding;
    }
  }
  // The wire's bytes only when some stream was compressed: otherwise they are the
  // layers' and the archive's few others.
  const auto wire = compressed ? fmt::format(", {} on the wire", util::human_bytes(wire_bytes)) : "";
  std::string line = fmt::format("{}{} image(s) on {} node(s): {} {} layers ({}{})",
                                 summary.dry_run ? "dry run: " : "", summary.images, report.nodes.size(),
                                 summary.dry_run ? "would send" : "sent", layers, util::human_bytes(bytes), wire);
  if (skipped_layers > 0) {
    line += fmt::format(", skipped {} layers ({}) the nodes had", skipped_layers, util::human_bytes(skipped_bytes));
  }
  if (holding > 0) {
    line += fmt::format(", {} node(s) already held every image", holding);
  }
  if (report.via && !summary.dry_run) {
    std::uint64_t pulled = 0;
    std::uint64_t pulled_bytes = 0;
    for (const auto& n : report.nodes) {
      pulled += n.layers_pulled;
      pulled_bytes += n.layer_bytes_pulled;
    }
    line += fmt::format("; through registry {}: uploaded {} ({} blobs) once, the nodes pulled {} layers ({}); a "
                        "direct load would have sent {}",
                        report.via->pull_address, util::human_bytes(report.via->uploaded.bytes_uploaded),
                        report.via->uploaded.blobs_uploaded, pulled, util::human_bytes(pulled_bytes),
                        util::human_bytes(direct_layer_bytes(report)));
  }
  line += ", in " + util::human_seconds(report.seconds);
  if (!failed.empty()) {
    line += "; FAILED: " + failed;
  }
  return line;
}

std::vector<ImageWarning> lint_images(const std::vector<const format::Image*>& images, Lint lint, Console& console) {
  std::vector<ImageWarning> out;
  if (lint == Lint::off) {
    return out;
  }
  for (const auto* image : images) {
    const auto name = image->names.empty() ? image->id.str() : image->names.front();
    for (auto& w : format::lint_run_config(image->run)) {
      console.warn(fmt::format("{}: {} (--no-lint silences this)", name, w));
      out.push_back(ImageWarning{name, std::move(w)});
    }
  }
  return out;
}

std::optional<util::Error> load_failure(const load::LoadReport& report) {
  std::vector<std::string> failed;
  auto kind = util::ErrorKind::node;
  for (const auto& n : report.nodes) {
    if (n.status == load::NodeStatus::failed) {
      failed.push_back(n.node);
      kind = severity(n.error_kind) > severity(kind) ? n.error_kind : kind;
    }
  }
  if (failed.empty()) {
    return std::nullopt;
  }
  return util::Error{kind, fmt::format("{} of {} node(s) failed: {}; each node's error says why, and a rerun sends "
                                       "only what they lack",
                                       failed.size(), report.nodes.size(), util::joined(failed, ", "))};
}

int print_load_report(const load::LoadReport& report, const LoadSummary& summary, Console& console) {
  console.line(summary.lead + summary_line(report, summary));
  const auto failure = load_failure(report);
  if (summary.json) {
    auto out = report_json(report, summary.dry_run);
    if (summary.docker_saved) {
      out["dockerSaved"] = *summary.docker_saved;
    }
    out["lint"] = nlohmann::json::array();
    for (const auto& w : summary.lint) {
      out["lint"].push_back({{"image", w.image}, {"warning", w.warning}});
    }
    return write_document(std::move(out), failure);
  }
  const auto outcome = unless_interrupted(failure);
  return outcome ? exit_code_for(*outcome) : exit_ok;
}

std::unique_ptr<cache::Cache> open_cache(bool no_cache, const std::string& dir, Console& console) {
  if (no_cache) {
    return nullptr;
  }
  const auto path = dir.empty() ? cache::Cache::default_dir() : std::filesystem::path(dir);
  auto opened = cache::Cache::open(path, [&](const std::string& w) { console.warn(w); });
  if (!opened) {
    console.warn(opened.error().message + "; running without the cache");
    return nullptr;
  }
  return std::move(*opened);
}

// Node URIs given as text, from `origin` (--node, KLOAD_NODES).
Result<std::vector<node::NodeUri>> parse_uris(const std::vector<std::string>& texts, const std::string& origin) {
  std::vector<node::NodeUri> uris;
  for (const auto& text : texts) {
    if (text.find("://") == std::string::npos) {
      // kind's own -n is --name; here -n is --node, so a bare cluster name lands here.
      return util::fail(util::ErrorKind::usage,
                        fmt::format("{} \"{}\" is not a node URI (docker://CONTAINER, containerd:///SOCKET or "
                                    "ssh://HOST): for the node container use docker://{}, for the nodes of a kind "
                                    "cluster use --name {}",
                                    origin, text, text, text));
    }
    auto uri = node::parse_node_uri(text);
    if (!uri) {
      return std::unexpected(uri.error().with_context(origin));
    }
    // The same node given twice is loaded once.
    if (std::none_of(uris.begin(), uris.end(), [&](const node::NodeUri& u) { return node::same_node(u, *uri); })) {
      uris.push_back(*uri);
    }
  }
  return uris;
}

namespace {

// The names of `uris`, for the line that says which nodes a load uses.
std::vector<std::string> display_names(const std::vector<node::NodeUri>& uris) {
  std::vector<std::string> names;
  for (const auto& u : uris) {
    names.push_back(u.display());
  }
  return names;
}

// The nodes of a cluster of the config file, narrowed to `picks` (each a node's
// display name, as `ls` and the load lines show it, or its URI as written).
Result<std::vector<node::NodeUri>> configured_nodes(const ConfiguredCluster& cluster,
                                                     const std::vector<std::string>& picks, const Config& config,
                                                     Console& console) {
  const auto origin = fmt::format("{}: clusters.{}", config.path, cluster.name);
  auto all = parse_uris(cluster.nodes, origin);
  if (!all) {
    return std::unexpected(all.error());
  }
  std::vector<node::NodeUri> uris;
  for (const auto& pick : picks) {
    const auto it = std::find_if(all->begin(), all->end(),
                                 [&](const node::NodeUri& u) { return u.display() == pick || u.text == pick; });
    if (it == all->end()) {
      return util::fail(util::ErrorKind::usage, fmt::format("--nodes: \"{}\" is not a node of cluster \"{}\" ({}); its "
                                                            "nodes: {}",
                                                            pick, cluster.name, config.path,
                                                            util::joined(display_names(*all), ", ")));
    }
    uris.push_back(*it);
  }
  if (picks.empty()) {
    uris = *all;
  }
  console.line(fmt::format("cluster \"{}\" ({}): {} of {} node(s): {}", cluster.name, config.path, uris.size(),
                           all->size(), util::joined(display_names(uris), ", ")));
  return uris;
}

// The node containers of kind cluster `cluster` on the engine $KIND_EXPERIMENTAL_PROVIDER
// names (docker:// or podman:// nodes), narrowed to `picks`.
Result<std::vector<node::NodeUri>> kind_cluster_nodes(const std::string& cluster, const std::vector<std::string>& picks,
                                                      util::ProcessRunner& runner, Console& console) {
  const auto provider = node::parse_kind_provider(std::getenv(node::kind_provider_env));
  if (!provider) {
    return std::unexpected(provider.error());
  }
  auto all = node::list_kind_nodes(cluster, *provider, runner);
  if (!all) {
    return std::unexpected(all.error());
  }
  auto nodes = node::pick_kind_nodes(*all, picks, cluster);
  if (!nodes) {
    return std::unexpected(nodes.error());
  }
  std::vector<node::NodeUri> uris;
  std::vector<std::string> names;
  for (const auto& n : *nodes) {
    auto uri = node::parse_node_uri(n.uri());
    if (!uri) {
      return std::unexpected(uri.error().with_context(fmt::format("kind cluster \"{}\"", cluster)));
    }
    uris.push_back(*uri);
    names.push_back(n.name);
  }
  console.line(fmt::format("kind cluster \"{}\": {} of {} node(s): {}", cluster, nodes->size(), all->size(),
                           util::joined(names, ", ")));
  return uris;
}

} // namespace

Result<std::vector<node::NodeUri>> select_nodes(const NodeSelection& selection, util::ProcessRunner& runner,
                                                Console& console) {
  if (!selection.uris.empty()) {
    if (!selection.cluster.empty() || !selection.picks.empty()) {
      return util::fail(util::ErrorKind::usage, "--node names nodes one by one, --name and --nodes pick them from a "
                                                "kind cluster: use one or the other");
    }
    return parse_uris(selection.uris, "--node");
  }
  const auto env = util::fields_of(selection.env_nodes, " \t\r\n");
  if (!env.empty() && selection.cluster.empty() && selection.picks.empty()) {
    auto uris = parse_uris(std::vector<std::string>(env.begin(), env.end()), "KLOAD_NODES");
    if (uris) {
      console.line(fmt::format("KLOAD_NODES: {} node(s): {}", uris->size(), util::joined(display_names(*uris), ", ")));
    }
    return uris;
  }
  std::vector<std::string> picks;
  for (const auto& p : selection.picks) {
    if (!p.empty()) {
      picks.push_back(p);
    }
  }
  const auto* config = selection.config;
  std::string cluster = selection.cluster;
  if (cluster.empty()) {
    const bool has_default = config != nullptr && !config->default_cluster.empty();
    cluster = has_default ? config->default_cluster : std::string(node::kind_default_cluster);
  }
  if (const auto* configured = config != nullptr ? config->cluster(cluster) : nullptr; configured != nullptr) {
    return configured_nodes(*configured, picks, *config, console);
  }
  return kind_cluster_nodes(cluster, picks, runner, console);
}

// Marks blobs of unchanged input files that an earlier run already proved, so they
// are not hashed again.
void trust_verified(cache::Cache& c, const std::vector<std::string>& inputs, format::ImageSet& set) {
  for (const auto& input : inputs) {
    const auto key = cache::InputKey::of(input);
    if (!key) {
      continue;
    }
    auto verified = c.verified(*key);
    if (!verified || verified->empty()) {
      continue;
    }
    for (auto& [digest, blob] : set.blobs) {
      if (!blob.computed && !blob.where.memory && blob.where.source == input && verified->contains(digest)) {
        blob.computed = digest;
      }
    }
  }
}

void remember_verified(cache::Cache& c, const std::vector<std::string>& inputs, const format::ImageSet& set) {
  for (const auto& input : inputs) {
    const auto key = cache::InputKey::of(input);
    if (!key) {
      continue;
    }
    std::vector<util::Digest> proven;
    for (const auto& [digest, blob] : set.blobs) {
      if (!blob.where.memory && blob.where.source == input && blob.computed == digest) {
        proven.push_back(digest);
      }
    }
    (void)c.add_verified(*key, proven);
  }
}

// -v: a line per process run on a node, its command cut to fit a terminal's line.
node::RunLog run_log(Console& console) {
  if (console.verbosity() != Verbosity::verbose) {
    return {};
  }
  return [&console](const node::NodeRun& run) {
    const auto head = fmt::format("node \"{}\": ", run.node);
    const auto tail = fmt::format(" ({} ms, {})", run.duration.count(), run.outcome);
    std::string command = run.command;
    if (const auto size = console.terminal_size()) {
      const auto avail = static_cast<std::size_t>(size->columns - 1);
      const auto room = avail > head.size() + tail.size() + 3 ? avail - head.size() - tail.size() : 3;
      if (command.size() > room) {
        command = command.substr(0, room - 3) + "...";
      }
    }
    console.line(head + command + tail);
  };
}

Result<PreparedTargets> prepare_targets(const TargetOptions& options, util::ProcessRunner& runner,
                                        Console& console) {
  auto via = prepare_via(options.via, options.jobs);
  if (!via) {
    return std::unexpected(via.error());
  }
  const char* env = std::getenv("KLOAD_NODES");
  Config config;
  if (options.config_use == ConfigUse::read && options.nodes.empty()) {
    auto read = read_config(options.config);
    if (!read) {
      return std::unexpected(read.error());
    }
    config = std::move(*read);
  }
  auto uris = select_nodes(
      NodeSelection{options.nodes, options.cluster, options.kind_nodes, env != nullptr ? env : "", &config}, runner,
      console);
  if (!uris) {
    return std::unexpected(uris.error());
  }
  PreparedTargets out;
  for (const auto& uri : *uris) {
    out.transports.push_back(node::make_transport(uri, runner));
    out.clients.push_back(std::make_unique<node::CtrClient>(*out.transports.back(), run_log(console)));
    out.targets.push_back(load::Target{uri, out.clients.back().get(), nullptr});
  }
  out.cache = open_cache(options.no_cache, options.cache_dir, console);
  out.via = std::move(*via);
  return out;
}

load::LoadOptions load_options(const TargetOptions& options, cache::Cache* cache, const ViaSetup* via) {
  load::LoadOptions out;
  out.jobs = options.jobs;
  out.dry_run = options.dry_run ? load::DryRun::yes : load::DryRun::no;
  out.cache = cache;
  out.via = via != nullptr ? &via->via : nullptr;
  out.wire = options.wire;
  return out;
}

Result<std::unique_ptr<ViaSetup>> prepare_via(const ViaOptions& options, unsigned jobs) {
  if (options.registry.empty()) {
    if (!options.pull_address.empty() || options.plain_http || options.creds) {
      return util::fail(util::ErrorKind::usage,
                        "--via-pull-address, --plain-http and --creds go with --via REGISTRY (a load through a registry)");
    }
    return nullptr;
  }
  auto address = registry::parse_registry(options.registry);
  if (!address) {
    return std::unexpected(address.error().with_context("--via"));
  }
  std::string pull = address->host;
  if (!options.pull_address.empty()) {
    auto p = registry::parse_registry(options.pull_address);
    if (!p || !p->prefix.empty()) {
      return util::fail(util::ErrorKind::usage,
                        fmt::format("--via-pull-address \"{}\": expected HOST[:PORT], the registry as the nodes reach "
                                    "it (the path prefix is --via's)",
                                    options.pull_address));
    }
    pull = p->host;
  }
  auto session = registry_session(*address, options.plain_http ? registry::Scheme::http : registry::Scheme::https,
                                  options.creds, "", std::min(jobs, 16u));
  if (!session) {
    return std::unexpected(session.error());
  }
  auto setup = std::make_unique<ViaSetup>();
  setup->address = *address;
  setup->session = std::move(*session);
  setup->via.pull_address = pull;
  setup->via.plain_http = options.plain_http ? node::PlainHttp::yes : node::PlainHttp::no;
  return setup;
}

Result<void> route_via(ViaSetup& setup, format::ImageSet& set, const std::vector<const format::Image*>& images,
                       Console& console) {
  setup.via.references.clear();
  for (const auto* image : images) {
    if (auto named = registry::has_push_name(*image); !named) {
      return std::unexpected(named.error());
    }
    auto destination = registry::destination_for(image->names.front(), setup.address);
    if (!destination) {
      return std::unexpected(destination.error());
    }
    setup.via.references[image] = setup.via.pull_address + "/" + destination->repository + "@" + image->manifest.digest.str();
  }
  setup.via.publish = [&setup, &set, &console](const std::vector<const format::Image*>& lacked)
      -> Result<load::Published> {
    auto pushed = registry::push(set, lacked, setup.session.push, *setup.session.http);
    if (!pushed) {
      return std::unexpected(pushed.error());
    }
    console.line(fmt::format("registry {}: {} image(s) the nodes lack: uploaded {} blobs ({}), {} already there",
                             setup.address.host, lacked.size(), pushed->blobs_uploaded,
                             util::human_bytes(pushed->bytes_uploaded), pushed->blobs_present + pushed->blobs_mounted));
    return load::Published{pushed->blobs_uploaded, pushed->bytes_uploaded};
  };
  return {};
}

Result<int> image_archive(const LoadCommandOptions& options, Console& console) {
  util::SystemProcessRunner runner;
  std::string name_as;
  if (!options.name_as.empty()) {
    auto parsed = load::parse_name_as(options.name_as);
    if (!parsed) {
      return std::unexpected(parsed.error());
    }
    name_as = *parsed;
  }
  auto prepared = prepare_targets(options.target, runner, console);
  if (!prepared) {
    return std::unexpected(prepared.error());
  }
  auto set = read_inputs(options.archives, console);
  if (!set) {
    return std::unexpected(set.error());
  }
  auto images = load::choose_images(*set, options.target.platform, name_as);
  if (!images) {
    return std::unexpected(images.error());
  }
  if (prepared->via) {
    if (auto routed = route_via(*prepared->via, *set, *images, console); !routed) {
      return std::unexpected(routed.error());
    }
  }
  auto lint = lint_images(*images, options.target.lint, console);
  auto* cache = prepared->cache.get();
  if (cache != nullptr) {
    trust_verified(*cache, options.archives, *set);
  }
  auto console_observer = make_console_observer(console);
  auto& observer = options.target.observer != nullptr ? *options.target.observer : *console_observer;
  auto report = load::load(*set, *images, prepared->targets, load_options(options.target, cache, prepared->via.get()), observer);
  if (!report) {
    return std::unexpected(report.error());
  }
  if (cache != nullptr) {
    remember_verified(*cache, options.archives, *set);
  }
  const auto& t = options.target;
  return print_load_report(*report, LoadSummary{images->size(), t.dry_run, t.json, std::nullopt, std::move(lint), ""}, console);
}

} // namespace kload::cli
