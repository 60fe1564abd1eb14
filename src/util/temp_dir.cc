#include "kload/util/temp_dir.h"

#include "kload/util/fd.h"
#include "kload/util/process.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <set>
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

void on_signal(int sig) {
  // Children lead their own process groups, so the terminal's Ctrl-C no longer
  // reaches them: they end with kload.
  kill_running_children();
  for (auto& slot : g_live) {
    if (slot[0] != '\0') {
      remove_tree(AT_FDCWD, slot, 8);
    }
  }
  _exit(128 + sig);
}
} // namespace

TempDir::TempDir(std::filesystem::path p) : path_(std::move(p)) { register_dir(path_); }

Result<TempDir> TempDir::create(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                      prefix + ".XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    return fail(ErrorKind::io,
                "cannot create a temporary directory " + templ + ": " + std::strerror(errno));
  }
  return TempDir(std::filesystem::path(templ));
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::move(other.path_);
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
  path_.clear();
}

void install_cleanup_signal_handlers() {
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

} // namespace kload::util
