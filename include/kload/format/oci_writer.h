#pragma once
// Writes a "thin" OCI image archive straight into a file descriptor (a pipe to
// `ctr images import`): oci-layout, index.json naming each image's target (its index
// or manifest, Image::target) through the io.containerd.image.name annotation, the
// indexes down to each manifest, every manifest and config, and only the layer blobs
// the receiving node lacks. Other platforms an index lists stay behind: an import for
// one platform never reads them.

#include "kload/format/model.h"
#include "kload/util/error.h"
#include "kload/util/zstd_stream.h"

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

namespace kload::format {

// One image in the archive and the name containerd will give it.
struct ThinEntry {
  const Image* image = nullptr;
  std::string ref;
};

struct ThinStats {
  std::uint64_t layers_sent = 0;
  std::uint64_t layer_bytes = 0;  // layer payload only
  std::uint64_t total_bytes = 0;  // everything written, tar framing included
  // Every blob written, in order: each was hashed by the read that fed its entry and
  // matched its digest before the entry's last byte went out.
  std::vector<util::Digest> proven;
};

// Called after each chunk written, with the layer payload bytes written so far.
using ProgressFn = std::function<void(std::uint64_t layer_bytes_done)>;

// Writes the archive for `entries` to `fd`, including layer blobs only when their
// digest is in `layers` (each once, however many images share it). Blob bytes come
// from `set` and are hashed by the read that sends them, each entry's last byte held
// back until its hash matches; index.json comes after every blob, so a failure leaves
// a cut stream that names no image and holds no mismatching blob whole. Error: a blob
// missing from the set (bad_input) or unreadable (io); a blob whose bytes do not hash
// to its digest (bad_input, naming input, entry and both digests: "content is ...,
// expected ..." or, when an earlier read had proven it (Blob::computed), "the input
// changed since it was read"); or the pipe closed early (io; the reader's own error
// usually says more).
util::Result<ThinStats> write_thin_archive(int fd, const ImageSet& set, const std::vector<ThinEntry>& entries,
                                           const std::unordered_set<util::Digest>& layers,
                                           const ProgressFn& progress = {});

// The same archive, written to `out` (a compressor in front of the pipe, say). A
// failure stops at once: nothing more reaches `out`, which is left as cut as the
// archive is. Errors as above, the sink's instead of the pipe's.
util::Result<ThinStats> write_thin_archive(const util::ByteSink& out, const ImageSet& set,
                                           const std::vector<ThinEntry>& entries,
                                           const std::unordered_set<util::Digest>& layers,
                                           const ProgressFn& progress = {});

// The same archive in two parts, for one body sent to many nodes whose tails differ
// (each node's own staging names): write_thin_body writes oci-layout and the blobs of
// `images` (their metadata, and their layers in `layers`), the archive's entries up to
// index.json, with no end; write_thin_tail writes index.json naming `entries` and the
// end of the archive. A body followed by a tail is the archive write_thin_archive
// writes, byte for byte; a body alone names no image. Errors as above; the tail
// returns the bytes it wrote, and the body's total_bytes counts the body only.
util::Result<ThinStats> write_thin_body(const util::ByteSink& out, const ImageSet& set,
                                        const std::vector<const Image*>& images,
                                        const std::unordered_set<util::Digest>& layers,
                                        const ProgressFn& progress = {});
util::Result<std::uint64_t> write_thin_tail(const util::ByteSink& out, const std::vector<ThinEntry>& entries);

// The index.json of such an archive (exposed for tests).
std::string thin_index_json(const std::vector<ThinEntry>& entries);

} // namespace kload::format
