#pragma once
// Small text helpers: parsing the output of other programs, joining words.

#include <string>
#include <string_view>
#include <vector>

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

// `words` with `sep` between each two.
inline std::string joined(const std::vector<std::string>& words, std::string_view sep = " ") {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) {
      out += sep;
    }
    out += w;
  }
  return out;
}

// Splits on runs of any of `seps`, dropping empty pieces.
inline std::vector<std::string_view> fields_of(std::string_view line, std::string_view seps) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    const auto start = line.find_first_not_of(seps, pos);
    if (start == std::string_view::npos) {
      break;
    }
    const auto end = line.find_first_of(seps, start);
    out.push_back(line.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) {
      break;
    }
    pos = end;
  }
  return out;
}

} // namespace kload::util
