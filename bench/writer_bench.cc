// The thin-archive writer: format::write_thin_archive of a whole 8-layer, 512 MiB
// image into a pipe drained by another thread (as ctr drains it), against a plain
// copy of the same blobs from the same file into the same kind of pipe (pread 1 MiB,
// write), and against that copy with every chunk also hashed (SHA-256), which is
// what the writer does since it hashes the bytes it sends (issue #11 item 7). The
// ratio writer/hashed copy is the price of the tar framing and libarchive's
// buffering; hashed copy/copy is the price of the hash. All read from the page cache.

#include "fixtures.h"

#include "kload/format/archive_reader.h"
#include "kload/format/oci_writer.h"
#include "kload/format/verify.h"
#include "kload/util/parallel.h"
#include "kload/util/sha256.h"
#include "kload/util/zstd_stream.h"
#include "load/spool.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

namespace {

struct WriterInput {
  kload::format::ImageSet set;
  std::vector<kload::format::ThinEntry> entries;
  std::unordered_set<kload::util::Digest> layers;
  std::vector<kload::util::Digest> blobs;  // manifest, config, layers
};

const WriterInput& input() {
  static const WriterInput in = [] {
    WriterInput w;
    const auto path = kload::bench::Archives::get().make(
        "verify-8x64M.tar", {"--image", kload::bench::image_spec("verify:v1", 8, "64M"), "--compressible", "0.5"});
    if (auto r = kload::format::read_archive(path.string(), w.set); !r) {
      std::fprintf(stderr, "kload_bench: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    const auto& image = w.set.images.front();
    w.entries.push_back({&image, "docker.io/library/verify:v1"});
    w.blobs = kload::format::ImageSet::blobs_of(image);
    for (const auto& l : image.layers) {
      w.layers.insert(l.blob.digest);
    }
    // The writer sends only proven bytes.
    if (auto r = kload::format::verify_blobs(w.set, w.blobs, kload::util::default_jobs()); !r) {
      std::fprintf(stderr, "kload_bench: %s\n", r.error().message.c_str());
      std::exit(1);
    }
    return w;
  }();
  return in;
}

// A pipe whose read end a thread drains into a 1 MiB buffer until EOF.
class DrainedPipe {
public:
  DrainedPipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      std::abort();
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    drain_ = std::thread([this] {
      std::vector<char> buf(1 << 20);
      for (;;) {
        const ssize_t n = ::read(read_fd_, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0) {
          break;
        }
        drained_ += static_cast<std::uint64_t>(n);
      }
    });
  }
  ~DrainedPipe() { finish(); }

  [[nodiscard]] int fd() const { return write_fd_; }

  // Closes the write end and waits for the reader; returns the bytes it read.
  std::uint64_t finish() {
    if (write_fd_ >= 0) {
      ::close(write_fd_);
      write_fd_ = -1;
    }
    if (drain_.joinable()) {
      drain_.join();
      ::close(read_fd_);
    }
    return drained_;
  }

private:
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::uint64_t drained_ = 0;
  std::thread drain_;
};

// Throughput, and bytes per CPU-second of the whole process (writer and drain thread
// together) as "cpu_GBps": the figure other load on the machine does not skew.
void report(benchmark::State& state, std::uint64_t bytes, double cpu_seconds) {
  const auto total = static_cast<double>(state.iterations()) * static_cast<double>(bytes);
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
  state.counters["stream_bytes"] = static_cast<double>(bytes);
  state.counters["cpu_GBps"] = cpu_seconds > 0 ? total / cpu_seconds / 1e9 : 0;
}

void BM_ThinWriter_IntoPipe_512MiB(benchmark::State& state) {
  const auto& in = input();
  std::uint64_t bytes = 0;
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    DrainedPipe pipe;
    auto r = kload::format::write_thin_archive(pipe.fd(), in.set, in.entries, in.layers);
    const auto drained = pipe.finish();
    if (!r || drained != r->total_bytes) {
      state.SkipWithError(r ? "the reader did not get every byte" : r.error().message.c_str());
      return;
    }
    bytes = drained;
  }
  report(state, bytes, kload::bench::process_cpu_seconds() - cpu0);
}

void BM_PlainCopy_IntoPipe_512MiB(benchmark::State& state) {
  const auto& in = input();
  std::uint64_t bytes = 0;
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    DrainedPipe pipe;
    for (const auto& d : in.blobs) {
      auto r = kload::format::read_blob(*in.set.find(d), [&](std::string_view chunk) {
        return kload::util::write_all(pipe.fd(), chunk.data(), chunk.size(), "pipe");
      });
      if (!r) {
        state.SkipWithError(r.error().message.c_str());
        return;
      }
    }
    bytes = pipe.finish();
  }
  report(state, bytes, kload::bench::process_cpu_seconds() - cpu0);
}

// The plain copy, each chunk also hashed on the way (one SHA-256 per blob).
void BM_HashedCopy_IntoPipe_512MiB(benchmark::State& state) {
  const auto& in = input();
  std::uint64_t bytes = 0;
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    DrainedPipe pipe;
    for (const auto& d : in.blobs) {
      kload::util::Sha256 hash;
      auto r = kload::format::read_blob(*in.set.find(d), [&](std::string_view chunk) {
        hash.update(chunk);
        return kload::util::write_all(pipe.fd(), chunk.data(), chunk.size(), "pipe");
      });
      if (!r || hash.finish() != d) {
        state.SkipWithError(r ? "digest mismatch" : r.error().message.c_str());
        return;
      }
    }
    bytes = pipe.finish();
  }
  report(state, bytes, kload::bench::process_cpu_seconds() - cpu0);
}

// A load's streams to N nodes that lack the same blobs (load/spool.h): the body is
// written once into a spool file (read, hashed, framed) while N threads each copy it
// into a pipe of their own as it grows (splice), then the node's own index.json. The
// old way wrote the whole archive into each pipe: N times the writer's cost.
// "stream_bytes" is one stream's; the rate counts all N.
void BM_SpooledStreams_IntoPipes_512MiB(benchmark::State& state) {
  const auto& in = input();
  const auto streams = static_cast<std::size_t>(state.range(0));
  std::vector<const kload::format::Image*> images{in.entries.front().image};
  std::uint64_t bytes = 0;
  const double cpu0 = kload::bench::process_cpu_seconds();
  for (auto _ : state) {
    kload::load::Spools spools;
    auto body = spools.body(in.set, kload::load::BodyContent{images, in.layers, kload::node::WireCompression::none});
    if (!body) {
      state.SkipWithError(body.error().message.c_str());
      return;
    }
    std::vector<std::uint64_t> drained(streams);
    std::vector<std::thread> nodes;
    for (std::size_t i = 0; i < streams; ++i) {
      nodes.emplace_back([&, i] {
        DrainedPipe pipe;
        auto copied = (*body)->copy_to(pipe.fd(), {});
        auto tail = kload::format::write_thin_tail(kload::util::fd_sink(pipe.fd(), "pipe"), in.entries);
        drained[i] = copied && tail ? pipe.finish() : 0;
      });
    }
    for (auto& t : nodes) {
      t.join();
    }
    bytes = drained.front();
    if (std::any_of(drained.begin(), drained.end(), [&](std::uint64_t d) { return d == 0 || d != bytes; })) {
      state.SkipWithError("a stream did not get every byte");
      return;
    }
  }
  report(state, bytes * streams, kload::bench::process_cpu_seconds() - cpu0);
  state.counters["stream_bytes"] = static_cast<double>(bytes);
}

} // namespace

BENCHMARK(BM_SpooledStreams_IntoPipes_512MiB)->Arg(1)->Arg(3)->Arg(10)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_ThinWriter_IntoPipe_512MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_PlainCopy_IntoPipe_512MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_HashedCopy_IntoPipe_512MiB)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
