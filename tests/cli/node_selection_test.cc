// Which nodes a command talks to: --node, KLOAD_NODES, a cluster of the config file, or
// a kind cluster.

#include "kload/cli/commands.h"
#include "kload/cli/config.h"
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

constexpr const char* lab_config = R"(
default = "lab"
[clusters.lab]
nodes = ["ssh://root@10.0.0.5", "ssh://root@10.0.0.6:2222", "docker://k3d-dev-server-0"]
[clusters.edge]
nodes = ["ssh://edge1"]
)";

Config parsed(const char* text) {
  auto c = parse_config(text, "kload.toml");
  EXPECT_TRUE(c.has_value()) << c.error().message;
  return c.value_or(Config{});
}

TEST(NodeSelection, TheConfigsDefaultClusterNamesTheNodesWhenNothingElseDoes) {
  const auto config = parsed(lab_config);
  NodeSelection s;
  s.config = &config;
  const auto r = select(s);
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"ssh://root@10.0.0.5", "ssh://root@10.0.0.6:2222",
                                                      "docker://k3d-dev-server-0"}));
  EXPECT_TRUE(r.docker_calls.empty()) << "a configured cluster is not asked of Docker";
}

TEST(NodeSelection, NameAndNodesPickAConfiguredClusterAndSomeOfItsNodes) {
  const auto config = parsed(lab_config);
  NodeSelection s;
  s.config = &config;
  s.cluster = "lab";
  s.picks = {"k3d-dev-server-0", "ssh://root@10.0.0.5"};
  const auto r = select(s);
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"docker://k3d-dev-server-0", "ssh://root@10.0.0.5"}));

  s.picks = {"nowhere"};
  const auto unknown = select(s);
  ASSERT_FALSE(unknown.uris.has_value());
  EXPECT_THAT(unknown.uris.error().message, HasSubstr("\"nowhere\" is not a node of cluster \"lab\" (kload.toml)"));
  EXPECT_THAT(unknown.uris.error().message, HasSubstr("k3d-dev-server-0"));
}

TEST(NodeSelection, ANameTheConfigDoesNotHaveIsAKindCluster) {
  const auto config = parsed(lab_config);
  NodeSelection s;
  s.config = &config;
  s.cluster = "dev";
  const auto r = select(s);
  ASSERT_EQ(r.docker_calls.size(), 1u);
  EXPECT_THAT(r.docker_calls[0], ::testing::Contains("label=io.x-k8s.kind.cluster=dev"));
}

TEST(NodeSelection, KloadNodesWinsOverTheConfigsDefault) {
  const auto config = parsed(lab_config);
  auto s = with_env("docker://kind-worker");
  s.config = &config;
  const auto r = select(s);
  ASSERT_TRUE(r.uris.has_value()) << r.uris.error().message;
  EXPECT_EQ(texts(*r.uris), (std::vector<std::string>{"docker://kind-worker"}));
}

TEST(NodeSelection, ABadNodeInTheConfigNamesTheFileAndTheCluster) {
  const auto config = parsed("[clusters.lab]\nnodes = [\"kind-worker\"]\n");
  NodeSelection s;
  s.config = &config;
  s.cluster = "lab";
  const auto r = select(s);
  ASSERT_FALSE(r.uris.has_value());
  EXPECT_THAT(r.uris.error().message, HasSubstr("kload.toml: clusters.lab \"kind-worker\" is not a node URI"));
}

TEST(Config, EveryMistakeIsOneLineNamingTheFileAndWhere) {
  const std::vector<std::pair<const char*, const char*>> cases{
      {"[clusters.lab\nnodes = []", "kload.toml: line 1"},
      {"defualt = \"lab\"", "kload.toml: unknown key \"defualt\" (known here: default, clusters)"},
      {"[clusters.lab]\nnode = [\"ssh://a\"]", "kload.toml: clusters.lab: unknown key \"node\""},
      {"[clusters.lab]\nnodes = []", "kload.toml: clusters.lab: no nodes"},
      {"[clusters.lab]\nnodes = [1]", "kload.toml: clusters.lab: every node must be a URI in quotes"},
      {"clusters = 3", "kload.toml: clusters must be tables"},
      {"default = \"prod\"\n[clusters.lab]\nnodes = [\"ssh://a\"]", "default = \"prod\" names no [clusters.prod]"},
  };
  for (const auto& [text, message] : cases) {
    const auto c = parse_config(text, "kload.toml");
    ASSERT_FALSE(c.has_value()) << text;
    EXPECT_EQ(c.error().kind, util::ErrorKind::usage);
    EXPECT_THAT(c.error().message, HasSubstr(message)) << text;
    EXPECT_EQ(c.error().message.find('\n'), std::string::npos) << c.error().message;
  }
}

TEST(Config, AMissingDefaultFileIsNoConfigButAMissingGivenFileIsAnError) {
  ::setenv("XDG_CONFIG_HOME", "/nonexistent-kload-test", 1);
  ::unsetenv("KLOAD_CONFIG");
  const auto none = read_config("");
  ASSERT_TRUE(none.has_value()) << none.error().message;
  EXPECT_TRUE(none->clusters.empty());
  EXPECT_EQ(default_config_path(), "/nonexistent-kload-test/kload/config.toml");
  const auto given = read_config("/nonexistent-kload-test/mine.toml");
  ASSERT_FALSE(given.has_value());
  EXPECT_THAT(given.error().message, HasSubstr("/nonexistent-kload-test/mine.toml: cannot read the config file"));
  ::setenv("KLOAD_CONFIG", "/nonexistent-kload-test/env.toml", 1);
  const auto from_env = read_config("");
  ::unsetenv("KLOAD_CONFIG");
  ASSERT_FALSE(from_env.has_value());
  EXPECT_THAT(from_env.error().message, HasSubstr("env.toml: cannot read the config file"));
}

} // namespace
} // namespace kload::cli
