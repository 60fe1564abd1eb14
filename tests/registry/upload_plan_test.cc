#include "kload/registry/upload_plan.h"

#include "kload/util/sha256.h"

#include <gtest/gtest.h>

namespace kload::registry {
namespace {

util::Digest d(const std::string& s) { return util::Sha256::of(s); }

TEST(UploadPlan, SkipsWhatHeadFoundMountsWhatAnotherRepositoryHoldsUploadsTheRest) {
  const std::vector<util::Digest> blobs{d("config"), d("base"), d("shared"), d("new"), d("base")};
  const std::unordered_set<util::Digest> present{d("base")};
  const std::unordered_map<util::Digest, std::string> holders{
      {d("base"), "other"}, {d("shared"), "library/base"}, {d("new"), "library/app"}};
  const auto steps = plan_uploads("library/app", blobs, present, holders);
  ASSERT_EQ(steps.size(), 4u);  // "base" once
  EXPECT_EQ(steps[0].digest, d("config"));
  EXPECT_EQ(steps[0].action, BlobAction::upload);
  EXPECT_EQ(steps[1].action, BlobAction::present);
  EXPECT_EQ(steps[2].action, BlobAction::mount);
  EXPECT_EQ(steps[2].from, "library/base");
  // A holder that is this very repository is no mount source.
  EXPECT_EQ(steps[3].action, BlobAction::upload);
}

TEST(UploadPlan, AnUnchangedPushSendsNothing) {
  const std::vector<util::Digest> blobs{d("config"), d("layer")};
  const auto steps = plan_uploads("r", blobs, {d("config"), d("layer")}, {});
  for (const auto& s : steps) {
    EXPECT_EQ(s.action, BlobAction::present);
  }
}

} // namespace
} // namespace kload::registry
