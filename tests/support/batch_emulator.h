#pragma once
// Runs a node batch script (kload/node/batch.h) without a shell, for fakes: decodes
// its steps and answers each one through a callback, framing the answers exactly as
// the script would, stopping where the script would stop.

#include "kload/util/process.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kload::testing {

struct EmulatedStep {
  std::vector<std::string> words;
  bool reads_stdin = false;
  bool stop_on_failure = true;
};

// One word as util::shell_quote wrote it, from `text` at `pos` (advanced past it).
inline std::string shell_word(std::string_view text, std::size_t& pos) {
  std::string word;
  while (pos < text.size() && text[pos] != ' ' && text[pos] != '\n') {
    if (text[pos] == '\'') {
      const auto close = text.find('\'', pos + 1);
      word += text.substr(pos + 1, close - pos - 1);
      pos = close == std::string_view::npos ? text.size() : close + 1;
    } else if (text[pos] == '\\' && pos + 1 < text.size()) {
      word += text[pos + 1];
      pos += 2;
    } else {
      word += text[pos++];
    }
  }
  return word;
}

// The marker and steps of `script`; nullopt when it is no batch script.
inline std::optional<std::pair<std::string, std::vector<EmulatedStep>>> decode_batch(std::string_view script) {
  if (!script.starts_with("k=")) {
    return std::nullopt;
  }
  std::size_t pos = 2;
  std::string marker = shell_word(script, pos);
  std::vector<EmulatedStep> steps;
  while ((pos = script.find("\nb; ", pos)) != std::string_view::npos) {
    pos += 4;
    const auto eol = script.find('\n', pos);
    const auto line = script.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    EmulatedStep step;
    std::size_t at = 0;
    while (at < line.size() && !line.substr(at).starts_with("</dev/null; e") && !line.substr(at).starts_with("; e")) {
      step.words.push_back(shell_word(line, at));
      while (at < line.size() && line[at] == ' ') {
        ++at;
      }
    }
    step.reads_stdin = !line.substr(at).starts_with("</dev/null");
    step.stop_on_failure = !line.ends_with(" on");
    steps.push_back(std::move(step));
  }
  return std::make_pair(std::move(marker), std::move(steps));
}

// What `sh -c script` would print, each step answered by `answer`.
inline util::ProcessResult emulate_batch(
    const std::string& marker, const std::vector<EmulatedStep>& steps,
    const std::function<util::ProcessResult(const EmulatedStep&)>& answer) {
  util::ProcessResult whole;
  whole.exit_code = 0;
  for (const auto& step : steps) {
    const auto r = answer(step);
    const auto status = r.exit_code < 0 ? 128 + r.signal : r.exit_code;
    whole.out += marker + " begin\n" + r.out + "\n" + marker + " end " + std::to_string(status) + "\n";
    whole.err += marker + " begin\n" + r.err + "\n" + marker + " end " + std::to_string(status) + "\n";
    if (status != 0 && step.stop_on_failure) {
      break;
    }
  }
  return whole;
}

} // namespace kload::testing
