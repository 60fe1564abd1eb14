#include "kload/node/node_uri.h"

#include <gtest/gtest.h>

namespace kload::node {
namespace {

NodeUri parsed(std::string_view text) {
  auto r = parse_node_uri(text);
  EXPECT_TRUE(r.has_value()) << text << ": " << (r ? "" : r.error().message);
  return r ? *r : NodeUri{};
}

TEST(NodeUri, ContainerdSocket) {
  const auto uri = parsed("containerd:///run/containerd/containerd.sock");
  EXPECT_EQ(uri.kind, TransportKind::containerd_socket);
  EXPECT_EQ(uri.target, "/run/containerd/containerd.sock");
  EXPECT_EQ(uri.ns, "k8s.io");
  EXPECT_EQ(uri.snapshotter, "");
  EXPECT_EQ(uri.text, "containerd:///run/containerd/containerd.sock");
  EXPECT_EQ(uri.address, "");
  EXPECT_EQ(uri.display(), "containerd"); // the directory holding the socket
}

TEST(NodeUri, LabUriWithSnapshotter) {
  const auto uri = parsed("containerd:///tmp/kload-lab/node1/sock?snapshotter=native");
  EXPECT_EQ(uri.target, "/tmp/kload-lab/node1/sock");
  EXPECT_EQ(uri.snapshotter, "native");
  EXPECT_EQ(uri.ns, "k8s.io");
}

TEST(NodeUri, PodmanIsADockerLikeContainerOnAnotherEngine) {
  const auto uri = parsed("podman://kind-worker2?address=/run/containerd/containerd.sock");
  EXPECT_EQ(uri.kind, TransportKind::podman);
  EXPECT_EQ(uri.target, "kind-worker2");
  EXPECT_EQ(uri.ns, "k8s.io");
  EXPECT_EQ(uri.address, "/run/containerd/containerd.sock");
  EXPECT_EQ(uri.display(), "kind-worker2");
  EXPECT_FALSE(same_node(uri, parsed("docker://kind-worker2?address=/run/containerd/containerd.sock")));
}

TEST(NodeUri, Docker) {
  const auto uri = parsed("docker://kind-worker2?namespace=default&snapshotter=overlayfs");
  EXPECT_EQ(uri.kind, TransportKind::docker);
  EXPECT_EQ(uri.target, "kind-worker2");
  EXPECT_EQ(uri.ns, "default");
  EXPECT_EQ(uri.snapshotter, "overlayfs");
  EXPECT_EQ(uri.display(), "kind-worker2");
}

TEST(NodeUri, SshForms) {
  auto uri = parsed("ssh://node1.example.com");
  EXPECT_EQ(uri.kind, TransportKind::ssh);
  EXPECT_EQ(uri.target, "node1.example.com");
  EXPECT_EQ(uri.user, "");
  EXPECT_EQ(uri.port, 0);
  EXPECT_EQ(uri.display(), "node1.example.com");

  uri = parsed("ssh://root@10.0.0.7:2222?namespace=k8s.io");
  EXPECT_EQ(uri.user, "root");
  EXPECT_EQ(uri.target, "10.0.0.7");
  EXPECT_EQ(uri.port, 2222);

  uri = parsed("ssh://core@[fe80::1]:22");
  EXPECT_EQ(uri.user, "core");
  EXPECT_EQ(uri.target, "fe80::1");
  EXPECT_EQ(uri.port, 22);

  uri = parsed("ssh://[::ffff:10.0.0.1]");
  EXPECT_EQ(uri.target, "::ffff:10.0.0.1");
  EXPECT_EQ(uri.port, 0);
}

TEST(NodeUri, AddressNamesTheSocketOnTheNode) {
  auto uri = parsed("ssh://root@k3s-1?address=/run/k3s/containerd/containerd.sock");
  EXPECT_EQ(uri.kind, TransportKind::ssh);
  EXPECT_EQ(uri.target, "k3s-1");
  EXPECT_EQ(uri.address, "/run/k3s/containerd/containerd.sock");
  EXPECT_EQ(uri.display(), "k3s-1");

  uri = parsed("docker://k3d-dev-server-0?namespace=k8s.io&address=/run/k3s/containerd/"
               "containerd.sock&snapshotter=overlayfs");
  EXPECT_EQ(uri.address, "/run/k3s/containerd/containerd.sock");
  EXPECT_EQ(uri.snapshotter, "overlayfs");
  EXPECT_EQ(uri.ns, "k8s.io");

  // Only what would break a one-line message is refused; the path travels as one word
  // (quoted for ssh), so characters a shell cares about are the socket's business.
  EXPECT_EQ(parsed("ssh://h?address=/tmp/a b/$(x);`y`'\"/sock").address, "/tmp/a b/$(x);`y`'\"/sock");
  EXPECT_EQ(parsed("ssh://h?address=/s?x").address, "/s?x");
}

TEST(NodeUri, AddressErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"containerd:///run/containerd/containerd.sock?address=/other.sock",
       "address is for docker://, podman:// and ssh:// nodes (containerd:///SOCKET names the socket "
       "itself)"},
      {"ssh://h?address=", "address must be an absolute path"},
      {"ssh://h?address=run/containerd.sock", "address must be an absolute path"},
      {"ssh://h?address=~/containerd.sock", "address must be an absolute path"},
      {"docker://n?address=/run/containerd/", "address names a directory"},
      {"ssh://h?address=/", "address names a directory"},
      {"ssh://h?address=/run/a\tb.sock", "control character in address"},
      {"ssh://h?address=/a.sock&address=/a.sock", "address given twice"},
  };
  for (const auto& [text, why] : cases) {
    const auto r = parse_node_uri(text);
    ASSERT_FALSE(r.has_value()) << "accepted: " << text;
    EXPECT_EQ(r.error().kind, util::ErrorKind::usage) << text;
    EXPECT_NE(r.error().message.find(std::string("\": ") + why), std::string::npos) << r.error().message;
  }
  const auto r = parse_node_uri("ssh://h?addr=/x");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "bad node URI \"ssh://h?addr=/x\": unknown query parameter "
                               "\"addr\" (known: namespace, snapshotter, address)");
}

TEST(NodeUri, ErrorsAreUsageErrorsNamingTheUri) {
  const char* bad[] = {
      "",
      "kind-worker",                            // no scheme
      "http://x",                               // unknown scheme
      "containerd://",                          // empty path
      "containerd://relative/sock",             // not absolute
      "containerd:///run/containerd/",          // a directory
      "containerd:///run/a\nb",                 // control character
      "docker://",                              // empty name
      "docker://-it",                           // option-looking name
      "docker://kind worker",                   // space
      "docker://a;rm -rf /",                    // shell metacharacters
      "docker://node/extra",                    // path
      "docker://$(reboot)",                     //
      "podman://",                              // empty name
      "podman://-it",                           // option-looking name
      "podman://a;b",                           // shell metacharacters
      "ssh://",                                 // empty host
      "ssh://-oProxyCommand=x",                 // option-looking host
      "ssh://user@",                            // empty host
      "ssh://@host",                            // empty user
      "ssh://us'er@host",                       // quote in user
      "ssh://host:",                            // empty port
      "ssh://host:0",                           // port out of range
      "ssh://host:65536",                       //
      "ssh://host:22x",                         //
      "ssh://host:-1",                          //
      "ssh://[fe80::1",                         // unterminated
      "ssh://[not-v6]",                         //
      "ssh://[fe80::1]x",                       //
      "ssh://host/path",                        //
      "docker://n?",                            // empty query
      "docker://n?namespace",                   // not k=v
      "docker://n?namespace=",                  // empty value
      "docker://n?namespace=a/b",               // bad namespace
      "docker://n?snapshotter=Overlay",         // upper case
      "docker://n?snapshotter=a b",             //
      "docker://n?platform=linux",              // unknown parameter
      "docker://n?namespace=a&namespace=b",     // twice
      "docker://n?snapshotter=a&snapshotter=b", //
      "docker://n?namespace=a&",                // trailing &
  };
  for (const char* text : bad) {
    const auto r = parse_node_uri(text);
    ASSERT_FALSE(r.has_value()) << "accepted: " << text;
    EXPECT_EQ(r.error().kind, util::ErrorKind::usage) << text;
    EXPECT_NE(r.error().message.find("bad node URI \""), std::string::npos)
        << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  }
}

TEST(NodeUri, MessageNamesTheUriAndTheReason) {
  const auto r = parse_node_uri("ssh://host:99999");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "bad node URI \"ssh://host:99999\": bad port \"99999\" (1-65535)");

  const auto s = parse_node_uri("ftp://x");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().message,
            "bad node URI \"ftp://x\": unknown scheme \"ftp\" (known: containerd, docker, podman, ssh)");
}

TEST(NodeUri, NamesMayUseTheWholeAllowedAlphabet) {
  EXPECT_EQ(parsed("docker://A0_b.c-d").target, "A0_b.c-d");
  EXPECT_EQ(parsed("ssh://a_b.c-d@H0st-1.x").user, "a_b.c-d");
  EXPECT_EQ(parsed("containerd:///weird path/with spaces/sock").target,
            "/weird path/with spaces/sock");
  EXPECT_EQ(parsed("docker://n?namespace=My.ns_1-x").ns, "My.ns_1-x");
  EXPECT_EQ(parsed("docker://n?snapshotter=fuse-overlayfs_2").snapshotter,
            "fuse-overlayfs_2");
}

} // namespace
} // namespace kload::node
