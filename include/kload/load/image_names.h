#pragma once
// The names a load sets, checked before any node is touched: every image to load has
// a name, no name lies about the manifest it points at, no name is kload's own, and
// no name is given to two different images. Pure: plain values in, images or one
// error line out.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <optional>
#include <string>
#include <vector>

namespace kload::load {

// Parses the argument of --name-as: an image name (normalised as any name, so "app"
// is docker.io/library/app:latest) with a tag, not a digest, outside kload's staging
// namespace. Error (usage), naming --name-as and the name.
util::Result<std::string> parse_name_as(const std::string& text);

// Gives every image of `set` that has no name (a docker save by ID, an OCI archive
// whose ref name is only a tag) the name `name_as` (from parse_name_as), and so also
// the unavailable platforms listed without a name. Error (bad_input), naming the
// input and the image: an image without a name when `name_as` is empty -- whether or
// not other images have names, it is never left out silently.
util::Result<void> name_unnamed(format::ImageSet& set, const std::string& name_as);

// Checks every name of every image of `set`. Error (bad_input), one line naming the
// input and the name: a name in kload's staging namespace (load::is_staging_name); a
// name with a digest that is not the digest of what the name will point at
// (format::Image::target: the image's index, else the manifest kload sends; the name
// would point elsewhere than it says); a name given to two
// different images (other image IDs) of one platform, naming both inputs.
util::Result<void> check_names(const format::ImageSet& set);

// Checks that no name is carried by two of the chosen `images`. Error (bad_input),
// naming the name and both images with their inputs.
util::Result<void> check_chosen_names(const std::vector<const format::Image*>& images);

// The images one load sets: name_unnamed, check_names, plan::select_images (one
// platform per name), check_chosen_names. Error (bad_input): as those.
util::Result<std::vector<const format::Image*>> choose_images(format::ImageSet& set,
                                                              const std::optional<format::Platform>& platform,
                                                              const std::string& name_as);

} // namespace kload::load
