#include "kload/format/archive_reader.h"
#include "libarchive_error.h"

#include "kload/format/go_json.h"
#include "kload/format/image_ref.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "kload/util/temp_dir.h"

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <unordered_set>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

constexpr std::size_t read_block = 256 * 1024;
// How many entries' worth of ReadLimits::memory_entry_bytes a stream may keep in memory
// in all (64 MiB by default); the rest is spooled.
constexpr std::uint64_t memory_budget_entries = 64;

// One entry of the tar, as far as later steps care.
struct Entry {
  enum class Type { file, symlink };
  Type type = Type::file;
  std::string link_target;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;                    // in-place: where the data starts
  std::shared_ptr<const std::string> memory;   // small entries, or metadata
  std::filesystem::path spool;                 // stream mode, large entries
  std::optional<Digest> computed;              // hashed while streaming
};

// libarchive client callbacks over a file descriptor, counting what is read.
struct Source {
  int fd = -1;
  bool seekable = false;
  std::uint64_t bytes_read = 0;
  std::vector<char> buffer = std::vector<char>(read_block);
};

la_ssize_t source_read(struct archive* a, void* data, const void** out) {
  auto* s = static_cast<Source*>(data);
  while (true) {
    const ssize_t n = ::read(s->fd, s->buffer.data(), s->buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
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
  auto* s = static_cast<Source*>(data);
  if (!s->seekable) {
    return 0; // libarchive then reads and discards
  }
  if (::lseek(s->fd, request, SEEK_CUR) < 0) {
    return 0;
  }
  return request;
}

la_int64_t source_seek(struct archive*, void* data, la_int64_t offset, int whence) {
  auto* s = static_cast<Source*>(data);
  return ::lseek(s->fd, offset, whence);
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

// Appends the names of `more` that `names` lacks, in order. Linear: an archive may
// list a very large number of tags.
void add_new_names(std::vector<std::string>& names, const std::vector<std::string>& more) {
  std::unordered_set<std::string> seen(names.begin(), names.end());
  for (const auto& n : more) {
    if (seen.insert(n).second) {
      names.push_back(n);
    }
  }
}

// The fields of containerd's structs kload reads (index, manifest, descriptor,
// platform, image config, docker-save manifest.json entry; "config" and "layers" also
// match "Config" and "Layers"), and the map fields among them. Nothing else of a
// document is kept.
const gojson::Keep& metadata_fields() {
  static const gojson::Keep keep{{"mediaType", "digest", "size", "platform", "annotations", "manifests", "config",
                                  "layers", "os", "architecture", "variant", "rootfs", "diff_ids", "Entrypoint", "Cmd",
                                  "RepoTags"},
                                 {"annotations"}};
  return keep;
}

class Reader {
public:
  Reader(std::string input, ImageSet& set, const ReadLimits& limits, int fd = -1)
      : input_(std::move(input)), set_(set), limits_(limits), given_fd_(fd) {}

  ~Reader() {
    if (source_.fd >= 0) {
      ::close(source_.fd);
    }
  }

  Result<ReadStats> run() {
    if (auto r = scan(); !r) {
      return std::unexpected(r.error());
    }
    if (auto r = interpret(); !r) {
      return std::unexpected(r.error());
    }
    stats_.bytes_read = source_.bytes_read;
    return stats_;
  }

private:
  Result<void> bad(const std::string& entry, const std::string& what) const {
    if (entry.empty()) {
      return util::fail(ErrorKind::bad_input, fmt::format("{}: {}", input_, what));
    }
    return util::fail(ErrorKind::bad_input, fmt::format("{}: {}: {}", input_, entry, what));
  }

  Result<void> open_input() {
    if (given_fd_ >= 0) {
      source_.fd = ::dup(given_fd_);
      return source_.fd >= 0 ? Result<void>{} : bad("", "cannot read the stream");
    }
    if (input_ == "-") {
      source_.fd = ::dup(0);
    } else {
      source_.fd = ::open(input_.c_str(), O_RDONLY | O_CLOEXEC);
    }
    if (source_.fd < 0) {
      return util::fail(ErrorKind::bad_input, fmt::format("{}: cannot open: {}", input_, std::strerror(errno)));
    }
    struct stat st{};
    if (::fstat(source_.fd, &st) == 0 && S_ISREG(st.st_mode) && input_ != "-") {
      source_.seekable = true;
      file_size_ = static_cast<std::uint64_t>(st.st_size);
    } else if (::fstat(source_.fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      return bad("", "is a directory, not an archive");
    }
    return {};
  }

  Result<std::filesystem::path> spool_path() {
    if (!spool_) {
      auto dir = util::TempDir::create("kload-spool");
      if (!dir) {
        return std::unexpected(dir.error());
      }
      spool_ = std::make_shared<util::TempDir>(std::move(*dir));
      set_.spool_owner = spool_holder();
    }
    return spool_->path() / fmt::format("{}", spool_count_++);
  }

  // The ImageSet keeps every spool directory of every input alive.
  std::shared_ptr<void> spool_holder() {
    auto previous = set_.spool_owner;
    auto mine = spool_;
    return std::make_shared<std::pair<std::shared_ptr<void>, std::shared_ptr<util::TempDir>>>(previous, mine);
  }

  Result<void> check_expansion(struct archive* a) {
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
  Result<void> store_entry_data(struct archive* a, const std::string& name, Entry& e) {
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
    int out = -1;
    if (!to_memory) {
      auto path = spool_path();
      if (!path) {
        return std::unexpected(path.error());
      }
      e.spool = *path;
      out = ::open(e.spool.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (out < 0) {
        return util::fail(ErrorKind::io, fmt::format("cannot create spool file {}: {}", e.spool.string(), std::strerror(errno)));
      }
      struct statvfs vfs{};
      if (::fstatvfs(out, &vfs) == 0 &&
          static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize < e.size + (64ull << 20)) {
        ::close(out);
        return bad(name, fmt::format("needs {} bytes of temporary space in {}, which has {} free; set TMPDIR elsewhere",
                                     e.size, e.spool.parent_path().string(),
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
      } else if (auto w = util::write_all(out, buf, len, e.spool.string()); !w) {
        status = std::unexpected(w.error());
        break;
      }
      if (auto c = check_expansion(a); !c) {
        status = c;
        break;
      }
    }
    if (out >= 0) {
      ::close(out);
    }
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

  Result<std::string> read_in_memory(struct archive* a, const std::string& name, std::uint64_t size) {
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

  static bool is_top_metadata(const std::string& name) {
    return name == "manifest.json" || name == "index.json" || name == "oci-layout" ||
           name == "repositories";
  }

  Result<void> scan() {
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
        continue;
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
      Entry e;
      if (type == AE_IFLNK) {
        e.type = Entry::Type::symlink;
        const char* target = archive_entry_symlink(ae);
        e.link_target = target != nullptr ? target : "";
        if (!link_destination(*name, e.link_target)) {
          return bad(shown, fmt::format("symbolic link to \"{}\" leads outside the archive", e.link_target));
        }
        entries_.emplace(*name, std::move(e));
        continue;
      }
      if (archive_entry_size_is_set(ae) == 0 || archive_entry_size(ae) < 0) {
        return bad(shown, "entry without a size");
      }
      e.size = static_cast<std::uint64_t>(archive_entry_size(ae));
      if (in_place_) {
        e.offset = static_cast<std::uint64_t>(archive_filter_bytes(a.get(), 0));
        if (e.offset + e.size > file_size_) {
          return bad(shown, fmt::format("truncated: entry needs {} bytes past offset {}, file has {}", e.size,
                                        e.offset, file_size_));
        }
        // Only the top-level documents (at most four) are read now, and only within the
        // metadata limit: configs and anything larger are read in place when used, so
        // memory does not grow with the number of entries and an oversized document is
        // refused only if used, as when streaming.
        if (is_top_metadata(*name) && e.size <= limits_.max_metadata_bytes) {
          auto data = read_in_memory(a.get(), shown, e.size);
          if (!data) {
            return std::unexpected(data.error());
          }
          e.memory = std::make_shared<const std::string>(std::move(*data));
        }
      } else {
        if (auto s = store_entry_data(a.get(), shown, e); !s) {
          return s;
        }
      }
      entries_.emplace(*name, std::move(e));
    }
    if (first) {
      return bad("", "empty archive");
    }
    return {};
  }

  // Follows symlinks inside the archive; nullptr when absent or escaping.
  const Entry* lookup(const std::string& raw, std::string* resolved = nullptr) const {
    auto name = clean_path(raw);
    for (int depth = 0; name && depth < 8; ++depth) {
      const auto it = entries_.find(*name);
      if (it == entries_.end()) {
        return nullptr;
      }
      if (it->second.type == Entry::Type::file) {
        if (resolved != nullptr) {
          *resolved = *name;
        }
        return &it->second;
      }
      name = link_destination(*name, it->second.link_target);
    }
    return nullptr;
  }

  // Reads a whole entry (a metadata document), bounded by the metadata limit.
  Result<std::string> entry_bytes(const std::string& name, const Entry& e) {
    if (e.size > limits_.max_metadata_bytes) {
      return std::unexpected(bad(name, fmt::format("{} bytes is too large for a metadata document (limit {})",
                                                   e.size, limits_.max_metadata_bytes)).error());
    }
    if (e.memory) {
      return *e.memory;
    }
    std::string data(e.size, '\0');
    const int fd = in_place_ ? source_.fd : ::open(e.spool.c_str(), O_RDONLY | O_CLOEXEC);
    const auto off = in_place_ ? static_cast<off_t>(e.offset) : 0;
    const ssize_t n = ::pread(fd, data.data(), data.size(), off);
    if (!in_place_ && fd >= 0) {
      ::close(fd);
    }
    if (n < 0 || static_cast<std::uint64_t>(n) != e.size) {
      return std::unexpected(bad(name, "cannot read entry").error());
    }
    if (in_place_) {
      source_.bytes_read += e.size;
    }
    return data;
  }

  // Parses a metadata document as containerd's Go decoder will (see go_json.h), once
  // per distinct document: the count is in ReadStats so tests can hold it to that.
  Result<gojson::Value> parse_json(const std::string& name, const std::string& text) {
    ++stats_.documents_parsed;
    auto v = gojson::parse(name, text, metadata_fields());
    if (!v) {
      return std::unexpected(util::Error{ErrorKind::bad_input, fmt::format("{}: {}", input_, v.error().message)});
    }
    return v;
  }

  // A decoding error of the document `entry`, as one line naming it.
  util::Error in(const std::string& entry, const util::Error& e) const { return bad(entry, e.message).error(); }

  BlobLocation location_of(const std::string& name, const Entry& e) const {
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

  void add_blob(const Digest& d, std::uint64_t size, BlobLocation loc, std::optional<Digest> computed) {
    if (set_.blobs.contains(d)) {
      return;
    }
    set_.blobs.emplace(d, Blob{d, size, std::move(loc), computed});
  }

  void add_memory_blob(const Digest& d, const std::string& entry, const std::string& bytes) {
    BlobLocation loc;
    loc.source = input_;
    loc.entry = entry;
    loc.memory = std::make_shared<const std::string>(bytes);
    add_blob(d, bytes.size(), std::move(loc), d);
  }

  // A metadata blob (manifest, index, config): read, digest-checked and kept, once
  // per digest; size-checked against every descriptor naming it.
  Result<const std::string*> metadata_blob(const Digest& d, std::optional<std::uint64_t> size,
                                           const std::string& what) {
    const std::string name = "blobs/sha256/" + d.hex();
    auto it = verified_.find(d);
    if (it == verified_.end()) {
      const Entry* e = lookup(name);
      if (e == nullptr) {
        return std::unexpected(bad(name, fmt::format("{} {} is not in the archive", what, d.str())).error());
      }
      auto bytes = entry_bytes(name, *e);
      if (!bytes) {
        return std::unexpected(bytes.error());
      }
      const auto actual = util::Sha256::of(*bytes);
      if (actual != d) {
        return std::unexpected(
            bad(name, fmt::format("{} bytes hash to {}, expected {}", what, actual.str(), d.str())).error());
      }
      it = verified_.emplace(d, std::move(*bytes)).first;
    }
    if (size && *size != it->second.size()) {
      return std::unexpected(
          bad(name, fmt::format("{} is {} bytes, its descriptor says {}", what, it->second.size(), *size)).error());
    }
    return &it->second;
  }

  struct ParsedConfig {
    Platform platform;
    std::vector<Digest> diff_ids;
    RunConfig run;
  };

  // The platform fields of a Go struct (ocispec.Platform, or ocispec.Image, which
  // embeds it).
  static Result<Platform> platform_of(const gojson::Struct& s) {
    Platform p;
    for (auto [field, out] : {std::pair{"os", &p.os}, {"architecture", &p.architecture}, {"variant", &p.variant}}) {
      auto v = s.string(field);
      if (!v) {
        return std::unexpected(v.error());
      }
      *out = v->value_or("");
    }
    return p;
  }

  // The fields of containerd's ocispec.Image that kload uses.
  Result<ParsedConfig> decode_config(const gojson::Value& root) const {
    if (!root.is_object()) {
      return util::fail(ErrorKind::bad_input, "image config is not a JSON object");
    }
    auto c = gojson::Struct::of(root);
    ParsedConfig out;
    auto platform = platform_of(*c);
    if (!platform) {
      return std::unexpected(platform.error());
    }
    out.platform = *platform;
    auto rootfs = c->object("rootfs");
    if (!rootfs) {
      return std::unexpected(rootfs.error());
    }
    auto diff_ids = rootfs->strings("diff_ids");
    if (!diff_ids) {
      return std::unexpected(diff_ids.error());
    }
    if (!*diff_ids) {
      return util::fail(ErrorKind::bad_input, "image config has no rootfs.diff_ids");
    }
    if ((*diff_ids)->size() > limits_.max_layers) {
      return util::fail(ErrorKind::bad_input, fmt::format("image config has {} layers; kload refuses more than {} "
                                                          "(overlayfs stacks at most 500)",
                                                          (*diff_ids)->size(), limits_.max_layers));
    }
    for (const auto& text : **diff_ids) {
      auto d = Digest::parse(text);
      if (!d) {
        return util::fail(ErrorKind::bad_input, "image config has an invalid diff_id");
      }
      out.diff_ids.push_back(*d);
    }
    auto run = c->object("config");
    if (!run) {
      return std::unexpected(run.error());
    }
    auto entrypoint = run->strings("Entrypoint");
    auto cmd = run->strings("Cmd");
    if (!entrypoint || !cmd) {
      return std::unexpected(!entrypoint ? entrypoint.error() : cmd.error());
    }
    out.run.entrypoint = *entrypoint;
    out.run.cmd = *cmd;
    return out;
  }

  // An image config, parsed once per distinct digest however many images name it.
  Result<const ParsedConfig*> parse_config(const Digest& digest, const std::string& entry, const std::string& bytes) {
    if (auto it = configs_.find(digest); it != configs_.end()) {
      return &it->second;
    }
    auto root = parse_json(entry, bytes);
    if (!root) {
      return std::unexpected(root.error());
    }
    auto c = decode_config(*root);
    if (!c) {
      return std::unexpected(in(entry, c.error()));
    }
    return &configs_.emplace(digest, std::move(*c)).first->second;
  }

  static Result<std::optional<Platform>> descriptor_platform(const gojson::Struct& d) {
    auto p = d.object("platform");
    if (!p) {
      return std::unexpected(p.error());
    }
    if (!p->present()) {
      return std::optional<Platform>{};
    }
    auto platform = platform_of(*p);
    if (!platform) {
      return std::unexpected(platform.error());
    }
    return std::optional<Platform>{*platform};
  }

  struct Parsed {
    std::string media_type;
    Digest digest;
    std::optional<std::uint64_t> size;
  };

  // An ocispec.Descriptor's mediaType, digest and size.
  Result<Parsed> parse_descriptor(const std::string& where, const gojson::Struct& d) const {
    auto digest_text = d.string("digest");
    auto media = d.string("mediaType");
    auto size = d.uint64("size");
    if (!digest_text || !media || !size) {
      return std::unexpected(in(where, !digest_text ? digest_text.error() : !media ? media.error() : size.error()));
    }
    if (!*digest_text) {
      return std::unexpected(bad(where, "descriptor without a digest").error());
    }
    auto digest = Digest::parse(**digest_text);
    if (!digest) {
      return std::unexpected(bad(where, fmt::format("unsupported digest \"{}\"", **digest_text)).error());
    }
    return Parsed{media->value_or(""), *digest, *size};
  }

  static bool is_index_type(const std::string& mt) {
    return mt == media_type::oci_index || mt == media_type::docker_list;
  }
  static bool is_manifest_type(const std::string& mt) {
    return mt == media_type::oci_manifest || mt == media_type::docker_manifest;
  }
  static bool is_config_type(const std::string& mt) {
    return mt == media_type::oci_config || mt == media_type::docker_config;
  }

  // containerd (1.7 and later) refuses a manifest or index whose own mediaType differs
  // from its descriptor's, or a manifest carrying "manifests" or an index carrying
  // "config" or "layers" (any value, null included): refused here before anything is
  // sent. Returns the document's media type: its descriptor's, else its own, else
  // `fallback`.
  Result<std::string> document_type(const std::string& entry, const gojson::Struct& doc,
                                    const std::string& descriptor_type, const char* fallback) const {
    auto own = doc.string("mediaType");
    if (!own) {
      return std::unexpected(in(entry, own.error()));
    }
    if (*own && !descriptor_type.empty() && **own != descriptor_type) {
      return std::unexpected(
          bad(entry, fmt::format("its mediaType \"{}\" differs from its descriptor's \"{}\"", **own, descriptor_type))
              .error());
    }
    const std::string type = !descriptor_type.empty() ? descriptor_type : own->value_or(fallback);
    const bool index = is_index_type(type);
    for (const char* field : {"manifests", "config", "layers"}) {
      auto has = doc.has(field);
      if (!has) {
        return std::unexpected(in(entry, has.error()));
      }
      const bool wrong = index ? std::string_view(field) != "manifests" : std::string_view(field) == "manifests";
      if (*has && wrong) {
        return std::unexpected(bad(entry, fmt::format("a {} must not have a \"{}\" field",
                                                      index ? "index" : "manifest", field)).error());
      }
    }
    return type;
  }

  // A manifest or index blob: read, checked against its descriptor, parsed once per
  // digest.
  Result<const gojson::Value*> metadata_document(const Parsed& desc, const std::string& what) {
    auto bytes = metadata_blob(desc.digest, desc.size, what);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    if (auto it = documents_.find(desc.digest); it != documents_.end()) {
      return &it->second;
    }
    auto root = parse_json("blobs/sha256/" + desc.digest.hex(), **bytes);
    if (!root) {
      return std::unexpected(root.error());
    }
    return &documents_.emplace(desc.digest, std::move(*root)).first->second;
  }

  // One manifest of an OCI layout. `optional_platform` is set when the manifest is one
  // platform of an index: then missing blobs make it unavailable instead of an error.
  Result<void> oci_manifest(const Parsed& desc, const std::vector<std::string>& names,
                            const std::optional<Platform>& platform_hint, bool in_index) {
    const std::string manifest_entry = "blobs/sha256/" + desc.digest.hex();
    auto unavailable = [&](const std::string& reason) -> Result<void> {
      if (!in_index) {
        return bad(manifest_entry, reason);
      }
      set_.unavailable.push_back(UnavailableImage{names, platform_hint.value_or(Platform{}), input_, reason});
      return {};
    };
    if (lookup(manifest_entry) == nullptr) {
      return unavailable(fmt::format("manifest {} is not in the archive", desc.digest.str()));
    }
    auto root = metadata_document(desc, "manifest");
    if (!root) {
      return std::unexpected(root.error());
    }
    const std::string& bytes = verified_.at(desc.digest);
    if (!(*root)->is_object()) {
      return bad(manifest_entry, "manifest is not a JSON object");
    }
    auto m = gojson::Struct::of(**root);
    auto type = document_type(manifest_entry, *m, desc.media_type, media_type::oci_manifest);
    if (!type) {
      return std::unexpected(type.error());
    }
    if (!is_manifest_type(*type)) {
      return bad(manifest_entry, fmt::format("unsupported manifest media type \"{}\"", *type));
    }
    auto config_struct = m->object("config");
    auto layers = m->structs("layers");
    if (!config_struct || !layers) {
      return std::unexpected(in(manifest_entry, !config_struct ? config_struct.error() : layers.error()));
    }
    if (!config_struct->present() || !*layers) {
      return bad(manifest_entry, "manifest without config or layers");
    }
    if ((*layers)->size() > limits_.max_layers) {
      return bad(manifest_entry, fmt::format("manifest lists {} layers; kload refuses more than {} (overlayfs "
                                             "stacks at most 500)",
                                             (*layers)->size(), limits_.max_layers));
    }
    auto config_desc = parse_descriptor(manifest_entry, *config_struct);
    if (!config_desc) {
      return std::unexpected(config_desc.error());
    }
    if (!config_desc->media_type.empty() && !is_config_type(config_desc->media_type)) {
      return bad(manifest_entry, fmt::format("unsupported config media type \"{}\"", config_desc->media_type));
    }
    const std::string config_entry = "blobs/sha256/" + config_desc->digest.hex();
    if (lookup(config_entry) == nullptr) {
      return unavailable(fmt::format("config {} named by manifest {} is not in the archive",
                                     config_desc->digest.str(), desc.digest.str()));
    }
    auto config_blob = metadata_blob(config_desc->digest, config_desc->size, "config");
    if (!config_blob) {
      return std::unexpected(config_blob.error());
    }
    const std::string* config_bytes = *config_blob;
    auto config = parse_config(config_desc->digest, config_entry, *config_bytes);
    if (!config) {
      return std::unexpected(config.error());
    }
    const ParsedConfig& cfg = **config;
    Image image;
    image.names = names;
    image.id = config_desc->digest;
    image.platform = cfg.platform;
    if (platform_hint && image.platform.os.empty()) {
      image.platform = *platform_hint;
    }
    image.config = Descriptor{config_desc->media_type.empty() ? media_type::oci_config : config_desc->media_type,
                              config_desc->digest, config_bytes->size()};
    image.manifest = Descriptor{*type, desc.digest, bytes.size()};
    image.manifest_bytes = bytes;
    image.run = cfg.run;
    image.format = SourceFormat::oci_layout;
    image.source = input_;
    if ((*layers)->size() != cfg.diff_ids.size()) {
      return bad(manifest_entry, fmt::format("manifest lists {} layers but config {} has {} diff_ids",
                                             (*layers)->size(), config_desc->digest.str(), cfg.diff_ids.size()));
    }
    std::vector<std::pair<std::string, const Entry*>> layer_entries;
    for (std::size_t i = 0; i < (*layers)->size(); ++i) {
      auto ld = parse_descriptor(manifest_entry, (**layers)[i]);
      if (!ld) {
        return std::unexpected(ld.error());
      }
      std::string resolved;
      const std::string layer_entry = "blobs/sha256/" + ld->digest.hex();
      const Entry* e = lookup(layer_entry, &resolved);
      if (e == nullptr) {
        return unavailable(fmt::format("layer {} named by manifest {} is not in the archive", ld->digest.str(),
                                       desc.digest.str()));
      }
      if (ld->size && *ld->size != e->size) {
        return bad(layer_entry, fmt::format("layer is {} bytes, the manifest says {}", e->size, *ld->size));
      }
      if (e->computed && *e->computed != ld->digest) {
        return bad(layer_entry, fmt::format("layer bytes hash to {}, the manifest says {}", e->computed->str(),
                                            ld->digest.str()));
      }
      const bool uncompressed = ld->media_type == media_type::oci_layer || ld->media_type == media_type::docker_layer;
      if (uncompressed && ld->digest != cfg.diff_ids[i]) {
        return bad(layer_entry, fmt::format("uncompressed layer {} disagrees with the config's diff_id {}",
                                            ld->digest.str(), cfg.diff_ids[i].str()));
      }
      image.layers.push_back(Layer{Descriptor{ld->media_type, ld->digest, e->size}, cfg.diff_ids[i]});
      layer_entries.emplace_back(resolved, e);
    }
    add_memory_blob(desc.digest, manifest_entry, bytes);
    add_memory_blob(config_desc->digest, config_entry, *config_bytes);
    for (std::size_t i = 0; i < layer_entries.size(); ++i) {
      const auto& [name, e] = layer_entries[i];
      add_blob(image.layers[i].blob.digest, e->size, location_of(name, *e), e->computed);
    }
    add_image(std::move(image));
    return {};
  }

  Result<void> oci_descriptor(const gojson::Struct& d, const std::string& where, const std::vector<std::string>& names,
                              const std::optional<Platform>& platform, bool in_index, int depth) {
    if (depth > 4) {
      return bad(where, "indexes nested more than 4 deep");
    }
    auto desc = parse_descriptor(where, d);
    if (!desc) {
      return std::unexpected(desc.error());
    }
    if (!desc->media_type.empty() && !is_index_type(desc->media_type) && !is_manifest_type(desc->media_type)) {
      // containerd skips children of a type it does not know; so does kload, but only
      // inside an index: what the user named must be an image.
      if (depth > 0) {
        set_.unavailable.push_back(UnavailableImage{names, platform.value_or(Platform{}), input_,
                                                    fmt::format("unsupported media type \"{}\"", desc->media_type)});
        return {};
      }
      return bad(where, fmt::format("unsupported media type \"{}\" for {}", desc->media_type, desc->digest.str()));
    }
    if (!is_index_type(desc->media_type)) {
      return oci_manifest(*desc, names, platform, in_index);
    }
    const std::string entry = "blobs/sha256/" + desc->digest.hex();
    if (lookup(entry) == nullptr) {
      if (in_index) {
        set_.unavailable.push_back(UnavailableImage{names, platform.value_or(Platform{}), input_,
                                                    fmt::format("index {} is not in the archive", desc->digest.str())});
        return {};
      }
      return bad(entry, fmt::format("index {} named by {} is not in the archive", desc->digest.str(), where));
    }
    auto root = metadata_document(*desc, "index");
    if (!root) {
      return std::unexpected(root.error());
    }
    if (!(*root)->is_object()) {
      return bad(entry, "index is not a JSON object");
    }
    auto index = gojson::Struct::of(**root);
    if (auto type = document_type(entry, *index, desc->media_type, media_type::oci_index); !type) {
      return std::unexpected(type.error());
    }
    auto children = index->structs("manifests");
    if (!children) {
      return std::unexpected(in(entry, children.error()));
    }
    if (!*children) {
      return bad(entry, "index without manifests");
    }
    add_memory_blob(desc->digest, entry, verified_.at(desc->digest));
    for (const auto& child : **children) {
      auto child_platform = descriptor_platform(child);
      if (!child_platform) {
        return std::unexpected(in(entry, child_platform.error()));
      }
      if (auto r = oci_descriptor(child, entry, names, *child_platform, true, depth + 1); !r) {
        return r;
      }
    }
    return {};
  }

  Result<std::vector<std::string>> normalize_names(const std::string& entry, const std::vector<std::string>& raw) {
    std::vector<std::string> normalized;
    for (const auto& n : raw) {
      auto norm = normalize_image_name(n);
      if (!norm) {
        return std::unexpected(bad(entry, norm.error().message).error());
      }
      normalized.push_back(std::move(*norm));
    }
    std::vector<std::string> out;
    add_new_names(out, normalized);
    return out;
  }

  Result<void> read_oci(const gojson::Value& root) {
    auto index = gojson::Struct::of(root);
    if (!index || !root.is_object()) {
      return bad("index.json", "not a JSON object");
    }
    auto manifests = index->structs("manifests");
    if (!manifests) {
      return std::unexpected(in("index.json", manifests.error()));
    }
    if (!*manifests) {
      return bad("index.json", "no \"manifests\" array");
    }
    for (const auto& d : **manifests) {
      auto annotations = d.string_map("annotations");
      if (!annotations) {
        return std::unexpected(in("index.json", annotations.error()));
      }
      std::vector<std::string> raw;
      if (auto it = annotations->find("io.containerd.image.name"); it != annotations->end()) {
        raw.push_back(it->second);
      } else if (auto ref = annotations->find("org.opencontainers.image.ref.name");
                 ref != annotations->end() && looks_like_reference(ref->second)) {
        raw.push_back(ref->second);
      }
      auto names = normalize_names("index.json", raw);
      if (!names) {
        return std::unexpected(names.error());
      }
      // A descriptor that names its platform is one platform of a multi-platform image:
      // if its blobs are absent it is unavailable, not an error.
      auto platform = descriptor_platform(d);
      if (!platform) {
        return std::unexpected(in("index.json", platform.error()));
      }
      if (auto r = oci_descriptor(d, "index.json", *names, *platform, platform->has_value(), 0); !r) {
        return r;
      }
    }
    return {};
  }

  // The docker schema-2 manifest containerd's importer synthesises for a docker
  // archive: compact JSON, keys in Go struct order, so its digest equals a full import's.
  static std::string docker_manifest(const Descriptor& config, const std::vector<Layer>& layers) {
    nlohmann::ordered_json m;
    m["schemaVersion"] = 2;
    m["mediaType"] = media_type::docker_manifest;
    m["config"] = {{"mediaType", config.media_type}, {"digest", config.digest.str()}, {"size", config.size}};
    m["layers"] = nlohmann::ordered_json::array();
    for (const auto& l : layers) {
      m["layers"].push_back({{"mediaType", l.blob.media_type}, {"digest", l.blob.digest.str()}, {"size", l.blob.size}});
    }
    return m.dump();
  }

  Result<std::string> peek(const Entry& e, std::size_t n) {
    if (e.memory) {
      return e.memory->substr(0, n);
    }
    std::string out(std::min<std::uint64_t>(n, e.size), '\0');
    const int fd = in_place_ ? source_.fd : ::open(e.spool.c_str(), O_RDONLY | O_CLOEXEC);
    const ssize_t got = ::pread(fd, out.data(), out.size(), in_place_ ? static_cast<off_t>(e.offset) : 0);
    if (!in_place_ && fd >= 0) {
      ::close(fd);
    }
    if (got != static_cast<ssize_t>(out.size())) {
      return std::unexpected(util::Error{ErrorKind::io, "cannot read"});
    }
    if (in_place_) {
      source_.bytes_read += out.size();
    }
    return out;
  }

  // The digest a docker-archive file name promises: "<hex>.tar", "<hex>.json" or
  // "blobs/sha256/<hex>".
  static std::optional<Digest> digest_from_name(const std::string& name) {
    auto base = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
    if (base.ends_with(".tar") || base.ends_with(".json")) {
      base = base.substr(0, base.rfind('.'));
    }
    return Digest::parse_hex(base);
  }

  // One entry of a docker-save manifest.json, as containerd's importer and `docker
  // load` decode it.
  struct DockerEntry {
    std::string config;
    std::vector<std::string> repo_tags;
    std::vector<std::string> layers;
  };

  Result<std::vector<DockerEntry>> decode_docker_manifest(const gojson::Value& root) const {
    auto entries = gojson::Struct::elements(root);
    if (!entries) {
      return std::unexpected(bad("manifest.json", entries.error().message).error());
    }
    std::vector<DockerEntry> out;
    for (std::size_t idx = 0; idx < entries->size(); ++idx) {
      const auto& m = (*entries)[idx];
      const std::string where = fmt::format("manifest.json[{}]", idx);
      auto config = m.string("Config");
      auto tags = m.strings("RepoTags");
      auto layers = m.strings("Layers");
      if (!config || !tags || !layers) {
        return std::unexpected(in(where, !config ? config.error() : !tags ? tags.error() : layers.error()));
      }
      if (!*config || !*layers) {
        return std::unexpected(bad(where, "needs \"Config\" and \"Layers\"").error());
      }
      if ((*layers)->size() > limits_.max_layers) {
        return std::unexpected(bad(where, fmt::format("lists {} layers; kload refuses more than {} (overlayfs "
                                                      "stacks at most 500)",
                                                      (*layers)->size(), limits_.max_layers)).error());
      }
      out.push_back(DockerEntry{**config, tags->value_or(std::vector<std::string>{}), **layers});
    }
    return out;
  }

  // A docker-archive config: its bytes, read and hashed once per entry however many
  // images name it. Identified by the digest of its bytes, as containerd and `docker
  // load` identify it; a file name promising another digest only earns a warning.
  struct DockerConfig {
    Digest digest;
    std::string entry;
    std::string bytes;
  };

  Result<const DockerConfig*> docker_config(const std::string& config_name, const std::string& where) {
    std::string config_entry;
    const Entry* ce = lookup(config_name, &config_entry);
    if (ce == nullptr) {
      return std::unexpected(bad(config_name, fmt::format("config named by {} is not in the archive", where)).error());
    }
    if (auto it = docker_configs_.find(config_entry); it != docker_configs_.end()) {
      return &it->second;
    }
    auto config_bytes = entry_bytes(config_name, *ce);
    if (!config_bytes) {
      return std::unexpected(config_bytes.error());
    }
    const auto config_digest = util::Sha256::of(*config_bytes);
    if (auto claimed = digest_from_name(config_name); claimed && *claimed != config_digest) {
      set_.warnings.push_back(fmt::format("{}: {}: config bytes hash to {}, not the {} its name says; the image is "
                                          "identified by its bytes, as containerd and docker load do",
                                          input_, config_name, config_digest.str(), claimed->str()));
    }
    return &docker_configs_.emplace(config_entry, DockerConfig{config_digest, config_entry, std::move(*config_bytes)})
                .first->second;
  }

  Result<void> read_docker(const std::vector<DockerEntry>& manifest) {
    for (std::size_t idx = 0; idx < manifest.size(); ++idx) {
      const auto& m = manifest[idx];
      const std::string where = fmt::format("manifest.json[{}]", idx);
      auto dc = docker_config(m.config, where);
      if (!dc) {
        return std::unexpected(dc.error());
      }
      const Digest config_digest = (*dc)->digest;
      auto config = parse_config(config_digest, m.config, (*dc)->bytes);
      if (!config) {
        return std::unexpected(config.error());
      }
      const ParsedConfig& cfg = **config;
      const auto& layer_names = m.layers;
      if (layer_names.size() != cfg.diff_ids.size()) {
        return bad(where, fmt::format("lists {} layers but config {} has {} diff_ids", layer_names.size(),
                                      config_digest.str(), cfg.diff_ids.size()));
      }
      Image image;
      auto names = normalize_names(where, m.repo_tags);
      if (!names) {
        return std::unexpected(names.error());
      }
      image.names = *names;
      image.id = config_digest;
      image.platform = cfg.platform;
      image.config = Descriptor{media_type::docker_config, config_digest, (*dc)->bytes.size()};
      image.run = cfg.run;
      image.format = SourceFormat::docker_archive;
      image.source = input_;
      std::vector<std::pair<std::string, const Entry*>> layer_entries;
      for (std::size_t i = 0; i < layer_names.size(); ++i) {
        const auto& lname = layer_names[i];
        std::string resolved;
        const Entry* e = lookup(lname, &resolved);
        if (e == nullptr) {
          return bad(lname, fmt::format("layer {} named by {} is not in the archive", cfg.diff_ids[i].str(), where));
        }
        auto layer = docker_layer(lname, resolved, *e, cfg.diff_ids[i]);
        if (!layer) {
          return std::unexpected(layer.error());
        }
        image.layers.push_back(*layer);
        layer_entries.emplace_back(resolved, e);
      }
      image.manifest_bytes = docker_manifest(image.config, image.layers);
      image.manifest = Descriptor{media_type::docker_manifest, util::Sha256::of(image.manifest_bytes),
                                  image.manifest_bytes.size()};
      add_memory_blob(image.manifest.digest, where, image.manifest_bytes);
      add_memory_blob(config_digest, (*dc)->entry, (*dc)->bytes);
      for (std::size_t i = 0; i < layer_entries.size(); ++i) {
        const auto& [name, e] = layer_entries[i];
        std::optional<Digest> computed = e->computed;
        if (!computed && image.layers[i].blob.media_type == media_type::docker_layer_gzip) {
          computed = image.layers[i].blob.digest;
        }
        add_blob(image.layers[i].blob.digest, e->size, location_of(name, *e), computed);
      }
      add_image(std::move(image));
    }
    return {};
  }

  // One layer of a docker archive: plain tar (its digest is the diff_id) or gzip (hashed
  // once per entry, however many images use it).
  Result<Layer> docker_layer(const std::string& lname, const std::string& resolved, const Entry& e,
                             const Digest& diff_id) {
    auto head = peek(e, 2);
    if (!head) {
      return std::unexpected(bad(lname, "cannot read layer").error());
    }
    Layer layer;
    layer.diff_id = diff_id;
    layer.blob.size = e.size;
    if (head->size() == 2 && static_cast<unsigned char>((*head)[0]) == 0x1f &&
        static_cast<unsigned char>((*head)[1]) == 0x8b) {
      // A compressed layer: its digest is not the diff_id and nothing names it, so it
      // has to be hashed now.
      layer.blob.media_type = media_type::docker_layer_gzip;
      if (auto it = hashed_layers_.find(resolved); it != hashed_layers_.end()) {
        layer.blob.digest = it->second;
        return layer;
      }
      auto d = e.computed ? *e.computed : hash_entry(e);
      if (!d) {
        return std::unexpected(bad(lname, "cannot read layer").error());
      }
      layer.blob.digest = *d;
      hashed_layers_.emplace(resolved, *d);
      return layer;
    }
    layer.blob.media_type = media_type::docker_layer;
    layer.blob.digest = layer.diff_id;
    const auto claimed = digest_from_name(resolved);
    if (claimed && *claimed != layer.diff_id) {
      return std::unexpected(bad(lname, fmt::format("file name says {} but the config's diff_id is {}",
                                                    claimed->str(), layer.diff_id.str())).error());
    }
    if (e.computed && *e.computed != layer.diff_id) {
      return std::unexpected(bad(lname, fmt::format("layer bytes hash to {} but the config's diff_id is {}",
                                                    e.computed->str(), layer.diff_id.str())).error());
    }
    return layer;
  }

  std::optional<Digest> hash_entry(const Entry& e) {
    util::Sha256 h;
    std::vector<char> buf(1 << 20);
    std::uint64_t done = 0;
    const int fd = in_place_ ? source_.fd : ::open(e.spool.c_str(), O_RDONLY | O_CLOEXEC);
    const std::uint64_t base = in_place_ ? e.offset : 0;
    while (done < e.size) {
      const auto want = std::min<std::uint64_t>(buf.size(), e.size - done);
      const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(base + done));
      if (n <= 0) {
        break;
      }
      h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
      done += static_cast<std::uint64_t>(n);
    }
    if (!in_place_ && fd >= 0) {
      ::close(fd);
    }
    if (in_place_) {
      source_.bytes_read += done;
    }
    if (done != e.size) {
      return std::nullopt;
    }
    return h.finish();
  }

  void add_image(Image image) {
    for (auto& existing : set_.images) {
      if (existing.id == image.id && existing.manifest.digest == image.manifest.digest) {
        add_new_names(existing.names, image.names);
        return;
      }
    }
    set_.images.push_back(std::move(image));
  }

  Result<gojson::Value> top_document(const char* name, const Entry& e) {
    auto bytes = entry_bytes(name, e);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    return parse_json(name, *bytes);
  }

  Result<void> interpret() {
    const Entry* index_entry = lookup("index.json");
    const Entry* manifest_entry = lookup("manifest.json");
    if (index_entry == nullptr && manifest_entry == nullptr) {
      return bad("", "neither manifest.json nor index.json found: not a docker or OCI image archive");
    }
    std::optional<std::vector<DockerEntry>> docker;
    if (manifest_entry != nullptr) {
      auto root = top_document("manifest.json", *manifest_entry);
      if (!root) {
        return std::unexpected(root.error());
      }
      auto entries = decode_docker_manifest(*root);
      if (!entries) {
        return std::unexpected(entries.error());
      }
      docker = std::move(*entries);
    }
    if (index_entry != nullptr) {
      auto root = top_document("index.json", *index_entry);
      if (!root) {
        return std::unexpected(root.error());
      }
      // An index that names nothing beside a manifest.json that names images: the
      // archive is a docker save, read as `docker load` reads it.
      if (docker && !docker->empty() && names_nothing(*root)) {
        return read_docker(*docker);
      }
      if (docker) {
        for (const auto& m : *docker) {
          // Docker >= 25 names a manifest only through its config/layer paths; map the
          // config path back so index entries can borrow the repo tags.
          if (const auto d = digest_from_name(m.config)) {
            config_tags_[*d] = m.repo_tags;
          }
        }
      }
      if (auto r = read_oci(*root); !r) {
        return r;
      }
      for (auto& image : set_.images) {
        if (image.names.empty() && image.source == input_) {
          if (auto it = config_tags_.find(image.id); it != config_tags_.end()) {
            auto names = normalize_names("manifest.json", it->second);
            if (!names) {
              return std::unexpected(names.error());
            }
            image.names = *names;
          }
        }
      }
      return {};
    }
    return read_docker(*docker);
  }

  // True when index.json lists no manifest (an empty or absent "manifests").
  static bool names_nothing(const gojson::Value& root) {
    auto index = gojson::Struct::of(root);
    if (!index || !root.is_object()) {
      return false;
    }
    auto manifests = index->structs("manifests");
    return manifests && (!*manifests || (*manifests)->empty());
  }

  std::string input_;
  ImageSet& set_;
  const ReadLimits& limits_;
  int given_fd_ = -1;
  Source source_;
  std::uint64_t file_size_ = 0;
  bool in_place_ = false;
  std::map<std::string, Entry> entries_;
  std::string last_entry_;
  std::uint64_t entry_count_ = 0;
  std::uint64_t memory_held_ = 0; // bytes of streamed entries kept in memory
  std::shared_ptr<util::TempDir> spool_;
  std::uint64_t spool_count_ = 0;
  std::map<Digest, std::vector<std::string>> config_tags_;
  // Each distinct metadata document is read, hashed and parsed once, however many
  // images name it (a manifest.json of 100 entries naming one 15 MiB config).
  std::map<Digest, std::string> verified_;            // metadata blobs, digest-checked
  std::map<Digest, gojson::Value> documents_;         // manifests and indexes, parsed
  std::map<Digest, ParsedConfig> configs_;            // image configs, decoded
  std::map<std::string, DockerConfig> docker_configs_;  // by entry name
  std::map<std::string, Digest> hashed_layers_;       // gzip docker layers, by entry name
  ReadStats stats_;
};

} // namespace

namespace {
Result<ReadStats> read_into(const std::string& input, int fd, ImageSet& set, const ReadLimits& limits) {
  util::install_cleanup_signal_handlers();
  ImageSet scratch;  // nothing of a failed archive reaches the caller's set
  scratch.blobs = set.blobs;
  scratch.spool_owner = set.spool_owner;
  Reader reader(input, scratch, limits, fd);
  auto stats = reader.run();
  if (!stats) {
    return stats;
  }
  for (auto& image : scratch.images) {
    bool merged = false;
    for (auto& existing : set.images) {
      if (existing.id == image.id && existing.manifest.digest == image.manifest.digest) {
        add_new_names(existing.names, image.names);
        merged = true;
      }
    }
    if (!merged) {
      set.images.push_back(std::move(image));
    }
  }
  for (auto& u : scratch.unavailable) {
    set.unavailable.push_back(std::move(u));
  }
  for (auto& w : scratch.warnings) {
    set.warnings.push_back(std::move(w));
  }
  set.blobs = std::move(scratch.blobs);
  set.spool_owner = scratch.spool_owner;
  return stats;
}
} // namespace

Result<ReadStats> read_archive(const std::string& input, ImageSet& set, const ReadLimits& limits) {
  return read_into(input, -1, set, limits);
}

Result<ReadStats> read_archive_fd(int fd, const std::string& name, ImageSet& set, const ReadLimits& limits) {
  return read_into(name, fd, set, limits);
}

} // namespace kload::format
