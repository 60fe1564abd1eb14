#include "kload/format/verify.h"

#include "kload/format/archive_reader.h"
#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace kload::format {
namespace {

namespace fs = std::filesystem;
using kload::testing::Scratch;
using util::Digest;
using util::Sha256;

std::vector<Digest> all_blobs(const ImageSet& set) {
  std::vector<Digest> out;
  for (const auto& image : set.images) {
    for (const auto& d : ImageSet::blobs_of(image)) {
      out.push_back(d);
    }
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = text.find('\n', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return out;
}

// A blob whose metadata claims `claimed` and whose bytes are `bytes` in memory.
Blob memory_blob(const std::string& entry, const Digest& claimed, const std::string& bytes) {
  Blob b;
  b.digest = claimed;
  b.size = bytes.size();
  b.where.source = "memory.tar";
  b.where.entry = entry;
  b.where.memory = std::make_shared<const std::string>(bytes);
  return b;
}

// A blob of `size` bytes at `offset` in `file`.
Blob file_blob(const std::string& entry, const Digest& claimed, const fs::path& file, std::uint64_t offset,
               std::uint64_t size) {
  Blob b;
  b.digest = claimed;
  b.size = size;
  b.where.source = "file.tar";
  b.where.entry = entry;
  b.where.file = file;
  b.where.offset = offset;
  return b;
}

void add(ImageSet& set, Blob b) { set.blobs.emplace(b.digest, std::move(b)); }

class VerifyJobs : public ::testing::TestWithParam<unsigned> {
protected:
  Scratch scratch;
};

TEST_P(VerifyJobs, HashesEachBlobOnce) {
  const auto archive = scratch / "two.tar";
  ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:300K,top:200K", "--image",
                                       "other:v1=base:300K,big:1100K", archive.string()}));
  ImageSet set;
  auto read = read_archive(archive.string(), set);
  ASSERT_TRUE(read.has_value()) << read.error().message;
  ASSERT_TRUE(read->indexed_in_place);
  const auto which = all_blobs(set);  // the shared base layer twice
  std::uint64_t expected_bytes = 0;
  std::uint64_t expected_blobs = 0;
  for (const auto& d : std::set<Digest>(which.begin(), which.end())) {
    const Blob* b = set.find(d);
    ASSERT_NE(b, nullptr);
    if (!b->computed) {
      expected_bytes += b->size;
      ++expected_blobs;
    }
  }
  EXPECT_EQ(expected_blobs, 3u) << "the three layers are read in place, unhashed";

  auto first = verify_blobs(set, which, GetParam());
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_EQ(first->blobs_hashed, expected_blobs);
  EXPECT_EQ(first->bytes_hashed, expected_bytes);
  for (const auto& [digest, blob] : set.blobs) {
    EXPECT_EQ(blob.computed, digest) << blob.where.entry;
  }

  auto second = verify_blobs(set, which, GetParam());
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_EQ(second->blobs_hashed, 0u);
  EXPECT_EQ(second->bytes_hashed, 0u);
}

TEST_P(VerifyJobs, OnlyTheBlobsAskedFor) {
  const auto archive = scratch / "one.tar";
  ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=a:10K,b:20K", archive.string()}));
  ImageSet set;
  ASSERT_TRUE(read_archive(archive.string(), set).has_value());
  const auto& layer = set.images.at(0).layers.at(1).blob;
  auto v = verify_blobs(set, {layer.digest, layer.digest}, GetParam());
  ASSERT_TRUE(v.has_value()) << v.error().message;
  EXPECT_EQ(v->blobs_hashed, 1u);
  EXPECT_EQ(v->bytes_hashed, layer.size);
  EXPECT_FALSE(set.find(set.images[0].layers[0].blob.digest)->computed.has_value());
  // A digest the set does not hold is not this function's business.
  v = verify_blobs(set, {Sha256::of("not in the set")}, GetParam());
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->blobs_hashed, 0u);
}

TEST_P(VerifyJobs, ReportsEveryMismatchAndReadFailure) {
  const auto file = scratch / "data.bin";
  kload::testing::write_file(file, "....HELLO....WORLD");
  ImageSet set;
  const Digest good_mem = Sha256::of("fine");
  const Digest bad_mem = Sha256::of("what the metadata says");
  const Digest good_file = Sha256::of("HELLO");
  const Digest bad_file = Sha256::of("world");
  const Digest missing = Sha256::of("missing");
  const Digest short_read = Sha256::of("short");
  add(set, memory_blob("good-mem", good_mem, "fine"));
  add(set, memory_blob("bad-mem", bad_mem, "something else"));
  add(set, file_blob("good-file", good_file, file, 4, 5));
  add(set, file_blob("bad-file", bad_file, file, 13, 5));
  add(set, file_blob("missing-file", missing, scratch / "no-such-file", 0, 5));
  add(set, file_blob("short-file", short_read, file, 10, 100));
  const std::vector<Digest> which{good_mem, bad_mem, good_file, bad_file, missing, short_read};

  auto v = verify_blobs(set, which, GetParam());
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().kind, util::ErrorKind::bad_input);
  const auto lines = lines_of(v.error().message);
  EXPECT_EQ(lines.size(), 4u) << v.error().message;
  const auto line_about = [&](const std::string& entry) -> std::string {
    for (const auto& l : lines) {
      if (l.find(": " + entry + ": ") != std::string::npos) {
        return l;
      }
    }
    ADD_FAILURE() << "no line about " << entry << " in:\n" << v.error().message;
    return {};
  };
  const auto mem_line = line_about("bad-mem");
  EXPECT_TRUE(mem_line.starts_with("memory.tar: bad-mem: ")) << mem_line;
  EXPECT_NE(mem_line.find(bad_mem.str()), std::string::npos) << mem_line;
  EXPECT_NE(mem_line.find(Sha256::of("something else").str()), std::string::npos) << mem_line;
  EXPECT_LT(mem_line.find(Sha256::of("something else").str()), mem_line.find(bad_mem.str()))
      << "actual digest first, then the expected one: " << mem_line;

  const auto file_line = line_about("bad-file");
  EXPECT_TRUE(file_line.starts_with("file.tar: bad-file: ")) << file_line;
  EXPECT_NE(file_line.find(bad_file.str()), std::string::npos) << file_line;
  EXPECT_NE(file_line.find(Sha256::of("WORLD").str()), std::string::npos) << file_line;

  EXPECT_NE(line_about("missing-file").find("no-such-file"), std::string::npos);
  EXPECT_NE(line_about("short-file").find("short read"), std::string::npos);

  // What did hash is recorded, right or wrong; what could not be read is not.
  EXPECT_EQ(set.find(good_mem)->computed, good_mem);
  EXPECT_EQ(set.find(good_file)->computed, good_file);
  EXPECT_EQ(set.find(bad_mem)->computed, Sha256::of("something else"));
  EXPECT_EQ(set.find(bad_file)->computed, Sha256::of("WORLD"));
  EXPECT_FALSE(set.find(missing)->computed.has_value());
  EXPECT_FALSE(set.find(short_read)->computed.has_value());

  // A second call hashes nothing new but still reports the known mismatches.
  v = verify_blobs(set, {good_mem, bad_mem, good_file}, GetParam());
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(lines_of(v.error().message).size(), 1u) << v.error().message;
}

TEST_P(VerifyJobs, MismatchFoundWhileStreamingIsReported) {
  ImageSet set;
  Blob b = memory_blob("layer.tar", Sha256::of("claimed"), "claimed");
  b.computed = Sha256::of("streamed bytes");
  add(set, b);
  auto v = verify_blobs(set, {b.digest}, GetParam());
  ASSERT_FALSE(v.has_value());
  EXPECT_NE(v.error().message.find(Sha256::of("streamed bytes").str()), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find(Sha256::of("claimed").str()), std::string::npos) << v.error().message;
}

TEST_P(VerifyJobs, CorruptLayerInARealArchive) {
  const auto archive = scratch / "corrupt.tar";
  const auto desc_file = scratch / "corrupt.json";
  ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:300K,top:1K", "--fault", "corrupt-layer",
                                       "--json-out", desc_file.string(), archive.string()}));
  const auto desc = nlohmann::json::parse(kload::testing::read_file(desc_file));
  const std::string expected = desc["fault_details"]["corrupt_layer"];
  const std::string entry = desc["images"][0]["layers"][0]["path"];
  ImageSet set;
  ASSERT_TRUE(read_archive(archive.string(), set).has_value());
  auto v = verify_blobs(set, all_blobs(set), GetParam());
  ASSERT_FALSE(v.has_value());
  const auto& message = v.error().message;
  EXPECT_EQ(lines_of(message).size(), 1u) << message;
  EXPECT_TRUE(message.starts_with(archive.string() + ": " + entry + ": content is sha256:")) << message;
  EXPECT_NE(message.find("expected " + expected), std::string::npos) << message;
}

TEST_P(VerifyJobs, SharedCorruptLayerIsReportedOnce) {
  const auto archive = scratch / "shared.tar";
  const auto desc_file = scratch / "shared.json";
  ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:300K,top:1K", "--image", "other:v1=base:300K",
                                       "--fault", "corrupt-layer", "--json-out", desc_file.string(),
                                       archive.string()}));
  ImageSet set;
  ASSERT_TRUE(read_archive(archive.string(), set).has_value());
  const auto which = all_blobs(set);
  const auto base = set.images.at(0).layers.at(0).blob.digest;
  ASSERT_EQ(std::count(which.begin(), which.end(), base), 2) << "both images need the corrupt layer";
  auto v = verify_blobs(set, which, GetParam());
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(lines_of(v.error().message).size(), 1u) << "one blob, one line:\n" << v.error().message;
}

INSTANTIATE_TEST_SUITE_P(Jobs, VerifyJobs, ::testing::Values(1u, 4u),
                         [](const auto& info) { return "jobs" + std::to_string(info.param); });

TEST(ReadBlob, ChunksOfAtMostOneMebibyteFromTheRightOffset) {
  Scratch scratch;
  const auto file = scratch / "data.bin";
  std::string data(3 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 31 + (i >> 9));
  }
  kload::testing::write_file(file, data);
  const std::uint64_t offset = 12345;
  const std::uint64_t size = (5u << 19) + 7;  // 2.5 MiB and a bit
  const Blob b = file_blob("x", Sha256::of(std::string_view(data).substr(offset, size)), file, offset, size);
  std::string got;
  int chunks = 0;
  auto r = read_blob(b, [&](std::string_view chunk) -> util::Result<void> {
    EXPECT_LE(chunk.size(), 1u << 20);
    EXPECT_GT(chunk.size(), 0u);
    got.append(chunk);
    ++chunks;
    return {};
  });
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(got.size(), size);
  EXPECT_TRUE(got == data.substr(offset, size));
  EXPECT_GE(chunks, 3);
}

TEST(ReadBlob, SinkErrorStopsReading) {
  Scratch scratch;
  const auto file = scratch / "data.bin";
  kload::testing::write_file(file, std::string(3 << 20, 'x'));
  const Blob b = file_blob("x", Sha256::of("irrelevant"), file, 0, 3 << 20);
  int calls = 0;
  auto r = read_blob(b, [&](std::string_view) -> util::Result<void> {
    ++calls;
    return util::fail(util::ErrorKind::io, "the pipe is gone");
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "the pipe is gone");
  EXPECT_EQ(calls, 1);
}

TEST(ReadBlob, EmptyAndMemoryBlobs) {
  Scratch scratch;
  const auto file = scratch / "empty.bin";
  kload::testing::write_file(file, "");
  std::string got = "unchanged";
  auto r = read_blob(file_blob("e", Sha256::of(""), file, 0, 0), [&](std::string_view chunk) -> util::Result<void> {
    got = chunk;
    return {};
  });
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(got, "unchanged") << "no data, no chunk";

  r = read_blob(memory_blob("m", Sha256::of("abc"), "abc"), [&](std::string_view chunk) -> util::Result<void> {
    got = chunk;
    return {};
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(got, "abc");
}

} // namespace
} // namespace kload::format
