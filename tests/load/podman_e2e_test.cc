// kload and kind's Podman provider: a node container on rootful Podman with kind's
// name and labels (tools/podman-node), found and loaded under
// KIND_EXPERIMENTAL_PROVIDER=podman through `podman exec`, and checked with Podman's
// own `podman exec NODE ctr`.

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <random>

namespace kload::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::string podman_node_tool() { return (source_dir() / "tools" / "podman-node").string(); }

// Why Podman cannot run a node here ("" when it can), as tools/podman-node measures it.
std::string podman_missing() {
  const auto r = run_command({podman_node_tool(), "missing"});
  return r.exit_code != 0 ? "tools/podman-node missing failed: " + r.err : r.out.substr(0, r.out.find('\n'));
}

// One node, CLUSTER-control-plane, removed when the test ends.
class PodmanNode {
public:
  PodmanNode() {
    std::random_device rd;
    cluster_ = "kp" + std::to_string(rd() % 1000000);
    const auto r = run_command({podman_node_tool(), "up", cluster_});
    EXPECT_EQ(r.exit_code, 0) << "podman-node up failed: " << r.err;
    if (r.exit_code == 0) {
      name_ = split_lines(r.out).at(0);
    }
  }
  ~PodmanNode() { run_command({podman_node_tool(), "down", cluster_}); }
  PodmanNode(const PodmanNode&) = delete;
  PodmanNode& operator=(const PodmanNode&) = delete;

  [[nodiscard]] const std::string& cluster() const { return cluster_; }
  [[nodiscard]] const std::string& name() const { return name_; } // empty: not up

  // The image names containerd on the node lists in k8s.io.
  [[nodiscard]] std::vector<std::string> images() const {
    const auto r = run_command({"podman", "exec", name_, "ctr", "-n", "k8s.io", "images", "ls", "-q"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return split_lines(r.out);
  }

private:
  std::string cluster_;
  std::string name_;
};

class E2EPodman : public ::testing::Test {
protected:
  void SetUp() override {
    KLOAD_REQUIRE_DOCKER(); // the node image is built by and copied from Docker
    if (const auto why = podman_missing(); !why.empty()) {
      if (docker_required()) {
        FAIL() << "Podman-hosted nodes are required here (KLOAD_REQUIRE_DOCKER=1): " << why;
      }
      GTEST_SKIP() << "needs Podman: " << why;
    }
  }

  // kload ARGS with KIND_EXPERIMENTAL_PROVIDER=PROVIDER.
  static CommandResult kload_as(const std::string& provider, std::vector<std::string> args) {
    args.insert(args.begin(), {"env", "KIND_EXPERIMENTAL_PROVIDER=" + provider, kload_binary().string()});
    return run_command(args);
  }
};

TEST_F(E2EPodman, ImageArchiveAndTheKindDropInReachAPodmanHostedNode) {
  Scratch scratch;
  PodmanNode node;
  ASSERT_FALSE(node.name().empty());
  const auto app = (scratch / "app.tar").string();
  const auto tool = (scratch / "tool.tar").string();
  ASSERT_TRUE(mkimage({"--image", "podman-e2e/app:v1=app-base:64K,app-top:16K", app}));
  ASSERT_TRUE(mkimage({"--image", "podman-e2e/tool:v1=app-base:64K,tool-top:8K", tool}));

  // Docker's provider (the default) does not see the node: discovery follows the variable.
  const auto on_docker = kload_as("docker", {"image-archive", "--name", node.cluster(), app});
  EXPECT_NE(on_docker.exit_code, 0);
  EXPECT_THAT(on_docker.err, HasSubstr("no nodes for kind cluster \"" + node.cluster() + "\""));
  EXPECT_THAT(node.images(), Not(Contains("docker.io/podman-e2e/app:v1")));

  const auto loaded = kload_as("podman", {"image-archive", "--name", node.cluster(), app});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_THAT(loaded.err, HasSubstr(node.name()));
  EXPECT_THAT(node.images(), Contains("docker.io/podman-e2e/app:v1"));

  // kload as kind (the drop-in) under the same variable, as a kind user runs it.
  const auto as_kind = kload_as("podman", {"kind", "load", "image-archive", tool, "--name", node.cluster()});
  ASSERT_EQ(as_kind.exit_code, 0) << as_kind.err;
  EXPECT_THAT(node.images(), Contains("docker.io/podman-e2e/tool:v1"));
}

// Needs no engine: the variable is refused before any is asked.
TEST(E2EKindProvider, NerdctlIsRefusedInOneLine) {
  Scratch scratch;
  const auto app = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=a:4K", app}));
  const auto r = run_command({"env", "KIND_EXPERIMENTAL_PROVIDER=nerdctl", kload_binary().string(), "image-archive",
                              "--name", "kind", app});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(split_lines(r.err).size(), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr("KIND_EXPERIMENTAL_PROVIDER=nerdctl: kload cannot reach nerdctl-hosted kind nodes"));
}

} // namespace
} // namespace kload::testing
