// The compressor of the stream to ssh nodes: what it writes decompresses to exactly
// what it was given, by libzstd and by the zstd program nodes run; a stream that was
// never finished (the writer failed half-way) is refused by both as cut.

#include "kload/util/zstd_stream.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

#include <string>

namespace kload::util {
namespace {

// Text that compresses as real files do, with some bytes that do not.
std::string sample(std::size_t size) {
  std::string out;
  std::uint32_t x = 12345;
  while (out.size() < size) {
    out += "usr/lib/x86_64-linux-gnu/libexample.so.1 rw-r--r-- root root ";
    for (int i = 0; i < 16; ++i) {
      x = x * 1664525u + 1013904223u;
      out += static_cast<char>(x >> 24);
    }
  }
  out.resize(size);
  return out;
}

struct Collected {
  std::string bytes;
  ByteSink sink() {
    return [this](std::string_view b) -> Result<void> {
      bytes.append(b);
      return {};
    };
  }
};

// Writes `input` in chunks of `chunk` bytes; finishes the frame when `finish`.
Collected compress(const std::string& input, std::size_t chunk, bool finish) {
  Collected out;
  auto z = ZstdWriter::open(out.sink(), 1);
  EXPECT_TRUE(z.has_value()) << z.error().message;
  for (std::size_t at = 0; at < input.size(); at += chunk) {
    EXPECT_TRUE(z->write(std::string_view(input).substr(at, chunk)).has_value());
  }
  if (finish) {
    EXPECT_TRUE(z->finish().has_value());
    EXPECT_EQ(z->bytes_in(), input.size());
    EXPECT_EQ(z->bytes_out(), out.bytes.size());
  }
  return out;
}

// Runs `zstd -dc` on `compressed`; its exit code and stdout.
testing::CommandResult zstd_program(const std::string& compressed) {
  testing::Scratch scratch;
  testing::write_file(scratch / "in.zst", compressed);
  return testing::run_command({"sh", "-c", "zstd -dcq < \"$1\"", "sh", (scratch / "in.zst").string()});
}

TEST(ZstdStream, RoundTripsThroughLibzstdAndTheZstdProgram) {
  const auto input = sample(3 * 1024 * 1024 + 17);
  const auto out = compress(input, 65536, true);
  EXPECT_LT(out.bytes.size(), input.size() / 2);
  auto back = zstd_decompress(out.bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, input);
  const auto program = zstd_program(out.bytes);
  ASSERT_EQ(program.exit_code, 0) << program.err;
  EXPECT_EQ(program.out, input);
}

TEST(ZstdStream, AnEmptyStreamIsOneWholeFrame) {
  const auto out = compress("", 1, true);
  auto back = zstd_decompress(out.bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, "");
}

TEST(ZstdStream, AStreamNeverFinishedIsCut) {
  const auto input = sample(2 * 1024 * 1024);
  const auto out = compress(input, 65536, false);
  ASSERT_FALSE(out.bytes.empty()) << "blocks went out before the end";
  const auto back = zstd_decompress(out.bytes);
  ASSERT_FALSE(back.has_value());
  EXPECT_EQ(back.error().kind, ErrorKind::bad_input);
  EXPECT_NE(back.error().message.find("cut"), std::string::npos) << back.error().message;
  EXPECT_NE(zstd_program(out.bytes).exit_code, 0);
}

TEST(ZstdStream, AFinishedStreamCutOnTheWayOrDamagedIsRefused) {
  const auto input = sample(1024 * 1024);
  const auto out = compress(input, 4096, true);
  const auto cut = out.bytes.substr(0, out.bytes.size() - 3);  // the checksum's last bytes
  EXPECT_FALSE(zstd_decompress(cut).has_value());
  EXPECT_NE(zstd_program(cut).exit_code, 0);
  auto damaged = out.bytes;
  damaged[damaged.size() / 2] = static_cast<char>(damaged[damaged.size() / 2] ^ 0x20);
  EXPECT_FALSE(zstd_decompress(damaged).has_value());
  EXPECT_NE(zstd_program(damaged).exit_code, 0);
  EXPECT_FALSE(zstd_decompress("not zstd at all").has_value());
}

TEST(ZstdStream, TheSinksErrorEndsTheWrite) {
  int calls = 0;
  auto z = ZstdWriter::open(
      [&](std::string_view) -> Result<void> {
        ++calls;
        return fail(ErrorKind::io, "writing the import stream: Broken pipe");
      },
      1);
  ASSERT_TRUE(z.has_value());
  const auto input = sample(4 * 1024 * 1024);
  Result<void> r;
  for (std::size_t at = 0; at < input.size() && r; at += 65536) {
    r = z->write(std::string_view(input).substr(at, 65536));
  }
  if (r) {
    r = z->finish();
  }
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "writing the import stream: Broken pipe");
  EXPECT_EQ(calls, 1);
}

} // namespace
} // namespace kload::util
