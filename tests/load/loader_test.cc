// The loader's commit protocol over a node in memory (fake_node.h): every path a
// load can take, in milliseconds, with no containerd. Images are real archives from
// tools/mkimage read by the real reader; the fake node reads the real archives kload
// writes.

#include "kload/cache/cache.h"
#include "kload/format/archive_reader.h"
#include "kload/load/loader.h"
#include "kload/plan/planner.h"
#include "load/fake_node.h"
#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <fstream>
#include <unistd.h>

namespace kload::load {
namespace {

using test::FakeNode;
using Op = FakeNode::Op;
using ::testing::HasSubstr;

// Prints nothing; keeps the phases it was told of, in order.
struct Quiet final : Observer {
  void phase(const std::string&, Phase p) override {
    phases.push_back(p);
    if (p == Phase::sending && on_sending) {
      on_sending();
    }
  }
  void planned(const std::string&, const plan::NodePlan&) override {}
  void progress(const std::string&, std::uint64_t, std::uint64_t) override {}
  void finished(const NodeReport&) override {}
  std::vector<Phase> phases;
  std::function<void()> on_sending;  // runs when a node starts sending
};

class LoaderProtocol : public ::testing::Test {
protected:
  // An archive of `images` ("NAME=LAYERSPEC"), read into a set of its own.
  std::unique_ptr<format::ImageSet> archive(const std::string& file, const std::vector<std::string>& images,
                                            const std::vector<std::string>& extra = {"--layout", "docker25"}) {
    std::vector<std::string> args = extra;
    for (const auto& i : images) {
      args.insert(args.end(), {"--image", i});
    }
    args.push_back((scratch_ / file).string());
    EXPECT_TRUE(testing::mkimage(args));
    auto set = std::make_unique<format::ImageSet>();
    auto r = format::read_archive((scratch_ / file).string(), *set);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return set;
  }

  // One image ID as two manifests: its layers gzip in one archive, zstd in the other.
  std::pair<std::unique_ptr<format::ImageSet>, std::unique_ptr<format::ImageSet>> two_manifests(
      const std::string& gz_name, const std::string& zst_name) {
    auto gz = archive("gz.tar", {gz_name + "=base:4K"}, {"--layout", "docker25", "--layer-compression", "gzip"});
    auto zst = archive("zst.tar", {zst_name + "=base:4K"}, {"--layout", "docker25", "--layer-compression", "zstd"});
    EXPECT_EQ(gz->images.at(0).id, zst->images.at(0).id);
    EXPECT_NE(gz->images.at(0).manifest.digest, zst->images.at(0).manifest.digest);
    return {std::move(gz), std::move(zst)};
  }

  // Loads base:v1 (one 4K layer, "base") into `node`, then forgets the calls.
  void give_base(FakeNode& node) {
    auto base = archive("base.tar", {"base:v1=base:4K"});
    ASSERT_EQ(load_into(node, *base).status, NodeStatus::ok);
    node.forget_calls();
  }

  NodeReport load_into(FakeNode& node, format::ImageSet& set, bool with_cache = true,
                       std::shared_ptr<const EarlierProbe> probed = nullptr) {
    auto images = plan::select_images(set, std::nullopt);
    EXPECT_TRUE(images.has_value()) << images.error().message;
    const std::vector<Target> targets{Target{uri_, &node, std::move(probed)}};
    LoadOptions options;
    options.cache = with_cache ? cache() : nullptr;
    options.wire = wire_;
    Quiet quiet;
    quiet.on_sending = on_sending_;
    auto report = load::load(set, *images, targets, options, quiet);
    phases_ = quiet.phases;
    EXPECT_TRUE(report.has_value()) << report.error().message;
    return report ? report->nodes.at(0) : NodeReport{};
  }

  // A rebuild under the same name: v1 loaded, then v2 (another top layer). The plan
  // comes from the record; the staging round trip makes sure, before its import, that
  // the node is still the one the record describes. `node` says how its tag behaves.
  NodeReport reload_rebuilt(FakeNode& node, format::ImageSet& v1, format::ImageSet& v2) {
    EXPECT_EQ(load_into(node, v1).status, NodeStatus::ok);
    node.forget_calls();
    const auto r = load_into(node, v2);
    EXPECT_EQ(r.status, NodeStatus::ok) << r.error;
    EXPECT_EQ(r.layers_sent, 1u);
    EXPECT_FALSE(r.retried);
    EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(v2));
    return r;
  }

  static node::NodeUri fake_uri() { return *node::parse_node_uri("docker://fake"); }

  // `n` empty nodes (docker://fake0, fake1, ...) into `nodes`, and their targets.
  static std::vector<Target> fake_nodes(int n, std::vector<std::unique_ptr<FakeNode>>& nodes) {
    std::vector<Target> targets;
    for (int i = 0; i < n; ++i) {
      nodes.push_back(std::make_unique<FakeNode>());
      targets.push_back(Target{*node::parse_node_uri("docker://fake" + std::to_string(i)), nodes.back().get(), nullptr});
    }
    return targets;
  }

  // What a caller that probes before loading `set` (docker-image's pre-check) hands
  // the load.
  std::shared_ptr<const EarlierProbe> probe_first(FakeNode& node, const format::ImageSet& set) {
    auto record = cache()->node(uri_.text);
    EXPECT_TRUE(record.has_value());
    const cache::NodeRecord* known = record && *record ? &**record : nullptr;
    std::vector<util::Digest> ids;
    for (const auto& image : set.images) {
      ids.push_back(image.id);
    }
    auto p = node.probe(first_probe_request(cache(), known, uri_, wire_, ids));
    EXPECT_TRUE(p.has_value()) << p.error().message;
    return std::make_shared<const EarlierProbe>(EarlierProbe{std::move(*p), 0});
  }

  cache::Cache* cache() {
    if (!cache_) {
      auto c = cache::Cache::open(scratch_ / "cache", [](const std::string&) {});
      EXPECT_TRUE(c.has_value()) << c.error().message;
      cache_ = std::move(*c);
    }
    return cache_.get();
  }

  static util::Digest manifest_of(const format::ImageSet& set, std::size_t i = 0) {
    return set.images.at(i).manifest.digest;
  }

  static std::vector<std::string> staging_left(const FakeNode& node) {
    std::vector<std::string> out;
    for (const auto& [name, target] : node.images) {
      if (is_staging_name(name)) {
        out.push_back(name);
      }
    }
    return out;
  }

  testing::Scratch scratch_;
  std::unique_ptr<cache::Cache> cache_;
  std::vector<Phase> phases_;  // those the last load_into reported
  node::NodeUri uri_ = fake_uri();                         // the node load_into loads into
  node::WireCompression wire_ = node::WireCompression::zstd;  // the load's --wire-compression
  std::function<void()> on_sending_;                       // see Quiet::on_sending
};

TEST_F(LoaderProtocol, FirstLoadStagesChecksCommitsAndConfirmsInTheImportsRoundTrip) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_TRUE(staging_left(node).empty());
  // The name is new on the node and the stream carried every blob: once the import
  // succeeded, a tag creates the name, in the round trip of the import (no gate: the
  // image relies on nothing the node held).
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::inventory, Op::snapshotter, Op::import, Op::tag,
                                       Op::remove, Op::check}));
  EXPECT_EQ(r.ctr_calls, node.calls()) << "the report counts what the client counted";
  EXPECT_EQ(r.ctr_calls, 2) << "a probe, then the import with the commit and its check";
  EXPECT_EQ(r.layers_sent, 2u);
  EXPECT_EQ(phases_, (std::vector<Phase>{Phase::planning, Phase::sending, Phase::confirming}));
}

TEST_F(LoaderProtocol, UnchangedReloadIsOneCall) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  node.forget_calls();
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check}));
  EXPECT_FALSE(node.probes.back().uuid) << "the record holds the image: no UUID asked";
  EXPECT_EQ(r.ctr_calls, 1);
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].action, plan::Action::skip);
  EXPECT_EQ(phases_, std::vector<Phase>{Phase::planning}) << "nothing to send or name: planning only";
}

TEST_F(LoaderProtocol, ReloadOfARebuiltImageOnContainerd2IsTwoRoundTrips) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K,top:2K"});
  auto v2 = archive("v2.tar", {"app:v1=base:4K,top2:2K"});
  FakeNode node;
  node.tag_updates = true;
  const auto r = reload_rebuilt(node, *v1, *v2);
  // The record lacks the new image, so the first round trip asks the UUID beside the
  // check, and the import's round trip needs no check of it before the import. The tag
  // re-points the name once the gate found the new image complete.
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::import, Op::check, Op::tag, Op::remove, Op::check}));
  EXPECT_TRUE(node.probes.back().uuid);
  EXPECT_EQ(r.ctr_calls, 2);
}

TEST_F(LoaderProtocol, ReloadOfARebuiltImageOnContainerd1IsThreeRoundTrips) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K,top:2K"});
  auto v2 = archive("v2.tar", {"app:v1=base:4K,top2:2K"});
  FakeNode node;
  const auto r = reload_rebuilt(node, *v1, *v2);
  // 1.x's tag refuses the name that exists, and changes nothing: the commit import
  // re-points it, in a round trip of its own.
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::import, Op::check, Op::tag, Op::import, Op::remove,
                                       Op::check}));
  EXPECT_EQ(r.ctr_calls, 3);
}

TEST_F(LoaderProtocol, RecreatedNodeIsListedBeforeAnythingIsSentToIt) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K,top:2K"});
  auto v2 = archive("v2.tar", {"app:v1=base:4K,top2:2K"});
  FakeNode old_node;
  ASSERT_EQ(load_into(old_node, *v1).status, NodeStatus::ok);
  FakeNode node;  // the same URI, a new containerd: empty, another UUID
  node.uuid = "99999999-2222-3333-4444-555555555555";
  const auto r = load_into(node, *v2);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_FALSE(r.retried) << "nothing was sent on the old plan: no retry";
  EXPECT_EQ(r.listings, 1);
  EXPECT_EQ(r.layers_sent, 2u) << "every layer: the record's claims were of the old node";
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::check, Op::uuid, Op::inventory, Op::snapshotter,
                                       Op::import, Op::tag, Op::remove, Op::check}))
      << "nothing imported before the listing";
  EXPECT_EQ(r.ctr_calls, 3) << "the first round trip's UUID showed the new node: the listing came next";
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v2));
}

TEST_F(LoaderProtocol, SecondNameOfAnImageOnTheNodeIsSetByTheCommitImport) {
  auto one = archive("one.tar", {"app:one=base:4K"});
  auto two = archive("two.tar", {"app:two=base:4K"});
  ASSERT_EQ(manifest_of(*one), manifest_of(*two));
  FakeNode node;
  ASSERT_EQ(load_into(node, *one).status, NodeStatus::ok);
  node.forget_calls();
  const auto r = load_into(node, *two);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  // The name's manifest is on the node: an import of manifest and config sets it in
  // one step, where `tag --force` would delete and create it.
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::import, Op::check})) << "no listing, no tag";
  EXPECT_EQ(r.ctr_calls, 2);
  EXPECT_EQ(r.layers_sent, 0u);
  EXPECT_EQ(node.images.at("docker.io/library/app:two"), manifest_of(*two));
}

TEST_F(LoaderProtocol, NameOfAnotherManifestOfTheImageIsATagFromACheckedSource) {
  auto [gz, zst] = two_manifests("app:gz", "app:zst");
  FakeNode node;
  ASSERT_EQ(load_into(node, *gz).status, NodeStatus::ok);
  node.forget_calls();
  const auto r = load_into(node, *zst);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::tag, Op::check})) << "no listing, no import";
  EXPECT_EQ(node.images.at("docker.io/library/app:zst"), manifest_of(*gz)) << "the image ID, as the node holds it";
}

// Issue 11, item 1: a name kload set is pointed elsewhere behind its back; the next
// load of the same image under another name must not copy what that name holds now.
TEST_F(LoaderProtocol, RetagNeverCopiesANameThatMovedBehindKloadsBack) {
  auto both = archive("both.tar", {"app:one=base:4K", "other:v1=else:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *both).status, NodeStatus::ok);
  // Outside kload: app:one now names the other image; X's manifest has no name left
  // and garbage collection takes its blobs.
  node.images["docker.io/library/app:one"] = node.images.at("docker.io/library/other:v1");
  node.collect_garbage();
  auto two = archive("two.tar", {"app:two=base:4K"});
  const auto r = load_into(node, *two);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:two"), manifest_of(*two));
  EXPECT_TRUE(node.complete(manifest_of(*two)));
  EXPECT_TRUE(r.retried) << "the record claimed blobs GC took: one re-listing";
  EXPECT_TRUE(staging_left(node).empty());
}

// Issue 11, item 5: an image removed behind kload's back (crictl rmi, kubelet GC).
TEST_F(LoaderProtocol, AProbeMadeJustBeforeTheLoadIsItsFirstRoundTrip) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  const auto probed = probe_first(node, *set);
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::inventory, Op::snapshotter}))
      << "a first contact: the listing too";
  node.forget_calls();
  const auto r = load_into(node, *set, true, probed);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_TRUE(staging_left(node).empty());
  EXPECT_EQ(node.log, (std::vector<Op>{Op::import, Op::tag, Op::remove, Op::check}));
  EXPECT_EQ(r.ctr_calls, 1);
  EXPECT_EQ(r.listings, 1) << "the earlier probe's listing is the load's";
}

TEST_F(LoaderProtocol, AnEarlierProbeThatAsksLessThanTheLoadNeedsIsNotUsed) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  auto p = node.probe({});  // names only, and no record: the load needs the listing
  ASSERT_TRUE(p.has_value());
  node.forget_calls();
  const auto r = load_into(node, *set, true, std::make_shared<const EarlierProbe>(EarlierProbe{std::move(*p), 0}));
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(r.ctr_calls, 2) << "a probe of its own, then the import with its commit";
  EXPECT_TRUE(node.complete(manifest_of(*set)));
}

TEST_F(LoaderProtocol, ANodeThatChangedSinceTheEarlierProbeStillGetsTheRightImage) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  auto v2 = archive("b.tar", {"app:v1=base:4K,next:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set, false).status, NodeStatus::ok);
  const auto probed = probe_first(node, *v2);
  // Between the probe and the load: the image goes and GC takes its blobs.
  node.images.clear();
  node.collect_garbage();
  node.unpacked.clear();
  const auto r = load_into(node, *v2, true, probed);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_TRUE(r.retried);
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v2));
  EXPECT_TRUE(node.complete(manifest_of(*v2)));
  EXPECT_TRUE(staging_left(node).empty());
}

TEST_F(LoaderProtocol, ImageRemovedBehindKloadsBackIsLoadedAgain) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  node.images.clear();
  node.collect_garbage();
  node.unpacked.clear();
  node.forget_calls();
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_EQ(r.layers_sent, 2u) << "the retry sent, proven, what the record wrongly claimed";
  // The record said the image was there, so the first round trip did not ask the UUID;
  // the plan from the record sends after all, and its round trip asks before the import.
  EXPECT_FALSE(node.probes.at(node.probes.size() - 2).uuid);
  ASSERT_GE(node.log.size(), 3u);
  EXPECT_EQ((std::vector<Op>{node.log[0], node.log[1], node.log[2]}), (std::vector<Op>{Op::check, Op::uuid, Op::import}));
}

TEST_F(LoaderProtocol, BlobLostWhileItsSnapshotStaysIsCaughtByTheStagingCheck) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  auto v2 = archive("b.tar", {"app:v1=base:4K,next:2K"});
  // The base layer's blob goes (discarded), its snapshot stays: ctr imports without a
  // word and leaves an incomplete image.
  node.before(Op::import, 1, [&](FakeNode& n) { n.content.erase(set->images[0].layers[0].blob.digest); });
  const auto r = load_into(node, *v2);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_TRUE(r.retried);
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v2));
  EXPECT_TRUE(node.complete(manifest_of(*v2)));
}

TEST_F(LoaderProtocol, StillIncompleteAfterTheRetryFailsAndLeavesTheNameAlone) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  auto v2 = archive("b.tar", {"app:v1=base:4K,next:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  const auto lose_base = [&](FakeNode& n) { n.content.erase(set->images[0].layers[0].blob.digest); };
  node.before(Op::import, 1, lose_base);
  // Checks: the plan's, the first staged one, the re-plan's, the retry's staged one.
  node.before(Op::check, 4, lose_base);
  const auto r = load_into(node, *v2);
  EXPECT_THAT(r.error, HasSubstr("still incomplete after re-listing"));
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set)) << "the user's name is untouched";
  EXPECT_TRUE(staging_left(node).empty());
}

TEST_F(LoaderProtocol, FailedCommitImportLeavesTheNameAsItWasAndNoStaging) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  auto v2 = archive("b.tar", {"app:v1=base:4K,next:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  node.fail(Op::import, 2, "node fake: importing: ctr: connection lost");
  const auto r = load_into(node, *v2);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.error, "node fake: importing: ctr: connection lost");
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(staging_left(node).empty()) << "the guard removed the staging name";
}

// Issue 13: a node that went away mid-load is told apart from a step that failed on a
// node still there (the test above): one `ctr version` after the failure, and the
// message says so and what a rerun does. The name stays as it was.
TEST_F(LoaderProtocol, ANodeThatWentAwayDuringTheLoadIsSaidToHaveGoneAndARerunToResume) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  auto v2 = archive("b.tar", {"app:v1=base:4K,next:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  node.fail(Op::import, 1, "node fake: importing: ctr: transport is closing");
  node.before(Op::import, 1, [](FakeNode& n) { n.fail(Op::uuid, 1, "node fake: not reachable: gone"); });
  const auto r = load_into(node, *v2);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.error, "node fake: importing: ctr: transport is closing; the node no longer answers: it went away "
                     "during the load. Once it is back, a rerun resumes: it sends only what the node still lacks");
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));

  const auto rerun = load_into(node, *v2);
  ASSERT_EQ(rerun.status, NodeStatus::ok) << rerun.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v2));
}

TEST_F(LoaderProtocol, NameCreatedByAnotherLoadDuringTheCommitIsCommittedAgain) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K"});
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  auto other = archive("b.tar", {"app:v1=other:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *v1).status, NodeStatus::ok);
  // containerd 1.x: another load creates the name between the importer's update and
  // its create, and the commit import fails; the next attempt updates the name.
  node.before(Op::import, 2, [&](FakeNode& n) {
    ASSERT_EQ(load_into(n, *other).status, NodeStatus::ok);
  });
  node.fail(Op::import, 2, "node fake: importing: ctr: image \"docker.io/library/app:v1\": already exists",
            node::ImportFailure::name_taken);
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(staging_left(node).empty());
}

// A name new at the probe that another load creates before this load's round trip
// creates it: the tag without --force fails and leaves it; the commit import then
// re-points it, in a round trip of its own.
TEST_F(LoaderProtocol, NewNameCreatedByAnotherLoadMeanwhileIsCommittedByImport) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  auto other = archive("b.tar", {"app:v1=other:4K"});
  FakeNode node;
  node.before(Op::tag, 1, [&](FakeNode& n) { ASSERT_EQ(load_into(n, *other).status, NodeStatus::ok); });
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_TRUE(staging_left(node).empty());
  EXPECT_EQ(r.ctr_calls, 3) << "a probe, the import whose tag failed, the commit import";
}

// The gate is what keeps a new name off an incomplete image: the staged image loses a
// blob between the import and the gate, and the tag never runs.
TEST_F(LoaderProtocol, ANewNameIsNotCreatedWhenTheGateFindsTheStagedImageIncomplete) {
  auto base = archive("base.tar", {"base:v1=base:4K"});
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *base).status, NodeStatus::ok);
  // The blob goes (discarded), its snapshot stays.
  const auto lose_base = [&](FakeNode& n) { n.content.erase(base->images[0].layers[0].blob.digest); };
  node.forget_calls();
  node.before(Op::check, 2, lose_base);  // the probe's check, then the gate's
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_TRUE(r.retried) << "the gate stopped the round trip; the retry re-listed and sent the base";
  EXPECT_EQ(node.calls_of(Op::tag), 1) << "only the retry's tag ran";
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*set));
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_TRUE(staging_left(node).empty());
}

TEST_F(LoaderProtocol, NameRaceThatNeverEndsFailsTheNode) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K"});
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *v1).status, NodeStatus::ok);
  for (int nth = 2; nth <= 4; ++nth) {
    node.fail(Op::import, nth, "node fake: importing: ctr: image \"docker.io/library/app:v1\": already exists",
              node::ImportFailure::name_taken);
  }
  const auto r = load_into(node, *set);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_THAT(r.error, HasSubstr("already exists"));
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v1));
  EXPECT_TRUE(staging_left(node).empty());
}

TEST_F(LoaderProtocol, FailedStagingRemovalFailsTheNodeAndIsTriedAgain) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  node.fail(Op::remove, 1, "node fake: removing images: ctr: deadline exceeded");
  const auto r = load_into(node, *set);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_THAT(r.error, HasSubstr("removing images"));
  EXPECT_TRUE(staging_left(node).empty()) << "the guard's second try at the end of the load";
}

TEST_F(LoaderProtocol, NodeThatDiesBetweenImportAndGateNeverGetsTheName) {
  // The image relies on a layer the node held: the gate (a check after the import)
  // must find it complete before any name is set.
  FakeNode node;
  give_base(node);
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  node.fail(Op::check, 2, "node fake: not reachable: connection refused");
  const auto r = load_into(node, *set);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.layers_sent, 1u) << "only the top: the gate ran";
  EXPECT_FALSE(node.images.contains("docker.io/library/app:v1"));
  EXPECT_TRUE(staging_left(node).empty());
}

TEST_F(LoaderProtocol, AnImageThatReliesOnTheNodesBlobsPassesTheGateBeforeItsName) {
  FakeNode node;
  give_base(node);
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(node.log, (std::vector<Op>{Op::check, Op::uuid, Op::import, Op::check, Op::tag, Op::remove, Op::check}))
      << "relies on the node's base: the gate (a check) comes before the tag";
  EXPECT_EQ(r.layers_sent, 1u);
  // FirstLoadStagesChecksCommitsAndConfirmsInTheImportsRoundTrip: a stream that
  // carries every blob has no gate.
}

TEST_F(LoaderProtocol, FailedRetagFailsTheNode) {
  auto [gz, zst] = two_manifests("app:gz", "app:zst");
  FakeNode node;
  ASSERT_EQ(load_into(node, *gz).status, NodeStatus::ok);
  node.fail(Op::tag, 1, "node fake: tagging: ctr: deadline exceeded");
  const auto r = load_into(node, *zst);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_FALSE(node.images.contains("docker.io/library/app:zst"));
}

TEST_F(LoaderProtocol, FailedImportOfASecondNameFailsTheNode) {
  auto one = archive("one.tar", {"app:one=base:4K"});
  auto two = archive("two.tar", {"app:two=base:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *one).status, NodeStatus::ok);
  node.fail(Op::import, 1, "node fake: importing: ctr: deadline exceeded");
  const auto r = load_into(node, *two);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.error, "node fake: importing: ctr: deadline exceeded");
  EXPECT_FALSE(node.images.contains("docker.io/library/app:two"));
}

// A failed node's report names the images it may lack: those its plan sent (not
// those it held), or every image when it failed before a plan.
TEST_F(LoaderProtocol, AFailedNodeSaysWhichImagesItLacks) {
  auto one = archive("one.tar", {"app:one=base:4K"});
  auto both = archive("both.tar", {"app:one=base:4K", "app:two=top:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *one).status, NodeStatus::ok);
  node.fail(Op::import, 1, "node fake: importing: ctr: deadline exceeded");
  const auto r = load_into(node, *both);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.error_kind, util::ErrorKind::node);
  ASSERT_EQ(r.lacks.size(), 1u);
  EXPECT_EQ(r.lacks[0]->names, std::vector<std::string>{"docker.io/library/app:two"});

  FakeNode gone;
  gone.fail(Op::check, 1, "node fake: not reachable: connection refused");
  const auto g = load_into(gone, *both, false);
  ASSERT_EQ(g.status, NodeStatus::failed);
  EXPECT_EQ(g.lacks.size(), 2u) << "no plan: it may lack every image";

  const auto ok = load_into(node, *both);
  ASSERT_EQ(ok.status, NodeStatus::ok) << ok.error;
  EXPECT_TRUE(ok.lacks.empty());
}

TEST_F(LoaderProtocol, RetagSourceMovedBetweenCheckAndTagIsCaughtByTheConfirm) {
  auto [gz, zst] = two_manifests("app:gz", "app:zst");
  auto other = archive("other.tar", {"other:v1=else:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *gz).status, NodeStatus::ok);
  ASSERT_EQ(load_into(node, *other).status, NodeStatus::ok);
  node.before(Op::tag, 1, [](FakeNode& n) {
    n.images["docker.io/library/app:gz"] = n.images.at("docker.io/library/other:v1");
  });
  const auto r = load_into(node, *zst);
  EXPECT_EQ(r.status, NodeStatus::failed);
  EXPECT_THAT(r.error, HasSubstr("points at"));
}

// Issue 11, item 4: one image ID, two manifests (gzip and zstd copies) in one load.
TEST_F(LoaderProtocol, TwoManifestsOfOneImageIdBothLoad) {
  auto gz = archive("gz.tar", {"app:gz=base:4K"}, {"--layout", "docker25", "--layer-compression", "gzip"});
  ASSERT_TRUE(format::read_archive(
                  [&] {
                    EXPECT_TRUE(testing::mkimage({"--layout", "docker25", "--layer-compression", "zstd", "--image",
                                                  "app:zst=base:4K", (scratch_ / "zst.tar").string()}));
                    return (scratch_ / "zst.tar").string();
                  }(),
                  *gz)
                  .has_value());
  ASSERT_EQ(gz->images.size(), 2u);
  ASSERT_EQ(gz->images[0].id, gz->images[1].id);
  ASSERT_NE(gz->images[0].manifest.digest, gz->images[1].manifest.digest);
  FakeNode node;
  const auto r = load_into(node, *gz);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_TRUE(node.complete(node.images.at("docker.io/library/app:gz")));
  EXPECT_TRUE(node.complete(node.images.at("docker.io/library/app:zst")));
}

// Issue 11, item 8: staging names of loads that provably ended go; others stay.
TEST_F(LoaderProtocol, AbandonedStagingNamesAreRemovedByTheNextLoad) {
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  std::erase(boot, '-');
  boot.resize(8);
  const auto now = static_cast<long>(std::time(nullptr));
  const std::string prefix(staging_prefix);
  const auto dead = fmt::format("{}aaaa:{}-{}-999999999.1-0000abcd", prefix, now, boot);
  const auto alive = fmt::format("{}bbbb:{}-{}-{}-0000abcd", prefix, now, boot, util::own_process_token());
  const auto foreign_young = fmt::format("{}cccc:{}-ffffffff-4242.7-0000abcd", prefix, now);
  const auto old_format_old = fmt::format("{}dddd:{}-4242-0000abcd", prefix, now - 7200);
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  const auto target = util::Digest{};
  for (const auto& n : {dead, alive, foreign_young, old_format_old}) {
    node.images[n] = target;
  }
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_THAT(staging_left(node), ::testing::UnorderedElementsAre(alive, foreign_young));
}

TEST_F(LoaderProtocol, StagingNamesAreNeverARetagSource) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *set).status, NodeStatus::ok);
  // A live load's staging name at this manifest, and the user's name gone.
  node.images[fmt::format("{}x:{}-00000000-{}-1", staging_prefix, std::time(nullptr), util::own_process_token())] =
      manifest_of(*set);
  node.images.erase("docker.io/library/app:v1");
  node.forget_calls();
  const auto r = load_into(node, *set);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].action, plan::Action::send);
  EXPECT_EQ(node.calls_of(Op::import), 1) << "sent again, not retagged from the staging name";
}

TEST_F(LoaderProtocol, DryRunChangesNothing) {
  auto set = archive("a.tar", {"app:v1=base:4K"});
  FakeNode node;
  auto images = plan::select_images(*set, std::nullopt);
  ASSERT_TRUE(images.has_value());
  LoadOptions options;
  options.dry_run = DryRun::yes;
  Quiet quiet;
  const std::vector<Target> targets{Target{*node::parse_node_uri("docker://fake"), &node, nullptr}};
  auto report = load::load(*set, *images, targets, options, quiet);
  ASSERT_TRUE(report.has_value());
  EXPECT_TRUE(node.images.empty());
  EXPECT_EQ(std::count(node.log.begin(), node.log.end(), Op::import), 0);
}

// Nodes that lack the same blobs share one stream body: the input is read for them
// once, and each node still gets its own staging names and a whole archive.
TEST_F(LoaderProtocol, NodesThatLackTheSameBlobsShareOneStreamBody) {
  auto v1 = archive("v1.tar", {"app:v1=base:300K,top:40K"});
  auto images = plan::select_images(*v1, std::nullopt);
  ASSERT_TRUE(images.has_value());
  std::vector<std::unique_ptr<FakeNode>> nodes;
  const auto targets = fake_nodes(4, nodes);
  // The last node holds the base layer already, under another image: its body is
  // another, which no other node reads.
  auto v0 = archive("v0.tar", {"base:v0=base:300K"});
  ASSERT_EQ(v0->images.at(0).layers.at(0).blob.digest, v1->images.at(0).layers.at(0).blob.digest);
  ASSERT_EQ(load_into(*nodes.back(), *v0, false).status, NodeStatus::ok);
  LoadOptions options;
  Quiet quiet;
  auto report = load::load(*v1, *images, targets, options, quiet);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  for (const auto& n : report->nodes) {
    EXPECT_EQ(n.status, NodeStatus::ok) << n.node << ": " << n.error;
  }
  EXPECT_EQ(report->stream_bodies, 1u) << "three nodes share one body; the fourth's is written into its stream";
  const auto both = v1->images.at(0).layers.at(0).blob.size + v1->images.at(0).layers.at(1).blob.size;
  EXPECT_GT(report->stream_bytes, both);
  EXPECT_LT(report->stream_bytes, both + 16 * 1024) << "one body of both layers";
  for (const auto& node : nodes) {
    EXPECT_EQ(node->images.count("docker.io/library/app:v1"), 1u);
  }
  const auto& layers = v1->images.at(0).layers;
  EXPECT_EQ(report->nodes.at(0).layer_bytes_sent, layers.at(0).blob.size + layers.at(1).blob.size);
  EXPECT_EQ(report->nodes.at(3).layer_bytes_sent, layers.at(1).blob.size);
}

// --- through a registry (--via) ---

// A registry in memory that publish fills from the set, and a Via that pulls from it.
class ViaProtocol : public LoaderProtocol {
protected:
  // The bytes of blob `d` of `set` (the manifest kload sends for a docker archive).
  static std::string bytes_of(const format::ImageSet& set, const util::Digest& d) {
    for (const auto& image : set.images) {
      if (image.manifest.digest == d && !image.manifest_bytes.empty()) {
        return image.manifest_bytes;
      }
    }
    const auto* blob = set.find(d);
    if (blob == nullptr) {
      return {};
    }
    if (blob->where.memory) {
      return *blob->where.memory;
    }
    std::ifstream in(blob->where.file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(blob->where.offset));
    std::string out(blob->size, '\0');
    in.read(out.data(), static_cast<std::streamsize>(out.size()));
    return out;
  }

  Via via_for(format::ImageSet& set, const std::vector<const format::Image*>& images) {
    Via via;
    via.pull_address = "registry.test:5000";
    for (const auto* image : images) {
      via.references[image] = "registry.test:5000/library/app@" + image->manifest.digest.str();
    }
    via.publish = [this, &set](const std::vector<const format::Image*>& lacked) -> util::Result<Published> {
      ++publishes_;
      if (publish_error_) {
        return std::unexpected(*publish_error_);
      }
      Published p;
      for (const auto* image : lacked) {
        for (const auto& d : format::ImageSet::blobs_of(*image)) {
          if (!registry_.contains(d)) {
            registry_[d] = bytes_of(set, d);
            ++p.blobs_uploaded;
            p.bytes_uploaded += registry_[d].size();
          }
        }
      }
      return p;
    };
    return via;
  }

  LoadReport load_via(FakeNode& node, format::ImageSet& set) {
    node.registry = &registry_;
    auto images = plan::select_images(set, std::nullopt);
    EXPECT_TRUE(images.has_value());
    const auto via = via_for(set, *images);
    const std::vector<Target> targets{Target{fake_uri(), &node, nullptr}};
    LoadOptions options;
    options.cache = cache();
    options.via = &via;
    Quiet quiet;
    auto report = load::load(set, *images, targets, options, quiet);
    EXPECT_TRUE(report.has_value()) << report.error().message;
    return report ? *report : LoadReport{};
  }

  // Every name on the node but the user's own: staging names and pulled references.
  static std::vector<std::string> extra_names(const FakeNode& node, const std::string& user_name) {
    std::vector<std::string> out;
    for (const auto& [name, target] : node.images) {
      if (name != user_name) {
        out.push_back(name);
      }
    }
    return out;
  }

  std::map<util::Digest, std::string> registry_;
  int publishes_ = 0;
  std::optional<util::Error> publish_error_;
};

constexpr const char* app_name = "docker.io/library/app:v1";

TEST_F(ViaProtocol, PullsUnderAStagingNameThenCommitsAndConfirms) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  const auto report = load_via(node, *set);
  const auto& r = report.nodes.at(0);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  EXPECT_EQ(publishes_, 1);
  ASSERT_TRUE(report.via.has_value());
  EXPECT_TRUE(report.via->published);
  EXPECT_EQ(report.via->uploaded.blobs_uploaded, 4u);  // manifest, config, two layers
  // The pull, the tag to a staging name and its check are one round trip; then the
  // commit names the image and removes the staging name and the pulled reference.
  EXPECT_THAT(node.log, ::testing::ElementsAre(Op::check, Op::uuid, Op::inventory, Op::snapshotter, Op::pull, Op::tag,
                                               Op::check, Op::import, Op::remove, Op::check));
  EXPECT_EQ(node.images.at(app_name), manifest_of(*set));
  EXPECT_TRUE(node.complete(manifest_of(*set)));
  EXPECT_THAT(extra_names(node, app_name), ::testing::IsEmpty());
  EXPECT_EQ(r.layers_sent, 0u);
  EXPECT_EQ(r.layers_pulled, 2u);
  EXPECT_EQ(r.layer_bytes_pulled, r.layer_bytes_planned);
  EXPECT_EQ(node.fetched.size(), 4u);
}

TEST_F(ViaProtocol, AnUnchangedReloadPublishesAndPullsNothing) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  ASSERT_EQ(load_via(node, *set).nodes.at(0).status, NodeStatus::ok);
  node.forget_calls();
  const auto report = load_via(node, *set);
  EXPECT_EQ(report.nodes.at(0).status, NodeStatus::ok);
  EXPECT_EQ(publishes_, 1);
  EXPECT_FALSE(report.via->published);
  EXPECT_EQ(node.calls_of(Op::pull), 0);
  EXPECT_EQ(node.calls(), 1);
}

TEST_F(ViaProtocol, AChangedLayerIsTheOnlyBlobFetchedBesideTheMetadata) {
  auto v1 = archive("v1.tar", {"app:v1=base:4K,top:2K"});
  auto v2 = archive("v2.tar", {"app:v1=base:4K,top2:2K"});
  FakeNode node;
  ASSERT_EQ(load_via(node, *v1).nodes.at(0).status, NodeStatus::ok);
  node.fetched.clear();
  const auto report = load_via(node, *v2);
  const auto& r = report.nodes.at(0);
  ASSERT_EQ(r.status, NodeStatus::ok) << r.error;
  const auto& image = v2->images.at(0);
  EXPECT_THAT(node.fetched, ::testing::UnorderedElementsAre(image.manifest.digest, image.config.digest,
                                                             image.layers.at(1).blob.digest));
  EXPECT_EQ(r.layers_pulled, 1u);
  EXPECT_EQ(node.images.at(app_name), image.manifest.digest);
  EXPECT_THAT(extra_names(node, app_name), ::testing::IsEmpty());
}

TEST_F(ViaProtocol, AFailedPullNamesTheNodeAndTheRegistryAndLeavesNoName) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  // The registry took nothing: publish succeeds but the node finds nothing there.
  registry_.clear();
  auto images = plan::select_images(*set, std::nullopt);
  node.fail(Op::pull, 1, "node fake: pulling registry.test:5000/library/app: ctr: connection refused");
  const auto report = load_via(node, *set);
  const auto& r = report.nodes.at(0);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_THAT(r.error, HasSubstr("node fake: pulling"));
  EXPECT_THAT(r.error, HasSubstr("could not pull from registry registry.test:5000"));
  EXPECT_THAT(r.error, HasSubstr("--via-pull-address"));
  EXPECT_EQ(r.lacks.size(), 1u);
  EXPECT_THAT(node.images, ::testing::IsEmpty());  // no user's name, no staging name, no reference
}

TEST_F(ViaProtocol, APullOfAnImageTheRegistryLacksCreatesNoName) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode node;
  publish_error_.reset();
  const auto report = [&] {
    node.registry = &registry_;
    auto images = plan::select_images(*set, std::nullopt);
    auto via = via_for(*set, *images);
    via.publish = [](const std::vector<const format::Image*>&) -> util::Result<Published> { return Published{}; };
    LoadOptions options;
    options.via = &via;
    Quiet quiet;
    return *load::load(*set, *images, {Target{fake_uri(), &node, nullptr}}, options, quiet);
  }();
  const auto& r = report.nodes.at(0);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_THAT(r.error, HasSubstr("not found"));
  EXPECT_THAT(node.images, ::testing::IsEmpty());
  EXPECT_EQ(node.calls_of(Op::import), 0);
}

TEST_F(ViaProtocol, APushFailureFailsTheNodesThatLackAnImageOnly) {
  auto set = archive("a.tar", {"app:v1=base:4K,top:2K"});
  FakeNode holder;
  ASSERT_EQ(load_into(holder, *set).status, NodeStatus::ok);
  FakeNode empty;
  empty.uuid = "99999999-2222-3333-4444-555555555555";
  publish_error_ = util::Error{util::ErrorKind::node, "registry registry.test:5000: library/app: HTTP 500"};
  holder.registry = &registry_;
  empty.registry = &registry_;
  auto images = plan::select_images(*set, std::nullopt);
  const auto via = via_for(*set, *images);
  LoadOptions options;
  options.via = &via;
  Quiet quiet;
  const auto report = load::load(*set, *images,
                                 {Target{*node::parse_node_uri("docker://holder"), &holder, nullptr},
                                  Target{*node::parse_node_uri("docker://empty"), &empty, nullptr}},
                                 options, quiet);
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->nodes.at(0).status, NodeStatus::ok);
  EXPECT_EQ(report->nodes.at(1).status, NodeStatus::failed);
  EXPECT_THAT(report->nodes.at(1).error, HasSubstr("HTTP 500"));
  EXPECT_EQ(empty.calls_of(Op::pull), 0);
  EXPECT_THAT(empty.images, ::testing::IsEmpty());
}

// --- the stream on the wire ---

node::NodeUri ssh_node() { return *node::parse_node_uri("ssh://root@fake-host"); }

TEST_F(LoaderProtocol, AnSshNodeWithZstdGetsACompressedStreamAndIsAskedOnce) {
  uri_ = ssh_node();
  auto v1 = archive("v1.tar", {"app:v1=base:256K,top:64K"});
  FakeNode node;
  const auto first = load_into(node, *v1);
  ASSERT_EQ(first.status, NodeStatus::ok) << first.error;
  ASSERT_EQ(node.probes.size(), 1u);
  EXPECT_TRUE(node.probes[0].zstd) << "asked in the first round trip";
  EXPECT_EQ(node.streams, (std::vector<node::WireCompression>{node::WireCompression::zstd}));
  EXPECT_EQ(first.wire, node::WireCompression::zstd);
  EXPECT_GT(first.wire_bytes, 0u);
  EXPECT_LT(first.wire_bytes, first.bytes_sent) << "mkimage's layers compress";
  EXPECT_EQ(first.ctr_calls, 2) << "no round trip of its own";
  EXPECT_EQ(node.images.at("docker.io/library/app:v1"), manifest_of(*v1));
  EXPECT_TRUE(node.complete(manifest_of(*v1)));
  EXPECT_TRUE(staging_left(node).empty());
  auto record = cache()->node(uri_.text);
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->zstd, std::optional<bool>(true));

  // The next load knows: it does not ask again, and compresses.
  auto v2 = archive("v2.tar", {"app:v1=base:256K,new:64K"});
  node.probes.clear();
  node.streams.clear();
  const auto second = load_into(node, *v2);
  ASSERT_EQ(second.status, NodeStatus::ok) << second.error;
  ASSERT_FALSE(node.probes.empty());
  EXPECT_FALSE(node.probes[0].zstd);
  EXPECT_EQ(node.streams.front(), node::WireCompression::zstd);
  EXPECT_EQ(second.layers_sent, 1u);
}

TEST_F(LoaderProtocol, AnSshNodeWithoutZstdGetsTheStreamAsItIsAndIsAskedOnce) {
  uri_ = ssh_node();
  auto v1 = archive("v1.tar", {"app:v1=base:64K"});
  FakeNode node;
  node.has_zstd = false;
  const auto first = load_into(node, *v1);
  ASSERT_EQ(first.status, NodeStatus::ok) << first.error;
  EXPECT_TRUE(node.probes.at(0).zstd);
  EXPECT_EQ(node.streams, (std::vector<node::WireCompression>{node::WireCompression::none}));
  EXPECT_EQ(first.wire, node::WireCompression::none);
  EXPECT_EQ(first.wire_bytes, first.bytes_sent);
  auto record = cache()->node(uri_.text);
  ASSERT_TRUE(record && *record);
  EXPECT_EQ((*record)->zstd, std::optional<bool>(false));

  auto v2 = archive("v2.tar", {"app:v1=base:64K,top:4K"});
  node.probes.clear();
  ASSERT_EQ(load_into(node, *v2).status, NodeStatus::ok);
  EXPECT_FALSE(node.probes.at(0).zstd) << "the record says";
}

TEST_F(LoaderProtocol, WithoutACacheTheProbeAsksEachTime) {
  uri_ = ssh_node();
  auto v1 = archive("v1.tar", {"app:v1=base:64K"});
  FakeNode node;
  ASSERT_EQ(load_into(node, *v1, false).status, NodeStatus::ok);
  ASSERT_FALSE(node.probes.empty());
  EXPECT_TRUE(node.probes.front().zstd);
  node.probes.clear();
  ASSERT_EQ(load_into(node, *v1, false).status, NodeStatus::ok);
  ASSERT_EQ(node.probes.size(), 1u) << "an unchanged reload";
  EXPECT_TRUE(node.probes.front().zstd);
}

TEST_F(LoaderProtocol, NodesOnThisMachineAndWireCompressionNoneNeverCompress) {
  auto v1 = archive("v1.tar", {"app:v1=base:64K"});
  FakeNode docker_node;  // docker://: same machine
  const auto local = load_into(docker_node, *v1);
  ASSERT_EQ(local.status, NodeStatus::ok) << local.error;
  EXPECT_FALSE(docker_node.probes.at(0).zstd);
  EXPECT_EQ(docker_node.streams.front(), node::WireCompression::none);
  EXPECT_EQ(local.wire_bytes, local.bytes_sent);

  uri_ = ssh_node();
  wire_ = node::WireCompression::none;
  FakeNode ssh_node_plain;
  const auto plain = load_into(ssh_node_plain, *v1);
  ASSERT_EQ(plain.status, NodeStatus::ok) << plain.error;
  EXPECT_FALSE(ssh_node_plain.probes.at(0).zstd);
  EXPECT_EQ(ssh_node_plain.streams.front(), node::WireCompression::none);
}

// The proof is an earlier read: a layer rewritten in place (same size) before the
// stream is written must fail the node and name nothing, compressed or not; the
// compressed stream is left a cut frame, which no decoder takes as whole.
TEST_F(LoaderProtocol, SshNodesShareOneCompressedBodyEachWithItsOwnNames) {
  auto v1 = archive("v1.tar", {"app:v1=base:256K,top:64K"});
  auto images = plan::select_images(*v1, std::nullopt);
  ASSERT_TRUE(images.has_value());
  FakeNode a;
  FakeNode b;
  const std::vector<Target> targets{Target{*node::parse_node_uri("ssh://root@host-a"), &a, nullptr},
                                    Target{*node::parse_node_uri("ssh://root@host-b"), &b, nullptr}};
  LoadOptions options;
  Quiet quiet;
  auto report = load::load(*v1, *images, targets, options, quiet);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  ASSERT_TRUE(report->all_ok());
  EXPECT_EQ(report->stream_bodies, 1u);
  for (auto* node : {&a, &b}) {
    EXPECT_EQ(node->streams, std::vector<node::WireCompression>{node::WireCompression::zstd});
    EXPECT_EQ(node->images.count("docker.io/library/app:v1"), 1u);
  }
  EXPECT_NE(a.last_compressed, b.last_compressed) << "each stream ends with its own staging names";
}

// Flips one byte of `blob`'s bytes in its input file, in place (same size).
void damage(const format::Blob& blob) {
  ASSERT_TRUE(blob.where.memory == nullptr) << "the blob is read from the input file";
  const int fd = ::open(blob.where.file.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  char c = 0;
  const auto at = static_cast<off_t>(blob.where.offset + blob.size / 2);
  ASSERT_EQ(::pread(fd, &c, 1, at), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, at), 1);
  ::close(fd);
}

TEST_F(LoaderProtocol, AnInputChangedWhileItIsSentFailsTheCompressedStreamAndNamesNothing) {
  uri_ = ssh_node();
  auto v1 = archive("v1.tar", {"app:v1=base:256K"}, {"--layout", "docker-save"});
  const auto& layer = *v1->find(v1->images.at(0).layers.at(0).blob.digest);
  on_sending_ = [&] { damage(layer); };
  FakeNode node;
  const auto r = load_into(node, *v1);
  ASSERT_EQ(r.status, NodeStatus::failed);
  EXPECT_EQ(r.error_kind, util::ErrorKind::bad_input);
  EXPECT_THAT(r.error, HasSubstr(layer.where.entry));
  EXPECT_THAT(r.error, HasSubstr("expected " + layer.digest.str()));
  EXPECT_EQ(node.streams.front(), node::WireCompression::zstd);
  EXPECT_TRUE(node.images.empty()) << "no name, staging or real";
  // The stream's body is written apart from it (spool.h): the failure may reach the
  // stream before any byte does. What did reach it is never a whole frame.
  if (!node.last_compressed.empty()) {
    EXPECT_FALSE(util::zstd_decompress(node.last_compressed).has_value()) << "the frame was closed after the failure";
  }
}

// The stream is the proof (no pass over the input before it): a damaged layer fails
// every node whose stream carries it, naming file and entry, with nothing named there;
// a node that holds that layer already has its true bytes and gets the image.
TEST_F(LoaderProtocol, ADamagedLayerFailsTheNodesItWouldReachAndNoOther) {
  std::vector<std::unique_ptr<FakeNode>> nodes;
  const auto targets = fake_nodes(3, nodes);
  auto v0 = archive("v0.tar", {"base:v0=base:300K"});
  ASSERT_EQ(load_into(*nodes.back(), *v0, false).status, NodeStatus::ok);
  auto v1 = archive("v1.tar", {"app:v1=base:300K,top:40K"});
  const auto& base = *v1->find(v1->images.at(0).layers.at(0).blob.digest);
  const auto& top = *v1->find(v1->images.at(0).layers.at(1).blob.digest);
  ASSERT_EQ(base.digest, v0->images.at(0).layers.at(0).blob.digest);
  damage(base);
  auto images = plan::select_images(*v1, std::nullopt);
  ASSERT_TRUE(images.has_value());
  LoadOptions options;
  Quiet quiet;
  auto report = load::load(*v1, *images, targets, options, quiet);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& r = report->nodes.at(i);
    ASSERT_EQ(r.status, NodeStatus::failed) << r.node;
    EXPECT_EQ(r.error_kind, util::ErrorKind::bad_input);
    EXPECT_THAT(r.error, HasSubstr(base.where.source));
    EXPECT_THAT(r.error, HasSubstr(base.where.entry));
    EXPECT_THAT(r.error, HasSubstr("content is sha256:"));
    EXPECT_THAT(r.error, HasSubstr("expected " + base.digest.str()));
    EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
    EXPECT_TRUE(nodes.at(i)->images.empty()) << "no name, staging or real";
  }
  const auto& holder = report->nodes.at(2);
  EXPECT_EQ(holder.status, NodeStatus::ok) << holder.error;
  EXPECT_EQ(holder.layer_bytes_sent, top.size);
  EXPECT_EQ(nodes.back()->images.at("docker.io/library/app:v1"), manifest_of(*v1));
  EXPECT_EQ(top.computed, top.digest) << "what a stream proved is recorded, for the cache";
  EXPECT_FALSE(base.computed.has_value()) << "what failed is not";
}

// Each blob a load sends is hashed once, by the stream (shared by the nodes that lack
// the same blobs), and counted as this load's proof.
TEST_F(LoaderProtocol, TheStreamsProofIsTheLoadsOnlyReadOfTheInput) {
  auto v1 = archive("v1.tar", {"app:v1=base:300K,top:40K"});
  FakeNode node;
  std::uint64_t layers = 0;
  for (const auto& l : v1->images.at(0).layers) {
    ASSERT_FALSE(v1->find(l.blob.digest)->computed.has_value()) << "a file's layers are not read when indexed";
    layers += l.blob.size;
  }
  auto images = plan::select_images(*v1, std::nullopt);
  ASSERT_TRUE(images.has_value());
  const std::vector<Target> targets{Target{uri_, &node, nullptr}};
  LoadOptions options;
  Quiet quiet;
  std::optional<std::uint64_t> hashed_when_sending;
  quiet.on_sending = [&] {
    hashed_when_sending = 0;
    for (const auto& l : v1->images.at(0).layers) {
      *hashed_when_sending += v1->find(l.blob.digest)->computed ? 1 : 0;
    }
  };
  auto report = load::load(*v1, *images, targets, options, quiet);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  ASSERT_EQ(report->nodes.at(0).status, NodeStatus::ok) << report->nodes.at(0).error;
  EXPECT_EQ(hashed_when_sending, 0u) << "no pass over the input before the stream";
  EXPECT_EQ(report->bytes_hashed, layers);
  EXPECT_EQ(report->blobs_hashed, 2u);
}

} // namespace
} // namespace kload::load
