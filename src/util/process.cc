#include "kload/util/process.h"

#include "kload/util/fd.h"
#include "kload/util/temp_dir.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <iterator>
#include <optional>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace kload::util {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long a child may linger after its stdin or stdout was cut short, and how long
// the pipes are still read after its group was killed (a descendant that left the
// group may hold them open for ever).
constexpr auto grace = 1s;
// The most of a streamed child's stderr kept: enough to quote its last lines.
constexpr std::size_t stream_stderr_keep = 64 * 1024;

// The process groups of running children, for kill_running_children() in a signal
// handler: lock-free atomics in a fixed array, no allocation, no mutex.
constexpr std::size_t max_children = 256;
std::atomic<pid_t> g_children[max_children];

// The stall limit of the runner whose feeder runs on this thread; zero: none.
thread_local std::chrono::seconds t_stall_limit{0};

class ScopedStallLimit {
public:
  explicit ScopedStallLimit(std::chrono::seconds limit) : saved_(std::exchange(t_stall_limit, limit)) {}
  ScopedStallLimit(const ScopedStallLimit&) = delete;
  ScopedStallLimit& operator=(const ScopedStallLimit&) = delete;
  ~ScopedStallLimit() { t_stall_limit = saved_; }

private:
  std::chrono::seconds saved_;
};

// One spawned child, leader of its own process group, killed (the whole group) and
// reaped on every path. The group is killed only while the leader is unreaped: its
// zombie keeps the group's number from being given to anyone else.
class Child {
public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      kill_group();
      ProcessResult ignored;
      reap(ignored, std::nullopt);
    }
  }

  // Starts argv[0] (searched in PATH) with the given descriptors as 0, 1 and 2.
  // Error (io): it cannot be started; (interrupted) the run was cancelled
  // (OnSignal::cancel), so nothing new starts.
  Result<void> start(const std::vector<std::string>& argv, int in, int out, int err) {
    if (const int sig = cancelled_by(); sig != 0) {
      return fail(ErrorKind::interrupted, "interrupted by " + signal_name(sig) + ": " + argv[0] + " not started");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    posix_spawn_file_actions_adddup2(&actions, out, 1);
    posix_spawn_file_actions_adddup2(&actions, err, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // The child must not inherit our SIGPIPE=ignore (ctr and ssh expect the default),
    // nor our SIGINT/SIGTERM handlers' dispositions.
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    // Its own process group, so that a deadline kills its descendants too.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const auto& a : argv) {
      cargv.push_back(const_cast<char*>(a.c_str()));
    }
    cargv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      return fail(ErrorKind::io, "cannot run " + argv[0] + ": " + std::strerror(rc));
    }
    pid_ = pid;
    for (std::size_t i = 0; i < max_children; ++i) {
      pid_t free = 0;
      if (g_children[i].compare_exchange_strong(free, pid)) {
        slot_ = static_cast<int>(i);
        break;
      }
    }
    // A cancel whose kill ran before the registration above: kill it here instead.
    if (cancelled_by() != 0) {
      kill_group();
    }
    return {};
  }

  // Kills the child's whole process group (once). Safe from any thread.
  void kill_group() noexcept {
    if (pid_ > 0 && !killed_.exchange(true)) {
      ::kill(-pid_, SIGKILL);
    }
  }
  [[nodiscard]] bool killed() const noexcept { return killed_.load(); }

  // Waits for the child to exit, killing its group when `deadline` passes first
  // (nullopt: no deadline), and reaps it into `result`. A kill at the run's own
  // deadline (`timeout`) marks the result timed out; one after a cut-short feed or
  // consume does not.
  enum class Deadline { timeout, grace };
  void reap(ProcessResult& result, std::optional<Clock::time_point> deadline, Deadline kind = Deadline::timeout) {
    if (pid_ <= 0) {
      return;
    }
    // Wait without reaping (WNOWAIT) so that the group can still be killed safely.
    auto pause = 1ms;
    while (true) {
      siginfo_t info{};
      const int flags = WEXITED | WNOWAIT | (deadline ? WNOHANG : 0);
      const int rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, flags);
      if (rc == 0 && info.si_pid != 0) {
        break;
      }
      if (rc != 0 && errno != EINTR) {
        break;
      }
      if (deadline && Clock::now() >= *deadline) {
        if (!killed() && kind == Deadline::timeout) {
          result.timed_out = true;
        }
        kill_group();
        deadline.reset();
        continue;
      }
      if (deadline) {
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::milliseconds>(pause * 2, 50ms);
      }
    }
    if (slot_ >= 0) {
      g_children[slot_].store(0);
      slot_ = -1;
    }
    int status = 0;
    pid_t got = 0;
    while ((got = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (got > 0 && WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else if (got > 0 && WIFSIGNALED(status)) {
      result.signal = WTERMSIG(status);
    }
  }

private:
  pid_t pid_ = -1;
  int slot_ = -1;
  std::atomic<bool> killed_{false};
};

// One pipe the drain reads and where its bytes go.
struct Sink {
  int fd;
  std::string* text;
  std::size_t keep;  // 0: all; else only about the last `keep` bytes are kept
};

// Reads the sinks until they all close, killing the child's group when the deadline
// passes (timeout zero: none). After a kill (by the deadline or by another thread),
// the pipes are read for `grace` more at most: a descendant that left the group may
// hold them open. Runs on its own thread so that a child that writes a lot while
// we are still feeding its stdin never deadlocks.
void drain(std::vector<Sink> sinks, Child& child, std::chrono::milliseconds timeout, ProcessResult& result) {
  const auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> give_up;
  std::vector<pollfd> fds;
  for (const auto& s : sinks) {
    fds.push_back({s.fd, POLLIN, 0});
  }
  std::size_t open_count = fds.size();
  char buf[65536];
  while (open_count > 0) {
    const auto now = Clock::now();
    if (timeout.count() > 0 && now >= deadline && !child.killed()) {
      result.timed_out = true;
      child.kill_group();
    }
    if (child.killed() && !give_up) {
      give_up = now + grace;
    }
    if (give_up && now >= *give_up) {
      break;
    }
    // At most 100 ms, so that a kill by another thread is noticed while pipes stay open.
    auto wait = std::chrono::milliseconds(100);
    if (timeout.count() > 0 && !child.killed()) {
      // Rounded up: a deadline less than a millisecond away has not passed yet.
      wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    }
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(wait.count(), 0)));
    if (n < 0 && errno != EINTR) {
      break;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      const ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        auto& text = *sinks[i].text;
        text.append(buf, static_cast<std::size_t>(got));
        if (sinks[i].keep > 0 && text.size() > 2 * sinks[i].keep) {
          text.erase(0, text.size() - sinks[i].keep);
        }
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
}

// The deadline of a run that starts now; nullopt when `timeout` is zero (no limit).
std::optional<Clock::time_point> deadline_of(std::chrono::milliseconds timeout, Clock::time_point start) {
  return timeout.count() > 0 ? std::optional(start + timeout) : std::nullopt;
}

} // namespace

std::chrono::seconds default_stall_limit() {
  if (const char* v = std::getenv("KLOAD_STALL_SECONDS"); v != nullptr && *v != '\0') {
    long seconds = 0;
    const auto* end = v + std::strlen(v);
    const auto [at, ec] = std::from_chars(v, end, seconds);
    if (ec == std::errc{} && at == end && seconds >= 1 && seconds <= 86400) {
      return std::chrono::seconds(seconds);
    }
  }
  return stalled_reader_limit;
}

void kill_running_children() noexcept {
  for (auto& slot : g_children) {
    if (const pid_t pid = slot.load(); pid > 0) {
      ::kill(-pid, SIGKILL);
    }
  }
}

namespace {

// Waits until `fd` (non-blocking, a pipe to a child: see SystemProcessRunner::run) has
// room, but not forever: a reader that takes nothing for the stall limit is stuck.
Result<void> wait_for_room(int fd, const std::string& what) {
  const auto limit = t_stall_limit.count() > 0 ? t_stall_limit : default_stall_limit();
  pollfd pfd{fd, POLLOUT, 0};
  const int ready = ::poll(&pfd, 1, static_cast<int>(limit.count() * 1000));
  if (ready == 0) {
    return fail(ErrorKind::io, "writing " + what + ": the reader took nothing for " + std::to_string(limit.count()) +
                                   " s");
  }
  return {};
}

// pread and write_all: where splice cannot read `from` or write `to`.
Result<void> copy_by_reading(int from, std::uint64_t offset, std::uint64_t size, int to, const std::string& what) {
  std::vector<char> buffer(std::min<std::uint64_t>(size, 1 << 20));
  while (size > 0) {
    const ssize_t n = ::pread(from, buffer.data(), std::min<std::uint64_t>(size, buffer.size()),
                              static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail(ErrorKind::io, "reading " + what + ": " + (n == 0 ? std::string("it ended early") : std::strerror(errno)));
    }
    if (auto w = write_all(to, buffer.data(), static_cast<std::size_t>(n), what); !w) {
      return w;
    }
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::uint64_t>(n);
  }
  return {};
}

} // namespace

Result<void> write_all(int fd, const void* data, std::size_t size, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (auto room = wait_for_room(fd, what); !room) {
          return room;
        }
        continue;
      }
      return fail(ErrorKind::io, "writing " + what + ": " + std::strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> copy_range(int from, std::uint64_t offset, std::uint64_t size, int to, const std::string& what) {
  while (size > 0) {
    auto off = static_cast<loff_t>(offset);
    const ssize_t n = ::splice(from, &off, to, nullptr, std::min<std::uint64_t>(size, 1 << 20),
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN) {
        if (auto room = wait_for_room(to, what); !room) {
          return room;
        }
        continue;
      }
      if (errno == EINVAL || errno == ENOSYS) {
        return copy_by_reading(from, offset, size, to, what);
      }
      return fail(ErrorKind::io, "writing " + what + ": " + std::strerror(errno));
    }
    if (n == 0) {
      return fail(ErrorKind::io, "reading " + what + ": it ended early");
    }
    offset += static_cast<std::uint64_t>(n);
    size -= static_cast<std::uint64_t>(n);
  }
  return {};
}

std::string process_token(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so fields are
  // counted from the last ')'. The start time is field 22, the 20th after COMM.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return {};
  }
  std::istringstream fields(stat.substr(close + 1));
  std::string state;
  std::string field;
  fields >> state;
  for (int i = 1; i < 20 && fields >> field; ++i) {
  }
  if (!fields || field.empty() || state == "Z" || state == "X") {
    return {};  // gone, or exited and not yet reaped
  }
  return std::to_string(pid) + "." + field;
}

std::string own_process_token() {
  static const std::string token = process_token(static_cast<int>(::getpid()));
  return token;
}

bool process_running(const std::string& token) {
  const auto dot = token.find('.');
  if (dot == std::string::npos || dot == 0) {
    return false;
  }
  int pid = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + dot, pid);
  if (ec != std::errc{} || end != token.data() + dot || pid <= 0) {
    return false;
  }
  return process_token(pid) == token;
}

std::string shell_quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

Result<ProcessResult> ProcessRunner::stream(const std::vector<std::string>& argv, const StdoutConsumer& consume,
                                            std::chrono::milliseconds timeout) {
  auto r = run(argv, {}, timeout);
  if (!r) {
    return r;
  }
  auto pipe = make_pipe();
  if (!pipe) {
    return std::unexpected(pipe.error());
  }
  // A consumer that stops reading early must give the replay EPIPE, not a SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  std::thread replay([&] {
    (void)write_all(pipe->write.get(), r->out.data(), r->out.size(), "the replayed stdout");
    pipe->write.reset();
  });
  auto consumed = consume(pipe->read.get());
  pipe->read.reset();
  replay.join();
  r->out.clear();
  if (r->err.size() > stream_stderr_keep) {
    r->err.erase(0, r->err.size() - stream_stderr_keep);
  }
  if (!consumed) {
    r->feed_error = consumed.error();
  }
  return r;
}

namespace {

// The read ends of a started child's stdout and stderr pipes.
struct ChildOutputs {
  Fd out;
  Fd err;
};

// Starts `child` with `in` as its stdin and fresh pipes as stdout and stderr; this
// process keeps only the pipes' read ends. Error (io): no pipe, or no child.
Result<ChildOutputs> start_with_pipes(Child& child, const std::vector<std::string>& argv, Fd in) {
  auto out = make_pipe();
  if (!out) {
    return std::unexpected(out.error());
  }
  auto err = make_pipe();
  if (!err) {
    return std::unexpected(err.error());
  }
  if (auto started = child.start(argv, in.get(), out->write.get(), err->write.get()); !started) {
    return std::unexpected(started.error());
  }
  return ChildOutputs{std::move(out->read), std::move(err->read)};
}

} // namespace

Result<ProcessResult> SystemProcessRunner::run(const std::vector<std::string>& argv,
                                               const StdinFeeder& feed,
                                               std::chrono::milliseconds timeout) {
  if (argv.empty()) {
    return fail(ErrorKind::io, "empty command");
  }
  const auto start = Clock::now();
  // A child that stops reading must give the feeder EPIPE, not kill this process.
  ::signal(SIGPIPE, SIG_IGN);
  auto in = feed ? make_pipe() : Result<Pipe>(Pipe{});
  if (!in) {
    return std::unexpected(in.error());
  }
  if (!feed) {
    auto devnull = open_fd("/dev/null", O_RDONLY);
    if (!devnull) {
      return std::unexpected(devnull.error());
    }
    in->read = std::move(*devnull);
  }
  Child child;
  auto outputs = start_with_pipes(child, argv, std::move(in->read));
  if (!outputs) {
    return std::unexpected(outputs.error());
  }

  ProcessResult result;
  std::promise<void> drained;
  std::thread reader([&] {
    drain({{outputs->out.get(), &result.out, 0}, {outputs->err.get(), &result.err, 0}}, child, timeout, result);
    drained.set_value();
  });
  Result<void> fed{};
  if (feed) {
    // Non-blocking on our side only, so that write_all notices a child that stopped
    // reading (a ctr whose containerd died can hang) instead of blocking forever.
    ::fcntl(in->write.get(), F_SETFL, ::fcntl(in->write.get(), F_GETFL) | O_NONBLOCK);
    {
      ScopedStallLimit limit(options_.stall_limit);
      fed = feed(in->write.get());
    }
    in->write.reset();
    // Closing stdin ends the stream and the child usually fails on its own, saying
    // why; killing it at once would lose that message. One that lingers is killed.
    // The kill is decided here, where the end of feeding is known.
    if (!fed && drained.get_future().wait_for(grace) == std::future_status::timeout) {
      child.kill_group();
    }
  }
  reader.join();
  if (fed) {
    child.reap(result, deadline_of(timeout, start));
  } else {
    child.reap(result, Clock::now() + grace, Child::Deadline::grace);
  }
  if (!fed) {
    result.feed_error = fed.error();
  }
  return result;
}

Result<ProcessResult> SystemProcessRunner::stream(const std::vector<std::string>& argv,
                                                  const StdoutConsumer& consume,
                                                  std::chrono::milliseconds timeout) {
  if (argv.empty()) {
    return fail(ErrorKind::io, "empty command");
  }
  const auto start = Clock::now();
  ::signal(SIGPIPE, SIG_IGN);
  auto devnull = open_fd("/dev/null", O_RDONLY);
  if (!devnull) {
    return std::unexpected(devnull.error());
  }
  Child child;
  auto outputs = start_with_pipes(child, argv, std::move(*devnull));
  if (!outputs) {
    return std::unexpected(outputs.error());
  }
  auto& out = outputs->out;
  auto& err = outputs->err;

  // stderr and the deadline are watched on a thread; stdout is the consumer's.
  ProcessResult result;
  std::promise<void> drained;
  std::thread watcher([&] {
    drain({{err.get(), &result.err, stream_stderr_keep}}, child, timeout, result);
    drained.set_value();
  });
  auto consumed = consume(out.get());
  if (consumed) {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(out.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    }
  }
  // A child still writing now gets EPIPE (or SIGPIPE) and ends.
  out.reset();
  if (!consumed && drained.get_future().wait_for(grace) == std::future_status::timeout) {
    child.kill_group();
  }
  watcher.join();
  if (consumed) {
    child.reap(result, deadline_of(timeout, start));
  } else {
    child.reap(result, Clock::now() + grace, Child::Deadline::grace);
  }
  if (result.err.size() > stream_stderr_keep) {
    result.err.erase(0, result.err.size() - stream_stderr_keep);
  }
  if (!consumed) {
    result.feed_error = consumed.error();
  }
  return result;
}

} // namespace kload::util
