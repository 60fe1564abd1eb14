#include "kload/util/temp_dir.h"

#include "kload/util/fd.h"
#include "kload/util/process.h"

#include "support/test_support.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace kload::util {
namespace {

namespace fs = std::filesystem;
using kload::testing::Scratch;

// Sets TMPDIR for the lifetime of the guard.
class TmpdirGuard {
public:
  explicit TmpdirGuard(const char* value) {
    if (const char* old = std::getenv("TMPDIR"); old != nullptr) {
      old_ = old;
    }
    if (value != nullptr) {
      ::setenv("TMPDIR", value, 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }
  ~TmpdirGuard() {
    if (old_) {
      ::setenv("TMPDIR", old_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }

private:
  std::optional<std::string> old_;
};

std::vector<fs::path> spool_dirs_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with("kload-spool.")) {
      out.push_back(e.path());
    }
  }
  return out;
}

TEST(TempDir, CreatedPrivateAndRemovedOnDestruction) {
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  fs::path path;
  {
    auto dir = TempDir::create("kload-test");
    ASSERT_TRUE(dir.has_value()) << dir.error().message;
    path = dir->path();
    EXPECT_EQ(path.parent_path(), scratch.path());
    EXPECT_TRUE(path.filename().string().starts_with("kload-test.")) << path;
    EXPECT_TRUE(path.filename().string().starts_with("kload-test." + own_process_token() + "."))
        << "named for its owner, so that a later run can tell it is a leftover: " << path;
    EXPECT_EQ(path.filename().string().size(), ("kload-test." + own_process_token() + ".XXXXXX").size()) << path;
    struct stat st{};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    // Contents, nested and read-only, go with it.
    fs::create_directories(path / "a" / "b");
    kload::testing::write_file(path / "a" / "b" / "file", "data");
    kload::testing::write_file(path / "top", "data");
    fs::permissions(path / "top", fs::perms::owner_read);
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempDir, DefaultPrefixAndFreshNames) {
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  auto a = TempDir::create();
  auto b = TempDir::create();
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->path().filename().string().starts_with("kload.")) << a->path();
  EXPECT_NE(a->path(), b->path());
}

TEST(TempDir, FallsBackToTmpWhenTmpdirIsUnsetOrEmpty) {
  for (const char* value : {static_cast<const char*>(nullptr), ""}) {
    TmpdirGuard tmp(value);
    auto dir = TempDir::create("kload-test");
    ASSERT_TRUE(dir.has_value()) << dir.error().message;
    EXPECT_EQ(dir->path().parent_path(), fs::path("/tmp"));
  }
}

TEST(TempDir, UnusableTmpdirIsAnError) {
  Scratch scratch;
  const auto missing = scratch / "does-not-exist";
  TmpdirGuard tmp(missing.c_str());
  auto dir = TempDir::create("kload-test");
  ASSERT_FALSE(dir.has_value());
  EXPECT_EQ(dir.error().kind, ErrorKind::io);
  EXPECT_NE(dir.error().message.find(missing.string()), std::string::npos) << dir.error().message;
}

TEST(TempDir, MoveConstructionTransfersOwnership) {
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  fs::path path;
  {
    auto a = TempDir::create("kload-test");
    ASSERT_TRUE(a.has_value());
    path = a->path();
    TempDir moved(std::move(*a));
    EXPECT_EQ(moved.path(), path);
    { TempDir gone(std::move(*a)); } // moved-from: owns nothing, removes nothing
    EXPECT_TRUE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST(TempDir, MoveAssignmentRemovesTheDirectoryItOwned) {
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  fs::path first;
  fs::path second;
  {
    auto a = TempDir::create("kload-test");
    auto b = TempDir::create("kload-test");
    ASSERT_TRUE(a && b);
    first = a->path();
    second = b->path();
    *a = std::move(*b);
    EXPECT_FALSE(fs::exists(first));
    EXPECT_EQ(a->path(), second);
    EXPECT_TRUE(fs::exists(second));
  }
  EXPECT_FALSE(fs::exists(second));
}

// A token for a process that has ended: a child's, once reaped.
std::string dead_process_token() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string token = std::to_string(pid) + ".1";
  EXPECT_FALSE(process_running(token));
  return token;
}

TEST(TempDir, RemovesTheLeftoverOfAProcessThatEnded) {
  // What a SIGKILLed run leaves: its directory, named for it, with a spool file.
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  const auto leftover = scratch / ("kload-spool." + dead_process_token() + ".AbC123");
  fs::create_directories(leftover / "sub");
  kload::testing::write_file(leftover / "sub" / "blob", "spooled bytes");
  const auto other_prefix = scratch / ("other." + dead_process_token() + ".AbC123");
  fs::create_directory(other_prefix);
  auto dir = TempDir::create("kload-spool");
  ASSERT_TRUE(dir.has_value()) << dir.error().message;
  EXPECT_FALSE(fs::exists(leftover)) << "the leftover of an ended run stayed";
  EXPECT_TRUE(fs::exists(other_prefix)) << "only the prefix asked for is swept";
  EXPECT_TRUE(fs::exists(dir->path()));
}

TEST(TempDir, KeepsTheDirectoriesOfLiveProcessesAndOfOthers) {
  Scratch scratch;
  TmpdirGuard tmp(scratch.path().c_str());
  // A live process's directory (this one's, made by hand: another TempDir of it).
  const auto live = scratch / ("kload-spool." + own_process_token() + ".AbC123");
  fs::create_directory(live);
  // Named for an ended process but locked: a live run in another PID namespace.
  const auto locked = scratch / ("kload-spool." + dead_process_token() + ".LoCk3d");
  fs::create_directory(locked);
  const Fd lock(::open(locked.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(lock.valid());
  ASSERT_EQ(::flock(lock.get(), LOCK_EX | LOCK_NB), 0);
  // Not a directory of ours in the expected shape: a symbolic link, a regular file,
  // names that only look alike.
  const auto target = scratch / "target";
  fs::create_directory(target);
  const auto link = scratch / ("kload-spool." + dead_process_token() + ".L1nk00");
  fs::create_directory_symlink(target, link);
  const auto file = scratch / ("kload-spool." + dead_process_token() + ".F1le00");
  kload::testing::write_file(file, "x");
  const auto odd = scratch / "kload-spool.12.x4.AbC123";
  fs::create_directory(odd);
  const auto unnamed = scratch / "kload-spool.AbC123";
  fs::create_directory(unnamed);

  auto dir = TempDir::create("kload-spool");
  ASSERT_TRUE(dir.has_value()) << dir.error().message;
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(locked)) << "a locked directory belongs to a live run";
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(fs::exists(target));
  EXPECT_TRUE(fs::exists(file));
  EXPECT_TRUE(fs::exists(odd));
  EXPECT_TRUE(fs::exists(unnamed));
  // And a TempDir's own lock keeps it from a sweep that thinks its owner ended.
  const auto mine = dir->path().filename().string();
  const auto renamed = scratch / ("kload-spool." + dead_process_token() + mine.substr(mine.size() - 7));
  fs::rename(dir->path(), renamed);
  auto again = TempDir::create("kload-spool");
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(fs::exists(renamed)) << "a directory a live TempDir holds was swept";
  fs::rename(renamed, dir->path());
}

// Runs `kload inspect -` reading from a pipe that stalls in the middle of a large
// layer (so a spool directory exists), then sends `sig`.
void interrupt_while_spooling(int sig, int expected_exit) {
  Scratch scratch;
  const auto archive = scratch / "big.tar";
  ASSERT_TRUE(kload::testing::mkimage({"--image", "app:v1=base:8K,big:6M", archive.string()}));
  const auto tmp = scratch / "tmp";
  fs::create_directory(tmp);
  const std::string data = kload::testing::read_file(archive);

  int in[2];
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> env_strings{"TMPDIR=" + tmp.string()};
  for (char** e = environ; *e != nullptr; ++e) {
    if (!std::string_view(*e).starts_with("TMPDIR=")) {
      env_strings.emplace_back(*e);
    }
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::string bin = kload::testing::kload_binary().string();
  std::string cmd = "inspect";
  std::string dash = "-";
  char* argv[] = {bin.data(), cmd.data(), dash.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, bin.c_str(), &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  ASSERT_EQ(rc, 0) << std::strerror(rc);

  // Half the archive ends inside the 6 MiB layer; then the writer stalls.
  std::signal(SIGPIPE, SIG_IGN);
  const auto half = data.size() / 2;
  std::size_t off = 0;
  while (off < half) {
    const ssize_t n = ::write(in[1], data.data() + off, half - off);
    if (n <= 0) {
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(off, half) << "kload stopped reading early";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (spool_dirs_in(tmp).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(spool_dirs_in(tmp).size(), 1u) << "kload should be spooling the large layer by now";

  ::kill(pid, sig);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(in[1]);
  ASSERT_TRUE(WIFEXITED(status)) << "kload died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), expected_exit);
  EXPECT_TRUE(spool_dirs_in(tmp).empty()) << "spool directory left behind: " << spool_dirs_in(tmp).front();
}

// What a process that sets `notes` in turn and then gets `sig` writes to stderr, and
// its exit code.
std::pair<std::string, int> note_on_signal(const std::vector<std::string>& notes, int sig) {
  int err[2];
  EXPECT_EQ(::pipe(err), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err[1], STDERR_FILENO);
    install_cleanup_signal_handlers();
    for (const auto& n : notes) {
      set_interrupt_note(n);
    }
    ::raise(sig);
    ::_exit(0);
  }
  ::close(err[1]);
  std::string out;
  char buf[256];
  for (ssize_t n = 0; (n = ::read(err[0], buf, sizeof buf)) > 0;) {
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST(TempDir, TheHandlerWritesTheLastInterruptNoteBeforeItExits) {
  EXPECT_EQ(note_on_signal({"first\n", "\033[2A\r\033[Jkload: interrupted\n"}, SIGINT),
            std::make_pair(std::string("\033[2A\r\033[Jkload: interrupted\n"), 130));
  EXPECT_EQ(note_on_signal({"set, then taken back\n", ""}, SIGTERM), std::make_pair(std::string(), 143));
  EXPECT_EQ(note_on_signal({std::string(interrupt_note_max + 10, 'x')}, SIGTERM).first.size(), interrupt_note_max);
}

TEST(TempDir, InterruptedKloadLeavesNoSpoolDirectory) { interrupt_while_spooling(SIGINT, 130); }

TEST(TempDir, TerminatedKloadLeavesNoSpoolDirectory) { interrupt_while_spooling(SIGTERM, 143); }

// What a cancelled run sees, in a child process (the cancel is for the whole
// process, and stays): the first SIGINT kills the running child and the process goes
// on, new children are refused as interrupted, and a second signal (SIGTERM) ends it
// at once with 143 (a first signal that exited would give 130). The child's exit
// status says which step failed.
int cancelled_run() {
  install_cleanup_signal_handlers(OnSignal::cancel);
  SystemProcessRunner runner;
  std::thread interrupter([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(::getpid(), SIGINT);
  });
  const auto start = std::chrono::steady_clock::now();
  auto slept = runner.run({"sleep", "30"}, {}, std::chrono::milliseconds{0});
  interrupter.join();
  if (!slept || slept->signal != SIGKILL || std::chrono::steady_clock::now() - start > std::chrono::seconds(5)) {
    return 11;  // the running child was not killed at once
  }
  if (cancelled_by() != SIGINT) {
    return 12;
  }
  auto refused = runner.run({"true"}, {}, std::chrono::milliseconds{0});
  if (refused || refused.error().kind != ErrorKind::interrupted ||
      refused.error().message.find("interrupted by SIGINT") == std::string::npos) {
    return 13;  // a child started after the cancel
  }
  ::alarm(0);                   // the grace period's end would exit 130
  ::kill(::getpid(), SIGTERM);  // the second: exits 143 here
  std::this_thread::sleep_for(std::chrono::seconds(2));
  return 14;
}

TEST(TempDir, CancelKillsTheChildrenRefusesNewOnesAndASecondSignalExits) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::_exit(cancelled_run());
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 143)
      << "130: the first signal exited, 11: not killed, 12: no cancel, 13: a child after the cancel, 14: no exit";
}

} // namespace
} // namespace kload::util
