#include "kload/util/digest.h"

namespace kload::util {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}
} // namespace

std::optional<Digest> Digest::parse_hex(std::string_view hex) {
  if (hex.size() != 2 * size) {
    return std::nullopt;
  }
  std::array<std::uint8_t, size> bytes{};
  for (std::size_t i = 0; i < size; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    bytes[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return Digest(bytes);
}

std::optional<Digest> Digest::parse(std::string_view text) {
  constexpr std::string_view prefix = "sha256:";
  if (!text.starts_with(prefix)) {
    return std::nullopt;
  }
  return parse_hex(text.substr(prefix.size()));
}

std::string Digest::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(2 * size, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[bytes_[i] >> 4];
    out[2 * i + 1] = digits[bytes_[i] & 0xf];
  }
  return out;
}

std::string Digest::str() const { return "sha256:" + hex(); }

} // namespace kload::util
