#include "kload/format/image_ref.h"

#include <gtest/gtest.h>

#include <string>

namespace kload::format {
namespace {

const std::string hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Case {
  const char* in;
  std::string want;
};

TEST(ImageRef, DockerNormalisationTable) {
  const Case cases[] = {
      {"local:centos8-ssh", "docker.io/library/local:centos8-ssh"},
      {"app", "docker.io/library/app:latest"},
      {"app:v1", "docker.io/library/app:v1"},
      {"app:V1.2_rc-3", "docker.io/library/app:V1.2_rc-3"},
      {"user/app", "docker.io/user/app:latest"},
      {"user/app:1.0", "docker.io/user/app:1.0"},
      {"org/team/app:1", "docker.io/org/team/app:1"},
      {"docker.io/app", "docker.io/library/app:latest"},
      {"docker.io/library/app:v2", "docker.io/library/app:v2"},
      {"docker.io/user/app", "docker.io/user/app:latest"},
      {"index.docker.io/library/x", "docker.io/library/x:latest"},
      {"index.docker.io/x:tag", "docker.io/library/x:tag"},
      {"localhost:5000/x", "localhost:5000/x:latest"},
      {"localhost:5000/x:v1", "localhost:5000/x:v1"},
      {"localhost/x", "localhost/x:latest"},
      {"localhost/a/b", "localhost/a/b:latest"},
      {"host.tld/x", "host.tld/x:latest"},
      {"registry.example.com:443/team/app:2024.01", "registry.example.com:443/team/app:2024.01"},
      {"ab-c_d__e/f-g.h", "docker.io/ab-c_d__e/f-g.h:latest"},
      {"bad_host.com", "docker.io/library/bad_host.com:latest"},
      {"my-app_2.x", "docker.io/library/my-app_2.x:latest"},
      {"[::1]:5000/app", "[::1]:5000/app:latest"},
  };
  for (const auto& c : cases) {
    auto r = normalize_image_name(c.in);
    ASSERT_TRUE(r.has_value()) << c.in << ": " << r.error().message;
    EXPECT_EQ(*r, c.want) << c.in;
    // Normalising is idempotent.
    auto again = normalize_image_name(*r);
    ASSERT_TRUE(again.has_value()) << *r;
    EXPECT_EQ(*again, c.want);
  }
}

TEST(ImageRef, DigestsKeepTheDigestAndGetNoTag) {
  auto r = normalize_image_name("app@sha256:" + hex64);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, "docker.io/library/app@sha256:" + hex64);

  r = normalize_image_name("app:v1@sha256:" + hex64);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, "docker.io/library/app:v1@sha256:" + hex64);

  r = normalize_image_name("localhost:5000/x@sha256:" + hex64);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, "localhost:5000/x@sha256:" + hex64);
}

void expect_rejected(const std::string& name, const std::string& why) {
  auto r = normalize_image_name(name);
  ASSERT_FALSE(r.has_value()) << "\"" << name << "\" was accepted as " << *r;
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(why), std::string::npos) << name << ": " << r.error().message;
}

TEST(ImageRef, RejectsEmptyAndUpperCase) {
  expect_rejected("", "empty");
  expect_rejected("App", "lower case");
  expect_rejected("user/MyApp:v1", "lower case");
  expect_rejected("localhost:5000/X", "lower case");
}

TEST(ImageRef, RejectsBadTags) {
  expect_rejected("app:", "bad tag");
  expect_rejected("app:-v1", "bad tag");
  expect_rejected("app:.v1", "bad tag");
  expect_rejected("app:v 1", "bad tag");
  expect_rejected("app:v1!", "bad tag");
  expect_rejected("app:" + std::string(129, 'a'), "bad tag");
  EXPECT_TRUE(normalize_image_name("app:" + std::string(128, 'a')).has_value());
}

TEST(ImageRef, RejectsBadRepositories) {
  expect_rejected("app:v1:v2", "bad repository component");
  expect_rejected("/app", "bad repository component");
  expect_rejected("user//app", "bad repository component");
  expect_rejected("user/app/", "bad repository component");
  expect_rejected("-app", "bad repository component");
  expect_rejected("app-", "bad repository component");
  expect_rejected("a pp", "bad repository component");
  expect_rejected("localhost:5000/", "empty repository");
  expect_rejected("bad_host.com/app", "bad registry");
}

// What the distribution reference grammar refuses and a looser check let through.
TEST(ImageRef, FollowsTheDistributionGrammar) {
  expect_rejected("a..b:v1", "bad repository component");
  expect_rejected("a___b", "bad repository component");
  expect_rejected("a.-b", "bad repository component");
  expect_rejected("a_-b", "bad repository component");
  expect_rejected("user/a..b", "bad repository component");
  expect_rejected("-x.io/app:v1", "bad registry");
  expect_rejected("x-.io/app:v1", "bad registry");
  expect_rejected("a..b.io/app", "bad registry");
  expect_rejected(".x.io/app", "bad registry");
  expect_rejected("x.io:/app", "bad registry");
  expect_rejected("x.io:80a/app", "bad registry");
  expect_rejected("x.io:80:90/app", "bad registry");
  expect_rejected("[]:5000/app", "bad registry");
  expect_rejected("[::1/app", "bad registry");
  expect_rejected("localhost/App:v1", "lower case");
  // Separators the grammar allows, and a registry with upper case (Docker's rule).
  EXPECT_TRUE(normalize_image_name("a__b.c---d_e").has_value());
  EXPECT_TRUE(normalize_image_name("a-b.example.com:5000/x").has_value());
  EXPECT_EQ(normalize_image_name("Registry.Example.com/app").value_or(""), "Registry.Example.com/app:latest");
  EXPECT_EQ(normalize_image_name("App/x:v1").value_or(""), "App/x:v1");
  EXPECT_EQ(normalize_image_name("app:_v1").value_or(""), "docker.io/library/app:_v1");
}

TEST(ImageRef, RejectsOverLongRepositories) {
  // docker.io/library/ (18 characters) counts: the limit is on the normalised name.
  const std::string fits(max_repository_length - 18, 'a');
  EXPECT_TRUE(normalize_image_name(fits + ":v1").has_value());
  expect_rejected(fits + "a:v1", "more than 255");
  expect_rejected("example.com/" + std::string(250, 'b'), "more than 255");
  // The tag does not count towards it.
  EXPECT_TRUE(normalize_image_name(fits + ":" + std::string(128, 't')).has_value());
}

TEST(ImageRef, RejectsBadDigests) {
  expect_rejected("app@sha256:abc", "digest");
  expect_rejected("app@md5:" + hex64, "digest");
  expect_rejected("app@sha256:" + hex64 + "0", "digest");
  std::string upper = hex64;
  upper[0] = 'A';
  expect_rejected("app@sha256:" + upper, "digest");
  expect_rejected("app@sha256:" + std::string(64, 'z'), "digest");
}

TEST(ImageRef, LooksLikeReference) {
  EXPECT_FALSE(looks_like_reference("v1"));
  EXPECT_FALSE(looks_like_reference("latest"));
  EXPECT_FALSE(looks_like_reference(""));
  EXPECT_TRUE(looks_like_reference("app:v1"));
  EXPECT_TRUE(looks_like_reference("example.com/app"));
  EXPECT_TRUE(looks_like_reference("app@sha256:" + hex64));
}

} // namespace
} // namespace kload::format
