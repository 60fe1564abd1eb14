#include "kload/registry/names.h"

#include <gtest/gtest.h>

namespace kload::registry {
namespace {

TEST(RegistryNames, ParsesHostPortAndPrefix) {
  auto a = parse_registry("localhost:5000");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->host, "localhost:5000");
  EXPECT_EQ(a->prefix, "");
  auto b = parse_registry("registry.example.com/team/sub/");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->host, "registry.example.com");
  EXPECT_EQ(b->prefix, "team/sub");
  auto c = parse_registry("[::1]:5000");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "[::1]:5000");
  auto e = parse_registry("my-registry.local/a__b/c-d--e/f.g");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->prefix, "a__b/c-d--e/f.g");
  // Any length is answered, not a crash.
  EXPECT_FALSE(parse_registry(std::string(200000, 'a') + "/"));
}

TEST(RegistryNames, RefusesSchemesBadHostsAndPrefixes) {
  for (const char* bad : {"", "https://localhost:5000", "-bad.example", "host:port", "host:123456", "host/Team",
                          "host/a//b", "host/a..b", "host/a___b", "a_b.example", "[::1"}) {
    auto r = parse_registry(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
  }
}

TEST(RegistryNames, DropsTheOriginalHostAndKeepsThePath) {
  const RegistryAddress local{"localhost:5000", ""};
  auto d = destination_for("docker.io/library/app:v1", local);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->repository, "library/app");
  EXPECT_EQ(d->reference, "v1");
  EXPECT_EQ(d->display(local), "localhost:5000/library/app:v1");

  const RegistryAddress team{"registry.example.com", "team"};
  auto e = destination_for("ghcr.io/org/tool:1.2", team);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->display(team), "registry.example.com/team/org/tool:1.2");

  auto f = destination_for("localhost:5000/x:latest", team);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->repository, "team/x");
}

TEST(RegistryNames, KeepsADigestReference) {
  const std::string digest = "sha256:" + std::string(64, 'a');
  const RegistryAddress local{"localhost:5000", ""};
  auto d = destination_for("docker.io/library/app@" + digest, local);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->reference, digest);
  EXPECT_EQ(d->display(local), "localhost:5000/library/app@" + digest);
}

TEST(RegistryNames, RefusesNamesThatAreNotNormalised) {
  const RegistryAddress local{"localhost:5000", ""};
  for (const char* bad : {"app", "app:v1", "docker.io/library/app", "localhost:5000/app"}) {
    auto r = destination_for(bad, local);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  }
  const RegistryAddress long_prefix{"localhost:5000", std::string(250, 'a')};
  EXPECT_FALSE(destination_for("docker.io/library/app:v1", long_prefix));
}

} // namespace
} // namespace kload::registry
