// Which nodes a command talks to: --node, KLOAD_NODES, or a kind cluster.

#include "kload/cli/commands.h"
#include "kload/cli/console.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kload::cli {
namespace {

using ::testing::HasSubstr;

// A runner that answers nothing: records each argv and fails it, as a machine without
// Docker would.
class NoDocker final : public util::ProcessRunner {
public:
  util::Result<util::ProcessResult> run(const std::vector<std::string>& argv, const util::StdinFeeder&,
                                        std::chrono::milliseconds) override {
    calls.push_back(argv);
    util::ProcessResult r;
    r.exit_code = 1;
    r.err = "Cannot connect to the Docker daemon";
    return r;
  }
  std::vector<std::vector<std::string>> calls;
};

std::vector<std::string> texts(const std::vector<node::NodeUri>& uris) {
  std::vector<std::string> out;
  for (const auto& u : uris) {
    out.push_back(u.text);
  }
  return out;
}

TEST(NodeSelection, KloadNodesNamesTheNodesWhenNoOptionDoes) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.env_nodes = " docker://kind-worker\n\tssh://root@10.0.0.5  containerd:///run/c.sock\n";
  auto uris = select_nodes(s, runner, console);
  ASSERT_TRUE(uris.has_value()) << uris.error().message;
  EXPECT_EQ(texts(*uris), (std::vector<std::string>{"docker://kind-worker", "ssh://root@10.0.0.5",
                                                    "containerd:///run/c.sock"}));
  EXPECT_TRUE(runner.calls.empty()) << "no kind cluster is looked up";
}

TEST(NodeSelection, NodeOptionsWinOverKloadNodes) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.uris = {"docker://other"};
  s.env_nodes = "docker://kind-worker";
  auto uris = select_nodes(s, runner, console);
  ASSERT_TRUE(uris.has_value()) << uris.error().message;
  EXPECT_EQ(texts(*uris), (std::vector<std::string>{"docker://other"}));
}

TEST(NodeSelection, TheSameNodeGivenTwiceIsLoadedOnce) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.uris = {"docker://kind-worker", "docker://kind-worker2", "docker://kind-worker?namespace=k8s.io",
            "docker://kind-worker?namespace=other"};
  auto uris = select_nodes(s, runner, console);
  ASSERT_TRUE(uris.has_value()) << uris.error().message;
  EXPECT_EQ(texts(*uris), (std::vector<std::string>{"docker://kind-worker", "docker://kind-worker2",
                                                    "docker://kind-worker?namespace=other"}))
      << "another namespace is another set of images";
}

TEST(NodeSelection, AClusterNameWinsOverKloadNodes) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.cluster = "dev";
  s.env_nodes = "docker://kind-worker";
  auto uris = select_nodes(s, runner, console);
  ASSERT_FALSE(uris.has_value());
  ASSERT_EQ(runner.calls.size(), 1u) << "the cluster's nodes are asked of Docker";
  EXPECT_THAT(runner.calls[0], ::testing::Contains("label=io.x-k8s.kind.cluster=dev"));
}

TEST(NodeSelection, BlankKloadNodesMeansTheKindCluster) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.env_nodes = " \n ";
  EXPECT_FALSE(select_nodes(s, runner, console).has_value());
  ASSERT_EQ(runner.calls.size(), 1u);
  EXPECT_THAT(runner.calls[0], ::testing::Contains("label=io.x-k8s.kind.cluster=kind"));
}

TEST(NodeSelection, AWordInKloadNodesThatIsNoUriIsAUsageErrorNamingIt) {
  NoDocker runner;
  Console console;
  NodeSelection s;
  s.env_nodes = "docker://kind-worker kind";
  auto uris = select_nodes(s, runner, console);
  ASSERT_FALSE(uris.has_value());
  EXPECT_EQ(uris.error().kind, util::ErrorKind::usage);
  EXPECT_THAT(uris.error().message, HasSubstr("KLOAD_NODES \"kind\" is not a node URI"));
  auto bad = select_nodes(NodeSelection{{}, "", {}, "ssh://"}, runner, console);
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message, HasSubstr("KLOAD_NODES"));
}

} // namespace
} // namespace kload::cli
