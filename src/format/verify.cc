#include "kload/format/verify.h"

#include "kload/util/parallel.h"
#include "kload/util/sha256.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

Result<void> read_blob(const Blob& blob, const std::function<Result<void>(std::string_view)>& sink) {
  if (blob.where.memory) {
    return sink(*blob.where.memory);
  }
  const int fd = ::open(blob.where.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return util::fail(ErrorKind::io, fmt::format("{}: {}: cannot open {}: {}", blob.where.source, blob.where.entry,
                                                 blob.where.file.string(), std::strerror(errno)));
  }
  ::posix_fadvise(fd, static_cast<off_t>(blob.where.offset), static_cast<off_t>(blob.size), POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(std::min<std::uint64_t>(1 << 20, std::max<std::uint64_t>(blob.size, 1)));
  std::uint64_t done = 0;
  Result<void> status{};
  while (done < blob.size) {
    const auto want = std::min<std::uint64_t>(buf.size(), blob.size - done);
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(blob.where.offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      status = util::fail(ErrorKind::io, fmt::format("{}: {}: short read at byte {} of {}", blob.where.source,
                                                     blob.where.entry, done, blob.size));
      break;
    }
    done += static_cast<std::uint64_t>(n);
    if (auto r = sink(std::string_view(buf.data(), static_cast<std::size_t>(n))); !r) {
      status = r;
      break;
    }
  }
  ::close(fd);
  return status;
}

Result<VerifyStats> verify_blobs(ImageSet& set, const std::vector<Digest>& which, unsigned jobs) {
  std::vector<Blob*> todo;
  for (const auto& d : which) {
    auto it = set.blobs.find(d);
    if (it != set.blobs.end() && !it->second.computed &&
        std::find(todo.begin(), todo.end(), &it->second) == todo.end()) {
      todo.push_back(&it->second);
    }
  }
  // Largest first, so one big layer does not start last and stretch the phase.
  std::sort(todo.begin(), todo.end(), [](const Blob* a, const Blob* b) { return a->size > b->size; });
  std::vector<std::optional<std::string>> errors(todo.size());
  util::parallel_for(todo.size(), jobs, [&](std::size_t i) {
    util::Sha256 h;
    auto r = read_blob(*todo[i], [&](std::string_view chunk) -> Result<void> {
      h.update(chunk);
      return {};
    });
    if (!r) {
      errors[i] = r.error().message;
      return;
    }
    todo[i]->computed = h.finish();
  });
  VerifyStats stats;
  std::string report;
  auto add = [&report](const std::string& line) {
    if (!report.empty()) {
      report += '\n';
    }
    report += line;
  };
  for (std::size_t i = 0; i < todo.size(); ++i) {
    const Blob& b = *todo[i];
    if (errors[i]) {
      add(*errors[i]);
      continue;
    }
    ++stats.blobs_hashed;
    stats.bytes_hashed += b.size;
  }
  // Mismatches include blobs hashed while streaming, so report from the whole list.
  for (const auto& d : which) {
    const Blob* b = set.find(d);
    if (b != nullptr && b->computed && *b->computed != b->digest) {
      add(fmt::format("{}: {}: content is {}, expected {}", b->where.source, b->where.entry,
                            b->computed->str(), b->digest.str()));
    }
  }
  if (!report.empty()) {
    return util::fail(ErrorKind::bad_input, report);
  }
  return stats;
}

} // namespace kload::format
