// What the live progress display of a load draws: a line per node and a total line
// that fit 80 and 200 columns, one summary line on a short terminal.

#include "kload/cli/progress_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

namespace kload::cli {
namespace {

using load::NodeStatus;
using load::Phase;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::uint64_t mib = 1024 * 1024;

NodeProgress sending(const std::string& node, std::uint64_t done, std::uint64_t total) {
  return NodeProgress{node, Phase::sending, std::nullopt, done, total, 4.0 * mib, (total - done) / (4.0 * mib)};
}

NodeProgress at(const std::string& node, Phase phase, std::optional<NodeStatus> outcome = std::nullopt) {
  return NodeProgress{node, phase, outcome, 0, 0, 0, std::nullopt};
}

// The kind of cluster the display is mostly seen with: three nodes in all phases.
std::vector<NodeProgress> three_nodes() {
  return {sending("kind-control-plane", 12 * mib, 40 * mib), at("kind-worker", Phase::committing),
          at("kind-worker2", Phase::planning)};
}

void expect_fit(const std::vector<std::string>& lines, int columns) {
  for (const auto& line : lines) {
    EXPECT_LT(line.size(), static_cast<std::size_t>(columns)) << "wider than " << columns - 1 << ": " << line;
    for (const char c : line) {
      EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << "not printable ASCII in: " << line;
    }
  }
}

TEST(ProgressView, ALinePerNodeAndATotalLineAt80Columns) {
  const auto lines = progress_lines(three_nodes(), TerminalSize{80, 24});
  ASSERT_EQ(lines.size(), 4u);
  expect_fit(lines, 80);
  EXPECT_THAT(lines[0], StartsWith("kind-control-plane  sending"));
  EXPECT_THAT(lines[0], HasSubstr("12.0 MiB/40.0 MiB"));
  EXPECT_THAT(lines[0], HasSubstr("4.0 MiB/s"));
  EXPECT_THAT(lines[0], HasSubstr("7s left"));
  EXPECT_THAT(lines[1], StartsWith("kind-worker         committing"));
  EXPECT_THAT(lines[2], StartsWith("kind-worker2        planning"));
  EXPECT_THAT(lines[3], StartsWith("total               0/3 done"));
  // Rate and time left only while sending.
  EXPECT_THAT(lines[1], Not(HasSubstr("/s")));
  EXPECT_THAT(lines[1], Not(HasSubstr("left")));
}

TEST(ProgressView, AtTwoHundredColumnsABarShowsHowFarEachNodeIs) {
  auto nodes = three_nodes();
  nodes[1] = NodeProgress{"kind-worker", Phase::committing, std::nullopt, 40 * mib, 40 * mib, 0, std::nullopt};
  const auto lines = progress_lines(nodes, TerminalSize{200, 50});
  ASSERT_EQ(lines.size(), 4u);
  expect_fit(lines, 200);
  // 12 of 40 MiB: 30% of the bar's inside.
  EXPECT_THAT(lines[0], HasSubstr("[#########---------------------]"));
  EXPECT_THAT(lines[1], HasSubstr("[##############################]"));
  EXPECT_THAT(lines[2], Not(HasSubstr("[")));  // nothing planned to send yet: no bar
  // The columns line up: every node's state starts where the first one's does.
  EXPECT_EQ(lines[1].find("committing"), lines[0].find("sending"));
  EXPECT_EQ(lines[3].find("0/3 done"), lines[0].find("sending"));
}

TEST(ProgressView, At80ColumnsTheBarGoesFirstThenRateAndTimeLeft) {
  const auto lines = progress_lines(three_nodes(), TerminalSize{80, 24});
  EXPECT_THAT(lines[0], Not(HasSubstr("[")));
  const auto narrow = progress_lines(three_nodes(), TerminalSize{50, 24});
  expect_fit(narrow, 50);
  EXPECT_THAT(narrow[0], HasSubstr("12.0 MiB/40.0 MiB"));
  EXPECT_THAT(narrow[0], Not(HasSubstr("MiB/s")));
}

TEST(ProgressView, LongNodeNamesAreCutToFitAndMarked) {
  const std::string long_name = "a-node-whose-name-goes-on-and-on-for-ever-and-a-day-" + std::string(200, 'x');
  std::vector<NodeProgress> nodes{sending(long_name, 1 * mib, 3 * mib), at("short", Phase::confirming)};
  for (const int columns : {80, 200}) {
    const auto lines = progress_lines(nodes, TerminalSize{columns, 24});
    ASSERT_EQ(lines.size(), 3u);
    expect_fit(lines, columns);
    EXPECT_THAT(lines[0], StartsWith("a-node-whose-name-goes-on"));
    EXPECT_THAT(lines[0], HasSubstr("~  sending"));
    EXPECT_THAT(lines[0], HasSubstr("1.0 MiB/3.0 MiB"));
    EXPECT_THAT(lines[0], HasSubstr("4.0 MiB/s")) << "names give way before the rate does";
  }
}

TEST(ProgressView, ManyNodesOnAShortTerminalAreOneSummaryLine) {
  std::vector<NodeProgress> nodes;
  for (int i = 0; i < 30; ++i) {
    nodes.push_back(sending(fmt::format("cluster-worker{}", i), 1 * mib, 10 * mib));
  }
  nodes[0] = at("cluster-worker0", Phase::confirming, NodeStatus::ok);
  nodes[1] = at("cluster-worker1", Phase::sending, NodeStatus::failed);
  nodes[2] = at("cluster-worker2", Phase::planning);
  nodes[3] = at("cluster-worker3", Phase::committing);
  for (const int columns : {80, 200}) {
    const auto lines = progress_lines(nodes, TerminalSize{columns, 24});
    ASSERT_EQ(lines.size(), 1u) << "30 nodes do not fit 24 rows";
    expect_fit(lines, columns);
    EXPECT_THAT(lines[0], StartsWith("2/30 nodes done  26.0 MiB/260.0 MiB  104.0 MiB/s  3s left"));
  }
  const auto wide = progress_lines(nodes, TerminalSize{200, 24}).at(0);
  EXPECT_THAT(wide, HasSubstr("1 planning  26 sending  1 committing  1 FAILED"));
  const auto narrow = progress_lines(nodes, TerminalSize{80, 24}).at(0);
  EXPECT_THAT(narrow, Not(HasSubstr("FAILED"))) << "the parts that do not fit go from the end";
}

TEST(ProgressView, ALinePerNodeOnlyWhenTwoRowsAreLeftOver) {
  EXPECT_TRUE(line_per_node(3, 6));   // 3 nodes and a total in 6 - 2 rows
  EXPECT_FALSE(line_per_node(3, 5));
  EXPECT_FALSE(line_per_node(1, 2));
  EXPECT_EQ(progress_lines(three_nodes(), TerminalSize{80, 6}).size(), 4u);
  EXPECT_EQ(progress_lines(three_nodes(), TerminalSize{80, 5}).size(), 1u);
}

TEST(ProgressView, FinishedNodesSayDoneOrFailed) {
  std::vector<NodeProgress> nodes{at("n1", Phase::confirming, NodeStatus::ok), at("n2", Phase::sending, NodeStatus::failed)};
  const auto lines = progress_lines(nodes, TerminalSize{80, 24});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], StartsWith("n1     done"));
  EXPECT_THAT(lines[1], StartsWith("n2     FAILED"));
  EXPECT_THAT(lines[2], StartsWith("total  2/2 done"));
}

TEST(ProgressView, ControlCharactersInANameAreNotDrawn) {
  const auto lines = progress_lines({at("evil\x1b]0;title\x07\xc3\xa9", Phase::planning)}, TerminalSize{80, 24});
  ASSERT_FALSE(lines.empty());
  expect_fit(lines, 80);
  EXPECT_THAT(lines[0], StartsWith("evil?]0;title???"));
}

TEST(ProgressView, NothingToDrawOnATerminalTooNarrowOrWithoutNodes) {
  EXPECT_TRUE(progress_lines({}, TerminalSize{80, 24}).empty());
  EXPECT_TRUE(progress_lines(three_nodes(), TerminalSize{1, 24}).empty());
  const auto tiny = progress_lines(three_nodes(), TerminalSize{10, 24});
  expect_fit(tiny, 10);
}

} // namespace
} // namespace kload::cli
