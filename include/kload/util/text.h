#pragma once
// Small text helpers for parsing the output of other programs.

#include <string_view>

namespace kload::util {

// `s` without leading and trailing spaces, tabs, CR and LF.
constexpr std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return {};
  }
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

} // namespace kload::util
