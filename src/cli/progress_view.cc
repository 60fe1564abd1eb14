#include "kload/cli/progress_view.h"

#include "kload/util/human.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace kload::cli {

namespace {

// Names may hold any byte: only printable ASCII is drawn, so that a line's length is
// its width on the terminal.
std::string ascii(const std::string& text) {
  std::string out = text;
  for (auto& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) {
      c = '?';
    }
  }
  return out;
}

// `text` in at most `width` columns: cut, ending in '~', when longer.
std::string fitted(const std::string& text, std::size_t width) {
  if (text.size() <= width) {
    return text;
  }
  return width == 0 ? std::string() : text.substr(0, width - 1) + "~";
}

// Whole seconds, or minutes and seconds: "7s", "2m05s", "1h03m".
std::string time_left(double seconds) {
  const auto s = static_cast<long>(std::ceil(std::max(seconds, 0.0)));
  if (s < 60) {
    return fmt::format("{}s left", s);
  }
  if (s < 3600) {
    return fmt::format("{}m{:02}s left", s / 60, s % 60);
  }
  return fmt::format("{}h{:02}m left", s / 3600, s % 3600 / 60);
}

std::string rate_text(double rate) {
  return rate > 0 ? util::human_bytes(static_cast<std::uint64_t>(rate)) + "/s" : std::string();
}

std::string bytes_text(std::uint64_t done, std::uint64_t total) {
  return total > 0 ? util::human_bytes(done) + "/" + util::human_bytes(total) : std::string();
}

std::string state_word(const NodeProgress& n) {
  if (n.outcome) {
    return *n.outcome == load::NodeStatus::ok ? "done" : "FAILED";
  }
  return std::string(load::phase_name(n.phase));
}

// One line of the per-node view, as cells.
struct Row {
  std::string name;
  std::string state;
  std::optional<double> fraction;  // of the bar; none: no bar on this line
  std::string bytes;
  std::string rate;
  std::string left;
};

Row node_row(const NodeProgress& n) {
  std::optional<double> fraction;
  if (n.total > 0) {
    fraction = std::min(1.0, static_cast<double>(n.done) / static_cast<double>(n.total));
  } else if (n.outcome == load::NodeStatus::ok) {
    fraction = 1.0;
  }
  const bool sending = !n.outcome && n.phase == load::Phase::sending;
  return Row{ascii(n.node), state_word(n), fraction, bytes_text(n.done, n.total),
             sending ? rate_text(n.rate) : "", sending && n.seconds_left ? time_left(*n.seconds_left) : ""};
}

// The total line: every node's bytes, the rates of those sending, the longest time left.
Row total_row(const std::vector<NodeProgress>& nodes) {
  std::uint64_t done = 0;
  std::uint64_t total = 0;
  double rate = 0;
  std::optional<double> left;
  std::size_t finished = 0;
  for (const auto& n : nodes) {
    done += n.done;
    total += n.total;
    finished += n.outcome ? 1 : 0;
    if (!n.outcome && n.phase == load::Phase::sending) {
      rate += n.rate;
      if (n.seconds_left) {
        left = std::max(left.value_or(0), *n.seconds_left);
      }
    }
  }
  std::optional<double> fraction;
  if (total > 0) {
    fraction = static_cast<double>(done) / static_cast<double>(total);
  }
  return Row{"total", fmt::format("{}/{} done", finished, nodes.size()), fraction, bytes_text(done, total),
             rate_text(rate), left ? time_left(*left) : ""};
}

std::string bar(std::optional<double> fraction, std::size_t width) {
  if (!fraction) {
    return std::string(width, ' ');
  }
  const std::size_t inner = width - 2;
  const auto filled = std::min(inner, static_cast<std::size_t>(*fraction * static_cast<double>(inner)));
  return "[" + std::string(filled, '#') + std::string(inner - filled, '-') + "]";
}

// The width of each column of `rows`; 0 for a column that is empty on every row.
struct Widths {
  std::size_t name = 0, state = 0, bar = 0, bytes = 0, rate = 0, left = 0;

  [[nodiscard]] std::size_t line() const {
    std::size_t w = name + 2 + state;
    for (const auto c : {bar, bytes, rate, left}) {
      w += c > 0 ? 2 + c : 0;
    }
    return w;
  }
};

// Column widths for `rows` in `avail` columns, leaving out what does not fit in the
// order progress_lines gives.
Widths fit_columns(const std::vector<Row>& rows, std::size_t avail) {
  Widths w;
  bool any_bar = false;
  for (const auto& r : rows) {
    w.name = std::max(w.name, r.name.size());
    w.state = std::max(w.state, r.state.size());
    w.bytes = std::max(w.bytes, r.bytes.size());
    w.rate = std::max(w.rate, r.rate.size());
    w.left = std::max(w.left, r.left.size());
    any_bar = any_bar || r.fraction.has_value();
  }
  constexpr std::size_t bar_min = 12;
  constexpr std::size_t bar_max = 32;
  const std::size_t rest = w.line();
  if (any_bar && rest + 2 + bar_min <= avail) {
    w.bar = std::min(bar_max, avail - rest - 2);
  }
  // Names give way down to a width still telling them apart, then rate and time left
  // go, then names give way down to a few letters.
  const auto cut_names = [&](std::size_t floor) {
    if (w.line() > avail && w.name > floor) {
      w.name = std::max(floor, w.name - std::min(w.name, w.line() - avail));
    }
  };
  cut_names(std::min<std::size_t>(w.name, 20));
  for (auto* optional : {&w.rate, &w.left}) {
    if (w.line() > avail) {
      *optional = 0;
    }
  }
  cut_names(4);
  return w;
}

std::string row_line(const Row& r, const Widths& w, std::size_t avail) {
  std::string line = fmt::format("{:<{}}  {:<{}}", fitted(r.name, w.name), w.name, r.state, w.state);
  if (w.bar > 0) {
    line += "  " + bar(r.fraction, w.bar);
  }
  if (w.bytes > 0) {
    line += fmt::format("  {:>{}}", r.bytes, w.bytes);
  }
  if (w.rate > 0) {
    line += fmt::format("  {:>{}}", r.rate, w.rate);
  }
  if (w.left > 0) {
    line += fmt::format("  {:<{}}", r.left, w.left);
  }
  while (!line.empty() && line.back() == ' ') {
    line.pop_back();
  }
  return line.substr(0, avail);
}

// The one summary line: parts joined, those that do not fit left out from the end.
std::string summary_line(const std::vector<NodeProgress>& nodes, std::size_t avail) {
  const Row total = total_row(nodes);
  const auto finished =
      std::count_if(nodes.begin(), nodes.end(), [](const NodeProgress& n) { return n.outcome.has_value(); });
  std::vector<std::string> parts{fmt::format("{}/{} nodes done", finished, nodes.size())};
  for (const auto* part : {&total.bytes, &total.rate, &total.left}) {
    if (!part->empty()) {
      parts.push_back(*part);
    }
  }
  constexpr std::array phases{load::Phase::planning, load::Phase::sending, load::Phase::committing,
                              load::Phase::confirming};
  for (const auto phase : phases) {
    const auto count = std::count_if(nodes.begin(), nodes.end(),
                                     [&](const NodeProgress& n) { return !n.outcome && n.phase == phase; });
    if (count > 0) {
      parts.push_back(fmt::format("{} {}", count, load::phase_name(phase)));
    }
  }
  const auto failed = std::count_if(nodes.begin(), nodes.end(),
                                    [](const NodeProgress& n) { return n.outcome == load::NodeStatus::failed; });
  if (failed > 0) {
    parts.push_back(fmt::format("{} FAILED", failed));
  }
  std::string line = parts.front().substr(0, avail);
  for (std::size_t i = 1; i < parts.size() && line.size() + 2 + parts[i].size() <= avail; ++i) {
    line += "  " + parts[i];
  }
  return line;
}

} // namespace

bool line_per_node(std::size_t nodes, int rows) {
  return rows >= 3 && nodes + 1 <= static_cast<std::size_t>(rows - 2);
}

std::vector<std::string> progress_lines(const std::vector<NodeProgress>& nodes, TerminalSize size) {
  if (nodes.empty() || size.columns < 2) {
    return {};
  }
  const auto avail = static_cast<std::size_t>(size.columns - 1);
  if (!line_per_node(nodes.size(), size.rows)) {
    return {summary_line(nodes, avail)};
  }
  std::vector<Row> rows;
  for (const auto& n : nodes) {
    rows.push_back(node_row(n));
  }
  rows.push_back(total_row(nodes));
  const Widths w = fit_columns(rows, avail);
  std::vector<std::string> lines;
  for (const auto& r : rows) {
    lines.push_back(row_line(r, w, avail));
  }
  return lines;
}

} // namespace kload::cli
