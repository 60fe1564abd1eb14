// End-to-end loads into real containerd nodes started by tools/lab, with archives
// written by tools/mkimage. Suites are named E2E* so quick runs can leave them out.

#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <thread>

namespace kload::testing {
namespace {

using nlohmann::json;

using kload::testing::host_platform;
using kload::testing::other_platform;

class E2ELoad : public ::testing::Test {
protected:
  Scratch scratch;

  // Runs kload image-archive ARCHIVES into `uris` with --json and returns the report.
  json load(const std::vector<std::string>& archives, const std::vector<std::string>& uris, int expect_exit = 0,
            std::string* err = nullptr) {
    std::vector<std::string> args{"image-archive", "--json"};
    args.insert(args.end(), archives.begin(), archives.end());
    for (const auto& u : uris) {
      args.push_back("--node");
      args.push_back(u);
    }
    auto r = kload(args);
    EXPECT_EQ(r.exit_code, expect_exit) << r.err;
    if (err != nullptr) {
      *err = r.err;
    }
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no JSON report: " << r.out << r.err;
    return j;
  }

  std::string archive(const std::string& name, const std::vector<std::string>& args) {
    const auto path = (scratch / name).string();
    std::vector<std::string> full = args;
    full.push_back(path);
    mkimage(full);
    return path;
  }

  // The image ID inspect reports for the first image of an archive.
  std::string id_of(const std::string& archive_path) {
    auto r = kload({"inspect", "--json", archive_path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out)["images"][0]["id"].get<std::string>();
  }

  static const json& node(const json& report, std::size_t i) { return report["nodes"][i]; }

  // A Docker 25+ save with the containerd image store of app:v1: index.json names an
  // index listing this machine's platform and another the archive does not hold.
  // Returns the archive and mkimage's description of its image (index_digest,
  // manifest_digest).
  std::pair<std::string, json> indexed_archive() {
    const auto described = scratch / "c.json";
    const auto path = archive("c.tar", {"--layout", "docker25", "--nested-index", "--platforms",
                                        std::string(host_platform) + "," + other_platform, "--missing-platform",
                                        other_platform, "--json-out", described.string(), "--image",
                                        "app:v1=base:1M,top:128K"});
    return {path, json::parse(read_file(described))["images"][0]};
  }
};

constexpr const char* app_v1 = "app:v1=base:2M,mid:1M,top1:256K";
constexpr const char* app_v2 = "app:v1=base:2M,mid:1M,top2:256K";

TEST_F(E2ELoad, FirstLoadThenUnchangedReloadThenTopLayerChange) {
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto v2 = archive("v2.tar", {"--image", app_v2});

  // First load: every node gets all three layers once, and a complete image.
  auto first = load({v1}, lab.uris());
  ASSERT_EQ(first["nodes"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(node(first, i)["ok"].get<bool>()) << node(first, i)["error"];
    EXPECT_EQ(node(first, i)["layersSent"], 3);
    EXPECT_EQ(node(first, i)["images"][0]["action"], "sent");
  }
  const auto id = id_of(v1);
  for (int n = 1; n <= 3; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), id);
    for (const auto& [name, image] : lab.images(n)) {
      EXPECT_TRUE(image.complete) << name;
      EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "staging name left: " << name;
      EXPECT_EQ(name.find("import-"), std::string::npos) << "stray import name: " << name;
    }
  }

  // Unchanged reload: nothing sent, one cheap call per node.
  auto again = load({v1}, lab.uris());
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(node(again, i)["layersSent"], 0);
    EXPECT_EQ(node(again, i)["bytesSent"], 0);
    EXPECT_EQ(node(again, i)["ctrCalls"], 1);
    EXPECT_EQ(node(again, i)["images"][0]["action"], "present");
  }

  // v2 changes only the top layer: only that layer travels.
  auto dev = load({v2}, lab.uris());
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(node(dev, i)["layersSent"], 1);
    EXPECT_EQ(node(dev, i)["layersSkipped"], 2);
    EXPECT_GE(node(dev, i)["layerBytesSent"].get<std::uint64_t>(), 256u * 1024u);
    EXPECT_LT(node(dev, i)["layerBytesSent"].get<std::uint64_t>(), 300u * 1024u);
  }
  const auto id2 = id_of(v2);
  EXPECT_NE(id, id2);
  for (int n = 1; n <= 3; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), id2);
  }
}

TEST_F(E2ELoad, ManifestDigestEqualsAFullImport) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  load({v1}, {lab.uris()[0]});
  auto full = run_command({"sh", "-c",
                           lab.ctr_shell(2) + " images import - < " + v1});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto a = lab.images(1);
  const auto b = lab.images(2);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].first, b[0].first);
  EXPECT_EQ(a[0].second.target, b[0].second.target);
}

TEST_F(E2ELoad, SharedBaseAcrossImagesAndArchivesIsSentOncePerNode) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto a = archive("a.tar", {"--image", "one:v1=base:2M,one:128K", "--image", "two:v1=base:2M,two:128K"});
  const auto b = archive("b.tgz", {"--layout", "skopeo", "--image", "three:v1=base:2M,three:128K"});
  auto report = load({a, b}, lab.uris());
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(node(report, i)["layersSent"], 4) << "base once plus three tops";
    EXPECT_EQ(node(report, i)["images"].size(), 3u);
  }
  for (int n = 1; n <= 2; ++n) {
    EXPECT_EQ(lab.images(n).size(), 3u);
  }
}

TEST_F(E2ELoad, IdUnderAnotherNameIsOnlyRetagged) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto first = archive("first.tar", {"--image", "app:v1=base:1M,top:128K"});
  const auto renamed = archive("renamed.tar", {"--image", "registry.example.com/team/app:dev=base:1M,top:128K"});
  load({first}, lab.uris());
  auto report = load({renamed}, lab.uris());
  EXPECT_EQ(node(report, 0)["images"][0]["action"], "retagged");
  EXPECT_EQ(node(report, 0)["layersSent"], 0);
  // The name is set by an import of the manifest and config alone (one step, where a
  // tag would delete and create it): a few KiB of tar, no layer.
  EXPECT_GT(node(report, 0)["bytesSent"].get<std::uint64_t>(), 0u);
  EXPECT_LT(node(report, 0)["bytesSent"].get<std::uint64_t>(), 16u * 1024);
  EXPECT_EQ(node(report, 0)["ctrCalls"], 2) << "the check, then the import with its check";
  EXPECT_EQ(lab.image_id(1, "registry.example.com/team/app:dev"), id_of(first));
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(first));
}

// The names `ctr images ls` shows at `digest` on node `n` (what a pod pinning that
// digest can be found by).
std::vector<std::string> names_at(const Lab& lab, int n, const std::string& digest) {
  auto r = lab.ctr(n, {"images", "ls", "-q", "target.digest==" + digest});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& line : split_lines(r.out)) {
    if (!line.empty() && !line.starts_with("sha256:")) {
      names.push_back(line);
    }
  }
  return names;
}

TEST_F(E2ELoad, MultiPlatformInputIsNamedAtItsIndexAsCtrImportNamesIt) {
  // Docker 25+ with the containerd image store: index.json names an index that lists a
  // platform the archive does not hold.
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto [c, d] = indexed_archive();
  const auto index = d["index_digest"].get<std::string>();
  const std::string name = "docker.io/library/app:v1";

  auto first = load({c}, {lab.uris()[0]});
  EXPECT_EQ(node(first, 0)["images"][0]["action"], "sent");
  auto full = run_command({"sh", "-c", lab.ctr_shell(2) + " images import - < " + c});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto loaded = lab.images(1);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded, lab.images(2)) << "kload names what ctr images import names";
  EXPECT_EQ(loaded[0].first, name);
  EXPECT_EQ(loaded[0].second.target, index);
  EXPECT_TRUE(loaded[0].second.complete);
  EXPECT_EQ(lab.image_id(1, name), id_of(c));
  EXPECT_EQ(names_at(lab, 1, index), std::vector<std::string>{name}) << "found by the index digest";
  if (lab.kind().docker) {
    // A CRI node sees kload's image as it sees ctr import's: the same listing, and the
    // same answer to a lookup by the index digest (CRI 2.x finds neither by it: it
    // knows repo digests only from names of the form repo@digest, which pulls make).
    const auto cri = [&](int n, const std::vector<std::string>& args) {
      std::vector<std::string> argv{"crictl"};
      argv.insert(argv.end(), args.begin(), args.end());
      return lab.exec(n, argv);
    };
    EXPECT_EQ(cri(1, {"images", "--digests"}).out, cri(2, {"images", "--digests"}).out);
    const std::vector<std::string> by_digest{"inspecti", "docker.io/library/app@" + index};
    EXPECT_EQ(cri(1, by_digest).exit_code, cri(2, by_digest).exit_code);
  }

  // A reload is present on both: the one kload loaded and the one ctr imported.
  auto again = load({c}, lab.uris());
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(node(again, i)["images"][0]["action"], "present") << i;
    EXPECT_EQ(node(again, i)["bytesSent"], 0) << i;
    EXPECT_EQ(node(again, i)["ctrCalls"], 1) << i;
  }
}

TEST_F(E2ELoad, OciIndexWithEveryPlatformIsNamedAtTheIndexWithOnlyThisPlatformSent) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto described = scratch / "o.json";
  const auto o = archive("o.tar", {"--layout", "oci", "--nested-index", "--platforms",
                                   std::string(host_platform) + "," + other_platform, "--json-out",
                                   described.string(), "--image", "app:v1=base:1M,top:128K"});
  const auto index = json::parse(read_file(described))["images"][0]["index_digest"].get<std::string>();
  auto first = load({o, "--name-as", "app:v1"}, {lab.uris()[0]});
  EXPECT_EQ(node(first, 0)["layersSent"], 2) << "this platform's layers only";
  auto full = run_command({"sh", "-c", lab.ctr_shell(2) + " images import - < " + o});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto loaded = lab.images(1);
  const auto imported = lab.images(2);
  ASSERT_EQ(loaded.size(), 1u);
  ASSERT_EQ(imported.size(), 1u);  // ctr names it import-DATE:v1: the tag alone is no name
  EXPECT_EQ(loaded[0].second, imported[0].second) << "the same target, complete";
  EXPECT_EQ(loaded[0].second.target, index);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), lab.image_id(2, imported[0].first));
  auto again = load({o, "--name-as", "app:v1"}, {lab.uris()[0]});
  EXPECT_EQ(node(again, 0)["images"][0]["action"], "present");
}

TEST_F(E2ELoad, NameAnOlderLoadLeftAtTheManifestIsPointedAtTheIndex) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  // The same image, once named at its manifest (an OCI layout naming the manifest, as
  // kload used to name every image), once through an index.
  const auto flat = archive("flat.tar", {"--layout", "docker25", "--platforms", host_platform, "--image",
                                         "app:v1=base:1M,top:128K"});
  const auto [indexed, d] = indexed_archive();
  const auto index = d["index_digest"].get<std::string>();
  ASSERT_EQ(id_of(flat), id_of(indexed));
  load({flat}, lab.uris());
  ASSERT_EQ(lab.images(1).size(), 1u);
  ASSERT_NE(lab.images(1)[0].second.target, index);

  auto report = load({indexed}, lab.uris());
  EXPECT_EQ(node(report, 0)["images"][0]["action"], "retagged");
  EXPECT_EQ(node(report, 0)["layersSent"], 0);
  EXPECT_LT(node(report, 0)["bytesSent"].get<std::uint64_t>(), 16u * 1024) << "index, manifest and config only";
  const auto images = lab.images(1);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].second.target, index);
  EXPECT_TRUE(images[0].second.complete);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(indexed));
  auto again = load({indexed}, lab.uris());
  EXPECT_EQ(node(again, 0)["images"][0]["action"], "present");
}

TEST_F(E2ELoad, NameWithTheIndexDigestIsTheIndexsAndTheManifestDigestIsRefused) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto [c, d] = indexed_archive();
  const auto index = d["index_digest"].get<std::string>();
  const auto manifest = d["manifest_digest"].get<std::string>();
  // The archive names the image by tag; a digest name comes from an OCI archive whose
  // ref names it, which mkimage does not write: --name-as takes no digest, so the
  // check is on the archive below, renamed with a digest by rewriting index.json.
  const auto unpacked = scratch / "x";
  ASSERT_EQ(run_command({"sh", "-c", "mkdir -p " + unpacked.string() + " && tar -C " + unpacked.string() +
                                          " -xf " + c + " && rm " + (unpacked / "manifest.json").string() +
                                          " " + (unpacked / "repositories").string()})
                .exit_code,
            0);
  const auto renamed = [&](const std::string& digest) {
    auto doc = json::parse(read_file(unpacked / "index.json"));
    doc["manifests"][0]["annotations"]["io.containerd.image.name"] = "docker.io/library/app@" + digest;
    std::ofstream(unpacked / "index.json") << doc.dump();
    const auto out = (scratch / ("at-" + digest.substr(7, 12) + ".tar")).string();
    EXPECT_EQ(run_command({"tar", "-C", unpacked.string(), "-cf", out, "oci-layout", "index.json", "blobs"}).exit_code, 0);
    return out;
  };
  const auto by_manifest = renamed(manifest);
  auto refused = kload({"image-archive", by_manifest, "--node", lab.uris()[0]});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("names " + manifest + ", but the image under it"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("is named at index " + index), std::string::npos) << refused.err;
  EXPECT_TRUE(lab.images(1).empty()) << "refused before any node is touched";

  const auto by_index = renamed(index);
  load({by_index}, lab.uris());
  const auto images = lab.images(1);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].first, "docker.io/library/app@" + index);
  EXPECT_EQ(images[0].second.target, index);
  EXPECT_TRUE(images[0].second.complete);
}

TEST_F(E2ELoad, PartiallyLoadedNodeGetsOnlyTheRest) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto base = archive("base.tar", {"--image", "base:v1=base:1M,mid:512K"});
  const auto app = archive("app.tar", {"--image", "app:v1=base:1M,mid:512K,app:128K"});
  auto full = run_command({"sh", "-c", lab.ctr_shell(1) + " images import - < " + base});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto report = load({app}, lab.uris());
  EXPECT_EQ(node(report, 0)["layersSent"], 1);
  EXPECT_EQ(node(report, 0)["layersSkipped"], 2);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(app));
}

TEST_F(E2ELoad, DockerAndOciArchivesOfOneImageGiveOneImageId) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto docker = archive("docker.tar", {"--image", "app:v1=base:1M,top:128K"});
  const auto oci = archive("oci.tar", {"--layout", "docker25", "--layer-compression", "gzip", "--image",
                                       "app:v1=base:1M,top:128K"});
  load({docker}, {lab.uris()[0]});
  load({oci}, {lab.uris()[1]});
  const auto id = id_of(docker);
  EXPECT_EQ(id_of(oci), id);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id);
  EXPECT_EQ(lab.image_id(2, "docker.io/library/app:v1"), id);
  // Loading the docker archive where the OCI one is: same ID, nothing sent.
  auto report = load({docker}, {lab.uris()[1]});
  EXPECT_EQ(node(report, 0)["images"][0]["action"], "present");
  EXPECT_EQ(node(report, 0)["layersSent"], 0);
}

TEST_F(E2ELoad, OneNodeDownIsNamedAndTheOthersComplete) {
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  ASSERT_TRUE(lab.stop(2));
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  std::string err;
  auto report = load({v1}, lab.uris(), 1, &err);
  EXPECT_TRUE(node(report, 0)["ok"].get<bool>());
  EXPECT_FALSE(node(report, 1)["ok"].get<bool>());
  EXPECT_TRUE(node(report, 2)["ok"].get<bool>());
  EXPECT_NE(node(report, 1)["error"]["message"].get<std::string>().find(lab.node_name(2)), std::string::npos)
      << node(report, 1)["error"];
  EXPECT_NE(err.find(lab.node_name(2)), std::string::npos) << err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
  EXPECT_EQ(lab.image_id(3, "docker.io/library/app:v1"), id_of(v1));
}

TEST_F(E2ELoad, BlobRemovedBehindKloadsBackIsResentAfterOneRetry) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host node: a ctr or docker shim on PATH reaches its socket
  ASSERT_TRUE(lab.up());
  const auto base = archive("base.tar", {"--image", "base:v1=base:1M"});
  const auto app = archive("app.tar", {"--image", "app:v1=base:1M,app:128K"});
  auto imported = run_command({"sh", "-c", lab.ctr_shell(1) + " images import - < " + base});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  auto inspect = json::parse(kload({"inspect", "--json", base}).out);
  const auto base_layer = inspect["images"][0]["layers"][0]["digest"].get<std::string>();

  // A ctr shim that deletes the base layer from the node right before the import,
  // after kload has listed the node: the inventory kload planned from is now wrong.
  const auto shim_dir = scratch / "shim";
  std::filesystem::create_directories(shim_dir);
  const auto real_ctr = run_command({"sh", "-c", "command -v ctr"}).out;
  write_file(shim_dir / "ctr",
             "#!/bin/sh\n"
             "for a in \"$@\"; do if [ \"$a\" = import ] && [ ! -e " + (shim_dir / "done").string() + " ]; then\n"
             "  touch " + (shim_dir / "done").string() + "\n"
             "  " + real_ctr.substr(0, real_ctr.size() - 1) + " -a " + lab.socket(1).string() +
                 " -n k8s.io content rm " + base_layer + " >/dev/null\n"
             "fi; done\n"
             "exec " + real_ctr.substr(0, real_ctr.size() - 1) + " \"$@\"\n");
  std::filesystem::permissions(shim_dir / "ctr", std::filesystem::perms::owner_all);
  const std::string path = shim_dir.string() + ":" + std::getenv("PATH");
  auto r = run_command({"env", "PATH=" + path, kload_binary().string(), "image-archive", "--json", app, "--node",
                        lab.uris()[0]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = json::parse(r.out);
  EXPECT_TRUE(std::filesystem::exists(shim_dir / "done")) << "the shim never ran";
  EXPECT_TRUE(node(report, 0)["retried"].get<bool>());
  EXPECT_EQ(node(report, 0)["layersSent"], 2)
      << "app first, then only base after the refresh: what arrived is kept, not collected and resent";
  for (const auto& [name, image] : lab.images(1)) {
    if (name == "docker.io/library/app:v1") {
      EXPECT_TRUE(image.complete);
    }
  }
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(app));
}

// The user's name must never point at an incomplete image, whatever dies when.
void expect_name_absent_or_complete(const Lab& lab, int n, const std::string& name) {
  for (const auto& [ref, image] : lab.images(n)) {
    if (ref == name) {
      EXPECT_TRUE(image.complete) << name << " points at an incomplete image on node " << n;
    }
  }
}

TEST_F(E2ELoad, KillingKloadMidTransferNeverExposesAnIncompleteImage) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto big = archive("big.tar", {"--compressible", "0", "--image", "app:v1=base:96M,top:64M"});
  const auto err_file = scratch / "err";
  const std::string cmd = "exec " + kload_binary().string() + " image-archive " + big + " --node " + lab.uris()[0] +
                          " 2>" + err_file.string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill as soon as it starts sending.
  for (int i = 0; i < 500 && read_file(err_file).find("sending") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  expect_name_absent_or_complete(lab, 1, "docker.io/library/app:v1");
  auto report = load({big}, lab.uris());
  EXPECT_TRUE(node(report, 0)["ok"].get<bool>());
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(big));
}

TEST_F(E2ELoad, KillingTheNodeMidTransferFailsThatNodeAndARerunCompletes) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto old = archive("old.tar", {"--image", "app:v1=old:1M"});
  load({old}, lab.uris());
  const auto big = archive("big.tar", {"--compressible", "0", "--image", "app:v1=base:96M,top:64M"});
  const auto err_file = scratch / "err";
  const auto out_file = scratch / "out";
  const std::string cmd = "exec " + kload_binary().string() + " image-archive --json " + big + " --node " +
                          lab.uris()[0] + " --node " + lab.uris()[1] + " >" + out_file.string() + " 2>" +
                          err_file.string();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 500 && read_file(err_file).find("sending") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(lab.stop(2));
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  const auto report = json::parse(read_file(out_file), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << read_file(err_file);
  if (node(report, 1)["ok"].get<bool>()) {
    GTEST_SKIP() << "the transfer finished before the node was killed; nothing to observe";
  }
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_TRUE(node(report, 0)["ok"].get<bool>());
  EXPECT_NE(node(report, 1)["error"].dump().find("it went away during the load. Once it is back, a rerun resumes"),
            std::string::npos)
      << node(report, 1)["error"];
  ASSERT_TRUE(lab.start(2));
  // The name still points at the old, complete image (or at the new one if the
  // commit made it before the kill), never at an incomplete one.
  expect_name_absent_or_complete(lab, 2, "docker.io/library/app:v1");
  const auto id = lab.image_id(2, "docker.io/library/app:v1");
  EXPECT_TRUE(id == id_of(old) || id == id_of(big)) << id;
  auto rerun = load({big}, lab.uris());
  EXPECT_TRUE(node(rerun, 1)["ok"].get<bool>());
  EXPECT_EQ(node(rerun, 0)["layersSent"], 0);
  EXPECT_EQ(lab.image_id(2, "docker.io/library/app:v1"), id_of(big));
}

TEST_F(E2ELoad, CompressedArchiveFromStdinIsReadOnce) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto zst = archive("app.tar.zst", {"--image", app_v1});
  std::vector<std::string> args{"image-archive", "--json", "-"};
  for (const auto& u : lab.uris()) {
    args.push_back("--node");
    args.push_back(u);
  }
  auto r = kload(args, zst);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = json::parse(r.out);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(node(report, i)["layersSent"], 3);
  }
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), lab.image_id(2, "docker.io/library/app:v1"));
}

TEST_F(E2ELoad, DryRunChangesNothing) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  auto r = kload({"image-archive", "--dry-run", "--json", v1, "--node", lab.uris()[0]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("sending 3 of 3 layers"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dry run: 1 image(s) on 1 node(s): would send 3 layers ("), std::string::npos) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  const auto& node = report["nodes"][0];
  EXPECT_EQ(node["images"][0]["action"], "would-send");
  EXPECT_EQ(node["layersPlanned"], 3);
  EXPECT_GT(node["layerBytesPlanned"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(node["layersSent"], 0);
  EXPECT_EQ(node["bytesSent"], 0);
  EXPECT_TRUE(lab.images(1).empty());
}

// The stream is the proof (no pass over the input before it): a layer damaged in the
// archive is found as it is sent, before its entry's last byte, so containerd never
// receives it whole; the import fails on the cut stream and no name, staging or real,
// is made. Exit 2 (bad input), naming the file and the layer's digest. A sound archive
// of the image then loads: nothing of the damaged one is in the way.
TEST_F(E2ELoad, ADamagedLayerNeverArrivesWholeAndNamesNothing) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto described = scratch / "bad.json";
  const auto bad = archive("bad.tar", {"--fault", "corrupt-layer", "--json-out", described.string(), "--image", app_v1});
  const auto digest = json::parse(read_file(described))["fault_details"]["corrupt_layer"].get<std::string>();
  std::string err;
  auto report = load({bad}, lab.uris(), 2, &err);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_FALSE(node(report, i)["ok"].get<bool>());
    const auto message = node(report, i)["error"]["message"].get<std::string>();
    EXPECT_NE(message.find("expected " + digest), std::string::npos) << message;
    EXPECT_NE(message.find(bad), std::string::npos) << message;
    EXPECT_TRUE(lab.images(static_cast<int>(i) + 1).empty()) << "no name, staging or real";
  }
  EXPECT_NE(err.find("content is sha256:"), std::string::npos) << err;
  const auto good = archive("good.tar", {"--image", app_v1});
  load({good}, lab.uris());
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(good));
  EXPECT_EQ(lab.image_id(2, "docker.io/library/app:v1"), id_of(good));
}

// Issue 13: the crash-loop lint of inspect speaks at load time, where the user is:
// one warning per problem before anything is sent, in the JSON report, and not at all
// with --no-lint. The image is loaded either way.
TEST_F(E2ELoad, AnImageThatWillCrashLoopIsNamedBeforeTheLoadUnlessNoLint) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto bad = archive("bad.tar", {"--image", "sshbox:v1=base:64K", "--cmd",
                                       R"(["/bin/sh","-c","/usr/sbin/sshd && /bin/bash"])"});
  const auto good = archive("good.tar", {"--image", app_v1});
  auto r = kload({"image-archive", "--json", bad, good, "--node", lab.uris()[0]});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto warning = r.err.find("warning: docker.io/library/sshbox:v1: ");
  ASSERT_NE(warning, std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sshd -D", warning), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--no-lint silences this", warning), std::string::npos) << r.err;
  EXPECT_LT(warning, r.err.find("sending")) << "the warning comes before the load: " << r.err;
  EXPECT_EQ(r.err.find("warning: docker.io/library/app:v1"), std::string::npos) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  ASSERT_EQ(report["lint"].size(), 1u) << report["lint"];
  EXPECT_EQ(report["lint"][0]["image"], "docker.io/library/sshbox:v1");
  EXPECT_NE(report["lint"][0]["warning"].get<std::string>().find("sshd -D"), std::string::npos);
  EXPECT_FALSE(lab.image_id(1, "docker.io/library/sshbox:v1").empty());

  auto quiet = kload({"image-archive", "--json", "--no-lint", bad, "--node", lab.uris()[0]});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("warning:"), std::string::npos) << quiet.err;
  EXPECT_TRUE(nlohmann::json::parse(quiet.out)["lint"].empty());
}

// Issue 13: clusters named once in a config file stand for their nodes' URIs: --name
// picks one, --nodes some of its nodes, and `default` is the cluster of a bare command.
TEST_F(E2ELoad, AClusterOfTheConfigFileIsLoadedByName) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto config = scratch / "kload.toml";
  {
    std::ofstream out(config);
    out << "default = \"lab\"\n[clusters.lab]\nnodes = [\"" << lab.uris()[0] << "\", \"" << lab.uris()[1] << "\"]\n";
  }
  auto one = kload({"image-archive", v1, "--config", config.string(), "--name", "lab", "--nodes", lab.uris()[1]});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.err.find("cluster \"lab\" (" + config.string() + "): 1 of 2 node(s)"), std::string::npos) << one.err;
  EXPECT_TRUE(lab.images(1).empty());
  EXPECT_FALSE(lab.image_id(2, "docker.io/library/app:v1").empty());

  auto both = kload({"image-archive", v1, "--config", config.string()});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  EXPECT_NE(both.err.find("cluster \"lab\" (" + config.string() + "): 2 of 2 node(s)"), std::string::npos) << both.err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), lab.image_id(2, "docker.io/library/app:v1"));

  auto typo = kload({"image-archive", v1, "--config", config.string(), "--name", "lab", "--nodes", "nowhere"});
  EXPECT_EQ(typo.exit_code, 2) << typo.err;
  EXPECT_NE(typo.err.find("\"nowhere\" is not a node of cluster \"lab\""), std::string::npos) << typo.err;
}

// Issue 13: a snapshotter the node has not loaded fails that node in its first round
// trip, with the snapshotters it has; nothing is sent to it, and the other node loads.
TEST_F(E2ELoad, ASnapshotterTheNodeLacksFailsItBeforeAnyByteIsSent) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  // The first node's URI with snapshotter=zfs in place of the lab's own choice.
  auto zfs = lab.uris()[0];
  if (const auto at = zfs.find("snapshotter="); at != std::string::npos) {
    const auto end = zfs.find('&', at);
    zfs = zfs.substr(0, at) + "snapshotter=zfs" + (end == std::string::npos ? "" : zfs.substr(end));
  } else {
    zfs += (zfs.find('?') == std::string::npos ? "?" : "&") + std::string("snapshotter=zfs");
  }
  std::string err;
  auto report = load({v1}, {zfs, lab.uris()[1]}, 1, &err);
  const auto& bad = node(report, 0);
  EXPECT_FALSE(bad["ok"].get<bool>());
  EXPECT_NE(bad["error"].dump().find("snapshotter \\\"zfs\\\" (from the node URI) is not loaded there (loaded: "),
            std::string::npos)
      << bad["error"];
  EXPECT_EQ(bad["bytesSent"], 0);
  EXPECT_EQ(bad["ctrCalls"], 1) << "caught by the first round trip";
  EXPECT_TRUE(lab.images(1).empty());
  EXPECT_TRUE(node(report, 1)["ok"].get<bool>());
  EXPECT_FALSE(lab.image_id(2, "docker.io/library/app:v1").empty());
}

TEST_F(E2ELoad, DockerTransportGivesRealDockerTheExactArgv) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host node: a ctr or docker shim on PATH reaches its socket
  ASSERT_TRUE(lab.up());
  // A docker shim: logs its argv, then runs the node-side command against the lab
  // node the container name stands for: `ctr ARGS`, or a `sh -c` batch whose ctr
  // calls go to that node's socket.
  const auto shim_dir = scratch / "shim";
  std::filesystem::create_directories(shim_dir);
  const auto log = shim_dir / "argv.log";
  write_file(log, "\n");  // every logged line then starts after a newline
  const std::string socket = lab.socket(1).string();
  // On the "node", ctr is a wrapper (first on PATH, also for the shells a batch
  // starts) that talks to the lab node's socket.
  const auto node_bin = shim_dir / "node-bin";
  std::filesystem::create_directories(node_bin);
  write_file(node_bin / "ctr", "#!/bin/sh\n"
                               "PATH=${PATH#" + node_bin.string() + ":}\n"
                               "exec ctr -a " + socket + " \"$@\"\n");
  std::filesystem::permissions(node_bin / "ctr", std::filesystem::perms::owner_all);
  write_file(shim_dir / "docker",
             "#!/bin/sh\n"
             "printf '%s\\n' \"$*\" >> " + log.string() + "\n"
             "[ \"$1\" = exec ] && [ \"$2\" = -i ] && [ \"$3\" = kind-worker ] || { echo \"shim: unexpected: $*\" >&2; exit 2; }\n"
             "shift 3\n"
             "PATH=" + node_bin.string() + ":$PATH exec \"$@\"\n");
  std::filesystem::permissions(shim_dir / "docker", std::filesystem::perms::owner_all);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const std::string path = shim_dir.string() + ":" + std::getenv("PATH");
  auto r = run_command({"env", "PATH=" + path, kload_binary().string(), "image-archive", "--json", v1, "--node",
                        "docker://kind-worker?snapshotter=overlayfs"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
  const auto argv = read_file(log);
  // Two docker processes, one per round trip.
  std::size_t processes = 0;
  for (std::size_t at = 0; (at = argv.find("\nexec -i kind-worker ", at)) != std::string::npos; ++at) {
    ++processes;
  }
  EXPECT_EQ(processes, 2u) << argv;
  // Exactly what real Docker would be asked to run, in order.
  const std::string ctr = "'ctr' '--connect-timeout' '5s' '-n' 'k8s.io' ";
  const std::vector<std::string> expected_prefixes{
      // The probe: every name on the node (the truth the plan starts from), the
      // containerd UUID and, on a first contact, the content; queries that run at the
      // same time, each into a private directory, framed in order (else one by one).
      "exec -i kind-worker sh -c k=",
      "if d=$(mktemp -d 2>/dev/null); then\n(" + ctr + "'images' 'check' </dev/null >\"$d/0\"",
      ctr + "'images' 'check' </dev/null; e on",
      ctr + "'version' </dev/null; e on",
      ctr + "'content' 'ls' </dev/null; e on",
      // The staging import (every blob in it: no gate), the name created from it (new
      // on the node: a tag without --force), then at the same time the staging name
      // gone and the check of the name.
      "exec -i kind-worker sh -c k=",
      ctr + "'images' 'import' '--snapshotter' 'overlayfs' '-' ; e",
      ctr + "'images' 'tag' '--' 'localhost/kload-staging/",
      "(" + ctr + "'images' 'rm' '--' 'localhost/kload-staging/",
      ctr + "'images' 'check' '--' 'name==\"docker.io/library/app:v1\"'",
  };
  EXPECT_EQ(argv.find(ctr + "'images' 'check' '--' 'name==\"localhost/kload-staging/"), std::string::npos)
      << "no gate for an image whose every blob is in the stream";
  std::size_t at = 0;
  for (const auto& prefix : expected_prefixes) {
    const auto found = argv.find(prefix, at);
    EXPECT_NE(found, std::string::npos) << "missing, in order: " << prefix << "\nin:\n" << argv;
    if (found != std::string::npos) {
      at = found + 1;
    }
  }
  EXPECT_EQ(argv.find("--digests"), std::string::npos) << "--digests leaves stray import-<date> names";
}

} // namespace
} // namespace kload::testing

namespace kload::testing {
namespace {

// With the CRI plugin on (as on every kind node), containerd adds its own
// sha256:<image ID> reference to every image it sees; kload's staging and commit
// must leave exactly the user's name and CRI's reference behind.
TEST(E2ELoadCri, CriNodeEndsWithTheNameAndCrisIdReference) {
  Scratch scratch;
  const auto lab_dir = scratch / "lab";
  auto up = run_command({(source_dir() / "tools" / "lab").string(), "up", "1", lab_dir.string(), "--cri"});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  struct Down {
    std::filesystem::path dir;
    ~Down() { run_command({(source_dir() / "tools" / "lab").string(), "down", dir.string()}); }
  } down{lab_dir};
  const auto uri = up.out.substr(0, up.out.find('\n'));
  const auto v1 = (scratch / "v1.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:1M,top:128K", v1}));
  auto r = kload({"image-archive", "--json", v1, "--node", uri});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto id = nlohmann::json::parse(kload({"inspect", "--json", v1}).out)["images"][0]["id"].get<std::string>();
  const auto sock = (lab_dir / "node1" / "sock").string();
  // CRI adds its reference asynchronously, within milliseconds.
  std::string refs;
  for (int i = 0; i < 50; ++i) {
    refs = run_command({"ctr", "-a", sock, "-n", "k8s.io", "images", "ls", "-q"}).out;
    if (refs.find(id) != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(refs.find("docker.io/library/app:v1\n"), std::string::npos) << refs;
  EXPECT_NE(refs.find(id), std::string::npos) << "CRI's own reference: " << refs;
  EXPECT_EQ(refs.find("kload-staging"), std::string::npos) << refs;
  auto again = nlohmann::json::parse(kload({"image-archive", "--json", v1, "--node", uri}).out);
  EXPECT_EQ(again["nodes"][0]["images"][0]["action"], "present");
  EXPECT_EQ(again["nodes"][0]["ctrCalls"], 1);
}

} // namespace
} // namespace kload::testing
