#include "kload/util/fd.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace kload::util {

void Fd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) {
    // Not retried on EINTR: on Linux the descriptor is released even then, and a
    // retry could close one another thread has just been given.
    ::close(fd_);
  }
  fd_ = fd;
}

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(ErrorKind::io, std::string("pipe: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

Result<Fd> open_fd(const char* path, int flags, unsigned mode) {
  const int fd = ::open(path, flags | O_CLOEXEC, mode);
  if (fd < 0) {
    const int saved = errno;
    auto error = fail(ErrorKind::io, std::string("cannot open ") + path + ": " + std::strerror(saved));
    errno = saved;
    return error;
  }
  return Fd(fd);
}

} // namespace kload::util
