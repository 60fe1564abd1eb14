#pragma once
// Reads image archives (docker save old and new, skopeo docker-archive, OCI archives,
// multi-platform and nested indexes; plain, gzip, zstd, xz or bzip2 compressed; a file
// or "-" for stdin) into an ImageSet. Uses libarchive for the tar format.
//
// A seekable uncompressed file is indexed without reading layer data: only headers
// and metadata are read, and blobs are later read in place with pread. Anything else
// is decompressed exactly once; entries are hashed as they stream by, and large ones
// spooled to a private temporary directory owned by the ImageSet.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <cstdint>
#include <string>

namespace kload::format {

struct ReadLimits {
  std::uint64_t max_metadata_bytes = 16ull << 20;  // one JSON document
  std::uint64_t max_entries = 200000;
  // Layers of one image. The kernel's overlayfs stacks at most 500 lower directories
  // (Docker itself refuses more than 125), so a deeper image could never run; refusing
  // it early also bounds the work a hostile manifest can ask for.
  std::uint64_t max_layers = 500;
  // A compressed input expanding beyond this ratio after `ratio_grace` bytes is
  // rejected as a decompression bomb.
  std::uint64_t max_expansion_ratio = 1000;
  std::uint64_t ratio_grace = 1ull << 30;
  std::uint64_t max_expanded_bytes = 1ull << 42;   // 4 TiB
  std::uint64_t memory_entry_bytes = 1ull << 20;   // smaller entries stay in memory
};

struct ReadStats {
  std::uint64_t bytes_read = 0;      // bytes read from the input file or stream
  std::uint64_t bytes_expanded = 0;  // bytes of tar after decompression
  std::uint64_t bytes_spooled = 0;   // bytes written to the spool directory
  std::uint64_t bytes_hashed = 0;    // bytes hashed while streaming
  bool indexed_in_place = false;     // true for the seekable, uncompressed path
  std::uint64_t documents_parsed = 0; // JSON documents parsed: each distinct one once
};

// Reads one archive and adds its images, blobs and warnings to `set`. Error
// (bad_input): a one-line message naming the input and the entry: truncated or
// corrupt archive (a header whose size misframes the next one included), unsafe entry
// (absolute path, "..", hard link, device, a symbolic link leading outside the
// archive), a duplicate entry, missing or invalid manifest.json/index.json, JSON
// nested more than 10,000 levels deep or starting with a byte order mark, a field of a
// type Go would refuse, a document Go versions decode differently (see go_json.h), a
// manifest, index or config of an unsupported media type, a manifest or config naming
// an absent blob, a manifest or config (OCI) whose bytes or size do not match its
// descriptor, more than ReadLimits::max_layers layers in an image, limits exceeded.
// Every JSON document is decoded as containerd's Go decoder decodes it (go_json.h). A
// docker-save config is identified by the digest of its bytes, whatever its file name
// says (a warning then); an index.json naming nothing beside a manifest.json naming
// images is read as a docker save, as `docker load` does.
util::Result<ReadStats> read_archive(const std::string& input, ImageSet& set,
                                     const ReadLimits& limits = {});

// As read_archive, from an open file descriptor (a pipe from `docker save`, say),
// always streamed; `name` stands for the input in messages. The descriptor is not
// closed.
util::Result<ReadStats> read_archive_fd(int fd, const std::string& name, ImageSet& set,
                                        const ReadLimits& limits = {});

} // namespace kload::format
