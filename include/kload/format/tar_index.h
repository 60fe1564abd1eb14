#pragma once
// The bytes half of read_archive: one pass over a tar (plain or compressed, a file or
// a stream) that records every entry, its offset in place or its spool file, and gives
// one way to read an entry's bytes. Knows nothing of image layouts; the layout half
// (archive_reader.cc) interprets the entries it indexes.

#include "kload/format/archive_reader.h"
#include "kload/format/model.h"
#include "kload/util/digest.h"
#include "kload/util/fd.h"
#include "kload/util/error.h"
#include "kload/util/temp_dir.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct archive;        // libarchive's reader
struct archive_entry;  // one header it read

namespace kload::format {

// The bad_input error "INPUT: ENTRY: WHAT" (or "INPUT: WHAT" when `entry` is empty).
util::Error archive_error(const std::string& input, const std::string& entry, const std::string& what);

// One entry of the tar, as far as later steps care.
struct TarEntry {
  enum class Type { file, symlink };
  Type type = Type::file;
  std::string link_target;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;                   // in place: where the data starts in the input
  std::shared_ptr<const std::string> memory;  // small streamed entries, and top-level metadata
  std::filesystem::path spool;                // streamed: large entries
  std::optional<util::Digest> computed;       // hashed while streaming
};

// The input as libarchive's callbacks read it, counting what is read.
struct TarSource {
  util::Fd fd;
  bool seekable = false;
  std::uint64_t bytes_read = 0;  // by the scan, and in place afterwards
  std::vector<char> buffer;
};

class TarIndex {
public:
  // `input` names the input in messages; `fd` >= 0 is read (a dup of it) instead of
  // opening `input` ("-" is standard input).
  TarIndex(std::string input, const ReadLimits& limits, int fd = -1);
  ~TarIndex();
  TarIndex(const TarIndex&) = delete;
  TarIndex& operator=(const TarIndex&) = delete;

  // Reads every header once: in place for a plain tar in a regular file (only the
  // top-level metadata documents are read), else streamed, hashing every entry and
  // keeping it in memory or spooling it. Error (bad_input unless said): cannot open;
  // corrupt or truncated; unsafe, duplicate or special entries; limits exceeded;
  // spool space short; io for a spool file that cannot be written.
  util::Result<void> scan();

  // The regular entry `raw` names, following symbolic links within the archive;
  // nullptr when absent or escaping. `resolved` receives the entry's own name.
  const TarEntry* lookup(const std::string& raw, std::string* resolved = nullptr) const;

  // The whole of entry `e` (named `name` in messages), at most `max` bytes. Error:
  // larger than `max` ("too large for a metadata document"), or unreadable.
  util::Result<std::string> bytes(const std::string& name, const TarEntry& e, std::uint64_t max);
  // The first `n` bytes of `e` (fewer if it is shorter). Error (io): unreadable.
  util::Result<std::string> peek(const TarEntry& e, std::size_t n);
  // The SHA-256 of `e`'s bytes; nullopt when unreadable or short.
  std::optional<util::Digest> hash(const TarEntry& e);
  // Where `e`'s bytes are, for the ImageSet.
  [[nodiscard]] BlobLocation location_of(const std::string& name, const TarEntry& e) const;

  [[nodiscard]] const std::string& input() const { return input_; }
  // The counters of the read so far (bytes_read includes reads after the scan).
  [[nodiscard]] ReadStats stats() const;
  // The spool directory, if anything was spooled; whoever keeps the blobs keeps it.
  [[nodiscard]] std::shared_ptr<util::TempDir> spool() const { return spool_; }

private:
  class EntryFile;

  util::Result<void> bad(const std::string& entry, const std::string& what) const {
    return std::unexpected(archive_error(input_, entry, what));
  }
  util::Result<void> open_input();
  util::Result<std::filesystem::path> spool_path();
  util::Result<void> check_expansion(::archive* a);
  util::Result<void> add_entry(::archive* a, ::archive_entry* ae);
  util::Result<void> store_entry_data(::archive* a, const std::string& name, TarEntry& e);
  util::Result<std::string> read_in_memory(::archive* a, const std::string& name, std::uint64_t size);

  std::string input_;
  const ReadLimits& limits_;
  int given_fd_ = -1;
  TarSource source_;
  std::uint64_t file_size_ = 0;
  bool in_place_ = false;
  std::map<std::string, TarEntry> entries_;
  std::string last_entry_;
  std::uint64_t entry_count_ = 0;
  std::uint64_t memory_held_ = 0;  // bytes of streamed entries kept in memory
  std::shared_ptr<util::TempDir> spool_;
  std::uint64_t spool_count_ = 0;
  ReadStats stats_;
};

} // namespace kload::format
