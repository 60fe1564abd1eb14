#include "kload/util/digest.h"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>

namespace kload::util {
namespace {

// sha256("abc").
constexpr const char* abc_hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Digest, ParseStrHexRoundTrip) {
  const auto d = Digest::parse(std::string("sha256:") + abc_hex);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->hex(), abc_hex);
  EXPECT_EQ(d->str(), std::string("sha256:") + abc_hex);
  EXPECT_EQ(d->short_hex(), "ba7816bf8f01");
  EXPECT_EQ(d->bytes()[0], 0xba);
  EXPECT_EQ(d->bytes()[31], 0xad);

  const auto again = Digest::parse(d->str());
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *d);

  const auto from_hex = Digest::parse_hex(d->hex());
  ASSERT_TRUE(from_hex.has_value());
  EXPECT_EQ(*from_hex, *d);
}

TEST(Digest, EveryByteValueRoundTrips) {
  std::array<std::uint8_t, Digest::size> bytes{};
  for (int start = 0; start < 256; start += Digest::size) {
    for (std::size_t i = 0; i < Digest::size; ++i) {
      bytes[i] = static_cast<std::uint8_t>(start + static_cast<int>(i));
    }
    const Digest d(bytes);
    const auto back = Digest::parse(d.str());
    ASSERT_TRUE(back.has_value()) << d.str();
    EXPECT_EQ(back->bytes(), bytes);
  }
}

TEST(Digest, DefaultIsAllZero) {
  const Digest d;
  EXPECT_EQ(d.hex(), std::string(64, '0'));
  EXPECT_EQ(d.str(), "sha256:" + std::string(64, '0'));
}

TEST(Digest, RejectsUpperCase) {
  std::string upper = abc_hex;
  for (auto& c : upper) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  EXPECT_FALSE(Digest::parse("sha256:" + upper).has_value());
  EXPECT_FALSE(Digest::parse_hex(upper).has_value());
  std::string one_upper = abc_hex;
  one_upper[63] = 'D';
  EXPECT_FALSE(Digest::parse_hex(one_upper).has_value());
  EXPECT_FALSE(Digest::parse(std::string("SHA256:") + abc_hex).has_value());
}

TEST(Digest, RejectsWrongLength) {
  const std::string hex = abc_hex;
  EXPECT_FALSE(Digest::parse("sha256:" + hex.substr(0, 63)).has_value());
  EXPECT_FALSE(Digest::parse("sha256:" + hex + "0").has_value());
  EXPECT_FALSE(Digest::parse("sha256:").has_value());
  EXPECT_FALSE(Digest::parse("").has_value());
  EXPECT_FALSE(Digest::parse_hex("").has_value());
  EXPECT_FALSE(Digest::parse_hex(hex.substr(0, 62)).has_value());
  EXPECT_FALSE(Digest::parse_hex(hex + hex).has_value());
}

TEST(Digest, RejectsOtherAlgorithmsAndJunk) {
  const std::string hex = abc_hex;
  EXPECT_FALSE(Digest::parse("sha512:" + hex).has_value());
  EXPECT_FALSE(Digest::parse("sha256+b64:" + hex).has_value());
  EXPECT_FALSE(Digest::parse("md5:" + hex).has_value());
  EXPECT_FALSE(Digest::parse(hex).has_value()) << "a bare hex string is not a digest";
  EXPECT_FALSE(Digest::parse(" sha256:" + hex).has_value());
  EXPECT_FALSE(Digest::parse("sha256: " + hex.substr(1)).has_value());
  std::string bad = hex;
  bad[10] = 'g';
  EXPECT_FALSE(Digest::parse_hex(bad).has_value());
  bad[10] = '\0';
  EXPECT_FALSE(Digest::parse_hex(bad).has_value());
}

TEST(Digest, OrderingAndHashing) {
  const auto a = Digest::parse_hex(std::string(63, '0') + "1");
  const auto b = Digest::parse_hex(std::string(63, '0') + "2");
  const auto c = Digest::parse_hex("1" + std::string(63, '0'));
  ASSERT_TRUE(a && b && c);
  EXPECT_LT(*a, *b);
  EXPECT_LT(*b, *c);
  EXPECT_NE(*a, *b);
  std::unordered_set<Digest> set{*a, *b, *c, *a};
  EXPECT_EQ(set.size(), 3u);
  EXPECT_TRUE(set.contains(*b));
}

} // namespace
} // namespace kload::util
