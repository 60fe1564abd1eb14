#pragma once
// The command line: sub-commands, their options and the one place that turns an
// Error into a message and an exit code.

#include "kload/util/error.h"

namespace kload::cli {

// Exit codes: 0 success, 1 some node failed, 2 bad input or usage, 3 a local failure
// on this machine (temporary space, the cache, a local file), 128+signal interrupted
// (130 SIGINT, 143 SIGTERM).
inline constexpr int exit_ok = 0;
inline constexpr int exit_node_failure = 1;
inline constexpr int exit_bad_input = 2;
inline constexpr int exit_local_failure = 3;

// The exit code of a run that ended with `error`.
int exit_code_for(const util::Error& error);

// Runs kload with the process's arguments and returns the exit code. Never throws.
int run(int argc, char** argv);

} // namespace kload::cli
