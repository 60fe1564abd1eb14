#include "kload/registry/auth.h"

#include <gtest/gtest.h>

namespace kload::registry {
namespace {

TEST(RegistryAuth, ParsesABearerChallenge) {
  auto c = parse_www_authenticate(
      R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:library/app:pull,push")");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::bearer);
  EXPECT_EQ(c->param("realm"), "https://auth.example.com/token");
  EXPECT_EQ(c->param("service"), "registry.example.com");
  EXPECT_EQ(c->param("scope"), "repository:library/app:pull,push");
  EXPECT_EQ(c->param("error"), "");
}

TEST(RegistryAuth, ParsesBasicTokensEscapesAndSpacing) {
  auto b = parse_www_authenticate(R"(basic realm="Registry \"Realm\"")");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->scheme, AuthScheme::basic);
  EXPECT_EQ(b->param("realm"), "Registry \"Realm\"");
  auto t = parse_www_authenticate(R"(Bearer  Realm = "r" , error=insufficient_scope)");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->param("realm"), "r");
  EXPECT_EQ(t->param("error"), "insufficient_scope");
}

TEST(RegistryAuth, TakesTheFirstOfSeveralChallenges) {
  auto c = parse_www_authenticate(R"(Bearer realm="a",service="s", Basic realm="b")");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, AuthScheme::bearer);
  EXPECT_EQ(c->param("realm"), "a");
  EXPECT_EQ(c->params.size(), 2u);
}

TEST(RegistryAuth, RefusesOtherSchemesAndMalformedHeaders) {
  EXPECT_FALSE(parse_www_authenticate(""));
  EXPECT_FALSE(parse_www_authenticate("Negotiate abc"));
  EXPECT_FALSE(parse_www_authenticate(R"(Bearer realm="unterminated)"));
}

TEST(RegistryAuth, ParsesCreds) {
  auto c = parse_creds("ci:pa:ss");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->user, "ci");
  EXPECT_EQ(c->password, "pa:ss");
  EXPECT_FALSE(parse_creds("nocolon"));
  EXPECT_FALSE(parse_creds(":x"));
}

TEST(RegistryAuth, DecodesDockerConfigAuths) {
  // base64("alice:s3cret:x") = YWxpY2U6czNjcmV0Ong=
  const std::string config = R"({"auths": {
      "https://index.docker.io/v1/": {"auth": "Ym9iOnB3"},
      "localhost:5000": {"auth": "YWxpY2U6czNjcmV0Ong="},
      "http://other.example:8080/v2/": {"username": "u", "password": "p"},
      "helper.example": {}
    }, "credsStore": "desktop"})";
  auto a = docker_config_credentials(config, "localhost:5000", "config.json");
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(*a);
  EXPECT_EQ((*a)->user, "alice");
  EXPECT_EQ((*a)->password, "s3cret:x");
  auto d = docker_config_credentials(config, "index.docker.io", "config.json");
  ASSERT_TRUE(d && *d);
  EXPECT_EQ((*d)->user, "bob");
  EXPECT_EQ((*d)->password, "pw");
  auto o = docker_config_credentials(config, "other.example:8080", "config.json");
  ASSERT_TRUE(o && *o);
  EXPECT_EQ((*o)->user, "u");
  auto none = docker_config_credentials(config, "helper.example", "config.json");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto absent = docker_config_credentials(config, "nowhere.example", "config.json");
  ASSERT_TRUE(absent);
  EXPECT_FALSE(*absent);
}

TEST(RegistryAuth, RefusesBadDockerConfigs) {
  auto not_json = docker_config_credentials("{", "h", "cfg");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(not_json.error().message.find("cfg"), std::string::npos);
  EXPECT_FALSE(docker_config_credentials(R"({"auths":{"h":{"auth":"!!!!"}}})", "h", "cfg"));
  // base64("nocolon")
  EXPECT_FALSE(docker_config_credentials(R"({"auths":{"h":{"auth":"bm9jb2xvbg=="}}})", "h", "cfg"));
}

} // namespace
} // namespace kload::registry
