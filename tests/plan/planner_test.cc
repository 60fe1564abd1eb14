// The planner is pure: inventories in, plan out. These tests use plain values.

#include "kload/plan/planner.h"
#include "kload/util/sha256.h"

#include <gtest/gtest.h>

namespace kload::plan {
namespace {

using format::Image;
using util::Digest;

Digest d(const std::string& s) { return util::Sha256::of(s); }

Image image(const std::string& name, const std::vector<std::string>& layers, const std::string& platform = "linux/amd64") {
  Image i;
  i.names = {name};
  std::string config = name + platform;
  for (const auto& l : layers) {
    i.layers.push_back(format::Layer{format::Descriptor{format::media_type::docker_layer, d(l), 100 + l.size()}, d(l)});
    config += l;
  }
  i.id = d(config);
  i.config = format::Descriptor{format::media_type::docker_config, i.id, 10};
  i.manifest = format::Descriptor{format::media_type::docker_manifest, d("m" + config), 10};
  i.platform = *format::Platform::parse(platform);
  return i;
}

NamedImage holding(const Image& i, bool complete = true) { return NamedImage{i.manifest.digest, {i.id}, complete}; }

TEST(Planner, EmptyNodeGetsEveryLayerOnce) {
  const auto a = image("a", {"base", "a1"});
  const auto b = image("b", {"base", "b1"});
  const auto plan = plan_node({&a, &b}, NodeView{});
  ASSERT_EQ(plan.steps.size(), 2u);
  EXPECT_EQ(plan.steps[0].action, Action::send);
  EXPECT_EQ(plan.steps[1].action, Action::send);
  EXPECT_EQ(plan.layers, (std::vector<Digest>{d("base"), d("a1"), d("b1")}));
  EXPECT_EQ(plan.layer_bytes, a.layers[0].blob.size + a.layers[1].blob.size + b.layers[1].blob.size);
  EXPECT_EQ(plan.skipped_layers, 0u);
}

TEST(Planner, PresentBlobsAreSkippedAndCountedOnce) {
  const auto a = image("a", {"base", "a1"});
  const auto b = image("b", {"base", "b1"});
  NodeView node;
  node.blobs = {d("base")};
  const auto plan = plan_node({&a, &b}, node);
  EXPECT_EQ(plan.layers, (std::vector<Digest>{d("a1"), d("b1")}));
  EXPECT_EQ(plan.skipped_layers, 1u);
  EXPECT_EQ(plan.skipped_bytes, a.layers[0].blob.size);
}

TEST(Planner, NameHoldingTheIdCompleteIsSkipped) {
  const auto a = image("a", {"base"});
  NodeView node;
  node.names["a"] = holding(a);
  const auto plan = plan_node({&a}, node);
  EXPECT_TRUE(plan.nothing_to_do());
  EXPECT_TRUE(plan.layers.empty());
}

TEST(Planner, IncompleteImageIsNotTrusted) {
  const auto a = image("a", {"base"});
  NodeView node;
  node.names["a"] = holding(a, false);
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::send);
  EXPECT_EQ(plan.layers.size(), 1u);
}

TEST(Planner, IdUnderAnotherNameIsRetagged) {
  const auto a = image("a", {"base"});
  NodeView node;
  node.names["z-other"] = holding(a);
  node.names["b-other"] = holding(a);
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::retag);
  EXPECT_EQ(plan.steps[0].retag_from, "b-other") << "the choice is stable: smallest name";
  EXPECT_EQ(plan.steps[0].names, std::vector<std::string>{"a"});
  EXPECT_TRUE(plan.layers.empty());
}

TEST(Planner, RetagPrefersANameAtTheSameManifest) {
  const auto a = image("a", {"base"});
  NodeView node;
  node.names["b-other"] = NamedImage{d("another manifest, same config"), {a.id}, true};
  node.names["z-other"] = holding(a);
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::retag);
  EXPECT_EQ(plan.steps[0].retag_from, "z-other") << "a name at this manifest lets the commit import set the name";
}

TEST(Planner, NamePointingElsewhereIsRepointed) {
  const auto a = image("a", {"base", "v1"});
  const auto a2 = image("a", {"base", "v2"});
  NodeView node;
  node.names["a"] = holding(a);
  node.blobs = {d("base"), d("v1")};
  const auto plan = plan_node({&a2}, node);
  ASSERT_EQ(plan.steps[0].action, Action::send);
  EXPECT_EQ(plan.layers, std::vector<Digest>{d("v2")});
  EXPECT_EQ(plan.steps[0].names, std::vector<std::string>{"a"});
}

TEST(Planner, OnlyMissingNamesOfAMultiNameImageAreSet) {
  auto a = image("a", {"base"});
  a.names = {"a", "b"};
  NodeView node;
  node.names["a"] = holding(a);
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::retag);
  EXPECT_EQ(plan.steps[0].retag_from, "a");
  EXPECT_EQ(plan.steps[0].names, std::vector<std::string>{"b"});
}

TEST(Planner, IndexWithSeveralIdsCountsForEach) {
  const auto amd = image("a", {"base"}, "linux/amd64");
  NodeView node;
  node.names["a"] = NamedImage{d("index"), {d("other-platform"), amd.id}, true};
  EXPECT_TRUE(plan_node({&amd}, node).nothing_to_do());
}

// An image the input names through an index, of this machine's platform: its names
// point at the index.
Image indexed(const std::string& name, const std::vector<std::string>& layers) {
  auto i = image(name, layers, format::Platform::host().str());
  i.indexes = {format::Descriptor{format::media_type::oci_index, d("index of " + name), 300}};
  return i;
}

TEST(Planner, NameAtTheIndexIsPresent) {
  const auto a = indexed("a", {"base"});
  ASSERT_TRUE(a.targets_index());
  NodeView node;
  node.names["a"] = NamedImage{a.indexes[0].digest, {a.id}, true};
  EXPECT_TRUE(plan_node({&a}, node).nothing_to_do());
}

TEST(Planner, NameAtTheBareManifestOfAnIndexedImageIsPointedAtTheIndex) {
  const auto a = indexed("a", {"base"});
  NodeView node;
  node.names["a"] = holding(a);  // what an older kload made: the manifest itself
  node.blobs = {d("base")};
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::retag);
  EXPECT_EQ(plan.steps[0].retag_from, "a");
  EXPECT_EQ(plan.steps[0].names, std::vector<std::string>{"a"});
  EXPECT_TRUE(plan.layers.empty());
}

TEST(Planner, RetagPrefersANameAtTheIndex) {
  auto a = indexed("a", {"base"});
  a.names = {"a", "c"};
  NodeView node;
  node.names["a"] = holding(a);
  node.names["b"] = NamedImage{a.indexes[0].digest, {a.id}, true};
  const auto plan = plan_node({&a}, node);
  ASSERT_EQ(plan.steps[0].action, Action::retag);
  EXPECT_EQ(plan.steps[0].retag_from, "b");
  EXPECT_EQ(plan.steps[0].names, (std::vector<std::string>{"a", "c"}));
}

TEST(Planner, AnotherPlatformThanThisMachinesIsNamedAtItsManifest) {
  auto other = image("a", {"base"}, format::Platform::host().architecture == "arm64" ? "linux/amd64" : "linux/arm64");
  other.indexes = {format::Descriptor{format::media_type::oci_index, d("index"), 300}};
  EXPECT_FALSE(other.targets_index());
  EXPECT_EQ(other.target().digest, other.manifest.digest);
  NodeView node;
  node.names["a"] = holding(other);
  EXPECT_TRUE(plan_node({&other}, node).nothing_to_do());
}

TEST(Planner, MetadataOfAnIndexedImageStartsWithItsIndexes) {
  auto a = indexed("a", {"base"});
  a.indexes.push_back(format::Descriptor{format::media_type::oci_index, d("inner"), 200});
  EXPECT_EQ(format::ImageSet::metadata_of(a),
            (std::vector<Digest>{a.indexes[0].digest, d("inner"), a.manifest.digest, a.config.digest}));
  EXPECT_EQ(format::ImageSet::blobs_of(a).back(), d("base"));
}

TEST(SelectImages, PicksTheWantedPlatform) {
  format::ImageSet set;
  set.images.push_back(image("docker.io/library/a:1", {"x"}, "linux/amd64"));
  set.images.push_back(image("docker.io/library/a:1", {"y"}, "linux/arm64"));
  auto arm = select_images(set, format::Platform::parse("linux/arm64"));
  ASSERT_TRUE(arm.has_value()) << arm.error().message;
  ASSERT_EQ(arm->size(), 1u);
  EXPECT_EQ((*arm)[0]->platform.architecture, "arm64");
  auto none = select_images(set, format::Platform::parse("linux/s390x"));
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().message.find("linux/amd64, linux/arm64"), std::string::npos) << none.error().message;
}

TEST(SelectImages, UnavailablePlatformIsExplained) {
  format::ImageSet set;
  set.images.push_back(image("docker.io/library/a:1", {"x"}, "linux/amd64"));
  set.unavailable.push_back(format::UnavailableImage{{"docker.io/library/a:1"}, *format::Platform::parse("linux/arm64"),
                                                     "in.tar", "manifest sha256:... is not in the archive"});
  auto r = select_images(set, format::Platform::parse("linux/arm64"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_NE(r.error().message.find("not loadable"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("in.tar"), std::string::npos);
}

TEST(SelectImages, SinglePlatformImageOfAnotherArchIsTakenWithoutPlatformFlag) {
  format::ImageSet set;
  set.images.push_back(image("docker.io/library/a:1", {"x"}, "linux/riscv64"));
  auto r = select_images(set, std::nullopt);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->size(), 1u);
}

TEST(SelectImages, UnnamedImagesAreAnErrorNamingTheSource) {
  format::ImageSet set;
  auto i = image("x", {"x"});
  i.names.clear();
  i.source = "oci.tar";
  set.images.push_back(i);
  auto r = select_images(set, std::nullopt);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("oci.tar"), std::string::npos);
}

TEST(SelectEveryPlatform, TakesEveryPlatformOfAWholeIndexElseTheHostsAlone) {
  const auto index = format::Descriptor{format::media_type::oci_index, d("index"), 300};
  format::ImageSet set;
  for (const char* platform : {"linux/amd64", "linux/arm64", "linux/s390x"}) {
    set.images.push_back(image("docker.io/library/a:1", {platform}, platform));
    set.images.back().indexes = {index};
  }
  set.images.push_back(image("docker.io/library/b:1", {"b"}, "linux/riscv64"));
  auto all = select_every_platform(set);
  ASSERT_TRUE(all.has_value()) << all.error().message;
  EXPECT_EQ(all->size(), 4u);

  // A platform of a's index missing from the input: a's host platform alone.
  set.unavailable.push_back(format::UnavailableImage{{"docker.io/library/a:1"},
                                                     *format::Platform::parse("linux/ppc64le"), set.images[0].source,
                                                     "manifest sha256:... is not in the archive"});
  auto part = select_every_platform(set);
  ASSERT_TRUE(part.has_value()) << part.error().message;
  ASSERT_EQ(part->size(), 2u);
  EXPECT_TRUE((*part)[0]->platform.matches(format::Platform::host()));
  EXPECT_EQ((*part)[1]->names.front(), "docker.io/library/b:1");
}

} // namespace
} // namespace kload::plan
