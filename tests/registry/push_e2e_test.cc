// kload push against a real registry: Debian's docker-registry (the CNCF distribution
// registry), started per test on a free loopback port with its storage in the test's
// scratch directory. What the registry was asked is read from its own access log.

#include "kload/registry/http.h"
#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <thread>

namespace kload::registry {
namespace {

using kload::testing::kload;
using kload::testing::mkimage;
using kload::testing::Registry;
using kload::testing::Scratch;

std::map<std::string, int> methods(const std::vector<std::string>& requests) {
  std::map<std::string, int> out;
  for (const auto& r : requests) {
    ++out[r.substr(0, r.find(' '))];
  }
  return out;
}

nlohmann::json json_of(const testing::CommandResult& r) {
  auto doc = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << r.out << r.err;
  return doc.is_discarded() ? nlohmann::json::object() : doc;
}

// image name -> manifest digest, as kload inspect reports it.
std::map<std::string, std::string> manifests_of(const std::string& archive) {
  const auto r = kload({"inspect", "--json", archive});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> out;
  const auto doc = json_of(r);
  for (const auto& image : doc["images"]) {
    for (const auto& name : image["names"]) {
      out[name.get<std::string>()] = image["manifest"]["digest"].get<std::string>();
    }
  }
  return out;
}

class E2EPush : public ::testing::Test {
protected:
  void SetUp() override {
    KLOAD_REQUIRE_REGISTRY();
    registry_ = std::make_unique<Registry>(scratch_ / "registry");
    ASSERT_TRUE(registry_->up()) << testing::read_file(scratch_ / "registry" / "registry.log");
  }

  testing::CommandResult push(const std::vector<std::string>& archives) {
    std::vector<std::string> args{"push", "--registry", registry_->address(), "--plain-http", "--json"};
    args.insert(args.end(), archives.begin(), archives.end());
    return kload(args);
  }

  Scratch scratch_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(E2EPush, FirstPushThenUnchangedPushOnlyAsks) {
  const auto archive = (scratch_ / "apps.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:1M,top:128K", "--image", "tool:1=base:1M,tool:64K", archive}));
  const auto first = push({archive});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto doc = json_of(first);
  // library/app: config, base, top uploaded; library/tool: base mounted from
  // library/app, its config and layer uploaded.
  EXPECT_EQ(doc["blobsUploaded"], 5) << first.out;
  EXPECT_EQ(doc["blobsMounted"], 1) << first.out;
  EXPECT_EQ(doc["blobsPresent"], 0) << first.out;

  // The registry's own API: each tag names the manifest kload computes for the
  // docker-save image (containerd's synthesised one), and every blob is there.
  for (const auto& [name, digest] : manifests_of(archive)) {
    const std::string repo = name.substr(std::string("docker.io/").size(), name.rfind(':') - 10);
    const std::string tag = name.substr(name.rfind(':') + 1);
    const auto m = registry_->ask("GET", "/v2/" + repo + "/manifests/" + tag,
                                  {"Accept: application/vnd.docker.distribution.manifest.v2+json"});
    ASSERT_EQ(m.status, 200) << repo << ":" << tag << " " << m.body;
    EXPECT_EQ(m.header("docker-content-digest"), digest);
    const auto manifest = nlohmann::json::parse(m.body);
    std::vector<std::string> blobs{manifest["config"]["digest"].get<std::string>()};
    for (const auto& l : manifest["layers"]) {
      blobs.push_back(l["digest"].get<std::string>());
    }
    for (const auto& b : blobs) {
      EXPECT_EQ(registry_->ask("HEAD", "/v2/" + repo + "/blobs/" + b).status, 200) << repo << " " << b;
    }
  }
  const auto human = testing::split_lines(first.err);
  ASSERT_GE(human.size(), 3u) << first.err;
  EXPECT_NE(first.err.find("127.0.0.1"), std::string::npos);

  // Unchanged: only HEAD requests (blobs, then each tag's manifest), nothing written.
  const auto before = registry_->requests().size();
  const auto again = push({archive});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto doc2 = json_of(again);
  EXPECT_EQ(doc2["blobsUploaded"], 0);
  EXPECT_EQ(doc2["blobsMounted"], 0);
  EXPECT_EQ(doc2["blobsPresent"], 6);
  for (const auto& image : doc2["images"]) {
    EXPECT_FALSE(image["manifestWritten"].get<bool>()) << image;
  }
  const auto all = registry_->requests();
  const std::vector<std::string> second(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  const auto counted = methods(second);
  EXPECT_EQ(counted.size(), 1u) << testing::read_file(scratch_ / "registry" / "registry.log");
  EXPECT_EQ(counted.count("HEAD") ? counted.at("HEAD") : 0, 6 + 2);
  EXPECT_EQ(doc2["requests"], nlohmann::json({{"HEAD", 8}}));
}

TEST_F(E2EPush, DevPushUploadsOnlyTheChangedLayer) {
  const auto v1 = (scratch_ / "v1.tar").string();
  const auto v2 = (scratch_ / "v2.tar").string();
  ASSERT_TRUE(mkimage({"--layout", "docker25", "--layer-compression", "gzip", "--image", "app:dev=base:1M,top:256K", v1}));
  ASSERT_TRUE(mkimage({"--layout", "docker25", "--layer-compression", "gzip", "--image", "app:dev=base:1M,top2:512K", v2}));
  ASSERT_EQ(push({v1}).exit_code, 0);
  const auto before = registry_->requests().size();
  const auto dev = push({v2});
  ASSERT_EQ(dev.exit_code, 0) << dev.err;
  const auto doc = json_of(dev);
  // The changed layer, and the config that names it (a new image ID).
  EXPECT_EQ(doc["blobsUploaded"], 2) << dev.out;
  EXPECT_EQ(doc["blobsPresent"], 1) << dev.out;
  const auto all = registry_->requests();
  const std::vector<std::string> second(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  const auto counted = methods(second);
  EXPECT_EQ(counted.at("POST"), 2);
  EXPECT_EQ(counted.at("PUT"), 3);  // two blobs and the manifest
  const auto tag = registry_->ask("HEAD", "/v2/library/app/manifests/dev",
                                  {"Accept: application/vnd.oci.image.manifest.v1+json"});
  EXPECT_EQ(tag.header("docker-content-digest"), manifests_of(v2).at("docker.io/library/app:dev"));
}

TEST_F(E2EPush, LargeBlobsGoInPatchChunks) {
  const auto archive = (scratch_ / "big.tar").string();
  ASSERT_TRUE(mkimage({"--image", "big:1=big:700K", archive}));
  const auto r = testing::run_command({"env", "KLOAD_PUSH_CHUNK_BYTES=200000", testing::kload_binary().string(), "push",
                                       "--registry", registry_->address(), "--plain-http", "--json", archive});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto counted = methods(registry_->requests());
  // 700 KiB + tar framing in chunks of 200 kB: three PATCHes, the rest with the PUT.
  EXPECT_EQ(counted.at("PATCH"), 3);
  EXPECT_EQ(counted.at("PUT"), 3);  // layer, config, manifest
  const auto m = registry_->ask("HEAD", "/v2/library/big/manifests/1",
                                {"Accept: application/vnd.docker.distribution.manifest.v2+json"});
  EXPECT_EQ(m.header("docker-content-digest"), manifests_of(archive).at("docker.io/library/big:1"));
}

TEST_F(E2EPush, ACorruptBlobIsNeverSent) {
  const auto archive = (scratch_ / "bad.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:256K", "--fault", "corrupt-layer", archive}));
  const auto r = push({archive});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(testing::split_lines(r.err).size(), 1u) << r.err;
  const auto counted = methods(registry_->requests());
  EXPECT_EQ(counted.count("PUT") + counted.count("POST") + counted.count("PATCH"), 0u);
}

TEST_F(E2EPush, AnUnreachableRegistryIsOneLineAndExitOne) {
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K", archive}));
  const auto address = registry_->address();
  registry_->stop();
  const auto r = kload({"push", "--registry", address, "--plain-http", archive});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto lines = testing::split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find("kload: error: registry " + address + ": library/app: blob sha256:"), std::string::npos)
      << lines[0];
}

TEST_F(E2EPush, ARegistryErrorNamesItsCode) {
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K", archive}));
  // A registry in read-only maintenance refuses every upload (HTTP 405, a plain-text
  // body: describe_response's unit test covers the registry's JSON error codes).
  registry_->stop();
  const auto dir = scratch_ / "registry";
  auto config = testing::read_file(dir / "config.yml");
  config.replace(config.find("storage:\n"), 9, "storage:\n  maintenance:\n    readonly:\n      enabled: true\n");
  testing::write_file(dir / "config.yml", config);
  registry_->start();
  ASSERT_TRUE(registry_->up());
  const auto r = kload({"push", "--registry", registry_->address(), "--plain-http", archive});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto lines = testing::split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find("library/app: blob sha256:"), std::string::npos) << lines[0];
  EXPECT_TRUE(lines[0].ends_with(": HTTP 405")) << lines[0];
}

TEST_F(E2EPush, BasicCredentialsFromTheDockerConfigOrCreds) {
  // A second registry that wants Basic credentials: ci:pw, bcrypt as its htpasswd
  // file requires.
  const auto dir = scratch_ / "private";
  std::filesystem::create_directories(dir);
  const auto hash = testing::run_command(
      {"python3", "-W", "ignore", "-c",
       "import crypt; print('ci:' + crypt.crypt('pw', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"});
  ASSERT_EQ(hash.exit_code, 0) << hash.err;
  testing::write_file(dir / "htpasswd", hash.out);
  Registry guarded(dir, "auth:\n  htpasswd:\n    realm: kload-test\n    path: " + (dir / "htpasswd").string() + "\n");
  ASSERT_TRUE(guarded.up());
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K", archive}));
  const auto bin = testing::kload_binary().string();
  const auto config_dir = scratch_ / "docker";
  std::filesystem::create_directories(config_dir);
  auto run = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv{"env", "-u", "KLOAD_REGISTRY_USER", "DOCKER_CONFIG=" + config_dir.string(), bin,
                                  "push", "--registry", guarded.address(), "--plain-http", archive};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::run_command(argv);
  };

  const auto anonymous = run({});
  EXPECT_EQ(anonymous.exit_code, 1) << anonymous.err;
  EXPECT_NE(anonymous.err.find("the registry asks for credentials"), std::string::npos) << anonymous.err;

  const auto wrong = run({"--creds", "ci:nope"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
  ASSERT_EQ(testing::split_lines(wrong.err).size(), 1u) << wrong.err;
  EXPECT_NE(wrong.err.find("HTTP 401 (the credentials were refused)"), std::string::npos) << wrong.err;

  // base64("ci:pw") = Y2k6cHc=
  testing::write_file(config_dir / "config.json",
                      R"({"auths":{")" + guarded.address() + R"(":{"auth":"Y2k6cHc="}}})");
  const auto pushed = run({});
  EXPECT_EQ(pushed.exit_code, 0) << pushed.err;
  const auto again = run({"--creds", "ci:pw", "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(json_of(again)["blobsPresent"], 2) << again.out;
}

} // namespace
} // namespace kload::registry
