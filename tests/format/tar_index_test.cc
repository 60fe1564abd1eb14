// The tar index: the same entries and the same bytes whether a tar is read in place or
// streamed (kept in memory or spooled), links followed within the archive, in-place
// reads counted, the spool directory gone with its last owner.

#include "kload/format/tar_index.h"

#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace kload::format {
namespace {

namespace fs = std::filesystem;
using kload::testing::Scratch;

class TarIndexTest : public ::testing::Test {
protected:
  // A tar of `files` (and a link "link.txt" -> "dir/big.bin"), compressed with gzip
  // when `gzip`.
  fs::path make_tar(bool gzip) {
    const auto dir = scratch / (gzip ? "files-gz" : "files");
    fs::create_directories(dir / "dir");
    kload::testing::write_file(dir / "small.json", small);
    kload::testing::write_file(dir / "dir" / "big.bin", big);
    fs::create_symlink("dir/big.bin", dir / "link.txt");
    const auto out = scratch / (gzip ? "a.tar.gz" : "a.tar");
    const auto r = kload::testing::run_command(
        {"tar", gzip ? "-czf" : "-cf", out.string(), "-C", dir.string(), "small.json", "dir", "link.txt"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }

  Scratch scratch;
  const std::string small = R"({"a":1})";
  const std::string big = std::string(300000, 'x') + "end";
};

TEST_F(TarIndexTest, InPlaceAndStreamedGiveTheSameBytes) {
  for (const bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "streamed" : "in place");
    const auto tar = make_tar(gzip);
    // Streamed entries over 1 KiB are spooled.
    const ReadLimits limits{.memory_entry_bytes = 1024};
    std::shared_ptr<util::TempDir> spool;
    {
      TarIndex index(tar.string(), limits);
      ASSERT_TRUE(index.scan().has_value());
      EXPECT_EQ(index.stats().indexed_in_place, !gzip);
      std::string resolved;
      const TarEntry* link = index.lookup("./link.txt", &resolved);
      ASSERT_NE(link, nullptr);
      EXPECT_EQ(resolved, "dir/big.bin");
      EXPECT_EQ(link->size, big.size());
      EXPECT_EQ(link->spool.empty(), !gzip);

      const auto before = index.stats().bytes_read;
      auto bytes = index.bytes("dir/big.bin", *link, 1 << 20);
      ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
      EXPECT_EQ(*bytes, big);
      EXPECT_EQ(*index.peek(*link, 3), "xxx");
      EXPECT_EQ(index.hash(*link), util::Sha256::of(big));
      if (!gzip) {
        EXPECT_EQ(index.stats().bytes_read - before, 2 * big.size() + 3) << "in-place reads are counted";
      }
      const auto loc = index.location_of("dir/big.bin", *link);
      EXPECT_EQ(loc.entry, "dir/big.bin");
      EXPECT_EQ(loc.file, gzip ? link->spool : tar);

      const TarEntry* json = index.lookup("small.json");
      ASSERT_NE(json, nullptr);
      EXPECT_EQ(*index.bytes("small.json", *json, 100), small);
      EXPECT_EQ(*index.peek(*json, 100), small) << "a peek past the end is the whole entry";
      auto too_big = index.bytes("dir/big.bin", *link, 1000);
      ASSERT_FALSE(too_big.has_value());
      EXPECT_EQ(too_big.error().message,
                fmt::format("{}: dir/big.bin: {} bytes is too large for a metadata document (limit 1000)",
                            tar.string(), big.size()));
      EXPECT_EQ(index.lookup("absent"), nullptr);
      EXPECT_EQ(index.lookup("../small.json"), nullptr);
      spool = index.spool();
      EXPECT_EQ(spool != nullptr, gzip);
    }
    if (spool) {
      const auto dir = spool->path();
      EXPECT_TRUE(fs::exists(dir)) << "kept alive by its owner";
      spool.reset();
      EXPECT_FALSE(fs::exists(dir)) << "removed with its last owner";
    }
  }
}

} // namespace
} // namespace kload::format
