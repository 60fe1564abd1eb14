#pragma once
// A private temporary directory removed when the owner goes away, and also on
// SIGINT/SIGTERM (the process then exits with 130/143).

#include "kload/util/error.h"

#include <filesystem>

namespace kload::util {

class TempDir {
public:
  // Creates a fresh mode-0700 directory under $TMPDIR (or /tmp) named PREFIX.XXXXXX.
  // Error: the directory cannot be created.
  static Result<TempDir> create(const std::string& prefix = "kload");
  TempDir(TempDir&&) noexcept;
  TempDir& operator=(TempDir&&) noexcept;
  TempDir(const TempDir&) = delete;
  ~TempDir();

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

private:
  explicit TempDir(std::filesystem::path p);
  void remove() noexcept;
  std::filesystem::path path_;
};

// Installs SIGINT/SIGTERM/SIGHUP handlers that kill the process group of every
// running child (kill_running_children), remove every live TempDir and exit.
// Idempotent.
void install_cleanup_signal_handlers();

} // namespace kload::util
