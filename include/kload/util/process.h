#pragma once
// Running child processes with a fed stdin and captured stdout/stderr. Everything
// that talks to a node goes through a ProcessRunner so tests can substitute a fake.

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
  std::string out;         // stdout
  std::string err;         // stderr
  // Set when the stdin feeder failed (stdin was then closed early). The child's own
  // stderr usually says why better, so callers look at both.
  std::optional<Error> feed_error;
};

// Writes the child's stdin through a file descriptor. Returning an error ends the
// child's stdin early; the child gets 1 s to fail on the short stream by itself (and
// say why) before it is killed.
using StdinFeeder = std::function<Result<void>(int fd)>;

class ProcessRunner {
public:
  virtual ~ProcessRunner() = default;
  // Runs argv[0] (searched in PATH) with argv, feeding stdin through `feed` (or
  // /dev/null when empty). `timeout` zero means no limit. Error: only when the program
  // cannot be started; a failing child or feeder is reported in the ProcessResult.
  virtual Result<ProcessResult> run(const std::vector<std::string>& argv,
                                    const StdinFeeder& feed,
                                    std::chrono::milliseconds timeout) = 0;
};

// The real thing: posix_spawn, pipes, poll. Every run sets SIGPIPE to ignored for
// the process, so that a child closing its stdin is an EPIPE error for the feeder.
class SystemProcessRunner final : public ProcessRunner {
public:
  Result<ProcessResult> run(const std::vector<std::string>& argv, const StdinFeeder& feed,
                            std::chrono::milliseconds timeout) override;
};

// Writes all of `data` to fd, retrying on EINTR and short writes; on a non-blocking fd
// it waits for room, at most stalled_reader_limit at a time. Error: EPIPE, a reader
// stalled that long, or any other write failure, with `what` in the message.
Result<void> write_all(int fd, const void* data, std::size_t size, const std::string& what);

// How long write_all waits on a non-blocking descriptor (the stdin pipe of a child run
// by SystemProcessRunner) whose reader takes nothing, before it fails.
inline constexpr std::chrono::seconds stalled_reader_limit{120};

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
