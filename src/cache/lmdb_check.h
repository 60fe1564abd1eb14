#pragma once
// Checks of an LMDB data file's structure made with pread, never through LMDB's map:
// LMDB trusts every page number, offset and size it reads, so a damaged page can
// make it read out of bounds (a crash), loop, or hand back nonsense. Private to the
// cache.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace kload::cache::lmdb_check {

// Why the meta pages of `file` cannot be trusted (not LMDB, damaged, or a last page
// beyond the end of the file: a truncated map would fault, not fail), or empty when
// they look sound or the file does not exist.
std::string check_meta(const std::filesystem::path& file);

// Why the B-trees of the snapshot whose transaction ID is `txnid` are damaged, or
// empty when every page reachable from it (main and free-list databases, overflow
// pages) is sound: page numbers within the file, page headers, node offsets and sizes
// within their page, depths and counts that match the meta page, each page used once,
// free lists sorted and in range. nullopt: no meta page holds that snapshot any more
// (two later commits overwrote it), so it cannot be checked. The caller must hold a
// read transaction on that snapshot, so that no writer reuses its pages meanwhile.
std::optional<std::string> check_tree(const std::filesystem::path& file, std::uint64_t txnid);

} // namespace kload::cache::lmdb_check
