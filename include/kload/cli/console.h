#pragma once
// One serialized output stream for people (stderr) so that lines from parallel work
// never interleave, and stdout kept for machine-readable output. On a terminal it
// also keeps a block of live lines (a load's progress) at the bottom, redrawn in
// place; lines printed meanwhile go above it.

#include "kload/cli/progress_view.h"

#include <nlohmann/json.hpp>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace kload::cli {

// How much a command says on stderr: errors only (--quiet), the usual lines, or those
// and every command run on a node (-v).
enum class Verbosity { quiet, normal, verbose };

class Console {
public:
  // A console for stderr, which is taken to be a terminal when isatty says so. Sets
  // what an interrupt (SIGINT, SIGTERM) prints: "kload: interrupted" (see
  // util::set_interrupt_note), after clearing the live block when one is drawn.
  Console();
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  void set_verbosity(Verbosity verbosity);
  [[nodiscard]] Verbosity verbosity() const { return verbosity_; }

  // Prints one line to stderr, whole, control characters shown as \xNN; nothing when
  // quiet.
  void line(const std::string& text);
  // Prints "warning: TEXT", as line().
  void warn(const std::string& text) { line("warning: " + text); }
  // Prints one line as line() does, also when quiet: errors and failed nodes.
  void error(const std::string& text);
  // True when stderr is a terminal.
  [[nodiscard]] bool interactive() const { return terminal_; }
  // The terminal's size (TIOCGWINSZ on stderr), asked anew each time since it may be
  // resized; nullopt when stderr is no terminal or does not say.
  [[nodiscard]] std::optional<TerminalSize> terminal_size() const;
  // Replaces the live block with `lines` (each must fit the terminal's width, as
  // progress_lines makes them; control characters are shown as \xNN); empty clears
  // it. The block is redrawn in place: the cursor goes back to its first line
  // ("\r", "ESC[nA"), each line is rewritten and cleared to its end ("ESC[K") and what
  // is below is cleared ("ESC[J"), so nothing stale stays. Nothing unless stderr is a
  // terminal and the console not quiet.
  void show(const std::vector<std::string>& lines);

private:
  void print(const std::string& text);     // with mutex_ held
  std::string erase_block() const;         // with mutex_ held: moves to the block's first line and clears down
  std::string draw_block() const;          // with mutex_ held: the block from the cursor's line on
  void set_note() const;                   // with mutex_ held: what an interrupt prints now

  std::mutex mutex_;
  Verbosity verbosity_ = Verbosity::normal;
  bool terminal_ = false;
  std::vector<std::string> block_;  // drawn; the cursor at the end of its last line
};

// A JSON document as text for stdout. File and image names may hold any byte: bytes
// that are not UTF-8 become U+FFFD instead of aborting the output.
std::string json_text(const nlohmann::json& doc);

} // namespace kload::cli
