#pragma once
// Formatting for people: sizes and durations.

#include <cstdint>
#include <string>

namespace kload::util {

// 1536 -> "1.5 KiB", 0 -> "0 B".
std::string human_bytes(std::uint64_t bytes);
// Seconds with a sensible precision: "0.042 s", "3.4 s", "2m05s".
std::string human_seconds(double seconds);

} // namespace kload::util
