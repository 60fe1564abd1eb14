#pragma once
// Running child processes: stdin fed from a callback, stdout captured or streamed to a
// callback, stderr captured. Everything that talks to a node or to Docker goes through
// a ProcessRunner so tests can substitute a fake.

#include "kload/util/error.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kload::util {

struct ProcessResult {
  int exit_code = -1;      // -1 when killed by a signal
  int signal = 0;          // the signal that ended it, else 0
  bool timed_out = false;  // kload killed it after the timeout
  std::string out;         // stdout (empty when streamed)
  std::string err;         // stderr (its last 64 KiB when streamed)
  // Set when the stdin feeder (or the stdout consumer) failed: stdin (stdout) was then
  // closed early. The child's own stderr usually says why better, so callers look at
  // both.
  std::optional<Error> feed_error;
};

// Writes the child's stdin through a file descriptor. Returning an error ends the
// child's stdin early; the child gets 1 s to fail on the short stream by itself (and
// say why) before it is killed.
using StdinFeeder = std::function<Result<void>(int fd)>;

// Reads the child's stdout through a file descriptor while the child runs (see
// ProcessRunner::stream). Returning an error cancels the run: stdout is closed and the
// child gets 1 s to end by itself before it is killed.
using StdoutConsumer = std::function<Result<void>(int fd)>;

class ProcessRunner {
public:
  virtual ~ProcessRunner() = default;
  // Runs argv[0] (searched in PATH) with argv, feeding stdin through `feed` (or
  // /dev/null when empty). `timeout` zero means no limit. Error: only when the program
  // cannot be started; a failing child or feeder is reported in the ProcessResult.
  virtual Result<ProcessResult> run(const std::vector<std::string>& argv,
                                    const StdinFeeder& feed,
                                    std::chrono::milliseconds timeout) = 0;

  // Runs argv[0] like run(), stdin /dev/null, but hands its stdout to `consume` (on
  // the calling thread) as it comes instead of capturing it: for outputs too large to
  // hold, such as `docker save`. After `consume` succeeds, what is left of stdout is
  // read and dropped, so the child never dies of a closed pipe after a good run.
  // The result's `out` is empty; `err` keeps the last 64 KiB of stderr; a failed
  // consume is the result's `feed_error`. This default runs run() and replays the
  // captured stdout, so that fakes need only run(). Error: the program cannot be
  // started, or (default only) no pipe for the replay.
  virtual Result<ProcessResult> stream(const std::vector<std::string>& argv, const StdoutConsumer& consume,
                                       std::chrono::milliseconds timeout);
};

// How long write_all waits on a non-blocking descriptor (the stdin pipe of a child run
// by SystemProcessRunner) whose reader takes nothing, before it fails, by default.
inline constexpr std::chrono::seconds stalled_reader_limit{120};

// The stall limit a run uses unless told otherwise: KLOAD_STALL_SECONDS when it holds
// a whole number of seconds from 1 to 86400, else stalled_reader_limit.
std::chrono::seconds default_stall_limit();

struct RunnerOptions {
  // A child that takes nothing from its stdin for this long fails the feed ("took
  // nothing for N s") and is killed: a ctr whose containerd died can hang.
  std::chrono::seconds stall_limit = default_stall_limit();
};

// The real thing: posix_spawn, pipes, poll. Every run sets SIGPIPE to ignored for
// the process, so that a child closing its stdin is an EPIPE error for the feeder.
// Each child leads its own process group, and kload kills the whole group: when the
// deadline passes, when a feed or consume fails and the child lingers, and when kload
// itself ends on SIGINT/SIGTERM/SIGHUP (see install_cleanup_signal_handlers). So a
// descendant that keeps the pipes open (`sh -c 'sleep 1000 & ...'`) cannot hold a run
// past its deadline; one that left the group (setsid) is given up on 1 s after the
// kill, pipes open or not.
class SystemProcessRunner final : public ProcessRunner {
public:
  SystemProcessRunner() = default;
  explicit SystemProcessRunner(RunnerOptions options) : options_(options) {}

  Result<ProcessResult> run(const std::vector<std::string>& argv, const StdinFeeder& feed,
                            std::chrono::milliseconds timeout) override;
  Result<ProcessResult> stream(const std::vector<std::string>& argv, const StdoutConsumer& consume,
                               std::chrono::milliseconds timeout) override;

  [[nodiscard]] const RunnerOptions& options() const { return options_; }

private:
  RunnerOptions options_;
};

// Writes all of `data` to fd, retrying on EINTR and short writes; on a non-blocking fd
// it waits for room, at most the stall limit at a time: that of the
// SystemProcessRunner whose feeder runs on this thread, else default_stall_limit().
// Error: EPIPE, a reader stalled that long ("the reader took nothing for N s"), or any
// other write failure, with `what` in the message.
Result<void> write_all(int fd, const void* data, std::size_t size, const std::string& what);

// Writes `size` bytes of file `from`, from `offset` on, to `to` (a pipe, as write_all
// writes it, the same wait for room and stall limit): with splice, so the bytes do not
// pass through this process, else (a file system splice cannot read) with pread and
// write_all. `from`'s own offset is left alone, so threads may share it.
// Error: as write_all's, or `from` read short ("it ended early") or failing.
Result<void> copy_range(int from, std::uint64_t offset, std::uint64_t size, int to, const std::string& what);

// Kills (SIGKILL) the process group of every child a SystemProcessRunner is running.
// Async-signal-safe: for the handlers of install_cleanup_signal_handlers, since the
// children no longer share kload's process group and would outlive it.
void kill_running_children() noexcept;

// Quotes one argument for a POSIX shell (single quotes), for transports that cross
// a shell such as ssh.
std::string shell_quote(const std::string& arg);

// Names the process with `pid` as "PID.START", START being its start time in clock
// ticks since boot (/proc/PID/stat): unlike a PID alone, no later process on this
// machine can have the same name. Empty when the process does not exist or has exited.
std::string process_token(int pid);
// This process's token.
std::string own_process_token();
// Whether the process a token names is still running.
bool process_running(const std::string& token);

} // namespace kload::util
