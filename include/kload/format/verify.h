#pragma once
// Proving blobs: SHA-256 of their bytes, many blobs in parallel.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <functional>
#include <vector>

namespace kload::format {

struct VerifyStats {
  std::uint64_t blobs_hashed = 0;  // by this call
  std::uint64_t bytes_hashed = 0;
  std::uint64_t blobs_checked = 0;  // of `which`, distinct, now proven: hashed by this call or before
  std::uint64_t bytes_checked = 0;
  std::uint64_t bytes_decompressed = 0;  // verify_diff_ids: uncompressed bytes checked
};

// Hashes every blob in `which` that has not been hashed yet in this run, on up to
// `jobs` threads, and records the result in Blob::computed. Error (bad_input): every
// mismatch and read failure found, one line each (input, entry, expected and actual
// digest), joined with newlines; blobs that did hash are still recorded.
util::Result<VerifyStats> verify_blobs(ImageSet& set, const std::vector<util::Digest>& which,
                                       unsigned jobs);

// Decompresses every compressed layer (gzip, zstd) of `images` once, on up to `jobs`
// threads, and checks the SHA-256 of the result against the config's diff_id.
// Uncompressed layers need no work here: their digest is their diff_id. Error
// (bad_input): each disagreement (input, entry, both digests) or unreadable layer.
util::Result<VerifyStats> verify_diff_ids(const ImageSet& set, unsigned jobs);

// Calls `sink` with successive chunks of the blob's bytes (at most 1 MiB each).
// Error (io): the bytes cannot be read; or whatever `sink` returns.
util::Result<void> read_blob(const Blob& blob,
                             const std::function<util::Result<void>(std::string_view)>& sink);

} // namespace kload::format
