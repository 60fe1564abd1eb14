#include "kload/util/temp_dir.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
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

// Not async-signal-safe in the strict sense (it uses the filesystem library), but the
// process is about to exit and leaving spool files behind is worse.
void on_signal(int sig) {
  for (auto& slot : g_live) {
    if (slot[0] != '\0') {
      std::error_code ec;
      std::filesystem::remove_all(slot, ec);
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
