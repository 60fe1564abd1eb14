#include "kload/format/verify.h"
#include "libarchive_error.h"

#include "kload/util/fd.h"
#include "kload/util/parallel.h"
#include "kload/util/sha256.h"
#include "kload/util/temp_dir.h"

#include <archive.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <unordered_set>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

Result<void> read_blob(const Blob& blob, const std::function<Result<void>(std::string_view)>& sink) {
  if (blob.where.memory) {
    return sink(*blob.where.memory);
  }
  const util::Fd owned(::open(blob.where.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!owned) {
    return util::fail(ErrorKind::io, fmt::format("{}: {}: cannot open {}: {}", blob.where.source, blob.where.entry,
                                                 blob.where.file.string(), std::strerror(errno)));
  }
  const int fd = owned.get();
  ::posix_fadvise(fd, static_cast<off_t>(blob.where.offset), static_cast<off_t>(blob.size), POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(std::min<std::uint64_t>(1 << 20, std::max<std::uint64_t>(blob.size, 1)));
  std::uint64_t done = 0;
  Result<void> status{};
  while (done < blob.size) {
    if (const int sig = util::cancelled_by(); sig != 0) {  // a cancelled run hashes and sends no further
      return util::fail(ErrorKind::interrupted, "interrupted by " + util::signal_name(sig));
    }
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
  return status;
}

namespace {

// Streams a blob through libarchive's decompressors (raw format: no tar parsing) and
// returns the digest of the decompressed bytes and their count.
Result<std::pair<Digest, std::uint64_t>> uncompressed_digest(const Blob& blob) {
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  // The compressed bytes are read in place, 1 MiB at a time, never all in memory.
  struct Source {
    const Blob* blob;
    util::Fd fd;  // the file, when the blob is not in memory
    std::uint64_t done = 0;
    std::vector<char> buf = std::vector<char>(1 << 20);
  } src{&blob, {}};
  if (!blob.where.memory) {
    src.fd.reset(::open(blob.where.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!src.fd) {
      return util::fail(ErrorKind::io, fmt::format("{}: {}: cannot open: {}", blob.where.source, blob.where.entry,
                                                   std::strerror(errno)));
    }
  }
  auto read_cb = [](struct archive*, void* data, const void** out) -> la_ssize_t {
    auto* s = static_cast<Source*>(data);
    const auto left = s->blob->size - s->done;
    if (left == 0) {
      return 0;
    }
    if (s->blob->where.memory) {
      *out = s->blob->where.memory->data() + s->done;
      s->done = s->blob->size;
      return static_cast<la_ssize_t>(left);
    }
    const auto want = std::min<std::uint64_t>(left, s->buf.size());
    const ssize_t n = ::pread(s->fd.get(), s->buf.data(), want, static_cast<off_t>(s->blob->where.offset + s->done));
    if (n <= 0) {
      return n == 0 ? 0 : -1;
    }
    s->done += static_cast<std::uint64_t>(n);
    *out = s->buf.data();
    return n;
  };
  if (archive_read_open(a.get(), &src, nullptr, read_cb, nullptr) != ARCHIVE_OK) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: {}: cannot decompress: {}", blob.where.source,
                                                        blob.where.entry, archive_why(a.get())));
  }
  struct archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: {}: cannot decompress layer", blob.where.source, blob.where.entry));
  }
  util::Sha256 h;
  std::uint64_t total = 0;
  std::vector<char> buf(1 << 20);
  while (true) {
    const la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n < 0) {
      return util::fail(ErrorKind::bad_input, fmt::format("{}: {}: corrupt compressed layer: {}", blob.where.source,
                                                          blob.where.entry, archive_why(a.get())));
    }
    if (n == 0) {
      break;
    }
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    total += static_cast<std::uint64_t>(n);
  }
  return std::make_pair(h.finish(), total);
}

} // namespace

Result<VerifyStats> verify_diff_ids(const ImageSet& set, unsigned jobs) {
  struct Item {
    const Blob* blob;
    Digest diff_id;
  };
  std::vector<Item> items;
  std::unordered_map<Digest, bool> seen;
  for (const auto& image : set.images) {
    for (const auto& l : image.layers) {
      if (l.blob.digest == l.diff_id || seen.contains(l.blob.digest)) {
        continue;
      }
      const Blob* b = set.find(l.blob.digest);
      if (b != nullptr) {
        seen[l.blob.digest] = true;
        items.push_back(Item{b, l.diff_id});
      }
    }
  }
  std::vector<std::optional<std::string>> errors(items.size());
  std::vector<std::uint64_t> sizes(items.size());
  util::parallel_for(items.size(), jobs, [&](std::size_t i) {
    auto r = uncompressed_digest(*items[i].blob);
    if (!r) {
      errors[i] = r.error().message;
    } else if (r->first != items[i].diff_id) {
      errors[i] = fmt::format("{}: {}: layer decompresses to {} but the config's diff_id is {}",
                              items[i].blob->where.source, items[i].blob->where.entry, r->first.str(),
                              items[i].diff_id.str());
    } else {
      sizes[i] = r->second;
    }
  });
  VerifyStats stats;
  std::string report;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (errors[i]) {
      if (!report.empty()) {
        report += '\n';
      }
      report += *errors[i];
    } else {
      ++stats.blobs_hashed;
      stats.bytes_hashed += sizes[i];
    }
  }
  if (!report.empty()) {
    return util::fail(ErrorKind::bad_input, report);
  }
  return stats;
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
  // Mismatches include blobs hashed while streaming, so report from the whole list,
  // each digest once however many images share it.
  std::unordered_set<Digest> reported;
  for (const auto& d : which) {
    const Blob* b = set.find(d);
    if (b == nullptr || !b->computed || !reported.insert(d).second) {
      continue;
    }
    if (*b->computed != b->digest) {
      add(fmt::format("{}: {}: content is {}, expected {}", b->where.source, b->where.entry, b->computed->str(),
                      b->digest.str()));
    } else {
      ++stats.blobs_checked;
      stats.bytes_checked += b->size;
    }
  }
  if (!report.empty()) {
    return util::fail(ErrorKind::bad_input, report);
  }
  return stats;
}

} // namespace kload::format
