#include "kload/registry/http.h"
#include "support/test_support.h"

#include <gtest/gtest.h>

namespace kload::registry {
namespace {

HttpResponse answer(long status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

TEST(RegistryHttp, DescribesTheRegistrysFirstError) {
  EXPECT_EQ(describe_response(answer(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown",
      "detail":{}},{"code":"OTHER"}]})")),
            "HTTP 404 (MANIFEST_UNKNOWN: manifest unknown)");
  EXPECT_EQ(describe_response(answer(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})")), "HTTP 401 (UNAUTHORIZED)");
}

TEST(RegistryHttp, DescribesAnswersWithoutAnErrorDocument) {
  EXPECT_EQ(describe_response(answer(405, "Method not allowed\n")), "HTTP 405");
  EXPECT_EQ(describe_response(answer(500, "")), "HTTP 500");
  EXPECT_EQ(describe_response(answer(400, R"({"errors":[]})")), "HTTP 400");
  EXPECT_EQ(describe_response(answer(400, R"({"errors":[{"code":7}]})")), "HTTP 400");
}

TEST(RegistryHttp, TrustsTheGivenCaElseDockersCertsDirElseTheSystem) {
  testing::Scratch scratch;
  const auto certs = scratch / "certs.d";
  EXPECT_EQ(ca_file_for("reg.test:5000", "", certs), std::filesystem::path());
  std::filesystem::create_directories(certs / "reg.test:5000");
  testing::write_file(certs / "reg.test:5000" / "ca.crt", "PEM");
  EXPECT_EQ(ca_file_for("reg.test:5000", "", certs), certs / "reg.test:5000" / "ca.crt");
  EXPECT_EQ(ca_file_for("reg.test", "", certs), std::filesystem::path());
  EXPECT_EQ(ca_file_for("reg.test:5000", "/mine.pem", certs), std::filesystem::path("/mine.pem"));
}

} // namespace
} // namespace kload::registry
