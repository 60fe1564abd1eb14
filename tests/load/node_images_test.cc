// The names on nodes apart from any load (`ls`, `rm`, `prune`): name matching and the
// state of each name, with plain values; the protocol on the in-memory containerd,
// where every call is recorded.

#include "kload/cache/cache.h"
#include "kload/load/node_images.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "load/fake_node.h"
#include "load/staging.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <fstream>

namespace kload::load {
namespace {

using test::FakeNode;
using Op = FakeNode::Op;

// Puts an image named `name` on `node`: a manifest and, when `complete`, its config.
util::Digest put_image(FakeNode& node, const std::string& name, const std::string& seed, bool complete = true) {
  const std::string config = R"({"seed":")" + seed + R"("})";
  const auto config_digest = util::Sha256::of(config);
  const std::string manifest = R"({"config":{"digest":")" + config_digest.str() + R"("},"layers":[]})";
  const auto target = util::Sha256::of(manifest);
  node.content[target] = manifest;
  if (complete) {
    node.content[config_digest] = config;
  }
  node.images[name] = target;
  return target;
}

Target target_of(FakeNode& node, const std::string& container) {
  return Target{*node::parse_node_uri("docker://" + container), &node, nullptr};
}

node::ImageStatus status(const std::string& name, const util::Digest& target, bool complete = true) {
  return node::ImageStatus{name, target, complete};
}

const util::Digest a = util::Sha256::of("a");
const util::Digest b = util::Sha256::of("b");

TEST(NodeImagesNames, NormalisedAsLoadsNormaliseThem) {
  auto names = normalize_names({"app", "app:latest", "docker.io/library/app", "user/app:v1",
                                "registry.example.com:5000/team/app:v2"});
  ASSERT_TRUE(names) << names.error().message;
  EXPECT_EQ(*names, (std::vector<std::string>{"docker.io/library/app:latest", "docker.io/user/app:v1",
                                              "registry.example.com:5000/team/app:v2"}));
  auto bad = normalize_names({"app", "App:v1"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, util::ErrorKind::usage);
  EXPECT_NE(bad.error().message.find("\"App:v1\""), std::string::npos) << bad.error().message;
}

TEST(NodeImagesNames, RemovalRefusesStagingNames) {
  auto r = names_to_remove({"app:v1", "localhost/kload-staging/0123456789ab:1-2-3"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
  EXPECT_NE(r.error().message.find("kload prune"), std::string::npos) << r.error().message;
  auto ok = names_to_remove({"app:v1"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, std::vector<std::string>{"docker.io/library/app:v1"});
}

TEST(NodeImagesNames, WithoutFilterStagingAndCriIdNamesAreLeftOut) {
  const std::vector<node::ImageStatus> statuses{
      status("docker.io/library/b:v1", a), status("localhost/kload-staging/0123456789ab:1-2-3", a),
      status(a.str(), a), status("docker.io/library/a:v1", b)};
  const auto all = shown_names(statuses, {});
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "docker.io/library/a:v1");
  EXPECT_EQ(all[1].name, "docker.io/library/b:v1");
  // A filter keeps exactly its names, a staging name too when asked for.
  const auto one = shown_names(statuses, {"docker.io/library/b:v1", "localhost/kload-staging/0123456789ab:1-2-3"});
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].name, "docker.io/library/b:v1");
  EXPECT_TRUE(shown_names(statuses, {"docker.io/library/b"}).empty()) << "no prefix match";
}

TEST(NodeImagesStates, PresentMissingIncompleteDifferent) {
  std::vector<NodeNames> nodes(3);
  nodes[0].images = {status("docker.io/library/same:v1", a), status("docker.io/library/split:v1", a),
                     status("docker.io/library/half:v1", a), status("docker.io/library/broken:v1", a, false)};
  nodes[1].images = {status("docker.io/library/same:v1", a), status("docker.io/library/split:v1", b),
                     status("docker.io/library/broken:v1", a)};
  nodes[2].images = {status("docker.io/library/same:v1", a), status("docker.io/library/split:v1", a),
                     status("docker.io/library/half:v1", a), status("docker.io/library/broken:v1", a)};
  const auto rows = name_rows(nodes, {});
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].name, "docker.io/library/broken:v1");
  EXPECT_EQ(rows[0].state, NameState::incomplete);
  EXPECT_EQ(rows[0].states, (std::vector<NameState>{NameState::incomplete, NameState::present, NameState::present}));
  EXPECT_EQ(rows[1].name, "docker.io/library/half:v1");
  EXPECT_EQ(rows[1].state, NameState::missing);
  EXPECT_EQ(rows[1].states, (std::vector<NameState>{NameState::present, NameState::missing, NameState::present}));
  EXPECT_FALSE(rows[1].on[1].has_value());
  EXPECT_EQ(rows[2].name, "docker.io/library/same:v1");
  EXPECT_EQ(rows[2].state, NameState::present);
  EXPECT_EQ(rows[3].name, "docker.io/library/split:v1");
  EXPECT_EQ(rows[3].state, NameState::different);
  EXPECT_EQ(rows[3].states, (std::vector<NameState>{NameState::different, NameState::different, NameState::different}));
  EXPECT_EQ(rows[3].on[1]->target, b);
}

// Issue 13, `ls --layers`: which layers the names share and which node lacks what. A
// node holds a layer when it has the blob, or when the name is complete there (kind's
// nodes discard layer blobs once unpacked); a node that failed is unknown.
TEST(NodeImagesLayers, SharedLayersAndWhoHoldsThem) {
  const auto base = util::Sha256::of("base");
  const auto top = util::Sha256::of("top");
  const auto tool = util::Sha256::of("tool");
  const auto index = util::Sha256::of("index");
  std::vector<NodeNames> nodes(3);
  // node 0 has app (a: base, top) and tool (b, behind an index: base, tool) with blobs.
  nodes[0].images = {status("docker.io/library/app:v1", a), status("docker.io/library/tool:v1", index)};
  nodes[0].inventory = node::NodeInventory{{base, top, tool}, {}, {{index, {b}}}, {{a, {top, base}}, {b, {base, tool}}}};
  // node 1 has app, complete, with its layer blobs discarded after unpacking.
  nodes[1].images = {status("docker.io/library/app:v1", a)};
  nodes[1].inventory = node::NodeInventory{{}, {}, {}, {{a, {base, top}}}};
  nodes[2].error = "node n3: not reachable";
  const auto rows = name_rows(nodes, {});
  ASSERT_EQ(rows.size(), 2u);
  const auto app = layer_rows(rows[0], rows, nodes);
  ASSERT_EQ(app.size(), 2u);
  const auto& app_base = app[0].digest == base ? app[0] : app[1];
  const auto& app_top = app[0].digest == base ? app[1] : app[0];
  EXPECT_EQ(app_base.shared_by, 2u) << "app and tool";
  EXPECT_EQ(app_top.shared_by, 1u);
  EXPECT_EQ(app_base.held, (std::vector<std::optional<bool>>{true, true, std::nullopt}));
  const auto tool_layers = layer_rows(rows[1], rows, nodes);
  ASSERT_EQ(tool_layers.size(), 2u) << "the index's platform manifest's layers";
  for (const auto& l : tool_layers) {
    EXPECT_EQ(l.held[0], true);
    EXPECT_EQ(l.held[1], l.digest == base) << "node 1 has base, unpacked for app, though not tool:v1; not tool";
    EXPECT_FALSE(l.held[2].has_value());
  }
}

TEST(NodeImagesStates, WantedNamesAreRowsEvenWhereNoNodeHasThem) {
  std::vector<NodeNames> nodes(2);
  nodes[0].images = {status("docker.io/library/app:v1", a)};
  nodes[1].error = "node two: not reachable";
  const auto rows = name_rows(nodes, {"docker.io/library/app:v1", "docker.io/library/gone:v1"});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].state, NameState::present) << "a node that failed says nothing against it";
  EXPECT_EQ(rows[0].states[1], NameState::unknown);
  EXPECT_EQ(rows[1].state, NameState::missing);
  std::vector<NodeNames> failed(1);
  failed[0].error = "node one: not reachable";
  EXPECT_EQ(name_rows(failed, {"docker.io/library/app:v1"}).at(0).state, NameState::unknown);
  EXPECT_TRUE(name_rows(failed, {}).empty());
}

TEST(NodeImagesProtocol, ReadIsOneCheckPerNode) {
  FakeNode one;
  FakeNode two;
  put_image(one, "docker.io/library/app:v1", "1");
  put_image(one, "localhost/kload-staging/0123456789ab:1-2-3", "1");
  put_image(two, "docker.io/library/app:v1", "2");
  two.fail(Op::check, 1, "node two: not reachable: ctr: connection refused");
  const auto answers = read_names({target_of(one, "one"), target_of(two, "two")}, {}, 2);
  EXPECT_EQ(one.log, std::vector<Op>{Op::check});
  EXPECT_EQ(two.log, std::vector<Op>{Op::check});
  ASSERT_EQ(answers.size(), 2u);
  ASSERT_EQ(answers[0].images.size(), 1u);
  EXPECT_EQ(answers[0].images[0].name, "docker.io/library/app:v1");
  EXPECT_TRUE(answers[1].failed());
  EXPECT_EQ(answers[1].error, "node two: not reachable: ctr: connection refused");
}

TEST(NodeImagesProtocol, RemoveTakesExactlyTheNamesAndConfirms) {
  FakeNode node;
  put_image(node, "docker.io/library/app:v1", "1");
  put_image(node, "docker.io/library/app:v10", "2");
  put_image(node, "docker.io/library/app:latest", "3");
  const auto removals = remove_names({target_of(node, "n")}, {"docker.io/library/app:v1", "docker.io/library/x:v1"},
                                     LoadOptions{1, DryRun::no, nullptr});
  ASSERT_EQ(removals.size(), 1u);
  EXPECT_FALSE(removals[0].failed()) << removals[0].error;
  EXPECT_EQ(removals[0].removed, std::vector<std::string>{"docker.io/library/app:v1"});
  EXPECT_EQ(removals[0].absent, std::vector<std::string>{"docker.io/library/x:v1"});
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::remove, Op::check}));
  EXPECT_FALSE(node.images.contains("docker.io/library/app:v1"));
  EXPECT_TRUE(node.images.contains("docker.io/library/app:v10"));
  EXPECT_TRUE(node.images.contains("docker.io/library/app:latest"));
}

TEST(NodeImagesProtocol, DryRunOnlyChecks) {
  FakeNode node;
  put_image(node, "docker.io/library/app:v1", "1");
  const auto removals =
      remove_names({target_of(node, "n")}, {"docker.io/library/app:v1"}, LoadOptions{1, DryRun::yes, nullptr});
  EXPECT_EQ(removals[0].removed, std::vector<std::string>{"docker.io/library/app:v1"});
  EXPECT_EQ(node.log, std::vector<Op>{Op::check});
  EXPECT_TRUE(node.images.contains("docker.io/library/app:v1"));
}

TEST(NodeImagesProtocol, AbsentEverywhereIsNoRemoval) {
  FakeNode node;
  const auto removals =
      remove_names({target_of(node, "n")}, {"docker.io/library/app:v1"}, LoadOptions{1, DryRun::no, nullptr});
  EXPECT_FALSE(removals[0].failed());
  EXPECT_TRUE(removals[0].removed.empty());
  EXPECT_EQ(node.log, std::vector<Op>{Op::check});
}

TEST(NodeImagesProtocol, ANameThatComesBackFailsTheNode) {
  FakeNode node;
  const auto target = put_image(node, "docker.io/library/app:v1", "1");
  // Another client points the name at the image again between the removal and the check.
  node.before(Op::check, 2, [&](FakeNode& n) { n.images["docker.io/library/app:v1"] = target; });
  const auto removals =
      remove_names({target_of(node, "n")}, {"docker.io/library/app:v1"}, LoadOptions{1, DryRun::no, nullptr});
  ASSERT_TRUE(removals[0].failed());
  EXPECT_NE(removals[0].error.find("node n: docker.io/library/app:v1 still there"), std::string::npos)
      << removals[0].error;
  EXPECT_TRUE(removals[0].removed.empty());
}

TEST(NodeImagesProtocol, AFailedRemovalIsStillCheckedOnTheNode) {
  FakeNode node;
  put_image(node, "docker.io/library/app:v1", "1");
  node.fail(Op::remove, 1, "node n: removing docker.io/library/app:v1: ctr: deadline exceeded");
  const auto removals =
      remove_names({target_of(node, "n")}, {"docker.io/library/app:v1"}, LoadOptions{1, DryRun::no, nullptr});
  ASSERT_TRUE(removals[0].failed());
  EXPECT_EQ(removals[0].error, "node n: removing docker.io/library/app:v1: ctr: deadline exceeded");
  EXPECT_TRUE(removals[0].removed.empty()) << "the name is still there";
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::remove, Op::check}));
}

class NodeImagesCache : public ::testing::Test {
protected:
  testing::Scratch scratch;
  std::unique_ptr<cache::Cache> store = *cache::Cache::open(scratch / "cache", [](const std::string&) {});
};

TEST_F(NodeImagesCache, RemovedNamesLeaveTheRecordWithTheirBlobs) {
  FakeNode node;
  const auto v1 = put_image(node, "docker.io/library/app:v1", "1");
  const auto v2 = put_image(node, "docker.io/library/app:v2", "2");
  const auto blob1 = util::Sha256::of("layer1");
  const auto blob2 = util::Sha256::of("layer2");
  ASSERT_TRUE(store->update_node("docker://n", [&](cache::NodeRecord& r) {
    r.server_uuid = node.uuid;
    r.names["docker.io/library/app:v1"] = cache::NameRecord{v1, {}, true, true, 1};
    r.names["docker.io/library/app:v2"] = cache::NameRecord{v2, {}, true, true, 1};
    r.names["docker.io/library/old:v1"] = cache::NameRecord{v1, {}, true, true, 1};
    r.blobs = {blob1, blob2};
    r.target_blobs[v1] = {blob1};
    r.target_blobs[v2] = {blob2};
  }));
  const auto removals = remove_names({target_of(node, "n")}, {"docker.io/library/app:v1", "docker.io/library/old:v1"},
                                     LoadOptions{1, DryRun::no, store.get()});
  ASSERT_FALSE(removals[0].failed()) << removals[0].error;
  EXPECT_EQ(removals[0].absent, std::vector<std::string>{"docker.io/library/old:v1"});
  const auto record = *store->node("docker://n");
  ASSERT_TRUE(record.has_value());
  EXPECT_FALSE(record->names.contains("docker.io/library/app:v1"));
  EXPECT_FALSE(record->names.contains("docker.io/library/old:v1")) << "absent on the node: the record lied";
  EXPECT_TRUE(record->names.contains("docker.io/library/app:v2"));
  EXPECT_FALSE(record->blobs.contains(blob1)) << "only the removed name held it: containerd collects it";
  EXPECT_TRUE(record->blobs.contains(blob2));
}

TEST_F(NodeImagesCache, NoRecordIsMadeForANodeWithoutOne) {
  FakeNode node;
  put_image(node, "docker.io/library/app:v1", "1");
  remove_names({target_of(node, "n")}, {"docker.io/library/app:v1"}, LoadOptions{1, DryRun::no, store.get()});
  EXPECT_FALSE(store->node("docker://n")->has_value());
}

TEST_F(NodeImagesCache, PruneRemovesOnlyStagingNamesOfEndedLoads) {
  FakeNode node;
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const std::string prefix = "localhost/kload-staging/0123456789ab:";
  const auto dead_here = prefix + std::to_string(now) + "-" + boot_tag() + "-" + std::to_string(getpid()) +
                         ".1-00000001";  // this machine, a process that is gone (wrong start time)
  const auto live_here =
      prefix + std::to_string(now) + "-" + boot_tag() + "-" + util::own_process_token() + "-00000002";
  const auto old_elsewhere = prefix + std::to_string(now - 7200) + "-99-abc";
  const auto new_elsewhere = prefix + std::to_string(now - 60) + "-99-abc";
  for (const auto& n : {dead_here, live_here, old_elsewhere, new_elsewhere}) {
    put_image(node, n, n);
  }
  put_image(node, "docker.io/library/app:v1", "app");
  ASSERT_TRUE(store->update_node("docker://n", [&](cache::NodeRecord& r) { r.server_uuid = node.uuid; }));

  auto ended = std::vector<std::string>{dead_here, old_elsewhere};
  std::sort(ended.begin(), ended.end());  // as the node lists them
  auto dry = prune({target_of(node, "n")}, LoadOptions{1, DryRun::yes, store.get()}, now);
  EXPECT_EQ(dry[0].removed, ended);
  EXPECT_EQ(dry[0].kept, 2u);
  EXPECT_TRUE(dry[0].record_forgotten);
  EXPECT_EQ(node.log, std::vector<Op>{Op::check});
  EXPECT_TRUE(store->node("docker://n")->has_value());

  auto done = prune({target_of(node, "n")}, LoadOptions{1, DryRun::no, store.get()}, now);
  ASSERT_FALSE(done[0].failed()) << done[0].error;
  EXPECT_EQ(done[0].removed, ended);
  EXPECT_TRUE(done[0].record_forgotten);
  EXPECT_FALSE(node.images.contains(dead_here));
  EXPECT_FALSE(node.images.contains(old_elsewhere));
  EXPECT_TRUE(node.images.contains(live_here)) << "a live load's staging name is never removed";
  EXPECT_TRUE(node.images.contains(new_elsewhere)) << "made elsewhere within the hour: may still run";
  EXPECT_TRUE(node.images.contains("docker.io/library/app:v1"));
  EXPECT_FALSE(store->node("docker://n")->has_value());
}

TEST_F(NodeImagesCache, PruneForgetsTheRecordOfANodeThatDoesNotAnswer) {
  FakeNode node;
  node.fail(Op::check, 1, "node n: not reachable: no such container");
  ASSERT_TRUE(store->update_node("docker://n", [&](cache::NodeRecord& r) { r.server_uuid = node.uuid; }));
  auto done = prune({target_of(node, "n")}, LoadOptions{1, DryRun::no, store.get()}, 0);
  EXPECT_TRUE(done[0].failed());
  EXPECT_TRUE(done[0].record_forgotten);
  EXPECT_FALSE(store->node("docker://n")->has_value());
}

} // namespace
} // namespace kload::load
