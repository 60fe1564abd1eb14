#pragma once
// A private temporary directory removed when the owner goes away, and also on
// SIGINT/SIGTERM (the process then exits with 130/143). A SIGKILLed process can
// remove nothing, so each directory is named for the process that owns it and the
// next TempDir::create of the same prefix removes those of processes that ended.

#include "kload/util/error.h"
#include "kload/util/fd.h"

#include <filesystem>

namespace kload::util {

class TempDir {
public:
  // Creates a fresh mode-0700 directory under $TMPDIR (or /tmp) named
  // PREFIX.PID.START.XXXXXX (own_process_token()), and locks it (flock) while it lives.
  // First removes the leftovers of that prefix there: siblings named for a process
  // that is not running, that are this user's directories (not symbolic links) and
  // that no process holds locked; anything else is left alone, silently.
  // Error: the directory cannot be created.
  static Result<TempDir> create(const std::string& prefix = "kload");
  TempDir(TempDir&&) noexcept;
  TempDir& operator=(TempDir&&) noexcept;
  TempDir(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
  TempDir(std::filesystem::path p, Fd lock);
  void remove() noexcept;
  std::filesystem::path path_;
  Fd lock_;  // an flock on the directory: held while this process lives
};

// Installs SIGINT/SIGTERM/SIGHUP handlers that kill the process group of every
// running child (kill_running_children), remove every live TempDir and exit.
// Idempotent.
void install_cleanup_signal_handlers();

} // namespace kload::util
