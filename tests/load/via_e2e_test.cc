// Loads through a registry (--via) into real containerd nodes: Debian's docker-registry
// on an address the nodes reach, the nodes pulling with their own containerd. What
// each node fetched is read from the registry's own access log, which logs every
// answer with its size.

#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>

namespace kload::testing {
namespace {

using nlohmann::json;

constexpr const char* app_name = "docker.io/library/app:v1";
constexpr const char* app_v1 = "app:v1=base:2M,mid:1M,top1:256K";
constexpr const char* app_v2 = "app:v1=base:2M,mid:1M,top2:256K";

// Where the registry listens: loopback for host nodes; for Docker-hosted nodes the
// lab network's gateway, an address of this machine the containers reach.
std::string registry_host(const Lab& lab) {
  if (!lab.kind().docker) {
    return "127.0.0.1";
  }
  const auto network = read_file(lab.dir() / "network");
  auto r = run_command({"docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                        network.substr(0, network.find_first_of("\r\n"))});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, r.out.find_first_of("\r\n"));
}

class E2EVia : public ::testing::Test {
public:  // first_unchanged_and_dev_reload drives it
  void SetUp() override { KLOAD_REQUIRE_REGISTRY(); }

  std::string archive(const std::string& name, const std::string& image) {
    const auto path = (scratch / name).string();
    mkimage({"--image", image, path});
    return path;
  }

  // kload image-archive ARCHIVE into every node of `lab` with --json and `extra`.
  json load(const std::string& archive, const Lab& lab, const std::vector<std::string>& extra, int expect_exit = 0) {
    std::vector<std::string> args{"image-archive", "--json", archive};
    for (const auto& u : lab.uris()) {
      args.insert(args.end(), {"--node", u});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    const auto started = std::chrono::steady_clock::now();
    auto r = kload(args);
    last_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_EQ(r.exit_code, expect_exit) << r.err;
    last_err = r.err;
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no JSON report: " << r.out << r.err;
    return j;
  }

  // The layer blobs of the image in `archive`, bottom first, as inspect reports them.
  static std::vector<std::string> layers_for(const std::string& archive) {
    auto r = kload({"inspect", "--json", archive});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    const auto doc = json::parse(r.out);
    for (const auto& l : doc["images"][0]["layers"]) {
      out.push_back(l["digest"].get<std::string>());
    }
    return out;
  }

  // blob digest -> the GETs of it the registry answered since access `from`.
  static std::map<std::string, int> gets_since(const Registry& registry, std::size_t from) {
    std::map<std::string, int> out;
    const auto all = registry.accesses();
    for (std::size_t i = from; i < all.size(); ++i) {
      const auto& a = all[i];
      if (a.method == "GET" && a.status == 200 && a.path.find("/blobs/") != std::string::npos) {
        ++out[a.path.substr(a.path.rfind('/') + 1)];
      }
    }
    return out;
  }

  // Writes to the registry (uploads, manifests) since access `from`.
  static int writes_since(const Registry& registry, std::size_t from) {
    int n = 0;
    const auto all = registry.accesses();
    for (std::size_t i = from; i < all.size(); ++i) {
      n += all[i].method == "PUT" || all[i].method == "POST" || all[i].method == "PATCH" ? 1 : 0;
    }
    return n;
  }

  // Every node holds app:v1 at the image of `archive`, complete, and no other name
  // (no staging name, no pulled reference).
  void expect_only_the_name(const Lab& lab, const std::string& archive, int nodes) {
    auto r = kload({"inspect", "--json", archive});
    const auto id = json::parse(r.out)["images"][0]["id"].get<std::string>();
    for (int n = 1; n <= nodes; ++n) {
      EXPECT_EQ(lab.image_id(n, app_name), id) << "node " << n;
      for (const auto& [name, image] : lab.images(n)) {
        EXPECT_EQ(name, app_name) << "node " << n << " has another name";
        EXPECT_TRUE(image.complete) << name;
      }
    }
  }

  Scratch scratch;
  std::string last_err;
  double last_seconds = 0;
};

// Nodes fetch only what they lack: the registry's log counts each layer GET; with n
// nodes that each lacked a layer, it is fetched exactly n times, and a layer no node
// lacked is never fetched. (The log cannot tell host nodes apart: they all dial from
// loopback. Counts per blob are what each node's share comes to.)
void first_unchanged_and_dev_reload(E2EVia& t, const Lab& lab, Registry& registry, int nodes,
                                    const std::string& v1, const std::string& v2) {
  const std::vector<std::string> via{"--via", registry.address(), "--plain-http"};
  const auto l1 = E2EVia::layers_for(v1);
  const auto l2 = E2EVia::layers_for(v2);

  const auto first = t.load(v1, lab, via);
  std::cout << "via first load, " << nodes << " nodes: " << t.last_seconds << " s\n";
  ASSERT_TRUE(first["ok"].get<bool>()) << t.last_err;
  EXPECT_TRUE(first["via"]["published"].get<bool>());
  EXPECT_GT(first["via"]["bytesUploaded"].get<std::uint64_t>(), 3u << 20);
  std::uint64_t lacked = 0;
  for (const auto& n : first["nodes"]) {
    EXPECT_EQ(n["images"][0]["action"], "sent");
    EXPECT_EQ(n["layersPulled"], 3);
    EXPECT_EQ(n["layersSent"], 0);
    lacked += n["layerBytesPlanned"].get<std::uint64_t>();
  }
  EXPECT_EQ(first["via"]["directLayerBytes"].get<std::uint64_t>(), lacked);
  auto gets = E2EVia::gets_since(registry, 0);
  for (const auto& layer : l1) {
    EXPECT_EQ(gets[layer], nodes) << layer;
  }
  t.expect_only_the_name(lab, v1, nodes);

  // Unchanged: nothing uploaded, nothing pulled.
  auto mark = registry.accesses().size();
  const auto again = t.load(v1, lab, via);
  EXPECT_FALSE(again["via"]["published"].get<bool>());
  EXPECT_EQ(E2EVia::writes_since(registry, mark), 0);
  EXPECT_TRUE(E2EVia::gets_since(registry, mark).empty());
  for (const auto& n : again["nodes"]) {
    EXPECT_EQ(n["images"][0]["action"], "present");
  }

  // Dev reload: one layer changed. Uploaded once; each node fetches only it (and the
  // config), never the layers it holds.
  mark = registry.accesses().size();
  const auto dev = t.load(v2, lab, via);
  std::cout << "via dev reload, " << nodes << " nodes: " << t.last_seconds << " s\n";
  ASSERT_TRUE(dev["ok"].get<bool>()) << t.last_err;
  EXPECT_EQ(dev["via"]["blobsUploaded"], 2);  // the layer and the config
  gets = E2EVia::gets_since(registry, mark);
  EXPECT_EQ(gets[l2[2]], nodes);
  EXPECT_EQ(gets[l2[0]], 0);
  EXPECT_EQ(gets[l2[1]], 0);
  for (const auto& n : dev["nodes"]) {
    EXPECT_EQ(n["layersPulled"], 1);
  }
  t.expect_only_the_name(lab, v2, nodes);
}

TEST_F(E2EVia, FirstLoadUnchangedReloadAndDevReloadOnThreeNodes) {
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry", "", registry_host(lab));
  ASSERT_TRUE(registry.up()) << registry.log();
  first_unchanged_and_dev_reload(*this, lab, registry, 3, archive("v1.tar", app_v1), archive("v2.tar", app_v2));
}

TEST_F(E2EVia, ThirtyHostNodes) {
  Lab lab(scratch / "lab", 30, LabKind{});
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry");
  ASSERT_TRUE(registry.up()) << registry.log();
  first_unchanged_and_dev_reload(*this, lab, registry, 30, archive("v1.tar", app_v1), archive("v2.tar", app_v2));
}

TEST_F(E2EVia, ANodeHoldingTheImageIsSkippedAndNodesMayUseAnotherAddress) {
  Lab lab(scratch / "lab", 3, LabKind{});
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry");
  ASSERT_TRUE(registry.up()) << registry.log();
  const auto v1 = archive("v1.tar", app_v1);
  auto direct = kload({"image-archive", v1, "--node", lab.uris()[0]});
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  // kload pushes to 127.0.0.1:PORT; the nodes pull from localhost:PORT.
  const auto port = registry.address().substr(registry.address().find(':') + 1);
  const auto r = load(v1, lab, {"--via", registry.address(), "--via-pull-address", "localhost:" + port, "--plain-http"});
  ASSERT_TRUE(r["ok"].get<bool>()) << last_err;
  EXPECT_EQ(r["via"]["pullAddress"], "localhost:" + port);
  EXPECT_EQ(r["nodes"][0]["images"][0]["action"], "present");
  EXPECT_EQ(r["nodes"][0]["layersPulled"], 0);
  EXPECT_EQ(r["nodes"][1]["images"][0]["action"], "sent");
  for (const auto& layer : layers_for(v1)) {
    EXPECT_EQ(gets_since(registry, 0)[layer], 2) << layer;
  }
  expect_only_the_name(lab, v1, 3);
}

TEST_F(E2EVia, APullFailureNamesTheNodeAndTheRegistryAndKeepsTheOldImage) {
  Lab lab(scratch / "lab", 3, LabKind{});
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry");
  ASSERT_TRUE(registry.up()) << registry.log();
  const auto v1 = archive("v1.tar", app_v1);
  const auto v2 = archive("v2.tar", app_v2);
  ASSERT_TRUE(load(v1, lab, {"--via", registry.address(), "--plain-http"})["ok"].get<bool>()) << last_err;
  // The nodes are told an address where no registry listens.
  Registry gone(scratch / "gone");
  const auto nowhere = gone.address();
  gone.stop();
  const auto r = load(v2, lab, {"--via", registry.address(), "--via-pull-address", nowhere, "--plain-http"}, 1);
  EXPECT_FALSE(r["ok"].get<bool>());
  for (int n = 1; n <= 3; ++n) {
    const auto& node = r["nodes"][n - 1];
    EXPECT_FALSE(node["ok"].get<bool>());
    const auto message = node["error"]["message"].get<std::string>();
    EXPECT_NE(message.find("node " + lab.node_name(n) + ": pulling " + nowhere), std::string::npos) << message;
    EXPECT_NE(message.find("could not pull from registry " + nowhere), std::string::npos) << message;
    EXPECT_NE(last_err.find("node \"" + lab.node_name(n) + "\": FAILED"), std::string::npos) << last_err;
  }
  // The name still points at the complete v1, and nothing else is left.
  expect_only_the_name(lab, v1, 3);
}

// Docker-hosted kind-shaped nodes running containerd 2.x (the Transfer API's pull):
// the registry listens on the lab network's gateway; CRI then lists the name with the
// image's ID.
TEST_F(E2EVia, KindShapedNodesPullThroughTheTransferApi) {
  KLOAD_REQUIRE_DOCKER();
  const char* env = std::getenv("KLOAD_TEST_CONTAINERD");
  Lab lab(scratch / "lab", 2, LabKind{true, env != nullptr && *env != '\0' ? env : "2.x"});
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry", "", registry_host(lab));
  ASSERT_TRUE(registry.up()) << registry.log();
  const auto v1 = archive("v1.tar", app_v1);
  const auto r = load(v1, lab, {"--via", registry.address(), "--plain-http"});
  ASSERT_TRUE(r["ok"].get<bool>()) << last_err;
  auto inspected = kload({"inspect", "--json", v1});
  const auto id = json::parse(inspected.out)["images"][0]["id"].get<std::string>();
  for (int n = 1; n <= 2; ++n) {
    auto listed = lab.exec(n, {"crictl", "images", "-o", "json"});
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    std::string found;
    const auto doc = json::parse(listed.out);
    for (const auto& image : doc["images"]) {
      for (const auto& tag : image["repoTags"]) {
        found = tag == app_name ? image["id"].get<std::string>() : found;
      }
    }
    EXPECT_EQ(found, id) << listed.out;
    for (const auto& [name, image] : lab.images(n)) {
      EXPECT_EQ(name.find("kload-staging"), std::string::npos) << name;
      EXPECT_EQ(name.find(registry.address()), std::string::npos) << name;
    }
  }
  for (const auto& layer : layers_for(v1)) {
    EXPECT_EQ(gets_since(registry, 0)[layer], 2) << layer;
  }
}

} // namespace
} // namespace kload::testing
