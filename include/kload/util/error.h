#pragma once
// Expected failures as values. One top-level handler (cli/main) turns an Error into
// the user's message and the exit code; nothing below it prints or exits.

#include <expected>
#include <string>

namespace kload::util {

// What went wrong, which decides the exit code: input and usage problems exit 2,
// node failures exit 1. Ctrl-C is not an Error: the SIGINT/SIGTERM handler
// (util::install_cleanup_signal_handlers) kills the children, removes the temporary
// directories and exits 128+signal at once, since an Error would only reach the top
// after every node's step in flight had finished.
enum class ErrorKind {
  bad_input, // an archive, a JSON file or a digest is wrong
  usage,     // the command line is wrong
  node,      // a node failed or could not be reached
  io,        // a local file system or process problem
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
