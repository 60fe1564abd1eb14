// `kload ls`, `kload rm` and `kload prune` through the built binary, on Docker-hosted
// nodes shaped as kind's (tools/lab up --docker: kind's names and labels, CRI on), found
// as a kind cluster by --name; what they did is checked on the nodes with ctr.
// KLOAD_TEST_CONTAINERD picks the nodes' containerd (2.x when unset).

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ctime>

namespace kload::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string containerd_version() {
  const char* env = std::getenv("KLOAD_TEST_CONTAINERD");
  return env != nullptr && *env != '\0' ? env : "2.x";
}

class E2ENodeImages : public ::testing::Test {
protected:
  void SetUp() override { KLOAD_REQUIRE_DOCKER(); }

  std::string archive(const std::string& file, const std::string& spec) {
    const auto path = (scratch / file).string();
    EXPECT_TRUE(mkimage({"--image", spec, path}));
    return path;
  }

  // Loads `archive` into the cluster's nodes (`picks`: only those), remembered in the
  // test's cache.
  void load(const Lab& lab, const std::string& archive, const std::string& picks = "") {
    std::vector<std::string> args{"image-archive", archive, "--name", lab.cluster(), "--cache", cache_dir};
    if (!picks.empty()) {
      args.insert(args.end(), {"--nodes", picks});
    }
    auto r = kload(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // name -> target on node `n`, from ctr.
  static std::map<std::string, std::string> targets(const Lab& lab, int n) {
    std::map<std::string, std::string> out;
    for (const auto& [name, image] : lab.images(n)) {
      out[name] = image.target;
    }
    return out;
  }

  // The names of the test's cache record for node `n`.
  std::vector<std::string> cached_names(const Lab& lab, int n) {
    auto r = kload({"cache", "ls", "--json", "--cache", cache_dir});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    const auto doc = json::parse(r.out);  // kept: a range over a part of a temporary would dangle
    for (const auto& record : doc["nodes"]) {
      if (record["node"] == lab.uris().at(static_cast<std::size_t>(n - 1))) {
        for (const auto& [name, v] : record["names"].items()) {
          out.push_back(name);
        }
      }
    }
    return out;
  }

  Scratch scratch;
  std::string cache_dir = (scratch / "cache").string();
};

TEST_F(E2ENodeImages, LsRmAndPruneOnAKindCluster) {
  Lab lab(scratch / "lab", 2, LabKind{true, containerd_version()});
  ASSERT_TRUE(lab.up());
  const auto both = lab.container(1) + "," + lab.container(2);
  load(lab, archive("app.tar", "app:v1=base:256K,top:64K"));
  load(lab, archive("one.tar", "only1:v1=base:256K,one:64K"), lab.container(1));
  load(lab, archive("split-a.tar", "split:v1=base:256K,a:64K"), lab.container(1));
  load(lab, archive("split-b.tar", "split:v1=base:256K,b:64K"), lab.container(2));
  const auto node1 = targets(lab, 1);
  const std::string app = "docker.io/library/app:v1";

  {
    SCOPED_TRACE("ls: every name, as JSON");
    auto r = kload({"ls", "--name", lab.cluster(), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = json::parse(r.out);
    EXPECT_EQ(doc["schema"], "kload.ls/v2");
    ASSERT_EQ(doc["nodes"].size(), 2u);
    std::map<std::string, json> rows;
    for (const auto& image : doc["images"]) {
      rows[image["name"].get<std::string>()] = image;
    }
    ASSERT_EQ(rows.size(), 3u) << doc.dump(1) << "\nno staging name, no CRI sha256:<ID> reference";
    EXPECT_EQ(rows[app]["state"], "present");
    EXPECT_EQ(rows[app]["nodes"][0]["target"], node1.at(app));
    EXPECT_EQ(rows["docker.io/library/only1:v1"]["state"], "missing");
    EXPECT_EQ(rows["docker.io/library/only1:v1"]["nodes"][1]["state"], "missing");
    EXPECT_EQ(rows["docker.io/library/split:v1"]["state"], "different");
  }
  {
    SCOPED_TRACE("ls: the table, and a filter normalised as loads normalise names");
    auto r = kload({"ls", "--name", lab.cluster()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto lines = split_lines(r.out);
    ASSERT_EQ(lines.size(), 5u) << r.out;  // heading, 3 names, what the marks mean
    EXPECT_THAT(lines[0], HasSubstr("control-plane  worker"));
    EXPECT_THAT(lines[1], HasSubstr(node1.at(app).substr(7, 12)));
    for (const auto& line : lines) {
      EXPECT_LE(line.size(), 80u) << line;
    }
    auto one = kload({"ls", "app:v1", "--name", lab.cluster(), "--json"});
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const auto doc = json::parse(one.out);
    ASSERT_EQ(doc["images"].size(), 1u);
    EXPECT_EQ(doc["images"][0]["name"], app);
  }
  {
    SCOPED_TRACE("ls --layers: which layers the names share, which node lacks what (unpacked counts)");
    auto r = kload({"ls", "only1:v1", "app:v1", "--layers", "--name", lab.cluster(), "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto doc = json::parse(r.out);
    ASSERT_EQ(doc["images"].size(), 2u);
    const auto& only1 = doc["images"][1];
    ASSERT_EQ(only1["name"], "docker.io/library/only1:v1");
    ASSERT_EQ(only1["layers"].size(), 2u) << only1.dump(1);
    for (const auto& layer : only1["layers"]) {
      const bool shared = layer["sharedBy"] == 2;  // base: app's too
      EXPECT_EQ(layer["sharedBy"], shared ? 2 : 1) << layer;
      EXPECT_EQ(layer["held"], (json{true, shared})) << layer << ": node 2 holds base, unpacked for app";
    }
    auto text = kload({"ls", "only1:v1", "--layers", "--name", lab.cluster()});
    ASSERT_EQ(text.exit_code, 0) << text.err;
    EXPECT_THAT(text.out, HasSubstr("  LAYER         SHARED  control-plane  worker"));
  }
  {
    SCOPED_TRACE("rm: only exact names; a dry run changes nothing");
    auto latest = kload({"rm", "app", "--name", lab.cluster(), "--cache", cache_dir});
    EXPECT_EQ(latest.exit_code, 0) << latest.err;
    EXPECT_THAT(latest.err, HasSubstr("docker.io/library/app:latest is not there"));
    auto dry =
        kload({"rm", "app:v1", "only1:v1", "--name", lab.cluster(), "--cache", cache_dir, "--dry-run", "--json"});
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    const auto report = json::parse(dry.out);
    EXPECT_EQ(report["nodes"][0]["removed"].size(), 2u) << report.dump(1);
    EXPECT_EQ(report["nodes"][1]["absent"], json::array({"docker.io/library/only1:v1"}));
    EXPECT_EQ(targets(lab, 1), node1);
    auto staging = kload({"rm", "localhost/kload-staging/0123456789ab:1-2-3", "--name", lab.cluster()});
    EXPECT_EQ(staging.exit_code, 2);
    EXPECT_THAT(staging.err, HasSubstr("kload prune"));
  }
  {
    SCOPED_TRACE("rm: the names go from the nodes and from the cache");
    EXPECT_THAT(cached_names(lab, 1), ::testing::Contains(app));
    auto r = kload({"rm", "app:v1", "only1:v1", "--name", lab.cluster(), "--cache", cache_dir, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (int n = 1; n <= 2; ++n) {
      const auto now = targets(lab, n);
      EXPECT_FALSE(now.contains(app)) << "node " << n;
      EXPECT_FALSE(now.contains("docker.io/library/only1:v1")) << "node " << n;
      EXPECT_TRUE(now.contains("docker.io/library/split:v1")) << "node " << n;
      EXPECT_THAT(cached_names(lab, n), ::testing::Not(::testing::Contains(app))) << "node " << n;
    }
  }
  {
    SCOPED_TRACE("prune: staging names of ended loads only, and the cache records");
    const auto now = std::time(nullptr);
    const auto ended = "localhost/kload-staging/0123456789ab:" + std::to_string(now - 7200) + "-99-abc";
    const auto recent = "localhost/kload-staging/0123456789ab:" + std::to_string(now) + "-99-abc";
    for (const auto& name : {ended, recent}) {
      ASSERT_EQ(lab.ctr(1, {"images", "tag", "docker.io/library/split:v1", name}).exit_code, 0);
    }
    auto dry = kload({"prune", "--name", lab.cluster(), "--cache", cache_dir, "--dry-run"});
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    EXPECT_THAT(dry.err, HasSubstr("would remove " + ended));
    EXPECT_TRUE(targets(lab, 1).contains(ended));
    auto r = kload({"prune", "--name", lab.cluster(), "--cache", cache_dir});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto after = targets(lab, 1);
    EXPECT_FALSE(after.contains(ended));
    EXPECT_TRUE(after.contains(recent)) << "made within the hour elsewhere: its load may still run";
    EXPECT_TRUE(after.contains("docker.io/library/split:v1"));
    auto records = kload({"cache", "ls", "--json", "--cache", cache_dir});
    EXPECT_EQ(json::parse(records.out)["nodes"], json::array()) << records.out;
  }
  {
    SCOPED_TRACE("ls: a node that fails is named, in one line, and in its column");
    auto r = kload({"ls", "split:v1", "--node", lab.uris().at(0), "--node", "docker://" + lab.cluster() + "-gone"});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    int failures = 0;
    for (const auto& line : split_lines(r.err)) {
      failures += line.find(lab.cluster() + "-gone") != std::string::npos && line.find("FAILED") != std::string::npos;
    }
    EXPECT_EQ(failures, 1) << r.err;
    EXPECT_THAT(r.out, HasSubstr("failed")) << r.out;
  }
}

} // namespace
} // namespace kload::testing
