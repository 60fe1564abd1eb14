// Round trips to a node: what one load's steps cost in process starts. A node step is
// a process (`docker exec`, ssh, or ctr itself); `node/batch.h` runs several in one
// `sh -c`. Here the steps are `true` on this machine, so the figures are the floor of
// the saving (through docker exec or ssh each start costs tens of milliseconds more),
// and the parse of a batch's framed output, which every round trip pays.

#include "kload/node/batch.h"
#include "kload/util/process.h"

#include <benchmark/benchmark.h>

#include <chrono>

namespace {

using kload::node::BatchStep;

constexpr std::chrono::milliseconds deadline{10'000};

std::vector<BatchStep> steps_of(int n) {
  return std::vector<BatchStep>(static_cast<std::size_t>(n), BatchStep{{"true"}, false, true});
}

// Today's round trip count of a cold first load (3) against the step count (9).
void BM_Steps_OneProcessEach(benchmark::State& state) {
  kload::util::SystemProcessRunner runner;
  const auto steps = steps_of(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    for (const auto& step : steps) {
      auto r = runner.run(step.words, {}, deadline);
      if (!r || r->exit_code != 0) {
        state.SkipWithError("true failed");
        return;
      }
    }
  }
  state.counters["processes"] = static_cast<double>(steps.size());
}

void BM_Steps_OneBatch(benchmark::State& state) {
  kload::util::SystemProcessRunner runner;
  const auto steps = steps_of(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    const auto marker = kload::node::batch_marker();
    auto whole = runner.run({"sh", "-c", kload::node::batch_script(marker, steps)}, {}, deadline);
    const auto results = whole ? kload::node::split_batch(marker, steps, *whole) : std::nullopt;
    if (!results || results->size() != steps.size()) {
      state.SkipWithError("the batch did not run every step");
      return;
    }
  }
  state.counters["processes"] = 1;
}

// The framed output of a probe of a node with many images: 1 MiB of `content ls`.
void BM_SplitBatch_1MiB(benchmark::State& state) {
  const std::string marker = "kload-batch-0123456789abcdef0123456789abcdef";
  const std::string line = "sha256:" + std::string(64, 'a') + "\t1.0 MiB\t2 days\tcontainerd.io/uncompressed=x\n";
  std::string body;
  while (body.size() < (1u << 20)) {
    body += line;
  }
  kload::util::ProcessResult whole;
  whole.exit_code = 0;
  for (int i = 0; i < 3; ++i) {
    whole.out += marker + " begin\n" + (i == 2 ? body : std::string("x\n")) + "\n" + marker + " end 0\n";
    whole.err += marker + " begin\n\n" + marker + " end 0\n";
  }
  const auto steps = steps_of(3);
  for (auto _ : state) {
    auto results = kload::node::split_batch(marker, steps, whole);
    benchmark::DoNotOptimize(results);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * whole.out.size()));
}

} // namespace

BENCHMARK(BM_Steps_OneProcessEach)->Arg(3)->Arg(9)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Steps_OneBatch)->Arg(3)->Arg(9)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SplitBatch_1MiB)->Unit(benchmark::kMicrosecond);
