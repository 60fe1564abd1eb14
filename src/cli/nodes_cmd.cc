// `kload ls`, `kload rm` and `kload prune`: the names on nodes, apart from any load.
// Each one: the names asked for (checked before any node is touched), the nodes, one
// library call of load/node_images.h that serves them in parallel, then the output.

#include "kload/cache/cache.h"
#include "kload/cli/app.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/images_view.h"
#include "kload/load/node_images.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <iostream>

namespace kload::cli {

using util::Result;

namespace {

void print_failure(Console& console, const load::Target& target, const std::string& error) {
  console.error(fmt::format("node \"{}\": FAILED: {}", target.uri.display(), error));
}

nlohmann::json removal_json(const std::vector<load::Target>& targets, const std::vector<std::string>& names,
                            const std::vector<load::Removal>& removals, bool dry_run) {
  nlohmann::json out;
  out["schema"] = "kload.rm/v1";
  out["dryRun"] = dry_run;
  out["ok"] = std::none_of(removals.begin(), removals.end(), [](const load::Removal& r) { return r.failed(); });
  out["images"] = names;
  out["nodes"] = nlohmann::json::array();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& r = removals[i];
    out["nodes"].push_back({{"node", targets[i].uri.display()},
                            {"uri", targets[i].uri.text},
                            {"ok", !r.failed()},
                            {"error", r.error},
                            {"removed", r.removed},
                            {"absent", r.absent}});
  }
  return out;
}

} // namespace

Result<int> list_images(const NodeImagesOptions& options, Console& console) {
  auto names = load::normalize_names(options.images);
  if (!names) {
    return std::unexpected(names.error());
  }
  auto target = options.target;
  target.no_cache = true;  // ls shows what the nodes say, never what the cache remembers
  util::SystemProcessRunner runner;
  auto prepared = prepare_targets(target, runner, console);
  if (!prepared) {
    return std::unexpected(prepared.error());
  }
  const auto& targets = prepared->targets;
  const auto answers = load::read_names(targets, *names, target.jobs, options.layers);
  std::vector<NodeHeading> headings;
  bool failed = false;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    headings.push_back(NodeHeading{targets[i].uri.display(), targets[i].uri.text, answers[i].error});
    if (answers[i].failed()) {
      print_failure(console, targets[i], answers[i].error);
      failed = true;
    }
  }
  const auto rows = load::name_rows(answers, *names);
  std::vector<std::vector<load::LayerRow>> layers;
  if (options.layers == load::Layers::shown) {
    for (const auto& row : rows) {
      layers.push_back(load::layer_rows(row, rows, answers));
    }
  }
  if (target.json) {
    auto doc = images_json(headings, rows);
    if (options.layers == load::Layers::shown) {
      add_layers_json(doc, layers);
    }
    std::cout << json_text(doc) << "\n";
  } else {
    std::cout << images_table(headings, rows, table_width) << layers_text(headings, rows, layers) << std::flush;
  }
  return failed ? exit_node_failure : exit_ok;
}

Result<int> remove_images(const NodeImagesOptions& options, Console& console) {
  auto names = load::names_to_remove(options.images);
  if (!names) {
    return std::unexpected(names.error());
  }
  const auto& t = options.target;
  util::SystemProcessRunner runner;
  auto prepared = prepare_targets(t, runner, console);
  if (!prepared) {
    return std::unexpected(prepared.error());
  }
  const auto& targets = prepared->targets;
  const auto removals = load::remove_names(targets, *names, load_options(t, prepared->cache.get()));
  const std::string removed = t.dry_run ? "would remove" : "removed";
  std::size_t count = 0;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& r = removals[i];
    const auto node = targets[i].uri.display();
    for (const auto& n : r.removed) {
      console.line(fmt::format("node \"{}\": {} {}", node, removed, n));
    }
    for (const auto& n : r.absent) {
      console.line(fmt::format("node \"{}\": {} is not there", node, n));
    }
    if (r.failed()) {
      print_failure(console, targets[i], r.error);
      ++failed;
    }
    count += r.removed.size();
  }
  console.line(fmt::format("{}{} {} name(s) from {} node(s){}", t.dry_run ? "dry run: " : "", removed, count,
                           targets.size(), failed > 0 ? fmt::format("; {} node(s) FAILED", failed) : ""));
  if (t.json) {
    std::cout << json_text(removal_json(targets, *names, removals, t.dry_run)) << "\n";
  }
  return failed > 0 ? exit_node_failure : exit_ok;
}

Result<int> prune_nodes(const TargetOptions& options, Console& console) {
  util::SystemProcessRunner runner;
  auto prepared = prepare_targets(options, runner, console);
  if (!prepared) {
    return std::unexpected(prepared.error());
  }
  const auto& targets = prepared->targets;
  const auto prunings = load::prune(targets, load_options(options, prepared->cache.get()), std::time(nullptr));
  const std::string removed = options.dry_run ? "would remove" : "removed";
  std::size_t names = 0;
  std::size_t records = 0;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& p = prunings[i];
    const auto node = targets[i].uri.display();
    for (const auto& n : p.removed) {
      console.line(fmt::format("node \"{}\": {} {} (its load has ended)", node, removed, n));
    }
    if (p.kept > 0) {
      console.line(fmt::format("node \"{}\": kept {} staging name(s) of loads that may still run", node, p.kept));
    }
    if (p.failed()) {
      print_failure(console, targets[i], p.error);
      ++failed;
    }
    names += p.removed.size();
    records += p.record_forgotten ? 1 : 0;
  }
  console.line(fmt::format("{}{} {} staging name(s) of ended loads from {} node(s), {} {} cache record(s){}",
                           options.dry_run ? "dry run: " : "", removed, names, targets.size(),
                           options.dry_run ? "would forget" : "forgot", records,
                           failed > 0 ? fmt::format("; {} node(s) FAILED", failed) : ""));
  return failed > 0 ? exit_node_failure : exit_ok;
}

} // namespace kload::cli
