#pragma once
// Proving blobs: SHA-256 of their bytes, many blobs in parallel.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <functional>
#include <vector>

namespace kload::format {

struct VerifyStats {
  std::uint64_t blobs_hashed = 0;
  std::uint64_t bytes_hashed = 0;
};

// Hashes every blob in `which` that has not been hashed yet in this run, on up to
// `jobs` threads, and records the result in Blob::computed. Error (bad_input): every
// mismatch and read failure found, one line each (input, entry, expected and actual
// digest), joined with newlines; blobs that did hash are still recorded.
util::Result<VerifyStats> verify_blobs(ImageSet& set, const std::vector<util::Digest>& which,
                                       unsigned jobs);

// Calls `sink` with successive chunks of the blob's bytes (at most 1 MiB each).
// Error (io): the bytes cannot be read; or whatever `sink` returns.
util::Result<void> read_blob(const Blob& blob,
                             const std::function<util::Result<void>(std::string_view)>& sink);

} // namespace kload::format
