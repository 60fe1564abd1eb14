// kload push against a real registry: Debian's docker-registry (the CNCF distribution
// registry), started per test on a free loopback port with its storage in the test's
// scratch directory. What the registry was asked is read from its own access log.

#include "kload/registry/http.h"
#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <set>
#include <thread>

namespace kload::registry {
namespace {

using kload::testing::kload;
using kload::testing::mkimage;
using kload::testing::Registry;
using kload::testing::Scratch;

using kload::testing::host_platform;
using kload::testing::other_platform;
constexpr const char* oci_index_type = "application/vnd.oci.image.index.v1+json";

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

TEST_F(E2EPush, AMultiPlatformImageGoesWholeWithItsIndexUnderTheTag) {
  const auto archive = (scratch_ / "multi.tar").string();
  const auto described = scratch_ / "multi.json";
  ASSERT_TRUE(mkimage({"--layout", "docker25", "--nested-index", "--platforms",
                       std::string(host_platform) + "," + other_platform, "--json-out", described.string(),
                       "--image", "app:v1=base:256K,top:16K", archive}));
  const auto d = nlohmann::json::parse(testing::read_file(described));
  const auto index = d["images"][0]["index_digest"].get<std::string>();
  const auto first = push({archive});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto doc = json_of(first);
  ASSERT_EQ(doc["indexes"].size(), 1u) << first.out;
  EXPECT_EQ(doc["indexes"][0]["digest"], index);
  EXPECT_EQ(doc["indexes"][0]["written"], true);
  EXPECT_EQ(doc["indexes"][0]["platforms"].size(), 2u);
  EXPECT_EQ(doc["images"].size(), 2u);
  EXPECT_EQ(doc["blobsUploaded"], 6) << first.out;  // per platform: config and two layers

  // The registry serves the index under the tag, byte for byte, and every manifest it
  // lists with every blob of each.
  const auto got = registry_->ask("GET", "/v2/library/app/manifests/v1", {std::string("Accept: ") + oci_index_type});
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.header("docker-content-digest"), index);
  EXPECT_EQ(got.header("content-type"), oci_index_type);
  std::set<std::string> listed;
  const auto served = nlohmann::json::parse(got.body);
  for (const auto& m : served["manifests"]) {
    const auto digest = m["digest"].get<std::string>();
    listed.insert(digest);
    const auto manifest = registry_->ask("GET", "/v2/library/app/manifests/" + digest,
                                         {"Accept: " + m["mediaType"].get<std::string>()});
    ASSERT_EQ(manifest.status, 200) << digest;
    const auto body = nlohmann::json::parse(manifest.body);
    EXPECT_EQ(registry_->ask("HEAD", "/v2/library/app/blobs/" + body["config"]["digest"].get<std::string>()).status,
              200);
    for (const auto& l : body["layers"]) {
      EXPECT_EQ(registry_->ask("HEAD", "/v2/library/app/blobs/" + l["digest"].get<std::string>()).status, 200);
    }
  }
  std::set<std::string> described_manifests;
  for (const auto& image : d["images"]) {
    described_manifests.insert(image["manifest_digest"].get<std::string>());
  }
  EXPECT_EQ(listed, described_manifests);
  EXPECT_NE(first.err.find("library/app:v1: index " + index.substr(7, 12) + " of 2 platforms written"),
            std::string::npos)
      << first.err;

  // Unchanged: HEAD requests only, the index too.
  const auto again = push({archive});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto doc2 = json_of(again);
  EXPECT_EQ(doc2["indexes"][0]["written"], false);
  EXPECT_EQ(doc2["requests"], nlohmann::json({{"HEAD", 6 + 3}})) << again.out;

  // --platform still picks one: its manifest under the tag.
  const auto one = kload({"push", "--registry", registry_->address(), "--plain-http", "--json", "--platform",
                          other_platform, archive});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_TRUE(json_of(one)["indexes"].empty());
  std::string other_manifest;
  for (const auto& image : d["images"]) {
    if (image["platform"] == other_platform) {
      other_manifest = image["manifest_digest"].get<std::string>();
    }
  }
  const auto tag = registry_->ask("HEAD", "/v2/library/app/manifests/v1",
                                  {"Accept: application/vnd.oci.image.manifest.v1+json"});
  EXPECT_EQ(tag.header("docker-content-digest"), other_manifest);
}

TEST_F(E2EPush, AnIndexTheArchiveHoldsInPartPushesTheHostPlatformAlone) {
  const auto archive = (scratch_ / "part.tar").string();
  ASSERT_TRUE(mkimage({"--layout", "docker25", "--nested-index", "--platforms",
                       std::string(host_platform) + "," + other_platform, "--missing-platform", other_platform,
                       "--image", "app:v1=base:64K", archive}));
  const auto r = push({archive});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = json_of(r);
  EXPECT_TRUE(doc["indexes"].empty()) << r.out;
  ASSERT_EQ(doc["images"].size(), 1u) << r.out;
  EXPECT_EQ(doc["images"][0]["platform"], host_platform);
  const auto tag = registry_->ask("HEAD", "/v2/library/app/manifests/v1",
                                  {"Accept: application/vnd.oci.image.manifest.v1+json"});
  EXPECT_EQ(tag.header("docker-content-digest"), doc["images"][0]["manifest"].get<std::string>());
}

TEST_F(E2EPush, APushKilledMidUploadNamesNothingAndARerunCompletesIt) {
  const auto archive = (scratch_ / "big.tar").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "big:1=small:4K,big:48M", archive}));
  const auto manifest = manifests_of(archive).at("docker.io/library/big:1");
  // Small PATCH chunks make the big layer's upload hundreds of requests long; kload is
  // killed once the registry has answered a few of them.
  ::setenv("KLOAD_PUSH_CHUNK_BYTES", "65536", 1);
  const pid_t pid = testing::spawn_kload({"push", "--registry", registry_->address(), "--plain-http", archive},
                                         scratch_ / "out", scratch_ / "err");
  ::unsetenv("KLOAD_PUSH_CHUNK_BYTES");
  ASSERT_GT(pid, 0);
  const auto log = scratch_ / "registry" / "registry.log";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::size_t patches = 0;
  while (patches < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const auto text = testing::read_file(log);
    patches = 0;
    for (auto at = text.find("\"PATCH "); at != std::string::npos; at = text.find("\"PATCH ", at + 1)) {
      ++patches;
    }
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the push ended before it was killed: " << testing::read_file(scratch_ / "err");

  // Nothing is named: the tag is unknown to the registry.
  const auto accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
  EXPECT_EQ(registry_->ask("HEAD", "/v2/library/big/manifests/1", {accept}).status, 404);

  const auto again = push({archive});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto doc = json_of(again);
  EXPECT_EQ(doc["images"][0]["manifestWritten"], true);
  EXPECT_GE(doc["blobsUploaded"].get<int>(), 1);  // the big layer, at least
  EXPECT_EQ(doc["blobsUploaded"].get<int>() + doc["blobsPresent"].get<int>(), 3) << again.out;
  const auto m = registry_->ask("GET", "/v2/library/big/manifests/1", {accept});
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.header("docker-content-digest"), manifest);
  const auto big = nlohmann::json::parse(m.body);
  ASSERT_EQ(big["layers"].size(), 2u);
  for (const auto& l : big["layers"]) {
    EXPECT_EQ(registry_->ask("HEAD", "/v2/library/big/blobs/" + l["digest"].get<std::string>()).status, 200);
  }
}

TEST_F(E2EPush, TlsWithTheRegistrysCaAndOneLineWhenItIsNotTrusted) {
  // A second registry serving TLS with a self-signed certificate for 127.0.0.1.
  const auto dir = scratch_ / "tls";
  std::filesystem::create_directories(dir);
  const auto cert = (dir / "cert.pem").string();
  const auto key = (dir / "key.pem").string();
  const auto made = testing::run_command({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                                          "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                                          "-keyout", key, "-out", cert});
  if (made.exit_code != 0) {
    GTEST_SKIP() << "openssl cannot make a certificate here: " << made.err;
  }
  // Appended to the registry's http section.
  Registry secure(dir, "  tls:\n    certificate: " + cert + "\n    key: " + key + "\n");
  ASSERT_TRUE(secure.up()) << testing::read_file(dir / "registry.log");
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K", archive}));

  const auto untrusted = kload({"push", "--registry", secure.address(), archive});
  EXPECT_EQ(untrusted.exit_code, 1) << untrusted.err;
  const auto lines = testing::split_lines(untrusted.err);
  ASSERT_EQ(lines.size(), 1u) << untrusted.err;
  EXPECT_NE(lines[0].find("registry " + secure.address() + ": library/app: blob sha256:"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("its TLS certificate is not trusted"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("--ca-file FILE or as /etc/docker/certs.d/" + secure.address() + "/ca.crt"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("--plain-http"), std::string::npos) << lines[0];

  const auto trusted = kload({"push", "--registry", secure.address(), "--ca-file", cert, "--json", archive});
  ASSERT_EQ(trusted.exit_code, 0) << trusted.err;
  EXPECT_EQ(json_of(trusted)["blobsUploaded"], 2) << trusted.out;

  // TLS spoken to a plain-HTTP registry: one line that names --plain-http.
  const auto plain = kload({"push", "--registry", registry_->address(), archive});
  EXPECT_EQ(plain.exit_code, 1) << plain.err;
  ASSERT_EQ(testing::split_lines(plain.err).size(), 1u) << plain.err;
  EXPECT_NE(plain.err.find("use --plain-http"), std::string::npos) << plain.err;
}

TEST_F(E2EPush, AFullDiskIsOneLineAndNamesNothing) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "a registry on a 2 MiB tmpfs needs root (a mount in a private mount namespace)";
  }
  // A second registry whose storage is a 2 MiB tmpfs, mounted in its own namespace.
  const auto dir = scratch_ / "full";
  Registry full(dir, "", "127.0.0.1",
                {"unshare", "--mount", "sh", "-c",
                 "mount -t tmpfs -o size=2m tmpfs \"$0\" && exec \"$@\"", (dir / "storage").string()});
  if (!full.up()) {
    GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here: "
                 << testing::read_file(dir / "registry.log");
  }
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=small:4K,big:4M", archive}));
  const auto r = kload({"push", "--registry", full.address(), "--plain-http", archive});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto lines = testing::split_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_NE(lines[0].find("kload: error: registry " + full.address() + ": library/app: blob sha256:"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(": HTTP 5"), std::string::npos) << lines[0];
  EXPECT_EQ(full.ask("HEAD", "/v2/library/app/manifests/v1",
                     {"Accept: application/vnd.docker.distribution.manifest.v2+json"})
                .status,
            404);
}

// The manifest a tag names, as the registry serves it to a client of both manifest types.
nlohmann::json served_manifest(const Registry& registry, const std::string& repo, const std::string& tag,
                               std::string* digest) {
  const auto m = registry.ask("GET", "/v2/" + repo + "/manifests/" + tag,
                              {"Accept: application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json"});
  EXPECT_EQ(m.status, 200) << m.body;
  *digest = m.header("docker-content-digest");
  auto doc = nlohmann::json::parse(m.body, nullptr, false);
  return doc.is_discarded() ? nlohmann::json::object() : doc;
}

TEST_F(E2EPush, CompressedLayersGetANewManifestAndKeepTheImageId) {
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:2M,top:256K", "--image", "app:v2=base:2M", archive}));
  const auto id = json_of(kload({"inspect", "--json", archive}))["images"][0]["id"].get<std::string>();
  const auto loaded = manifests_of(archive);
  for (const std::string compress : {"zstd", "gzip"}) {
    SCOPED_TRACE(compress);
    const auto repo_prefix = compress;  // a registry prefix per compression
    const auto r = kload({"push", "--registry", registry_->address() + "/" + repo_prefix, "--plain-http", "--json",
                          "--compress", compress, archive});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = json_of(r);
    EXPECT_EQ(doc["compress"], compress);
    EXPECT_EQ(doc["blobsUploaded"], 4) << r.out;  // two configs, base once (mounted? same repository), top
    for (const auto& image : doc["images"]) {
      std::string digest;
      const auto manifest = served_manifest(*registry_, image["repository"].get<std::string>(),
                                            image["tag"].get<std::string>(), &digest);
      EXPECT_EQ(digest, image["manifest"].get<std::string>()) << "the digest reported is the registry's";
      EXPECT_NE(digest, loaded.at("docker.io/library/app:" + image["tag"].get<std::string>()));
      EXPECT_EQ(manifest["mediaType"], compress == "zstd" ? "application/vnd.oci.image.manifest.v1+json"
                                                          : "application/vnd.docker.distribution.manifest.v2+json");
      for (const auto& l : manifest["layers"]) {
        EXPECT_EQ(l["mediaType"], compress == "zstd" ? "application/vnd.oci.image.layer.v1.tar+zstd"
                                                     : "application/vnd.docker.image.rootfs.diff.tar.gzip");
        const auto blob = registry_->ask("GET", "/v2/" + image["repository"].get<std::string>() + "/blobs/" +
                                                    l["digest"].get<std::string>());
        ASSERT_EQ(blob.status, 200);
        EXPECT_EQ(blob.body.size(), l["size"].get<std::size_t>());
        const std::string magic = compress == "zstd" ? std::string("\x28\xb5\x2f\xfd") : std::string("\x1f\x8b");
        EXPECT_EQ(blob.body.substr(0, magic.size()), magic);
        EXPECT_LT(blob.body.size(), 2u << 20) << "half of each MiB is repeated text";
      }
    }
    EXPECT_EQ(doc["images"][0]["id"], id) << "the config is unchanged";
  }
}

TEST_F(E2EPush, AContainerdNodePullsAndUnpacksZstdLayers) {
  testing::Lab lab(scratch_ / "lab", 1, testing::LabKind{});
  ASSERT_TRUE(lab.up());
  const auto archive = (scratch_ / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:1M,top:64K", archive}));
  const auto r = kload({"push", "--registry", registry_->address(), "--plain-http", "--json", "--compress", "zstd",
                        archive});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto manifest = json_of(r)["images"][0]["manifest"].get<std::string>();
  const auto uri = lab.uris().at(0);
  const auto at = uri.find("snapshotter=");
  const auto snapshotter = at == std::string::npos ? std::string("overlayfs") : uri.substr(at + 12);
  const auto ref = registry_->address() + "/library/app:v1";
  const auto pulled = lab.ctr(1, {"images", "pull", "--plain-http", "--snapshotter", snapshotter, ref});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.out << pulled.err;
  EXPECT_NE(pulled.out.find("unpacking"), std::string::npos) << pulled.out;
  const auto check = lab.ctr(1, {"images", "check"});
  EXPECT_NE(check.out.find(ref), std::string::npos) << check.out;
  EXPECT_NE(check.out.find("complete"), std::string::npos) << check.out;
  const auto listed = lab.ctr(1, {"images", "ls"});
  EXPECT_NE(listed.out.find(manifest), std::string::npos) << listed.out;
}

} // namespace
} // namespace kload::registry
