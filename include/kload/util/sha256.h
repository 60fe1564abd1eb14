#pragma once
// Incremental SHA-256 through OpenSSL's EVP interface.

#include "kload/util/digest.h"

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace kload::util {

class Sha256 {
public:
  // Aborts only if OpenSSL cannot provide SHA-256 at all (a broken installation).
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  // Returns the digest of everything fed so far; the object is then reset.
  Digest finish();

  // One-shot digest of a buffer.
  static Digest of(std::string_view data);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace kload::util
