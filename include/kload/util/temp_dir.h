#pragma once
// A private temporary directory removed when the owner goes away, and also on
// SIGINT/SIGTERM (the process then exits with 130/143). A SIGKILLed process can
// remove nothing, so each directory is named for the process that owns it and the
// next TempDir::create of the same prefix removes those of processes that ended.

#include "kload/util/error.h"
#include "kload/util/fd.h"

#include <cstddef>
#include <filesystem>
#include <string_view>

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
// running child (kill_running_children), write the interrupt note (if any) to stderr,
// remove every live TempDir and exit with 128 + the signal's number. Idempotent.
void install_cleanup_signal_handlers();

// The longest interrupt note, in bytes; a longer one is cut.
inline constexpr std::size_t interrupt_note_max = 1024;

// Sets the bytes the handlers above write to stderr before the process exits,
// replacing those set before; empty: nothing. A terminal display sets what clears it
// and says why the process ended. Thread-safe; the handler reads it without a lock.
void set_interrupt_note(std::string_view note);

} // namespace kload::util
