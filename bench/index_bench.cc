// Indexing: format::read_archive on a 1 GiB uncompressed docker-save archive, which
// must read only tar headers and JSON (bytes_read is the proof, reported as a
// counter), against a zstd-compressed archive, which must be decompressed, hashed
// and spooled once. The compressed one is 256 MiB of tar, so the run stays short.
// Then how reading scales with the number of layers (1,000 to 16,000 tiny ones, as a
// file and streamed): Google Benchmark fits the complexity, which must stay O(N).

#include "fixtures.h"

#include "kload/format/archive_reader.h"
#include "kload/util/sha256.h"

#include <archive.h>
#include <archive_entry.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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

// A docker-save archive of one image with `layers` layers of 512 bytes each, written
// with libarchive (tools/mkimage takes about 25 ms a layer). Made once per size.
std::filesystem::path many_layers(int layers) {
  const auto path = kload::bench::Archives::get().scratch() / fmt::format("layers-{}.tar", layers);
  if (std::filesystem::exists(path)) {
    return path;
  }
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) {
    std::fprintf(stderr, "bench: cannot write %s\n", path.c_str());
    std::abort();
  }
  const auto add = [&](const std::string& name, const std::string& body) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(body.size()));
    archive_write_header(a, e);
    archive_write_data(a, body.data(), body.size());
    archive_entry_free(e);
  };
  nlohmann::json diff_ids = nlohmann::json::array();
  nlohmann::json paths = nlohmann::json::array();
  for (int i = 0; i < layers; ++i) {
    // Each layer a distinct, valid tar (one file named after the layer).
    std::string tar(512 * 3, '\0');
    const auto name = fmt::format("f{}", i);
    std::copy(name.begin(), name.end(), tar.begin());
    std::snprintf(&tar[100], 8, "%07o", 0644);
    std::snprintf(&tar[124], 12, "%011o", 0);
    tar[156] = '0';
    std::copy_n("ustar", 5, &tar[257]);
    std::fill_n(&tar[148], 8, ' ');
    unsigned sum = 0;
    for (int k = 0; k < 512; ++k) {
      sum += static_cast<unsigned char>(tar[k]);
    }
    std::snprintf(&tar[148], 8, "%06o", sum);
    const auto digest = kload::util::Sha256::of(tar);
    const auto entry = fmt::format("blobs/sha256/{}", digest.hex());
    add(entry, tar);
    diff_ids.push_back(digest.str());
    paths.push_back(entry);
  }
  const std::string config =
      nlohmann::json{{"architecture", "amd64"}, {"os", "linux"}, {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
          .dump();
  const auto config_entry = "blobs/sha256/" + kload::util::Sha256::of(config).hex();
  add(config_entry, config);
  add("manifest.json",
      nlohmann::json::array({{{"Config", config_entry}, {"RepoTags", {"layers:v1"}}, {"Layers", paths}}}).dump());
  archive_write_close(a);
  archive_write_free(a);
  return path;
}

// Arg: layers. As a file (indexed in place) or streamed (read_archive_fd).
void many_layers_run(benchmark::State& state, bool streamed) {
  const auto path = many_layers(static_cast<int>(state.range(0)));
  // Past the default layer limit on purpose: this measures how reading scales.
  const kload::format::ReadLimits limits{.max_layers = 1u << 20};
  for (auto _ : state) {
    kload::format::ImageSet set;
    kload::util::Result<kload::format::ReadStats> r;
    if (streamed) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      r = kload::format::read_archive_fd(fd, path.string(), set, limits);
      ::close(fd);
    } else {
      r = kload::format::read_archive(path.string(), set, limits);
    }
    if (!r || set.images.size() != 1 || set.images[0].layers.size() != static_cast<std::size_t>(state.range(0))) {
      state.SkipWithError(r ? "wrong number of layers read" : r.error().message.c_str());
      return;
    }
  }
  state.SetComplexityN(state.range(0));
  state.counters["layers"] = static_cast<double>(state.range(0));
}

void BM_ReadArchive_ManyLayers_File(benchmark::State& state) { many_layers_run(state, false); }
void BM_ReadArchive_ManyLayers_Stream(benchmark::State& state) { many_layers_run(state, true); }

} // namespace

BENCHMARK(BM_ReadArchive_ManyLayers_File)->Arg(1000)->Arg(2000)->Arg(4000)->Arg(8000)->Arg(16000)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Complexity();
BENCHMARK(BM_ReadArchive_ManyLayers_Stream)->Arg(1000)->Arg(2000)->Arg(4000)->Arg(8000)->Arg(16000)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Complexity();
BENCHMARK(BM_ReadArchive_Uncompressed_1GiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ReadArchive_Zstd_256MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
