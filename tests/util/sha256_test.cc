#include "kload/util/sha256.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

namespace kload::util {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256::of("").str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::of("abc").str(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256::of(std::string(1000000, 'a')).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, OddSizedChunksEqualOneShot) {
  const std::string data(1 << 20, 'a');
  const Digest one_shot = Sha256::of(data);
  const std::size_t chunk_sizes[] = {1, 3, 7, 63, 64, 65, 4093, 65537};
  for (const std::size_t chunk : chunk_sizes) {
    Sha256 h;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
      h.update(std::string_view(data).substr(off, chunk));
    }
    EXPECT_EQ(h.finish(), one_shot) << "chunk size " << chunk;
  }
  // Varying chunk sizes, through the byte-span overload.
  Sha256 h;
  const auto* bytes = reinterpret_cast<const std::byte*>(data.data());
  std::size_t off = 0;
  for (std::size_t step = 1; off < data.size(); step = step * 7 % 10007 + 1) {
    const std::size_t n = std::min(step, data.size() - off);
    h.update(std::span<const std::byte>(bytes + off, n));
    off += n;
  }
  EXPECT_EQ(h.finish(), one_shot);
}

TEST(Sha256, FinishResets) {
  Sha256 h;
  h.update("something else");
  (void)h.finish();
  h.update("ab");
  h.update("c");
  EXPECT_EQ(h.finish(), Sha256::of("abc"));
  EXPECT_EQ(h.finish(), Sha256::of("")) << "a finished hasher starts again from empty";
}

TEST(Sha256, EmptyUpdatesChangeNothing) {
  Sha256 h;
  h.update("");
  h.update(std::span<const std::byte>());
  h.update("abc");
  h.update("");
  EXPECT_EQ(h.finish(), Sha256::of("abc"));
}

TEST(Sha256, Movable) {
  Sha256 a;
  a.update("ab");
  Sha256 b(std::move(a));
  b.update("c");
  EXPECT_EQ(b.finish(), Sha256::of("abc"));
  Sha256 c;
  c = std::move(b);
  c.update("abc");
  EXPECT_EQ(c.finish(), Sha256::of("abc"));
}

} // namespace
} // namespace kload::util
