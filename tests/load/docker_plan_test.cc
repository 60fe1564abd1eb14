// The decisions of `kload docker-image` with plain values: no Docker, no node.

#include "kload/load/docker_plan.h"

#include <gtest/gtest.h>

#include <string>

namespace kload::load {
namespace {

using util::Digest;

Digest digest_of(char c) { return *Digest::parse_hex(std::string(64, c)); }

source::DockerImage docker(const std::string& ref, char id, std::vector<std::string> tags,
                           const std::string& platform = "linux/amd64") {
  return source::DockerImage{ref, digest_of(id), std::move(tags), {}, *format::Platform::parse(platform)};
}

const std::string app = "docker.io/library/app:v1";
const std::string side = "docker.io/library/side:v1";

DockerWanted wanted(const std::string& name, char id) {
  return DockerWanted{docker(name, id, {name}), {name}, {name}, true};
}

TEST(DockerPlan, RefsAreValidatedAndAskedOnce) {
  auto refs = docker_refs({"app:v1", "side:v1", "app:v1"});
  ASSERT_TRUE(refs.has_value()) << refs.error().message;
  EXPECT_EQ(*refs, (std::vector<std::string>{"app:v1", "side:v1"}));

  auto bad = docker_refs({"app:v1", "a..b:v1"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("a..b:v1"), std::string::npos) << bad.error().message;

  auto staging = docker_refs({"localhost/kload-staging/app:v1"});
  ASSERT_FALSE(staging.has_value());
  EXPECT_EQ(staging.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(staging.error().message.find("staging"), std::string::npos) << staging.error().message;
}

TEST(DockerPlan, RefsWithoutATagAreTaggedLatestForTheSave) {
  EXPECT_EQ(tagged_ref("app"), "app:latest");
  EXPECT_EQ(tagged_ref("localhost:5000/app"), "localhost:5000/app:latest");
  EXPECT_EQ(tagged_ref("localhost:5000/app:v1"), "localhost:5000/app:v1");
  EXPECT_EQ(tagged_ref("app@" + digest_of('1').str()), "app@" + digest_of('1').str());
}

TEST(DockerPlan, WantedImagesGroupRefsByIdAndRequireATag) {
  auto w = wanted_images({docker("app:v1", 'a', {app, "docker.io/library/app:v2"}),
                          docker("app:v2", 'a', {app, "docker.io/library/app:v2"}), docker("side:v1", 'c', {side})},
                         std::nullopt);
  ASSERT_TRUE(w.has_value()) << w.error().message;
  ASSERT_EQ(w->size(), 2u);
  EXPECT_EQ((*w)[0].names, (std::vector<std::string>{app, "docker.io/library/app:v2"}));
  EXPECT_EQ((*w)[0].refs, (std::vector<std::string>{"app:v1", "app:v2"}));

  auto by_id = wanted_images({docker("3b9aa46749f9", 'a', {app})}, std::nullopt);
  ASSERT_FALSE(by_id.has_value());
  EXPECT_EQ(by_id.error().kind, util::ErrorKind::usage);
  EXPECT_NE(by_id.error().message.find("not one of the image's tags"), std::string::npos);

  auto untagged = wanted_images({docker("app:v1", 'a', {})}, std::nullopt);
  ASSERT_FALSE(untagged.has_value());
  EXPECT_NE(untagged.error().message.find("has no tag in Docker"), std::string::npos);

  auto other_platform = wanted_images({docker("app:v1", 'a', {app})}, format::Platform::parse("linux/arm64"));
  ASSERT_TRUE(other_platform.has_value());
  EXPECT_FALSE((*other_platform)[0].platform_ok);
}

TEST(DockerPlan, ANameHoldsTheImageByDockersIdOrCrisIdReference) {
  const auto w = wanted(app, 'a');
  // containerd store: the name points at Docker's ID (a manifest or index digest).
  EXPECT_TRUE(node_holds(w, {{app, digest_of('a'), true}}, nullptr));
  EXPECT_FALSE(node_holds(w, {{app, digest_of('a'), false}}, nullptr)) << "incomplete";
  // classic store: CRI's sha256:<ID> reference points at the same manifest.
  EXPECT_TRUE(node_holds(w, {{app, digest_of('7'), true}, {digest_of('a').str(), digest_of('7'), true}}, nullptr));
  EXPECT_FALSE(node_holds(w, {{app, digest_of('7'), true}, {digest_of('a').str(), digest_of('8'), true}}, nullptr));
  EXPECT_FALSE(node_holds(w, {}, nullptr)) << "no such name";
  auto other_platform = w;
  other_platform.platform_ok = false;
  EXPECT_FALSE(node_holds(other_platform, {{app, digest_of('a'), true}}, nullptr));
}

TEST(DockerPlan, TheCacheMapsATargetToDockersIdOrToTheConfigOfItsIndex) {
  const auto w = wanted(app, 'a');
  cache::NodeRecord record;
  record.target_ids[digest_of('7')] = {digest_of('a')};  // classic store: the manifest's config is the ID
  EXPECT_TRUE(node_holds(w, {{app, digest_of('7'), true}}, &record));
  EXPECT_FALSE(node_holds(w, {{app, digest_of('7'), true}}, nullptr));

  // containerd store: Docker's index 'a' stands for config 'c'. A name at manifest '7'
  // of another platform than this machine's holds it (a load names that platform at
  // its manifest); of this machine's platform it does not: a load names it at the
  // index, and so re-points a name an older load left at the manifest.
  const bool arm = format::Platform::host().architecture == "arm64";
  auto other = w;
  other.docker.platform = *format::Platform::parse(arm ? "linux/amd64" : "linux/arm64");
  auto here = w;
  here.docker.platform = format::Platform::host();
  cache::NodeRecord index;
  index.target_ids[digest_of('a')] = {digest_of('c')};
  index.target_ids[digest_of('7')] = {digest_of('c')};
  EXPECT_TRUE(node_holds(other, {{app, digest_of('7'), true}}, &index));
  EXPECT_FALSE(node_holds(here, {{app, digest_of('7'), true}}, &index));
  EXPECT_TRUE(node_holds(here, {{app, digest_of('a'), true}}, &index)) << "at the index itself";
  index.target_ids[digest_of('7')] = {digest_of('d')};
  EXPECT_FALSE(node_holds(other, {{app, digest_of('7'), true}}, &index));
}

NodeCheck check(std::vector<bool> held, std::string error = "") {
  NodeCheck c;
  c.held = std::move(held);
  c.error = std::move(error);
  return c;
}

TEST(DockerPlan, OnlyImagesSomeNeedyNodeLacksAreSaved) {
  const std::vector<DockerWanted> w{wanted(app, 'a'), wanted(side, 'c')};
  // node 0 holds all, node 1 lacks app, node 2 failed its check.
  const auto plan = plan_save(w, {check({true, true}), check({false, true}), check({}, "unreachable")});
  EXPECT_EQ(plan.needy, std::vector<std::size_t>{1});
  EXPECT_EQ(plan.save, std::vector<std::size_t>{0});
  EXPECT_EQ(plan.held, std::vector<std::size_t>{1});
  EXPECT_EQ(plan.save_refs, std::vector<std::string>{app});
  EXPECT_FALSE(plan.nothing_to_save());

  const auto settled = plan_save(w, {check({true, true}), check({}, "unreachable")});
  EXPECT_TRUE(settled.nothing_to_save());
  EXPECT_TRUE(settled.save.empty());
  EXPECT_TRUE(settled.save_refs.empty());
}

format::Image image(std::vector<std::string> names, char id, char manifest) {
  format::Image i;
  i.names = std::move(names);
  i.id = digest_of(id);
  i.manifest.digest = digest_of(manifest);
  i.platform = *format::Platform::parse("linux/amd64");
  return i;
}

TEST(DockerPlan, KeepWantedKeepsOnlyWantedNamesAndNeedsEach) {
  format::ImageSet set;
  set.images.push_back(image({app, "docker.io/library/app:other"}, 'a', '7'));
  set.images.push_back(image({"docker.io/library/unwanted:v1"}, 'c', '8'));
  ASSERT_TRUE(keep_wanted(set, {wanted(app, 'a')}, "docker save app:v1").has_value());
  ASSERT_EQ(set.images.size(), 1u);
  EXPECT_EQ(set.images[0].names, std::vector<std::string>{app});

  auto missing = keep_wanted(set, {wanted(side, 'c')}, "docker save side:v1");
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("docker save side:v1: the archive Docker wrote has no image named " + side),
            std::string::npos)
      << missing.error().message;
}

TEST(DockerPlan, SavedAsInspectedByConfigManifestOrAnIndexListingTheManifest) {
  const auto w = wanted(app, 'a');
  format::ImageSet set;
  EXPECT_TRUE(saved_as_inspected(set, w, image({app}, 'a', '7'))) << "classic store: the ID is the config";
  EXPECT_TRUE(saved_as_inspected(set, w, image({app}, 'c', 'a'))) << "the ID is the manifest";
  EXPECT_FALSE(saved_as_inspected(set, w, image({app}, 'c', '7'))) << "the tag moved";

  // containerd store: Docker's ID is an index blob, hashed as read, listing manifest '7'.
  const std::string index = R"({"manifests":[{"digest":")" + digest_of('7').str() + R"("}]})";
  format::Blob blob;
  blob.digest = digest_of('a');
  blob.computed = digest_of('a');
  blob.where.memory = std::make_shared<const std::string>(index);
  set.blobs[digest_of('a')] = blob;
  const auto loaded = image({app}, 'c', '7');
  EXPECT_TRUE(saved_as_inspected(set, w, loaded));
  EXPECT_EQ(config_of_index(set, w, loaded), digest_of('c'));
  EXPECT_EQ(config_of_index(set, w, image({app}, 'c', '8')), std::nullopt) << "not listed by the index";
  set.blobs[digest_of('a')].computed = digest_of('b');
  EXPECT_EQ(config_of_index(set, w, loaded), std::nullopt) << "an index blob not proven is no proof";
}

TEST(DockerPlan, LoadedImageIsTheOneCarryingTheFirstName) {
  const auto a = image({side}, 'c', '8');
  const auto b = image({app}, 'a', '7');
  EXPECT_EQ(loaded_image({&a, &b}, wanted(app, 'a')), &b);
  EXPECT_EQ(loaded_image({&a}, wanted(app, 'a')), nullptr);
}

} // namespace
} // namespace kload::load
