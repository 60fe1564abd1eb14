#include "kload/plan/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace kload::plan {

bool NodePlan::nothing_to_do() const {
  return std::all_of(steps.begin(), steps.end(), [](const ImageStep& s) { return s.action == Action::skip; });
}

std::size_t NodePlan::count(Action a) const {
  return static_cast<std::size_t>(
      std::count_if(steps.begin(), steps.end(), [a](const ImageStep& s) { return s.action == a; }));
}

namespace {

bool holds(const NamedImage& n, const util::Digest& id) {
  return n.complete && std::find(n.ids.begin(), n.ids.end(), id) != n.ids.end();
}

// A name that needs nothing: it holds the image ID, complete, and, for an image named
// at its index, points at that index (a pod may pin the index digest; a name left at
// the bare manifest by an older load is pointed at the index again).
bool named_as_wanted(const NamedImage& n, const format::Image& image) {
  return holds(n, image.id) && (!image.targets_index() || n.target == image.target().digest);
}

} // namespace

NodePlan plan_node(const std::vector<const format::Image*>& images, const NodeView& node) {
  NodePlan plan;
  std::unordered_set<util::Digest> planned_layers;
  std::unordered_set<util::Digest> counted_present;
  for (const auto* image : images) {
    ImageStep step;
    step.image = image;
    for (const auto& name : image->names) {
      const auto it = node.names.find(name);
      if (it == node.names.end() || !named_as_wanted(it->second, *image)) {
        step.names.push_back(name);
      }
    }
    if (step.names.empty()) {
      step.action = Action::skip;
      plan.steps.push_back(std::move(step));
      continue;
    }
    // Any complete name holding the ID will do as a source. One at this very target
    // comes first (the names can then be set by the same import that commits sends);
    // among equals the smallest name, for a stable choice.
    std::string source;
    bool source_exact = false;
    for (const auto& [name, named] : node.names) {
      if (!holds(named, image->id)) {
        continue;
      }
      const bool exact = named.target == image->target().digest;
      if (source.empty() || exact > source_exact || (exact == source_exact && name < source)) {
        source = name;
        source_exact = exact;
      }
    }
    if (!source.empty()) {
      step.action = Action::retag;
      step.retag_from = source;
      plan.steps.push_back(std::move(step));
      continue;
    }
    step.action = Action::send;
    for (const auto& layer : image->layers) {
      const auto& d = layer.blob.digest;
      if (node.blobs.contains(d)) {
        if (counted_present.insert(d).second) {
          ++plan.skipped_layers;
          plan.skipped_bytes += layer.blob.size;
        }
      } else if (planned_layers.insert(d).second) {
        plan.layers.push_back(d);
        plan.layer_bytes += layer.blob.size;
      }
    }
    plan.steps.push_back(std::move(step));
  }
  return plan;
}

util::Result<std::vector<const format::Image*>> select_images(const format::ImageSet& set,
                                                              const std::optional<format::Platform>& platform) {
  const auto want = platform.value_or(format::Platform::host());
  // Images that share a name are the platforms of one multi-platform image.
  std::map<std::string, std::vector<const format::Image*>> by_name;
  std::vector<std::string> unnamed;
  for (const auto& image : set.images) {
    if (image.names.empty()) {
      unnamed.push_back(fmt::format("{} ({})", image.id.str(), image.source));
      continue;
    }
    by_name[image.names.front()].push_back(&image);
  }
  if (by_name.empty()) {
    if (!unnamed.empty()) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("image {} has no name; name it when saving (e.g. skopeo copy ... "
                                    "oci-archive:FILE:NAME:TAG)",
                                    unnamed.front()));
    }
    return util::fail(util::ErrorKind::bad_input, "the input holds no loadable image");
  }
  std::vector<const format::Image*> chosen;
  for (const auto& [name, candidates] : by_name) {
    const format::Image* pick = nullptr;
    for (const auto* c : candidates) {
      if (c->platform.matches(want)) {
        pick = c;
        break;
      }
    }
    if (pick == nullptr && !platform && candidates.size() == 1) {
      pick = candidates.front();
    }
    if (pick == nullptr) {
      for (const auto& u : set.unavailable) {
        if (std::find(u.names.begin(), u.names.end(), name) != u.names.end() && u.platform.matches(want)) {
          return util::fail(util::ErrorKind::bad_input,
                            fmt::format("{}: {} for {} is listed but not loadable: {}", u.source, name, want.str(),
                                        u.reason));
        }
      }
      std::string have;
      for (const auto* c : candidates) {
        if (!have.empty()) {
          have += ", ";
        }
        have += c->platform.str();
      }
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("{}: no {} image (the input has {}); choose one with --platform", name,
                                    want.str(), have));
    }
    if (std::find(chosen.begin(), chosen.end(), pick) == chosen.end()) {
      chosen.push_back(pick);
    }
  }
  return chosen;
}

namespace {

// Whether `images`, all named `name`, are the whole of one index: one input, one
// outermost index, and no platform of that name unavailable in that input.
bool whole_index(const format::ImageSet& set, const std::string& name,
                 const std::vector<const format::Image*>& images) {
  const auto* first = images.front();
  if (first->indexes.empty()) {
    return false;
  }
  const bool one_index = std::all_of(images.begin(), images.end(), [&](const format::Image* i) {
    return i->source == first->source && !i->indexes.empty() &&
           i->indexes.front().digest == first->indexes.front().digest;
  });
  const bool none_missing = std::none_of(set.unavailable.begin(), set.unavailable.end(), [&](const auto& u) {
    return u.source == first->source && std::find(u.names.begin(), u.names.end(), name) != u.names.end();
  });
  return one_index && none_missing;
}

} // namespace

util::Result<std::vector<const format::Image*>> select_every_platform(const format::ImageSet& set) {
  std::map<std::string, std::vector<const format::Image*>> by_name;
  for (const auto& image : set.images) {
    if (!image.names.empty()) {
      by_name[image.names.front()].push_back(&image);
    }
  }
  std::vector<const format::Image*> out;
  bool all_whole = true;
  for (const auto& [name, images] : by_name) {
    all_whole = all_whole && whole_index(set, name, images);
  }
  std::vector<const format::Image*> picked;
  if (!all_whole || by_name.empty()) {
    auto chosen = select_images(set, std::nullopt);
    if (!chosen) {
      return std::unexpected(chosen.error());
    }
    picked = std::move(*chosen);
  }
  for (const auto& [name, images] : by_name) {
    const bool whole = whole_index(set, name, images);
    for (const auto* image : images) {
      const bool wanted = whole || std::find(picked.begin(), picked.end(), image) != picked.end();
      if (wanted && std::find(out.begin(), out.end(), image) == out.end()) {
        out.push_back(image);
      }
    }
  }
  return out;
}

} // namespace kload::plan
