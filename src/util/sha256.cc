#include "kload/util/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace kload::util {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {
void init_ctx(EVP_MD_CTX* ctx) {
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    std::abort(); // OpenSSL without SHA-256 is not a usable installation
  }
}
} // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr) {
    std::abort();
  }
  init_ctx(impl_->ctx);
}

Sha256::~Sha256() = default;

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

void Sha256::update(std::string_view data) {
  EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

Digest Sha256::finish() {
  std::array<std::uint8_t, Digest::size> out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, out.data(), &len);
  init_ctx(impl_->ctx);
  return Digest(out);
}

Digest Sha256::of(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

} // namespace kload::util
