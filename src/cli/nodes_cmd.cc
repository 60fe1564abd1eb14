// `kload ls`, `kload rm` and `kload prune`: the names on nodes, apart from any load.
// Each one: the names asked for (checked before any node is touched), the nodes, one
// library call of load/node_images.h that serves them in parallel, then the output.

#include "kload/cache/cache.h"
#include "kload/cli/app.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/images_view.h"
#include "kload/cli/json_report.h"
#include "kload/load/node_images.h"
#include "kload/util/text.h"

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

// The kload.rm/v2 document, less what write_document adds.
nlohmann::json removal_json(const std::vector<load::Target>& targets, const std::vector<std::string>& names,
                            const std::vector<load::Removal>& removals, bool dry_run) {
  nlohmann::json out;
  out["schema"] = schema_rm;
  out["dryRun"] = dry_run;
  out["images"] = names;
  out["nodes"] = nlohmann::json::array();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& r = removals[i];
    out["nodes"].push_back({{"node", targets[i].uri.display()},
                            {"uri", targets[i].uri.text},
                            {"ok", !r.failed()},
                            {"error", node_error_json(r.error)},
                            {"removed", r.removed},
                            {"absent", r.absent}});
  }
  return out;
}

// How a command that asks every node ends: nullopt, or a node error naming the
// `failed` nodes of `total`.
std::optional<util::Error> nodes_failure(const std::vector<std::string>& failed, std::size_t total) {
  if (failed.empty()) {
    return std::nullopt;
  }
  return util::Error{util::ErrorKind::node, fmt::format("{} of {} node(s) failed: {}", failed.size(), total,
                                                        util::joined(failed, ", "))};
}

// The exit code of a command that asks every node and prints no document.
int nodes_exit_code(const std::vector<std::string>& failed, std::size_t total) {
  const auto outcome = unless_interrupted(nodes_failure(failed, total));
  return outcome ? exit_code_for(*outcome) : exit_ok;
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
  std::vector<std::string> failed;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    headings.push_back(NodeHeading{targets[i].uri.display(), targets[i].uri.text, answers[i].error});
    if (answers[i].failed()) {
      print_failure(console, targets[i], answers[i].error);
      failed.push_back(targets[i].uri.display());
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
    return write_document(std::move(doc), nodes_failure(failed, targets.size()));
  }
  std::cout << images_table(headings, rows, table_width) << layers_text(headings, rows, layers) << std::flush;
  return nodes_exit_code(failed, targets.size());
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
  std::vector<std::string> failed;
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
      failed.push_back(node);
    }
    count += r.removed.size();
  }
  console.line(fmt::format("{}{} {} name(s) from {} node(s){}", t.dry_run ? "dry run: " : "", removed, count,
                           targets.size(),
                           failed.empty() ? "" : fmt::format("; {} node(s) FAILED", failed.size())));
  if (t.json) {
    return write_document(removal_json(targets, *names, removals, t.dry_run), nodes_failure(failed, targets.size()));
  }
  return nodes_exit_code(failed, targets.size());
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
  std::vector<std::string> failed;
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
      failed.push_back(node);
    }
    names += p.removed.size();
    records += p.record_forgotten ? 1 : 0;
  }
  console.line(fmt::format("{}{} {} staging name(s) of ended loads from {} node(s), {} {} cache record(s){}",
                           options.dry_run ? "dry run: " : "", removed, names, targets.size(),
                           options.dry_run ? "would forget" : "forgot", records,
                           failed.empty() ? "" : fmt::format("; {} node(s) FAILED", failed.size())));
  return nodes_exit_code(failed, targets.size());
}

} // namespace kload::cli
