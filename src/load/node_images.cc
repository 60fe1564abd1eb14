#include "kload/load/node_images.h"

#include "kload/cache/cache.h"
#include "kload/format/image_ref.h"
#include "kload/util/parallel.h"
#include "staging.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

namespace kload::load {

namespace {

using util::Digest;
using util::ErrorKind;

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// CRI names every image it sees "sha256:<ID>" as well; such a name is no reference.
bool is_cri_id_name(const std::string& name) { return util::Digest::parse(name).has_value(); }

std::string node_error(const Target& target, const std::string& what) {
  return fmt::format("node {}: {}", target.uri.display(), what);
}

// The names of `names` that `statuses` shows.
std::vector<std::string> present_of(const std::vector<node::ImageStatus>& statuses,
                                    const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (std::any_of(statuses.begin(), statuses.end(), [&](const node::ImageStatus& s) { return s.name == n; })) {
      out.push_back(n);
    }
  }
  return out;
}

// Removes exactly `names` from the node, then checks which are gone, even after a
// failed removal (the node is the truth): `names` keeps those. Error (node): the
// removal or the check failed, or a name is still there.
util::Result<void> remove_and_confirm(const Target& target, std::vector<std::string>& names) {
  if (names.empty()) {
    return {};
  }
  const auto removal = target.client->remove(names);
  auto after = target.client->check(names);
  if (!after) {
    names.clear();
    return std::unexpected(removal ? after.error() : removal.error());
  }
  const auto left = present_of(*after, names);
  std::erase_if(names, [&](const std::string& n) { return contains(left, n); });
  if (!removal) {
    return removal;
  }
  if (!left.empty()) {
    return util::fail(ErrorKind::node, node_error(target, fmt::format("{} still there after its removal",
                                                                      fmt::join(left, ", "))));
  }
  return {};
}

// The names leave the node's record; so do the blobs only they kept. A record that
// does not exist is not made.
void forget_names(cache::Cache& cache, const std::string& key, const std::vector<std::string>& names) {
  auto record = cache.node(key);
  if (!record || !*record ||
      std::none_of(names.begin(), names.end(), [&](const std::string& n) { return (*record)->names.contains(n); })) {
    return;
  }
  // Best effort, as every cache write: a record that keeps a name only costs a check.
  (void)cache.update_node(key, [&](cache::NodeRecord& r) {
    for (const auto& n : names) {
      r.names.erase(n);
    }
    r.forget_unreferenced();
  });
}

Removal remove_from(const Target& target, const std::vector<std::string>& names, const LoadOptions& options) {
  Removal out;
  auto before = target.client->check(names);
  if (!before) {
    out.error = before.error().message;
    return out;
  }
  out.removed = present_of(*before, names);
  for (const auto& n : names) {
    if (!contains(out.removed, n)) {
      out.absent.push_back(n);
    }
  }
  if (options.dry_run == DryRun::yes) {
    return out;
  }
  if (auto r = remove_and_confirm(target, out.removed); !r) {
    out.error = r.error().message;
  }
  if (options.cache != nullptr) {
    auto gone = out.removed;
    gone.insert(gone.end(), out.absent.begin(), out.absent.end());
    forget_names(*options.cache, target.uri.text, gone);
  }
  return out;
}

Pruning prune_node(const Target& target, const LoadOptions& options, std::int64_t now) {
  Pruning out;
  auto statuses = target.client->check({});
  if (!statuses) {
    out.error = statuses.error().message;
  } else {
    for (const auto& s : *statuses) {
      if (!is_staging_name(s.name)) {
        continue;
      }
      if (staging_abandoned(s.name, now)) {
        out.removed.push_back(s.name);
      } else {
        ++out.kept;
      }
    }
    if (options.dry_run == DryRun::no) {
      if (auto r = remove_and_confirm(target, out.removed); !r) {
        out.error = r.error().message;
      }
    }
  }
  if (options.cache != nullptr) {
    if (options.dry_run == DryRun::yes) {
      auto record = options.cache->node(target.uri.text);
      out.record_forgotten = record && record->has_value();
    } else {
      out.record_forgotten = options.cache->forget_node(target.uri.text).value_or(false);
    }
  }
  return out;
}

} // namespace

util::Result<std::vector<std::string>> normalize_names(const std::vector<std::string>& images) {
  std::vector<std::string> out;
  for (const auto& image : images) {
    auto name = format::normalize_image_name(image);
    if (!name) {
      return util::fail(ErrorKind::usage, fmt::format("image \"{}\": {}", image, name.error().message));
    }
    if (!contains(out, *name)) {
      out.push_back(*name);
    }
  }
  return out;
}

std::vector<node::ImageStatus> shown_names(std::vector<node::ImageStatus> statuses,
                                           const std::vector<std::string>& wanted) {
  std::erase_if(statuses, [&](const node::ImageStatus& s) {
    return wanted.empty() ? is_staging_name(s.name) || is_cri_id_name(s.name) : !contains(wanted, s.name);
  });
  std::sort(statuses.begin(), statuses.end(),
            [](const node::ImageStatus& a, const node::ImageStatus& b) { return a.name < b.name; });
  return statuses;
}

std::vector<NodeNames> read_names(const std::vector<Target>& targets, const std::vector<std::string>& wanted,
                                  unsigned jobs, Layers layers) {
  std::vector<NodeNames> out(targets.size());
  util::parallel_for(targets.size(), jobs, [&](std::size_t i) {
    if (layers == Layers::shown) {
      auto probe = targets[i].client->probe({.uuid = false, .inventory = true, .snapshotter = false, .zstd = false});
      if (!probe) {
        out[i].error = probe.error().message;
        return;
      }
      out[i].images = shown_names(std::move(probe->images), wanted);
      out[i].inventory = std::move(probe->inventory);
      return;
    }
    auto statuses = targets[i].client->check(wanted);
    if (!statuses) {
      out[i].error = statuses.error().message;
      return;
    }
    out[i].images = shown_names(std::move(*statuses), wanted);
  });
  return out;
}

namespace {

// The layers of `target` in `inventory`: a manifest's, or those of every platform
// manifest of an index that the node has.
std::set<Digest> layers_of(const node::NodeInventory& inventory, const Digest& target) {
  std::set<Digest> out;
  const auto add = [&](const Digest& manifest) {
    if (const auto it = inventory.manifest_layers.find(manifest); it != inventory.manifest_layers.end()) {
      out.insert(it->second.begin(), it->second.end());
    }
  };
  add(target);
  if (const auto it = inventory.index_children.find(target); it != inventory.index_children.end()) {
    for (const auto& child : it->second) {
      add(child);
    }
  }
  return out;
}

// The layers of the image `row` names on node `i`; empty when unknown there.
std::set<Digest> row_layers(const NameRow& row, const std::vector<NodeNames>& nodes, std::size_t i) {
  if (i >= nodes.size() || !nodes[i].inventory || !row.on[i]) {
    return {};
  }
  return layers_of(*nodes[i].inventory, row.on[i]->target);
}

} // namespace

std::vector<LayerRow> layer_rows(const NameRow& row, const std::vector<NameRow>& rows,
                                 const std::vector<NodeNames>& nodes) {
  std::set<Digest> digests;
  for (std::size_t i = 0; i < row.on.size(); ++i) {
    const auto here = row_layers(row, nodes, i);
    digests.insert(here.begin(), here.end());
  }
  std::vector<LayerRow> out;
  for (const auto& digest : digests) {
    LayerRow layer{digest, 0, {}};
    for (const auto& other : rows) {
      for (std::size_t i = 0; i < other.on.size(); ++i) {
        if (row_layers(other, nodes, i).contains(digest)) {
          ++layer.shared_by;
          break;
        }
      }
    }
    for (std::size_t i = 0; i < row.on.size(); ++i) {
      if (i >= nodes.size() || nodes[i].failed() || !nodes[i].inventory) {
        layer.held.emplace_back(std::nullopt);
        continue;
      }
      const bool unpacked = std::any_of(rows.begin(), rows.end(), [&](const NameRow& other) {
        return other.on[i] && other.on[i]->complete && row_layers(other, nodes, i).contains(digest);
      });
      layer.held.emplace_back(nodes[i].inventory->blobs.contains(digest) || unpacked);
    }
    out.push_back(std::move(layer));
  }
  return out;
}

std::string_view state_text(NameState state) {
  switch (state) {
  case NameState::present:
    return "present";
  case NameState::missing:
    return "missing";
  case NameState::incomplete:
    return "incomplete";
  case NameState::different:
    return "different";
  case NameState::unknown:
    return "unknown";
  }
  return "unknown";
}

std::vector<NameRow> name_rows(const std::vector<NodeNames>& nodes, const std::vector<std::string>& wanted) {
  std::set<std::string> names(wanted.begin(), wanted.end());
  if (wanted.empty()) {
    for (const auto& n : nodes) {
      for (const auto& s : n.images) {
        names.insert(s.name);
      }
    }
  }
  std::vector<NameRow> rows;
  for (const auto& name : names) {
    NameRow row{name, std::vector<std::optional<node::ImageStatus>>(nodes.size()),
                std::vector<NameState>(nodes.size(), NameState::missing), NameState::present};
    std::set<util::Digest> targets;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const auto& images = nodes[i].images;
      const auto it =
          std::find_if(images.begin(), images.end(), [&](const node::ImageStatus& s) { return s.name == name; });
      if (!nodes[i].failed() && it != images.end()) {
        row.on[i] = *it;
        targets.insert(it->target);
      }
    }
    bool any = false;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto& cell = row.states[i];
      if (nodes[i].failed()) {
        cell = NameState::unknown;
        continue;
      }
      any = true;
      if (!row.on[i]) {
        cell = NameState::missing;
      } else if (!row.on[i]->complete) {
        cell = NameState::incomplete;
      } else {
        cell = targets.size() > 1 ? NameState::different : NameState::present;
      }
    }
    const auto some = [&](NameState s) {
      return std::find(row.states.begin(), row.states.end(), s) != row.states.end();
    };
    if (!any) {
      row.state = NameState::unknown;
    } else if (targets.size() > 1) {
      row.state = NameState::different;
    } else if (some(NameState::incomplete)) {
      row.state = NameState::incomplete;
    } else if (some(NameState::missing)) {
      row.state = NameState::missing;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

util::Result<std::vector<std::string>> names_to_remove(const std::vector<std::string>& images) {
  for (const auto& image : images) {
    auto name = format::normalize_image_name(image);
    if (name && is_staging_name(*name)) {
      return util::fail(ErrorKind::usage,
                        fmt::format("image \"{}\": localhost/kload-staging/ is kload's private staging namespace; "
                                    "'kload prune' removes the staging names of loads that have ended",
                                    image));
    }
  }
  return normalize_names(images);
}

std::vector<Removal> remove_names(const std::vector<Target>& targets, const std::vector<std::string>& names,
                                  const LoadOptions& options) {
  std::vector<Removal> out(targets.size());
  util::parallel_for(targets.size(), options.jobs,
                     [&](std::size_t i) { out[i] = remove_from(targets[i], names, options); });
  return out;
}

std::vector<Pruning> prune(const std::vector<Target>& targets, const LoadOptions& options, std::int64_t now) {
  std::vector<Pruning> out(targets.size());
  util::parallel_for(targets.size(), options.jobs,
                     [&](std::size_t i) { out[i] = prune_node(targets[i], options, now); });
  return out;
}

} // namespace kload::load
