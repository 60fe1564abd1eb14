#pragma once
// The inventory cache: what kload learned about each node (blobs, image names and the
// image IDs they hold) and which digests of each input file it has already proven.
// An LMDB environment shared safely by concurrent kload processes. Everything in it
// is a hint that is checked against the node, never the truth.

#include "kload/util/digest.h"
#include "kload/util/error.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace kload::cache {

// What kload knows of one image name on a node.
struct NameRecord {
  util::Digest target;               // manifest or index the name points to
  std::vector<util::Digest> ids;     // image IDs (config digests) it holds
  bool complete = false;
  bool by_kload = false;             // kload set this name itself
  std::int64_t learned_at = 0;       // unix seconds
};

// What kload knows of one node.
struct NodeRecord {
  std::string server_uuid;           // containerd's UUID when last listed: a new one means a new node
  std::string snapshotter;           // what imports unpack into there (CRI's), once known
  std::optional<bool> zstd;          // whether `zstd` is on the node's PATH, once asked
  std::int64_t listed_at = 0;        // unix seconds of the last full listing (0: never)
  std::int64_t updated_at = 0;       // unix seconds of the last change
  std::unordered_set<util::Digest> blobs;
  std::map<std::string, NameRecord> names;
  // Manifest or index digest -> image IDs, learned from gc labels or from loads.
  std::map<util::Digest, std::vector<util::Digest>> target_ids;
  // For images kload loaded: manifest digest -> every blob it needs. When no name
  // points at such an image any more, containerd's GC removes its blobs, and so does
  // the cache (see forget_unreferenced).
  std::map<util::Digest, std::vector<util::Digest>> target_blobs;
  // Loads that began sending blobs to the node and have not recorded what arrived,
  // as util::process_token()s. A token whose process is gone means a load died mid-way
  // (killed, crashed, failed): containerd keeps what its import wrote, which this
  // record does not list, so the next load lists the node instead of resending.
  std::vector<std::string> sending;

  // Whether a load named in `sending` is no longer running.
  [[nodiscard]] bool interrupted_load() const;
  // Drops the marks of loads no longer running (after a listing has seen their work).
  void forget_interrupted_loads();

  // Drops the blobs of loaded images that no name points at any more, except those
  // another named image still needs. Conservative: the cache may then under-claim,
  // which costs a resend, never a wrong plan.
  void forget_unreferenced();
};

// Identifies one version of an input file: path, size, mtime, inode, device and
// ctime. ctime cannot be set back by a user (touch restores mtime, not ctime), so a
// file rewritten in place with its size and mtime restored is another version.
struct InputKey {
  std::string path;  // absolute
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t inode = 0;
  std::uint64_t device = 0;
  std::int64_t ctime_ns = 0;

  // The key of a regular file; nullopt for stdin, pipes or unreadable paths.
  static std::optional<InputKey> of(const std::string& path);
  [[nodiscard]] std::string str() const;
};

struct CacheStats {
  std::size_t nodes = 0;
  std::size_t inputs = 0;
  std::uint64_t file_bytes = 0;
  std::filesystem::path dir;
};

enum class OpenMode { read_write, read_only };

class Cache {
public:
  // The default directory: $KLOAD_CACHE, else $XDG_CACHE_HOME/kload, else
  // ~/.cache/kload.
  static std::filesystem::path default_dir();

  // Opens (creating, mode 0700) the cache in `dir`. Every page of the data file is
  // checked first (LMDB itself trusts them: a damaged page could crash or hang it); a
  // corrupt or truncated cache is moved aside to `dir`.corrupt-<time> and rebuilt
  // empty, and `warning` receives one line saying so. Damage LMDB reports later, in
  // any call, moves the cache aside the same way (one warning) and every later call
  // fails (io); `warning` is kept for that, so what it refers to must outlive the
  // cache. Error (io), one line: `dir` is a symbolic link, not a directory, or not
  // owned by the user (nor may its data.mdb and lock.mdb be symbolic links or someone
  // else's: what the cache says decides what kload skips); the directory cannot be
  // created or opened at all.
  static util::Result<std::unique_ptr<Cache>> open(const std::filesystem::path& dir,
                                                   const std::function<void(const std::string&)>& warning);
  ~Cache();
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  // The record for a node key (its URI), or nullopt. An unreadable record counts as
  // absent. Error (io): LMDB failed.
  util::Result<std::optional<NodeRecord>> node(const std::string& key);
  // Replaces the node's record. Error (io).
  util::Result<void> put_node(const std::string& key, const NodeRecord& record);
  // Reads, changes and writes the node's record in one write transaction, so that
  // concurrent kload processes never lose each other's updates. Error (io).
  util::Result<void> update_node(const std::string& key, const std::function<void(NodeRecord&)>& change);
  // Removes the node's record; true if there was one. Error (io).
  util::Result<bool> forget_node(const std::string& key);
  // Every node key and record, sorted by key. Error (io).
  util::Result<std::vector<std::pair<std::string, NodeRecord>>> nodes();

  // Digests already proven for this version of an input file. Error (io).
  util::Result<std::unordered_set<util::Digest>> verified(const InputKey& key);
  // Adds proven digests for an input file. Error (io).
  util::Result<void> add_verified(const InputKey& key, const std::vector<util::Digest>& digests);
  // Removes every input record. Error (io).
  util::Result<std::size_t> forget_inputs();

  util::Result<CacheStats> stats();

private:
  struct Impl;
  explicit Cache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Serialises a node record (exposed for tests and benchmarks): a small JSON header
// followed by the blob digests as raw 32-byte values.
std::string encode_node(const NodeRecord& record);
// Error (bad_input): not a record this version wrote.
util::Result<NodeRecord> decode_node(std::string_view bytes);

} // namespace kload::cache
