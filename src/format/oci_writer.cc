#include "kload/format/oci_writer.h"
#include "libarchive_error.h"

#include "kload/format/verify.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "kload/util/zstd_stream.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

struct Sink {
  const util::ByteSink& out;
  std::uint64_t written = 0;
  std::optional<util::Error> error;
  bool aborted = false;  // set after a failure: nothing more reaches the reader
};

la_ssize_t sink_write(struct archive*, void* data, const void* buf, size_t len) {
  auto* s = static_cast<Sink*>(data);
  if (s->aborted) {
    return -1;
  }
  if (auto r = s->out(std::string_view(static_cast<const char*>(buf), len)); !r) {
    s->error = r.error();
    return -1;
  }
  s->written += len;
  return static_cast<la_ssize_t>(len);
}

class Writer {
public:
  explicit Writer(const util::ByteSink& out)
      : sink_{out, 0, std::nullopt, false}, a_(archive_write_new(), archive_write_free) {
    archive_write_set_format_pax_restricted(a_.get());
    archive_write_set_bytes_per_block(a_.get(), 64 * 1024);
    archive_write_set_bytes_in_last_block(a_.get(), 1);
  }

  Result<void> open() {
    if (archive_write_open2(a_.get(), &sink_, nullptr, sink_write, nullptr, nullptr) != ARCHIVE_OK) {
      return failure("cannot start the archive");
    }
    return {};
  }

  // Starts a regular-file entry of `size` bytes.
  Result<void> begin(const std::string& name, std::uint64_t size) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK) {
      return failure("cannot write entry " + name);
    }
    return {};
  }

  Result<void> data(std::string_view bytes) {
    while (!bytes.empty()) {
      const la_ssize_t n = archive_write_data(a_.get(), bytes.data(), bytes.size());
      if (n <= 0) {
        return failure("cannot write data");
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
  }

  Result<void> file(const std::string& name, std::string_view bytes) {
    if (auto r = begin(name, bytes.size()); !r) {
      return r;
    }
    return data(bytes);
  }

  Result<std::uint64_t> close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) {
      return std::unexpected(failure("cannot finish the archive").error());
    }
    closed_ = true;
    return sink_.written;
  }

  ~Writer() {
    if (!closed_) {
      // Failed half-way: the reader must see a cut stream, never a tidy end-of-archive
      // that could pass for a complete (if smaller) archive. Freeing still closes
      // the archive (and frees its buffers), but none of its writes get through.
      sink_.aborted = true;
    }
  }

private:
  Result<void> failure(const std::string& what) {
    if (sink_.error) {
      return std::unexpected(*sink_.error);
    }
    return util::fail(ErrorKind::io, fmt::format("{}: {}", what, archive_why(a_.get())));
  }

  Sink sink_;
  std::unique_ptr<struct archive, decltype(&archive_write_free)> a_;
  bool closed_ = false;
};

std::string blob_path(const Digest& d) { return "blobs/sha256/" + d.hex(); }

// What the bytes of `b` hashing to `now` (not its digest) means: a damaged input, or,
// when an earlier read proved them, an input changed since.
util::Error not_its_bytes(const Blob& b, const Digest& now) {
  if (b.computed == b.digest) {
    return util::Error{ErrorKind::bad_input,
                       fmt::format("{}: {}: the input changed since it was read (blob {} now hashes to {}); "
                                   "run kload again",
                                   b.where.source, b.where.entry, b.digest.str(), now.str())};
  }
  return util::Error{ErrorKind::bad_input, fmt::format("{}: {}: content is {}, expected {}; not sending it",
                                                       b.where.source, b.where.entry, now.str(), b.digest.str())};
}

// Writes blob `b` as one tar entry; `sent(n)` after every n bytes written.
//
// This read is the proof: the bytes are hashed as they feed the entry, and the entry's
// last byte is held back until that hash matches the digest (an earlier proof, if any,
// may be out of date: the input can change in place). So a blob whose bytes are not
// its digest's never reaches the node complete: its entry stays short and the stream
// is cut (Writer's destructor), which ctr refuses.
Result<void> write_blob_entry(Writer& w, const Blob& b, const std::function<void(std::uint64_t)>& sent) {
  if (b.computed && *b.computed != b.digest) {
    return std::unexpected(not_its_bytes(b, *b.computed));  // known to be wrong already
  }
  if (b.size == 0) {
    // A header alone is a whole entry: check before writing it.
    if (const auto now = util::Sha256().finish(); now != b.digest) {
      return std::unexpected(not_its_bytes(b, now));
    }
  }
  if (auto r = w.begin(blob_path(b.digest), b.size); !r) {
    return r;
  }
  util::Sha256 hash;
  std::uint64_t done = 0;
  char last = 0;  // the held-back final byte
  auto r = read_blob(b, [&](std::string_view chunk) -> Result<void> {
    hash.update(chunk);
    done += chunk.size();
    if (done == b.size && !chunk.empty()) {
      last = chunk.back();
      chunk.remove_suffix(1);
    }
    if (auto wr = w.data(chunk); !wr) {
      return wr;
    }
    sent(chunk.size());
    return {};
  });
  if (!r || b.size == 0) {
    return r;
  }
  if (done != b.size) {
    return util::fail(ErrorKind::io, fmt::format("{}: {}: read {} bytes of blob {}, expected {}", b.where.source,
                                                 b.where.entry, done, b.digest.str(), b.size));
  }
  if (const auto now = hash.finish(); now != b.digest) {
    return std::unexpected(not_its_bytes(b, now));
  }
  if (auto wr = w.data(std::string_view(&last, 1)); !wr) {
    return wr;
  }
  sent(1);
  return {};
}

} // namespace

std::string thin_index_json(const std::vector<ThinEntry>& entries) {
  nlohmann::ordered_json index;
  index["schemaVersion"] = 2;
  index["mediaType"] = media_type::oci_index;
  index["manifests"] = nlohmann::ordered_json::array();
  for (const auto& e : entries) {
    const auto& target = e.image->target();
    index["manifests"].push_back({{"mediaType", target.media_type},
                                  {"digest", target.digest.str()},
                                  {"size", target.size},
                                  {"annotations", {{"io.containerd.image.name", e.ref}}}});
  }
  return index.dump();
}

namespace {

// A tar's end: two zero blocks, which Writer::close() writes last (bytes_in_last_block
// 1: no padding after them).
constexpr std::size_t tar_end_size = 1024;

// Passes everything on to `out` but the last tar_end_size bytes, which finish() checks
// are a tar's end and drops: a Writer's entries without the end of the archive.
class WithoutEnd {
public:
  explicit WithoutEnd(const util::ByteSink& out) : out_(out) {}

  Result<void> write(std::string_view bytes) {
    if (held_.size() + bytes.size() <= tar_end_size) {
      held_.append(bytes);
      return {};
    }
    const std::size_t emit = held_.size() + bytes.size() - tar_end_size;
    const std::size_t from_held = std::min(emit, held_.size());
    if (auto r = out_(std::string_view(held_).substr(0, from_held)); !r) {
      return r;
    }
    if (auto r = out_(bytes.substr(0, emit - from_held)); !r) {
      return r;
    }
    held_ = held_.substr(from_held) + std::string(bytes.substr(emit - from_held));
    return {};
  }

  [[nodiscard]] Result<void> finish() const {
    if (held_ != std::string(tar_end_size, '\0')) {
      return util::fail(ErrorKind::io, "the archive writer did not end the archive as a tar ends");
    }
    return {};
  }

private:
  const util::ByteSink& out_;
  std::string held_;
};

} // namespace

Result<ThinStats> write_thin_archive(int fd, const ImageSet& set, const std::vector<ThinEntry>& entries,
                                     const std::unordered_set<Digest>& layers, const ProgressFn& progress) {
  return write_thin_archive(util::fd_sink(fd, "the import stream"), set, entries, layers, progress);
}

Result<ThinStats> write_thin_archive(const util::ByteSink& out, const ImageSet& set,
                                     const std::vector<ThinEntry>& entries, const std::unordered_set<Digest>& layers,
                                     const ProgressFn& progress) {
  std::vector<const Image*> images;
  for (const auto& e : entries) {
    images.push_back(e.image);
  }
  auto stats = write_thin_body(out, set, images, layers, progress);
  if (!stats) {
    return stats;
  }
  auto tail = write_thin_tail(out, entries);
  if (!tail) {
    return std::unexpected(tail.error());
  }
  stats->total_bytes += *tail;
  return stats;
}

Result<ThinStats> write_thin_body(const util::ByteSink& out, const ImageSet& set,
                                  const std::vector<const Image*>& images, const std::unordered_set<Digest>& layers,
                                  const ProgressFn& progress) {
  WithoutEnd body(out);
  const util::ByteSink entries_only = [&](std::string_view bytes) { return body.write(bytes); };
  Writer w(entries_only);
  if (auto r = w.open(); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = w.file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"); !r) {
    return std::unexpected(r.error());
  }
  ThinStats stats;
  std::unordered_set<Digest> written;
  auto put_blob = [&](const Digest& d, bool is_layer) -> Result<void> {
    if (!written.insert(d).second) {
      return {};
    }
    const Blob* b = set.find(d);
    if (b == nullptr) {
      return util::fail(ErrorKind::bad_input, fmt::format("blob {} is not in the input", d.str()));
    }
    auto r = write_blob_entry(w, *b, [&](std::uint64_t n) {
      if (is_layer) {
        stats.layer_bytes += n;
        if (progress) {
          progress(stats.layer_bytes);
        }
      }
    });
    if (r) {
      stats.proven.push_back(d);
      stats.layers_sent += is_layer ? 1 : 0;
    }
    return r;
  };
  for (const auto* image : images) {
    // The indexes down to the manifest, exactly as the input holds them; the other
    // platforms they list stay behind, which an import for this platform never reads.
    for (const auto& d : ImageSet::metadata_of(*image)) {
      if (auto r = put_blob(d, false); !r) {
        return std::unexpected(r.error());
      }
    }
  }
  for (const auto* image : images) {
    for (const auto& l : image->layers) {
      if (layers.contains(l.blob.digest)) {
        if (auto r = put_blob(l.blob.digest, true); !r) {
          return std::unexpected(r.error());
        }
      }
    }
  }
  auto total = w.close();
  if (!total) {
    return std::unexpected(total.error());
  }
  if (auto end = body.finish(); !end) {
    return std::unexpected(end.error());
  }
  stats.total_bytes = *total - tar_end_size;
  return stats;
}

Result<std::uint64_t> write_thin_tail(const util::ByteSink& out, const std::vector<ThinEntry>& entries) {
  // index.json after every blob, never before: containerd's importer names images only
  // from index.json, so a stream cut short anywhere in the body (a changed input, a
  // read error, a closed pipe) can never name an image, let alone one whose blobs did
  // not all arrive whole and proven.
  Writer w(out);
  if (auto r = w.open(); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = w.file("index.json", thin_index_json(entries)); !r) {
    return std::unexpected(r.error());
  }
  return w.close();
}

} // namespace kload::format
