#pragma once
// libarchive may fail without setting a message; fmt must never see a null string.

#include <archive.h>

namespace kload::format {

inline const char* archive_why(struct archive* a) {
  const char* why = archive_error_string(a);
  return why != nullptr ? why : "unknown error";
}

} // namespace kload::format
