// How `kload ls` shows the names on nodes: a table that fits 80 columns, one block per
// node when it cannot, and the kload.ls/v2 document.

#include "kload/cli/images_view.h"
#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

namespace kload::cli {
namespace {

using load::NameState;

const util::Digest a = util::Sha256::of("a");
const util::Digest b = util::Sha256::of("b");

node::ImageStatus status(const std::string& name, const util::Digest& target, bool complete = true) {
  return node::ImageStatus{name, target, complete};
}

std::vector<NodeHeading> headings(const std::vector<std::string>& names) {
  std::vector<NodeHeading> out;
  for (const auto& n : names) {
    out.push_back(NodeHeading{n, "docker://" + n, ""});
  }
  return out;
}

std::size_t widest(const std::string& text) {
  std::size_t w = 0;
  for (const auto& line : testing::split_lines(text)) {
    w = std::max(w, line.size());
  }
  return w;
}

TEST(ImagesView, ShortNodeNamesDropTheClusterPrefix) {
  EXPECT_EQ(short_node_names({"kind-control-plane", "kind-worker", "kind-worker2"}),
            (std::vector<std::string>{"control-plane", "worker", "worker2"}));
  EXPECT_EQ(short_node_names({"my-dev-control-plane", "my-dev-worker"}),
            (std::vector<std::string>{"control-plane", "worker"}));
  EXPECT_EQ(short_node_names({"kind-control-plane"}), std::vector<std::string>{"kind-control-plane"});
  EXPECT_EQ(short_node_names({"node1", "node2"}), (std::vector<std::string>{"node1", "node2"})) << "no '-'";
  EXPECT_EQ(short_node_names({"kind-worker", "kind-worker2"}), (std::vector<std::string>{"worker", "worker2"}));
  EXPECT_EQ(short_node_names({"a-b", "a-b"}), (std::vector<std::string>{"b", "b"}));
  EXPECT_EQ(short_node_names({"kind-", "kind-worker"}), (std::vector<std::string>{"kind-", "kind-worker"}))
      << "never a whole name";
}

TEST(ImagesView, ThreeKindNodesFitEightyColumns) {
  const auto nodes = headings({"kind-control-plane", "kind-worker", "kind-worker2"});
  std::vector<load::NodeNames> answers(3);
  answers[0].images = {status("docker.io/library/app:dev", a), status("docker.io/library/nginx:1.25", a, false)};
  answers[1].images = {status("docker.io/library/app:dev", a), status("docker.io/library/nginx:1.25", a)};
  answers[2].images = {status("docker.io/library/app:dev", b)};
  const auto rows = load::name_rows(answers, {});
  const auto table = images_table(nodes, rows, table_width);
  const auto lines = testing::split_lines(table);
  ASSERT_EQ(lines.size(), 4u) << table;
  EXPECT_LE(widest(table), 80u) << table;
  const auto ha = a.short_hex();
  const auto hb = b.short_hex();
  EXPECT_EQ(lines[0], "IMAGE                         control-plane  worker         worker2");
  EXPECT_EQ(lines[1], "docker.io/library/app:dev     " + ha + "!  " + ha + "!  " + hb + "!");
  EXPECT_EQ(lines[2], "docker.io/library/nginx:1.25  " + ha + "*  " + ha + "   -");
  EXPECT_EQ(lines[3], "! different: the nodes disagree on the target  * incomplete  - missing");
}

TEST(ImagesView, AFailedNodeSaysSoInItsColumn) {
  auto nodes = headings({"kind-control-plane", "kind-worker"});
  nodes[1].error = "node kind-worker: not reachable";
  std::vector<load::NodeNames> answers(2);
  answers[0].images = {status("docker.io/library/app:dev", a)};
  answers[1].error = nodes[1].error;
  const auto table = images_table(nodes, load::name_rows(answers, {}), table_width);
  const auto lines = testing::split_lines(table);
  ASSERT_EQ(lines.size(), 2u) << table << "no mark, no legend";
  EXPECT_EQ(lines[1], "docker.io/library/app:dev  " + a.short_hex() + "   failed");
}

TEST(ImagesView, TooManyNodesForTheWidthGiveOneBlockPerNode) {
  std::vector<std::string> names;
  std::vector<load::NodeNames> answers(6);
  for (int i = 0; i < 6; ++i) {
    names.push_back("kind-worker" + std::to_string(i + 1));
    if (i != 3) {
      answers[i].images = {status("docker.io/library/app:dev", a)};
    }
  }
  auto nodes = headings(names);
  nodes[5].error = "node kind-worker6: not reachable";
  answers[5].error = nodes[5].error;
  answers[5].images.clear();
  const auto table = images_table(nodes, load::name_rows(answers, {}), table_width);
  EXPECT_LE(widest(table), 80u) << table;
  const auto lines = testing::split_lines(table);
  ASSERT_EQ(lines.size(), 11u) << table;
  EXPECT_EQ(lines[0], "kind-worker1:");
  EXPECT_EQ(lines[1], "  docker.io/library/app:dev  " + a.short_hex() + "  present");
  EXPECT_EQ(lines[6], "kind-worker4:");
  EXPECT_EQ(lines[7], "  docker.io/library/app:dev  -             missing");
  EXPECT_EQ(lines[10], "kind-worker6: failed");
}

TEST(ImagesView, ALongNameGivesBlocksAndIsNeverCut) {
  const std::string name = "registry.example.com:5000/a-team/with-a-rather-long-repository-name/app:v1.2.3";
  std::vector<load::NodeNames> answers(2);
  answers[0].images = {status(name, a)};
  answers[1].images = {status(name, a)};
  const auto table = images_table(headings({"kind-control-plane", "kind-worker"}), load::name_rows(answers, {}), 80);
  const auto lines = testing::split_lines(table);
  ASSERT_EQ(lines.size(), 4u) << table;
  EXPECT_EQ(lines[1], "  " + name + "  " + a.short_hex() + "  present");
}

TEST(ImagesView, NoRowsSaySo) {
  EXPECT_EQ(images_table(headings({"kind-control-plane"}), {}, table_width), "no images\n");
}

TEST(ImagesView, JsonHasEveryNodeAndEveryNamesState) {
  auto nodes = headings({"kind-control-plane", "kind-worker"});
  nodes[1].error = "node kind-worker: not reachable";
  std::vector<load::NodeNames> answers(2);
  answers[0].images = {status("docker.io/library/app:dev", a, false)};
  answers[1].error = nodes[1].error;
  const auto doc =
      images_json(nodes, load::name_rows(answers, {"docker.io/library/app:dev", "docker.io/library/x:v1"}));
  EXPECT_EQ(doc["schema"], "kload.ls/v2");
  EXPECT_FALSE(doc.contains("ok")) << "write_document adds ok, exitCode and error";
  ASSERT_EQ(doc["nodes"].size(), 2u);
  EXPECT_EQ(doc["nodes"][1]["uri"], "docker://kind-worker");
  EXPECT_FALSE(doc["nodes"][1]["ok"].get<bool>());
  EXPECT_EQ(doc["nodes"][1]["error"],
            (nlohmann::json{{"category", "node"}, {"message", "node kind-worker: not reachable"}}));
  EXPECT_TRUE(doc["nodes"][0]["error"].is_null());
  ASSERT_EQ(doc["images"].size(), 2u);
  const auto& app = doc["images"][0];
  EXPECT_EQ(app["name"], "docker.io/library/app:dev");
  EXPECT_EQ(app["state"], "incomplete");
  EXPECT_EQ(app["nodes"][0]["state"], "incomplete");
  EXPECT_EQ(app["nodes"][0]["target"], a.str());
  EXPECT_FALSE(app["nodes"][0]["complete"].get<bool>());
  EXPECT_EQ(app["nodes"][1]["state"], "unknown");
  EXPECT_TRUE(app["nodes"][1]["target"].is_null());
  EXPECT_EQ(doc["images"][1]["state"], "missing");
}

} // namespace
} // namespace kload::cli
