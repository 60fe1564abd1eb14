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

// What select_nodes makes of `s`, and what it asked Docker.
struct Selected {
  util::Result<std::vector<node::NodeUri>> uris;
  std::vector<std::vector<std::string>> docker_calls;
};

Selected select(const NodeSelection& s) {
  NoDocker runner;
  Console console;
  auto uris = select_nodes(s, runner, console);
  return {std::move(uris), runner.calls};
}

NodeSelection with_env(const std::string& env_nodes) {
  NodeSelection s;
  s.env_nodes = env_nodes;
  return s;
}

std::vector<std::string> texts(const std::vector<node::NodeUri>& uris) {
  std::vector<std::string> out;
  for (const auto& u : uris) {
    out.push_back(u.text);
  }
  return out;
}

TEST(NodeSelection, KloadNodesNamesTheNodesWhenNoOptionDoes) {
  const auto r = select(with_env(" docker://kind-worker\n\tssh://root@10.0.0.5  containerd:///run/c.sock\n"));
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"docker://kind-worker", "ssh://root@10.0.0.5",
                                                      "containerd:///run/c.sock"}));
  EXPECT_TRUE(r.docker_calls.empty()) << "no kind cluster is looked up";
}

TEST(NodeSelection, NodeOptionsWinOverKloadNodes) {
  auto s = with_env("docker://kind-worker");
  s.uris = {"docker://other"};
  const auto r = select(s);
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"docker://other"}));
}

TEST(NodeSelection, TheSameNodeGivenTwiceIsLoadedOnce) {
  NodeSelection s;
  s.uris = {"docker://kind-worker", "docker://kind-worker2", "docker://kind-worker?namespace=k8s.io",
            "docker://kind-worker?namespace=other"};
  const auto r = select(s);
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"docker://kind-worker", "docker://kind-worker2",
                                                      "docker://kind-worker?namespace=other"}))
      << "another namespace is another set of images";
}

TEST(NodeSelection, AClusterNameWinsOverKloadNodesAndBlankKloadNodesMeansKind) {
  auto named = with_env("docker://kind-worker");
  named.cluster = "dev";
  for (const auto& [s, cluster] : std::vector<std::pair<NodeSelection, std::string>>{{named, "dev"},
                                                                                      {with_env(" \n "), "kind"}}) {
    const auto r = select(s);
    EXPECT_FALSE(r.uris.has_value()) << "Docker answers nothing here";
    ASSERT_EQ(r.docker_calls.size(), 1u) << "the cluster's nodes are asked of Docker";
    EXPECT_THAT(r.docker_calls[0], ::testing::Contains("label=io.x-k8s.kind.cluster=" + cluster));
  }
}

TEST(NodeSelection, AWordInKloadNodesThatIsNoUriIsAUsageErrorNamingIt) {
  const auto r = select(with_env("docker://kind-worker kind"));
  ASSERT_FALSE(r.uris.has_value());
  EXPECT_EQ(r.uris.error().kind, util::ErrorKind::usage);
  EXPECT_THAT(r.uris.error().message, HasSubstr("KLOAD_NODES \"kind\" is not a node URI"));
  const auto bad = select(with_env("ssh://"));
  ASSERT_FALSE(bad.uris.has_value());
  EXPECT_THAT(bad.uris.error().message, HasSubstr("KLOAD_NODES"));
}

} // namespace
} // namespace kload::cli
