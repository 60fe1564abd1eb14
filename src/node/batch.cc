#include "kload/node/batch.h"

#include <fmt/format.h>

#include <charconv>
#include <random>
#include <span>

namespace kload::node {

namespace {

// One stream of the script's output cut into its steps' sections. Each step prints
// "MARKER begin\n", its own output, then "\nMARKER end STATUS\n" (the newline before
// "end" is the script's, so a section is exactly the step's bytes).
struct Section {
  std::string text;
  std::optional<int> status;  // absent: the step never reached its end line
};

std::vector<Section> sections_of(std::string_view stream, std::string_view marker) {
  const std::string begin = fmt::format("{} begin\n", marker);
  const std::string end = fmt::format("\n{} end ", marker);
  std::vector<Section> out;
  // A login shell may print something of its own first (a profile's echo).
  std::size_t pos = stream.find(begin);
  while (pos != 0 && pos != std::string_view::npos && stream[pos - 1] != '\n') {
    pos = stream.find(begin, pos + 1);
  }
  if (pos == std::string_view::npos) {
    return out;
  }
  while (stream.substr(pos).starts_with(begin)) {
    pos += begin.size();
    const auto stop = stream.find(end, pos);
    if (stop == std::string_view::npos) {
      out.push_back(Section{std::string(stream.substr(pos)), std::nullopt});
      break;
    }
    Section s{std::string(stream.substr(pos, stop - pos)), std::nullopt};
    const auto digits = stop + end.size();
    const auto nl = stream.find('\n', digits);
    int status = 0;
    const auto text = stream.substr(digits, nl == std::string_view::npos ? std::string_view::npos : nl - digits);
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), status);
    if (ec == std::errc{} && ptr == text.data() + text.size() && nl != std::string_view::npos) {
      s.status = status;
    }
    out.push_back(std::move(s));
    if (!out.back().status) {
      break;
    }
    pos = nl + 1;
  }
  return out;
}

bool runs_concurrently(const BatchStep& step) {
  return step.concurrent && !step.reads_stdin && !step.stop_on_failure;
}

std::string command_of(const BatchStep& step) {
  std::string words;
  for (const auto& word : step.words) {
    words += util::shell_quote(word) + " ";
  }
  return words;
}

// "b; WORDS </dev/null; e on": the step between its begin and end lines.
std::string in_order(const BatchStep& step) {
  std::string line = "b; " + command_of(step);
  line += step.reads_stdin ? "; e" : "</dev/null; e";
  line += step.stop_on_failure ? "\n" : " on\n";
  return line;
}

// Steps started together, each writing its stdout, stderr and status into $d, then
// framed in order by `c` once all have ended; one by one where `mktemp -d` fails.
std::string together(std::span<const BatchStep> group) {
  std::string script = "if d=$(mktemp -d 2>/dev/null); then\n";
  for (std::size_t i = 0; i < group.size(); ++i) {
    script += fmt::format("({}</dev/null >\"$d/{}\" 2>\"$d/{}e\"; echo $? >\"$d/{}s\") &\n", command_of(group[i]), i,
                          i, i);
  }
  script += "wait\n";
  for (std::size_t i = 0; i < group.size(); ++i) {
    script += fmt::format("c {}; e on\n", i);
  }
  script += "rm -rf \"$d\"\nelse\n";
  for (const auto& step : group) {
    script += in_order(step);
  }
  return script + "fi\n";
}

} // namespace

std::string batch_marker() {
  std::random_device rd;
  std::string hex;
  for (int i = 0; i < 4; ++i) {
    hex += fmt::format("{:08x}", rd());
  }
  return "kload-batch-" + hex;
}

std::string batch_script(std::string_view marker, const std::vector<BatchStep>& steps) {
  // b: the begin line on both streams. e: the end line with the step's status (the
  // `$?` of the command just before it); a failed step ends the script (which still
  // exits 0: the status travels in the end line) unless `e on` follows it. c: a
  // concurrent step's begin line, what it wrote, and its status as c's own.
  std::string script = fmt::format(
      "k={}\n"
      "b() {{ printf '%s begin\\n' \"$k\"; printf '%s begin\\n' \"$k\" >&2; }}\n"
      "e() {{ r=$?; printf '\\n%s end %s\\n' \"$k\" \"$r\"; printf '\\n%s end %s\\n' \"$k\" \"$r\" >&2; "
      "[ \"$r\" = 0 ] || [ \"$1\" = on ] || exit 0; }}\n"
      "c() {{ b && cat \"$d/$1\"; cat \"$d/$1e\" >&2; return \"$(cat \"$d/$1s\" 2>/dev/null || echo 255)\"; }}\n",
      util::shell_quote(std::string(marker)));
  for (std::size_t i = 0; i < steps.size();) {
    std::size_t end = i;
    while (end < steps.size() && runs_concurrently(steps[end])) {
      ++end;
    }
    if (end - i >= 2) {
      script += together(std::span(steps).subspan(i, end - i));
      i = end;
    } else {
      script += in_order(steps[i]);
      ++i;
    }
  }
  return script;
}

std::optional<std::vector<util::ProcessResult>> split_batch(std::string_view marker, const std::vector<BatchStep>& steps,
                                                            const util::ProcessResult& whole) {
  const auto outs = sections_of(whole.out, marker);
  const auto errs = sections_of(whole.err, marker);
  if (outs.empty()) {
    return std::nullopt;
  }
  std::vector<util::ProcessResult> results;
  for (std::size_t i = 0; i < outs.size() && i < steps.size(); ++i) {
    util::ProcessResult r;
    r.out = outs[i].text;
    r.err = i < errs.size() ? errs[i].text : std::string();
    if (outs[i].status) {
      r.exit_code = *outs[i].status;
    } else {
      // Cut off: what ended the whole run ended this step.
      r.exit_code = whole.exit_code == 0 ? -1 : whole.exit_code;
      r.signal = whole.signal;
      r.timed_out = whole.timed_out;
    }
    if (steps[i].reads_stdin) {
      r.feed_error = whole.feed_error;
    }
    results.push_back(std::move(r));
  }
  const auto& last = results.back();
  const bool stopped = last.exit_code != 0 && steps[results.size() - 1].stop_on_failure;
  const bool cut = !outs[results.size() - 1].status;
  if (results.size() < steps.size() && !stopped && !cut) {
    // Ended between two steps: the next one is the one cut off.
    util::ProcessResult r;
    r.exit_code = whole.exit_code == 0 ? -1 : whole.exit_code;
    r.signal = whole.signal;
    r.timed_out = whole.timed_out;
    r.err = "the node's shell ended before this step";
    results.push_back(std::move(r));
  }
  return results;
}

} // namespace kload::node
