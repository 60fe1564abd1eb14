#pragma once
// One serialized output stream for people (stderr) so that lines from parallel work
// never interleave, and stdout kept for machine-readable output.

#include <nlohmann/json.hpp>

#include <mutex>
#include <string>

namespace kload::cli {

class Console {
public:
  // Prints one line to stderr, whole, control characters shown as \xNN.
  void line(const std::string& text);
  // Prints "warning: TEXT".
  void warn(const std::string& text) { line("warning: " + text); }
  // True when stderr is a terminal (progress bars instead of plain lines).
  [[nodiscard]] bool interactive() const;
  // Rewrites the current status line in place (terminals only).
  void status(const std::string& text);

private:
  std::mutex mutex_;
  bool status_shown_ = false;
};

// A JSON document as text for stdout. File and image names may hold any byte: bytes
// that are not UTF-8 become U+FFFD instead of aborting the output.
std::string json_text(const nlohmann::json& doc);

} // namespace kload::cli
