#include "kload/node/ctr_client.h"
#include "support/test_support.h"

#include "fake_runner.h"
#include "kload/util/sha256.h"
#include "kload/util/zstd_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace kload::node {
namespace {

namespace fs = std::filesystem;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using util::Digest;
using util::ErrorKind;

Digest digest(std::string_view text) {
  const auto d = Digest::parse(text);
  EXPECT_TRUE(d.has_value()) << text;
  return d.value_or(Digest{});
}

// ---------------------------------------------------------------------------------
// Output captured from ctr 1.6.20 against a private containerd: two OCI images, a
// docker-archive image, a two-platform index, a failed thin import, and the stray
// "import-DATE@sha256:..." refs that --digests creates.

const std::string version_out =
    "Client:\n"
    "  Version:  1.6.20~ds1\n"
    "  Revision: 1.6.20~ds1-1+deb12u3\n"
    "  Go version: go1.19.8\n"
    "\n"
    "Server:\n"
    "  Version:  1.6.20~ds1\n"
    "  Revision: 1.6.20~ds1-1+deb12u3\n"
    "  UUID: d8b6a686-a517-49dd-9432-b6e57080147f\n";

const std::string content_ls_out =
    "DIGEST\t\t\t\t\t\t\t\t\tSIZE\tAGE\t\tLABELS\n"
    "sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231\t578B\tAbout a minute\tcontainerd.io/gc.ref.content.l.1=sha256:69214002d740debe3720c1a5d1ba9d9b45d588aaa37f71b6d9751d414daf8755,containerd.io/gc.ref.content.l.0=sha256:f515b8fac0f2e4d30f4bd3e097a1a64597d57b282f145953096c5efe8ad690fd,containerd.io/gc.ref.content.config=sha256:90cea8eafc1ed428a9672bf2619aa495dac190584159c127353e7b8abba3c0bc\n"
    "sha256:162944ca600165f6b11cac81bfbf9c3e3128913b81895337e8c212b7bf352405\t237B\t34 seconds\t-\n"
    "sha256:23384ef5fbd3b2dbfae5547f42be90f19c58dd94d3038c38f63fc0ea129194ef\t159B\t2 seconds\t-\n"
    "sha256:245c20bbf78d89cdfe62eb4bed258be04c56fbef14d56055eeea1dd89bf03d83\t237B\tAbout a minute\tcontainerd.io/gc.ref.snapshot.overlayfs=sha256:7436939b3c07428aae2a3befa86feedc33ffd097124e800a60bb6435f78a8410\n"
    "sha256:2526babe85ee5734190cc2f5be71829d0fe0ad1c8f7c7e73617274b31bc9d765\t10.24kB\tAbout a minute\tcontainerd.io/uncompressed=sha256:2526babe85ee5734190cc2f5be71829d0fe0ad1c8f7c7e73617274b31bc9d765\n"
    "sha256:531cda11b6ea4ac08ddedd06360f64a6da5169aac07c97cf615dde14b53f769c\t517B\t2 seconds\tcontainerd.io/gc.ref.content.m.1=sha256:cc8a7929be4f46f3ffccc769a8f41b87ff29d812a9a1133faaa7920567a581fe,containerd.io/gc.ref.content.m.0=sha256:83eb096e0db61fc9d6a3ae9341f9a70d44dc648c3159e0de165fa78539a768a2\n"
    "sha256:5b739fa47494597a7b486e58deee1a53ddb8d5610ebe399a0ef8a4b16a7454a1\t578B\t34 seconds\tcontainerd.io/gc.ref.content.config=sha256:162944ca600165f6b11cac81bfbf9c3e3128913b81895337e8c212b7bf352405,containerd.io/gc.ref.content.l.1=sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d,containerd.io/gc.ref.content.l.0=sha256:ba58740e603004c94e80182a276f9949b5bb1f0e82bc3fc1ba9fff547caba3fa\n"
    "sha256:648e7d66b18e17cc2b107e05988671ea04351bb1eb1e52eb6e5d15824f969b3f\t108B\t16 seconds\tcontainerd.io/uncompressed=sha256:6dc71ac2767366fcf22d4e7019abb2680604def69df5fb0e1aaf28fedc557d69\n"
    "sha256:69214002d740debe3720c1a5d1ba9d9b45d588aaa37f71b6d9751d414daf8755\t108B\tAbout a minute\tcontainerd.io/uncompressed=sha256:c5a64577a9e936b2eba9e2b970b00125fcc79ff24abeead4257c97e2faf47d3d\n"
    "sha256:79f8f5005ae2c73460527985852c46fe3b0524abd5cd60495ea089ce7358108d\t108B\t16 seconds\tcontainerd.io/uncompressed=sha256:685bf4ea3db80e9788a043d6336340f0769279f8a0b26315995fa6b9105da13a\n"
    "sha256:7a8f16f4dce0b654b013ceeb86ed4396eeb58165e3a13f9f72d383ef85420e20\t237B\t16 seconds\tcontainerd.io/gc.ref.snapshot.overlayfs=sha256:2ef29ccea44d878a446f51d96689c7e7216844ef153b6a499561f7d4c2a62c33\n"
    "sha256:83eb096e0db61fc9d6a3ae9341f9a70d44dc648c3159e0de165fa78539a768a2\t418B\t2 seconds\tcontainerd.io/gc.ref.content.l.0=sha256:e07f25c2eedd130946b60da6b8d33b5a48311dd359ecda2b573b42b75cf6eb1d,containerd.io/gc.ref.content.config=sha256:e87f368a521f032c94e42a8279b594ef573a119152744801d16de43bcde50799\n"
    "sha256:90cea8eafc1ed428a9672bf2619aa495dac190584159c127353e7b8abba3c0bc\t237B\tAbout a minute\tcontainerd.io/gc.ref.snapshot.overlayfs=sha256:43836f1b33ccfd2514ea205e0f75fe0d6bd92b31b4368f324aaa1847dc6e3cb4\n"
    "sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16\t577B\tAbout a minute\tcontainerd.io/gc.ref.content.l.0=sha256:d1e831edc22699548a60b2d40d501317dab9f33b2be4f4cb797025a9188d9d7c,containerd.io/gc.ref.content.config=sha256:245c20bbf78d89cdfe62eb4bed258be04c56fbef14d56055eeea1dd89bf03d83,containerd.io/gc.ref.content.l.1=sha256:2526babe85ee5734190cc2f5be71829d0fe0ad1c8f7c7e73617274b31bc9d765\n"
    "sha256:ba58740e603004c94e80182a276f9949b5bb1f0e82bc3fc1ba9fff547caba3fa\t108B\t34 seconds\tcontainerd.io/uncompressed=sha256:86d798681ced0acabe319151de907a0db210e845d2d8b071656b862abbb7ea17\n"
    "sha256:cc8a7929be4f46f3ffccc769a8f41b87ff29d812a9a1133faaa7920567a581fe\t418B\t2 seconds\tcontainerd.io/gc.ref.content.l.0=sha256:d8a738fa156470080a698dbf368d376859df9e8dee0056ede5d76d8b8008a984,containerd.io/gc.ref.content.config=sha256:23384ef5fbd3b2dbfae5547f42be90f19c58dd94d3038c38f63fc0ea129194ef\n"
    "sha256:ccf7ebacba7bd7acd08ae6281d229812ea0942c0292ecb974b8a13943a71ee48\t578B\t16 seconds\tcontainerd.io/gc.ref.content.l.1=sha256:79f8f5005ae2c73460527985852c46fe3b0524abd5cd60495ea089ce7358108d,containerd.io/gc.ref.content.l.0=sha256:648e7d66b18e17cc2b107e05988671ea04351bb1eb1e52eb6e5d15824f969b3f,containerd.io/gc.ref.content.config=sha256:7a8f16f4dce0b654b013ceeb86ed4396eeb58165e3a13f9f72d383ef85420e20\n"
    "sha256:d1e831edc22699548a60b2d40d501317dab9f33b2be4f4cb797025a9188d9d7c\t10.24kB\tAbout a minute\tcontainerd.io/uncompressed=sha256:d1e831edc22699548a60b2d40d501317dab9f33b2be4f4cb797025a9188d9d7c\n"
    "sha256:d8a738fa156470080a698dbf368d376859df9e8dee0056ede5d76d8b8008a984\t103B\t2 seconds\t-\n"
    "sha256:e07f25c2eedd130946b60da6b8d33b5a48311dd359ecda2b573b42b75cf6eb1d\t103B\t2 seconds\tcontainerd.io/uncompressed=sha256:75b424713e39c47d39ccb019efce0da9e9be5437dbd57f046fc02491d6c44ca6\n"
    "sha256:e87f368a521f032c94e42a8279b594ef573a119152744801d16de43bcde50799\t159B\t2 seconds\tcontainerd.io/gc.ref.snapshot.overlayfs=sha256:75b424713e39c47d39ccb019efce0da9e9be5437dbd57f046fc02491d6c44ca6\n"
    "sha256:f515b8fac0f2e4d30f4bd3e097a1a64597d57b282f145953096c5efe8ad690fd\t108B\tAbout a minute\tcontainerd.io/uncompressed=sha256:61d4b696d7a5d5c5d6e0ab0b4e42c2f38ffc422b2af4a53b33f344cecb9bb3f5\n";

const std::string images_ls_out =
    "REF                                                                                       TYPE                                                 DIGEST                                                                  SIZE     PLATFORMS               LABELS \n"
    "docker.io/library/app:v1                                                                  application/vnd.oci.image.manifest.v1+json           sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231 1.0 KiB  linux/amd64             -      \n"
    "docker.io/library/dock:v1                                                                 application/vnd.docker.distribution.manifest.v2+json sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16 20.8 KiB linux/amd64             -      \n"
    "docker.io/library/multi:v1                                                                application/vnd.oci.image.index.v1+json              sha256:531cda11b6ea4ac08ddedd06360f64a6da5169aac07c97cf615dde14b53f769c 1.2 KiB  linux/amd64,linux/arm64 -      \n"
    "docker.io/library/nodig:v1                                                                application/vnd.oci.image.manifest.v1+json           sha256:ccf7ebacba7bd7acd08ae6281d229812ea0942c0292ecb974b8a13943a71ee48 1.0 KiB  linux/amd64             -      \n"
    "docker.io/library/thin:v1                                                                 application/vnd.oci.image.manifest.v1+json           sha256:5b739fa47494597a7b486e58deee1a53ddb8d5610ebe399a0ef8a4b16a7454a1 1.0 KiB  linux/amd64             -      \n"
    "import-2026-11-28@sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231 application/vnd.oci.image.manifest.v1+json           sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231 1.0 KiB  linux/amd64             -      \n"
    "import-2026-11-28@sha256:5b739fa47494597a7b486e58deee1a53ddb8d5610ebe399a0ef8a4b16a7454a1 application/vnd.oci.image.manifest.v1+json           sha256:5b739fa47494597a7b486e58deee1a53ddb8d5610ebe399a0ef8a4b16a7454a1 1.0 KiB  linux/amd64             -      \n"
    "import-2026-11-28@sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16 application/vnd.docker.distribution.manifest.v2+json sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16 20.8 KiB linux/amd64             -      \n";

// The images an `images ls` output names, as a check of every name would give them:
// the roots from which inventory() counts blobs as held.
std::vector<ImageStatus> roots_of(std::string_view images_ls) {
  std::vector<ImageStatus> roots;
  std::istringstream in{std::string(images_ls)};
  std::string name;
  std::string type;
  std::string target;
  std::string rest;
  while (in >> name >> type >> target) {
    std::getline(in, rest);
    if (auto d = util::Digest::parse(target)) {
      roots.push_back(ImageStatus{name, *d, true});
    }
  }
  return roots;
}

const std::string images_check_out =
    "REF                                                                                       TYPE                                                 DIGEST                                                                  STATUS           SIZE              UNPACKED \n"
    "docker.io/library/app:v1                                                                  application/vnd.oci.image.manifest.v1+json           sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231 complete (3/3)   453.0 B/453.0 B   true\n"
    "docker.io/library/dock:v1                                                                 application/vnd.docker.distribution.manifest.v2+json sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16 complete (3/3)   20.2 KiB/20.2 KiB true\n"
    "docker.io/library/multi:v1                                                                application/vnd.oci.image.index.v1+json              sha256:531cda11b6ea4ac08ddedd06360f64a6da5169aac07c97cf615dde14b53f769c complete (2/2)   262.0 B/262.0 B   true\n"
    "docker.io/library/thin:v1                                                                 application/vnd.oci.image.manifest.v1+json           sha256:5b739fa47494597a7b486e58deee1a53ddb8d5610ebe399a0ef8a4b16a7454a1 incomplete (2/3) 345.0 B/453.0 B   false\n";

const std::string plugins_ls_out =
    "TYPE                            ID                       PLATFORMS      STATUS    \n"
    "io.containerd.content.v1        content                  -              ok        \n"
    "io.containerd.snapshotter.v1    aufs                     linux/amd64    skip      \n"
    "io.containerd.snapshotter.v1    btrfs                    linux/amd64    skip      \n"
    "io.containerd.snapshotter.v1    devmapper                linux/amd64    error     \n"
    "io.containerd.snapshotter.v1    native                   linux/amd64    ok        \n"
    "io.containerd.snapshotter.v1    overlayfs                linux/amd64    ok        \n"
    "io.containerd.snapshotter.v1    zfs                      linux/amd64    skip      \n"
    "io.containerd.metadata.v1       bolt                     -              ok        \n";

// `ctr images import` of a thin archive whose second layer is on neither side.
const std::string import_missing_err =
    "time=\"2026-11-28T06:06:25Z\" level=info msg=\"apply failure, attempting cleanup\" error=\"failed to extract layer sha256:7d570c28d59fdd167ae8ec5e765fa01b5c1e23bc72b4092a119c3db545e3c1a9: failed to get reader from content store: content digest sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d: not found\" key=\"extract-592940247-wCOd sha256:5d8093c1dd863201b42f2a80a4dc2bb9c1f5659a88ca3874e07b3110c8df6736\"\n"
    "ctr: failed to extract layer sha256:7d570c28d59fdd167ae8ec5e765fa01b5c1e23bc72b4092a119c3db545e3c1a9: failed to get reader from content store: content digest sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d: not found\n";

// A socket without a server, with --connect-timeout 5s.
const std::string dial_err =
    "ctr: failed to dial \"/run/kload/dead.sock\": context deadline exceeded: connection error: "
    "desc = \"transport: error while dialing: dial unix:///run/kload/dead.sock: timeout\"\n";

// ---------------------------------------------------------------------------------
// Unit tests: CtrClient over a FakeRunner.

// A file standing for the socket of node "k": a containerd:// node whose socket is not
// there fails before any process runs, so the fake runner's nodes need one.
const std::string& unit_socket() {
  static const std::string path = [] {
    const auto dir = fs::temp_directory_path() / ("kload-unit-" + std::to_string(::getpid())) / "k";
    fs::create_directories(dir);
    std::ofstream(dir / "containerd.sock").put('\n');
    std::atexit([] { fs::remove_all(fs::temp_directory_path() / ("kload-unit-" + std::to_string(::getpid()))); });
    return (dir / "containerd.sock").string();
  }();
  return path;
}

class CtrClientUnit : public ::testing::Test {
protected:
  void use(std::string_view uri_text) {
    auto uri = parse_node_uri(uri_text);
    ASSERT_TRUE(uri.has_value());
    transport_ = make_transport(*uri, runner_);
    client_ = std::make_unique<CtrClient>(*transport_);
  }
  void SetUp() override { use("containerd://" + unit_socket()); }

  // The ctr arguments of call `i`, after the global options.
  std::vector<std::string> ctr_args(std::size_t i) const {
    const auto argv = runner_.calls().at(i).argv;
    const auto ns = std::find(argv.begin(), argv.end(), "-n");
    return {ns + 2, argv.end()};
  }

  test::FakeRunner runner_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<CtrClient> client_;
};

TEST_F(CtrClientUnit, ServerUuid) {
  runner_.ok("version", version_out);
  const auto uuid = client_->server_uuid();
  ASSERT_TRUE(uuid.has_value()) << uuid.error().message;
  EXPECT_EQ(*uuid, "d8b6a686-a517-49dd-9432-b6e57080147f");
  EXPECT_THAT(ctr_args(0), ElementsAre("version"));
  EXPECT_EQ(runner_.calls().at(0).timeout, std::chrono::seconds(30));
}

TEST_F(CtrClientUnit, ServerWithoutUuidGivesEmpty) {
  runner_.ok("version", "Client:\n  Version:  1.4.0\n\nServer:\n  Version:  1.4.0\n");
  EXPECT_EQ(client_->server_uuid().value_or("?"), "");
}

TEST_F(CtrClientUnit, VersionWithoutServerIsUnparsable) {
  runner_.ok("version", "something else\n");
  const auto r = client_->server_uuid();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::node);
  EXPECT_EQ(r.error().message, "node k: unexpected output from \"ctr "
                               "version\" (line 1: \"something else\")");
}

TEST_F(CtrClientUnit, AMissingSocketFailsAtOnceWithoutRunningCtr) {
  use("containerd:///run/kload-no-such-dir/k/containerd.sock");
  const auto uuid = client_->server_uuid();
  ASSERT_FALSE(uuid.has_value());
  EXPECT_EQ(uuid.error().kind, ErrorKind::node);
  EXPECT_EQ(uuid.error().message, "node k: asking for its version: no socket at "
                                  "/run/kload-no-such-dir/k/containerd.sock: is containerd running?");
  EXPECT_FALSE(client_->check({"a:1"}).has_value());
  EXPECT_TRUE(runner_.calls().empty()) << "ctr would wait out its connect timeout only to say its dial timed out";
}

TEST_F(CtrClientUnit, DeadSocketIsNotReachable) {
  // ctr prints the client half of `version` before it fails.
  util::ProcessResult r;
  r.exit_code = 1;
  r.out = "Client:\n  Version:  1.6.20~ds1\n";
  r.err = dial_err;
  runner_.script("version", r);
  const auto uuid = client_->server_uuid();
  ASSERT_FALSE(uuid.has_value());
  EXPECT_EQ(uuid.error().kind, ErrorKind::node);
  EXPECT_THAT(uuid.error().message, StartsWith("node k: not reachable: ctr: failed to dial \"/run/kload/dead.sock\""));
  // A socket that is there but does not answer: ctr's own words.
  const kload::testing::Scratch dir;
  const auto sock = dir / "containerd.sock";
  kload::testing::write_file(sock, "");
  use("containerd://" + sock.string());
  runner_.script("version", r);
  EXPECT_EQ(client_->server_uuid().error().message,
            "node " + dir.path().filename().string() + ": not reachable: ctr: failed to dial "
            "\"/run/kload/dead.sock\": context deadline exceeded: connection error: desc = "
            "\"transport: error while dialing: dial unix:///run/kload/dead.sock: timeout\"");
}

TEST_F(CtrClientUnit, DockerAndSshFailuresToConnect) {
  use("docker://kind-worker");
  runner_.fails("version", "Error response from daemon: No such container: kind-worker\n");
  EXPECT_EQ(client_->server_uuid().error().message,
            "node kind-worker: not reachable: Error response from daemon: No such "
            "container: kind-worker");

  test::FakeRunner ssh_runner;
  auto uri = parse_node_uri("ssh://root@node9");
  const auto ssh = make_transport(*uri, ssh_runner);
  CtrClient ssh_client(*ssh);
  ssh_runner.fails("version", "ssh: connect to host node9 port 22: Connection refused\r\n", 255);
  ssh_runner.fails("content ls", "ssh: connect to host node9 port 22: Connection refused\r\n", 255);
  EXPECT_EQ(ssh_client.server_uuid().error().message,
            "node node9: not reachable: ssh: connect to host node9 port 22: Connection refused");
  EXPECT_EQ(ssh_client.inventory({}).error().message,
            "node node9: not reachable: ssh: connect to host node9 port 22: Connection refused");
}

TEST_F(CtrClientUnit, CommandFailureNamesWhatKloadWasDoing) {
  use("ssh://node9");
  runner_.ok("version", version_out);
  runner_.fails("content ls", "bash: line 1: ctr: command not found\n", 127);
  const auto r = client_->inventory({});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::node);
  EXPECT_EQ(r.error().message, "node node9: listing content: bash: line 1: ctr: command not found");
}

TEST_F(CtrClientUnit, SilentFailureReportsTheExitStatus) {
  runner_.fails("version", "");
  EXPECT_EQ(client_->server_uuid().error().message,
            "node k: asking for its version: ctr exited with status 1");
}

TEST_F(CtrClientUnit, QueryTimeout) {
  util::ProcessResult r;
  r.timed_out = true;
  r.signal = 9;
  runner_.script("version", r);
  EXPECT_EQ(client_->server_uuid().error().message,
            "node k: asking for its version: no answer within 30 s");
}

TEST_F(CtrClientUnit, ProgramThatCannotStart) {
  runner_.script("version", util::fail(ErrorKind::io, "cannot run ctr: No such file or directory"));
  const auto r = client_->server_uuid();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::io);
  EXPECT_EQ(r.error().message, "node k: asking for its version: cannot run "
                               "ctr: No such file or directory");
}

TEST_F(CtrClientUnit, Inventory) {
  runner_.ok("version", version_out);
  runner_.ok("content ls", content_ls_out);
  const auto roots = roots_of(images_ls_out);
  const auto inv = client_->inventory(roots);
  ASSERT_TRUE(inv.has_value()) << inv.error().message;

  EXPECT_EQ(inv->blobs.size(), 22u);
  EXPECT_TRUE(inv->blobs.contains(
      digest("sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d")) == false);
  EXPECT_TRUE(inv->blobs.contains(
      digest("sha256:f515b8fac0f2e4d30f4bd3e097a1a64597d57b282f145953096c5efe8ad690fd")));

  // Six manifests: three OCI, one from a docker-archive, the index's two children.
  EXPECT_EQ(inv->manifest_config.size(), 6u);
  EXPECT_EQ(inv->manifest_config.at(
                digest("sha256:a04ca86ac98da2c78282cbcc63cd54182c50d9eb0d7c08957b21ea9b4ed41b16")),
            digest("sha256:245c20bbf78d89cdfe62eb4bed258be04c56fbef14d56055eeea1dd89bf03d83"));
  EXPECT_EQ(inv->manifest_config.at(
                digest("sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231")),
            digest("sha256:90cea8eafc1ed428a9672bf2619aa495dac190584159c127353e7b8abba3c0bc"));

  // Labels come in map order; children come back in index order.
  ASSERT_EQ(inv->index_children.size(), 1u);
  EXPECT_THAT(inv->index_children.at(digest(
                  "sha256:531cda11b6ea4ac08ddedd06360f64a6da5169aac07c97cf615dde14b53f769c")),
              ElementsAre(
                  digest("sha256:83eb096e0db61fc9d6a3ae9341f9a70d44dc648c3159e0de165fa78539a768a2"),
                  digest("sha256:cc8a7929be4f46f3ffccc769a8f41b87ff29d812a9a1133faaa7920567a581fe")));

  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_THAT(ctr_args(0), ElementsAre("content", "ls"));
  EXPECT_EQ(client_->calls(), 1);
}

TEST_F(CtrClientUnit, EmptyNode) {
  runner_.ok("version", version_out);
  runner_.ok("content ls", "DIGEST\tSIZE\tAGE\tLABELS\n");
  const auto roots = roots_of("REF TYPE DIGEST SIZE PLATFORMS LABELS \n");
  const auto inv = client_->inventory(roots);
  ASSERT_TRUE(inv.has_value()) << inv.error().message;
  EXPECT_TRUE(inv->blobs.empty());
}

TEST_F(CtrClientUnit, LabelsWithCommasInOtherValues) {
  // distribution.source values list repositories separated by commas.
  runner_.ok("version", version_out);
  runner_.ok("content ls",
             "DIGEST\tSIZE\tAGE\tLABELS\n"
             "sha256:1111111111111111111111111111111111111111111111111111111111111111\t1kB\t"
             "2 hours\tcontainerd.io/distribution.source.docker.io=library/a,library/b,"
             "containerd.io/gc.ref.content.config=sha256:"
             "2222222222222222222222222222222222222222222222222222222222222222,"
             "containerd.io/gc.ref.content.referrer.sha256:3333=sha256:"
             "3333333333333333333333333333333333333333333333333333333333333333\n"
             "sha512:abcd\t1kB\t2 hours\t-\n");
  const auto roots = roots_of("REF TYPE DIGEST SIZE PLATFORMS LABELS \n"
                          "a:1 application/vnd.oci.image.manifest.v1+json sha256:"
                          "1111111111111111111111111111111111111111111111111111111111111111 1 KiB linux/amd64 -\n");
  const auto inv = client_->inventory(roots);
  ASSERT_TRUE(inv.has_value()) << inv.error().message;
  EXPECT_EQ(inv->blobs.size(), 1u);
  EXPECT_EQ(inv->manifest_config.at(digest(
                "sha256:1111111111111111111111111111111111111111111111111111111111111111")),
            digest("sha256:2222222222222222222222222222222222222222222222222222222222222222"));
}

TEST_F(CtrClientUnit, OnlyBlobsAnImageReachesCount) {
  // What a failed import brought (containerd 2.x keeps no image record of it) is
  // garbage the collector may take before the retry: it must be sent again.
  const std::string index = "sha256:" + std::string(64, 'a');
  const std::string manifest = "sha256:" + std::string(64, 'b');
  const std::string config = "sha256:" + std::string(64, 'c');
  const std::string layer = "sha256:" + std::string(64, 'd');
  const std::string orphan_manifest = "sha256:" + std::string(64, 'e');
  const std::string orphan_layer = "sha256:" + std::string(64, 'f');
  const std::string absent_layer = "sha256:" + std::string(64, '9');
  runner_.ok("version", version_out);
  runner_.ok("content ls", "DIGEST\tSIZE\tAGE\tLABELS\n" +
                               index + "\t1kB\t1 second\tcontainerd.io/gc.ref.content.m.0=" + manifest + "\n" +
                               manifest + "\t1kB\t1 second\tcontainerd.io/gc.ref.content.config=" + config +
                               ",containerd.io/gc.ref.content.l.0=" + layer +
                               ",containerd.io/gc.ref.content.l.1=" + absent_layer + "\n" +
                               config + "\t1kB\t1 second\t-\n" + layer + "\t1kB\t1 second\t-\n" +
                               orphan_manifest + "\t1kB\t1 second\tcontainerd.io/gc.ref.content.l.0=" +
                               orphan_layer + "\n" + orphan_layer + "\t1MB\t1 second\t-\n");
  const auto roots = roots_of("REF TYPE DIGEST SIZE PLATFORMS LABELS \n"
                          "a:1 application/vnd.oci.image.index.v1+json " + index + " 1 KiB linux/amd64 -\n");
  const auto inv = client_->inventory(roots);
  ASSERT_TRUE(inv.has_value()) << inv.error().message;
  EXPECT_THAT(inv->blobs, ::testing::UnorderedElementsAre(digest(index), digest(manifest), digest(config),
                                                          digest(layer)))
      << "the orphaned manifest and its layer are collectable; the absent layer is absent";
}

TEST_F(CtrClientUnit, UnparsableContentList) {
  runner_.ok("version", version_out);
  runner_.ok("content ls", "DIGEST\tSIZE\tAGE\tLABELS\nhello world\n");
  const auto r = client_->inventory({});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::node);
  EXPECT_EQ(r.error().message, "node k: unexpected output from \"ctr "
                               "content ls\" (line 2: \"hello world\")");
}

TEST_F(CtrClientUnit, BadGcLabelIsUnparsable) {
  runner_.ok("version", version_out);
  runner_.ok("content ls",
             "DIGEST\tSIZE\tAGE\tLABELS\n"
             "sha256:1111111111111111111111111111111111111111111111111111111111111111\t1kB\t"
             "2 hours\tcontainerd.io/gc.ref.content.config=sha256:12\n");
  const auto r = client_->inventory({});
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, HasSubstr("unexpected output from \"ctr content ls\" (line 2"));
}

TEST_F(CtrClientUnit, CheckSelectedNames) {
  runner_.ok("images check", images_check_out);
  const auto r = client_->check({"docker.io/library/app:v1", "docker.io/library/thin:v1"});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "check", "--",
                                       "name==\"docker.io/library/app:v1\"",
                                       "name==\"docker.io/library/thin:v1\""));
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].name, "docker.io/library/app:v1");
  EXPECT_EQ((*r)[0].target,
            digest("sha256:11d64084a9cd4088789a98b05b966b764d6619cb1ced1aa1b9ca31e2a6a1d231"));
  EXPECT_TRUE((*r)[0].complete);
  EXPECT_TRUE((*r)[2].complete);
  EXPECT_EQ((*r)[3].name, "docker.io/library/thin:v1");
  EXPECT_FALSE((*r)[3].complete);
}

TEST_F(CtrClientUnit, CheckAllAndNothing) {
  runner_.ok("images check", "");
  const auto r = client_->check({});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->empty());
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "check"));
}

TEST_F(CtrClientUnit, CheckStatusesAndPartialFailure) {
  // check prints every row and exits 1 when one image (or the default snapshotter)
  // could not be checked.
  util::ProcessResult r;
  r.exit_code = 1;
  r.out = "REF TYPE DIGEST STATUS SIZE UNPACKED \n"
          "a:1 application/vnd.oci.image.manifest.v1+json "
          "sha256:1111111111111111111111111111111111111111111111111111111111111111 "
          "unavailable (0/?) 0.0 B/? false\n"
          "b:1 application/vnd.oci.image.manifest.v1+json "
          "sha256:2222222222222222222222222222222222222222222222222222222222222222 error - "
          "false\n"
          "c:1 application/vnd.oci.image.manifest.v1+json "
          "sha256:3333333333333333333333333333333333333333333333333333333333333333 "
          "complete (3/3) 1.0 KiB/1.0 KiB false\n";
  r.err = "ctr: unable to check unpack for a:1: snapshotter not loaded: overlayfs: invalid "
          "argument\n";
  runner_.script("images check", r);
  const auto statuses = client_->check({"a:1", "b:1", "c:1"});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 3u);
  EXPECT_FALSE((*statuses)[0].complete);
  EXPECT_FALSE((*statuses)[1].complete);
  EXPECT_TRUE((*statuses)[2].complete);
}

TEST_F(CtrClientUnit, CheckFailureAndGarbage) {
  runner_.fails("images check", dial_err);
  EXPECT_THAT(client_->check({"x"}).error().message,
              StartsWith("node k: not reachable: ctr: failed to dial"));

  test::FakeRunner other;
  const auto t = make_transport(transport_->uri(), other);
  CtrClient c(*t);
  other.ok("images check", "REF TYPE DIGEST STATUS SIZE UNPACKED\n"
                           "a:1 t sha256:1111111111111111111111111111111111111111111111111111"
                           "111111111111 pending (0/1) 0/1 false\n");
  EXPECT_THAT(c.check({"a:1"}).error().message,
              HasSubstr("unexpected output from \"ctr images check\" (line 2"));
}

TEST_F(CtrClientUnit, CheckQuotesNames) {
  runner_.ok("images check", "");
  ASSERT_TRUE(client_->check({"we\"ird\\name"}).has_value());
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "check", "--", "name==\"we\\\"ird\\\\name\""));
}

util::StdinFeeder feed_of(std::string bytes) {
  return [bytes = std::move(bytes)](int fd) {
    return util::write_all(fd, bytes.data(), bytes.size(), "test archive");
  };
}

TEST_F(CtrClientUnit, ImportArgvAndStdin) {
  runner_.ok("images import", "unpacking docker.io/library/app:v1 (sha256:11d6...)...done\n");
  const auto r = client_->import(feed_of("TAR BYTES"), "overlayfs");
  ASSERT_TRUE(r.has_value()) << r.error().error.message;
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "import", "--snapshotter", "overlayfs", "-"));
  EXPECT_EQ(runner_.calls().at(0).stdin, "TAR BYTES");
  EXPECT_EQ(runner_.calls().at(0).timeout.count(), 0);

  EXPECT_EQ(client_->calls(), 1);
}

TEST_F(CtrClientUnit, TransferApiRefusingTheSnapshotterFallsBackToLocalImport) {
  // containerd 2.x, CRI on native: the Transfer API only unpacks into overlayfs.
  runner_.fails("images import", "ctr: unable to initialize unpacker: no unpack platforms defined: invalid argument\n");
  runner_.ok("images import", "");
  const auto r = client_->import(feed_of("TAR"), "native");
  ASSERT_TRUE(r.has_value()) << r.error().error.message;
  ASSERT_EQ(runner_.calls().size(), 2U);
  EXPECT_THAT(ctr_args(1), ElementsAre("images", "import", "--snapshotter", "native", "--local", "-"));
  EXPECT_EQ(runner_.calls().at(1).stdin, "TAR") << "the stream is sent again, whole";
  EXPECT_EQ(client_->calls(), 2) << "the refused import and the --local one: two processes";
  ASSERT_TRUE(client_->import(feed_of(""), "native").has_value());
  EXPECT_THAT(ctr_args(2), ElementsAre("images", "import", "--snapshotter", "native", "--local", "-"))
      << "later imports of this node go straight to --local";
}

TEST_F(CtrClientUnit, ImportMissingContent) {
  runner_.fails("images import", import_missing_err);
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::missing_content);
  EXPECT_EQ(r.error().missing,
            digest("sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d"));
  EXPECT_EQ(r.error().error.kind, ErrorKind::node);
  EXPECT_EQ(r.error().error.message,
            "node k: importing: ctr: failed to extract layer "
            "sha256:7d570c28d59fdd167ae8ec5e765fa01b5c1e23bc72b4092a119c3db545e3c1a9: failed "
            "to get reader from content store: content digest "
            "sha256:4d9eca8159a6e2246ade398e7e327c855581f3b5a3906470ab7570cce1438c3d: not found");
}

TEST_F(CtrClientUnit, ImportMissingManifestOfAnotherPlatform) {
  // kind issue 3795: --all-platforms over an index whose other platforms are absent.
  runner_.fails("images import",
                "ctr: content digest "
                "sha256:9999999999999999999999999999999999999999999999999999999999999999: not "
                "found\n");
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::missing_content);
  EXPECT_EQ(r.error().missing,
            digest("sha256:9999999999999999999999999999999999999999999999999999999999999999"));
}

TEST_F(CtrClientUnit, ImportRacedByAnotherWriterOfTheName) {
  // containerd 1.x: the importer's update found no name, another load created it, the
  // importer's create then failed.
  runner_.fails("images import", "ctr: image \"docker.io/library/app0:v1\": already exists\n");
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::name_taken);
  EXPECT_EQ(r.error().error.message, "node k: importing: ctr: image \"docker.io/library/app0:v1\": already exists");
}

TEST_F(CtrClientUnit, ImportOfAnExistingBlobIsNotANameRace) {
  runner_.fails("images import", "ctr: content sha256:1234: already exists\n");
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::other);
}

TEST_F(CtrClientUnit, ImportOtherFailure) {
  runner_.fails("images import", "ctr: unexpected EOF\n");
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::other);
  EXPECT_FALSE(r.error().missing.has_value());
  EXPECT_EQ(r.error().error.message, "node k: importing: ctr: unexpected EOF");
}

TEST_F(CtrClientUnit, ImportUnreachable) {
  runner_.fails("images import", dial_err);
  const auto r = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().error.message,
              StartsWith("node k: not reachable: ctr: failed to dial"));
}

TEST_F(CtrClientUnit, FeederFailureWhileCtrWasReading) {
  // The runner kills ctr when the feeder fails; ctr said nothing.
  util::ProcessResult killed;
  killed.exit_code = -1;
  killed.signal = SIGKILL;
  runner_.script("images import", killed);
  const util::StdinFeeder feed = [](int) {
    return util::fail(ErrorKind::bad_input, "app.tar: layer 3: digest mismatch");
  };
  const auto r = client_->import(feed, "overlayfs");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::other);
  EXPECT_EQ(r.error().error.kind, ErrorKind::bad_input);
  EXPECT_EQ(r.error().error.message,
            "node k: importing: app.tar: layer 3: digest mismatch");
}

TEST_F(CtrClientUnit, FeederBrokenPipeAfterCtrFailed) {
  // ctr stopped reading because it failed; the feeder then saw EPIPE. ctr's message is
  // the cause.
  util::ProcessResult r;
  r.exit_code = 1;
  r.err = import_missing_err;
  r.feed_error = util::Error{ErrorKind::io, "writing to node: Broken pipe"};
  runner_.script("images import", r);
  const auto result = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().failure, ImportFailure::missing_content);
  EXPECT_EQ(result.error().error.kind, ErrorKind::node);
  EXPECT_THAT(result.error().error.message, HasSubstr("ctr: failed to extract layer"));
}

TEST_F(CtrClientUnit, FeederFailureIsNeverSwallowed) {
  util::ProcessResult r;
  r.exit_code = 0;
  r.feed_error = util::Error{ErrorKind::io, "reading app.tar: Input/output error"};
  runner_.script("images import", r);
  const auto result = client_->import(feed_of("x"), "overlayfs");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().error.message,
            "node k: importing: reading app.tar: Input/output error");
}

TEST_F(CtrClientUnit, Tag) {
  runner_.ok("images tag", "docker.io/library/app:v1\n");
  ASSERT_TRUE(client_->tag({"kload.local/stage/abc:1", "docker.io/library/app:v1"}).has_value());
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "tag", "--force", "--",
                                       "kload.local/stage/abc:1", "docker.io/library/app:v1"));
}

TEST_F(CtrClientUnit, TagMissingSource) {
  runner_.fails("images tag", "ctr: image \"docker.io/library/nope:v1\": not found\n");
  const auto r = client_->tag({"docker.io/library/nope:v1", "x:y"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::node);
  EXPECT_EQ(r.error().message, "node k: tagging docker.io/library/nope:v1 "
                               "as x:y: ctr: image \"docker.io/library/nope:v1\": not found");
}

TEST_F(CtrClientUnit, Remove) {
  ASSERT_TRUE(client_->remove({}).has_value());
  EXPECT_TRUE(runner_.calls().empty());

  // Absent names only produce a warning on stderr.
  util::ProcessResult r;
  r.exit_code = 0;
  r.out = "docker.io/library/app:v2\n";
  r.err = "time=\"2026-11-28T06:01:42Z\" level=warning msg=\"docker.io/library/nope:v1: image "
          "not found\"\n";
  runner_.script("images rm", r);
  ASSERT_TRUE(client_->remove({"docker.io/library/nope:v1", "docker.io/library/app:v2"}));
  EXPECT_THAT(ctr_args(0), ElementsAre("images", "rm", "--", "docker.io/library/nope:v1",
                                       "docker.io/library/app:v2"));
}

TEST_F(CtrClientUnit, RemoveFailure) {
  runner_.fails("images rm", "time=\"x\" level=error msg=\"unable to delete a:1\" error=\"boom\"\n"
                             "ctr: unable to delete a:1: boom\n");
  const auto r = client_->remove({"a:1"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message,
            "node k: removing a:1: ctr: unable to delete a:1: boom");
}

TEST_F(CtrClientUnit, SnapshotterFromUriNeedsNoCall) {
  use("containerd://" + unit_socket() + "?snapshotter=native");
  EXPECT_EQ(client_->snapshotter().value_or("?"), "native");
  EXPECT_TRUE(runner_.calls().empty());
}

TEST_F(CtrClientUnit, SnapshotterFromPlugins) {
  runner_.ok("plugins ls", plugins_ls_out);
  EXPECT_EQ(client_->snapshotter().value_or("?"), "overlayfs");
  EXPECT_THAT(ctr_args(0), ElementsAre("plugins", "ls"));
}

TEST_F(CtrClientUnit, SnapshotterFallbacks) {
  const std::string header = "TYPE ID PLATFORMS STATUS\n";
  const auto guess = [&](const std::string& rows) {
    test::FakeRunner runner;
    const auto t = make_transport(transport_->uri(), runner);
    runner.ok("plugins ls", header + rows);
    return CtrClient(*t).snapshotter().value_or("?");
  };
  EXPECT_EQ(guess("io.containerd.snapshotter.v1 overlayfs linux/amd64 error\n"
                  "io.containerd.snapshotter.v1 native linux/amd64 ok\n"
                  "io.containerd.snapshotter.v1 fuse-overlayfs - ok\n"),
            "fuse-overlayfs");
  EXPECT_EQ(guess("io.containerd.snapshotter.v1 native linux/amd64 ok\n"
                  "io.containerd.snapshotter.v1 zfs linux/amd64 skip\n"),
            "native");
  EXPECT_EQ(guess("io.containerd.content.v1 content - ok\n"), "overlayfs");
  EXPECT_EQ(guess("garbage\n"), "?");
}

// --- the round trips of a load: one process each ---

TEST_F(CtrClientUnit, FirstProbeIsOneProcess) {
  use("docker://kind-worker");
  runner_.ok("images check", images_check_out);
  runner_.ok("version", version_out);
  runner_.ok("content ls", content_ls_out);
  runner_.ok("containerd", "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n");
  runner_.ok("plugins ls", plugins_ls_out);
  const auto p = client_->probe({.uuid = true, .inventory = true, .snapshotter = true, .zstd = false});
  ASSERT_TRUE(p.has_value()) << p.error().message;
  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_EQ(runner_.calls()[0].key, "batch");
  EXPECT_THAT(runner_.calls()[0].steps,
              ElementsAre("images check", "version", "content ls", "containerd", "plugins ls"));
  EXPECT_THAT(runner_.calls()[0].argv, ElementsAre("docker", "exec", "-i", "kind-worker", "sh", "-c", _));
  EXPECT_EQ(client_->calls(), 1);
  EXPECT_EQ(p->images.size(), 4u);
  EXPECT_EQ(p->uuid, "d8b6a686-a517-49dd-9432-b6e57080147f");
  ASSERT_TRUE(p->inventory.has_value());
  EXPECT_FALSE(p->inventory->blobs.empty());
  EXPECT_EQ(p->snapshotter, "native");
}

TEST_F(CtrClientUnit, ProbeOfAnUnreachableNodeSaysSo) {
  use("docker://gone");
  util::ProcessResult r;
  r.exit_code = 1;
  r.err = "Error response from daemon: No such container: gone\n";
  runner_.script("batch", r);
  const auto p = client_->probe({.uuid = true, .inventory = false, .snapshotter = false, .zstd = false});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().message, "node gone: not reachable: Error response from daemon: No such container: gone");
}

TEST_F(CtrClientUnit, ProbeReportsTheFirstStepThatFailed) {
  runner_.ok("images check", images_check_out);
  runner_.fails("version", "ctr: connection reset\n");
  const auto p = client_->probe({.uuid = true, .inventory = false, .snapshotter = false, .zstd = false});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().message, "node k: asking for its version: ctr: connection reset");
}

TEST_F(CtrClientUnit, ProbeAsksThePluginsWhenTheConfigDoesNotSay) {
  use("docker://kind-worker");
  runner_.ok("images check", images_check_out);
  runner_.fails("containerd", "sh: containerd: not found\n", 127);
  runner_.ok("plugins ls", plugins_ls_out);
  const auto p = client_->probe({.uuid = false, .inventory = false, .snapshotter = true, .zstd = false});
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p->snapshotter, "overlayfs");
  EXPECT_EQ(client_->calls(), 1) << "the plugins are in the probe's one round trip";
}

// Issue 13: a snapshotter the node lacks is caught by the first round trip, before any
// byte is sent, whether the URI names it or the node's CRI configuration does.
TEST_F(CtrClientUnit, ASnapshotterTheNodeHasNotLoadedFailsTheProbe) {
  for (const auto& [uri, dump, origin] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"docker://kind-worker?snapshotter=zfs", "", "from the node URI"},
           {"docker://kind-worker", "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'btrfs'\n",
            "CRI's, from containerd config dump"}}) {
    test::FakeRunner runner;
    const auto t = make_transport(*parse_node_uri(uri), runner);
    runner.ok("images check", images_check_out);
    if (!dump.empty()) {
      runner.ok("containerd", dump);
    }
    runner.ok("plugins ls", plugins_ls_out);
    CtrClient client(*t);
    const auto p = client.probe({.uuid = false, .inventory = false, .snapshotter = true, .zstd = false});
    ASSERT_FALSE(p.has_value()) << uri;
    EXPECT_EQ(p.error().kind, ErrorKind::node);
    EXPECT_THAT(p.error().message, StartsWith("node kind-worker: snapshotter \""));
    EXPECT_THAT(p.error().message, HasSubstr("(" + origin + ") is not loaded there (loaded: native, overlayfs)"));
    EXPECT_EQ(runner.calls().size(), 1u);
  }
}

TEST_F(CtrClientUnit, EveryProcessOnTheNodeIsLoggedWithItsCommandsAndHowEachEnded) {
  use("docker://kind-worker");
  std::vector<NodeRun> runs;
  client_ = std::make_unique<CtrClient>(*transport_, [&](const NodeRun& r) { runs.push_back(r); });
  runner_.ok("images check", images_check_out);
  runner_.fails("containerd", "sh: containerd: not found\n", 127);
  runner_.ok("plugins ls", plugins_ls_out);
  ASSERT_TRUE(client_->probe({.uuid = false, .inventory = false, .snapshotter = true, .zstd = false}).has_value());
  runner_.fails("images tag", "ctr: image \"a b\": not found\n");
  ASSERT_FALSE(client_->tag({"a b", "c"}).has_value());
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs.size(), static_cast<std::size_t>(client_->calls())) << "one line per process counted";
  // One batch: its commands in order, each one's exit status.
  EXPECT_EQ(runs[0].node, "kind-worker");
  EXPECT_EQ(runs[0].command, "ctr images check; containerd config dump; ctr plugins ls");
  EXPECT_EQ(runs[0].outcome, "exit 0, 127, 0");
  // Words a shell would not read as they are are quoted; the options every call has
  // are left out.
  EXPECT_EQ(runs[1].command, "ctr images tag --force -- 'a b' c");
  EXPECT_EQ(runs[1].outcome, "exit 1");
  EXPECT_GE(runs[1].duration.count(), 0);
}

TEST_F(CtrClientUnit, ChangesAreOneProcessInOrder) {
  runner_.ok("images import", "");
  runner_.ok("images tag", "");
  runner_.ok("images rm", "");
  runner_.ok("images check", images_check_out);
  const util::StdinFeeder feed = feed_of("the archive");
  Changes changes;
  changes.import = &feed;
  changes.snapshotter = "overlayfs";
  changes.tags = {{"docker.io/library/app:v1", "docker.io/library/app:v2"}};
  changes.remove = {"localhost/kload-staging/x:1"};
  changes.check = {"docker.io/library/app:v1"};
  const auto r = client_->apply(changes);
  ASSERT_TRUE(r.has_value()) << r.error().error.error.message;
  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_THAT(runner_.calls()[0].steps, ElementsAre("images import", "images tag", "images rm", "images check"));
  EXPECT_EQ(runner_.calls()[0].stdin, "the archive");
  EXPECT_EQ(runner_.calls()[0].timeout, std::chrono::milliseconds(0)) << "an import has no deadline";
  EXPECT_EQ(r->size(), 4u);
}

// The commit of names new on the node, in the import's round trip: the gate (a check
// read by sh on the node) between the import and the tags, which create names only.
Changes gated_commit(const util::StdinFeeder& feed) {
  Changes changes;
  changes.import = &feed;
  changes.snapshotter = "overlayfs";
  changes.gate = {{"localhost/kload-staging/x:1", *Digest::parse("sha256:" + std::string(64, 'a'))}};
  changes.tags = {{"localhost/kload-staging/x:1", "docker.io/library/app:v1", Replace::no}};
  changes.remove = {"localhost/kload-staging/x:1"};
  changes.check = {"docker.io/library/app:v1"};
  return changes;
}

TEST_F(CtrClientUnit, AGateRunsBetweenTheImportAndTagsThatOnlyCreate) {
  runner_.ok("images import", "");
  runner_.ok("images check", "");  // the gate: its status is the answer
  runner_.ok("images tag", "");
  runner_.ok("images rm", "");
  runner_.ok("images check", images_check_out);
  const util::StdinFeeder feed = feed_of("the archive");
  const auto r = client_->apply(gated_commit(feed));
  ASSERT_TRUE(r.has_value()) << r.error().error.error.message;
  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_THAT(runner_.calls()[0].steps,
              ElementsAre("images import", "images check", "images tag", "images rm", "images check"));
  EXPECT_THAT(runner_.calls()[0].argv.back(), HasSubstr("'images' 'tag' '--' 'localhost/kload-staging/x:1'"))
      << "no --force";
}

TEST_F(CtrClientUnit, AGateThatFindsAnImageIncompleteStopsTheRoundTripBeforeAnyTag) {
  runner_.ok("images import", "");
  runner_.fails("images check", "", 98);  // the gate's status for a name not complete at its target
  const util::StdinFeeder feed = feed_of("the archive");
  const auto r = client_->apply(gated_commit(feed));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::gate);
  EXPECT_EQ(r.error().error.failure, ImportFailure::missing_content);
  EXPECT_EQ(r.error().error.error.message, "node k: an image is incomplete after the import");
  EXPECT_THAT(runner_.calls()[0].steps, ElementsAre("images import", "images check")) << "stopped at the gate";
}

TEST_F(CtrClientUnit, AGateWhoseCheckFailsIsANodeError) {
  runner_.ok("images import", "");
  runner_.fails("images check", "ctr: connection refused\n", 1);
  const util::StdinFeeder feed = feed_of("the archive");
  const auto r = client_->apply(gated_commit(feed));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::gate);
  EXPECT_EQ(r.error().error.failure, ImportFailure::other);
  EXPECT_THAT(r.error().error.error.message, HasSubstr("connection refused"));
}

TEST_F(CtrClientUnit, ChangesRunOnlyOnTheNodeWithTheExpectedUuid) {
  util::ProcessResult other;
  other.exit_code = 97;  // the UUID check's status when `ctr version` shows another
  runner_.script("sh", other);
  const util::StdinFeeder feed = feed_of("x");
  Changes changes;
  changes.expect_uuid = "d8b6a686-a517-49dd-9432-b6e57080147f";
  changes.import = &feed;
  changes.snapshotter = "overlayfs";
  changes.check = {"b"};
  const auto r = client_->apply(changes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::node_changed);
  EXPECT_THAT(r.error().error.error.message, HasSubstr("a recreated node"));
  ASSERT_EQ(runner_.calls().size(), 1u);
  EXPECT_THAT(runner_.calls()[0].steps, ElementsAre("sh")) << "no import on another node";
}

TEST_F(CtrClientUnit, TheUuidCheckFindsTheUuidInCtrVersion) {
  // The check's own shell words, run for real against a stand-in `ctr version`.
  const auto check = [](const std::string& uuid) {
    test::FakeRunner runner;
    const auto t = make_transport(*parse_node_uri("containerd://" + unit_socket()), runner);
    util::ProcessResult ok;
    ok.exit_code = 0;
    runner.script("sh", ok);
    runner.ok("images check", images_check_out);
    Changes changes;
    changes.expect_uuid = uuid;
    changes.check = {"b"};
    (void)CtrClient(*t).apply(changes);
    const auto argv = runner.calls().at(0).argv;
    auto batch = testing::decode_batch(argv.at(2));
    auto words = batch->second.at(0).words;  // sh -c SCRIPT sh UUID
    // `ctr` replaced by a function printing a real version output.
    words[2] = "ctr() { printf '%s' '" + version_out + "'; }; " + words[2];
    util::SystemProcessRunner real;
    return real.run(words, {}, std::chrono::seconds(10))->exit_code;
  };
  EXPECT_EQ(check("d8b6a686-a517-49dd-9432-b6e57080147f"), 0);
  EXPECT_EQ(check("00000000-a517-49dd-9432-b6e57080147f"), 97);
}

TEST_F(CtrClientUnit, ChangesStopAtAFailedImportAndSayWhy) {
  runner_.fails("images import", import_missing_err);
  runner_.ok("images check", images_check_out);
  const util::StdinFeeder feed = feed_of("x");
  Changes changes;
  changes.import = &feed;
  changes.snapshotter = "overlayfs";
  changes.remove = {"a"};
  changes.check = {"b"};
  const auto r = client_->apply(changes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::import);
  EXPECT_EQ(r.error().error.failure, ImportFailure::missing_content);
  EXPECT_THAT(runner_.calls()[0].steps, ElementsAre("images import")) << "nothing after a failed import";
}

TEST_F(CtrClientUnit, ChangesReportAFailedRemoval) {
  runner_.fails("images rm", "ctr: deadline exceeded\n");
  Changes changes;
  changes.remove = {"a"};
  changes.check = {"b"};
  const auto r = client_->apply(changes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::remove);
  EXPECT_EQ(r.error().error.error.message, "node k: removing a: ctr: deadline exceeded");
}

TEST_F(CtrClientUnit, ChangesGoAgainWithLocalWhenTheTransferServiceRefusesTheSnapshotter) {
  runner_.fails("images import", "ctr: no unpack platforms defined: invalid argument\n");
  runner_.ok("images import", "");
  runner_.ok("images check", images_check_out);
  const util::StdinFeeder feed = feed_of("x");
  Changes changes;
  changes.import = &feed;
  changes.snapshotter = "native";
  changes.check = {"b"};
  const auto r = client_->apply(changes);
  ASSERT_TRUE(r.has_value()) << r.error().error.error.message;
  ASSERT_EQ(runner_.calls().size(), 2u);
  EXPECT_THAT(runner_.calls()[1].argv.back(), HasSubstr("'--local'"));
}

// Pulls `pull`'s one reference with the overlayfs snapshotter, tags it `staging` and
// checks that name: the round trip a load through a registry asks of a node.
Changes pulled_as(const Pull& pull, const std::string& staging) {
  Changes changes;
  changes.pull = &pull;
  changes.snapshotter = "overlayfs";
  changes.tags = {{pull.references[0], staging}};
  changes.check = {staging};
  return changes;
}

TEST_F(CtrClientUnit, PullsAreOneProcessWithTheTagAndTheCheck) {
  runner_.ok("images pull", "");
  runner_.ok("images tag", "");
  runner_.ok("images check", images_check_out);
  const Pull pull{{"registry.test:5000/library/app@sha256:" + std::string(64, 'a')}, PlainHttp::yes};
  const auto changes = pulled_as(pull, "localhost/kload-staging/x:1");
  const auto r = client_->apply(changes);
  ASSERT_TRUE(r.has_value()) << r.error().error.error.message;
  const auto calls = runner_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_THAT(calls[0].steps, ElementsAre("images pull", "images tag", "images check"));
  const auto& script = calls[0].argv.back();
  EXPECT_THAT(script, HasSubstr("'images' 'pull' '--snapshotter' 'overlayfs' '--plain-http' '--' '" +
                                pull.references[0] + "'"));
  EXPECT_EQ(calls[0].timeout.count(), 0) << "a pull, like an import, takes as long as its bytes";
}

TEST_F(CtrClientUnit, AFailedPullStopsTheChangesAndNamesTheReference) {
  runner_.fails("images pull", "ctr: failed to resolve reference \"r\": connection refused\n");
  const Pull pull{{"registry.test:5000/library/app@sha256:" + std::string(64, 'a')}, PlainHttp::no};
  const auto changes = pulled_as(pull, "s");
  const auto r = client_->apply(changes);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().step, ChangeError::Step::pull);
  EXPECT_THAT(r.error().error.error.message, HasSubstr("node k: pulling " + pull.references[0]));
  EXPECT_THAT(r.error().error.error.message, HasSubstr("connection refused"));
  EXPECT_THAT(runner_.calls()[0].steps, ElementsAre("images pull")) << "nothing after a failed pull";
}

TEST_F(CtrClientUnit, ANodeWithoutAShellGetsOneProcessPerStep) {
  use("docker://distroless");
  util::ProcessResult no_sh;
  no_sh.exit_code = 127;
  no_sh.err = "OCI runtime exec failed: exec: \"sh\": executable file not found in $PATH: unknown\n";
  runner_.script("batch", no_sh);
  runner_.ok("images check", images_check_out);
  runner_.ok("version", version_out);
  auto p = client_->probe({.uuid = true, .inventory = false, .snapshotter = false, .zstd = false});
  ASSERT_TRUE(p.has_value()) << p.error().message;
  EXPECT_EQ(p->uuid, "d8b6a686-a517-49dd-9432-b6e57080147f");
  ASSERT_EQ(runner_.calls().size(), 3u);
  EXPECT_EQ(runner_.calls()[1].key, "images check");
  EXPECT_EQ(runner_.calls()[2].key, "version");
  p = client_->probe({});
  EXPECT_EQ(runner_.calls().size(), 4u) << "no second try of the shell";
}

// ---------------------------------------------------------------------------------
// Integration: a real containerd, started once for the suite (through tools/lab when
// the source tree has it, else by hand), and CtrClient with the real process runner.

// A minimal ustar writer: enough for OCI and docker archives with short names.
class Tar {
public:
  void add(const std::string& name, std::string_view data) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = '0';
    std::memcpy(h + 257, "ustar\0" "00", 8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) {
      sum += c;
    }
    std::snprintf(h + 148, 8, "%06o", sum);
    out_.append(h, sizeof h);
    out_.append(data);
    out_.append((512 - data.size() % 512) % 512, '\0');
  }
  std::string finish() {
    out_.append(1024, '\0');
    return std::move(out_);
  }

private:
  std::string out_;
};

#if defined(__aarch64__)
constexpr const char* host_arch = "arm64";
#else
constexpr const char* host_arch = "amd64";
#endif

struct Blob {
  Digest digest;
  std::string data;
};

Blob blob_of(std::string data) { return Blob{util::Sha256::of(data), std::move(data)}; }

std::string descriptor(const std::string& media_type, const Blob& b) {
  return "{\"mediaType\":\"" + media_type + "\",\"digest\":\"" + b.digest.str() +
         "\",\"size\":" + std::to_string(b.data.size()) + "}";
}

// An OCI image with uncompressed layers (so layer digest = diff ID).
struct TestImage {
  std::string name;
  std::vector<Blob> layers;
  Blob config;
  Blob manifest;
};

TestImage make_image(const std::string& name, const std::string& seed, int layers = 2,
                     const char* arch = host_arch) {
  TestImage img;
  img.name = name;
  std::string diff_ids;
  std::string layer_descs;
  for (int i = 0; i < layers; ++i) {
    Tar layer;
    layer.add("file-" + seed + "-" + std::to_string(i), "content " + seed + std::to_string(i));
    img.layers.push_back(blob_of(layer.finish()));
    diff_ids += (i ? "," : "") + ("\"" + img.layers.back().digest.str() + "\"");
    layer_descs += (i ? "," : "") +
                   descriptor("application/vnd.oci.image.layer.v1.tar", img.layers.back());
  }
  img.config = blob_of(std::string("{\"architecture\":\"") + arch +
                       "\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\","
                       "\"diff_ids\":[" +
                       diff_ids + "]}}");
  img.manifest = blob_of(
      "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"config\":" +
      descriptor("application/vnd.oci.image.config.v1+json", img.config) + ",\"layers\":[" +
      layer_descs + "]}");
  return img;
}

// An OCI archive naming `img` through io.containerd.image.name, without the blobs in
// `omit`.
std::string oci_archive(const TestImage& img, const std::set<Digest>& omit = {}) {
  Tar tar;
  tar.add("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  tar.add("index.json",
          "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
          "vnd.oci.image.manifest.v1+json\",\"digest\":\"" +
              img.manifest.digest.str() + "\",\"size\":" +
              std::to_string(img.manifest.data.size()) +
              ",\"annotations\":{\"io.containerd.image.name\":\"" + img.name + "\"}}]}");
  std::vector<const Blob*> blobs{&img.manifest, &img.config};
  for (const auto& l : img.layers) {
    blobs.push_back(&l);
  }
  for (const Blob* b : blobs) {
    if (!omit.contains(b->digest)) {
      tar.add("blobs/sha256/" + b->digest.hex(), b->data);
    }
  }
  return tar.finish();
}

// A docker-archive (skopeo layout without the legacy directories).
std::string docker_archive(const TestImage& img) {
  Tar tar;
  std::string layers;
  for (std::size_t i = 0; i < img.layers.size(); ++i) {
    layers += (i ? "," : "") + ("\"" + img.layers[i].digest.hex() + ".tar\"");
  }
  tar.add("manifest.json", "[{\"Config\":\"" + img.config.digest.hex() +
                               ".json\",\"RepoTags\":[\"" + img.name + "\"],\"Layers\":[" +
                               layers + "]}]");
  tar.add(img.config.digest.hex() + ".json", img.config.data);
  for (const auto& l : img.layers) {
    tar.add(l.digest.hex() + ".tar", l.data);
  }
  return tar.finish();
}

// A two-platform image index named `name`, with every blob present.
struct TestIndex {
  TestImage amd64;
  TestImage arm64;
  Blob index;
  std::string archive;
};

TestIndex make_index(const std::string& name) {
  TestIndex idx{make_image(name, "idx-amd64", 1, "amd64"), make_image(name, "idx-arm64", 1, "arm64"),
                {}, {}};
  const auto entry = [](const TestImage& img, const char* arch) {
    return "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" +
           img.manifest.digest.str() + "\",\"size\":" + std::to_string(img.manifest.data.size()) +
           ",\"platform\":{\"architecture\":\"" + arch + "\",\"os\":\"linux\"}}";
  };
  idx.index = blob_of("{\"schemaVersion\":2,\"mediaType\":\"application/"
                      "vnd.oci.image.index.v1+json\",\"manifests\":[" +
                      entry(idx.amd64, "amd64") + "," + entry(idx.arm64, "arm64") + "]}");
  Tar tar;
  tar.add("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  tar.add("index.json", "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/"
                        "vnd.oci.image.index.v1+json\",\"digest\":\"" +
                            idx.index.digest.str() + "\",\"size\":" +
                            std::to_string(idx.index.data.size()) +
                            ",\"annotations\":{\"io.containerd.image.name\":\"" + name + "\"}}]}");
  tar.add("blobs/sha256/" + idx.index.digest.hex(), idx.index.data);
  for (const TestImage* img : {&idx.amd64, &idx.arm64}) {
    tar.add("blobs/sha256/" + img->manifest.digest.hex(), img->manifest.data);
    tar.add("blobs/sha256/" + img->config.digest.hex(), img->config.data);
    for (const auto& l : img->layers) {
      tar.add("blobs/sha256/" + l.digest.hex(), l.data);
    }
  }
  idx.archive = tar.finish();
  return idx;
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const fs::path dir(std::string(rest.substr(0, colon)));
    if (::access((dir / program).c_str(), X_OK) == 0) {
      return true;
    }
    rest.remove_prefix(colon == std::string_view::npos ? rest.size() : colon + 1);
  }
  return false;
}

// tools/lab of the source tree this test was built from.
std::optional<fs::path> lab_script() {
#ifdef KLOAD_SOURCE_DIR
  const fs::path root(KLOAD_SOURCE_DIR);
#else
  const fs::path here(__FILE__);
  if (!here.is_absolute()) {
    return std::nullopt;
  }
  const fs::path root = here.parent_path().parent_path().parent_path();
#endif
  const auto lab = root / "tools" / "lab";
  if (::access(lab.c_str(), X_OK) != 0) {
    return std::nullopt;
  }
  return lab;
}

// One private containerd for the whole suite.
class ContainerdNode {
public:
  // Starts it; the reason on failure.
  static util::Result<std::unique_ptr<ContainerdNode>> start() {
    // Socket paths are limited to 108 bytes: keep the scratch directory short.
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp != nullptr && std::strlen(tmp) < 40 ? tmp : "/tmp";
    std::string templ = base + "/kload-node-test.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      return util::fail(ErrorKind::io, "mkdtemp: " + std::string(std::strerror(errno)));
    }
    auto node = std::unique_ptr<ContainerdNode>(new ContainerdNode(templ));
    if (const auto lab = lab_script()) {
      node->lab_ = *lab;
      auto r = node->runner_.run({lab->string(), "up", "1", node->dir_ / "lab"}, {},
                                 std::chrono::seconds(60));
      if (r && r->exit_code == 0) {
        const auto line = r->out.substr(0, r->out.find('\n'));
        auto uri = parse_node_uri(line);
        if (uri) {
          node->uri_ = *uri;
          return node;
        }
      }
      std::fprintf(stderr, "tools/lab up failed (%s); starting containerd by hand\n",
                   r ? r->err.c_str() : r.error().message.c_str());
      node->lab_.reset();
    }
    if (auto r = node->start_by_hand(); !r) {
      return std::unexpected(r.error());
    }
    return node;
  }

  ~ContainerdNode() {
    if (lab_) {
      (void)runner_.run({lab_->string(), "down", dir_ / "lab"}, {}, std::chrono::seconds(60));
    } else if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 100 && ::kill(pid_, 0) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (keep_) {
      std::fprintf(stderr, "keeping scratch directory %s\n", dir_.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // The node, seen through namespace `ns` so that tests do not see each other.
  [[nodiscard]] NodeUri uri(const std::string& ns) const {
    NodeUri u = uri_;
    u.ns = ns;
    return u;
  }
  [[nodiscard]] std::string snapshotter() const {
    return uri_.snapshotter.empty() ? "native" : uri_.snapshotter;
  }
  [[nodiscard]] const fs::path& dir() const { return dir_; }
  void keep() { keep_ = true; }

private:
  explicit ContainerdNode(fs::path dir) : dir_(std::move(dir)) {}

  util::Result<void> start_by_hand() {
    const auto nd = dir_ / "node";
    fs::create_directories(nd);
    std::ofstream(nd / "config.toml")
        << "version = 2\nroot = \"" << (nd / "root").string() << "\"\nstate = \""
        << (nd / "state").string()
        << "\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", "
           "\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", "
           "\"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]\n"
           "[grpc]\n  address = \""
        << (nd / "sock").string() << "\"\n[ttrpc]\n  address = \""
        << (nd / "sock.ttrpc").string()
        << "\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
           "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \""
        << (nd / "opt").string() << "\"\n";
    // The shell backgrounds containerd with its output in a log file, so the runner
    // returns at once with the PID.
    auto r = runner_.run({"sh", "-c", "containerd --config \"$1\" </dev/null >\"$2\" 2>&1 & echo $!",
                          "sh", nd / "config.toml", nd / "log"},
                         {}, std::chrono::seconds(10));
    if (!r || r->exit_code != 0) {
      return util::fail(ErrorKind::io, "cannot start containerd");
    }
    pid_ = std::atoi(r->out.c_str());
    uri_ = *parse_node_uri("containerd://" + (nd / "sock").string() + "?snapshotter=native");
    for (int i = 0; i < 200; ++i) {
      struct stat st{};
      if (::stat((nd / "sock").c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        auto v = runner_.run({"ctr", "-a", nd / "sock", "--connect-timeout", "1s", "version"},
                             {}, std::chrono::seconds(10));
        if (v && v->exit_code == 0) {
          return {};
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    keep_ = true;
    return util::fail(ErrorKind::io, "containerd did not come up; see " + (nd / "log").string());
  }

  fs::path dir_;
  std::optional<fs::path> lab_;
  pid_t pid_ = 0;
  NodeUri uri_;
  bool keep_ = false;
  util::SystemProcessRunner runner_;
};

class ContainerdCtrClient : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    // As in kload itself: a feeder writing to a ctr that quit gets EPIPE, not a signal.
    std::signal(SIGPIPE, SIG_IGN);
    if (!in_path("containerd") || !in_path("ctr")) {
      return;
    }
    auto n = ContainerdNode::start();
    if (!n) {
      start_error_ = new std::string(n.error().message);
      return;
    }
    node_ = n->release();
  }
  static void TearDownTestSuite() {
    if (node_ != nullptr) {
      const auto* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
      if (suite != nullptr && suite->failed_test_count() > 0) {
        node_->keep();
      }
      delete node_;
      node_ = nullptr;
    }
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    if (node_ == nullptr && start_error_ == nullptr) {
      GTEST_SKIP() << "containerd is not installed";
    }
    ASSERT_EQ(start_error_, nullptr) << *start_error_;
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    transport_ = make_transport(node_->uri("kload-test-" + test), runner_);
    client_ = std::make_unique<CtrClient>(*transport_);
  }

  std::expected<void, ImportError> import(const std::string& archive) {
    return client_->import(feed_of(archive), node_->snapshotter());
  }

  // Every image on the node, and the inventory those images reach.
  std::pair<std::vector<ImageStatus>, NodeInventory> listing() {
    auto statuses = client_->check({});
    EXPECT_TRUE(statuses.has_value()) << statuses.error().message;
    auto inv = client_->inventory(statuses.value_or(std::vector<ImageStatus>{}));
    EXPECT_TRUE(inv.has_value()) << inv.error().message;
    return {statuses.value_or(std::vector<ImageStatus>{}), inv.value_or(NodeInventory{})};
  }

  static ContainerdNode* node_;
  static std::string* start_error_;
  util::SystemProcessRunner runner_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<CtrClient> client_;
};

ContainerdNode* ContainerdCtrClient::node_ = nullptr;
std::string* ContainerdCtrClient::start_error_ = nullptr;

const ImageStatus* find_image(const std::vector<ImageStatus>& images, const std::string& name) {
  for (const auto& i : images) {
    if (i.name == name) {
      return &i;
    }
  }
  return nullptr;
}

TEST_F(ContainerdCtrClient, ServerUuidAndSnapshotter) {
  const auto uuid = client_->server_uuid();
  ASSERT_TRUE(uuid.has_value()) << uuid.error().message;
  EXPECT_EQ(uuid->size(), 36u) << *uuid;

  NodeUri plain = transport_->uri();
  plain.snapshotter.clear();
  const auto t = make_transport(plain, runner_);
  const auto snap = CtrClient(*t).snapshotter();
  ASSERT_TRUE(snap.has_value()) << snap.error().message;
  // The lab disables every snapshotter but these two; overlayfs loads wherever the
  // kernel has it.
  EXPECT_THAT(*snap, ::testing::AnyOf("overlayfs", "native"));
}

TEST_F(ContainerdCtrClient, ImportOciThenInventory) {
  const auto img = make_image("example.com/kload/oci:v1", "oci");
  const auto r = import(oci_archive(img));
  ASSERT_TRUE(r.has_value()) << r.error().error.message;

  const auto [images, listed] = listing();
  const auto* inv = &listed;
  // Exactly the named image: no "import-DATE@sha256:..." stray.
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].name, img.name);
  EXPECT_EQ(images[0].target, img.manifest.digest);
  for (const Blob* b : {&img.manifest, &img.config, &img.layers[0], &img.layers[1]}) {
    EXPECT_TRUE(inv->blobs.contains(b->digest)) << b->digest.str();
  }
  // The planner maps manifest -> config (the image ID) through this label.
  ASSERT_TRUE(inv->manifest_config.contains(img.manifest.digest));
  EXPECT_EQ(inv->manifest_config.at(img.manifest.digest), img.config.digest);
}

TEST_F(ContainerdCtrClient, ImportDockerArchiveSetsTheConfigLabel) {
  const auto img = make_image("example.com/kload/docker:v1", "docker");
  const auto r = import(docker_archive(img));
  ASSERT_TRUE(r.has_value()) << r.error().error.message;

  const auto [images, listed] = listing();
  const auto* inv = &listed;
  const auto* image = find_image(images, img.name);
  ASSERT_NE(image, nullptr);
  // containerd synthesized the manifest; only its config is known in advance.
  ASSERT_TRUE(inv->manifest_config.contains(image->target));
  EXPECT_EQ(inv->manifest_config.at(image->target), img.config.digest);
}

TEST_F(ContainerdCtrClient, ImportIndexRecordsChildren) {
  const auto idx = make_index("example.com/kload/multi:v1");
  const auto r = import(idx.archive);
  ASSERT_TRUE(r.has_value()) << r.error().error.message;
  const auto [images, listed] = listing();
  const auto* inv = &listed;
  const auto* image = find_image(images, "example.com/kload/multi:v1");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->target, idx.index.digest);
  ASSERT_TRUE(inv->index_children.contains(idx.index.digest));
  // Imported for this platform only: the other child is garbage once GC has run, so
  // only the host's child is certain to be listed.
  EXPECT_THAT(inv->index_children.at(idx.index.digest), ::testing::Contains(idx.amd64.manifest.digest));
  EXPECT_EQ(inv->manifest_config.at(idx.amd64.manifest.digest), idx.amd64.config.digest);
}

TEST_F(ContainerdCtrClient, ThinImportReusesLayersOnTheNode) {
  const auto full = make_image("example.com/kload/base:v1", "thin-ok");
  ASSERT_TRUE(import(oci_archive(full)).has_value());
  // Same manifest under another name, without any layer blob.
  auto renamed = full;
  renamed.name = "example.com/kload/again:v1";
  const auto r = import(oci_archive(renamed, {full.layers[0].digest, full.layers[1].digest}));
  ASSERT_TRUE(r.has_value()) << r.error().error.message;
  const auto statuses = client_->check({renamed.name});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_TRUE((*statuses)[0].complete);
}

TEST_F(ContainerdCtrClient, MissingContentIsDetected) {
  const auto img = make_image("example.com/kload/thin:v1", "missing");
  const auto r = import(oci_archive(img, {img.layers[1].digest}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::missing_content) << r.error().error.message;
  ASSERT_TRUE(r.error().missing.has_value()) << r.error().error.message;
  EXPECT_EQ(*r.error().missing, img.layers[1].digest);
  EXPECT_EQ(r.error().error.kind, ErrorKind::node);
  EXPECT_THAT(r.error().error.message, StartsWith("node " + transport_->uri().display() +
                                                  ": importing: ctr: "));
  EXPECT_EQ(r.error().error.message.find('\n'), std::string::npos);

  // The image record exists anyway, pointing at an incomplete image.
  const auto statuses = client_->check({img.name});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].target, img.manifest.digest);
  EXPECT_FALSE((*statuses)[0].complete);
}

// The gate of a round trip, read by sh on the node from a real `ctr images check`:
// the tags after it run only when every name is there, complete, at its target.
TEST_F(ContainerdCtrClient, AGateLetsTheTagsRunOnlyWhenEveryNameIsCompleteAtItsTarget) {
  const auto a = make_image("example.com/kload/gate-a:v1", "gate-a");
  ASSERT_TRUE(import(oci_archive(a)).has_value());
  const auto thin = make_image("example.com/kload/gate-thin:v1", "gate-thin");
  ASSERT_FALSE(import(oci_archive(thin, {thin.layers[1].digest})).has_value()) << "left incomplete";
  const std::string name = "example.com/kload/gated:v1";
  const auto gated = [&](std::vector<std::pair<std::string, Digest>> gate) {
    Changes changes;
    changes.gate = std::move(gate);
    changes.tags = {{a.name, name, Replace::no}};
    changes.check = {name};
    return client_->apply(changes);
  };
  const std::vector<std::vector<std::pair<std::string, Digest>>> refused{
      {{thin.name, thin.manifest.digest}},                         // incomplete
      {{a.name, a.layers[0].digest}},                              // another target
      {{"example.com/kload/absent:v1", a.manifest.digest}},        // no such name
      {{a.name, a.manifest.digest}, {thin.name, thin.manifest.digest}},  // one of two
  };
  for (const auto& gate : refused) {
    const auto r = gated(gate);
    ASSERT_FALSE(r.has_value()) << gate.back().first;
    EXPECT_EQ(r.error().step, ChangeError::Step::gate);
    EXPECT_EQ(r.error().error.failure, ImportFailure::missing_content);
    EXPECT_EQ(r.error().error.error.message,
              "node " + transport_->uri().display() + ": an image is incomplete after the import");
    const auto statuses = client_->check({name});
    ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
    EXPECT_TRUE(statuses->empty()) << "the tag never ran";
  }
  const auto r = gated({{a.name, a.manifest.digest}});
  ASSERT_TRUE(r.has_value()) << r.error().error.error.message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].target, a.manifest.digest);
  EXPECT_TRUE((*r)[0].complete);
}

TEST_F(ContainerdCtrClient, CheckTagRemove) {
  const auto a = make_image("example.com/kload/a:v1", "check-a");
  const auto b = make_image("example.com/kload/b:v1", "check-b");
  ASSERT_TRUE(import(oci_archive(a)).has_value());
  ASSERT_TRUE(import(oci_archive(b)).has_value());

  auto statuses = client_->check({a.name, "example.com/kload/absent:v1"});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].name, a.name);
  EXPECT_EQ((*statuses)[0].target, a.manifest.digest);
  EXPECT_TRUE((*statuses)[0].complete);

  statuses = client_->check({});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  EXPECT_EQ(statuses->size(), 2u);

  // tag without --force creates a name, and fails on one that exists, leaving it be;
  // --force moves it.
  const std::string user_name = "example.com/kload/app:latest";
  ASSERT_TRUE(client_->tag({a.name, user_name, Replace::no}).has_value());
  const auto taken = client_->tag({b.name, user_name, Replace::no});
  ASSERT_FALSE(taken.has_value());
  EXPECT_THAT(taken.error().message, HasSubstr("already exists"));
  statuses = client_->check({user_name});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].target, a.manifest.digest);
  ASSERT_TRUE(client_->tag({b.name, user_name}).has_value());
  statuses = client_->check({});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  const auto* tagged = find_image(*statuses, user_name);
  ASSERT_NE(tagged, nullptr);
  EXPECT_EQ(tagged->target, b.manifest.digest);

  const auto missing = client_->tag({"example.com/kload/absent:v1", "example.com/kload/x:v1"});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, ErrorKind::node);
  EXPECT_EQ(missing.error().message,
            "node " + transport_->uri().display() +
                ": tagging example.com/kload/absent:v1 as example.com/kload/x:v1: ctr: image "
                "\"example.com/kload/absent:v1\": not found");

  // Absent names are fine.
  const auto removed = client_->remove({user_name, a.name, "example.com/kload/absent:v1"});
  ASSERT_TRUE(removed.has_value()) << removed.error().message;
  statuses = client_->check({});
  ASSERT_TRUE(statuses.has_value()) << statuses.error().message;
  ASSERT_EQ(statuses->size(), 1u);
  EXPECT_EQ((*statuses)[0].name, b.name);
}

TEST_F(ContainerdCtrClient, GarbageImport) {
  const auto r = import("this is not a tar archive");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::other);
  EXPECT_THAT(r.error().error.message,
              StartsWith("node " + transport_->uri().display() + ": importing: ctr: "));
}

TEST_F(ContainerdCtrClient, FeederFailure) {
  const auto archive = oci_archive(make_image("example.com/kload/feed:v1", "feed"));
  const util::StdinFeeder feed = [&](int fd) -> util::Result<void> {
    if (auto r = util::write_all(fd, archive.data(), 1536, "test archive"); !r) {
      return r;
    }
    return util::fail(ErrorKind::bad_input, "test archive: gave up half way");
  };
  const auto r = client_->import(feed, node_->snapshotter());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().failure, ImportFailure::other);
  // Either the feeder's own error, or ctr's if ctr noticed the cut first.
  EXPECT_THAT(r.error().error.message,
              StartsWith("node " + transport_->uri().display() + ": importing: "));
  EXPECT_EQ(r.error().error.message.find('\n'), std::string::npos);
}

// A socket file nobody serves any more (bound, then closed): the real ctr cannot dial
// it, and the node is "not reachable" with ctr's own words. A socket that is not there
// at all is the unit test AMissingSocketFailsAtOnceWithoutRunningCtr.
TEST(ContainerdUnreachable, DeadSocket) {
  if (!in_path("containerd") || !in_path("ctr")) {
    GTEST_SKIP() << "containerd is not installed";
  }
  char templ[] = "/tmp/kload-dead.XXXXXX";
  ASSERT_NE(::mkdtemp(templ), nullptr);
  const std::string sock = std::string(templ) + "/sock";
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    ::close(fd);
  }
  util::SystemProcessRunner runner;
  const auto t = make_transport(*parse_node_uri("containerd://" + sock), runner);
  const auto r = CtrClient(*t).server_uuid();
  fs::remove_all(templ);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::node);
  EXPECT_THAT(r.error().message, StartsWith("node " + fs::path(templ).filename().string() + ": not reachable: "));
  EXPECT_THAT(r.error().message, HasSubstr(sock));
}

// --- the stream on the wire ---

TEST_F(CtrClientUnit, TheProbeAsksForZstdInItsOneProcess) {
  use("ssh://root@node-1");
  for (const auto& [status, out, expected] : std::vector<std::tuple<int, std::string, std::optional<bool>>>{
           {0, "/usr/bin/zstd\n", true}, {1, "", false}, {127, "", false}, {0, "", false}, {255, "", std::nullopt}}) {
    test::FakeRunner runner;
    const auto t = make_transport(*parse_node_uri("ssh://root@node-1"), runner);
    runner.ok("images check", images_check_out);
    util::ProcessResult r;
    r.exit_code = status;
    r.out = out;
    runner.script("command", r);
    CtrClient client(*t);
    const auto p = client.probe({.uuid = false, .inventory = false, .snapshotter = false, .zstd = true});
    ASSERT_TRUE(p.has_value()) << p.error().message;
    EXPECT_EQ(p->zstd, expected) << "exit " << status;
    ASSERT_EQ(runner.calls().size(), 1u);
    EXPECT_THAT(runner.calls()[0].steps, ElementsAre("images check", "command"));
  }
}

// The words of the import step of a compressed apply, and how -v shows them.
std::pair<std::vector<std::string>, std::string> compressed_import_step(const std::string& uri) {
  test::FakeRunner runner;
  const auto t = make_transport(*parse_node_uri(uri), runner);
  runner.ok("images import", "");
  runner.ok("images check", images_check_out);
  std::vector<NodeRun> runs;
  CtrClient client(*t, [&](const NodeRun& r) { runs.push_back(r); });
  const util::StdinFeeder feed = feed_of("compressed bytes");
  Changes changes;
  changes.import = &feed;
  changes.snapshotter = "overlayfs";
  changes.wire = WireCompression::zstd;
  changes.check = {"b"};
  const auto r = client.apply(changes);
  EXPECT_TRUE(r.has_value());
  EXPECT_EQ(client.calls(), 1) << "still one round trip";
  EXPECT_EQ(runner.calls().at(0).stdin, "compressed bytes");
  EXPECT_THAT(runner.calls().at(0).steps, ElementsAre("images import", "images check"));
  auto batch = test::FakeRunner::batch_of(runner.calls().at(0).argv);
  EXPECT_TRUE(batch.has_value());
  return {batch ? batch->second.at(0).words : std::vector<std::string>{}, runs.empty() ? "" : runs[0].command};
}

TEST_F(CtrClientUnit, ACompressedImportIsDecompressedOnTheNodeAndShownSo) {
  const auto [words, shown] = compressed_import_step("ssh://root@node-1");
  ASSERT_GT(words.size(), 5u);
  EXPECT_EQ(words[0], "sh");
  EXPECT_EQ(words[1], "-c");
  EXPECT_THAT(std::vector<std::string>(words.begin() + 4, words.end()),
              ::testing::IsSupersetOf({"ctr", "images", "import", "--snapshotter", "overlayfs", "-"}));
  EXPECT_EQ(shown, "zstd -dc | ctr images import --snapshotter overlayfs -; ctr images check -- 'name==\"b\"'");
}

// The node-side pipe of a compressed import, run for real by every shell here (dash
// has no pipefail), with a stand-in for ctr: the import succeeds only when both zstd
// and ctr do, and the stand-in's status wins.
TEST_F(CtrClientUnit, TheNodesPipeFailsWhenEitherSideFails) {
  const auto [words, shown] = compressed_import_step("ssh://root@node-1");
  ASSERT_GT(words.size(), 4u);
  testing::Scratch scratch;
  std::string plain;
  for (int i = 0; plain.size() < 3 * 1024 * 1024; ++i) {
    plain += "layer line " + std::to_string(i * 7919 % 100003) + "\n";
  }
  std::string whole;
  {
    auto z = util::ZstdWriter::open(
        [&](std::string_view b) -> util::Result<void> {
          whole.append(b);
          return {};
        },
        1);
    ASSERT_TRUE(z.has_value());
    ASSERT_TRUE(z->write(plain).has_value());
    ASSERT_TRUE(z->finish().has_value());
  }
  const auto out = (scratch / "imported").string();
  std::vector<std::vector<std::string>> shells{{"sh"}};
  for (const auto& other : {"/bin/dash", "/bin/bash", "/bin/busybox"}) {
    if (fs::exists(other)) {
      shells.push_back(other == std::string("/bin/busybox") ? std::vector<std::string>{other, "sh"}
                                                             : std::vector<std::string>{other});
    }
  }
  for (const auto& shell_argv : shells) {
    const auto shell = shell_argv.front();
    // The pipe under `shell`, with ctr's stand-in: takes its stdin whole, then exits
    // with `ctr_status`.
    const auto as = [&](const std::string& stream, int ctr_status) {
      auto argv = shell_argv;
      argv.insert(argv.end(), {"-c", words[2], "sh", "sh", "-c", "cat > \"$1\"; exit " + std::to_string(ctr_status),
                               "ctr", out});
      util::SystemProcessRunner real;
      return real.run(argv, feed_of(stream), std::chrono::seconds(30));
    };
    auto ok = as(whole, 0);
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->exit_code, 0) << shell << ": " << ok->err;
    EXPECT_EQ(testing::read_file(out), plain) << shell;

    auto cut = as(whole.substr(0, whole.size() / 2), 0);  // ctr took what came: still a failure
    ASSERT_TRUE(cut.has_value());
    EXPECT_EQ(cut->exit_code, 1) << shell;
    EXPECT_THAT(cut->err, HasSubstr("the stream did not arrive whole")) << shell;

    auto end_cut = as(whole.substr(0, whole.size() - 2), 0);  // every byte of the tar, not the checksum
    ASSERT_TRUE(end_cut.has_value());
    EXPECT_NE(end_cut->exit_code, 0) << shell;

    auto ctr_failed = as(whole, 3);
    ASSERT_TRUE(ctr_failed.has_value());
    EXPECT_EQ(ctr_failed->exit_code, 3) << shell << ": the import's own status";

    auto not_zstd = as(plain, 0);
    ASSERT_TRUE(not_zstd.has_value());
    EXPECT_NE(not_zstd->exit_code, 0) << shell;
  }
}

} // namespace
} // namespace kload::node
