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
  auto nodes = list_kind_nodes("dev", KindProvider::docker, runner);
  ASSERT_TRUE(nodes.has_value()) << nodes.error().message;
  ASSERT_EQ(runner.calls().size(), 1u);
  EXPECT_THAT(runner.calls()[0].argv, ElementsAre("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=dev",
                                                  "--format", "{{.Names}}\\t{{.Label \"io.x-k8s.kind.role\"}}"));
}

TEST(KindNodes, LeavesOutTheLoadBalancerAndSortsByName) {
  test::FakeRunner runner;
  runner.ok("docker", ha_cluster);
  auto nodes = list_kind_nodes("dev", KindProvider::docker, runner);
  ASSERT_TRUE(nodes.has_value()) << nodes.error().message;
  EXPECT_THAT(names_of(*nodes), ElementsAre("dev-control-plane", "dev-control-plane2", "dev-worker", "dev-worker2"));
  EXPECT_EQ((*nodes)[0].role, "control-plane");
  EXPECT_EQ((*nodes)[2].role, "worker");
  EXPECT_EQ((*nodes)[3].uri(), "docker://dev-worker2");
}

TEST(KindNodes, DefaultClusterIsKind) {
  test::FakeRunner runner;
  runner.ok("docker", "kind-control-plane\tcontrol-plane\n");
  auto nodes = list_kind_nodes(kind_default_cluster, KindProvider::docker, runner);
  ASSERT_TRUE(nodes.has_value());
  EXPECT_EQ(runner.calls()[0].argv[4], "label=io.x-k8s.kind.cluster=kind");
  EXPECT_THAT(names_of(*nodes), ElementsAre("kind-control-plane"));
}

TEST(KindNodes, ParsesOddLines) {
  // A missing role label, blank and CRLF lines, link aliases after the name, a repeat.
  const auto nodes = parse_kind_nodes(KindProvider::docker, "\nb-worker\r\na-control-plane\tcontrol-plane\r\n\n"
                                      "c-worker,c-alias\tworker\nb-worker\t\n");
  EXPECT_THAT(names_of(nodes), ElementsAre("a-control-plane", "b-worker", "c-worker"));
  EXPECT_EQ(nodes[1].role, "");
}

TEST(KindNodes, NoNodesIsAClearUsageError) {
  test::FakeRunner runner;
  runner.ok("docker", "");
  auto nodes = list_kind_nodes("dev", KindProvider::docker, runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(nodes.error().message, "no nodes for kind cluster \"dev\"; is it running? "
                                   "(docker ps -a --filter label=io.x-k8s.kind.cluster=dev)");
}

TEST(KindNodes, OnlyALoadBalancerIsNoNodes) {
  test::FakeRunner runner;
  runner.ok("docker", "dev-external-load-balancer\texternal-load-balancer\n");
  auto nodes = list_kind_nodes("dev", KindProvider::docker, runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_THAT(nodes.error().message, HasSubstr("no nodes for kind cluster \"dev\""));
}

TEST(KindNodes, DockerNotRunningQuotesDocker) {
  test::FakeRunner runner;
  runner.fails("docker", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
                         "running?\n");
  auto nodes = list_kind_nodes("kind", KindProvider::docker, runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(nodes.error().message,
            "cannot list the nodes of kind cluster \"kind\": docker ps failed: Cannot connect "
            "to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?");
}

TEST(KindNodes, DockerNotInstalled) {
  test::FakeRunner runner; // nothing scripted: the runner cannot start the program
  auto nodes = list_kind_nodes("kind", KindProvider::docker, runner);
  ASSERT_FALSE(nodes.has_value());
  EXPECT_EQ(nodes.error().kind, util::ErrorKind::usage);
  EXPECT_THAT(nodes.error().message, HasSubstr("docker is not installed or not on PATH"));
}

TEST(KindNodes, EmptyClusterNameIsRefusedWithoutRunningDocker) {
  test::FakeRunner runner;
  EXPECT_FALSE(list_kind_nodes("", KindProvider::docker, runner).has_value());
  EXPECT_TRUE(runner.calls().empty());
}

TEST(KindNodes, PicksInTheGivenOrderOnce) {
  const auto all = parse_kind_nodes(KindProvider::docker, ha_cluster);
  auto picked = pick_kind_nodes(all, {"dev-worker2", "dev-control-plane", "dev-worker2"}, "dev");
  ASSERT_TRUE(picked.has_value()) << picked.error().message;
  EXPECT_THAT(names_of(*picked), ElementsAre("dev-worker2", "dev-control-plane"));
}

TEST(KindNodes, NoPicksMeansAll) {
  const auto all = parse_kind_nodes(KindProvider::docker, ha_cluster);
  auto picked = pick_kind_nodes(all, {}, "dev");
  ASSERT_TRUE(picked.has_value());
  EXPECT_EQ(picked->size(), 4u);
}

TEST(KindNodes, UnknownPickListsTheKnownNodes) {
  const auto all = parse_kind_nodes(KindProvider::docker, ha_cluster);
  auto picked = pick_kind_nodes(all, {"dev-worker", "dev-external-load-balancer"}, "dev");
  ASSERT_FALSE(picked.has_value());
  EXPECT_EQ(picked.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(picked.error().message, "--nodes: unknown node \"dev-external-load-balancer\" in kind cluster \"dev\"; its "
                                    "nodes are: dev-control-plane, dev-control-plane2, dev-worker, dev-worker2");
}

// KIND_EXPERIMENTAL_PROVIDER=podman: the same filter through `podman ps`, whose
// formatter has only the .Labels map, and podman:// nodes.
TEST(KindNodes, PodmanListsWithPodmanPsAndGivesPodmanUris) {
  test::FakeRunner runner;
  runner.ok("podman", ha_cluster);
  auto nodes = list_kind_nodes("dev", KindProvider::podman, runner);
  ASSERT_TRUE(nodes.has_value()) << nodes.error().message;
  ASSERT_EQ(runner.calls().size(), 1u);
  EXPECT_THAT(runner.calls()[0].argv,
              ElementsAre("podman", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=dev", "--format",
                          "{{.Names}}\\t{{index .Labels \"io.x-k8s.kind.role\"}}"));
  EXPECT_THAT(names_of(*nodes), ElementsAre("dev-control-plane", "dev-control-plane2", "dev-worker", "dev-worker2"));
  EXPECT_EQ((*nodes)[0].uri(), "podman://dev-control-plane");
}

TEST(KindNodes, PodmanMessagesNamePodman) {
  test::FakeRunner runner;
  runner.fails("podman", "Error: cannot connect to Podman\n");
  auto failed = list_kind_nodes("kind", KindProvider::podman, runner);
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().message,
            "cannot list the nodes of kind cluster \"kind\": podman ps failed: Error: cannot connect to Podman");
  test::FakeRunner empty;
  empty.ok("podman", "");
  auto none = list_kind_nodes("kind", KindProvider::podman, empty);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message, "no nodes for kind cluster \"kind\"; is it running? (podman ps -a --filter "
                                  "label=io.x-k8s.kind.cluster=kind)");
  test::FakeRunner missing;
  auto absent = list_kind_nodes("kind", KindProvider::podman, missing);
  ASSERT_FALSE(absent.has_value());
  EXPECT_THAT(absent.error().message, HasSubstr("podman is not installed or not on PATH"));
}

TEST(KindProvider, UnsetOrDockerIsDockerPodmanIsPodman) {
  EXPECT_EQ(parse_kind_provider(nullptr), KindProvider::docker);
  EXPECT_EQ(parse_kind_provider(""), KindProvider::docker);
  EXPECT_EQ(parse_kind_provider("docker"), KindProvider::docker);
  EXPECT_EQ(parse_kind_provider("podman"), KindProvider::podman);
}

TEST(KindProvider, NerdctlIsSaidToBeUnsupported) {
  const auto r = parse_kind_provider("nerdctl");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(r.error().message, "KIND_EXPERIMENTAL_PROVIDER=nerdctl: kload cannot reach nerdctl-hosted kind nodes; "
                               "unset it (docker) or set it to podman");
}

TEST(KindProvider, AnyOtherValueIsAUsageError) {
  const auto r = parse_kind_provider("Podman");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
  EXPECT_EQ(r.error().message, "KIND_EXPERIMENTAL_PROVIDER=\"Podman\": unknown kind provider (known: docker, podman)");
  EXPECT_EQ(parse_kind_provider("a\nb").error().message,
            "KIND_EXPERIMENTAL_PROVIDER=\"a?b\": unknown kind provider (known: docker, podman)");
}

} // namespace
} // namespace kload::node
