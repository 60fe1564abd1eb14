#pragma once
// Several commands in one process on a node: a `sh -c` script that runs them in order,
// stops at the first that fails, and frames each one's stdout, stderr and exit status
// between marker lines, so one round trip (one `docker exec`, one ssh connection)
// does the work of several. The marker is random per batch: no command's output can
// forge it. Adjacent queries that depend on nothing may run at the same time: each
// writes into a private temporary directory on the node, and the script frames what
// they wrote in step order once all have ended, so the framing is the same either way.

#include "kload/util/process.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kload::node {

struct BatchStep {
  std::vector<std::string> words;  // the command on the node
  bool reads_stdin = false;        // at most one step: the others read /dev/null
  bool stop_on_failure = true;     // false: the next step runs even when this one fails
  // true: runs at the same time as the adjacent steps that say so too. Only for a step
  // that reads no stdin and lets the next run whatever it says (a query); where the
  // node has no `mktemp`, or it fails, the group runs one by one as usual.
  bool concurrent = false;
};

// A query: reads no stdin, lets the next step run whatever it answers, and runs at the
// same time as the queries beside it.
inline BatchStep query_step(std::vector<std::string> words) {
  return BatchStep{std::move(words), false, false, true};
}

// A fresh random marker: 32 hex digits after "kload-batch-".
std::string batch_marker();

// The POSIX sh script that runs `steps` with `marker`.
std::string batch_script(std::string_view marker, const std::vector<BatchStep>& steps);

// Each step's result, from the result of the whole script: every step up to the one
// that failed and stopped the script, or all of them. A step cut off (a timeout, a
// dropped connection, the script killed between two steps) gets the whole run's exit
// code, signal and timed_out, and is the last result. A feeder error goes to the step
// that read stdin. nullopt when the first step never began: the script did not run
// (no shell on the node, or the transport failed first).
std::optional<std::vector<util::ProcessResult>> split_batch(std::string_view marker, const std::vector<BatchStep>& steps,
                                                            const util::ProcessResult& whole);

// Reads split_batch's results in step order. A step the batch never reached (the one
// before it stopped the script, or was cut off) shares the fate of the last result.
// `results` must not be empty and must outlive the cursor.
class StepResults {
public:
  explicit StepResults(const std::vector<util::ProcessResult>& results) : results_(results) {}
  const util::ProcessResult& next() { return results_[std::min(next_++, results_.size() - 1)]; }

private:
  const std::vector<util::ProcessResult>& results_;
  std::size_t next_ = 0;
};

} // namespace kload::node
