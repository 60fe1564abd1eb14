#include "fake_runner.h"
#include "kload/node/kind.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kload::node {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> names_of(const std::vector<KindNode>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes) {
    out.push_back(n.name);
  }
  return out;
}

// docker ps lists newest first; a multi-control-plane cluster has a load balancer.
constexpr const char* ha_cluster = "dev-worker2\tworker\n"
                                   "dev-worker\tworker\n"
                                   "dev-external-load-balancer\texternal-load-balancer\n"
                                   "dev-control-plane2\tcontrol-plane\n"
                                   "dev-control-plane\tcontrol-plane\n";

TEST(KindNodes, ListsWithOneDockerPsAndTheExactArgv) {
  test::FakeRunner runner;
  runner.ok("docker", ha_cluster);
  auto nodes = list_kind_nodes("dev", runner);
  ASSERT_TRUE(nodes.has_value()) << nodes.error().message;
  ASSERT_EQ(runner.calls().size(), 1u);
  EXPECT_THAT(runner.calls()[0].argv, ElementsAre("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=dev",
                                                  "--format", "{{.Names}}\\t{{.Label \"io.x-k8s.kind.role\"}}"));
}

TEST(KindNodes, LeavesOutTheLoadBalancerAndSortsByName) {
  test::FakeRunner runner;
  runner.ok("docker", ha_cluster);
  auto nodes = list_kind_nodes("dev", runner);
  ASSERT_TRUE(nodes.has_value()) << nodes.error().message;
  EXPECT_THAT(names_of(*nodes), ElementsAre("dev-control-plane", "dev-control-plane2", "dev-worker", "dev-worker2"));
  EXPECT_EQ((*nodes)[0].role, "control-plane");
  EXPECT_EQ((*nodes)[2].role, "worker");
  EXPECT_EQ((*nodes)[3].uri(), "docker://dev-worker2");
}

TEST(KindNodes, DefaultClusterIsKind) {
  test::FakeRunner runner;
  runner.ok("docker", "kind-control-plane\tcontrol-plane\n");
  auto nodes = list_kind_nodes(kind_default_cluster, runner);
  ASSERT_TRUE(nodes.has_value());
  EXPECT_EQ(runner.calls()[0].argv[4], "label=io.x-k8s.kind.cluster=kind");
  EXPECT_THAT(names_of(*nodes), ElementsAre("kind-control-plane"));
}

TEST(KindNodes, ParsesOddLines) {
  // A missing role label, blank and CRLF lines, link aliases after the name, a repeat.
  const auto nodes = parse_kind_nodes("\nb-worker\r\na-control-plane\tcontrol-plane\r\n\n"
                                      "c-worker,c-alias\tworker\nb-worker\t\n");
  EXPECT_THAT(names_of(nodes), ElementsAre("a-control-plane", "b-worker", "c-worker"));
  EXPECT_EQ(nodes[1].role, "");
}

TEST(KindNodes, NoNodesIsAClearUsageError) {
  test::FakeRunner runner;
  runner.ok("docker", "");
  auto nodes = list_kind_nodes("dev", runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(nodes.error().message, "no nodes for kind cluster \"dev\"; is it running? "
                                   "(docker ps -a --filter label=io.x-k8s.kind.cluster=dev)");
}

TEST(KindNodes, OnlyALoadBalancerIsNoNodes) {
  test::FakeRunner runner;
  runner.ok("docker", "dev-external-load-balancer\texternal-load-balancer\n");
  auto nodes = list_kind_nodes("dev", runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_THAT(nodes.error().message, HasSubstr("no nodes for kind cluster \"dev\""));
}

TEST(KindNodes, DockerNotRunningQuotesDocker) {
  test::FakeRunner runner;
  runner.fails("docker", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
                         "running?\n");
  auto nodes = list_kind_nodes("kind", runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(nodes.error().message,
            "cannot list the nodes of kind cluster \"kind\": docker ps failed: Cannot connect "
            "to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?");
}

TEST(KindNodes, DockerNotInstalled) {
  test::FakeRunner runner; // nothing scripted: the runner cannot start the program
  auto nodes = list_kind_nodes("kind", runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_THAT(nodes.error().message, HasSubstr("docker is not installed or not on PATH"));
}

TEST(KindNodes, EmptyClusterNameIsRefusedWithoutRunningDocker) {
  test::FakeRunner runner;
  EXPECT_FALSE(list_kind_nodes("", runner).has_value());
  EXPECT_TRUE(runner.calls().empty());
}

TEST(KindNodes, PicksInTheGivenOrderOnce) {
  const auto all = parse_kind_nodes(ha_cluster);
  auto picked = pick_kind_nodes(all, {"dev-worker2", "dev-control-plane", "dev-worker2"}, "dev");
  ASSERT_TRUE(picked.has_value()) << picked.error().message;
  EXPECT_THAT(names_of(*picked), ElementsAre("dev-worker2", "dev-control-plane"));
}

TEST(KindNodes, NoPicksMeansAll) {
  const auto all = parse_kind_nodes(ha_cluster);
  auto picked = pick_kind_nodes(all, {}, "dev");
  ASSERT_TRUE(picked.has_value());
  EXPECT_EQ(picked->size(), 4u);
}

TEST(KindNodes, UnknownPickListsTheKnownNodes) {
  const auto all = parse_kind_nodes(ha_cluster);
  auto picked = pick_kind_nodes(all, {"dev-worker", "dev-external-load-balancer"}, "dev");
  ASSERT_FALSE(picked.has_value());
  EXPECT_EQ(picked.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(picked.error().message, "--nodes: unknown node \"dev-external-load-balancer\" in kind cluster \"dev\"; its "
                                    "nodes are: dev-control-plane, dev-control-plane2, dev-worker, dev-worker2");
}

} // namespace
} // namespace kload::node
