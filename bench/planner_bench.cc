// The planner at cluster scale: plan::plan_node for 1,000 nodes, each of which knows
// 10,000 blobs and 100 image names, for an image set of 10 images (8 layers each, 5 of
// them a shared base). Pure: every NodeView is built in memory once, outside timing.
// Nodes come in four kinds, so every branch of the planner runs: empty of ours, base
// only (send the top layers), everything under our names (skip), everything under
// other names (retag).

#include "kload/format/model.h"
#include "kload/plan/planner.h"

#include <benchmark/benchmark.h>

#include <random>
#include <string>

namespace {

using kload::util::Digest;

constexpr int node_count = 1000;
constexpr int blobs_per_node = 10000;
constexpr int names_per_node = 100;
constexpr int image_count = 10;
constexpr int base_layers = 5;
constexpr int own_layers = 3;

Digest random_digest(std::mt19937_64& rng) {
  std::array<std::uint8_t, Digest::size> bytes{};
  for (auto& b : bytes) {
    b = static_cast<std::uint8_t>(rng());
  }
  return Digest(bytes);
}

struct Cluster {
  kload::format::ImageSet set;
  std::vector<const kload::format::Image*> images;
  std::vector<kload::plan::NodeView> nodes;
};

const Cluster& cluster() {
  static const Cluster c = [] {
    Cluster out;
    std::mt19937_64 rng(7);
    std::vector<kload::format::Layer> base;
    for (int i = 0; i < base_layers; ++i) {
      base.push_back({{kload::format::media_type::docker_layer, random_digest(rng), 64ull << 20}, random_digest(rng)});
    }
    for (int i = 0; i < image_count; ++i) {
      kload::format::Image image;
      image.names = {"docker.io/library/svc" + std::to_string(i) + ":v1"};
      image.id = random_digest(rng);
      image.config = {kload::format::media_type::docker_config, image.id, 2000};
      image.manifest = {kload::format::media_type::docker_manifest, random_digest(rng), 1000};
      image.layers = base;
      for (int l = 0; l < own_layers; ++l) {
        image.layers.push_back(
            {{kload::format::media_type::docker_layer, random_digest(rng), 8ull << 20}, random_digest(rng)});
      }
      out.set.images.push_back(std::move(image));
    }
    for (const auto& image : out.set.images) {
      out.images.push_back(&image);
    }
    out.nodes.resize(node_count);
    for (int n = 0; n < node_count; ++n) {
      auto& view = out.nodes[n];
      view.blobs.reserve(blobs_per_node);
      const int kind = n % 4;
      if (kind != 0) {
        for (const auto& l : base) {
          view.blobs.insert(l.blob.digest);
        }
      }
      if (kind >= 2) {
        for (const auto& image : out.set.images) {
          view.blobs.insert(image.manifest.digest);
          view.blobs.insert(image.config.digest);
          for (const auto& l : image.layers) {
            view.blobs.insert(l.blob.digest);
          }
          const auto name = kind == 2 ? image.names.front() : "registry.local/other/" + image.names.front();
          view.names[name] = kload::plan::NamedImage{image.manifest.digest, {image.id}, true};
        }
      }
      while (view.blobs.size() < static_cast<std::size_t>(blobs_per_node)) {
        view.blobs.insert(random_digest(rng));
      }
      while (view.names.size() < static_cast<std::size_t>(names_per_node)) {
        view.names["docker.io/library/unrelated" + std::to_string(view.names.size()) + ":latest"] =
            kload::plan::NamedImage{random_digest(rng), {random_digest(rng)}, true};
      }
    }
    return out;
  }();
  return c;
}

void BM_PlanNode_1000Nodes_10kBlobs(benchmark::State& state) {
  const auto& c = cluster();
  std::size_t layers = 0;
  for (auto _ : state) {
    layers = 0;
    for (const auto& node : c.nodes) {
      const auto plan = kload::plan::plan_node(c.images, node);
      layers += plan.layers.size();
      benchmark::DoNotOptimize(plan.steps.data());
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * c.nodes.size()));
  state.counters["nodes"] = static_cast<double>(c.nodes.size());
  state.counters["layers_planned"] = static_cast<double>(layers);
}

} // namespace

BENCHMARK(BM_PlanNode_1000Nodes_10kBlobs)->Unit(benchmark::kMillisecond)->MinTime(1.0);
