#pragma once
// One owner for raw file descriptors: closed exactly once, on every path.

#include "kload/util/error.h"

#include <utility>

namespace kload::util {

// A move-only owner of one file descriptor (or of none: -1). The destructor closes
// it; close errors are ignored, since by then nothing can be done about them and
// every descriptor kload writes through is checked by its writer.
class Fd {
public:
  Fd() = default;
  // Takes ownership of `fd` (a negative value owns nothing).
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset(other.release());
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  // The descriptor, still owned; -1 when none.
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; returns the descriptor (-1 when none).
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }
  // Closes the owned descriptor, if any, and takes `fd` instead.
  void reset(int fd = -1);

private:
  int fd_ = -1;
};

// Both ends of a pipe, close-on-exec.
struct Pipe {
  Fd read;
  Fd write;
};

// Creates a pipe whose ends are close-on-exec. Error (io): pipe2 failed.
Result<Pipe> make_pipe();

// Opens `path` with `flags` (O_CLOEXEC added) and `mode`. Error (io), naming the path
// and the reason; errno is kept for callers that tell ENOENT apart.
Result<Fd> open_fd(const char* path, int flags, unsigned mode = 0);

} // namespace kload::util
