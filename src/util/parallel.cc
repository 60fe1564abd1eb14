#include "kload/util/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace kload::util {

unsigned default_jobs() { return std::max(1u, std::thread::hardware_concurrency()); }

void parallel_for(std::size_t n, unsigned jobs, const std::function<void(std::size_t)>& fn) {
  if (n == 0) {
    return;
  }
  const std::size_t workers = std::min<std::size_t>(std::max(1u, jobs), n);
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < n; i = next++) {
      fn(i);
    }
  };
  std::vector<std::jthread> threads;
  threads.reserve(workers - 1);
  for (std::size_t t = 1; t < workers; ++t) {
    threads.emplace_back(work);
  }
  work();
}

} // namespace kload::util
