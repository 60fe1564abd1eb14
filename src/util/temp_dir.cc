#include "kload/util/temp_dir.h"

#include "kload/util/fd.h"
#include "kload/util/process.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kload::util {

namespace {
// Live temporary directories, for the signal handler. The handler cannot take a
// mutex safely, so it reads a fixed array that is only written under the mutex with
// signals of interest still deliverable; a torn read at worst leaves one directory.
constexpr std::size_t max_live = 64;
char g_live[max_live][4096];
std::mutex g_mutex;

void register_dir(const std::filesystem::path& p) {
  std::lock_guard lock(g_mutex);
  for (auto& slot : g_live) {
    if (slot[0] == '\0') {
      std::strncpy(slot, p.c_str(), sizeof(slot) - 1);
      return;
    }
  }
}

void unregister_dir(const std::filesystem::path& p) {
  std::lock_guard lock(g_mutex);
  for (auto& slot : g_live) {
    if (p == slot) {
      slot[0] = '\0';
    }
  }
}

// Removes `name` (relative to the directory `at`) and, when it is a directory,
// everything in it, with async-signal-safe calls only: the signal may have stopped a
// thread inside malloc or opendir, so the filesystem library could deadlock here.
// `depth` bounds the stack used (spool directories are flat).
void remove_tree(int at, const char* name, int depth) {
  if (::unlinkat(at, name, 0) == 0 || errno != EISDIR || depth == 0) {
    return;
  }
  {
    // Fd's close is async-signal-safe, like everything else here.
    const Fd dir(::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) {
      return;
    }
    alignas(dirent64) char buf[4096];
    for (ssize_t n = 0; (n = ::getdents64(dir.get(), buf, sizeof(buf))) > 0;) {
      for (ssize_t off = 0; off < n;) {
        const auto* entry = reinterpret_cast<const dirent64*>(buf + off);
        off += entry->d_reclen;
        const char* e = entry->d_name;
        if (!(e[0] == '.' && (e[1] == '\0' || (e[1] == '.' && e[2] == '\0')))) {
          remove_tree(dir.get(), e, depth - 1);
        }
      }
    }
  }
  ::unlinkat(at, name, AT_REMOVEDIR);
}

// The interrupt note, for the handler. Two buffers: a new note is written into the
// one not published and then published with one atomic store, so the handler never
// reads a buffer being written (unless two more notes are set while it runs, which it
// does in microseconds).
struct Note {
  char text[interrupt_note_max];
  std::atomic<std::size_t> size{0};
};
Note g_notes[2];
std::atomic<int> g_note{-1};  // the published buffer; -1: none
std::mutex g_note_mutex;

void write_note() noexcept {
  const int i = g_note.load();
  if (i < 0) {
    return;
  }
  const Note& note = g_notes[i];
  const std::size_t size = note.size.load();
  for (std::size_t done = 0; done < size;) {
    const ssize_t n = ::write(STDERR_FILENO, note.text + done, size - done);
    if (n <= 0 && errno != EINTR) {
      return;
    }
    done += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
}

std::atomic<bool> g_cancel_mode{false};
std::atomic<int> g_cancelled_by{0};

[[noreturn]] void exit_now(int sig) {
  // Children lead their own process groups, so the terminal's Ctrl-C no longer
  // reaches them: they end with kload.
  kill_running_children();
  write_note();
  for (auto& slot : g_live) {
    if (slot[0] != '\0') {
      remove_tree(AT_FDCWD, slot, 8);
    }
  }
  _exit(128 + sig);
}

void on_signal(int sig) {
  int none = 0;
  if (!g_cancel_mode.load() || !g_cancelled_by.compare_exchange_strong(none, sig)) {
    exit_now(sig);  // OnSignal::exit, or a second signal: the user insists
  }
  // A child that a thread starts now sees the flag once it is registered (see
  // Child::start), so none escapes the kill.
  kill_running_children();
  ::alarm(cancel_grace_seconds);
}

// The run did not wind down within cancel_grace_seconds of the cancel.
void on_alarm(int) { exit_now(g_cancelled_by.load()); }
} // namespace

namespace {
// The PID.START token of a sibling named PREFIX.PID.START.XXXXXX; empty otherwise.
std::string owner_token(const std::string& name, const std::string& prefix) {
  if (!name.starts_with(prefix + ".") || name.size() < prefix.size() + 1 + 7) {
    return {};
  }
  const std::string rest = name.substr(prefix.size() + 1, name.size() - prefix.size() - 1 - 7);
  const auto dot = rest.find('.');
  if (name[name.size() - 7] != '.' || dot == std::string::npos || dot == 0 || dot + 1 == rest.size() ||
      rest.find_first_not_of("0123456789.") != std::string::npos || rest.find('.', dot + 1) != std::string::npos) {
    return {};
  }
  return rest;
}

// Removes the directories of `prefix` under `base` whose owner provably ended (see
// TempDir::create). The token alone would not do: a run in another PID namespace
// sharing this /tmp (a container) looks dead from here, so its live lock decides.
void remove_leftovers(const std::string& base, const std::string& prefix) {
  std::error_code ec;
  const auto own = own_process_token();
  for (std::filesystem::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    const auto token = owner_token(name, prefix);
    if (token.empty() || token == own || process_running(token)) {
      continue;
    }
    const Fd dir(::open(it->path().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st{};
    if (!dir || ::fstat(dir.get(), &st) != 0 || st.st_uid != ::geteuid() ||
        ::flock(dir.get(), LOCK_EX | LOCK_NB) != 0) {
      continue;
    }
    std::error_code rm;
    std::filesystem::remove_all(it->path(), rm);  // a sweep: what it cannot remove stays
  }
}
} // namespace

TempDir::TempDir(std::filesystem::path p, Fd lock) : path_(std::move(p)), lock_(std::move(lock)) {
  register_dir(path_);
}

Result<TempDir> TempDir::create(const std::string& prefix) {
  const char* env = std::getenv("TMPDIR");
  const std::string base = env != nullptr && *env != '\0' ? env : "/tmp";
  remove_leftovers(base, prefix);
  const auto token = own_process_token();  // empty only without /proc: then unnamed
  std::string templ = base + "/" + prefix + "." + (token.empty() ? "" : token + ".") + "XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    return fail(ErrorKind::io, "cannot create a temporary directory " + templ + ": " + std::strerror(errno) +
                                   "; set TMPDIR to a writable directory");
  }
  // Locked at once: from here a sweep in another PID namespace leaves it alone too.
  Fd lock(::open(templ.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!lock || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(templ, ec);
    return fail(ErrorKind::io, "cannot lock the temporary directory " + templ + ": " + std::strerror(err));
  }
  return TempDir(std::filesystem::path(templ), std::move(lock));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)), lock_(std::move(other.lock_)) {
  other.path_.clear();
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::move(other.path_);
    lock_ = std::move(other.lock_);
    other.path_.clear();
  }
  return *this;
}

TempDir::~TempDir() { remove(); }

void TempDir::remove() noexcept {
  if (path_.empty()) {
    return;
  }
  unregister_dir(path_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  lock_.reset();
  path_.clear();
}

void set_interrupt_note(std::string_view note) {
  const std::lock_guard lock(g_note_mutex);
  if (note.empty()) {
    g_note.store(-1);
    return;
  }
  const int next = g_note.load() == 0 ? 1 : 0;
  const std::size_t size = std::min(note.size(), interrupt_note_max);
  std::memcpy(g_notes[next].text, note.data(), size);
  g_notes[next].size.store(size);
  g_note.store(next);
}

void install_cleanup_signal_handlers(OnSignal on_signal_mode) {
  if (on_signal_mode == OnSignal::cancel) {
    static std::once_flag cancel_once;
    std::call_once(cancel_once, [] {
      // The end of the grace period is handled before any signal can start one.
      struct sigaction alarm_action{};
      alarm_action.sa_handler = on_alarm;
      sigemptyset(&alarm_action.sa_mask);
      sigaction(SIGALRM, &alarm_action, nullptr);
      g_cancel_mode = true;
    });
  }
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    // A node that hangs up mid-stream must give an EPIPE error, not kill us.
    signal(SIGPIPE, SIG_IGN);
  });
}

int cancelled_by() noexcept { return g_cancelled_by.load(); }

std::string signal_name(int signal) {
  switch (signal) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGHUP:
    return "SIGHUP";
  default:
    return "signal " + std::to_string(signal);
  }
}

} // namespace kload::util
