#include "kload/util/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace kload::util {
namespace {

TEST(Parallel, DefaultJobsIsPositive) { EXPECT_GE(default_jobs(), 1u); }

class ParallelFor : public ::testing::TestWithParam<std::tuple<std::size_t, unsigned>> {};

TEST_P(ParallelFor, VisitsEveryIndexOnceWithinTheJobLimit) {
  const auto [n, jobs] = GetParam();
  std::vector<std::atomic<int>> visits(n);
  std::atomic<int> running{0};
  std::atomic<int> high_water{0};
  std::mutex ids_mutex;
  std::set<std::thread::id> ids;
  parallel_for(n, jobs, [&](std::size_t i) {
    const int now = ++running;
    int seen = high_water.load();
    while (now > seen && !high_water.compare_exchange_weak(seen, now)) {
    }
    {
      std::lock_guard lock(ids_mutex);
      ids.insert(std::this_thread::get_id());
    }
    // Long enough for the workers to overlap, short enough for n = 1000.
    if (i % 16 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_LT(i, n);
    ++visits[i];
    --running;
  });
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_EQ(visits[i].load(), 1) << "index " << i;
  }
  EXPECT_EQ(running.load(), 0) << "parallel_for returned while calls were still running";
  EXPECT_LE(high_water.load(), static_cast<int>(jobs));
  EXPECT_LE(ids.size(), std::min<std::size_t>(jobs, n));
  if (n == 0) {
    EXPECT_EQ(high_water.load(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, ParallelFor,
                         ::testing::Combine(::testing::Values(std::size_t{0}, std::size_t{1}, std::size_t{7},
                                                              std::size_t{1000}),
                                            ::testing::Values(1u, 2u, 8u)),
                         [](const auto& info) {
                           return "n" + std::to_string(std::get<0>(info.param)) + "_jobs" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(Parallel, ActuallyRunsConcurrently) {
  // Four calls that each wait until all four have started: only possible with four
  // threads at once (bounded by a deadline so a regression fails instead of hanging).
  std::atomic<int> started{0};
  std::atomic<bool> all_met{true};
  parallel_for(4, 4, [&](std::size_t) {
    ++started;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (started.load() < 4) {
      if (std::chrono::steady_clock::now() > deadline) {
        all_met = false;
        return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_TRUE(all_met.load());
}

TEST(Parallel, ZeroJobsMeansOne) {
  std::atomic<int> count{0};
  parallel_for(5, 0, [&](std::size_t) { ++count; });
  EXPECT_EQ(count.load(), 5);
}

TEST(Parallel, CallerThreadIsOneOfTheWorkers) {
  std::atomic<bool> caller_used{false};
  const auto caller = std::this_thread::get_id();
  parallel_for(1, 8, [&](std::size_t) { caller_used = std::this_thread::get_id() == caller; });
  EXPECT_TRUE(caller_used.load()) << "one item should not need a new thread";
}

} // namespace
} // namespace kload::util
