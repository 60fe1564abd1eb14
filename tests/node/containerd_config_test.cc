#include "kload/node/containerd_config.h"

#include <gtest/gtest.h>

namespace kload::node {
namespace {

TEST(CriSnapshotter, Version2LayoutAsKindShipsIt) {
  EXPECT_EQ(cri_snapshotter(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  discard_unpacked_layers = true
  snapshotter = "native"
)"),
            "native");
}

TEST(CriSnapshotter, Version3AndLaterReadTheImagesPlugin) {
  // containerd 2.x dumps its configuration as version 3 (2.0, 2.1) or 4 (2.2 on).
  for (const char* version : {"3", "4"}) {
    const std::string dump = std::string("version = ") + version + R"(
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'fuse-overlayfs'
  [plugins.'io.containerd.grpc.v1.cri'.containerd]
    snapshotter = 'ignored-in-this-layout'
)";
    EXPECT_EQ(cri_snapshotter(dump), "fuse-overlayfs") << "version " << version;
  }
}

TEST(CriSnapshotter, NoVersionMeansTheOldLayout) {
  EXPECT_EQ(cri_snapshotter("[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"overlayfs\"\n"),
            "overlayfs");
}

TEST(CriSnapshotter, NothingWhenAbsentEmptyWrongTypeOrNotToml) {
  EXPECT_EQ(cri_snapshotter("version = 2\n"), std::nullopt) << "no CRI plugin";
  EXPECT_EQ(cri_snapshotter("version = 3\n[plugins.'io.containerd.cri.v1.images']\nsnapshotter = ''\n"),
            std::nullopt);
  EXPECT_EQ(cri_snapshotter("version = 3\n[plugins.'io.containerd.cri.v1.images']\nsnapshotter = 7\n"),
            std::nullopt);
  EXPECT_EQ(cri_snapshotter("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = 1\n"),
            std::nullopt);
  EXPECT_EQ(cri_snapshotter("time=\"...\" level=fatal msg=\"failed to load config\""), std::nullopt);
  EXPECT_EQ(cri_snapshotter(""), std::nullopt);
}

} // namespace
} // namespace kload::node
