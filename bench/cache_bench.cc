// The inventory cache at cluster scale: node records of 10,000 blobs and 100 names
// (about what a busy node holds), encoded, written and read through cache::Cache, an
// LMDB environment in the benchmarks' private temporary directory (a real file
// system, so every write transaction pays its sync). A kload run reads one record per
// node before planning and writes one per node after loading; `kload cache ls` reads
// them all.

#include "fixtures.h"

#include "kload/cache/cache.h"

#include <benchmark/benchmark.h>

#include <random>
#include <string>

namespace {

using kload::util::Digest;

constexpr int node_count = 1000;
constexpr int blobs_per_node = 10000;
constexpr int names_per_node = 100;

Digest random_digest(std::mt19937_64& rng) {
  std::array<std::uint8_t, Digest::size> bytes{};
  for (auto& b : bytes) {
    b = static_cast<std::uint8_t>(rng());
  }
  return Digest(bytes);
}

kload::cache::NodeRecord make_record(std::mt19937_64& rng) {
  kload::cache::NodeRecord r;
  r.server_uuid = "00000000-0000-0000-0000-" + std::to_string(rng() % 1000000000000ull);
  r.listed_at = 1700000000;
  r.updated_at = 1700000000;
  r.blobs.reserve(blobs_per_node);
  while (r.blobs.size() < static_cast<std::size_t>(blobs_per_node)) {
    r.blobs.insert(random_digest(rng));
  }
  std::vector<Digest> some(r.blobs.begin(), r.blobs.end());
  for (int i = 0; i < names_per_node; ++i) {
    const auto target = some[static_cast<std::size_t>(i) * 97 % some.size()];
    const auto id = some[static_cast<std::size_t>(i) * 89 % some.size()];
    r.names["docker.io/library/svc" + std::to_string(i) + ":v1"] =
        kload::cache::NameRecord{target, {id}, true, i % 2 == 0, 1700000000};
    r.target_ids[target] = {id};
    r.target_blobs[target] = std::vector<Digest>(some.begin() + i * 8, some.begin() + i * 8 + 8);
  }
  return r;
}

std::string key_of(int n) { return "containerd:///run/node" + std::to_string(n) + "/containerd.sock"; }

const std::vector<kload::cache::NodeRecord>& records() {
  static const auto all = [] {
    std::mt19937_64 rng(11);
    std::vector<kload::cache::NodeRecord> out;
    out.reserve(node_count);
    for (int n = 0; n < node_count; ++n) {
      out.push_back(make_record(rng));
    }
    return out;
  }();
  return all;
}

// A cache holding all 1,000 records, opened once.
kload::cache::Cache& filled_cache() {
  static const auto cache = [] {
    auto c = kload::cache::Cache::open(kload::bench::Archives::get().scratch() / "cache-filled",
                                       [](const std::string&) {});
    if (!c) {
      std::fprintf(stderr, "kload_bench: %s\n", c.error().message.c_str());
      std::exit(1);
    }
    const auto& all = records();
    for (int n = 0; n < node_count; ++n) {
      if (auto r = (*c)->put_node(key_of(n), all[static_cast<std::size_t>(n)]); !r) {
        std::fprintf(stderr, "kload_bench: %s\n", r.error().message.c_str());
        std::exit(1);
      }
    }
    return std::move(*c);
  }();
  return *cache;
}

void BM_Cache_EncodeDecode_10kBlobs(benchmark::State& state) {
  const auto& r = records().front();
  std::size_t bytes = 0;
  for (auto _ : state) {
    const auto encoded = kload::cache::encode_node(r);
    auto decoded = kload::cache::decode_node(encoded);
    if (!decoded || decoded->blobs.size() != r.blobs.size()) {
      state.SkipWithError("the record did not survive encoding");
      return;
    }
    bytes = encoded.size();
  }
  state.counters["record_bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// One record written in its own (synced) write transaction, as a kload run does per
// node; keys rotate over the 1,000 nodes, replacing records of the same size.
void BM_Cache_PutNode_10kBlobs(benchmark::State& state) {
  auto c = kload::cache::Cache::open(kload::bench::Archives::get().scratch() / "cache-put", [](const std::string&) {});
  if (!c) {
    state.SkipWithError(c.error().message.c_str());
    return;
  }
  const auto& all = records();
  std::size_t n = 0;
  for (auto _ : state) {
    if (auto r = (*c)->put_node(key_of(static_cast<int>(n % node_count)), all[n % node_count]); !r) {
      state.SkipWithError(r.error().message.c_str());
      return;
    }
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// One record read and decoded from a cache holding 1,000 of them, as a kload run does
// per node before planning.
void BM_Cache_ReadNode_10kBlobs(benchmark::State& state) {
  auto& c = filled_cache();
  std::size_t n = 0;
  for (auto _ : state) {
    auto r = c.node(key_of(static_cast<int>(n % node_count)));
    if (!r || !*r || (*r)->blobs.size() != static_cast<std::size_t>(blobs_per_node)) {
      state.SkipWithError("record missing or short");
      return;
    }
    benchmark::DoNotOptimize(r);
    ++n;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// Every record at once (kload cache ls): 1,000 nodes x 10,000 blobs.
void BM_Cache_ReadAll_1000Nodes(benchmark::State& state) {
  auto& c = filled_cache();
  for (auto _ : state) {
    auto all = c.nodes();
    if (!all || all->size() != static_cast<std::size_t>(node_count)) {
      state.SkipWithError("not every record was read");
      return;
    }
    benchmark::DoNotOptimize(all);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * node_count));
}

} // namespace

BENCHMARK(BM_Cache_EncodeDecode_10kBlobs)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_Cache_PutNode_10kBlobs)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Cache_ReadNode_10kBlobs)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_Cache_ReadAll_1000Nodes)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
