#pragma once
// Image names as Docker and containerd understand them.

#include "kload/util/error.h"

#include <string>
#include <string_view>

namespace kload::format {

// Normalises a name the way Docker does: "app" -> "docker.io/library/app:latest",
// "local:centos8-ssh" -> "docker.io/library/local:centos8-ssh", "user/app" ->
// "docker.io/user/app:latest"; a first component holding '.' or ':' or equal to
// "localhost" is a registry and is left alone ("localhost:5000/x" ->
// "localhost:5000/x:latest"). A name with a digest keeps it and gets no tag.
// Error (bad_input): empty name, upper-case repository, bad characters or tag.
util::Result<std::string> normalize_image_name(std::string_view name);

// True when `name` is a complete reference rather than a bare tag such as "v1"
// (OCI archives written by skopeo often carry only the tag as the ref name).
bool looks_like_reference(std::string_view name);

} // namespace kload::format
