#include "kload/cache/cache.h"

#include "kload/util/process.h"

#include <fmt/format.h>
#include <lmdb.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace kload::cache {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

constexpr std::string_view node_prefix{"node\0", 5};
constexpr std::string_view input_prefix{"input\0", 6};
constexpr std::uint32_t record_magic = 0x314b4c4b; // "KLK1"
// Sparse: the file only grows as pages are written.
constexpr std::size_t map_size = std::size_t{8} << 30;

// The start of an LMDB meta page (64-bit build of LMDB 0.9), used only to tell a
// truncated or foreign data file before LMDB maps it: reading past the end of a
// truncated map would be a SIGBUS, not an error.
struct LmdbPageHeader {
  std::uint64_t pgno;
  std::uint16_t pad;
  std::uint16_t flags;
  std::uint32_t lower_upper;
};
struct LmdbDb {
  std::uint32_t pad;  // in the free-list DB of a meta page: the page size
  std::uint16_t flags;
  std::uint16_t depth;
  std::uint64_t branch_pages;
  std::uint64_t leaf_pages;
  std::uint64_t overflow_pages;
  std::uint64_t entries;
  std::uint64_t root;
};
struct LmdbMeta {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint64_t address;
  std::uint64_t mapsize;
  LmdbDb dbs[2];
  std::uint64_t last_pg;
  std::uint64_t txnid;
};
static_assert(sizeof(LmdbPageHeader) == 16);
static_assert(sizeof(LmdbDb) == 48);
static_assert(sizeof(LmdbMeta) == 136);
constexpr std::uint32_t lmdb_magic = 0xBEEFC0DE;

// Why data.mdb cannot be trusted, or empty when it looks sound (or does not exist).
std::string check_data_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOENT ? "" : fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
  }
  struct stat st{};
  ::fstat(fd, &st);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  auto read_meta = [&](std::uint64_t offset, LmdbMeta& meta) {
    return ::pread(fd, &meta, sizeof(meta), static_cast<off_t>(offset + sizeof(LmdbPageHeader))) ==
           static_cast<ssize_t>(sizeof(meta));
  };
  std::string problem;
  LmdbMeta m0{};
  LmdbMeta m1{};
  if (size == 0) {
    problem = "empty data file";
  } else if (!read_meta(0, m0) || m0.magic != lmdb_magic || m0.version != 1) {
    problem = "not an LMDB data file";
  } else {
    const std::uint64_t psize = m0.dbs[0].pad;
    if (psize < 512 || psize > 65536 || size < 2 * psize || !read_meta(psize, m1) || m1.magic != lmdb_magic) {
      problem = "damaged meta pages";
    } else {
      const auto& meta = m1.txnid > m0.txnid ? m1 : m0;
      if ((meta.last_pg + 1) * psize > size) {
        problem = fmt::format("truncated: {} bytes, needs {}", size, (meta.last_pg + 1) * psize);
      }
    }
  }
  ::close(fd);
  return problem;
}

std::string lmdb_error(const char* what, int rc) { return fmt::format("cache: {}: {}", what, mdb_strerror(rc)); }

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string node_key(const std::string& key) { return std::string(node_prefix) + key; }

nlohmann::json digests_json(const std::vector<Digest>& ds) {
  auto out = nlohmann::json::array();
  for (const auto& d : ds) {
    out.push_back(d.hex());
  }
  return out;
}

std::vector<Digest> digests_from(const nlohmann::json& j) {
  std::vector<Digest> out;
  for (const auto& v : j) {
    if (auto d = Digest::parse_hex(v.get<std::string>())) {
      out.push_back(*d);
    }
  }
  return out;
}

} // namespace

std::string encode_node(const NodeRecord& r) {
  nlohmann::json j;
  j["uuid"] = r.server_uuid;
  j["listed"] = r.listed_at;
  j["updated"] = r.updated_at;
  j["names"] = nlohmann::json::object();
  for (const auto& [name, n] : r.names) {
    j["names"][name] = {{"t", n.target.hex()}, {"ids", digests_json(n.ids)}, {"c", n.complete}, {"k", n.by_kload},
                        {"l", n.learned_at}};
  }
  j["targets"] = nlohmann::json::object();
  for (const auto& [t, ids] : r.target_ids) {
    j["targets"][t.hex()] = digests_json(ids);
  }
  j["targetBlobs"] = nlohmann::json::object();
  for (const auto& [t, blobs] : r.target_blobs) {
    j["targetBlobs"][t.hex()] = digests_json(blobs);
  }
  if (!r.sending.empty()) {
    j["sending"] = r.sending;
  }
  const auto header = j.dump();
  std::string out;
  out.reserve(8 + header.size() + r.blobs.size() * Digest::size);
  const std::uint32_t lens[2] = {record_magic, static_cast<std::uint32_t>(header.size())};
  out.append(reinterpret_cast<const char*>(lens), sizeof(lens));
  out += header;
  for (const auto& d : r.blobs) {
    out.append(reinterpret_cast<const char*>(d.bytes().data()), Digest::size);
  }
  return out;
}

Result<NodeRecord> decode_node(std::string_view bytes) {
  auto bad = [] { return util::fail(ErrorKind::bad_input, "cache: unreadable node record"); };
  std::uint32_t lens[2];
  if (bytes.size() < sizeof(lens)) {
    return bad();
  }
  std::memcpy(lens, bytes.data(), sizeof(lens));
  if (lens[0] != record_magic || bytes.size() < sizeof(lens) + lens[1] ||
      (bytes.size() - sizeof(lens) - lens[1]) % Digest::size != 0) {
    return bad();
  }
  auto j = nlohmann::json::parse(bytes.substr(sizeof(lens), lens[1]), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return bad();
  }
  NodeRecord r;
  try {
    r.server_uuid = j.value("uuid", "");
    r.listed_at = j.value("listed", std::int64_t{0});
    r.updated_at = j.value("updated", std::int64_t{0});
    for (const auto& [name, n] : j.at("names").items()) {
      auto target = Digest::parse_hex(n.at("t").get<std::string>());
      if (!target) {
        return bad();
      }
      r.names[name] = NameRecord{*target, digests_from(n.at("ids")), n.at("c").get<bool>(), n.at("k").get<bool>(),
                                 n.at("l").get<std::int64_t>()};
    }
    for (const auto& [t, ids] : j.at("targets").items()) {
      if (auto d = Digest::parse_hex(t)) {
        r.target_ids[*d] = digests_from(ids);
      }
    }
    if (j.contains("sending")) {
      r.sending = j.at("sending").get<std::vector<std::string>>();
    }
    if (j.contains("targetBlobs")) {
      for (const auto& [t, blobs] : j.at("targetBlobs").items()) {
        if (auto d = Digest::parse_hex(t)) {
          r.target_blobs[*d] = digests_from(blobs);
        }
      }
    }
  } catch (const nlohmann::json::exception&) {
    return bad();
  }
  const auto* p = bytes.data() + sizeof(lens) + lens[1];
  const std::size_t count = (bytes.size() - sizeof(lens) - lens[1]) / Digest::size;
  r.blobs.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::array<std::uint8_t, Digest::size> raw{};
    std::memcpy(raw.data(), p + i * Digest::size, Digest::size);
    r.blobs.insert(Digest(raw));
  }
  return r;
}

namespace {
bool finished(const std::string& token) { return !util::process_running(token); }
} // namespace

bool NodeRecord::interrupted_load() const { return std::any_of(sending.begin(), sending.end(), finished); }

void NodeRecord::forget_interrupted_loads() { std::erase_if(sending, finished); }

void NodeRecord::forget_unreferenced() {
  std::unordered_set<Digest> named;
  for (const auto& [name, n] : names) {
    named.insert(n.target);
  }
  std::unordered_set<Digest> keep;
  for (const auto& t : named) {
    if (auto it = target_blobs.find(t); it != target_blobs.end()) {
      keep.insert(it->second.begin(), it->second.end());
    }
  }
  for (auto it = target_blobs.begin(); it != target_blobs.end();) {
    if (named.contains(it->first)) {
      ++it;
      continue;
    }
    for (const auto& d : it->second) {
      if (!keep.contains(d)) {
        blobs.erase(d);
      }
    }
    target_ids.erase(it->first);
    it = target_blobs.erase(it);
  }
}

std::optional<InputKey> InputKey::of(const std::string& path) {
  if (path == "-") {
    return std::nullopt;
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  std::error_code ec;
  const auto abs = std::filesystem::absolute(path, ec);
  return InputKey{ec ? path : abs.lexically_normal().string(), static_cast<std::uint64_t>(st.st_size),
                  static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                  static_cast<std::uint64_t>(st.st_ino)};
}

std::string InputKey::str() const { return fmt::format("{}\n{}\n{}\n{}", path, size, mtime_ns, inode); }

struct Cache::Impl {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  std::filesystem::path dir;
  // One transaction at a time per process; LMDB serialises writers across processes.
  std::mutex mutex;

  ~Impl() {
    if (env != nullptr) {
      mdb_env_close(env);
    }
  }

  // Runs `fn` in a transaction, committing write transactions that succeed.
  template <typename Fn> auto txn(bool write, Fn&& fn) -> decltype(fn(static_cast<MDB_txn*>(nullptr))) {
    std::lock_guard lock(mutex);
    MDB_txn* t = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t); rc != 0) {
      return std::unexpected(util::Error{ErrorKind::io, lmdb_error("begin", rc)});
    }
    auto result = fn(t);
    if (write && result) {
      if (int rc = mdb_txn_commit(t); rc != 0) {
        return std::unexpected(util::Error{ErrorKind::io, lmdb_error("commit", rc)});
      }
    } else {
      mdb_txn_abort(t);
    }
    return result;
  }
};

namespace {

Result<std::unique_ptr<MDB_env, decltype(&mdb_env_close)>> open_env(const std::filesystem::path& dir, MDB_dbi& dbi) {
  MDB_env* raw = nullptr;
  if (int rc = mdb_env_create(&raw); rc != 0) {
    return util::fail(ErrorKind::io, lmdb_error("create", rc));
  }
  std::unique_ptr<MDB_env, decltype(&mdb_env_close)> env(raw, mdb_env_close);
  mdb_env_set_mapsize(raw, map_size);
  if (int rc = mdb_env_open(raw, dir.c_str(), MDB_NOTLS, 0600); rc != 0) {
    return util::fail(ErrorKind::bad_input, lmdb_error("open", rc));
  }
  int dead = 0;
  mdb_reader_check(raw, &dead);
  MDB_txn* t = nullptr;
  if (int rc = mdb_txn_begin(raw, nullptr, 0, &t); rc != 0) {
    return util::fail(ErrorKind::bad_input, lmdb_error("begin", rc));
  }
  if (int rc = mdb_dbi_open(t, nullptr, 0, &dbi); rc != 0) {
    mdb_txn_abort(t);
    return util::fail(ErrorKind::bad_input, lmdb_error("open database", rc));
  }
  if (int rc = mdb_txn_commit(t); rc != 0) {
    return util::fail(ErrorKind::bad_input, lmdb_error("commit", rc));
  }
  return env;
}

Result<void> make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return util::fail(ErrorKind::io, fmt::format("cache: cannot create {}: {}", dir.string(), ec.message()));
  }
  ::chmod(dir.c_str(), 0700);
  return {};
}

} // namespace

std::filesystem::path Cache::default_dir() {
  if (const char* c = std::getenv("KLOAD_CACHE"); c != nullptr && *c != '\0') {
    return c;
  }
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    return std::filesystem::path(x) / "kload";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : "/tmp") / ".cache" / "kload";
}

Cache::Cache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cache::~Cache() = default;

Result<std::unique_ptr<Cache>> Cache::open(const std::filesystem::path& dir,
                                          const std::function<void(const std::string&)>& warning) {
  if (auto r = make_private_dir(dir); !r) {
    return std::unexpected(r.error());
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::string problem = check_data_file(dir / "data.mdb");
  if (problem.empty()) {
    auto env = open_env(dir, impl->dbi);
    if (env) {
      impl->env = env->release();
      return std::unique_ptr<Cache>(new Cache(std::move(impl)));
    }
    problem = env.error().message;
  }
  // Damaged: keep it for a post-mortem, start afresh.
  const auto aside = std::filesystem::path(dir.string() + fmt::format(".corrupt-{}", now()));
  std::error_code ec;
  std::filesystem::rename(dir, aside, ec);
  if (ec) {
    return util::fail(ErrorKind::io, fmt::format("cache {} is damaged ({}) and cannot be moved aside: {}",
                                                 dir.string(), problem, ec.message()));
  }
  if (warning) {
    warning(fmt::format("cache {} was damaged ({}); moved it to {} and started a new one", dir.string(), problem,
                        aside.string()));
  }
  if (auto r = make_private_dir(dir); !r) {
    return std::unexpected(r.error());
  }
  auto env = open_env(dir, impl->dbi);
  if (!env) {
    return util::fail(ErrorKind::io, env.error().message);
  }
  impl->env = env->release();
  return std::unique_ptr<Cache>(new Cache(std::move(impl)));
}

namespace {

Result<std::optional<std::string>> get(MDB_txn* t, MDB_dbi dbi, const std::string& key) {
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{};
  const int rc = mdb_get(t, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return std::optional<std::string>();
  }
  if (rc != 0) {
    return util::fail(ErrorKind::io, lmdb_error("get", rc));
  }
  return std::optional<std::string>(std::string(static_cast<const char*>(v.mv_data), v.mv_size));
}

Result<void> put(MDB_txn* t, MDB_dbi dbi, const std::string& key, const std::string& value) {
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  if (int rc = mdb_put(t, dbi, &k, &v, 0); rc != 0) {
    return util::fail(ErrorKind::io, lmdb_error("put", rc));
  }
  return {};
}

// Calls fn(key without prefix, value) for every key starting with `prefix`.
Result<void> scan(MDB_txn* t, MDB_dbi dbi, std::string_view prefix,
                  const std::function<void(std::string_view, std::string_view)>& fn) {
  MDB_cursor* c = nullptr;
  if (int rc = mdb_cursor_open(t, dbi, &c); rc != 0) {
    return util::fail(ErrorKind::io, lmdb_error("cursor", rc));
  }
  MDB_val k{prefix.size(), const_cast<char*>(prefix.data())};
  MDB_val v{};
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
    if (!key.starts_with(prefix)) {
      break;
    }
    fn(key.substr(prefix.size()), std::string_view(static_cast<const char*>(v.mv_data), v.mv_size));
  }
  mdb_cursor_close(c);
  return {};
}

} // namespace

Result<std::optional<NodeRecord>> Cache::node(const std::string& key) {
  return impl_->txn(false, [&](MDB_txn* t) -> Result<std::optional<NodeRecord>> {
    auto v = get(t, impl_->dbi, node_key(key));
    if (!v) {
      return std::unexpected(v.error());
    }
    if (!*v) {
      return std::nullopt;
    }
    auto r = decode_node(**v);
    if (!r) {
      return std::nullopt;  // unreadable: as if unknown, rewritten by the next listing
    }
    return std::optional<NodeRecord>(std::move(*r));
  });
}

Result<void> Cache::put_node(const std::string& key, const NodeRecord& record) {
  return impl_->txn(true, [&](MDB_txn* t) { return put(t, impl_->dbi, node_key(key), encode_node(record)); });
}

Result<void> Cache::update_node(const std::string& key, const std::function<void(NodeRecord&)>& change) {
  return impl_->txn(true, [&](MDB_txn* t) -> Result<void> {
    auto v = get(t, impl_->dbi, node_key(key));
    if (!v) {
      return std::unexpected(v.error());
    }
    NodeRecord record;
    if (*v) {
      if (auto r = decode_node(**v)) {
        record = std::move(*r);
      }
    }
    change(record);
    record.updated_at = now();
    return put(t, impl_->dbi, node_key(key), encode_node(record));
  });
}

Result<bool> Cache::forget_node(const std::string& key) {
  return impl_->txn(true, [&](MDB_txn* t) -> Result<bool> {
    const auto k = node_key(key);
    MDB_val mk{k.size(), const_cast<char*>(k.data())};
    const int rc = mdb_del(t, impl_->dbi, &mk, nullptr);
    if (rc == MDB_NOTFOUND) {
      return false;
    }
    if (rc != 0) {
      return util::fail(ErrorKind::io, lmdb_error("delete", rc));
    }
    return true;
  });
}

Result<std::vector<std::pair<std::string, NodeRecord>>> Cache::nodes() {
  return impl_->txn(false, [&](MDB_txn* t) -> Result<std::vector<std::pair<std::string, NodeRecord>>> {
    std::vector<std::pair<std::string, NodeRecord>> out;
    auto r = scan(t, impl_->dbi, node_prefix, [&](std::string_view key, std::string_view value) {
      if (auto rec = decode_node(value)) {
        out.emplace_back(std::string(key), std::move(*rec));
      }
    });
    if (!r) {
      return std::unexpected(r.error());
    }
    return out;
  });
}

Result<std::unordered_set<Digest>> Cache::verified(const InputKey& key) {
  return impl_->txn(false, [&](MDB_txn* t) -> Result<std::unordered_set<Digest>> {
    auto v = get(t, impl_->dbi, std::string(input_prefix) + key.str());
    if (!v) {
      return std::unexpected(v.error());
    }
    std::unordered_set<Digest> out;
    if (*v && (*v)->size() % Digest::size == 0) {
      for (std::size_t i = 0; i < (*v)->size(); i += Digest::size) {
        std::array<std::uint8_t, Digest::size> raw{};
        std::memcpy(raw.data(), (*v)->data() + i, Digest::size);
        out.insert(Digest(raw));
      }
    }
    return out;
  });
}

Result<void> Cache::add_verified(const InputKey& key, const std::vector<Digest>& digests) {
  if (digests.empty()) {
    return {};
  }
  return impl_->txn(true, [&](MDB_txn* t) -> Result<void> {
    const auto k = std::string(input_prefix) + key.str();
    auto v = get(t, impl_->dbi, k);
    if (!v) {
      return std::unexpected(v.error());
    }
    std::string value = v->value_or("");
    if (value.size() % Digest::size != 0) {
      value.clear();
    }
    std::unordered_set<std::string> have;
    for (std::size_t i = 0; i < value.size(); i += Digest::size) {
      have.insert(value.substr(i, Digest::size));
    }
    for (const auto& d : digests) {
      std::string raw(reinterpret_cast<const char*>(d.bytes().data()), Digest::size);
      if (have.insert(raw).second) {
        value += raw;
      }
    }
    return put(t, impl_->dbi, k, value);
  });
}

Result<std::size_t> Cache::forget_inputs() {
  return impl_->txn(true, [&](MDB_txn* t) -> Result<std::size_t> {
    std::vector<std::string> keys;
    auto r = scan(t, impl_->dbi, input_prefix,
                  [&](std::string_view key, std::string_view) { keys.push_back(std::string(input_prefix) + std::string(key)); });
    if (!r) {
      return std::unexpected(r.error());
    }
    for (const auto& k : keys) {
      MDB_val mk{k.size(), const_cast<char*>(k.data())};
      mdb_del(t, impl_->dbi, &mk, nullptr);
    }
    return keys.size();
  });
}

Result<CacheStats> Cache::stats() {
  return impl_->txn(false, [&](MDB_txn* t) -> Result<CacheStats> {
    CacheStats s;
    s.dir = impl_->dir;
    auto r1 = scan(t, impl_->dbi, node_prefix, [&](std::string_view, std::string_view) { ++s.nodes; });
    auto r2 = scan(t, impl_->dbi, input_prefix, [&](std::string_view, std::string_view) { ++s.inputs; });
    if (!r1 || !r2) {
      return util::fail(ErrorKind::io, "cache: cannot scan");
    }
    std::error_code ec;
    s.file_bytes = std::filesystem::file_size(impl_->dir / "data.mdb", ec);
    return s;
  });
}

} // namespace kload::cache
