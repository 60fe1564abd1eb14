#pragma once
// Helpers of the format tests: reading an archive through a pipe on standard input,
// as `... | kload inspect -` would, to compare with reading the file; every blob of a
// set, to verify.

#include "kload/format/archive_reader.h"
#include "support/test_support.h"

#include <fcntl.h>
#include <filesystem>
#include <thread>
#include <unistd.h>
#include <vector>

namespace kload::format {

// Reads `file` with read_archive("-"), fed by a thread through a pipe on fd 0.
inline util::Result<ReadStats> read_via_stdin(const std::filesystem::path& file, ImageSet& set,
                                              const ReadLimits& limits = {}) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return util::fail(util::ErrorKind::io, "pipe");
  }
  const int saved = ::dup(0);
  ::dup2(fds[0], 0);
  ::close(fds[0]);
  std::thread writer([fd = fds[1], data = kload::testing::read_file(file)] {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
      if (n <= 0) {
        break; // the reader gave up early: EPIPE
      }
      off += static_cast<std::size_t>(n);
    }
    ::close(fd);
  });
  auto r = read_archive("-", set, limits);
  ::dup2(saved, 0); // closes our read end, so a stalled writer sees EPIPE
  ::close(saved);
  writer.join();
  return r;
}

// Every blob of every image in `set`, for verify_blobs.
inline std::vector<util::Digest> all_blobs(const ImageSet& set) {
  std::vector<util::Digest> out;
  for (const auto& image : set.images) {
    for (const auto& d : ImageSet::blobs_of(image)) {
      out.push_back(d);
    }
  }
  return out;
}

} // namespace kload::format
