#include "kload/load/image_names.h"

#include "kload/format/image_ref.h"
#include "kload/load/loader.h"
#include "kload/plan/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

namespace kload::load {

namespace {

using util::ErrorKind;

std::string describe(const format::Image& image) {
  return fmt::format("{} ({}) from {}", image.id.str(), image.platform.str(), image.source);
}

util::Result<void> duplicate(const std::string& name, const format::Image& a, const format::Image& b) {
  return util::fail(ErrorKind::bad_input,
                    fmt::format("{} is given to two different images: {} and {}; load them under different names",
                                name, describe(a), describe(b)));
}

// A name's own problems: kload's namespace, or a digest naming another manifest.
util::Result<void> check_name(const std::string& name, const format::Image& image) {
  if (is_staging_name(name)) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: {}: localhost/kload-staging/ is kload's private staging namespace; no image "
                                  "is loaded under it",
                                  image.source, name));
  }
  const auto at = name.find('@');
  if (at == std::string::npos) {
    return {};
  }
  const auto digest = util::Digest::parse(std::string_view(name).substr(at + 1));
  // As in containerd, the name points at what the input names (Image::target): its
  // digest must be that one's, the index where the name is set at an index.
  const auto& target = image.target();
  if (!digest || *digest != target.digest) {
    const char* what = image.targets_index() ? "index" : "manifest";
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: {} names {}{}, but the image under it ({}) is named at {} {}; a name "
                                  "with a digest must name the {} it points at",
                                  image.source, name, image.targets_index() ? "" : "manifest ", name.substr(at + 1),
                                  image.id.str(), what, target.digest.str(), what));
  }
  return {};
}

} // namespace

util::Result<std::string> parse_name_as(const std::string& text) {
  auto name = format::normalize_image_name(text);
  if (!name) {
    return util::fail(ErrorKind::usage, fmt::format("--name-as: {}", name.error().message));
  }
  if (name->find('@') != std::string::npos) {
    return util::fail(ErrorKind::usage, fmt::format("--name-as \"{}\": give a tag, not a digest (a digest names "
                                                    "one manifest, and each platform has its own)",
                                                    text));
  }
  if (is_staging_name(*name)) {
    return util::fail(ErrorKind::usage,
                      fmt::format("--name-as \"{}\": localhost/kload-staging/ is kload's private staging namespace",
                                  text));
  }
  return name;
}

util::Result<void> name_unnamed(format::ImageSet& set, const std::string& name_as) {
  for (auto& image : set.images) {
    if (!image.names.empty()) {
      continue;
    }
    if (name_as.empty()) {
      return util::fail(ErrorKind::bad_input,
                        fmt::format("{}: image {} ({}) has no name; name it with --name-as NAME, or when saving "
                                    "(e.g. skopeo copy ... oci-archive:FILE:NAME:TAG)",
                                    image.source, image.id.str(), image.platform.str()));
    }
    image.names.push_back(name_as);
  }
  for (auto& u : set.unavailable) {
    if (u.names.empty() && !name_as.empty()) {
      u.names.push_back(name_as);
    }
  }
  return {};
}

util::Result<void> check_names(const format::ImageSet& set) {
  std::unordered_map<std::string, std::vector<const format::Image*>> by_name;
  for (const auto& image : set.images) {
    for (const auto& name : image.names) {
      if (auto r = check_name(name, image); !r) {
        return r;
      }
      auto& holders = by_name[name];
      // Images of other platforms under one name are the platforms of one image; the
      // same image ID (one image in two layouts, say) is the same image.
      const auto clash = std::find_if(holders.begin(), holders.end(), [&](const format::Image* other) {
        return other->platform == image.platform && other->id != image.id;
      });
      if (clash != holders.end()) {
        return duplicate(name, **clash, image);
      }
      holders.push_back(&image);
    }
  }
  return {};
}

util::Result<void> check_chosen_names(const std::vector<const format::Image*>& images) {
  std::unordered_map<std::string, const format::Image*> owner;
  for (const auto* image : images) {
    for (const auto& name : image->names) {
      const auto [it, fresh] = owner.try_emplace(name, image);
      if (!fresh && it->second != image) {
        return duplicate(name, *it->second, *image);
      }
    }
  }
  return {};
}

util::Result<std::vector<const format::Image*>> choose_images(format::ImageSet& set,
                                                              const std::optional<format::Platform>& platform,
                                                              const std::string& name_as) {
  if (auto r = name_unnamed(set, name_as); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = check_names(set); !r) {
    return std::unexpected(r.error());
  }
  auto images = plan::select_images(set, platform);
  if (!images) {
    return images;
  }
  if (auto r = check_chosen_names(*images); !r) {
    return std::unexpected(r.error());
  }
  return images;
}

} // namespace kload::load
