#pragma once
// Expected failures as values. One top-level handler (cli/main) turns an Error into
// the user's message and the exit code; nothing below it prints or exits.

#include <expected>
#include <string>

namespace kload::util {

// What went wrong, which decides the exit code (cli/app.h): node failures exit 1,
// input and usage problems 2, local I/O failures 3, an interrupt 128+signal. Under
// the CLI's OnSignal::cancel (util/temp_dir.h) SIGINT/SIGTERM kill the children and
// refuse new ones, so what was running fails with `interrupted` and the run ends
// through the one top-level handler like any other failure.
enum class ErrorKind {
  bad_input,   // an archive, a JSON file or a digest is wrong
  usage,       // the command line is wrong
  node,        // a node failed or could not be reached
  io,          // a local file system or process problem: temporary space, the cache, a local file
  interrupted, // SIGINT, SIGTERM or SIGHUP cancelled the run
};

struct Error {
  ErrorKind kind = ErrorKind::io;
  std::string message; // one line, names the file, entry or node concerned

  // Returns a copy whose message is "PREFIX: message".
  [[nodiscard]] Error with_context(const std::string& prefix) const {
    return Error{kind, prefix + ": " + message};
  }
};

template <typename T> using Result = std::expected<T, Error>;

// Shorthand to build an unexpected Error.
inline std::unexpected<Error> fail(ErrorKind kind, std::string message) {
  return std::unexpected(Error{kind, std::move(message)});
}

} // namespace kload::util
