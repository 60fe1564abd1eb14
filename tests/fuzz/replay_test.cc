// Replays every kept fuzz input through its target: the seeds and the regressions
// (inputs that once crashed a target or broke one of its invariants). A target aborts
// on a finding, so a regression that comes back fails this test binary.

#include "fuzz_support.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

int kload_fuzz_archive_reader(const std::uint8_t* data, std::size_t size);
int kload_fuzz_metadata(const std::uint8_t* data, std::size_t size);
int kload_fuzz_ctr_output(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

struct Target {
  const char* name;
  int (*run)(const std::uint8_t*, std::size_t);
};

// For gtest's messages: the target's name rather than its bytes.
[[maybe_unused]] void PrintTo(const Target& t, std::ostream* os) { *os << t.name; }

class Replay : public ::testing::TestWithParam<Target> {};

std::vector<fs::path> kept_inputs(const std::string& target) {
  std::vector<fs::path> out;
  for (const char* kind : {"seeds", "regressions"}) {
    const fs::path dir = fs::path(KLOAD_FUZZ_DIR) / kind / target;
    if (!fs::is_directory(dir)) {
      continue;
    }
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) {
        out.push_back(e.path());
      }
    }
  }
  return out;
}

TEST_P(Replay, EveryKeptInputRunsCleanly) {
  const auto target = GetParam();
  const auto inputs = kept_inputs(target.name);
  // Every target has seeds or regressions; an empty list means a wrong path.
  ASSERT_FALSE(inputs.empty()) << "no inputs for " << target.name << " under " << KLOAD_FUZZ_DIR;
  for (const auto& path : inputs) {
    SCOPED_TRACE(path.string());
    std::ifstream in(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    EXPECT_EQ(target.run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0);
    if (path.filename().string().starts_with("valid-")) {
      EXPECT_TRUE(kload::fuzz::accepted()) << "a valid-* seed was rejected";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, Replay,
                         ::testing::Values(Target{"archive_reader", kload_fuzz_archive_reader},
                                           Target{"metadata", kload_fuzz_metadata},
                                           Target{"ctr_output", kload_fuzz_ctr_output}),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
