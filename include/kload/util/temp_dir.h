#pragma once
// A private temporary directory removed when the owner goes away, and also on
// SIGINT/SIGTERM (the process then exits with 130/143, at once or once cancelled:
// see OnSignal). A SIGKILLed process can
// remove nothing, so each directory is named for the process that owns it and the
// next TempDir::create of the same prefix removes those of processes that ended.

#include "kload/util/error.h"
#include "kload/util/fd.h"

#include <cstddef>
#include <filesystem>
#include <string>
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

// What the first SIGINT, SIGTERM or SIGHUP does.
enum class OnSignal {
  // Kill the process group of every running child (kill_running_children), write
  // the interrupt note (set_interrupt_note), remove every live TempDir and exit
  // 128+signal at once.
  exit,
  // Kill the children and refuse new ones (SystemProcessRunner fails with
  // ErrorKind::interrupted), so that the run winds down by itself and its main thread
  // reports (a JSON document included) and exits 128+signal. A second signal, or a
  // run still going cancel_grace after the first, ends as `exit` does.
  cancel,
};

// How long a cancelled run may take to wind down before it is ended as by
// OnSignal::exit: a step that starts no child (decompressing, hashing) is not
// cut short, so this bounds it.
inline constexpr unsigned cancel_grace_seconds = 5;

// Installs the SIGINT/SIGTERM/SIGHUP handlers (and ignores SIGPIPE). Idempotent;
// OnSignal::cancel, once asked for, stays: a library call that only wants the
// clean-up (the archive reader's) does not undo the command line's choice.
void install_cleanup_signal_handlers(OnSignal on_signal = OnSignal::exit);

// The signal that cancelled the run under OnSignal::cancel; 0 while none has.
// Async-signal-safe.
int cancelled_by() noexcept;

// "SIGINT", "SIGTERM", "SIGHUP", else "signal N".
std::string signal_name(int signal);

// The longest interrupt note, in bytes; a longer one is cut.
inline constexpr std::size_t interrupt_note_max = 1024;

// Sets the bytes the handlers above write to stderr before the process exits,
// replacing those set before; empty: nothing. A terminal display sets what clears it
// and says why the process ended. Thread-safe; the handler reads it without a lock.
void set_interrupt_note(std::string_view note);

} // namespace kload::util
