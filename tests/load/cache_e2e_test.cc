// The inventory cache against real nodes: warm reloads make no listing, a recreated
// node is listed again, a cache that lies is corrected, a damaged cache is rebuilt.

#include "kload/cache/cache.h"
#include "kload/util/process.h"
#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

namespace kload::testing {
namespace {

using nlohmann::json;

class E2ECache : public ::testing::Test {
protected:
  Scratch scratch;
  std::string cache_dir = (scratch / "cache").string();

  json load(const std::string& archive, const std::vector<std::string>& uris, const std::vector<std::string>& extra = {},
            std::string* err = nullptr) {
    std::vector<std::string> args{"image-archive", "--json", "--cache", cache_dir, archive};
    args.insert(args.end(), extra.begin(), extra.end());
    for (const auto& u : uris) {
      args.push_back("--node");
      args.push_back(u);
    }
    auto r = kload(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (err != nullptr) {
      *err = r.err;
    }
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
    return j;
  }

  std::string archive(const std::string& name, const std::string& spec) {
    const auto path = (scratch / name).string();
    mkimage({"--image", spec, path});
    return path;
  }
};

TEST_F(E2ECache, WarmReloadsMakeNoListing) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:2M,top1:256K");
  const auto v2 = archive("v2.tar", "app:v1=base:2M,top2:256K");
  auto first = load(v1, lab.uris());
  auto unchanged = load(v1, lab.uris());
  auto changed = load(v2, lab.uris());
  auto back = load(v1, lab.uris());
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first["nodes"][i]["listings"], 1);
    EXPECT_EQ(unchanged["nodes"][i]["ctrCalls"], 1) << "only the image-ID check";
    EXPECT_EQ(unchanged["nodes"][i]["listings"], 0);
    EXPECT_EQ(changed["nodes"][i]["listings"], 0) << "the check and the import, no listing";
    EXPECT_EQ(changed["nodes"][i]["layersSent"], 1);
    EXPECT_FALSE(changed["nodes"][i]["retried"].get<bool>());
    // Back to v1. Without CRI, containerd collected top1 when the name moved to v2,
    // and the cache knew it would, so top1 is planned and sent without a failed first
    // attempt. With CRI (kind-shaped nodes), CRI's own "sha256:<ID>" reference kept v1
    // whole, and the check of every name shows it: a retag, nothing sent.
    EXPECT_EQ(back["nodes"][i]["listings"], 0);
    EXPECT_EQ(back["nodes"][i]["layersSent"], lab.kind().docker ? 0 : 1) << back.dump();
    EXPECT_FALSE(back["nodes"][i]["retried"].get<bool>());
  }
  EXPECT_EQ(unchanged["hashed"]["bytes"], 0);
  EXPECT_EQ(back["hashed"]["bytes"], 0) << "top1 was proven by the first run and the file is unchanged";
  auto ls = kload({"cache", "ls", "--json", "--cache", cache_dir});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  auto nodes = json::parse(ls.out)["nodes"];
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_TRUE(nodes[0]["names"]["docker.io/library/app:v1"]["byKload"].get<bool>());
}

// Issue 13: `cache --node` takes a node's short name, as the load lines show it, or its
// URI written any way that names the same node; a name the cache does not have is one
// line saying which names it has.
TEST_F(E2ECache, CacheNodeTakesTheShortNameOrTheUriAnyWayWritten) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:64K");
  const auto first = load(v1, lab.uris());
  const auto name1 = first["nodes"][0]["node"].get<std::string>();
  const auto name2 = first["nodes"][1]["node"].get<std::string>();
  ASSERT_NE(name1, name2);
  const auto records = [&](const std::vector<std::string>& nodes) {
    std::vector<std::string> args{"cache", "ls", "--json", "--cache", cache_dir};
    for (const auto& n : nodes) {
      args.insert(args.end(), {"--node", n});
    }
    auto r = kload(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> keys;
    const auto doc = json::parse(r.out, nullptr, false);
    for (const auto& record : doc["nodes"]) {
      keys.push_back(record["node"].get<std::string>());
    }
    return keys;
  };
  EXPECT_EQ(records({name2}), (std::vector<std::string>{lab.uris()[1]}));
  EXPECT_EQ(records({lab.uris()[1] + (lab.uris()[1].find('?') == std::string::npos ? "?" : "&") + "namespace=k8s.io"}), (std::vector<std::string>{lab.uris()[1]}));
  EXPECT_EQ(records({}).size(), 2u);

  auto unknown = kload({"cache", "forget", "--cache", cache_dir, "--node", "nowhere"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--node nowhere: no node of that name in the cache (it has: "), std::string::npos)
      << unknown.err;
  EXPECT_NE(unknown.err.find(name1), std::string::npos) << unknown.err;

  auto forget = kload({"cache", "forget", "--cache", cache_dir, "--node", name1});
  ASSERT_EQ(forget.exit_code, 0) << forget.err;
  EXPECT_NE(forget.err.find("forgot 1 node(s)"), std::string::npos) << forget.err;
  EXPECT_EQ(records({}), (std::vector<std::string>{lab.uris()[1]}));
}

TEST_F(E2ECache, RecreatedNodeIsListedAgain) {
  const auto v1 = archive("v1.tar", "app:v1=base:1M,top1:128K");
  std::vector<std::string> uris;
  {
    Lab lab(scratch / "lab", 1);
    ASSERT_TRUE(lab.up());
    uris = lab.uris();
    load(v1, uris);
  }
  Lab again(scratch / "lab", 1);  // same directory and URI, a new containerd
  ASSERT_TRUE(again.up());
  ASSERT_EQ(again.uris(), uris);
  auto report = load(v1, uris);
  EXPECT_EQ(report["nodes"][0]["layersSent"], 2);
  EXPECT_EQ(report["nodes"][0]["listings"], 1);
  EXPECT_FALSE(report["nodes"][0]["retried"].get<bool>()) << "the new UUID was noticed before importing";
}

TEST_F(E2ECache, CacheThatClaimsTooMuchIsCorrected) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:1M,top1:128K");
  const auto v2 = archive("v2.tar", "app:v1=base:1M,top2:128K");
  load(v1, lab.uris());
  // Behind kload's back: the image and its content go. Every name goes, as with
  // `crictl rmi`: on a CRI node the image's "sha256:<ID>" name would keep it alive.
  std::vector<std::string> rm{"images", "rm", "--sync"};
  for (const auto& name : split_lines(lab.ctr(1, {"images", "ls", "-q"}).out)) {
    rm.push_back(name);  // CRI's sha256:<ID> reference included, unlike Lab::images
  }
  ASSERT_EQ(lab.ctr(1, rm).exit_code, 0);
  auto report = load(v2, lab.uris());
  EXPECT_TRUE(report["nodes"][0]["ok"].get<bool>());
  EXPECT_TRUE(report["nodes"][0]["retried"].get<bool>());
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_TRUE(image.complete) << name;
  }
  auto again = load(v2, lab.uris());
  EXPECT_EQ(again["nodes"][0]["ctrCalls"], 1);
}

TEST_F(E2ECache, NoCacheListsEveryTimeAndWritesNothing) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:1M,top1:128K");
  const auto v2 = archive("v2.tar", "app:v1=base:1M,top2:128K");
  load(v1, lab.uris(), {"--no-cache"});
  auto report = load(v2, lab.uris(), {"--no-cache"});
  EXPECT_EQ(report["nodes"][0]["listings"], 1);
  EXPECT_FALSE(std::filesystem::exists(cache_dir));
}

TEST_F(E2ECache, DamagedCacheIsReportedOnceAndRebuilt) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:1M,top1:128K");
  std::filesystem::create_directories(cache_dir);
  write_file(std::filesystem::path(cache_dir) / "data.mdb", std::string(8192, '\x07'));
  std::string err;
  auto report = load(v1, lab.uris(), {}, &err);
  EXPECT_TRUE(report["ok"].get<bool>());
  EXPECT_NE(err.find("warning: cache"), std::string::npos) << err;
  std::string err2;
  load(v1, lab.uris(), {}, &err2);
  EXPECT_EQ(err2.find("warning: cache"), std::string::npos) << "reported once: " << err2;
}

// A load that died after sending (killed, crashed) leaves blobs on the node that the
// cache does not list; its mark in the node's record makes the next load list that
// node instead of resending them. Node 1 carries such a mark, node 2 has the same
// stale record without it: only node 2 is sent the layer again.
TEST_F(E2ECache, InterruptedLoadMakesTheNextLoadListTheNode) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto v1 = archive("v1.tar", "app:v1=base:2M,top1:256K");
  const auto v2 = archive("v2.tar", "app:v1=base:2M,top2:256K");
  const auto other = archive("other.tar", "app:other=top2:256K");  // not v2 itself: that would be a retag
  load(v1, lab.uris());
  // top2 reaches both nodes behind the cache's back.
  auto r = kload({"image-archive", "--no-cache", other, "--node", lab.uris()[0], "--node", lab.uris()[1]});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    _exit(0);
  }
  const auto token = util::process_token(pid);
  int status = 0;
  waitpid(pid, &status, 0);
  {
    auto cache = cache::Cache::open(cache_dir, [](const std::string&) {});
    ASSERT_TRUE(cache.has_value()) << cache.error().message;
    ASSERT_TRUE((*cache)->update_node(lab.uris()[0], [&](cache::NodeRecord& rec) {
      rec.sending.push_back(token.empty() ? std::to_string(pid) + ".1" : token);
    }));
  }

  auto report = load(v2, lab.uris());
  ASSERT_EQ(report["nodes"].size(), 2u);
  for (const auto& node : report["nodes"]) {
    if (node["uri"] == lab.uris()[0]) {
      EXPECT_EQ(node["listings"], 1) << node.dump();
      EXPECT_EQ(node["layersSent"], 0) << node.dump();
    } else {
      EXPECT_EQ(node["listings"], 0) << node.dump();
      EXPECT_EQ(node["layersSent"], 1) << "a stale record without a mark is trusted: " << node.dump();
    }
  }
  auto cache = cache::Cache::open(cache_dir, [](const std::string&) {});
  ASSERT_TRUE(cache.has_value());
  auto rec = (*cache)->node(lab.uris()[0]);
  ASSERT_TRUE(rec && *rec);
  EXPECT_TRUE((*rec)->sending.empty()) << "the listing dropped the dead load's mark, the load its own";
}

} // namespace
} // namespace kload::testing
