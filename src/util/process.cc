#include "kload/util/process.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <future>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace kload::util {

namespace {

struct Pipe {
  int read = -1;
  int write = -1;
  ~Pipe() { close_both(); }
  void close_both() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read >= 0) {
      ::close(read);
      read = -1;
    }
  }
  void close_write() {
    if (write >= 0) {
      ::close(write);
      write = -1;
    }
  }
};

Result<void> make_pipe(Pipe& p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return fail(ErrorKind::io, std::string("pipe: ") + std::strerror(errno));
  }
  p.read = fds[0];
  p.write = fds[1];
  return {};
}

// Drains stdout and stderr until both close, killing the child when the deadline
// passes. Runs on its own thread so that a child that writes a lot while we are still
// feeding its stdin never deadlocks.
void drain(int out_fd, int err_fd, pid_t pid, std::chrono::milliseconds timeout, ProcessResult& result) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buf[65536];
  while (open_count > 0) {
    int wait_ms = -1;
    if (timeout.count() > 0) {
      // Rounded up: a deadline less than a millisecond away has not passed yet.
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        if (!result.timed_out) {
          result.timed_out = true;
          ::kill(pid, SIGKILL);
        }
        wait_ms = 100;
      } else {
        wait_ms = wait_ms < 0 ? static_cast<int>(left.count()) : std::min(wait_ms, static_cast<int>(left.count()));
      }
    }
    const int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno != EINTR) {
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
        if (got > 0) {
          sinks[i]->append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          fds[i].fd = -1;
          --open_count;
        }
      }
    }
  }
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
        // A non-blocking pipe to a child (see SystemProcessRunner::run): wait for room,
        // but not forever: a reader that takes nothing for this long is stuck.
        pollfd pfd{fd, POLLOUT, 0};
        const int ready = ::poll(&pfd, 1, static_cast<int>(stalled_reader_limit.count() * 1000));
        if (ready == 0) {
          return fail(ErrorKind::io, "writing " + what + ": the reader took nothing for " +
                                         std::to_string(stalled_reader_limit.count()) + " s");
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

Result<ProcessResult> SystemProcessRunner::run(const std::vector<std::string>& argv,
                                               const StdinFeeder& feed,
                                               std::chrono::milliseconds timeout) {
  if (argv.empty()) {
    return fail(ErrorKind::io, "empty command");
  }
  // A child that stops reading must give the feeder EPIPE, not kill this process.
  ::signal(SIGPIPE, SIG_IGN);
  Pipe in;
  Pipe out;
  Pipe err;
  if (auto r = make_pipe(in); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = make_pipe(out); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = make_pipe(err); !r) {
    return std::unexpected(r.error());
  }
  int devnull = -1;
  if (!feed) {
    devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, feed ? in.read : devnull, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write, 1);
  posix_spawn_file_actions_adddup2(&actions, err.write, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child must not inherit our SIGPIPE=ignore (ctr and ssh expect the default).
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    cargv.push_back(const_cast<char*>(a.c_str()));
  }
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (devnull >= 0) {
    ::close(devnull);
  }
  if (rc != 0) {
    return fail(ErrorKind::io, "cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  in.close_read();
  out.close_write();
  err.close_write();

  ProcessResult result;
  std::promise<void> drained;
  std::thread reader([&] {
    drain(out.read, err.read, pid, timeout, result);
    drained.set_value();
  });
  Result<void> fed{};
  if (feed) {
    // Non-blocking on our side only, so that write_all notices a child that stopped
    // reading (a ctr whose containerd died can hang) instead of blocking forever.
    ::fcntl(in.write, F_SETFL, ::fcntl(in.write, F_GETFL) | O_NONBLOCK);
    fed = feed(in.write);
    in.close_write();
    // Closing stdin ends the stream and the child usually fails on its own, saying
    // why; killing it at once would lose that message. One that lingers is killed.
    // The kill is decided here, where the end of feeding is known: the reader may be
    // blocked in poll() for as long as the whole timeout by then.
    if (!fed && drained.get_future().wait_for(std::chrono::seconds(1)) == std::future_status::timeout) {
      ::kill(pid, SIGKILL);
    }
  }
  reader.join();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  if (!fed) {
    result.feed_error = fed.error();
  }
  return result;
}

} // namespace kload::util
