#include "kload/util/human.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace kload::util {
namespace {

TEST(Human, Bytes) {
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(1), "1 B");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1024), "1.0 KiB");
  EXPECT_EQ(human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(human_bytes(1ull << 20), "1.0 MiB");
  EXPECT_EQ(human_bytes(3ull << 29), "1.5 GiB");
  EXPECT_EQ(human_bytes(1ull << 40), "1.0 TiB");
  // Nothing beyond TiB: large values stay in TiB.
  EXPECT_EQ(human_bytes(1ull << 50), "1024.0 TiB");
  EXPECT_EQ(human_bytes(std::numeric_limits<std::uint64_t>::max()), "16777216.0 TiB");
}

TEST(Human, Seconds) {
  EXPECT_EQ(human_seconds(0), "0.000 s");
  EXPECT_EQ(human_seconds(0.042), "0.042 s");
  EXPECT_EQ(human_seconds(1), "1.0 s");
  EXPECT_EQ(human_seconds(3.4), "3.4 s");
  EXPECT_EQ(human_seconds(59.5), "59.5 s");
  EXPECT_EQ(human_seconds(60), "1m00s");
  EXPECT_EQ(human_seconds(125), "2m05s");
  EXPECT_EQ(human_seconds(3600), "60m00s");
}

} // namespace
} // namespace kload::util
