#pragma once
// What the fuzz targets share: a private scratch directory, small read limits, and
// the steps a successful archive read goes on to (verify, lint, thin-archive writing).
//
// Each target defines `int kload_fuzz_<target>(const std::uint8_t*, std::size_t)`.
// Built as a libFuzzer binary, the target's source also defines LLVMFuzzerTestOneInput
// calling it; built with KLOAD_FUZZ_REPLAY (the replay test) it does not, so all
// targets link into one test binary that replays the kept inputs.

#include "kload/format/archive_reader.h"
#include "kload/format/model.h"
#include "kload/util/error.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kload::fuzz {

// Small limits so that one input cannot take the fuzzer's memory or time, and a small
// in-memory threshold so that small inputs exercise spooling too.
inline constexpr format::ReadLimits limits{.max_metadata_bytes = 1u << 20,
                                           .max_entries = 10000,
                                           .max_expansion_ratio = 1000,
                                           .ratio_grace = 1u << 20,
                                           .max_expanded_bytes = 256u << 20,
                                           .memory_entry_bytes = 1024};

// A private directory (under $TMPDIR), removed at exit.
const std::filesystem::path& scratch_dir();

// Writes `size` bytes to `path` (created 0600, truncated). Aborts on failure: the
// fuzzer's own plumbing failing is not a finding.
void write_file(const std::filesystem::path& path, const void* data, std::size_t size);

// Reads `path` through read_archive("-") with the file as standard input: the
// streaming path without a pipe or a feeding thread.
util::Result<format::ReadStats> read_as_stdin(const std::filesystem::path& path, format::ImageSet& set);

// Reads `path` as a file and as standard input; aborts when both accept it but find
// different images. Whatever was accepted then goes through `exercise`.
void read_both_ways(const std::filesystem::path& path);

// Everything later steps do with a set that was read successfully: verify its blobs,
// decode and lint run configs, describe platforms, write a thin archive to /dev/null.
void exercise(format::ImageSet& set);

// What a read found, independent of where the input came from.
std::string signature(const format::ImageSet& set);

// `data` cut at every occurrence of `separator`.
std::vector<std::string_view> split(std::string_view data, std::string_view separator);

// Whether the last input was accepted: read into at least one image by both reads
// (archive targets), parsed (inspect output), listed into an inventory with images
// (ctr output). The replay test checks that every seed named valid-* is, so that a seed
// that drifts into an early rejection, and with it most of the target, is noticed.
void set_accepted(bool accepted);
bool accepted();

// A structural invariant of kload broken on the fuzzer's input: print and abort.
[[noreturn]] void fail(const std::string& what);

} // namespace kload::fuzz
