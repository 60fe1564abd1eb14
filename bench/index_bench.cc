// Indexing: format::read_archive on a 1 GiB uncompressed docker-save archive, which
// must read only tar headers and JSON (bytes_read is the proof, reported as a
// counter), against a zstd-compressed archive, which must be decompressed, hashed
// and spooled once. The compressed one is 256 MiB of tar, so the run stays short.

#include "fixtures.h"

#include "kload/format/archive_reader.h"

#include <benchmark/benchmark.h>

namespace {

void report(benchmark::State& state, const kload::format::ReadStats& s) {
  state.counters["bytes_read"] = static_cast<double>(s.bytes_read);
  state.counters["bytes_expanded"] = static_cast<double>(s.bytes_expanded);
  state.counters["bytes_hashed"] = static_cast<double>(s.bytes_hashed);
  state.counters["bytes_spooled"] = static_cast<double>(s.bytes_spooled);
  state.counters["in_place"] = s.indexed_in_place ? 1 : 0;
}

// `tar_bytes`: the size of the (uncompressed) tar, for a throughput figure; 0 = none.
void run(benchmark::State& state, const std::filesystem::path& path, std::uint64_t tar_bytes) {
  kload::format::ReadStats last;
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    kload::format::ImageSet set;
    auto r = kload::format::read_archive(path.string(), set);
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      return;
    }
    last = *r;
    // The set (and its spool directory) goes at the end of the iteration: timed too,
    // as it is part of what a run costs.
  }
  report(state, last);
  state.counters["archive_bytes"] = static_cast<double>(std::filesystem::file_size(path));
  if (tar_bytes > 0) {
    const double cpu = kload::bench::process_cpu_seconds() - cpu0;
    const auto total = static_cast<double>(state.iterations()) * static_cast<double>(tar_bytes);
    state.SetBytesProcessed(static_cast<std::int64_t>(total));
    state.counters["cpu_GBps"] = cpu > 0 ? total / cpu / 1e9 : 0;
  }
}

// 8 layers of 128 MiB: 1 GiB of layers. No bytes/s: the point is that the time and
// bytes_read do not grow with the layer data.
void BM_ReadArchive_Uncompressed_1GiB(benchmark::State& state) {
  const auto path = kload::bench::Archives::get().make(
      "index-8x128M.tar", {"--image", kload::bench::image_spec("index:v1", 8, "128M"), "--compressible", "0.5"});
  run(state, path, 0);
}

// 8 layers of 32 MiB, the whole archive through `zstd -3`; bytes/s are of the tar.
void BM_ReadArchive_Zstd_256MiB(benchmark::State& state) {
  const auto path = kload::bench::Archives::get().make(
      "index-8x32M.tar.zst", {"--image", kload::bench::image_spec("index:v1", 8, "32M"), "--compressible", "0.5"});
  const auto plain = kload::bench::Archives::get().make(
      "index-8x32M.tar", {"--image", kload::bench::image_spec("index:v1", 8, "32M"), "--compressible", "0.5"});
  run(state, path, std::filesystem::file_size(plain));
}

} // namespace

BENCHMARK(BM_ReadArchive_Uncompressed_1GiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ReadArchive_Zstd_256MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
