#include "kload/cli/console.h"

#include "kload/util/temp_dir.h"

#include <fmt/format.h>

#include <cstdio>
#include <sys/ioctl.h>
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

constexpr std::string_view interrupted = "kload: interrupted\n";

void put(const std::string& bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stderr);
  std::fflush(stderr);
}

} // namespace

Console::Console() : terminal_(::isatty(STDERR_FILENO) != 0) {
  const std::lock_guard lock(mutex_);
  set_note();
}

Console::~Console() {
  show({});
  util::set_interrupt_note({});
}

void Console::set_verbosity(Verbosity verbosity) {
  const std::lock_guard lock(mutex_);
  verbosity_ = verbosity;
}

void Console::line(const std::string& text) {
  if (verbosity_ == Verbosity::quiet) {
    return;
  }
  const std::lock_guard lock(mutex_);
  print(text);
}

void Console::error(const std::string& text) {
  const std::lock_guard lock(mutex_);
  print(text);
}

void Console::print(const std::string& text) {
  put(erase_block() + visible(text) + "\n" + draw_block());
}

std::optional<TerminalSize> Console::terminal_size() const {
  struct winsize ws{};
  if (!terminal_ || ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) {
    return std::nullopt;
  }
  return TerminalSize{ws.ws_col, ws.ws_row};
}

void Console::show(const std::vector<std::string>& lines) {
  if (!terminal_ || verbosity_ == Verbosity::quiet) {
    return;
  }
  const std::lock_guard lock(mutex_);
  if (lines.empty() && block_.empty()) {
    return;
  }
  std::string out = erase_block();
  block_ = lines;
  put(out + draw_block());
  set_note();
}

std::string Console::erase_block() const {
  if (block_.empty()) {
    return {};
  }
  return (block_.size() > 1 ? fmt::format("\033[{}A", block_.size() - 1) : "") + "\r\033[J";
}

std::string Console::draw_block() const {
  std::string out;
  for (std::size_t i = 0; i < block_.size(); ++i) {
    out += (i > 0 ? "\n" : "") + visible(block_[i]) + "\033[K";
  }
  return out;
}

void Console::set_note() const {
  util::set_interrupt_note(erase_block() + std::string(interrupted));
}

std::string json_text(const nlohmann::json& doc) {
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace kload::cli
