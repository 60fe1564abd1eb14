// Differential tests of the metadata decoding against real containerd (issue #11 item
// 2): hostile documents (keys named twice in different cases, keys Go folds from long s,
// fields spread over two objects, a config named by another digest) are built into
// archives, imported by `ctr images import` straight into one lab node, and loaded by
// kload into another. What kload says the image is (manifest digest, image ID, layers)
// must be what containerd stored, on both nodes.

#include "kload/format/model.h"
#include "kload/util/sha256.h"
#include "support/test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>

namespace kload::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using util::Sha256;

std::string sha(const std::string& data) {
  return Sha256::of(data).str();
}
std::string hex(const std::string& data) {
  return Sha256::of(data).hex();
}

// A layer: a real tar (containerd unpacks it) holding one file.
std::string make_layer(const fs::path& scratch, const std::string& name) {
  const auto dir = scratch / ("layer-" + name);
  fs::create_directories(dir);
  write_file(dir / (name + ".txt"), "layer " + name + "\n");
  const auto out = scratch / ("layer-" + name + ".tar");
  const auto r = run_command({"tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C",
                              dir.string(), "-cf", out.string(), "."});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return read_file(out);
}

std::string config_for(const std::vector<std::string>& layers, const std::string& cmd) {
  json diff_ids = json::array();
  for (const auto& l : layers) {
    diff_ids.push_back(sha(l));
  }
  // The host's platform, so that `ctr images import` (without --all-platforms) takes it.
  return json{{"architecture", format::Platform::host().architecture},
              {"os", "linux"},
              {"config", {{"Cmd", {cmd}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
      .dump();
}

// Files of an archive, written with tar.
std::string tar_of(const fs::path& dir, const std::map<std::string, std::string>& files) {
  fs::create_directories(dir);
  for (const auto& [name, body] : files) {
    fs::create_directories((dir / name).parent_path());
    write_file(dir / name, body);
  }
  const auto out = dir.string() + ".tar";
  const auto r = run_command({"tar", "--sort=name", "-C", dir.string(), "-cf", out, "."});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

struct Seen {
  std::string manifest;            // the target digest of the name
  std::string id;                  // the config digest
  std::vector<std::string> layers; // layer blob digests, bottom first
};

class ContainerdGoJson : public ::testing::Test {
protected:
  Scratch scratch;

  // What containerd stored under `name` on `node`: its target, and the config and
  // layers the manifest's gc labels name (containerd set them from its own decoding).
  static Seen stored(const Lab& lab, int node, const std::string& name) {
    Seen s;
    for (const auto& [n, image] : lab.images(node)) {
      if (n == name) {
        s.manifest = image.target;
        EXPECT_TRUE(image.complete) << name;
      }
    }
    s.id = lab.image_id(node, name);
    const auto ls = lab.ctr(node, {"content", "ls"});
    std::map<int, std::string> layers;
    for (const auto& line : split_lines(ls.out)) {
      if (!line.starts_with(s.manifest + " ") && !line.starts_with(s.manifest + "\t")) {
        continue;
      }
      const std::string prefix = "containerd.io/gc.ref.content.l.";
      for (std::size_t at = line.find(prefix); at != std::string::npos; at = line.find(prefix, at + 1)) {
        const auto eq = line.find('=', at);
        const auto end = line.find_first_of(", \t", eq);
        layers[std::stoi(line.substr(at + prefix.size(), eq - at - prefix.size()))] =
            line.substr(eq + 1, end == std::string::npos ? std::string::npos : end - eq - 1);
      }
    }
    for (const auto& [i, d] : layers) {
      s.layers.push_back(d);
    }
    return s;
  }

  // What `kload inspect` says of the archive's one image.
  static Seen inspected(const std::string& archive) {
    const auto r = kload({"inspect", "--json", archive});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Seen s;
    const auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded() || j["images"].size() != 1) {
      ADD_FAILURE() << "expected one image: " << r.out << r.err;
      return s;
    }
    const auto& image = j["images"][0];
    s.manifest = image["manifest"]["digest"].get<std::string>();
    s.id = image["id"].get<std::string>();
    for (const auto& l : image["layers"]) {
      s.layers.push_back(l["digest"].get<std::string>());
    }
    return s;
  }

  // Imports `archive` with ctr into node 2 and with kload into node 1; containerd's
  // view on both must be kload's. Returns kload's view.
  Seen same_everywhere(const Lab& lab, const std::string& archive, const std::string& name) {
    const auto full = run_command({"sh", "-c", lab.ctr_shell(2) + " images import - < " + archive});
    EXPECT_EQ(full.exit_code, 0) << full.err;
    const auto load = kload({"image-archive", archive, "--node", lab.uris()[0]});
    EXPECT_EQ(load.exit_code, 0) << load.err;
    const auto said = inspected(archive);
    const auto by_ctr = stored(lab, 2, name);
    const auto by_kload = stored(lab, 1, name);
    EXPECT_EQ(said.manifest, by_ctr.manifest);
    EXPECT_EQ(said.id, by_ctr.id);
    EXPECT_EQ(said.layers, by_ctr.layers);
    EXPECT_EQ(by_kload.manifest, by_ctr.manifest);
    EXPECT_EQ(by_kload.id, by_ctr.id);
    EXPECT_EQ(by_kload.layers, by_ctr.layers);
    return said;
  }
};

constexpr const char* app = "docker.io/library/app:v1";

// A docker-save manifest.json naming "Config" and then "config", "Layers" and then
// "LAYERS"; an image config naming "rootfs" and then "RootFS". Before kload decoded as
// Go does, it read "Config" and said the image was the first config while containerd
// stored the second.
TEST_F(ContainerdGoJson, DockerArchiveWithKeysNamedTwice) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto l0 = make_layer(scratch.path(), "a");
  const auto l1 = make_layer(scratch.path(), "b");
  const auto first = config_for({l0, l1}, "/first");
  auto second = config_for({l0, l1}, "/second");
  // The second config names its diff_ids twice: a wrong list first, then the right one.
  second.replace(second.find(R"("rootfs":)"), 9, R"("rootfs":{"diff_ids":[")" + sha("bogus") + R"("]},"RootFS":)");
  const std::string manifest = fmt::format(
      R"([{{"Config":"{}.json","RepoTags":["app:v1"],"Layers":["a/layer.tar","b/layer.tar"],"config":"{}.json","LAYERS":["a/layer.tar","b/layer.tar"]}}])",
      hex(first), hex(second));
  const auto archive = tar_of(scratch / "docker", {{"manifest.json", manifest},
                                                   {hex(first) + ".json", first},
                                                   {hex(second) + ".json", second},
                                                   {"a/layer.tar", l0},
                                                   {"b/layer.tar", l1}});
  const auto said = same_everywhere(lab, archive, app);
  EXPECT_EQ(said.id, sha(second));
  EXPECT_EQ(said.layers, (std::vector<std::string>{sha(l0), sha(l1)}));
}

// A docker-save config whose file name is not the digest of its bytes (item 6).
TEST_F(ContainerdGoJson, DockerConfigNamedByAnotherDigest) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto l0 = make_layer(scratch.path(), "a");
  const auto config = config_for({l0}, "/app");
  const auto name = hex("another config") + ".json";
  const auto archive =
      tar_of(scratch / "docker", {{"manifest.json", fmt::format(R"([{{"Config":"{}","RepoTags":["app:v1"],"Layers":["a/layer.tar"]}}])", name)},
                                  {name, config},
                                  {"a/layer.tar", l0}});
  const auto said = same_everywhere(lab, archive, app);
  EXPECT_EQ(said.id, sha(config));
}

// An OCI manifest whose config descriptor is spread over "config" and "Config" (the
// second naming its digest "digeſt"), whose layers are "layers": null then "Layerſ";
// an index.json whose descriptor names "digest" and then "Digest".
TEST_F(ContainerdGoJson, OciArchiveWithKeysNamedTwice) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto l0 = make_layer(scratch.path(), "a");
  const auto first = config_for({l0}, "/first");
  const auto second = config_for({l0}, "/second");
  const auto layers = fmt::format(R"([{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}])",
                                  sha(l0), l0.size());
  const auto decoy = fmt::format(
      R"({{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":{}}})",
      sha(first), first.size(), layers);
  const auto manifest = fmt::format(
      "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":"
      "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":{}}},\"Config\":{{\"dige\u017Ft\":\"{}\","
      "\"size\":{}}},\"layers\":null,\"Layer\u017F\":{}}}",
      sha(first), first.size(), sha(second), second.size(), layers);
  const auto index = fmt::format(
      R"({{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"Digest":"{}","annotations":{{"io.containerd.image.name":"{}"}}}}]}})",
      sha(decoy), manifest.size(), sha(manifest), app);
  const auto archive = tar_of(scratch / "oci", {{"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
                                                {"index.json", index},
                                                {"blobs/sha256/" + hex(first), first},
                                                {"blobs/sha256/" + hex(second), second},
                                                {"blobs/sha256/" + hex(decoy), decoy},
                                                {"blobs/sha256/" + hex(manifest), manifest},
                                                {"blobs/sha256/" + hex(l0), l0}});
  const auto said = same_everywhere(lab, archive, app);
  EXPECT_EQ(said.manifest, sha(manifest));
  EXPECT_EQ(said.id, sha(second));
  EXPECT_EQ(said.layers, std::vector<std::string>{sha(l0)});
}

// The names: manifest.json naming "RepoTags" and then "repoTags"; index.json naming
// "annotations" and then "Annotations" (Go merges the two maps, the later value of a
// key winning). kload read the first of each, so it named a different image than ctr.
TEST_F(ContainerdGoJson, NamesFromKeysNamedTwice) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto l0 = make_layer(scratch.path(), "a");
  const auto config = config_for({l0}, "/app");
  const auto docker = tar_of(
      scratch / "docker",
      {{"manifest.json",
        fmt::format(R"([{{"Config":"{}.json","RepoTags":["decoy:v1"],"Layers":["a/layer.tar"],"repoTags":["app:v1"]}}])",
                    hex(config))},
       {hex(config) + ".json", config},
       {"a/layer.tar", l0}});
  // Another image ID: kload retags an image ID a node already holds, keeping its manifest.
  const auto config2 = config_for({l0}, "/app2");
  const auto manifest = fmt::format(
      R"({{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}})",
      sha(config2), config2.size(), sha(l0), l0.size());
  const auto index = fmt::format(
      R"({{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/decoy:v2"}},"Annotations":{{"io.containerd.image.name":"docker.io/library/app:v2"}}}}]}})",
      sha(manifest), manifest.size());
  const auto oci = tar_of(scratch / "oci", {{"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
                                            {"index.json", index},
                                            {"blobs/sha256/" + hex(config2), config2},
                                            {"blobs/sha256/" + hex(manifest), manifest},
                                            {"blobs/sha256/" + hex(l0), l0}});
  same_everywhere(lab, docker, app);
  same_everywhere(lab, oci, "docker.io/library/app:v2");
  for (int node = 1; node <= 2; ++node) {
    std::vector<std::string> names;
    for (const auto& [name, image] : lab.images(node)) {
      names.push_back(name);
    }
    EXPECT_EQ(names, (std::vector<std::string>{app, "docker.io/library/app:v2"})) << "node " << node;
  }
}

// An index.json naming nothing beside a manifest.json naming the image (item 6): kload
// reads it as a docker save, as `docker load` does. containerd's importer reads only
// the index (`ctr images import` fails: "image might be filtered out"), so the node
// that kload loaded must hold exactly what kload said.
TEST_F(ContainerdGoJson, EmptyIndexBesideManifestJson) {
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto l0 = make_layer(scratch.path(), "a");
  const auto config = config_for({l0}, "/app");
  const auto archive = tar_of(
      scratch / "both",
      {{"manifest.json",
        fmt::format(R"([{{"Config":"{}.json","RepoTags":["app:v1"],"Layers":["a/layer.tar"]}}])", hex(config))},
       {"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
       {"index.json", R"({"schemaVersion":2,"manifests":[]})"},
       {hex(config) + ".json", config},
       {"a/layer.tar", l0}});
  const auto full = run_command({"sh", "-c", lab.ctr_shell(2) + " images import - < " + archive});
  EXPECT_NE(full.exit_code, 0) << "containerd imported it after all: compare with it";
  const auto load = kload({"image-archive", archive, "--node", lab.uris()[0]});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  const auto said = inspected(archive);
  EXPECT_EQ(said.id, sha(config));
  const auto by_kload = stored(lab, 1, app);
  EXPECT_EQ(by_kload.manifest, said.manifest);
  EXPECT_EQ(by_kload.id, said.id);
  EXPECT_EQ(by_kload.layers, said.layers);
}

} // namespace
} // namespace kload::testing
