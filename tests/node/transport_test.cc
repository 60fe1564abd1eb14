#include "kload/node/transport.h"

#include "fake_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kload::node {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

NodeUri uri_of(std::string_view text) {
  auto r = parse_node_uri(text);
  EXPECT_TRUE(r.has_value()) << text;
  return r ? *r : NodeUri{};
}

TEST(CtrArgv, ContainerdSocket) {
  EXPECT_THAT(ctr_argv(uri_of("containerd:///run/k/containerd.sock"), {"content", "ls"}),
              ElementsAre("ctr", "-a", "/run/k/containerd.sock", "--connect-timeout", "5s",
                          "-n", "k8s.io", "content", "ls"));
}

TEST(CtrArgv, Docker) {
  EXPECT_THAT(ctr_argv(uri_of("docker://kind-worker?namespace=default"), {"version"}),
              ElementsAre("docker", "exec", "-i", "kind-worker", "ctr", "--connect-timeout",
                          "5s", "-n", "default", "version"));
}

TEST(CtrArgv, PodmanIsDockersArgvWithPodman) {
  EXPECT_THAT(ctr_argv(uri_of("podman://kind-worker?address=/run/c.sock"), {"version"}),
              ElementsAre("podman", "exec", "-i", "kind-worker", "ctr", "-a", "/run/c.sock", "--connect-timeout", "5s",
                          "-n", "k8s.io", "version"));
  EXPECT_THAT(node_argv(uri_of("podman://kind-worker"), {"sh", "-c", "echo $0"}),
              ElementsAre("podman", "exec", "-i", "kind-worker", "sh", "-c", "echo $0"));
  EXPECT_TRUE(reaches_node_host(uri_of("podman://n")));
}

TEST(CtrArgv, SshMinimal) {
  EXPECT_THAT(ctr_argv(uri_of("ssh://node1"), {"images", "ls"}),
              ElementsAre("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--",
                          "node1", "'ctr'", "'--connect-timeout'", "'5s'", "'-n'",
                          "'k8s.io'", "'images'", "'ls'"));
}

TEST(CtrArgv, SshUserAndPort) {
  EXPECT_THAT(ctr_argv(uri_of("ssh://admin@[fe80::2]:2222"), {"version"}),
              ElementsAre("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p",
                          "2222", "-l", "admin", "--", "fe80::2", "'ctr'",
                          "'--connect-timeout'", "'5s'", "'-n'", "'k8s.io'", "'version'"));
}

TEST(CtrArgv, DockerWithAddress) {
  EXPECT_THAT(ctr_argv(uri_of("docker://k3d-dev-server-0?address=/run/k3s/containerd/"
                              "containerd.sock"),
                       {"version"}),
              ElementsAre("docker", "exec", "-i", "k3d-dev-server-0", "ctr", "-a",
                          "/run/k3s/containerd/containerd.sock", "--connect-timeout", "5s", "-n", "k8s.io", "version"));
}

TEST(CtrArgv, SshWithAddress) {
  EXPECT_THAT(ctr_argv(uri_of("ssh://root@k3s-1:2222?address=/run/k3s/containerd/containerd.sock"
                              "&namespace=default"),
                       {"images", "check", "--", "name==\"docker.io/library/app:v1\""}),
              ElementsAre("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222", "-l", "root", "--",
                          "k3s-1", "'ctr'", "'-a'", "'/run/k3s/containerd/containerd.sock'", "'--connect-timeout'",
                          "'5s'", "'-n'", "'default'", "'images'", "'check'", "'--'",
                          "'name==\"docker.io/library/app:v1\"'"));
}

TEST(CtrArgv, SocketPathsAndArgumentsAreSingleWordsLocally) {
  // No shell between kload and a local or docker ctr: words pass untouched.
  const std::string hostile = "x'; rm -rf / #";
  const auto argv =
      ctr_argv(uri_of("containerd:///tmp/a b/sock"), {"images", "tag", hostile, "$(id)"});
  EXPECT_THAT(argv, ElementsAre("ctr", "-a", "/tmp/a b/sock", "--connect-timeout", "5s", "-n",
                                "k8s.io", "images", "tag", hostile, "$(id)"));
}

// What a remote POSIX shell makes of the words ssh sends: ssh joins them with spaces
// into one command line, exactly as done here, and the remote shell parses that line.
std::vector<std::string> as_remote_shell_sees(const std::vector<std::string>& remote_words) {
  std::string line = "printf '%s\\0'";
  for (const auto& w : remote_words) {
    line += ' ';
    line += w;
  }
  util::SystemProcessRunner runner;
  auto r = runner.run({"sh", "-c", line}, {}, std::chrono::seconds(10));
  EXPECT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, 0) << r->err;
  std::vector<std::string> words;
  std::string_view out = r->out;
  while (!out.empty()) {
    const auto nul = out.find('\0');
    words.emplace_back(out.substr(0, nul));
    out.remove_prefix(nul == std::string_view::npos ? out.size() : nul + 1);
  }
  return words;
}

TEST(CtrArgv, SshRemoteWordsSurviveTheRemoteShell) {
  NodeUri uri = uri_of("ssh://node1");
  // Namespaces and names never get this far through parse_node_uri and ref validation;
  // the quoting must hold anyway.
  uri.ns = "k8s.io'; touch /tmp/kload-pwned; echo '";
  const std::vector<std::string> args{"images",
                                      "tag",
                                      "--force",
                                      "x'; rm -rf /",
                                      "$(reboot)",
                                      "`id`",
                                      "a b\tc",
                                      "line1\nline2",
                                      "\"dq\" \\ back",
                                      "*",
                                      "~root",
                                      "",
                                      "'",
                                      "''"};
  uri.address = "/run/a b/$(touch /tmp/kload-pwned);`id`'\"/containerd.sock";
  const auto argv = ctr_argv(uri, args);
  const auto host = std::find(argv.begin(), argv.end(), "node1");
  ASSERT_NE(host, argv.end());
  const std::vector<std::string> remote(host + 1, argv.end());

  std::vector<std::string> expected{"ctr", "-a", uri.address, "--connect-timeout", "5s", "-n", uri.ns};
  expected.insert(expected.end(), args.begin(), args.end());
  EXPECT_THAT(as_remote_shell_sees(remote), ElementsAreArray(expected));
}

TEST(MakeTransport, RunsCtrArgvThroughTheRunner) {
  test::FakeRunner runner;
  runner.ok("images import", "unpacking ...done\n");
  const auto uri = uri_of("docker://kind-control-plane");
  const auto transport = make_transport(uri, runner);
  EXPECT_EQ(transport->uri().target, "kind-control-plane");

  const util::StdinFeeder feed = [](int fd) {
    return util::write_all(fd, "archive bytes", 13, "test archive");
  };
  const auto r = transport->ctr({"images", "import", "-"}, feed, std::chrono::milliseconds(0));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->out, "unpacking ...done\n");

  const auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].argv, ctr_argv(uri, {"images", "import", "-"}));
  EXPECT_EQ(calls[0].key, "images import");
  EXPECT_EQ(calls[0].stdin, "archive bytes");
  EXPECT_EQ(calls[0].timeout.count(), 0);
}

TEST(MakeTransport, StartFailureIsAnError) {
  test::FakeRunner runner;
  runner.script("version", util::fail(util::ErrorKind::io, "cannot run ssh: No such file"));
  const auto transport = make_transport(uri_of("ssh://h"), runner);
  const auto r = transport->ctr({"version"}, {}, std::chrono::seconds(30));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "cannot run ssh: No such file");
  EXPECT_EQ(runner.calls().at(0).timeout, std::chrono::seconds(30));
}

TEST(NodeArgv, RunsTheWordsOnTheNodeItselfQuotedForSsh) {
  EXPECT_THAT(node_argv(uri_of("docker://kind-worker"), {"containerd", "config", "dump"}),
              ElementsAre("docker", "exec", "-i", "kind-worker", "containerd", "config", "dump"));
  EXPECT_THAT(node_argv(uri_of("ssh://root@n1:2222"), {"containerd", "config", "dump"}),
              ElementsAre("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222", "-l", "root", "--",
                          "n1", "'containerd'", "'config'", "'dump'"));
  EXPECT_THAT(node_argv(uri_of("containerd:///run/c.sock"), {"containerd", "config", "dump"}),
              ElementsAre("containerd", "config", "dump"));
  EXPECT_TRUE(reaches_node_host(uri_of("docker://n")));
  EXPECT_TRUE(reaches_node_host(uri_of("ssh://n")));
  EXPECT_FALSE(reaches_node_host(uri_of("containerd:///run/c.sock")))
      << "a socket on this machine says nothing of which configuration its daemon runs with";
}

TEST(FakeRunner, KeysCtrSubcommandsForEveryTransport) {
  for (const char* text :
       {"containerd:///s", "docker://n", "ssh://u@h:2", "docker://n?address=/s", "ssh://u@h:2?address=/s"}) {
    const auto uri = uri_of(text);
    EXPECT_EQ(test::FakeRunner::key_of(ctr_argv(uri, {"version"})), "version") << text;
    EXPECT_EQ(test::FakeRunner::key_of(ctr_argv(uri, {"images", "check", "--", "x"})),
              "images check")
        << text;
  }
  EXPECT_EQ(test::FakeRunner::key_of({"docker", "save", "x"}), "docker");
}

} // namespace
} // namespace kload::node
