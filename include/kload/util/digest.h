#pragma once
// A SHA-256 content digest as a value type, never as a loose string.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kload::util {

class Digest {
public:
  static constexpr std::size_t size = 32;

  Digest() = default;
  explicit Digest(const std::array<std::uint8_t, size>& bytes) : bytes_(bytes) {}

  // Parses "sha256:<64 lowercase hex>"; nullopt for anything else (other algorithms,
  // upper case, wrong length).
  static std::optional<Digest> parse(std::string_view text);
  // Parses a bare 64-character lowercase hex string.
  static std::optional<Digest> parse_hex(std::string_view hex);

  // "sha256:<hex>".
  [[nodiscard]] std::string str() const;
  // The 64 hex characters.
  [[nodiscard]] std::string hex() const;
  // The first 12 hex characters, for display.
  [[nodiscard]] std::string short_hex() const { return hex().substr(0, 12); }
  [[nodiscard]] const std::array<std::uint8_t, size>& bytes() const { return bytes_; }

  auto operator<=>(const Digest&) const = default;

private:
  std::array<std::uint8_t, size> bytes_{};
};

} // namespace kload::util

template <> struct std::hash<kload::util::Digest> {
  std::size_t operator()(const kload::util::Digest& d) const noexcept {
    std::size_t h = 0;
    for (std::size_t i = 0; i < sizeof(h); ++i) {
      h = (h << 8) | d.bytes()[i];
    }
    return h;
  }
};
