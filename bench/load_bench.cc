// One load's protocol against nodes in memory (tests/load/fake_node.h, the node the
// loader's protocol tests use): the round trips each node costs and kload's own time
// per node, at 1, 10 and 100 nodes, for a first load and an unchanged reload. No
// containerd and no process starts: the figures are what kload itself spends per node
// (plan, write the thin stream, parse, confirm), the part that must not grow with the
// node count; bench/e2e.py measures the rest.

#include "fixtures.h"

#include "kload/cache/cache.h"
#include "kload/format/archive_reader.h"
#include "kload/load/loader.h"
#include "kload/plan/planner.h"
#include "kload/util/temp_dir.h"
#include "load/fake_node.h"

#include <benchmark/benchmark.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace {

using kload::test::FakeNode;

struct Silent final : kload::load::Observer {
  void phase(const std::string&, kload::load::Phase) override {}
  void planned(const std::string&, const kload::plan::NodePlan&) override {}
  void progress(const std::string&, std::uint64_t, std::uint64_t) override {}
  void finished(const kload::load::NodeReport&) override {}
};

// A 4 MiB image of three layers, read once per process.
kload::format::ImageSet& image_set() {
  static const auto set = [] {
    const auto path = kload::bench::Archives::get().make(
        "load-4m.tar", {"--layout", "docker25", "--image", "app:v1=base:2M,mid:1M,top:1M"});
    auto s = std::make_unique<kload::format::ImageSet>();
    if (auto r = kload::format::read_archive(path.string(), *s); !r) {
      std::fprintf(stderr, "load_bench: %s\n", r.error().message.c_str());
      std::abort();
    }
    return s;
  }();
  return *set;
}

// Loads the image into `nodes` with the cache in `cache_dir`, as kload does by default;
// returns the largest round-trip count of any node, or -1 when a node failed.
int load_into(std::vector<std::unique_ptr<FakeNode>>& nodes, const std::filesystem::path& cache_dir) {
  auto& set = image_set();
  auto images = kload::plan::select_images(set, std::nullopt);
  std::vector<kload::load::Target> targets;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    auto uri = kload::node::parse_node_uri("docker://node" + std::to_string(i));
    targets.push_back(kload::load::Target{*uri, nodes[i].get(), nullptr});
  }
  auto cache = kload::cache::Cache::open(cache_dir, [](const std::string&) {});
  if (!cache) {
    return -1;
  }
  kload::load::LoadOptions options;
  options.jobs = 64;
  options.cache = cache->get();
  Silent silent;
  auto report = kload::load::load(set, *images, targets, options, silent);
  if (!report || !report->all_ok()) {
    return -1;
  }
  int most = 0;
  for (const auto& n : report->nodes) {
    most = std::max(most, n.ctr_calls);
  }
  return most;
}

std::vector<std::unique_ptr<FakeNode>> fresh_nodes(std::int64_t n) {
  std::vector<std::unique_ptr<FakeNode>> nodes;
  for (std::int64_t i = 0; i < n; ++i) {
    nodes.push_back(std::make_unique<FakeNode>());
  }
  return nodes;
}

kload::util::TempDir temp_dir() {
  auto dir = kload::util::TempDir::create("kload-bench");
  if (!dir) {
    std::fprintf(stderr, "load_bench: %s\n", dir.error().message.c_str());
    std::abort();
  }
  return std::move(*dir);
}

// Times load_into(nodes) in every iteration, after `prepare` (untimed), and reports
// the busiest node's round trips and the time per node (the loop's real time over the
// node count; it includes the in-memory node reading and hashing what it is sent, as
// containerd would).
void time_loads(benchmark::State& state, std::vector<std::unique_ptr<FakeNode>>& nodes,
                const std::function<std::filesystem::path()>& prepare) {
  int trips = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto cache_dir = prepare();
    state.ResumeTiming();
    trips = load_into(nodes, cache_dir);
    if (trips < 0) {
      state.SkipWithError("a node failed");
      return;
    }
  }
  state.counters["round_trips_per_node"] = trips;
  state.counters["s_per_node"] = benchmark::Counter(static_cast<double>(nodes.size()),
                                                    benchmark::Counter::kIsIterationInvariantRate |
                                                        benchmark::Counter::kInvert);
}

// A first load: every node empty, the cache too.
void BM_Load_FirstLoad_FakeNodes(benchmark::State& state) {
  image_set();
  std::vector<std::unique_ptr<FakeNode>> nodes;
  std::optional<kload::util::TempDir> cache;
  time_loads(state, nodes, [&] {
    nodes = fresh_nodes(state.range(0));
    cache.reset();
    cache.emplace(temp_dir());
    return cache->path();
  });
}

// An unchanged reload: every node holds the image under its name already.
void BM_Load_UnchangedReload_FakeNodes(benchmark::State& state) {
  auto nodes = fresh_nodes(state.range(0));
  const auto cache = temp_dir();
  if (load_into(nodes, cache.path()) < 0) {
    state.SkipWithError("the first load failed");
    return;
  }
  time_loads(state, nodes, [&] {
    for (auto& n : nodes) {
      n->forget_calls();
    }
    return cache.path();
  });
}

} // namespace

BENCHMARK(BM_Load_FirstLoad_FakeNodes)->Arg(1)->Arg(10)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Load_UnchangedReload_FakeNodes)->Arg(1)->Arg(10)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime();
