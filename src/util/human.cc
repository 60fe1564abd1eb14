#include "kload/util/human.h"

#include <fmt/format.h>

namespace kload::util {

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) {
    return fmt::format("{} B", bytes);
  }
  return fmt::format("{:.1f} {}", value, units[unit]);
}

std::string human_seconds(double seconds) {
  if (seconds < 1.0) {
    return fmt::format("{:.3f} s", seconds);
  }
  if (seconds < 60.0) {
    return fmt::format("{:.1f} s", seconds);
  }
  const auto total = static_cast<long>(seconds);
  return fmt::format("{}m{:02}s", total / 60, total % 60);
}

} // namespace kload::util
