// Issue 11, item 11: `--json` output survives any byte in a file name. A path that is
// not UTF-8 used to abort kload (nlohmann refuses to serialise it); now such bytes
// become U+FFFD and the document is whole.

#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kload::testing {
namespace {

TEST(CliJson, InspectOfAFileNameThatIsNotUtf8GivesWholeJson) {
  Scratch scratch;
  const auto path = (scratch / "app\xff\xfe.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:4K", path}));
  const auto r = kload({"inspect", "--json", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << r.out;
  ASSERT_EQ(doc["images"].size(), 1u);
  EXPECT_NE(r.out.find("app\xef\xbf\xbd\xef\xbf\xbd.tar"), std::string::npos)
      << "each byte that is not UTF-8 becomes U+FFFD: " << r.out;
}

} // namespace
} // namespace kload::testing
