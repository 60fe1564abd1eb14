#pragma once
// Inputs shared by the micro-benchmarks: deterministic archives written once per
// process by tools/mkimage into a private temporary directory (removed at exit and on
// Ctrl-C), and random buffers. Header-only: kload_bench globs only *_bench.cc.

#include "kload/util/process.h"
#include "kload/util/temp_dir.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>

#ifndef KLOAD_SOURCE_DIR
#error "KLOAD_SOURCE_DIR must name the source tree (set by bench/CMakeLists.txt)"
#endif

namespace kload::bench {

// `bytes` pseudo-random (incompressible) bytes; the same seed gives the same bytes.
inline std::vector<std::byte> random_bytes(std::size_t bytes, std::uint64_t seed = 1) {
  std::vector<std::byte> out(bytes);
  std::mt19937_64 rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const std::uint64_t v = rng();
    for (int b = 0; b < 8; ++b) {
      out[i + b] = static_cast<std::byte>(v >> (8 * b));
    }
  }
  for (; i < bytes; ++i) {
    out[i] = static_cast<std::byte>(rng());
  }
  return out;
}

// Archives written by tools/mkimage, each generated at most once per process and
// kept (under one private temporary directory) until the process exits.
class Archives {
public:
  static Archives& get() {
    static Archives instance;
    return instance;
  }

  // The archive `file` (a name inside the temporary directory) made by running
  // tools/mkimage with `args` then the output path. Aborts the process with a message
  // when mkimage fails: every benchmark depending on it would be meaningless.
  std::filesystem::path make(const std::string& file, const std::vector<std::string>& args) {
    std::lock_guard lock(mutex_);
    if (auto it = made_.find(file); it != made_.end()) {
      return it->second;
    }
    const auto out = dir() / file;
    std::vector<std::string> argv{"python3", std::string(KLOAD_SOURCE_DIR) + "/tools/mkimage"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(out.string());
    util::SystemProcessRunner runner;
    auto r = runner.run(argv, {}, std::chrono::milliseconds(0));
    if (!r || r->exit_code != 0) {
      std::fprintf(stderr, "kload_bench: mkimage failed for %s: %s\n", file.c_str(),
                   r ? r->err.c_str() : r.error().message.c_str());
      std::exit(1);
    }
    made_.emplace(file, out);
    return out;
  }

  // The private temporary directory itself, for benchmarks that write other files.
  // Aborts the process when it cannot be created.
  std::filesystem::path scratch() {
    std::lock_guard lock(mutex_);
    return dir();
  }

private:
  Archives() = default;

  const std::filesystem::path& dir() {
    if (!dir_) {
      util::install_cleanup_signal_handlers();
      auto created = util::TempDir::create("kload-bench");
      if (!created) {
        std::fprintf(stderr, "kload_bench: %s\n", created.error().message.c_str());
        std::exit(1);
      }
      dir_.emplace(std::move(*created));
    }
    return dir_->path();
  }

  std::mutex mutex_;
  std::optional<util::TempDir> dir_;
  std::map<std::string, std::filesystem::path> made_;
};

// User+system CPU seconds of the whole process, all threads: with it a benchmark can
// report throughput per CPU-second, which other load on the machine does not skew
// the way it skews wall time.
inline double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// "NAME=seed0:SIZE,seed1:SIZE,..." with `layers` layers of `layer_size` each.
inline std::string image_spec(const std::string& name, int layers, const std::string& layer_size,
                              const std::string& seed_prefix = "l") {
  std::string spec = name + "=";
  for (int i = 0; i < layers; ++i) {
    if (i > 0) {
      spec += ",";
    }
    spec += seed_prefix + std::to_string(i) + ":" + layer_size;
  }
  return spec;
}

} // namespace kload::bench
