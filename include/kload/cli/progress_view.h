#pragma once
// What the live progress display of a load shows on a terminal: a line per node and a
// total line when the terminal is tall enough, else one summary line. Pure: the
// nodes' state and the terminal's size in, the lines to draw out; Console draws them.

#include "kload/load/loader.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kload::cli {

// How far one node's load has come.
struct NodeProgress {
  std::string node;                         // display name
  load::Phase phase = load::Phase::planning;
  std::optional<load::NodeStatus> outcome;  // set once the node finished, well or not
  std::uint64_t done = 0;                   // layer bytes sent
  std::uint64_t total = 0;                  // layer bytes to send (0: none, or not planned yet)
  double rate = 0;                          // bytes per second while sending; 0: not known yet
  std::optional<double> seconds_left;       // while sending, once the rate is known
};

struct TerminalSize {
  int columns = 80;
  int rows = 24;
};

// Whether `nodes` nodes get a line each (and a total line) on a terminal of `rows`:
// when nodes + 1 <= rows - 2, so that two lines of what was printed before stay in
// view. Otherwise one summary line.
[[nodiscard]] bool line_per_node(std::size_t nodes, int rows);

// The lines to draw for `nodes` on a terminal of `size`, each at most columns - 1
// columns wide (a line that reaches the last column leaves some terminals waiting to
// wrap, and the next clear-line then erases its last character) and made of
// printable ASCII only (other bytes of a name become '?'), so that length is width.
// A line per node: name, phase (or "done", "FAILED"), a bar, bytes sent of the total,
// rate and time left, the columns aligned; then a total line. What does not fit is
// left out: first the bar; then names are cut (ending in "~") down to 20 columns; then
// the rate and the time left go; then names are cut down to 4 columns; then lines are
// cut. One summary line instead when line_per_node says so:
// nodes finished of all, bytes, rate, time left and how many nodes are in each phase,
// the parts that do not fit left out from the end. Empty when `nodes` is.
std::vector<std::string> progress_lines(const std::vector<NodeProgress>& nodes, TerminalSize size);

} // namespace kload::cli
