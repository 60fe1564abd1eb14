#include "kload/load/image_names.h"

#include <gtest/gtest.h>

#include <string>

namespace kload::load {
namespace {

util::Digest digest_of(char c) { return *util::Digest::parse_hex(std::string(64, c)); }

format::Image image(std::vector<std::string> names, char id, const std::string& source,
                    const std::string& platform = "linux/amd64") {
  format::Image i;
  i.names = std::move(names);
  i.id = digest_of(id);
  i.manifest.digest = digest_of(static_cast<char>(id + 1));
  i.platform = *format::Platform::parse(platform);
  i.source = source;
  return i;
}

void expect_error(const util::Result<std::vector<const format::Image*>>& r, util::ErrorKind kind,
                  const std::vector<std::string>& words) {
  ASSERT_FALSE(r.has_value()) << "accepted";
  EXPECT_EQ(r.error().kind, kind);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  for (const auto& w : words) {
    EXPECT_NE(r.error().message.find(w), std::string::npos) << "no \"" << w << "\" in: " << r.error().message;
  }
}

const std::string app = "docker.io/library/app:v1";
const auto amd64 = format::Platform::parse("linux/amd64");

TEST(ImageNames, ADigestNameMustNameTheImagesManifest) {
  format::ImageSet set;
  set.images.push_back(image({"docker.io/library/nginx@" + digest_of('1').str()}, 'a', "a.tar"));
  expect_error(choose_images(set, amd64, ""), util::ErrorKind::bad_input,
               {"a.tar", "docker.io/library/nginx@" + digest_of('1').str(), "names manifest",
                digest_of('b').str()});

  format::ImageSet tagged;  // nginx:1@sha256:... too
  tagged.images.push_back(image({"docker.io/library/nginx:1@" + digest_of('1').str()}, 'a', "a.tar"));
  expect_error(choose_images(tagged, amd64, ""), util::ErrorKind::bad_input, {"nginx:1@", "names manifest"});

  format::ImageSet right;  // the manifest kload sends for the image ('a' + 1)
  right.images.push_back(image({"docker.io/library/nginx:1@" + digest_of('b').str(), app}, 'a', "a.tar"));
  auto chosen = choose_images(right, amd64, "");
  ASSERT_TRUE(chosen.has_value()) << chosen.error().message;
  EXPECT_EQ(chosen->size(), 1u);
}

TEST(ImageNames, ADigestNameOfAnImageNamedAtItsIndexMustNameTheIndex) {
  // As containerd points it: the name is set at the index, so its digest is the index's.
  const auto here = format::Platform::host().str();
  auto at = [&](char digest) {
    auto i = image({"docker.io/library/nginx@" + digest_of(digest).str()}, 'a', "c.tar", here);
    i.indexes = {format::Descriptor{format::media_type::oci_index, digest_of('9'), 300}};
    return i;
  };
  format::ImageSet by_manifest;
  by_manifest.images.push_back(at('b'));
  expect_error(choose_images(by_manifest, std::nullopt, ""), util::ErrorKind::bad_input,
               {"c.tar", "names " + digest_of('b').str() + ",", "named at index " + digest_of('9').str()});
  format::ImageSet by_index;
  by_index.images.push_back(at('9'));
  auto chosen = choose_images(by_index, std::nullopt, "");
  ASSERT_TRUE(chosen.has_value()) << chosen.error().message;
  EXPECT_EQ(chosen->size(), 1u);
}

TEST(ImageNames, TheStagingNamespaceIsRefusedInArchivesAndOnTheCommandLine) {
  format::ImageSet set;
  set.images.push_back(image({app, "localhost/kload-staging/app:v1"}, 'a', "a.tar"));
  expect_error(choose_images(set, amd64, ""), util::ErrorKind::bad_input,
               {"a.tar", "localhost/kload-staging/app:v1", "staging"});

  auto r = parse_name_as("localhost/kload-staging/x:1");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
  EXPECT_NE(r.error().message.find("--name-as"), std::string::npos) << r.error().message;
  // Beside it, but not in it.
  EXPECT_TRUE(parse_name_as("localhost/kload-staging:1").has_value());
}

TEST(ImageNames, OneNameOnTwoImagesOfOnePlatformNamesBothSources) {
  format::ImageSet set;
  set.images.push_back(image({app}, 'a', "one.tar"));
  set.images.push_back(image({"docker.io/library/other:v1", app}, 'c', "two.tar"));
  expect_error(choose_images(set, amd64, ""), util::ErrorKind::bad_input,
               {app, "two different images", "one.tar", "two.tar", digest_of('a').str(), digest_of('c').str()});
}

TEST(ImageNames, OneNameOnTwoPlatformsIsOneImageAndTheSameIdTwiceIsNoClash) {
  format::ImageSet set;
  set.images.push_back(image({app}, 'a', "x.tar", "linux/amd64"));
  set.images.push_back(image({app}, 'c', "x.tar", "linux/arm64"));
  set.images.push_back(image({app}, 'a', "y.tar", "linux/amd64"));  // same ID, other layout
  auto chosen = choose_images(set, amd64, "");
  ASSERT_TRUE(chosen.has_value()) << chosen.error().message;
  ASSERT_EQ(chosen->size(), 1u);
  EXPECT_EQ((*chosen)[0]->id, digest_of('a'));
}

TEST(ImageNames, TwoChosenImagesSharingASecondNameClash) {
  // Different platforms, so not a clash before selection; but with no image of the
  // wanted platform under "other", its only image is chosen beside app's.
  format::ImageSet set;
  set.images.push_back(image({app, "docker.io/library/shared:v1"}, 'a', "one.tar", "linux/amd64"));
  set.images.push_back(image({"docker.io/library/other:v1", "docker.io/library/shared:v1"}, 'c', "two.tar",
                             "linux/arm64"));
  expect_error(choose_images(set, std::nullopt, ""), util::ErrorKind::bad_input,
               {"docker.io/library/shared:v1", "one.tar", "two.tar"});
}

TEST(ImageNames, AnUnnamedImageBesideNamedOnesIsAnErrorWithoutNameAs) {
  format::ImageSet set;
  set.images.push_back(image({app}, 'a', "named.tar"));
  set.images.push_back(image({}, 'c', "unnamed.tar"));
  expect_error(choose_images(set, amd64, ""), util::ErrorKind::bad_input,
               {"unnamed.tar", digest_of('c').str(), "has no name", "--name-as"});
}

TEST(ImageNames, AnArchiveOfOnlyUnnamedImagesIsAnErrorSuggestingNameAs) {
  format::ImageSet set;
  set.images.push_back(image({}, 'c', "unnamed.tar"));
  expect_error(choose_images(set, amd64, ""), util::ErrorKind::bad_input, {"unnamed.tar", "has no name", "--name-as"});
}

TEST(ImageNames, NameAsNamesEveryUnnamedImageAndItsPlatforms) {
  format::ImageSet set;
  set.images.push_back(image({app}, 'a', "named.tar"));
  set.images.push_back(image({}, 'c', "multi.tar", "linux/amd64"));
  set.images.push_back(image({}, 'e', "multi.tar", "linux/arm64"));
  set.unavailable.push_back(format::UnavailableImage{{}, *format::Platform::parse("linux/s390x"), "multi.tar", "gone"});
  const auto name = parse_name_as("dev");
  ASSERT_TRUE(name.has_value()) << name.error().message;
  EXPECT_EQ(*name, "docker.io/library/dev:latest");
  auto chosen = choose_images(set, amd64, *name);
  ASSERT_TRUE(chosen.has_value()) << chosen.error().message;
  ASSERT_EQ(chosen->size(), 2u);
  EXPECT_EQ(set.images[1].names, std::vector<std::string>{*name});
  EXPECT_EQ(set.images[2].names, std::vector<std::string>{*name});
  EXPECT_EQ(set.unavailable[0].names, std::vector<std::string>{*name});
  EXPECT_EQ(set.images[0].names, std::vector<std::string>{app});  // named images keep theirs
}

TEST(ImageNames, NameAsTwoUnnamedImagesOfOnePlatformClashes) {
  format::ImageSet set;
  set.images.push_back(image({}, 'a', "one.tar"));
  set.images.push_back(image({}, 'c', "two.tar"));
  expect_error(choose_images(set, amd64, "docker.io/library/dev:v1"), util::ErrorKind::bad_input,
               {"docker.io/library/dev:v1", "one.tar", "two.tar"});
}

TEST(ImageNames, NameAsMustBeAValidTaggedName) {
  for (const std::string bad : {"App", "a..b", "-x.io/app:v1", ""}) {
    auto r = parse_name_as(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().kind, util::ErrorKind::usage);
    EXPECT_NE(r.error().message.find("--name-as"), std::string::npos) << r.error().message;
  }
  auto digest = parse_name_as("app@" + digest_of('1').str());
  ASSERT_FALSE(digest.has_value());
  EXPECT_NE(digest.error().message.find("not a digest"), std::string::npos) << digest.error().message;
  EXPECT_EQ(parse_name_as("example.com/team/app:dev").value_or(""), "example.com/team/app:dev");
}

} // namespace
} // namespace kload::load
