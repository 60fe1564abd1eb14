#include "kload/format/archive_reader.h"

#include "kload/format/verify.h"
#include "kload/util/sha256.h"
#include "format_helpers.h"
#include "support/test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <optional>
#include <regex>
#include <set>
#include <thread>
#include <unistd.h>

namespace kload::format {
namespace {

namespace fs = std::filesystem;
using kload::testing::CommandResult;
using kload::testing::Scratch;
using nlohmann::json;

// ---------------------------------------------------------------------------------
// Helpers

// Runs tools/mkimage writing `out` and returns its --json-out description.
json make_archive(const fs::path& out, std::vector<std::string> args) {
  const auto desc = out.string() + ".json";
  args.insert(args.end(), {"--json-out", desc, out.string()});
  if (!kload::testing::mkimage(args)) {
    return json();
  }
  return json::parse(kload::testing::read_file(desc));
}

// Sets an environment variable for the lifetime of the guard (the kload binary
// inherits it).
class EnvGuard {
public:
  EnvGuard(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name); old != nullptr) {
      old_ = old;
    }
    ::setenv(name, value.c_str(), 1);
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

private:
  const char* name_;
  std::optional<std::string> old_;
};

std::vector<fs::path> spool_dirs_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with("kload-spool.")) {
      out.push_back(e.path());
    }
  }
  return out;
}

// A private TMPDIR inside the scratch directory, for checking what is left behind.
struct PrivateTmp {
  explicit PrivateTmp(const Scratch& scratch) : path(created(scratch / "tmp")), guard("TMPDIR", path.string()) {}
  static fs::path created(const fs::path& p) {
    fs::create_directories(p);
    return p;
  }
  fs::path path;
  EnvGuard guard;
};


CommandResult run_kload(std::vector<std::string> args, const std::string& stdin_file = "") {
  args.insert(args.begin(), kload::testing::kload_binary().string());
  return kload::testing::run_command(args, stdin_file);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    out.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return out;
}

std::vector<std::string> digests_in(const std::string& text) {
  static const std::regex re("sha256:[0-9a-f]{64}");
  std::vector<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) {
    out.push_back(it->str());
  }
  return out;
}

// One tar entry as laid out in the file (ustar, as mkimage writes it).
struct TarEntry {
  std::string name;
  std::uint64_t header = 0;
  std::uint64_t data = 0;
  std::uint64_t size = 0;
};

std::vector<TarEntry> tar_entries(const std::string& bytes) {
  std::vector<TarEntry> out;
  std::uint64_t pos = 0;
  while (pos + 512 <= bytes.size()) {
    const char* h = bytes.data() + pos;
    if (std::all_of(h, h + 512, [](char c) { return c == '\0'; })) {
      break;
    }
    TarEntry e;
    e.name = std::string(h, strnlen(h, 100));
    const std::string prefix(h + 345, strnlen(h + 345, 155));
    if (!prefix.empty()) {
      e.name = prefix + "/" + e.name;
    }
    e.size = std::strtoull(std::string(h + 124, 12).c_str(), nullptr, 8);
    e.header = pos;
    e.data = pos + 512;
    out.push_back(e);
    pos = e.data + (e.size + 511) / 512 * 512;
  }
  return out;
}

const TarEntry& entry_named(const std::vector<TarEntry>& entries, const std::string& name) {
  static const TarEntry none{};
  for (const auto& e : entries) {
    if (e.name == name) {
      return e;
    }
  }
  ADD_FAILURE() << "no entry " << name;
  return none;
}

// What an image looks like, from the reader, from `kload inspect --json` or from
// mkimage's description, so the three can be compared.
struct LayerView {
  std::string digest;
  std::string diff_id;
  std::string media_type;
  std::uint64_t size = 0;
  bool operator==(const LayerView&) const = default;
};

struct ImageView {
  std::vector<std::string> names;
  std::string id;
  std::string platform;
  std::string manifest_digest;  // empty: not known (docker layouts in mkimage's view)
  std::vector<LayerView> layers;
};

std::ostream& operator<<(std::ostream& os, const LayerView& l) {
  return os << "{" << l.digest << " " << l.size << " " << l.diff_id << " " << l.media_type << "}";
}

ImageView view_of(const Image& image) {
  ImageView v{image.names, image.id.str(), image.platform.str(), image.manifest.digest.str(), {}};
  for (const auto& l : image.layers) {
    v.layers.push_back({l.blob.digest.str(), l.diff_id.str(), l.blob.media_type, l.blob.size});
  }
  return v;
}

ImageView view_of_inspect(const json& image) {
  ImageView v{image["names"].get<std::vector<std::string>>(), image["id"].get<std::string>(),
              image["platform"].get<std::string>(), image["manifest"]["digest"].get<std::string>(), {}};
  for (const auto& l : image["layers"]) {
    v.layers.push_back({l["digest"].get<std::string>(), l["diffID"].get<std::string>(),
                        l["mediaType"].get<std::string>(), l["size"].get<std::uint64_t>()});
  }
  return v;
}

// mkimage's description of one image. OCI archives written like skopeo's name an
// image only by its bare tag, which is no reference: such images have no name.
ImageView view_of_description(const json& d, const std::string& layout) {
  ImageView v;
  if (layout != "oci") {
    v.names.push_back(d["ref"].get<std::string>());
  }
  v.id = d["config_digest"].get<std::string>();
  v.platform = d["platform"].get<std::string>();
  if (!d["manifest_digest"].is_null()) {
    v.manifest_digest = d["manifest_digest"].get<std::string>();
  }
  for (const auto& l : d["layers"]) {
    v.layers.push_back({l["digest"].get<std::string>(), l["diff_id"].get<std::string>(),
                        l["media_type"].get<std::string>(), l["size"].get<std::uint64_t>()});
  }
  return v;
}

// Checks that `seen` holds exactly the present images of mkimage's description.
void expect_images(const std::vector<ImageView>& seen, const json& desc, const std::string& what) {
  SCOPED_TRACE(what);
  std::size_t present = 0;
  for (const auto& d : desc["images"]) {
    if (!d["present"].get<bool>()) {
      continue;
    }
    ++present;
    const auto want = view_of_description(d, desc["layout"]);
    const auto it = std::find_if(seen.begin(), seen.end(), [&](const ImageView& v) {
      return v.id == want.id && v.platform == want.platform;
    });
    ASSERT_NE(it, seen.end()) << "image " << want.id << " " << want.platform << " not read";
    EXPECT_EQ(it->names, want.names) << want.id;
    if (!want.manifest_digest.empty()) {
      EXPECT_EQ(it->manifest_digest, want.manifest_digest);
    }
    EXPECT_EQ(it->layers, want.layers) << want.id;
  }
  EXPECT_EQ(seen.size(), present);
}

void expect_images(const ImageSet& set, const json& desc, const std::string& what) {
  std::vector<ImageView> seen;
  for (const auto& image : set.images) {
    seen.push_back(view_of(image));
  }
  expect_images(seen, desc, what);
}

std::vector<ImageView> views_of_inspect_output(const std::string& out) {
  std::vector<ImageView> seen;
  const auto j = json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  if (!j.is_discarded()) {
    for (const auto& image : j["images"]) {
      seen.push_back(view_of_inspect(image));
    }
  }
  return seen;
}

util::Digest hash_blob(const Blob& blob) {
  util::Sha256 h;
  auto r = read_blob(blob, [&](std::string_view chunk) -> util::Result<void> {
    EXPECT_LE(chunk.size(), 1u << 20);
    h.update(chunk);
    return {};
  });
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return h.finish();
}

// Every blob the images need is in the set exactly once, with the size the metadata
// gives, and its bytes -- wherever they are -- hash to its digest.
void expect_blobs_consistent(const ImageSet& set, const std::set<std::string>& extra = {}) {
  std::set<util::Digest> needed;
  for (const auto& image : set.images) {
    for (const auto& d : ImageSet::blobs_of(image)) {
      needed.insert(d);
    }
    EXPECT_EQ(image.manifest.digest, util::Sha256::of(image.manifest_bytes));
    EXPECT_EQ(image.manifest.size, image.manifest_bytes.size());
    ASSERT_NE(set.find(image.config.digest), nullptr);
    EXPECT_EQ(set.find(image.config.digest)->size, image.config.size);
    for (const auto& l : image.layers) {
      ASSERT_NE(set.find(l.blob.digest), nullptr);
      EXPECT_EQ(set.find(l.blob.digest)->size, l.blob.size);
    }
  }
  for (const auto& e : extra) {
    needed.insert(*util::Digest::parse(e));
  }
  EXPECT_EQ(set.blobs.size(), needed.size());
  for (const auto& [digest, blob] : set.blobs) {
    EXPECT_TRUE(needed.contains(digest)) << "unexpected blob " << digest.str();
    EXPECT_EQ(blob.digest, digest);
    EXPECT_EQ(hash_blob(blob), digest) << blob.where.entry << " at offset " << blob.where.offset << " of "
                                       << blob.where.file;
  }
}


// The fixture every test here uses: a scratch directory and SIGPIPE ignored, because
// this process feeds archives into pipes (read_via_stdin, run_command) whose reader
// may rightly stop early on a bad archive: the writer must see EPIPE, not die.
class ArchiveTest : public ::testing::Test {
protected:
  void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }
  Scratch scratch;
};

// ---------------------------------------------------------------------------------
// Every layout, plain and compressed, from a file and from stdin

struct LayoutCase {
  std::string layout;
  std::string compression;
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.layout << "/" << c.compression; }

class EveryLayout : public ArchiveTest, public ::testing::WithParamInterface<LayoutCase> {};

TEST_P(EveryLayout, ReadsWhatMkimageWrote) {
  const auto& [layout, compression] = GetParam();
  const std::string suffix = compression == "none"   ? ""
                             : compression == "gzip" ? ".gz"
                             : compression == "zstd" ? ".zst"
                                                     : ".xz";
  const auto archive = scratch / ("images.tar" + suffix);
  // Two images sharing their base layer; one layer is over the 1 MiB in-memory limit
  // so that streaming spools it.
  const json desc = make_archive(archive, {"--layout", layout, "--compress", compression, "--image",
                                           "app:v1=base:200K,top:1200K", "--image", "tools/dbg:2=base:200K,extra:30K"});
  ASSERT_FALSE(desc.is_null());
  ASSERT_EQ(desc["compression"], compression);
  const std::string base = desc["images"][0]["layers"][0]["digest"];
  ASSERT_EQ(desc["images"][1]["layers"][0]["digest"], base);

  {
    ImageSet set;
    auto stats = read_archive(archive.string(), set);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    expect_images(set, desc, "read_archive(file)");
    EXPECT_EQ(stats->indexed_in_place, compression == "none");
    EXPECT_EQ(set.layer_use_counts().at(*util::Digest::parse(base)), 2);
    for (const auto& image : set.images) {
      EXPECT_EQ(image.source, archive.string());
      EXPECT_EQ(image.format, layout == "docker-save" || layout == "skopeo" ? SourceFormat::docker_archive
                                                                            : SourceFormat::oci_layout);
    }
    EXPECT_TRUE(set.unavailable.empty());
    expect_blobs_consistent(set);
    auto v = verify_blobs(set, all_blobs(set), 2);
    EXPECT_TRUE(v.has_value()) << v.error().message;
  }
  {
    ImageSet set;
    auto stats = read_via_stdin(archive, set);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    expect_images(set, desc, "read_archive(stdin)");
    EXPECT_FALSE(stats->indexed_in_place);
    for (const auto& image : set.images) {
      EXPECT_EQ(image.source, "-");
    }
    expect_blobs_consistent(set);
    for (const auto& [digest, blob] : set.blobs) {
      EXPECT_EQ(blob.computed, digest) << "streamed blobs are hashed on the way: " << blob.where.entry;
    }
  }
  for (const std::string& input : {archive.string(), std::string("-")}) {
    const auto r = run_kload({"inspect", "--json", input}, input == "-" ? archive.string() : "");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    expect_images(views_of_inspect_output(r.out), desc, "kload inspect --json " + input);
  }
}

INSTANTIATE_TEST_SUITE_P(Archives, EveryLayout,
                         ::testing::ValuesIn([] {
                           std::vector<LayoutCase> cases;
                           for (const char* layout : {"docker-save", "skopeo", "docker25", "oci"}) {
                             for (const char* compression : {"none", "gzip", "zstd", "xz"}) {
                               cases.push_back({layout, compression});
                             }
                           }
                           return cases;
                         }()),
                         [](const auto& info) {
                           auto name = info.param.layout + "_" + info.param.compression;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST_F(ArchiveTest, UncompressedOciLayersAndZstdLayers) {
  for (const char* lc : {"none", "zstd"}) {
    const auto archive = scratch / (std::string("oci-") + lc + ".tar");
    const json desc = make_archive(archive, {"--layout", "oci", "--layer-compression", lc, "--image", "app:v1=a:3K,b:5K"});
    ImageSet set;
    auto stats = read_archive(archive.string(), set);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    expect_images(set, desc, lc);
    expect_blobs_consistent(set);
  }
}

TEST_F(ArchiveTest, RunConfigIsDecoded) {
  const auto archive = scratch / "run.tar";
  make_archive(archive, {"--image", "app:v1=a:1K", "--entrypoint", R"(["/bin/sh","-c","/usr/sbin/sshd && /bin/bash"])",
                         "--cmd", "null"});
  ImageSet set;
  ASSERT_TRUE(read_archive(archive.string(), set).has_value());
  ASSERT_EQ(set.images.size(), 1u);
  EXPECT_EQ(set.images[0].run.entrypoint, (std::vector<std::string>{"/bin/sh", "-c", "/usr/sbin/sshd && /bin/bash"}));
  EXPECT_FALSE(set.images[0].run.cmd.has_value());
}

// ---------------------------------------------------------------------------------
// Sharing within and across archives

TEST_F(ArchiveTest, TwoArchivesShareBlobsInOneSet) {
  const auto a = scratch / "a.tar";
  const auto b = scratch / "b.tar";
  const json da = make_archive(a, {"--layout", "docker-save", "--image", "app:v1=base:100K,top:10K"});
  const json db = make_archive(b, {"--layout", "skopeo", "--image", "other:v2=base:100K,z:20K"});
  const auto base = *util::Digest::parse(da["images"][0]["layers"][0]["digest"].get<std::string>());
  ASSERT_EQ(db["images"][0]["layers"][0]["digest"], base.str());

  ImageSet set;
  ASSERT_TRUE(read_archive(a.string(), set).has_value());
  ASSERT_TRUE(read_archive(b.string(), set).has_value());
  ASSERT_EQ(set.images.size(), 2u);
  EXPECT_EQ(set.layer_use_counts().at(base), 2);
  EXPECT_EQ(set.find(base)->where.source, a.string()) << "the first archive that has a blob provides it";
  // 2 manifests + 2 configs + 3 distinct layers.
  EXPECT_EQ(set.blobs.size(), 7u);
  expect_blobs_consistent(set);

  // The same archive again adds nothing.
  ASSERT_TRUE(read_archive(a.string(), set).has_value());
  EXPECT_EQ(set.images.size(), 2u);
  EXPECT_EQ(set.blobs.size(), 7u);
  EXPECT_EQ(set.images[0].names, (std::vector<std::string>{"docker.io/library/app:v1"}));
}

TEST_F(ArchiveTest, SameImageUnderTwoNamesIsOneImage) {
  const auto a = scratch / "a.tar";
  const auto b = scratch / "b.tar";
  const json da = make_archive(a, {"--image", "app:v1=base:10K"});
  const json db = make_archive(b, {"--image", "other:v2=base:10K"});
  ASSERT_EQ(da["images"][0]["config_digest"], db["images"][0]["config_digest"]);
  ImageSet set;
  ASSERT_TRUE(read_archive(a.string(), set).has_value());
  ASSERT_TRUE(read_archive(b.string(), set).has_value());
  ASSERT_EQ(set.images.size(), 1u);
  EXPECT_EQ(set.images[0].names,
            (std::vector<std::string>{"docker.io/library/app:v1", "docker.io/library/other:v2"}));
}

TEST_F(ArchiveTest, FailedArchiveLeavesTheSetAsItWas) {
  const auto good = scratch / "good.tar";
  const auto bad = scratch / "bad.tar";
  make_archive(good, {"--image", "app:v1=base:10K"});
  make_archive(bad, {"--image", "other:v1=base:10K,more:10K", "--fault", "missing-blob"});
  ImageSet set;
  ASSERT_TRUE(read_archive(good.string(), set).has_value());
  const auto images = set.images.size();
  const auto blobs = set.blobs.size();
  ASSERT_FALSE(read_archive(bad.string(), set).has_value());
  EXPECT_EQ(set.images.size(), images);
  EXPECT_EQ(set.blobs.size(), blobs);
  EXPECT_TRUE(set.unavailable.empty());
}

// ---------------------------------------------------------------------------------
// Multi-platform archives

class MultiPlatform : public ArchiveTest, public ::testing::WithParamInterface<std::tuple<std::string, bool>> {
protected:
  json make(const fs::path& out, std::vector<std::string> extra) {
    const auto& [layout, nested] = GetParam();
    std::vector<std::string> args{"--layout", layout, "--image", "app:v1=base:2K,top:3K", "--platforms",
                                  "linux/amd64,linux/arm64"};
    if (nested) {
      args.emplace_back("--nested-index");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return make_archive(out, args);
  }
  std::set<std::string> index_blobs(const json& desc) {
    std::set<std::string> out;
    for (const auto& d : desc["images"]) {
      if (!d["index_digest"].is_null()) {
        out.insert(d["index_digest"]);
      }
    }
    return out;
  }
};

TEST_P(MultiPlatform, EveryPlatformIsAnImage) {
  const auto archive = scratch / "mp.tar";
  const json desc = make(archive, {});
  ImageSet set;
  auto stats = read_archive(archive.string(), set);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  expect_images(set, desc, "both platforms");
  EXPECT_EQ(set.images.size(), 2u);
  EXPECT_TRUE(set.unavailable.empty());
  expect_blobs_consistent(set, index_blobs(desc));

  const auto r = run_kload({"inspect", "--json", "--platform", "linux/arm64", archive.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto seen = views_of_inspect_output(r.out);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].platform, "linux/arm64");
}

TEST_P(MultiPlatform, MissingPlatformIsUnavailableNotAnError) {
  const auto archive = scratch / "mp.tar";
  const json desc = make(archive, {"--missing-platform", "linux/arm64"});
  ImageSet set;
  auto stats = read_archive(archive.string(), set);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  expect_images(set, desc, "amd64 only");
  ASSERT_EQ(set.unavailable.size(), 1u);
  EXPECT_EQ(set.unavailable[0].platform.str(), "linux/arm64");
  EXPECT_EQ(set.unavailable[0].source, archive.string());
  EXPECT_NE(set.unavailable[0].reason.find("not in the archive"), std::string::npos) << set.unavailable[0].reason;
  expect_blobs_consistent(set, index_blobs(desc));

  auto r = run_kload({"inspect", "--json", archive.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = run_kload({"inspect", "--platform", "linux/arm64", archive.string()});
  EXPECT_EQ(r.exit_code, 2);
  const auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(lines[0].starts_with("kload: error: ")) << lines[0];
  EXPECT_NE(lines[0].find("linux/arm64"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find(archive.string()), std::string::npos) << lines[0];
}

TEST_P(MultiPlatform, NamesPointAtTheIndexForThisMachinesPlatformOnly) {
  const auto archive = scratch / "mp.tar";
  const json desc = make(archive, {});
  ImageSet set;
  auto stats = read_archive(archive.string(), set);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  ASSERT_EQ(set.images.size(), 2u);
  const bool nested = std::get<1>(GetParam());
  for (const auto& image : set.images) {
    if (!nested) {
      EXPECT_TRUE(image.indexes.empty());
      EXPECT_EQ(image.target().digest, image.manifest.digest);
      continue;
    }
    ASSERT_EQ(image.indexes.size(), 1u);
    const auto index = *util::Digest::parse(desc["images"][0]["index_digest"].get<std::string>());
    EXPECT_EQ(image.indexes[0].digest, index);
    EXPECT_EQ(image.indexes[0].media_type, media_type::oci_index);
    const Blob* blob = set.find(index);
    ASSERT_NE(blob, nullptr);
    EXPECT_EQ(blob->size, image.indexes[0].size);
    const bool host = image.platform.matches(Platform::host());
    EXPECT_EQ(image.targets_index(), host) << image.platform.str();
    EXPECT_EQ(image.target().digest, host ? index : image.manifest.digest) << image.platform.str();
    const auto metadata = ImageSet::metadata_of(image);
    EXPECT_EQ(metadata.front(), host ? index : image.manifest.digest);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, MultiPlatform,
                         ::testing::Combine(::testing::Values("docker25", "oci"), ::testing::Bool()),
                         [](const auto& info) {
                           auto name = std::get<0>(info.param) + (std::get<1>(info.param) ? "_nested" : "_flat");
                           return name;
                         });

// ---------------------------------------------------------------------------------
// In-place indexing and streaming

TEST_F(ArchiveTest, UncompressedArchiveIsIndexedInPlace) {
  const auto archive = scratch / "big.tar";
  const json desc = make_archive(archive, {"--image", "big:1=base:4K,big:64M", "--compressible", "0.9"});
  PrivateTmp tmp(scratch);
  ImageSet set;
  auto stats = read_archive(archive.string(), set);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_TRUE(stats->indexed_in_place);
  EXPECT_LT(stats->bytes_read, 1u << 20) << "in-place indexing must not read layer data";
  EXPECT_EQ(stats->bytes_spooled, 0u);
  EXPECT_TRUE(spool_dirs_in(tmp.path).empty());
  expect_images(set, desc, "big");
  const auto big = *util::Digest::parse(desc["images"][0]["layers"][1]["digest"].get<std::string>());
  const Blob* blob = set.find(big);
  ASSERT_NE(blob, nullptr);
  EXPECT_EQ(blob->where.file, archive);
  EXPECT_FALSE(blob->where.memory);
  EXPECT_FALSE(blob->computed.has_value());
  EXPECT_EQ(hash_blob(*blob), big);
}

TEST_F(ArchiveTest, CompressedArchiveIsDecompressedOnceAndSpooled) {
  const auto plain = scratch / "big.tar";
  const auto archive = scratch / "big.tar.gz";
  const std::vector<std::string> images{"--image", "big:1=base:4K,big:64M", "--compressible", "0.9"};
  make_archive(plain, images);
  auto args = images;
  args.insert(args.end(), {"--compress", "gzip"});
  const json desc = make_archive(archive, args);
  const auto tar_size = fs::file_size(plain);
  fs::remove(plain);

  PrivateTmp tmp(scratch);
  fs::path spool;
  {
    ImageSet set;
    auto stats = read_archive(archive.string(), set);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    EXPECT_FALSE(stats->indexed_in_place);
    EXPECT_LE(stats->bytes_expanded, tar_size);
    EXPECT_GE(stats->bytes_expanded, tar_size - 10240) << "all of the tar, up to its end-of-archive padding";
    EXPECT_GE(stats->bytes_spooled, 64u << 20);
    EXPECT_LT(stats->bytes_spooled, tar_size) << "small entries stay in memory";
    EXPECT_GE(stats->bytes_hashed, 64u << 20);
    expect_images(set, desc, "big.tar.gz");

    const auto big = *util::Digest::parse(desc["images"][0]["layers"][1]["digest"].get<std::string>());
    const Blob* blob = set.find(big);
    ASSERT_NE(blob, nullptr);
    EXPECT_EQ(blob->computed, big);
    const auto dirs = spool_dirs_in(tmp.path);
    ASSERT_EQ(dirs.size(), 1u);
    spool = dirs[0];
    EXPECT_EQ(blob->where.file.parent_path(), spool);
    EXPECT_EQ(fs::file_size(blob->where.file), blob->size);
    struct stat st{};
    ASSERT_EQ(::stat(spool.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(hash_blob(*blob), big);

    // Copies of the set keep the spool alive too.
    ImageSet copy = set;
    set = ImageSet{};
    EXPECT_TRUE(fs::exists(spool));
  }
  EXPECT_FALSE(fs::exists(spool)) << "the spool directory must go with the ImageSet";
  EXPECT_TRUE(spool_dirs_in(tmp.path).empty());
}

// ReadStats::bytes_read counts bytes of the input: a streamed input is read exactly
// once, whatever is later read back from the spool.
TEST_F(ArchiveTest, StreamedInputIsReadOnce) {
  for (const char* layout : {"docker-save", "oci"}) {
    SCOPED_TRACE(layout);
    const auto archive = scratch / "spooled.tar.gz";
    make_archive(archive, {"--layout", layout, "--layer-compression", "gzip", "--compressible", "0",
                           "--image", "app:v1=base:2M,top:1K"});
    ImageSet set;
    auto stats = read_archive(archive.string(), set);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    EXPECT_GT(stats->bytes_spooled, 0u);
    EXPECT_LE(stats->bytes_read, fs::file_size(archive));
    EXPECT_GT(stats->bytes_read, fs::file_size(archive) / 2);
    ImageSet from_stdin;
    stats = read_via_stdin(archive, from_stdin);
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    EXPECT_LE(stats->bytes_read, fs::file_size(archive));
  }
}

TEST_F(ArchiveTest, SpoolsOfSeveralArchivesLiveAsLongAsTheSet) {
  const auto a = scratch / "a.tar.gz";
  const auto b = scratch / "b.tar.zst";
  make_archive(a, {"--image", "a:1=x:2M"});
  make_archive(b, {"--image", "b:1=y:2M"});
  PrivateTmp tmp(scratch);
  {
    ImageSet set;
    ASSERT_TRUE(read_archive(a.string(), set).has_value());
    ASSERT_TRUE(read_archive(b.string(), set).has_value());
    EXPECT_EQ(spool_dirs_in(tmp.path).size(), 2u);
    expect_blobs_consistent(set);
  }
  EXPECT_TRUE(spool_dirs_in(tmp.path).empty());
}

// ---------------------------------------------------------------------------------
// Bad input

// How kload is expected to fail on one archive.
struct Failure {
  std::vector<std::string> substrings;  // all of them in the message
  bool needs_verify = false;            // only `inspect --verify` notices
  std::size_t distinct_digests = 0;     // at least this many different digests named
};

void expect_message(const std::string& message, const Failure& f) {
  for (const auto& s : f.substrings) {
    EXPECT_NE(message.find(s), std::string::npos) << "\"" << s << "\" not in: " << message;
  }
  const auto digests = digests_in(message);
  EXPECT_GE(std::set<std::string>(digests.begin(), digests.end()).size(), f.distinct_digests) << message;
}

enum class Mode { file, stdin_pipe, gzip_file };

const char* mode_name(Mode m) {
  switch (m) {
  case Mode::file:
    return "file";
  case Mode::stdin_pipe:
    return "stdin";
  case Mode::gzip_file:
    return "gzip";
  }
  return "?";
}

// Runs `kload inspect` (with --verify when asked) on `input` and checks the error
// line: exit 2, one line, "kload: error: ", the input's name and every substring; and
// that nothing is left in TMPDIR.
void expect_inspect_fails(const fs::path& archive, Mode mode, const Failure& f, const fs::path& tmp) {
  const bool from_stdin = mode == Mode::stdin_pipe;
  const std::string shown = from_stdin ? "-" : archive.string();
  std::vector<std::string> args{"inspect"};
  if (f.needs_verify) {
    // Without --verify the archive looks fine: only hashing finds the problem.
    const auto quiet = run_kload({"inspect", shown}, from_stdin ? archive.string() : "");
    EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
    args.emplace_back("--verify");
  }
  args.push_back(shown);
  const auto r = run_kload(args, from_stdin ? archive.string() : "");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  const auto& line = lines[0];
  EXPECT_TRUE(line.starts_with("kload: error: " + shown + ": ")) << line;
  expect_message(line, f);
  EXPECT_EQ(r.out, "") << "nothing on stdout after an error";
  EXPECT_TRUE(spool_dirs_in(tmp).empty()) << "spool directory left behind";
}

// The same through read_archive (and verify_blobs where needed).
void expect_read_fails(const fs::path& archive, Mode mode, const Failure& f) {
  ImageSet set;
  auto r = mode == Mode::stdin_pipe ? read_via_stdin(archive, set) : read_archive(archive.string(), set);
  std::string message;
  if (f.needs_verify) {
    ASSERT_TRUE(r.has_value()) << r.error().message;
    auto v = verify_blobs(set, all_blobs(set), 2);
    ASSERT_FALSE(v.has_value());
    message = v.error().message;
    EXPECT_EQ(v.error().kind, util::ErrorKind::bad_input);
  } else {
    ASSERT_FALSE(r.has_value()) << "read " << set.images.size() << " images";
    message = r.error().message;
    EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
    EXPECT_TRUE(set.images.empty());
    EXPECT_TRUE(set.blobs.empty());
  }
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  const std::string shown = mode == Mode::stdin_pipe ? "-" : archive.string();
  EXPECT_TRUE(message.starts_with(shown + ": ")) << message;
  expect_message(message, f);
}

struct FaultCase {
  std::string fault;
  std::string layout;
};

void PrintTo(const FaultCase& c, std::ostream* os) { *os << c.fault << "/" << c.layout; }

class Faults : public ArchiveTest, public ::testing::WithParamInterface<FaultCase> {};

// What each fault should produce; nullopt when kload cannot see it in this mode.
std::optional<Failure> expected_failure(const std::string& fault, const std::string& layout, Mode mode,
                                        const json& desc) {
  const bool docker = layout == "docker-save" || layout == "skopeo";
  const json& first = desc["images"][0];
  const std::string metadata = docker ? "manifest.json" : "index.json";
  if (fault == "corrupt-layer") {
    // In place, layers are not read: only --verify notices. Streamed bytes are
    // hashed as they go by, so a mismatch is found while reading.
    const std::string layer = first["layers"][0]["path"];
    // Both digests: what the bytes are and what they should be.
    return Failure{{layer, desc["fault_details"]["corrupt_layer"]}, mode == Mode::file, 2};
  }
  if (fault == "missing-blob") {
    Failure f{{desc["fault_details"]["missing_blob"], "is not in the archive"}};
    if (!docker) {
      // The manifest that names the missing layer.
      f.substrings.push_back("blobs/sha256/" + first["manifest_digest"].get<std::string>().substr(7));
    }
    return f;
  }
  if (fault == "bad-diffid") {
    const auto& d = desc["fault_details"]["bad_diffid"];
    const std::string layer = first["layers"][0]["path"];
    // docker-save names layers "<v1id>/layer.tar": nothing but their bytes says what
    // they are, so in place only --verify can tell.
    return Failure{{layer, d["real"], d["listed"]}, layout == "docker-save" && mode == Mode::file, 2};
  }
  if (fault == "missing-manifest") {
    return Failure{{"neither manifest.json nor index.json"}};
  }
  if (fault == "absolute-path") {
    return Failure{{"/etc/evil", "unsafe entry path"}};
  }
  if (fault == "dotdot") {
    return Failure{{"../evil", "unsafe entry path"}};
  }
  if (fault == "hardlink") {
    return Failure{{"evil-link", "hard link"}};
  }
  if (fault == "device") {
    return Failure{{"dev-null", "device"}};
  }
  if (fault == "huge-json") {
    // docker25 has both documents; either may be the first one looked at.
    return Failure{{layout == "docker25" ? ".json" : metadata, "too large"}};
  }
  if (fault == "bad-json") {
    return Failure{{layout == "docker25" ? ".json" : metadata, "invalid JSON"}};
  }
  ADD_FAILURE() << "unknown fault " << fault;
  return std::nullopt;
}

TEST_P(Faults, AreReportedPrecisely) {
  const auto& [fault, layout] = GetParam();
  const auto archive = scratch / "bad.tar";
  const auto gz = scratch / "bad.tar.gz";
  // Gzip layers hide their diff_ids: a wrong one in an OCI archive is only found when
  // the layer is unpacked, so bad-diffid uses uncompressed layers there.
  std::vector<std::string> args{"--layout",  layout, "--image", "app:v1=base:1200K,top:3K",
                                "--image", "other:v1=base:1200K", "--fault", fault};
  if (layout == "oci" && fault == "bad-diffid") {
    args.insert(args.end(), {"--layer-compression", "none"});
  }
  const json desc = make_archive(archive, args);
  ASSERT_FALSE(desc.is_null());
  args.insert(args.end(), {"--compress", "gzip"});
  ASSERT_FALSE(make_archive(gz, args).is_null());
  PrivateTmp tmp(scratch);
  for (const Mode mode : {Mode::file, Mode::stdin_pipe, Mode::gzip_file}) {
    if (fault == "huge-json" && mode == Mode::stdin_pipe) {
      continue; // 64 MiB through a pipe is slow and streams like gzip_file
    }
    SCOPED_TRACE(mode_name(mode));
    const auto input = mode == Mode::gzip_file ? gz : archive;
    const auto f = expected_failure(fault, layout, mode, desc);
    ASSERT_TRUE(f.has_value());
    expect_inspect_fails(input, mode, *f, tmp.path);
    expect_read_fails(input, mode, *f);
    EXPECT_TRUE(spool_dirs_in(tmp.path).empty()) << "spool directory left behind";
  }
}

INSTANTIATE_TEST_SUITE_P(Mkimage, Faults,
                         ::testing::ValuesIn([] {
                           std::vector<FaultCase> cases;
                           for (const char* fault : {"corrupt-layer", "missing-blob", "bad-diffid", "missing-manifest",
                                                     "absolute-path", "dotdot", "hardlink", "device", "huge-json",
                                                     "bad-json"}) {
                             for (const char* layout : {"docker-save", "skopeo", "docker25", "oci"}) {
                               cases.push_back({fault, layout});
                             }
                           }
                           return cases;
                         }()),
                         [](const auto& info) {
                           auto name = info.param.fault + "_" + info.param.layout;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

class Truncated : public ArchiveTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(Truncated, AtSeveralPoints) {
  const std::string layout = GetParam();
  const auto archive = scratch / "whole.tar";
  const json desc = make_archive(archive, {"--layout", layout, "--layer-compression", "none", "--image",
                                           "app:v1=base:1200K,top:3K"});
  const std::string bytes = kload::testing::read_file(archive);
  const auto entries = tar_entries(bytes);
  const std::string big_path = desc["images"][0]["layers"][0]["path"];
  const auto& big = entry_named(entries, big_path);
  const std::string metadata = layout == "docker-save" ? "manifest.json" : "index.json";
  const auto& meta = entry_named(entries, metadata);
  ASSERT_GT(big.size, 1u << 20);

  struct Cut {
    const char* what;
    std::uint64_t at;
    std::vector<std::string> substrings;
  };
  const Cut cuts[] = {
      {"in the big layer's header", big.header + 100, {"truncated"}},
      {"in the middle of the big layer", big.data + big.size / 2, {big_path, "runcated"}},
      // A cut on a block boundary looks like an archive without its end marker: what
      // is missing is then reported.
      {"right before the metadata", meta.header, {metadata}},
      {"in the metadata", meta.data + meta.size / 2, {metadata, "runcated"}},
  };
  PrivateTmp tmp(scratch);
  for (const auto& cut : cuts) {
    SCOPED_TRACE(cut.what);
    const auto part = scratch / "cut.tar";
    kload::testing::write_file(part, bytes.substr(0, cut.at));
    const Failure f{cut.substrings};
    for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
      SCOPED_TRACE(mode_name(mode));
      expect_inspect_fails(part, mode, f, tmp.path);
      expect_read_fails(part, mode, f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, Truncated, ::testing::Values("docker-save", "oci"),
                         [](const auto& info) {
                           auto name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST_F(ArchiveTest, NotAnArchiveAtAll) {
  PrivateTmp tmp(scratch);
  const auto empty = scratch / "empty.tar";
  kload::testing::write_file(empty, "");
  const auto text = scratch / "notes.txt";
  kload::testing::write_file(text, "This is not a tar archive.\n");
  const auto random = scratch / "random.bin";
  std::string noise(300000, '\0');
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& c : noise) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  kload::testing::write_file(random, noise);
  const auto gz_noise = scratch / "noise.gz";
  const auto gz = kload::testing::run_command({"sh", "-c", "gzip -c < " + text.string() + " > " + gz_noise.string()});
  ASSERT_EQ(gz.exit_code, 0) << gz.err;

  for (const auto& [file, what] : std::vector<std::pair<fs::path, std::string>>{
           {empty, "not a readable tar archive"},
           {text, "not a readable tar archive"},
           {random, "not a readable tar archive"},
           {gz_noise, "not a readable tar archive"}}) {
    SCOPED_TRACE(file.filename().string());
    for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
      SCOPED_TRACE(mode_name(mode));
      expect_inspect_fails(file, mode, Failure{{what}}, tmp.path);
      expect_read_fails(file, mode, Failure{{what}});
    }
  }

  const auto dir = scratch / "a-directory";
  fs::create_directory(dir);
  expect_inspect_fails(dir, Mode::file, Failure{{"is a directory"}}, tmp.path);
  expect_read_fails(dir, Mode::file, Failure{{"is a directory"}});

  const auto missing = scratch / "missing.tar";
  expect_inspect_fails(missing, Mode::file, Failure{{"cannot open", "No such file"}}, tmp.path);
  expect_read_fails(missing, Mode::file, Failure{{"cannot open"}});
}

// Inputs the archive fuzzer found (tests/fuzz/regressions/archive_reader): each must
// be an ordinary error.
TEST_F(ArchiveTest, FuzzerFindingsFailCleanly) {
  PrivateTmp tmp(scratch);
  const auto dir = kload::testing::source_dir() / "tests" / "fuzz" / "regressions" / "archive_reader";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) {
      continue;
    }
    SCOPED_TRACE(e.path().filename().string());
    for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
      SCOPED_TRACE(mode_name(mode));
      const bool from_stdin = mode == Mode::stdin_pipe;
      const auto r = run_kload({"inspect", from_stdin ? "-" : e.path().string()}, from_stdin ? e.path().string() : "");
      EXPECT_EQ(r.exit_code, 2) << r.err;
      const auto lines = lines_of(r.err);
      ASSERT_EQ(lines.size(), 1u) << r.err;
      EXPECT_TRUE(lines[0].starts_with("kload: error: ")) << lines[0];
      ImageSet set;
      EXPECT_NO_THROW({
        auto read = from_stdin ? read_via_stdin(e.path(), set) : read_archive(e.path().string(), set);
        EXPECT_FALSE(read.has_value());
      });
    }
    EXPECT_TRUE(spool_dirs_in(tmp.path).empty());
  }
}

// Writes a gzip-compressed tar holding one entry of `size` zero bytes.
void write_zero_bomb(const fs::path& out, std::uint64_t size) {
  std::unique_ptr<struct archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  archive_write_add_filter_gzip(a.get());
  archive_write_set_format_pax_restricted(a.get());
  ASSERT_EQ(archive_write_open_filename(a.get(), out.c_str()), ARCHIVE_OK);
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(e.get(), "zeros");
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  ASSERT_EQ(archive_write_header(a.get(), e.get()), ARCHIVE_OK);
  const std::string chunk(1 << 20, '\0');
  for (std::uint64_t done = 0; done < size; done += chunk.size()) {
    ASSERT_EQ(archive_write_data(a.get(), chunk.data(), chunk.size()), static_cast<la_ssize_t>(chunk.size()));
  }
  ASSERT_EQ(archive_write_close(a.get()), ARCHIVE_OK);
}

TEST_F(ArchiveTest, DecompressionBombIsRefused) {
  const auto bomb = scratch / "bomb.tar.gz";
  write_zero_bomb(bomb, 64u << 20);
  ASSERT_LT(fs::file_size(bomb), 1u << 20);
  PrivateTmp tmp(scratch);
  {
    ImageSet set;
    auto r = read_archive(bomb.string(), set, ReadLimits{.max_expansion_ratio = 100, .ratio_grace = 1 << 20});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
    EXPECT_TRUE(r.error().message.starts_with(bomb.string() + ": ")) << r.error().message;
    EXPECT_NE(r.error().message.find("decompression bomb"), std::string::npos) << r.error().message;
  }
  {
    ImageSet set;
    auto r = read_archive(bomb.string(), set, ReadLimits{.max_expanded_bytes = 8u << 20});
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(r.error().message.starts_with(bomb.string() + ": ")) << r.error().message;
    EXPECT_NE(r.error().message.find("expands beyond 8388608 bytes"), std::string::npos) << r.error().message;
  }
  {
    ImageSet set;
    auto r = read_via_stdin(bomb, set, ReadLimits{.max_expansion_ratio = 100, .ratio_grace = 1 << 20});
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("decompression bomb"), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(spool_dirs_in(tmp.path).empty()) << "spool directory left behind";
}

TEST_F(ArchiveTest, EntryLimit) {
  const auto archive = scratch / "a.tar";
  make_archive(archive, {"--image", "app:v1=a:1K,b:1K,c:1K"});
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    const ReadLimits limits{.max_entries = 5};
    auto r = mode == Mode::file ? read_archive(archive.string(), set, limits) : read_via_stdin(archive, set, limits);
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(r.error().message.starts_with(mode == Mode::file ? archive.string() : "-")) << r.error().message;
    EXPECT_NE(r.error().message.find("more than 5 entries"), std::string::npos) << r.error().message;
  }
}

TEST_F(ArchiveTest, MetadataLimitHoldsWhetherStreamedOrNot) {
  const auto archive = scratch / "a.tar";
  make_archive(archive, {"--image", "app:v1=a:1K"});
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    const ReadLimits limits{.max_metadata_bytes = 100};
    auto r = mode == Mode::file ? read_archive(archive.string(), set, limits) : read_via_stdin(archive, set, limits);
    ASSERT_FALSE(r.has_value()) << "a config of more than 100 bytes was accepted";
    EXPECT_NE(r.error().message.find("too large"), std::string::npos) << r.error().message;
  }
}

// ---------------------------------------------------------------------------------
// Archives written by other tools

TEST_F(ArchiveTest, UmociImageCopiedBySkopeo) {
  for (const char* tool : {"umoci", "skopeo"}) {
    if (kload::testing::run_command({"sh", "-c", std::string("command -v ") + tool}).exit_code != 0) {
      GTEST_SKIP() << tool << " is not installed";
    }
  }
  const auto layout = scratch / "layout";
  const auto bundle = scratch / "bundle";
  const auto run = [](const std::vector<std::string>& argv) {
    const auto r = kload::testing::run_command(argv);
    EXPECT_EQ(r.exit_code, 0) << argv[0] << " " << argv[1] << ": " << r.err;
    return r;
  };
  run({"umoci", "init", "--layout", layout.string()});
  run({"umoci", "new", "--image", layout.string() + ":v1"});
  run({"umoci", "unpack", "--rootless", "--image", layout.string() + ":v1", bundle.string()});
  kload::testing::write_file(bundle / "rootfs" / "hello.txt", "hello from a third-party image\n");
  fs::create_directories(bundle / "rootfs" / "etc");
  kload::testing::write_file(bundle / "rootfs" / "etc" / "motd", std::string(100000, 'm'));
  run({"umoci", "repack", "--image", layout.string() + ":v1", bundle.string()});
  ASSERT_FALSE(HasFailure());

  const auto docker_archive = scratch / "docker-archive.tar";
  const auto oci_archive = scratch / "oci-archive.tar";
  const std::string source = "oci:" + layout.string() + ":v1";
  run({"skopeo", "--insecure-policy", "copy", "-q", source, "docker-archive:" + docker_archive.string() + ":example.com/app:v1"});
  run({"skopeo", "--insecure-policy", "copy", "-q", source, "oci-archive:" + oci_archive.string() + ":example.com/app:v1"});
  ASSERT_FALSE(HasFailure());

  std::vector<std::string> ids;
  for (const auto& [archive, transport] : {std::pair{docker_archive, "docker-archive:"}, std::pair{oci_archive, "oci-archive:"}}) {
    SCOPED_TRACE(archive.filename().string());
    const auto manifest_raw = run({"skopeo", "inspect", "--raw", transport + archive.string()}).out;
    const auto config_raw = run({"skopeo", "inspect", "--config", "--raw", transport + archive.string()}).out;
    const auto manifest = json::parse(manifest_raw);
    const auto r = run_kload({"inspect", "--json", archive.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto seen = views_of_inspect_output(r.out);
    ASSERT_EQ(seen.size(), 1u);
    const auto& image = seen[0];
    EXPECT_EQ(image.names, (std::vector<std::string>{"example.com/app:v1"}));
    EXPECT_EQ(image.id, manifest["config"]["digest"].get<std::string>());
    EXPECT_EQ(image.id, util::Sha256::of(config_raw).str());
    const auto config = json::parse(config_raw);
    EXPECT_EQ(image.platform, config["os"].get<std::string>() + "/" + config["architecture"].get<std::string>());
    ASSERT_EQ(image.layers.size(), manifest["layers"].size());
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
      EXPECT_EQ(image.layers[i].digest, manifest["layers"][i]["digest"].get<std::string>());
      EXPECT_EQ(image.layers[i].size, manifest["layers"][i]["size"].get<std::uint64_t>());
      EXPECT_EQ(image.layers[i].diff_id, config["rootfs"]["diff_ids"][i].get<std::string>());
    }
    if (std::string(transport) == "oci-archive:") {
      EXPECT_EQ(image.manifest_digest, util::Sha256::of(manifest_raw).str());
    }
    ids.push_back(image.id);
    const auto verified = run_kload({"inspect", "--verify", archive.string()});
    EXPECT_EQ(verified.exit_code, 0) << verified.err;
  }
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]) << "the image ID is the config digest, whatever the archive format";
}

} // namespace
} // namespace kload::format
