// SHA-256: kload's hasher against one raw OpenSSL call on the same bytes, and many
// blobs hashed at once on the bounded pool. The figure that matters is the ratio:
// util::Sha256 / raw EVP should be ~1.0, and jobs=N should approach N x one core.

#include "fixtures.h"

#include "kload/util/parallel.h"
#include "kload/util/sha256.h"

#include <benchmark/benchmark.h>
#include <openssl/evp.h>

namespace {

using kload::bench::process_cpu_seconds;
using kload::bench::random_bytes;

constexpr std::size_t big_buffer = 256ull << 20;
constexpr std::size_t blob_size = 32ull << 20;
constexpr std::size_t blob_count = 8;

const std::vector<std::byte>& big() {
  static const auto buffer = random_bytes(big_buffer, 42);
  return buffer;
}

const std::vector<std::vector<std::byte>>& blobs() {
  static const auto all = [] {
    std::vector<std::vector<std::byte>> out;
    for (std::size_t i = 0; i < blob_count; ++i) {
      out.push_back(random_bytes(blob_size, 100 + i));
    }
    return out;
  }();
  return all;
}

// Bytes per CPU-second of the whole process, as the counter "cpu_GBps": the per-core
// figure, whatever else runs on the machine.
void per_cpu(benchmark::State& state, std::uint64_t bytes, double cpu_seconds) {
  state.counters["cpu_GBps"] = cpu_seconds > 0 ? static_cast<double>(bytes) / cpu_seconds / 1e9 : 0;
}

// kload::util::Sha256 fed the whole buffer in one update.
void BM_Sha256_Kload_256MiB(benchmark::State& state) {
  const auto& buf = big();
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    kload::util::Sha256 h;
    h.update(std::span<const std::byte>(buf));
    benchmark::DoNotOptimize(h.finish());
  }
  per_cpu(state, state.iterations() * buf.size(), process_cpu_seconds() - cpu0);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}

// The same buffer through kload's hasher in 1 MiB updates, as read_blob feeds it.
void BM_Sha256_Kload_1MiBChunks_256MiB(benchmark::State& state) {
  const auto& buf = big();
  constexpr std::size_t chunk = 1 << 20;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    kload::util::Sha256 h;
    for (std::size_t off = 0; off < buf.size(); off += chunk) {
      h.update(std::span<const std::byte>(buf.data() + off, std::min(chunk, buf.size() - off)));
    }
    benchmark::DoNotOptimize(h.finish());
  }
  per_cpu(state, state.iterations() * buf.size(), process_cpu_seconds() - cpu0);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}

// The reference: a single EVP_Digest call, no wrapper at all.
void BM_Sha256_RawEVP_256MiB(benchmark::State& state) {
  const auto& buf = big();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    if (EVP_Digest(buf.data(), buf.size(), md, &len, EVP_sha256(), nullptr) != 1) {
      state.SkipWithError("EVP_Digest failed");
      break;
    }
    benchmark::DoNotOptimize(md);
  }
  per_cpu(state, state.iterations() * buf.size(), process_cpu_seconds() - cpu0);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * buf.size()));
}

// blob_count blobs of 32 MiB hashed with util::parallel_for on `jobs` threads. Real
// time: the work runs on threads the benchmark's CPU clock does not see.
void BM_Sha256_Parallel_8x32MiB(benchmark::State& state) {
  const auto& all = blobs();
  const auto jobs = static_cast<unsigned>(state.range(0));
  std::vector<kload::util::Digest> out(all.size());
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    kload::util::parallel_for(all.size(), jobs, [&](std::size_t i) {
      kload::util::Sha256 h;
      h.update(std::span<const std::byte>(all[i]));
      out[i] = h.finish();
    });
    benchmark::DoNotOptimize(out.data());
  }
  per_cpu(state, state.iterations() * all.size() * blob_size, process_cpu_seconds() - cpu0);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * all.size() * blob_size));
  state.counters["jobs"] = static_cast<double>(jobs);
}

} // namespace

// Real time everywhere, so the single-thread and parallel figures compare directly.
BENCHMARK(BM_Sha256_RawEVP_256MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Sha256_Kload_256MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Sha256_Kload_1MiBChunks_256MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Sha256_Parallel_8x32MiB)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
