// Verification: format::verify_blobs over the layers of a generated 8-layer, 512 MiB
// docker-save archive (indexed in place, so every iteration preads the file; it was
// just written, so it is in the page cache and this measures hashing, not the disk).

#include "fixtures.h"

#include "kload/format/archive_reader.h"
#include "kload/format/verify.h"

#include <benchmark/benchmark.h>

namespace {

struct VerifyInput {
  kload::format::ImageSet set;
  std::vector<kload::util::Digest> layers;
  std::uint64_t layer_bytes = 0;
};

VerifyInput& input() {
  static VerifyInput in = [] {
    VerifyInput v;
    const auto path = kload::bench::Archives::get().make(
        "verify-8x64M.tar", {"--image", kload::bench::image_spec("verify:v1", 8, "64M"), "--compressible", "0.5"});
    if (auto r = kload::format::read_archive(path.string(), v.set); !r) {
      std::fprintf(stderr, "kload_bench: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    for (const auto& image : v.set.images) {
      for (const auto& l : image.layers) {
        v.layers.push_back(l.blob.digest);
        v.layer_bytes += l.blob.size;
      }
    }
    return v;
  }();
  return in;
}

void BM_VerifyBlobs_8x64MiB(benchmark::State& state) {
  auto& in = input();
  const auto jobs = static_cast<unsigned>(state.range(0));
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    // verify_blobs never hashes a blob twice in a run: mark the layers unproven again.
    for (const auto& d : in.layers) {
      in.set.blobs.at(d).computed.reset();
    }
    auto r = kload::format::verify_blobs(in.set, in.layers, jobs);
    if (!r || r->bytes_hashed != in.layer_bytes) {
      state.SkipWithError(r ? "not every layer byte was hashed" : r.error().message.c_str());
      break;
    }
  }
  const double cpu = kload::bench::process_cpu_seconds() - cpu0;
  state.counters["cpu_GBps"] = cpu > 0 ? static_cast<double>(state.iterations() * in.layer_bytes) / cpu / 1e9 : 0;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.layer_bytes));
  state.counters["jobs"] = static_cast<double>(jobs);
  state.counters["layers"] = static_cast<double>(in.layers.size());
}

} // namespace

BENCHMARK(BM_VerifyBlobs_8x64MiB)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
