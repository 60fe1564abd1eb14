#pragma once
// Image names as Docker and containerd understand them.

#include "kload/util/error.h"

#include <cstddef>
#include <string>
#include <string_view>

namespace kload::format {

// Normalises a name the way Docker does: "app" -> "docker.io/library/app:latest",
// "local:centos8-ssh" -> "docker.io/library/local:centos8-ssh", "user/app" ->
// "docker.io/user/app:latest"; a first component holding '.' or ':' or equal to
// "localhost" is a registry and is left alone ("localhost:5000/x" ->
// "localhost:5000/x:latest"), as is one with an upper-case letter. A name with a
// digest keeps it and gets no tag. Follows the distribution reference grammar:
// repository components are [a-z0-9]+ joined by one '.', '_', '__' or run of '-';
// registry hosts are dot-separated labels of letters, digits and inner '-' (or
// [IPv6]) with an optional numeric port; tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127};
// digests sha256:<64 lower-case hex>; the normalised repository (registry/path) is
// at most max_repository_length characters.
// Error (bad_input), naming the name and what is wrong: empty name, upper-case
// repository, a bad component, registry, tag or digest, too long.
util::Result<std::string> normalize_image_name(std::string_view name);

// The longest repository (registry/path, without tag or digest) the grammar allows.
inline constexpr std::size_t max_repository_length = 255;

// True when `name` is a complete reference rather than a bare tag such as "v1"
// (OCI archives written by skopeo often carry only the tag as the ref name).
bool looks_like_reference(std::string_view name);

} // namespace kload::format
