#include "load/spool.h"

#include "kload/format/archive_reader.h"
#include "kload/format/verify.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

namespace kload::load {
namespace {

using kload::testing::Scratch;
using util::Digest;

// A sink appending to `out`.
util::ByteSink string_sink(std::string& out) {
  return [&out](std::string_view bytes) -> util::Result<void> {
    out.append(bytes);
    return {};
  };
}

// Copies `spool` into a pipe that a thread drains, as a node's stream would be.
struct Copied {
  util::Result<format::ThinStats> stats;
  std::string bytes;
  std::vector<std::uint64_t> progress;
};

Copied copy_through_pipe(Spool& spool) {
  Copied c{util::fail(util::ErrorKind::io, "not run"), {}, {}};
  auto pipe = util::make_pipe();
  if (!pipe) {
    ADD_FAILURE() << pipe.error().message;
    return c;
  }
  std::thread reader([&] {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(pipe->read.get(), buf, sizeof(buf))) > 0) {
      c.bytes.append(buf, static_cast<std::size_t>(n));
    }
  });
  c.stats = spool.copy_to(pipe->write.get(), [&](std::uint64_t done) { c.progress.push_back(done); });
  pipe->write.reset();
  reader.join();
  return c;
}

class SpoolTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);
    const auto archive = scratch / "two.tar";
    ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:100K,mid:3M,top:20K", "--image",
                                         "other:v2=base:100K,mid:3M,extra:30K", archive.string()}));
    auto r = format::read_archive(archive.string(), set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    app = &set.images.at(0);
    other = &set.images.at(1);
    std::vector<Digest> all;
    for (const auto& image : set.images) {
      for (const auto& d : format::ImageSet::blobs_of(image)) {
        all.push_back(d);
      }
    }
    ASSERT_TRUE(format::verify_blobs(set, all, 2).has_value());
    mid = app->layers[1].blob.digest;
    top = app->layers[2].blob.digest;
    extra = other->layers[2].blob.digest;
  }

  Scratch scratch;
  format::ImageSet set;
  const format::Image* app = nullptr;
  const format::Image* other = nullptr;
  Digest mid, top, extra;
};

TEST_F(SpoolTest, EveryStreamGetsTheBodyWhileItIsWritten) {
  std::string expected;
  auto direct = format::write_thin_body(string_sink(expected), set, {app, other}, {mid, top, extra});
  ASSERT_TRUE(direct.has_value()) << direct.error().message;

  Spools spools;
  auto body = spools.body(set, BodyContent{{app, other}, {mid, top, extra}, node::WireCompression::none});
  ASSERT_TRUE(body.has_value()) << body.error().message;
  std::vector<Copied> copies(3, Copied{util::fail(util::ErrorKind::io, "not run"), {}, {}});
  std::vector<std::thread> nodes;
  for (auto& c : copies) {
    nodes.emplace_back([&] { c = copy_through_pipe(**body); });
  }
  for (auto& t : nodes) {
    t.join();
  }
  for (const auto& c : copies) {
    ASSERT_TRUE(c.stats.has_value()) << c.stats.error().message;
    EXPECT_TRUE(c.bytes == expected) << c.bytes.size() << " bytes against " << expected.size();
    EXPECT_EQ(c.stats->layer_bytes, direct->layer_bytes);
    EXPECT_EQ(c.stats->total_bytes, direct->total_bytes);
    ASSERT_FALSE(c.progress.empty());
    EXPECT_TRUE(std::is_sorted(c.progress.begin(), c.progress.end()));
    EXPECT_EQ(c.progress.back(), direct->layer_bytes);
  }
  // A stream that starts once the writer is done gets all of it too.
  const auto late = copy_through_pipe(**body);
  EXPECT_TRUE(late.bytes == expected);
  EXPECT_EQ(spools.count(), 1u);
}

TEST_F(SpoolTest, NodesSentTheSameContentShareOneBody) {
  Spools spools;
  auto a = spools.body(set, BodyContent{{app}, {mid, top}, node::WireCompression::none});
  auto b = spools.body(set, BodyContent{{app}, {top, mid}, node::WireCompression::none});
  auto fewer = spools.body(set, BodyContent{{app}, {top}, node::WireCompression::none});
  auto zstd = spools.body(set, BodyContent{{app}, {mid, top}, node::WireCompression::zstd});
  auto both = spools.body(set, BodyContent{{app, other}, {mid, top}, node::WireCompression::none});
  ASSERT_TRUE(a && b && fewer && zstd && both);
  EXPECT_EQ(a->get(), b->get());
  EXPECT_NE(a->get(), fewer->get());
  EXPECT_NE(a->get(), zstd->get());
  EXPECT_NE(a->get(), both->get());
  EXPECT_EQ(spools.count(), 4u);
}

TEST_F(SpoolTest, ABodyIsSharedOnlyWhenMoreThanOneNodeExpectsIt) {
  Spools spools;
  const BodyContent both{{app}, {mid, top}, node::WireCompression::none};
  const BodyContent fewer{{app}, {top}, node::WireCompression::none};
  EXPECT_FALSE(spools.shared(both));
  spools.expect(both);
  spools.expect(fewer);
  EXPECT_FALSE(spools.shared(both)) << "one node reads it: written into its stream";
  spools.expect(BodyContent{{app}, {top, mid}, node::WireCompression::none});
  EXPECT_TRUE(spools.shared(both));
  EXPECT_FALSE(spools.shared(fewer));
  EXPECT_FALSE(spools.shared(BodyContent{{app}, {mid, top}, node::WireCompression::zstd}));
  EXPECT_EQ(spools.count(), 0u) << "expecting writes nothing";
}

TEST_F(SpoolTest, ACompressedBodyIsOneWholeZstdFrameOfThePlainBody) {
  std::string expected;
  ASSERT_TRUE(format::write_thin_body(string_sink(expected), set, {app}, {mid, top}).has_value());
  Spools spools;
  auto body = spools.body(set, BodyContent{{app}, {mid, top}, node::WireCompression::zstd});
  ASSERT_TRUE(body.has_value());
  const auto c = copy_through_pipe(**body);
  ASSERT_TRUE(c.stats.has_value()) << c.stats.error().message;
  EXPECT_LT(c.bytes.size(), expected.size());
  kload::testing::write_file(scratch / "body.zst", c.bytes);
  const auto plain = kload::testing::run_command({"zstd", "-dc", (scratch / "body.zst").string()});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_TRUE(plain.out == expected);
}

TEST_F(SpoolTest, AnInputChangedSinceItsProofFailsEveryStreamBeforeTheBlobEnds) {
  const auto& b = *set.find(mid);
  {
    auto fd = util::open_fd(b.where.file.c_str(), O_RDWR);
    ASSERT_TRUE(fd.has_value());
    char c = 0;
    ASSERT_EQ(::pread(fd->get(), &c, 1, static_cast<off_t>(b.where.offset + b.size / 2)), 1);
    c = static_cast<char>(c ^ 0x5a);
    ASSERT_EQ(::pwrite(fd->get(), &c, 1, static_cast<off_t>(b.where.offset + b.size / 2)), 1);
  }
  Spools spools;
  auto body = spools.body(set, BodyContent{{app}, {mid, top}, node::WireCompression::none});
  ASSERT_TRUE(body.has_value());
  for (int i = 0; i < 2; ++i) {
    const auto c = copy_through_pipe(**body);
    ASSERT_FALSE(c.stats.has_value());
    EXPECT_EQ(c.stats.error().kind, util::ErrorKind::bad_input);
    EXPECT_NE(c.stats.error().message.find("changed since it was read"), std::string::npos)
        << c.stats.error().message;
    EXPECT_LT(c.bytes.size(), b.size) << "the changed blob's entry never arrives whole";
  }
}

TEST_F(SpoolTest, AStreamWhoseReaderGoesAwayFailsAndOthersGoOn) {
  Spools spools;
  auto body = spools.body(set, BodyContent{{app}, {mid, top}, node::WireCompression::none});
  ASSERT_TRUE(body.has_value());
  auto pipe = util::make_pipe();
  ASSERT_TRUE(pipe.has_value());
  pipe->read.reset();
  auto gone = (*body)->copy_to(pipe->write.get(), {});
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().kind, util::ErrorKind::io);
  const auto c = copy_through_pipe(**body);
  EXPECT_TRUE(c.stats.has_value());
}

} // namespace
} // namespace kload::load
