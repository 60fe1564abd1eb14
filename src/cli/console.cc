#include "kload/cli/console.h"

#include <cstdio>
#include <unistd.h>

namespace kload::cli {

void Console::line(const std::string& text) {
  std::lock_guard lock(mutex_);
  if (status_shown_) {
    std::fputs("\r\033[K", stderr);
    status_shown_ = false;
  }
  std::fputs(text.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

bool Console::interactive() const { return ::isatty(2) != 0; }

void Console::status(const std::string& text) {
  if (!interactive()) {
    return;
  }
  std::lock_guard lock(mutex_);
  std::fputs("\r\033[K", stderr);
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
  status_shown_ = true;
}

} // namespace kload::cli
