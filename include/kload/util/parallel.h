#pragma once
// Bounded data parallelism: run fn(i) for i in [0, n) on at most `jobs` threads.
// Each call owns its workers, so there is never more than `jobs` threads per phase
// and no unbounded queue. Errors are collected per item and inspected by the caller
// at the phase boundary.

#include <cstddef>
#include <functional>

namespace kload::util {

// The default for --jobs: the number of online cores, at least 1.
unsigned default_jobs();

// Calls fn(i) once for every i in [0, n), in no particular order, on
// min(jobs, n) threads (the caller's thread counts as one). fn must not throw.
void parallel_for(std::size_t n, unsigned jobs, const std::function<void(std::size_t)>& fn);

} // namespace kload::util
