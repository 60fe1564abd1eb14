#include "kload/util/process.h"

#include "support/test_support.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <chrono>
#include <csignal>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace kload::util {
namespace {

using namespace std::chrono_literals;

ProcessResult run_ok(const std::vector<std::string>& argv, const StdinFeeder& feed = {},
                     std::chrono::milliseconds timeout = 30s) {
  SystemProcessRunner runner;
  auto r = runner.run(argv, feed, timeout);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? *r : ProcessResult{};
}

// True when this process has no child left to reap (none running, no zombie).
bool no_children_left() { return ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD; }

TEST(Process, CapturesStdoutStderrAndExitCode) {
  const auto r = run_ok({"sh", "-c", "echo out; echo err >&2; printf more; exit 3"});
  EXPECT_EQ(r.out, "out\nmore");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.feed_error.has_value());
  EXPECT_TRUE(no_children_left());
}

TEST(Process, StdinIsEmptyWithoutFeeder) {
  const auto r = run_ok({"wc", "-c"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(std::stoi(r.out), 0);
}

TEST(Process, ReportsTheKillingSignal) {
  const auto r = run_ok({"sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_FALSE(r.timed_out);
}

TEST(Process, ChildGetsDefaultSignalDispositions) {
  // Even when the parent ignores SIGPIPE (kload does), the child must not inherit it.
  struct sigaction old{};
  struct sigaction ign{};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  ::sigaction(SIGPIPE, &ign, &old);
  const auto r = run_ok({"sh", "-c", "yes | head -c 10 >/dev/null; echo ${PIPESTATUS:-done}"});
  ::sigaction(SIGPIPE, &old, nullptr);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "") << "yes must die of SIGPIPE quietly, not report a write error";
}

TEST(Process, FeedsStdinWhileDrainingStdout) {
  // cat echoes 5 MiB back: far more than a pipe buffer in both directions, so feeding
  // and draining must overlap or this deadlocks (the timeout turns that into a failure).
  std::string data(5 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  std::size_t calls = 0;
  const auto r = run_ok({"cat"},
                        [&](int fd) -> Result<void> {
                          ++calls;
                          // Odd-sized writes.
                          for (std::size_t off = 0; off < data.size(); off += 100003) {
                            const auto n = std::min<std::size_t>(100003, data.size() - off);
                            if (auto w = write_all(fd, data.data() + off, n, "cat's stdin"); !w) {
                              return w;
                            }
                          }
                          return {};
                        },
                        20s);
  EXPECT_EQ(calls, 1u);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), data.size());
  EXPECT_TRUE(r.out == data) << "echoed bytes differ";
  EXPECT_FALSE(r.feed_error.has_value());
}

TEST(Process, TimeoutKillsTheChild) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_ok({"sleep", "10"}, {}, 200ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 8s) << "killed, not left to finish its 10 s";
  EXPECT_TRUE(no_children_left());
}

TEST(Process, ZeroTimeoutMeansNoLimit) {
  const auto r = run_ok({"sh", "-c", "sleep 0.3; echo done"}, {}, 0ms);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "done\n");
}

TEST(Process, FeederErrorLetsTheChildSayWhy) {
  // The stream ends early; a child that notices fails on its own, and its exit code
  // and message are kept.
  const auto r = run_ok({"sh", "-c", "cat >/dev/null; echo 'ctr: unexpected EOF' >&2; exit 4"},
                        [](int fd) -> Result<void> {
                          if (auto w = write_all(fd, "abc", 3, "stdin"); !w) {
                            return w;
                          }
                          return fail(ErrorKind::bad_input, "archive.tar: layer.tar: truncated");
                        });
  ASSERT_TRUE(r.feed_error.has_value());
  EXPECT_EQ(r.feed_error->message, "archive.tar: layer.tar: truncated");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.err, "ctr: unexpected EOF\n");
  EXPECT_TRUE(no_children_left());
}

TEST(Process, FeederErrorKillsALingeringChild) {
  // A child that does not react to the end of its input is killed after a grace
  // period of about a second, and reaped.
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_ok({"sleep", "10"}, [](int fd) -> Result<void> {
    if (auto w = write_all(fd, "abc", 3, "stdin"); !w) {
      return w;
    }
    return fail(ErrorKind::bad_input, "archive.tar: layer.tar: truncated");
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.feed_error.has_value());
  EXPECT_EQ(r.feed_error->kind, ErrorKind::bad_input);
  EXPECT_EQ(r.feed_error->message, "archive.tar: layer.tar: truncated");
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(elapsed, 8s) << "killed after the grace period, not left to finish its 10 s";
  EXPECT_TRUE(no_children_left());
}

TEST(Process, FeedingAChildThatExitsEarlyIsAnErrorNotADeath) {
  // The child never reads its stdin; the feeder's writes then fail with EPIPE. The
  // runner's contract is that this is reported in the result: the calling process
  // must survive even when it has not set SIGPIPE to ignored itself. Run it in a
  // child process so that a SIGPIPE death fails this test instead of the binary.
  EXPECT_EXIT(
      {
        ::signal(SIGPIPE, SIG_DFL);
        SystemProcessRunner runner;
        const std::string chunk(1 << 20, 'x');
        auto r = runner.run({"true"},
                            [&](int fd) -> Result<void> {
                              for (int i = 0; i < 8; ++i) {
                                if (auto w = write_all(fd, chunk.data(), chunk.size(), "stdin"); !w) {
                                  return w;
                                }
                              }
                              return {};
                            },
                            10s);
        const bool ok = r && r->feed_error && r->feed_error->message.find("stdin") != std::string::npos;
        std::_Exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(Process, MissingProgramIsAnError) {
  SystemProcessRunner runner;
  auto r = runner.run({"kload-test-no-such-program"}, {}, 5s);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("kload-test-no-such-program"), std::string::npos) << r.error().message;

  r = runner.run({"/nonexistent/dir/prog", "arg"}, {}, 5s);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("/nonexistent/dir/prog"), std::string::npos) << r.error().message;

  r = runner.run({}, {}, 5s);
  EXPECT_FALSE(r.has_value());
  EXPECT_TRUE(no_children_left());
}

TEST(Process, WriteAllReportsFailures) {
  auto r = write_all(-1, "x", 1, "the void");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("the void"), std::string::npos) << r.error().message;
  EXPECT_TRUE(write_all(-1, "", 0, "nothing").has_value()) << "writing nothing cannot fail";
}

TEST(Process, ShellQuoteRoundTripsHostileStrings) {
  std::string all_printable;
  for (int c = 1; c < 128; ++c) {
    all_printable += static_cast<char>(c);
  }
  const std::vector<std::string> hostile = {
      "",
      "plain",
      "two words",
      "it's",
      "'",
      "''",
      "'\\''",
      "\"double\"",
      "$HOME ${HOME} $(id) `id`",
      "a;b && c || d | e & f",
      "*?[a-z]~",
      "back\\slash\\",
      "new\nline\ttab\r",
      "-n",
      "--",
      "%s %d %%",
      "!event !!",
      "#comment",
      "  leading and trailing  ",
      "caf\xc3\xa9 \xe2\x9c\x93 \xff\xfe",
      all_printable,
  };
  SystemProcessRunner runner;
  for (const auto& s : hostile) {
    auto r = runner.run({"sh", "-c", "printf %s " + shell_quote(s)}, {}, 10s);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->exit_code, 0) << r->err;
    EXPECT_EQ(r->out, s) << "quoted as " << shell_quote(s);
  }
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
}

TEST(Process, ShellQuotedWordsStaySeparate) {
  SystemProcessRunner runner;
  const std::string script = "for a in " + shell_quote("a b") + " " + shell_quote("") + " " + shell_quote("c'd") +
                             "; do printf '<%s>' \"$a\"; done";
  auto r = runner.run({"sh", "-c", script}, {}, 10s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->out, "<a b><><c'd>");
}

} // namespace
} // namespace kload::util

namespace kload::util {
namespace {

TEST(ProcessToken, NamesThisProcessWhileItRuns) {
  const auto token = own_process_token();
  ASSERT_FALSE(token.empty());
  EXPECT_TRUE(token.starts_with(std::to_string(::getpid()) + "."));
  EXPECT_EQ(token, process_token(static_cast<int>(::getpid())));
  EXPECT_TRUE(process_running(token));
}

TEST(ProcessToken, AnExitedProcessIsNotRunningReapedOrNot) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  const auto token = process_token(pid);
  ASSERT_FALSE(token.empty());
  EXPECT_TRUE(process_running(token));
  ::kill(pid, SIGKILL);
  // Not yet reaped: a zombie has exited.
  for (int i = 0; i < 200 && process_running(token); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(process_running(token));
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_FALSE(process_running(token));
  EXPECT_TRUE(process_token(pid).empty());
}

TEST(ProcessToken, ASameNumberedProcessFromAnotherStartIsNotTheSame) {
  const auto token = own_process_token();
  const auto dot = token.find('.');
  EXPECT_FALSE(process_running(token.substr(0, dot) + ".1"));
  for (const char* bad : {"", ".", "abc", "12", "-1.5", "0.0", "99999999999999999999.1", "1x.2"}) {
    EXPECT_FALSE(process_running(bad)) << bad;
  }
}

} // namespace
} // namespace kload::util

namespace kload::util {
namespace {

using namespace std::chrono_literals;

// Whether the process a token named is gone (exited; a zombie counts as gone), waiting
// up to 3 s for it.
bool gone(const std::string& token) {
  for (int i = 0; i < 300 && process_running(token); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  return !process_running(token);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Feeds `total` bytes of zeros through write_all.
StdinFeeder zeros(std::size_t total) {
  return [total](int fd) -> Result<void> {
    const std::string chunk(1 << 16, '\0');
    for (std::size_t done = 0; done < total; done += chunk.size()) {
      if (auto w = write_all(fd, chunk.data(), chunk.size(), "the child's stdin"); !w) {
        return w;
      }
    }
    return {};
  };
}

TEST(ProcessGroup, DeadlineHoldsWhenADescendantKeepsThePipesOpen) {
  // The background sleep inherits stdout and stderr: killing only the shell would
  // leave the pipes open and the run waiting for it. Run in a forked child with an
  // alarm, so that a hang fails this test instead of stalling the suite.
  kload::testing::Scratch scratch;
  const std::string pidfile = (scratch / "bg.pid").string();
  EXPECT_EXIT(
      {
        ::alarm(20);
        SystemProcessRunner runner;
        const auto start = std::chrono::steady_clock::now();
        auto r = runner.run({"sh", "-c", "sleep 60 & echo $! >" + pidfile + "; sleep 60"}, {}, 300ms);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        const bool ok = r && r->timed_out && r->signal == SIGKILL && elapsed < 5s;
        std::_Exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
  const auto bg = std::stoi(read_text(pidfile));
  const auto token = process_token(bg);
  EXPECT_TRUE(token.empty() || gone(token)) << "the background sleep was killed with its group";
}

TEST(ProcessGroup, ADescendantThatLeftTheGroupIsGivenUpOnAfterTheKill) {
  // setsid puts the sleep out of reach of the group kill; it keeps the pipes open,
  // but the run still ends about a second after its deadline.
  kload::testing::Scratch scratch;
  const std::string pidfile = (scratch / "bg.pid").string();
  SystemProcessRunner runner;
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.run({"sh", "-c", "setsid sleep 30 & echo $! >" + pidfile + "; sleep 30"}, {}, 300ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->timed_out);
  EXPECT_LT(elapsed, 5s);
  if (const auto bg = read_text(pidfile); !bg.empty()) {
    ::kill(std::stoi(bg), SIGKILL);
  }
}

TEST(ProcessGroup, KillRunningChildrenEndsEveryGroup) {
  // What the SIGINT/SIGTERM handler does: the children lead their own groups, so the
  // terminal's signal no longer reaches them.
  SystemProcessRunner runner;
  Result<ProcessResult> r;
  std::thread t([&] { r = runner.run({"sh", "-c", "sleep 30 & sleep 30"}, {}, 0ms); });
  std::this_thread::sleep_for(300ms);
  const auto start = std::chrono::steady_clock::now();
  kill_running_children();
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_TRUE(no_children_left());
}

TEST(StallLimit, AChildThatNeverReadsStdinFailsTheFeedAndIsKilled) {
  SystemProcessRunner runner(RunnerOptions{1s});
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.run({"sleep", "30"}, zeros(10 << 20), 60s);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->feed_error.has_value());
  EXPECT_NE(r->feed_error->message.find("the reader took nothing for 1 s"), std::string::npos)
      << r->feed_error->message;
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_FALSE(r->timed_out);
  EXPECT_LT(elapsed, 8s);
  EXPECT_TRUE(no_children_left());
}

TEST(StallLimit, AChildThatNeverReadsNorExitsIsHandledTheSameWay) {
  // It ignores SIGTERM and has a descendant holding stdin too; only the group kill ends it.
  SystemProcessRunner runner(RunnerOptions{1s});
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.run({"sh", "-c", "trap '' TERM INT; sleep 1000 & while :; do sleep 1; done"}, zeros(10 << 20), 0ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->feed_error.has_value());
  EXPECT_NE(r->feed_error->message.find("took nothing for 1 s"), std::string::npos) << r->feed_error->message;
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(elapsed, 8s);
  EXPECT_TRUE(no_children_left());
}

TEST(StallLimit, TheEnvironmentSetsTheDefault) {
  ::setenv("KLOAD_STALL_SECONDS", "1", 1);
  EXPECT_EQ(default_stall_limit(), 1s);
  SystemProcessRunner runner;  // reads it when constructed
  EXPECT_EQ(runner.options().stall_limit, 1s);
  for (const char* bad : {"", "0", "-3", "1.5", "abc", "99999999999", "5s"}) {
    ::setenv("KLOAD_STALL_SECONDS", bad, 1);
    EXPECT_EQ(default_stall_limit(), stalled_reader_limit) << bad;
  }
  ::unsetenv("KLOAD_STALL_SECONDS");
  EXPECT_EQ(default_stall_limit(), stalled_reader_limit);
  auto r = runner.run({"sleep", "30"}, zeros(10 << 20), 60s);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->feed_error.has_value());
  EXPECT_NE(r->feed_error->message.find("took nothing for 1 s"), std::string::npos) << r->feed_error->message;
}

TEST(ProcessStream, HandsStdoutToTheConsumerAndKeepsStderr) {
  SystemProcessRunner runner;
  std::size_t got = 0;
  auto r = runner.stream({"sh", "-c", "head -c 5000000 /dev/zero; echo oops >&2; exit 3"},
                         [&](int fd) -> Result<void> {
                           char buf[4096];
                           for (ssize_t n = 0; (n = ::read(fd, buf, sizeof buf)) > 0;) {
                             got += static_cast<std::size_t>(n);
                           }
                           return {};
                         },
                         30s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(got, 5000000u);
  EXPECT_EQ(r->out, "");
  EXPECT_EQ(r->err, "oops\n");
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->feed_error.has_value());
  EXPECT_TRUE(no_children_left());
}

TEST(ProcessStream, WhatTheConsumerLeavesIsDrainedSoTheChildEndsWell) {
  SystemProcessRunner runner;
  auto r = runner.stream({"sh", "-c", "head -c 3000000 /dev/zero"},
                         [&](int fd) -> Result<void> {
                           char buf[100];
                           return ::read(fd, buf, sizeof buf) > 0 ? Result<void>{} : fail(ErrorKind::io, "empty");
                         },
                         30s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->signal, 0);
}

TEST(ProcessStream, AFailedConsumerCancelsTheRun) {
  SystemProcessRunner runner;
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.stream({"sh", "-c", "trap '' PIPE; sleep 1000 & while :; do echo x 2>/dev/null; done"},
                         [&](int fd) -> Result<void> {
                           char buf[10];
                           (void)::read(fd, buf, sizeof buf);
                           return fail(ErrorKind::bad_input, "not an archive");
                         },
                         0ms);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->feed_error.has_value());
  EXPECT_EQ(r->feed_error->message, "not an archive");
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
  EXPECT_TRUE(no_children_left());
}

TEST(ProcessStream, DeadlineHoldsWhileTheConsumerReads) {
  SystemProcessRunner runner;
  const auto start = std::chrono::steady_clock::now();
  auto r = runner.stream({"sh", "-c", "echo start; sleep 60 & sleep 60"},
                         [&](int fd) -> Result<void> {
                           char buf[64];
                           while (::read(fd, buf, sizeof buf) > 0) {
                           }
                           return {};
                         },
                         300ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(no_children_left());
}

TEST(ProcessStream, MissingProgramIsAnError) {
  SystemProcessRunner runner;
  auto r = runner.stream({"kload-test-no-such-program"}, [](int) -> Result<void> { return {}; }, 5s);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("kload-test-no-such-program"), std::string::npos);
}

// A runner that only knows run(): streaming comes from the base class's replay.
class CannedRunner final : public ProcessRunner {
public:
  Result<ProcessResult> run(const std::vector<std::string>&, const StdinFeeder&, std::chrono::milliseconds) override {
    ProcessResult r;
    r.exit_code = 0;
    r.out = std::string(1 << 20, 'a');
    r.err = "note\n";
    return r;
  }
};

TEST(ProcessStream, FakesThatOnlyRunStreamThroughAReplay) {
  CannedRunner runner;
  std::string seen;
  auto r = runner.stream({"anything"},
                         [&](int fd) -> Result<void> {
                           char buf[4096];
                           for (ssize_t n = 0; (n = ::read(fd, buf, sizeof buf)) > 0;) {
                             seen.append(buf, static_cast<std::size_t>(n));
                           }
                           return {};
                         },
                         1s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(seen.size(), std::size_t{1} << 20);
  EXPECT_EQ(r->out, "");
  EXPECT_EQ(r->err, "note\n");
  // A consumer that stops early does not hang the replay.
  r = runner.stream({"anything"}, [](int) -> Result<void> { return fail(ErrorKind::io, "stop"); }, 1s);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->feed_error.has_value());
  EXPECT_EQ(r->feed_error->message, "stop");
}

} // namespace
} // namespace kload::util
