#include "kload/cli/console.h"

#include <cstdio>
#include <unistd.h>

namespace kload::cli {

namespace {

// Text on stderr may carry names from the input (archive entries, tags, node output):
// control characters are shown as \xNN so that none can move the cursor, recolour or
// retitle the terminal, or break one message into several lines.
std::string visible(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace

void Console::line(const std::string& text) {
  std::lock_guard lock(mutex_);
  if (status_shown_) {
    std::fputs("\r\033[K", stderr);
    status_shown_ = false;
  }
  std::fputs(visible(text).c_str(), stderr);
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
  std::fputs(visible(text).c_str(), stderr);
  std::fflush(stderr);
  status_shown_ = true;
}

std::string json_text(const nlohmann::json& doc) {
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace kload::cli
