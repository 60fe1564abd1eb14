#include "kload/format/oci_writer.h"

#include "kload/format/archive_reader.h"
#include "kload/format/verify.h"
#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

namespace kload::format {
namespace {

namespace fs = std::filesystem;
using kload::testing::Scratch;
using nlohmann::json;
using util::Digest;

struct TarFile {
  std::string name;
  std::string data;
  bool complete = true;  // all of its declared size was there
};

struct ReadBack {
  std::vector<TarFile> files;
  bool clean_end = false;  // the reader reached a proper end of archive
  std::string error;
};

// Reads a tar archive with libarchive, as ctr import would.
ReadBack read_tar(const std::string& bytes) {
  ReadBack out;
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_format_tar(a.get());
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    out.error = archive_error_string(a.get()) != nullptr ? archive_error_string(a.get()) : "open failed";
    return out;
  }
  while (true) {
    struct archive_entry* e = nullptr;
    const int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) {
      out.clean_end = true;
      break;
    }
    if (r != ARCHIVE_OK) {
      out.error = archive_error_string(a.get()) != nullptr ? archive_error_string(a.get()) : "read failed";
      break;
    }
    TarFile f{archive_entry_pathname(e), std::string(static_cast<std::size_t>(archive_entry_size(e)), '\0')};
    if (!f.data.empty() && archive_read_data(a.get(), f.data.data(), f.data.size()) !=
                               static_cast<la_ssize_t>(f.data.size())) {
      out.error = "short entry " + f.name;
      f.complete = false;
      out.files.push_back(std::move(f));
      break;
    }
    out.files.push_back(std::move(f));
  }
  return out;
}

std::string blob_entry(const Digest& d) { return "blobs/sha256/" + d.hex(); }

// True when the archive holds all of entry `name` (a header alone does not count).
bool has_entry(const ReadBack& tar, const std::string& name) {
  return std::any_of(tar.files.begin(), tar.files.end(),
                     [&](const TarFile& f) { return f.name == name && f.complete; });
}

class OciWriter : public ::testing::Test {
protected:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);
    const auto archive = scratch / "two.tar";
    ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:100K,mid:1100K,top:20K", "--image",
                                         "other:v2=base:100K,mid:1100K,extra:30K", archive.string()}));
    auto r = read_archive(archive.string(), set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(set.images.size(), 2u);
    app = &set.images[0];
    other = &set.images[1];
    ASSERT_EQ(app->names.at(0), "docker.io/library/app:v1");
    std::vector<Digest> all;
    for (const auto& image : set.images) {
      for (const auto& d : ImageSet::blobs_of(image)) {
        all.push_back(d);
      }
    }
    auto v = verify_blobs(set, all, 2);
    ASSERT_TRUE(v.has_value()) << v.error().message;
    base = app->layers[0].blob.digest;
    mid = app->layers[1].blob.digest;
    top = app->layers[2].blob.digest;
    extra = other->layers[2].blob.digest;
    ASSERT_EQ(other->layers[1].blob.digest, mid);
  }

  std::vector<ThinEntry> entries() const {
    return {{app, "example.com/app:v1"}, {other, "docker.io/library/other:v2"}};
  }

  // Writes to a file and returns its bytes.
  util::Result<ThinStats> write_to_file(const ImageSet& from, const std::unordered_set<Digest>& layers,
                                        std::string& bytes, const ProgressFn& progress = {}) {
    const auto out = scratch / "thin.tar";
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0);
    auto r = write_thin_archive(fd, from, entries(), layers, progress);
    ::close(fd);
    bytes = kload::testing::read_file(out);
    return r;
  }

  Scratch scratch;
  ImageSet set;
  const Image* app = nullptr;
  const Image* other = nullptr;
  Digest base, mid, top, extra;
};

TEST_F(OciWriter, ThinArchiveHoldsMetadataAndOnlyTheRequestedLayers) {
  std::string bytes;
  std::vector<std::uint64_t> progress;
  auto stats = write_to_file(set, {mid, extra}, bytes, [&](std::uint64_t done) { progress.push_back(done); });
  ASSERT_TRUE(stats.has_value()) << stats.error().message;

  const auto tar = read_tar(bytes);
  ASSERT_TRUE(tar.error.empty()) << tar.error;
  EXPECT_TRUE(tar.clean_end);
  std::vector<std::string> names;
  for (const auto& f : tar.files) {
    names.push_back(f.name);
  }
  const std::vector<std::string> expected{"oci-layout",
                                          blob_entry(app->manifest.digest),
                                          blob_entry(app->config.digest),
                                          blob_entry(other->manifest.digest),
                                          blob_entry(other->config.digest),
                                          blob_entry(mid),
                                          blob_entry(extra),
                                          "index.json"};
  EXPECT_EQ(names, expected);

  for (const auto& f : tar.files) {
    if (f.name.starts_with("blobs/sha256/")) {
      EXPECT_EQ("blobs/sha256/" + util::Sha256::of(f.data).hex(), f.name) << "content does not match its name";
    }
  }
  EXPECT_EQ(json::parse(tar.files.front().data), json::parse(R"({"imageLayoutVersion":"1.0.0"})"));
  EXPECT_EQ(tar.files[1].data, app->manifest_bytes);

  const auto index = json::parse(tar.files.back().data);
  EXPECT_EQ(index["schemaVersion"], 2);
  EXPECT_EQ(index["mediaType"], media_type::oci_index);
  ASSERT_EQ(index["manifests"].size(), 2u);
  const std::pair<const Image*, std::string> want[] = {{app, "example.com/app:v1"},
                                                        {other, "docker.io/library/other:v2"}};
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& m = index["manifests"][i];
    EXPECT_EQ(m["digest"], want[i].first->manifest.digest.str());
    EXPECT_EQ(m["size"], want[i].first->manifest.size);
    EXPECT_EQ(m["mediaType"], media_type::docker_manifest);
    EXPECT_EQ(m["annotations"]["io.containerd.image.name"], want[i].second);
  }
  EXPECT_EQ(index, json::parse(thin_index_json(entries())));

  const auto mid_size = set.find(mid)->size;
  const auto extra_size = set.find(extra)->size;
  EXPECT_EQ(stats->layers_sent, 2u);
  EXPECT_EQ(stats->layer_bytes, mid_size + extra_size);
  EXPECT_EQ(stats->total_bytes, bytes.size());
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), mid_size + extra_size);
  EXPECT_GE(progress.size(), 3u) << "a 1.1 MiB layer is reported in more than one step";
}

TEST_F(OciWriter, WithEveryLayerTheReaderGetsTheSameImagesBack) {
  std::string bytes;
  auto stats = write_to_file(set, {base, mid, top, extra}, bytes);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_EQ(stats->layers_sent, 4u);
  ImageSet back;
  auto r = read_archive((scratch / "thin.tar").string(), back);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(back.images.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const Image& orig = set.images[i];
    const Image& got = back.images[i];
    EXPECT_EQ(got.id, orig.id);
    EXPECT_EQ(got.manifest.digest, orig.manifest.digest);
    EXPECT_EQ(got.manifest_bytes, orig.manifest_bytes);
    ASSERT_EQ(got.layers.size(), orig.layers.size());
    for (std::size_t l = 0; l < got.layers.size(); ++l) {
      EXPECT_EQ(got.layers[l].blob.digest, orig.layers[l].blob.digest);
      EXPECT_EQ(got.layers[l].diff_id, orig.layers[l].diff_id);
    }
  }
  EXPECT_EQ(back.images[0].names, (std::vector<std::string>{"example.com/app:v1"}));
}

TEST_F(OciWriter, ImageNamedAtAnIndexTravelsWithItsIndexAndOnlyItsPlatform) {
#if defined(__aarch64__)
  const std::string host = "linux/arm64", other_platform = "linux/amd64";
#else
  const std::string host = "linux/amd64", other_platform = "linux/arm64";
#endif
  const auto archive = scratch / "c.tar";
  ASSERT_TRUE(kload::testing::mkimage({"--layout", "docker25", "--nested-index", "--platforms",
                                       host + "," + other_platform, "--missing-platform", other_platform,
                                       "--image", "app:v1=base:10K,top:2K", archive.string()}));
  ImageSet mp;
  auto r = read_archive(archive.string(), mp);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(mp.images.size(), 1u);
  const Image& image = mp.images[0];
  ASSERT_TRUE(image.targets_index());
  ASSERT_TRUE(verify_blobs(mp, ImageSet::blobs_of(image), 2).has_value());
  const auto out = scratch / "thin.tar";
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  auto stats = write_thin_archive(fd, mp, {{&image, "docker.io/library/app:v1"}}, {});
  ::close(fd);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  const auto tar = read_tar(kload::testing::read_file(out));
  ASSERT_TRUE(tar.error.empty()) << tar.error;
  std::vector<std::string> names;
  for (const auto& f : tar.files) {
    names.push_back(f.name);
  }
  const Digest index = image.indexes.front().digest;
  EXPECT_EQ(names, (std::vector<std::string>{"oci-layout", blob_entry(index), blob_entry(image.manifest.digest),
                                             blob_entry(image.config.digest), "index.json"}));
  EXPECT_EQ(tar.files[1].data, *mp.find(index)->where.memory) << "the input's own bytes";
  const auto doc = json::parse(tar.files.back().data);
  ASSERT_EQ(doc["manifests"].size(), 1u);
  EXPECT_EQ(doc["manifests"][0]["digest"], index.str());
  EXPECT_EQ(doc["manifests"][0]["mediaType"], media_type::oci_index);
  EXPECT_EQ(doc["manifests"][0]["size"], image.indexes.front().size);
}

TEST_F(OciWriter, WritesIntoAPipe) {
  std::string from_file;
  ASSERT_TRUE(write_to_file(set, {mid}, from_file).has_value());
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  std::string from_pipe;
  std::thread reader([&] {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) {
      from_pipe.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
  });
  auto r = write_thin_archive(fds[1], set, entries(), {mid});
  ::close(fds[1]);
  reader.join();
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->total_bytes, from_pipe.size());
  EXPECT_TRUE(from_pipe == from_file) << "the same archive whatever the descriptor";
}

void change_byte_in_place(const Blob& b, std::uint64_t at);

// A sink appending to `out`.
util::ByteSink string_sink(std::string& out) {
  return [&out](std::string_view bytes) -> util::Result<void> {
    out.append(bytes);
    return {};
  };
}

TEST_F(OciWriter, ABodyAndATailAreTheArchiveByteForByte) {
  std::string whole;
  auto stats = write_to_file(set, {mid, extra}, whole);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  std::string body;
  std::vector<std::uint64_t> progress;
  auto body_stats = write_thin_body(string_sink(body), set, {app, other}, {mid, extra},
                                    [&](std::uint64_t done) { progress.push_back(done); });
  ASSERT_TRUE(body_stats.has_value()) << body_stats.error().message;
  std::string tail;
  auto tail_bytes = write_thin_tail(string_sink(tail), entries());
  ASSERT_TRUE(tail_bytes.has_value()) << tail_bytes.error().message;
  EXPECT_TRUE(body + tail == whole) << "body " << body.size() << " + tail " << tail.size() << " bytes against "
                                    << whole.size();
  EXPECT_EQ(body_stats->total_bytes, body.size());
  EXPECT_EQ(*tail_bytes, tail.size());
  EXPECT_EQ(body_stats->layers_sent, stats->layers_sent);
  EXPECT_EQ(body_stats->layer_bytes, stats->layer_bytes);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), stats->layer_bytes);
}

TEST_F(OciWriter, ABodyAloneNamesNoImage) {
  std::string body;
  ASSERT_TRUE(write_thin_body(string_sink(body), set, {app}, {mid}).has_value());
  const auto tar = read_tar(body);
  EXPECT_TRUE(has_entry(tar, blob_entry(mid)));
  EXPECT_TRUE(has_entry(tar, "oci-layout"));
  EXPECT_FALSE(has_entry(tar, "index.json"));
  EXPECT_EQ(body.size() % 512, 0u) << "a body ends where a tar entry ends, so a tail can follow";
}

TEST_F(OciWriter, ABodyWhoseLayerChangedSinceItsProofStopsBeforeIt) {
  const Blob& b = *set.find(mid);
  change_byte_in_place(b, b.size / 3);
  std::string body;
  auto r = write_thin_body(string_sink(body), set, {app}, {mid});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_FALSE(has_entry(read_tar(body), blob_entry(mid)));
}

TEST_F(OciWriter, ClosedPipeIsAnIoError) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[0]);
  auto r = write_thin_archive(fds[1], set, entries(), {mid, extra});
  ::close(fds[1]);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::io);
  EXPECT_NE(r.error().message.find("import stream"), std::string::npos) << r.error().message;
}

// After a refused blob nothing more may reach the stream: not the blob, not
// index.json and not an end-of-archive marker that would make the stream look whole.
void expect_stopped_before(const std::string& bytes, const Digest& refused) {
  const auto tar = read_tar(bytes);
  EXPECT_FALSE(has_entry(tar, blob_entry(refused))) << "the refused blob was written";
  EXPECT_FALSE(has_entry(tar, "index.json")) << "index.json was written after the error";
  EXPECT_FALSE(tar.clean_end) << "the stream was closed as a complete archive after the error";
}

TEST_F(OciWriter, RefusesAMismatchingBlob) {
  ImageSet corrupt = set;
  const auto wrong = util::Sha256::of("other bytes");
  corrupt.blobs.at(mid).computed = wrong;
  std::string bytes;
  auto r = write_to_file(corrupt, {mid, extra}, bytes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(r.error().message.find(mid.str()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(wrong.str()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(set.find(mid)->where.entry), std::string::npos) << r.error().message;
  expect_stopped_before(bytes, mid);
}

// The proof is an earlier read: a file rewritten in place (same size, so nothing
// but the bytes tells) between proof and send must not reach the node.
void change_byte_in_place(const Blob& b, std::uint64_t at) {
  const int fd = ::open(b.where.file.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << b.where.file;
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(b.where.offset + at)), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(b.where.offset + at)), 1);
  ::close(fd);
}

void expect_changed_input_refused(const util::Result<ThinStats>& r, const Blob& b, const std::string& bytes) {
  ASSERT_FALSE(r.has_value()) << "a blob changed since its proof was sent";
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b.where.source), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b.where.entry), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("changed since it was read"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("run kload again"), std::string::npos) << r.error().message;
  expect_stopped_before(bytes, b.digest);
}

// No proof is needed beforehand: the read that sends a blob proves it, and the stats
// list what was proven.
TEST_F(OciWriter, AnUnprovenBlobIsProvenByTheReadThatSendsIt) {
  ImageSet unproven = set;
  unproven.blobs.at(extra).computed.reset();
  std::string bytes;
  auto r = write_to_file(unproven, {mid, extra}, bytes);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(has_entry(read_tar(bytes), blob_entry(extra)));
  EXPECT_NE(std::find(r->proven.begin(), r->proven.end(), extra), r->proven.end());
  EXPECT_NE(std::find(r->proven.begin(), r->proven.end(), mid), r->proven.end());
  EXPECT_EQ(std::find(r->proven.begin(), r->proven.end(), top), r->proven.end()) << "top was not sent";
}

TEST_F(OciWriter, AnUnprovenBlobWhoseBytesAreNotItsDigestsNeverArrivesWhole) {
  ImageSet unproven = set;
  unproven.blobs.at(mid).computed.reset();
  const Blob& b = *unproven.find(mid);
  change_byte_in_place(b, b.size - 1);  // the last byte: the one held back
  std::string bytes;
  auto r = write_to_file(unproven, {mid, extra}, bytes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b.where.source), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b.where.entry), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("expected " + mid.str() + "; not sending it"), std::string::npos)
      << r.error().message;
  expect_stopped_before(bytes, mid);
}

TEST_F(OciWriter, RefusesALayerChangedSinceItsProof) {
  const Blob& b = *set.find(mid);
  ASSERT_TRUE(b.where.memory == nullptr) << "the layer is read from the input file";
  change_byte_in_place(b, b.size / 2);
  std::string bytes;
  auto r = write_to_file(set, {mid, extra}, bytes);
  expect_changed_input_refused(r, b, bytes);
}

TEST_F(OciWriter, RefusesALastByteChangedSinceItsProof) {
  // The last byte is the one read last: the check must come before it is sent.
  const Blob& b = *set.find(extra);
  change_byte_in_place(b, b.size - 1);
  std::string bytes;
  auto r = write_to_file(set, {mid, extra}, bytes);
  expect_changed_input_refused(r, b, bytes);
}

TEST_F(OciWriter, RefusesABlobMissingFromTheSet) {
  ImageSet partial = set;
  partial.blobs.erase(other->config.digest);
  std::string bytes;
  auto r = write_to_file(partial, {mid}, bytes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(r.error().message.find(other->config.digest.str()), std::string::npos) << r.error().message;
  expect_stopped_before(bytes, other->config.digest);
}

TEST_F(OciWriter, UnreadableBlobStopsTheStream) {
  // The bytes vanish between hashing and sending: a short read in the middle of an
  // entry must not be padded into a complete-looking blob.
  ImageSet gone = set;
  gone.blobs.at(mid).where.file = scratch / "vanished.tar";
  std::string bytes;
  auto r = write_to_file(gone, {mid}, bytes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::io);
  EXPECT_NE(r.error().message.find("vanished.tar"), std::string::npos) << r.error().message;
  const auto tar = read_tar(bytes);
  EXPECT_FALSE(has_entry(tar, blob_entry(mid))) << "the blob that could not be read was completed with filler";
  EXPECT_FALSE(has_entry(tar, "index.json"));
  EXPECT_FALSE(tar.clean_end) << "the stream was closed as a complete archive after the error";
}

TEST(ThinIndexJson, NamesEveryImage) {
  Image a;
  a.manifest = Descriptor{media_type::oci_manifest, util::Sha256::of("a"), 123};
  Image b;
  b.manifest = Descriptor{media_type::docker_manifest, util::Sha256::of("b"), 456};
  const auto text = thin_index_json({{&a, "docker.io/library/a:1"}, {&b, "registry.local:5000/b@sha256:" +
                                                                          util::Sha256::of("x").hex()}});
  EXPECT_EQ(text.find('\n'), std::string::npos) << "compact JSON";
  const auto j = json::parse(text);
  EXPECT_EQ(j["schemaVersion"], 2);
  EXPECT_EQ(j["mediaType"], media_type::oci_index);
  ASSERT_EQ(j["manifests"].size(), 2u);
  EXPECT_EQ(j["manifests"][0]["mediaType"], media_type::oci_manifest);
  EXPECT_EQ(j["manifests"][0]["digest"], util::Sha256::of("a").str());
  EXPECT_EQ(j["manifests"][0]["size"], 123);
  EXPECT_EQ(j["manifests"][0]["annotations"]["io.containerd.image.name"], "docker.io/library/a:1");
  EXPECT_EQ(j["manifests"][1]["mediaType"], media_type::docker_manifest);
  EXPECT_EQ(j["manifests"][1]["size"], 456);
  EXPECT_EQ(thin_index_json({}), R"({"schemaVersion":2,"mediaType":")" + std::string(media_type::oci_index) +
                                     R"(","manifests":[]})");
}

} // namespace
} // namespace kload::format
