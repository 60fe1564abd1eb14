#pragma once
// Where an image goes in a registry: the registry named on the command line and the
// repository and reference each image name becomes there. Pure: no network.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <string>
#include <string_view>

namespace kload::registry {

// --registry HOST[:PORT][/PREFIX].
struct RegistryAddress {
  std::string host;    // "localhost:5000", "registry.example.com"
  std::string prefix;  // "" or "team/sub", without slashes at either end
};

// Parses HOST[:PORT][/PREFIX] (no scheme: TLS or --plain-http decides it). Error
// (usage), naming the text: empty, longer than 255 characters, a scheme given, an
// invalid host or port, a prefix component that is not a repository path component
// ([a-z0-9] with '.', '_', '__' or '-' runs inside).
util::Result<RegistryAddress> parse_registry(std::string_view text);

// A repository in the registry and the tag (or digest) the image is pushed under.
struct Destination {
  std::string repository;  // path inside the registry: PREFIX/library/app
  std::string reference;   // "v1", or "sha256:<hex>" for a name that carries a digest

  // "HOST/repository:tag" or "HOST/repository@sha256:...".
  [[nodiscard]] std::string display(const RegistryAddress& registry) const;
};

// The destination of a normalised image name (format::normalize_image_name): the
// original registry host is dropped and the path kept under PREFIX:
// "docker.io/library/app:v1" with localhost:5000/team -> repository
// "team/library/app", reference "v1". Error (bad_input): a name that is not
// normalised (no host and path, neither tag nor digest), or a repository longer
// than the reference grammar allows.
util::Result<Destination> destination_for(std::string_view normalized_name, const RegistryAddress& registry);

// Whether `image` has a name to be pushed under. Error (bad_input): it has none,
// naming its source and ID.
util::Result<void> has_push_name(const format::Image& image);

} // namespace kload::registry
