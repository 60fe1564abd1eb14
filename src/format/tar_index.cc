#include "kload/format/tar_index.h"
#include "libarchive_error.h"

#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "kload/util/temp_dir.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

util::Error archive_error(const std::string& input, const std::string& entry, const std::string& what) {
  if (entry.empty()) {
    return util::Error{ErrorKind::bad_input, fmt::format("{}: {}", input, what)};
  }
  return util::Error{ErrorKind::bad_input, fmt::format("{}: {}: {}", input, entry, what)};
}

namespace {

constexpr std::size_t read_block = 256 * 1024;
// How many entries' worth of ReadLimits::memory_entry_bytes a stream may keep in memory
// in all (64 MiB by default); the rest is spooled.
constexpr std::uint64_t memory_budget_entries = 64;

// libarchive client callbacks over a file descriptor, counting what is read.
la_ssize_t source_read(struct archive* a, void* data, const void** out) {
  auto* s = static_cast<TarSource*>(data);
  while (true) {
    const ssize_t n = ::read(s->fd.get(), s->buffer.data(), s->buffer.size());
    if (n < 0 && errno == EINTR && util::cancelled_by() == 0) {
      continue;  // a cancelled run stops waiting for a stream that may never go on
    }
    if (n < 0) {
      archive_set_error(a, errno, "read failed: %s", std::strerror(errno));
      return -1;
    }
    s->bytes_read += static_cast<std::uint64_t>(n);
    *out = s->buffer.data();
    return n;
  }
}

la_int64_t source_skip(struct archive*, void* data, la_int64_t request) {
  auto* s = static_cast<TarSource*>(data);
  if (!s->seekable) {
    return 0; // libarchive then reads and discards
  }
  if (::lseek(s->fd.get(), request, SEEK_CUR) < 0) {
    return 0;
  }
  return request;
}

la_int64_t source_seek(struct archive*, void* data, la_int64_t offset, int whence) {
  auto* s = static_cast<TarSource*>(data);
  return ::lseek(s->fd.get(), offset, whence);
}

// Removes "./" prefixes and repeated slashes; nullopt when the name is absolute or
// climbs out with "..".
std::optional<std::string> clean_path(std::string_view name) {
  if (name.starts_with("/")) {
    return std::nullopt;
  }
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= name.size()) {
    const auto end = name.find('/', start);
    const auto part = name.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (part == "..") {
      return std::nullopt;
    }
    if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) {
      out += '/';
    }
    out += p;
  }
  return out;
}

// The entry a symbolic link named `link` points at: its target read from the link's
// directory, ".." climbing within the archive (Docker links a layer shared at another
// place of the chain as "../<v1id>/layer.tar"); nullopt when the target is absolute or
// climbs out of the archive. Never looked up on the file system.
std::optional<std::string> link_destination(std::string_view link, std::string_view target) {
  if (target.starts_with("/")) {
    return std::nullopt;
  }
  const auto slash = link.rfind('/');
  const std::string joined =
      slash == std::string_view::npos ? std::string(target) : fmt::format("{}/{}", link.substr(0, slash), target);
  std::vector<std::string_view> parts;
  const std::string_view path = joined;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto end = std::min(path.find('/', start), path.size());
    const auto part = path.substr(start, end - start);
    if (part == "..") {
      if (parts.empty()) {
        return std::nullopt;
      }
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& p : parts) {
    out += out.empty() ? "" : "/";
    out += p;
  }
  return out;
}

bool is_top_metadata(const std::string& name) {
  return name == "manifest.json" || name == "index.json" || name == "oci-layout" ||
         name == "repositories";
}

} // namespace

TarIndex::TarIndex(std::string input, const ReadLimits& limits, int fd)
    : input_(std::move(input)), limits_(limits), given_fd_(fd) {
  source_.buffer.resize(read_block);
}

TarIndex::~TarIndex() = default;

ReadStats TarIndex::stats() const {
  ReadStats s = stats_;
  s.bytes_read = source_.bytes_read;
  return s;
}

Result<void> TarIndex::open_input() {
  if (given_fd_ >= 0) {
    source_.fd.reset(::fcntl(given_fd_, F_DUPFD_CLOEXEC, 0));
    return source_.fd ? Result<void>{} : bad("", "cannot read the stream");
  }
  if (input_ == "-") {
    source_.fd.reset(::fcntl(0, F_DUPFD_CLOEXEC, 0));
  } else {
    source_.fd.reset(::open(input_.c_str(), O_RDONLY | O_CLOEXEC));
  }
  if (!source_.fd) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: cannot open: {}", input_, std::strerror(errno)));
  }
  struct stat st{};
  if (::fstat(source_.fd.get(), &st) == 0 && S_ISREG(st.st_mode) && input_ != "-") {
    source_.seekable = true;
    file_size_ = static_cast<std::uint64_t>(st.st_size);
  } else if (::fstat(source_.fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return bad("", "is a directory, not an archive");
  }
  return {};
}

Result<std::filesystem::path> TarIndex::spool_path() {
  if (!spool_) {
    auto dir = util::TempDir::create("kload-spool");
    if (!dir) {
      return std::unexpected(dir.error());
    }
    spool_ = std::make_shared<util::TempDir>(std::move(*dir));
  }
  return spool_->path() / fmt::format("{}", spool_count_++);
}

Result<void> TarIndex::check_expansion(struct archive* a) {
  if (in_place_) {
    return {};
  }
  const auto expanded = static_cast<std::uint64_t>(archive_filter_bytes(a, 0));
  const auto raw = static_cast<std::uint64_t>(archive_filter_bytes(a, -1));
  stats_.bytes_expanded = expanded;
  if (expanded > limits_.max_expanded_bytes) {
    return bad("", fmt::format("expands beyond {} bytes; refusing to read further", limits_.max_expanded_bytes));
  }
  if (expanded > limits_.ratio_grace && raw > 0 && expanded / raw > limits_.max_expansion_ratio) {
    return bad("", fmt::format("decompresses to {} times its size; refusing a decompression bomb",
                               expanded / raw));
  }
  return {};
}

// Stream mode: keeps the entry in memory or spools it, hashing as it goes.
Result<void> TarIndex::store_entry_data(struct archive* a, const std::string& name, TarEntry& e) {
  if (e.size > limits_.max_expanded_bytes) {
    return bad(name, fmt::format("its header claims {} bytes, so the archive expands beyond {} bytes; refusing to "
                                 "read further",
                                 e.size, limits_.max_expanded_bytes));
  }
  // Small entries stay in memory, but no more than memory_budget_entries of them in
  // all: 10,000 layers of 1 MiB (10 GiB, from a few dozen MiB of gzip) are spooled.
  const bool to_memory = e.size <= limits_.memory_entry_bytes &&
                         memory_held_ + e.size <= memory_budget_entries * limits_.memory_entry_bytes;
  std::string mem;
  util::Fd out;
  if (!to_memory) {
    auto path = spool_path();
    if (!path) {
      return std::unexpected(path.error());
    }
    e.spool = *path;
    out.reset(::open(e.spool.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) {
      return util::fail(ErrorKind::io, fmt::format("cannot create spool file {}: {}; set TMPDIR to a writable "
                                                   "directory with room",
                                                   e.spool.string(), std::strerror(errno)));
    }
    struct statvfs vfs{};
    if (::fstatvfs(out.get(), &vfs) == 0 &&
        static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize < e.size + (64ull << 20)) {
      return util::fail(ErrorKind::io,
                        fmt::format("{}: {}: needs {} bytes of temporary space in {}, which has {} free; set TMPDIR "
                                    "elsewhere",
                                    input_, name, e.size, e.spool.parent_path().string(),
                                    static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize));
    }
  } else {
    mem.reserve(e.size);
  }
  util::Sha256 hash;
  std::uint64_t got = 0;
  const void* buf = nullptr;
  size_t len = 0;
  la_int64_t off = 0;
  Result<void> status{};
  while (true) {
    if (const int sig = util::cancelled_by(); sig != 0) {  // a cancelled run reads no further
      status = util::fail(ErrorKind::interrupted, "interrupted by " + util::signal_name(sig));
      break;
    }
    const int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF) {
      break;
    }
    if (r < ARCHIVE_WARN) {
      status = bad(name, fmt::format("cannot read: {}", archive_why(a)));
      break;
    }
    if (static_cast<std::uint64_t>(off) != got) {
      status = bad(name, "sparse entries are not supported");
      break;
    }
    hash.update(std::string_view(static_cast<const char*>(buf), len));
    got += len;
    if (to_memory) {
      mem.append(static_cast<const char*>(buf), len);
    } else if (auto w = util::write_all(out.get(), buf, len, e.spool.string()); !w) {
      status = std::unexpected(w.error());
      break;
    }
    if (auto c = check_expansion(a); !c) {
      status = c;
      break;
    }
  }
  out.reset();
  if (!status) {
    return status;
  }
  if (got != e.size) {
    return bad(name, fmt::format("truncated: {} of {} bytes", got, e.size));
  }
  stats_.bytes_hashed += got;
  if (to_memory) {
    memory_held_ += got;
    e.memory = std::make_shared<const std::string>(std::move(mem));
  } else {
    stats_.bytes_spooled += got;
  }
  e.computed = hash.finish();
  return {};
}

Result<std::string> TarIndex::read_in_memory(struct archive* a, const std::string& name, std::uint64_t size) {
  if (size > limits_.max_metadata_bytes) {
    return std::unexpected(bad(name, fmt::format("{} bytes is too large for a metadata file (limit {})", size,
                                                 limits_.max_metadata_bytes)).error());
  }
  std::string data(size, '\0');
  const la_ssize_t n = archive_read_data(a, data.data(), data.size());
  if (n < 0 || static_cast<std::uint64_t>(n) != size) {
    return std::unexpected(bad(name, fmt::format("truncated or unreadable: {}",
                                                 n < 0 ? archive_why(a) : "short read")).error());
  }
  return data;
}

// Indexes the entry whose header was just read: its name, type and size, checked;
// its bytes located in place or stored (see store_entry_data).
Result<void> TarIndex::add_entry(struct archive* a, struct archive_entry* ae) {
  const char* raw_name = archive_entry_pathname(ae);
  const std::string shown = raw_name != nullptr ? raw_name : "";
  last_entry_ = shown;
  auto name = clean_path(shown);
  if (!name) {
    return bad(shown, "unsafe entry path (absolute or containing \"..\")");
  }
  if (archive_entry_hardlink(ae) != nullptr) {
    return bad(shown, "hard links are not supported in image archives");
  }
  const auto type = archive_entry_filetype(ae);
  if (type == AE_IFDIR) {
    return {};
  }
  if (type != AE_IFREG && type != AE_IFLNK) {
    return bad(shown, "device, fifo and socket entries are not allowed in image archives");
  }
  if (name->empty()) {
    return bad(shown, "empty entry name");
  }
  // Any second entry of a name is refused, whatever its body: taking the first or
  // the last would let the in-place index and the stream disagree, or a metadata
  // file be read from one copy and its blob sent from another.
  if (entries_.contains(*name)) {
    return bad(shown, "duplicate entry");
  }
  TarEntry e;
  if (type == AE_IFLNK) {
    e.type = TarEntry::Type::symlink;
    const char* target = archive_entry_symlink(ae);
    e.link_target = target != nullptr ? target : "";
    if (!link_destination(*name, e.link_target)) {
      return bad(shown, fmt::format("symbolic link to \"{}\" leads outside the archive", e.link_target));
    }
    entries_.emplace(*name, std::move(e));
    return {};
  }
  if (archive_entry_size_is_set(ae) == 0 || archive_entry_size(ae) < 0) {
    return bad(shown, "entry without a size");
  }
  e.size = static_cast<std::uint64_t>(archive_entry_size(ae));
  if (in_place_) {
    e.offset = static_cast<std::uint64_t>(archive_filter_bytes(a, 0));
    if (e.offset + e.size > file_size_) {
      return bad(shown, fmt::format("truncated: entry needs {} bytes past offset {}, file has {}", e.size,
                                    e.offset, file_size_));
    }
    // Only the top-level documents (at most four) are read now, and only within the
    // metadata limit: configs and anything larger are read in place when used, so
    // memory does not grow with the number of entries and an oversized document is
    // refused only if used, as when streaming.
    if (is_top_metadata(*name) && e.size <= limits_.max_metadata_bytes) {
      auto data = read_in_memory(a, shown, e.size);
      if (!data) {
        return std::unexpected(data.error());
      }
      e.memory = std::make_shared<const std::string>(std::move(*data));
    }
  } else {
    if (auto s = store_entry_data(a, shown, e); !s) {
      return s;
    }
  }
  entries_.emplace(*name, std::move(e));
  return {};
}

Result<void> TarIndex::scan() {
  if (auto r = open_input(); !r) {
    return r;
  }
  std::unique_ptr<struct archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  archive_read_set_seek_callback(a.get(), source_seek);
  if (archive_read_open2(a.get(), &source_, nullptr, source_read, source_skip, nullptr) != ARCHIVE_OK) {
    return bad("", fmt::format("not a readable tar archive: {}", archive_why(a.get())));
  }
  bool first = true;
  while (true) {
    struct archive_entry* ae = nullptr;
    const int r = archive_read_next_header(a.get(), &ae);
    if (r == ARCHIVE_EOF) {
      break;
    }
    // ARCHIVE_RETRY is a damaged header (a size that misframes the next one, say):
    // the entry it returns is empty, not an entry to look at.
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return bad(last_entry_.empty() ? "" : "after entry " + last_entry_,
                 fmt::format("corrupt or truncated archive: {}", archive_why(a.get())));
    }
    if (first) {
      first = false;
      // Only a plain tar in a regular file can be read in place later.
      in_place_ = source_.seekable && archive_filter_count(a.get()) == 1;
      stats_.indexed_in_place = in_place_;
      if (!in_place_) {
        source_.seekable = false; // never skip by seeking under a decompressor
      }
    }
    if (++entry_count_ > limits_.max_entries) {
      return bad("", fmt::format("more than {} entries", limits_.max_entries));
    }
    if (auto added = add_entry(a.get(), ae); !added) {
      return added;
    }
  }
  if (first) {
    return bad("", "empty archive");
  }
  return {};
}

// Follows symlinks inside the archive; nullptr when absent or escaping.
const TarEntry* TarIndex::lookup(const std::string& raw, std::string* resolved) const {
  auto name = clean_path(raw);
  for (int depth = 0; name && depth < 8; ++depth) {
    const auto it = entries_.find(*name);
    if (it == entries_.end()) {
      return nullptr;
    }
    if (it->second.type == TarEntry::Type::file) {
      if (resolved != nullptr) {
        *resolved = *name;
      }
      return &it->second;
    }
    name = link_destination(*name, it->second.link_target);
  }
  return nullptr;
}

// The one way to an entry's bytes after the scan: the input itself in place, else the
// entry's spool file, opened once per reader and closed with it. Reads from the input
// count in bytes_read.
class TarIndex::EntryFile {
public:
  EntryFile(TarIndex& index, const TarEntry& e)
      : index_(index), entry_(e),
        owned_(index.in_place_ ? -1 : ::open(e.spool.c_str(), O_RDONLY | O_CLOEXEC)),
        fd_(index.in_place_ ? index.source_.fd.get() : owned_.get()) {}
  EntryFile(const EntryFile&) = delete;
  EntryFile& operator=(const EntryFile&) = delete;

  // Reads up to `len` bytes at `offset` within the entry; the count read, 0 at its end,
  // -1 on error.
  ssize_t read(std::uint64_t offset, char* out, std::size_t len) {
    if (entry_.memory) {
      if (offset >= entry_.memory->size()) {
        return 0;
      }
      const auto n = std::min<std::size_t>(len, entry_.memory->size() - offset);
      std::memcpy(out, entry_.memory->data() + offset, n);
      return static_cast<ssize_t>(n);
    }
    if (fd_ < 0 || offset >= entry_.size) {
      return fd_ < 0 ? -1 : 0;
    }
    len = std::min<std::uint64_t>(len, entry_.size - offset);
    const auto base = index_.in_place_ ? entry_.offset : 0;
    ssize_t n = -1;
    do {
      n = ::pread(fd_, out, len, static_cast<off_t>(base + offset));
    } while (n < 0 && errno == EINTR);
    if (n > 0 && index_.in_place_) {
      index_.source_.bytes_read += static_cast<std::uint64_t>(n);
    }
    return n;
  }

  // Fills `out` from `offset`; false when the entry or the file ends first.
  bool read_exactly(std::uint64_t offset, char* out, std::size_t len) {
    std::size_t done = 0;
    while (done < len) {
      const ssize_t n = read(offset + done, out + done, len - done);
      if (n <= 0) {
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

private:
  TarIndex& index_;
  const TarEntry& entry_;
  util::Fd owned_;  // the spool file's; none when reading the input in place
  int fd_;
};

Result<std::string> TarIndex::bytes(const std::string& name, const TarEntry& e, std::uint64_t max) {
  if (e.size > max) {
    return std::unexpected(
        bad(name, fmt::format("{} bytes is too large for a metadata document (limit {})", e.size, max)).error());
  }
  if (e.memory) {
    return *e.memory;
  }
  std::string data(e.size, '\0');
  EntryFile file(*this, e);
  if (!file.read_exactly(0, data.data(), data.size())) {
    return std::unexpected(bad(name, "cannot read entry").error());
  }
  return data;
}

Result<std::string> TarIndex::peek(const TarEntry& e, std::size_t n) {
  std::string out(std::min<std::uint64_t>(n, e.size), '\0');
  EntryFile file(*this, e);
  if (!file.read_exactly(0, out.data(), out.size())) {
    return std::unexpected(util::Error{ErrorKind::io, "cannot read"});
  }
  return out;
}

std::optional<Digest> TarIndex::hash(const TarEntry& e) {
  util::Sha256 h;
  std::vector<char> buf(1 << 20);
  EntryFile file(*this, e);
  std::uint64_t done = 0;
  while (done < e.size) {
    const ssize_t n = file.read(done, buf.data(), buf.size());
    if (n <= 0) {
      return std::nullopt;
    }
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    done += static_cast<std::uint64_t>(n);
  }
  return h.finish();
}

BlobLocation TarIndex::location_of(const std::string& name, const TarEntry& e) const {
  BlobLocation loc;
  loc.source = input_;
  loc.entry = name;
  if (e.memory) {
    loc.memory = e.memory;
  } else if (in_place_) {
    loc.file = input_;
    loc.offset = e.offset;
  } else {
    loc.file = e.spool;
  }
  return loc;
}

} // namespace kload::format
