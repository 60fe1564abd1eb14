#pragma once
// The command line: sub-commands, their options and the one place that turns an
// Error into a message and an exit code.

namespace kload::cli {

// Exit codes: 0 success, 1 some node failed, 2 bad input or usage, 130 interrupted.
inline constexpr int exit_ok = 0;
inline constexpr int exit_node_failure = 1;
inline constexpr int exit_bad_input = 2;

// Runs kload with the process's arguments and returns the exit code. Never throws.
int run(int argc, char** argv);

} // namespace kload::cli
