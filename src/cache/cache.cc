#include "kload/cache/cache.h"

#include "lmdb_check.h"

#include "kload/util/fd.h"
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
#include <string_view>
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
  if (!r.snapshotter.empty()) {
    j["snapshotter"] = r.snapshotter;
  }
  if (r.zstd) {
    j["zstd"] = *r.zstd;
  }
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
    r.snapshotter = j.value("snapshotter", "");
    if (const auto z = j.find("zstd"); z != j.end() && z->is_boolean()) {
      r.zstd = z->get<bool>();
    }
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
  auto ns = [](const timespec& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; };
  return InputKey{ec ? path : abs.lexically_normal().string(),
                  static_cast<std::uint64_t>(st.st_size),
                  ns(st.st_mtim),
                  static_cast<std::uint64_t>(st.st_ino),
                  static_cast<std::uint64_t>(st.st_dev),
                  ns(st.st_ctim)};
}

std::string InputKey::str() const {
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", path, size, mtime_ns, inode, device, ctime_ns);
}

namespace {

// LMDB's answers that mean the data file is damaged (or LMDB gave up on it), as
// opposed to a full disk or a busy reader table.
bool is_damage(int rc) {
  return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID || rc == MDB_PANIC ||
         rc == MDB_VERSION_MISMATCH || rc == MDB_BAD_TXN;
}

// One LMDB transaction, aborted on every path unless committed, and every LMDB call
// made in it. Remembers whether LMDB reported damage.
class Txn {
public:
  enum class Mode { read, write };

  Txn(MDB_env* env, MDB_dbi dbi) : env_(env), dbi_(dbi) {}
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() {
    if (t_ != nullptr) {
      mdb_txn_abort(t_);
    }
  }

  // Error (io): LMDB refused.
  Result<void> begin(Mode mode) {
    if (int rc = mdb_txn_begin(env_, nullptr, mode == Mode::write ? 0 : MDB_RDONLY, &t_); rc != 0) {
      t_ = nullptr;
      return failed("begin", rc);
    }
    return {};
  }

  // Error (io): the commit failed; the transaction is gone either way.
  Result<void> commit() {
    const int rc = mdb_txn_commit(std::exchange(t_, nullptr));
    return rc == 0 ? Result<void>{} : failed("commit", rc);
  }

  [[nodiscard]] MDB_txn* get() const { return t_; }
  // The LMDB code that said the file is damaged, or 0.
  [[nodiscard]] int damage() const { return damage_; }

  // The value under `key`, or nullopt. Error (io).
  Result<std::optional<std::string>> value(std::string_view key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{};
    const int rc = mdb_get(t_, dbi_, &k, &v);
    if (rc == MDB_NOTFOUND) {
      return std::optional<std::string>();
    }
    if (rc != 0) {
      return failed("get", rc);
    }
    return std::optional<std::string>(std::string(static_cast<const char*>(v.mv_data), v.mv_size));
  }

  // Error (io).
  Result<void> put(std::string_view key, std::string_view value) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    if (int rc = mdb_put(t_, dbi_, &k, &v, 0); rc != 0) {
      return failed("put", rc);
    }
    return {};
  }

  // Whether there was a value to remove. Error (io).
  Result<bool> erase(std::string_view key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    const int rc = mdb_del(t_, dbi_, &k, nullptr);
    if (rc == MDB_NOTFOUND) {
      return false;
    }
    if (rc != 0) {
      return failed("delete", rc);
    }
    return true;
  }

  // Calls fn(key without prefix, value) for every key starting with `prefix`. Error
  // (io): LMDB failed part-way.
  Result<void> scan(std::string_view prefix, const std::function<void(std::string_view, std::string_view)>& fn) {
    MDB_cursor* raw = nullptr;
    if (int rc = mdb_cursor_open(t_, dbi_, &raw); rc != 0) {
      return failed("cursor", rc);
    }
    const std::unique_ptr<MDB_cursor, decltype(&mdb_cursor_close)> cursor(raw, mdb_cursor_close);
    MDB_val k{prefix.size(), const_cast<char*>(prefix.data())};
    MDB_val v{};
    int rc = mdb_cursor_get(raw, &k, &v, MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(raw, &k, &v, MDB_NEXT)) {
      const std::string_view key(static_cast<const char*>(k.mv_data), k.mv_size);
      if (!key.starts_with(prefix)) {
        return {};
      }
      fn(key.substr(prefix.size()), std::string_view(static_cast<const char*>(v.mv_data), v.mv_size));
    }
    return rc == MDB_NOTFOUND ? Result<void>{} : failed("scan", rc);
  }

private:
  std::unexpected<util::Error> failed(const char* what, int rc) {
    if (is_damage(rc)) {
      damage_ = rc;
    }
    return util::fail(ErrorKind::io, lmdb_error(what, rc));
  }

  MDB_env* env_;
  MDB_dbi dbi_;
  MDB_txn* t_ = nullptr;
  int damage_ = 0;
};

// Where a damaged cache directory is moved: beside it, named by the time.
std::filesystem::path aside_path(const std::filesystem::path& dir) {
  return std::filesystem::path(dir.string() + fmt::format(".corrupt-{}", now()));
}

} // namespace

struct Cache::Impl {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  std::filesystem::path dir;
  std::function<void(const std::string&)> warning;
  // One transaction at a time per process; LMDB serialises writers across processes.
  std::mutex mutex;
  // Set when LMDB reported damage during this run: the cache was moved aside and is
  // not used again.
  bool damaged = false;

  ~Impl() {
    if (env != nullptr) {
      mdb_env_close(env);
    }
  }

  // Runs `fn` in a transaction, committing write transactions that succeed. Damage
  // that LMDB reports moves the cache aside, with one warning, and ends its use.
  template <typename Fn> auto txn(Txn::Mode mode, Fn&& fn) -> decltype(fn(std::declval<Txn&>())) {
    std::lock_guard lock(mutex);
    if (damaged) {
      return util::fail(ErrorKind::io, "cache: not used after damage was found");
    }
    Txn t(env, dbi);
    auto result = [&]() -> decltype(fn(t)) {
      if (auto begun = t.begin(mode); !begun) {
        return std::unexpected(begun.error());
      }
      auto r = fn(t);
      if (r && mode == Txn::Mode::write) {
        if (auto committed = t.commit(); !committed) {
          return std::unexpected(committed.error());
        }
      }
      return r;
    }();
    if (t.damage() != 0) {
      set_aside(mdb_strerror(t.damage()));
    }
    return result;
  }

  void set_aside(const std::string& why) {
    damaged = true;
    const auto aside = aside_path(dir);
    std::error_code ec;
    std::filesystem::rename(dir, aside, ec);
    if (warning) {
      warning(ec ? fmt::format("cache {} is damaged ({}); running without it", dir.string(), why)
                 : fmt::format("cache {} is damaged ({}); moved it to {} and running without it", dir.string(),
                               why, aside.string()));
    }
  }
};

namespace {

// Checks every page of the snapshot a read transaction sees (lmdb_check::check_tree),
// holding the transaction so that no writer reuses those pages meanwhile. Error
// (bad_input): damage found.
Result<void> check_pages(MDB_env* env, const std::filesystem::path& dir) {
  // A snapshot's meta page is overwritten two commits later; then try a newer one.
  for (int attempt = 0; attempt < 8; ++attempt) {
    Txn reader(env, 0);
    if (auto r = reader.begin(Txn::Mode::read); !r) {
      return util::fail(ErrorKind::bad_input, r.error().message);
    }
    const auto problem = lmdb_check::check_tree(dir / "data.mdb", mdb_txn_id(reader.get()));
    if (!problem) {
      continue;
    }
    if (!problem->empty()) {
      return util::fail(ErrorKind::bad_input, *problem);
    }
    return {};
  }
  return {};  // written to without pause: other kload processes find it sound
}

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
  if (auto checked = check_pages(raw, dir); !checked) {
    return std::unexpected(checked.error());
  }
  Txn t(raw, 0);
  if (auto r = t.begin(Txn::Mode::write); !r) {
    return util::fail(ErrorKind::bad_input, r.error().message);
  }
  if (int rc = mdb_dbi_open(t.get(), nullptr, 0, &dbi); rc != 0) {
    return util::fail(ErrorKind::bad_input, lmdb_error("open database", rc));
  }
  if (auto r = t.commit(); !r) {
    return util::fail(ErrorKind::bad_input, r.error().message);
  }
  return env;
}

// Why `dir` must not hold the cache, or empty: the cache decides what kload skips, so
// it must be the user's own, not a link to a place someone else controls.
std::string refusal(const std::filesystem::path& dir) {
  const auto euid = ::geteuid();
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) {
    return fmt::format("cannot stat it: {}", std::strerror(errno));
  }
  if (S_ISLNK(st.st_mode)) {
    return "it is a symbolic link";
  }
  if (!S_ISDIR(st.st_mode)) {
    return "it is not a directory";
  }
  if (st.st_uid != euid) {
    return fmt::format("it belongs to user {}, not to user {}", st.st_uid, euid);
  }
  for (const char* name : {"data.mdb", "lock.mdb"}) {
    if (::lstat((dir / name).c_str(), &st) != 0) {
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      return fmt::format("its {} is a symbolic link", name);
    }
    if (!S_ISREG(st.st_mode)) {
      return fmt::format("its {} is not a regular file", name);
    }
    if (st.st_uid != euid) {
      return fmt::format("its {} belongs to user {}, not to user {}", name, st.st_uid, euid);
    }
  }
  return "";
}

// Creates `dir` (mode 0700) unless it exists, and checks it may hold the cache.
// Error (io): it cannot be created, or refusal() says why not.
Result<void> make_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return util::fail(ErrorKind::io, fmt::format("cache: cannot create {}: {}", dir.string(), ec.message()));
  }
  if (const auto why = refusal(dir); !why.empty()) {
    return util::fail(ErrorKind::io, fmt::format("cache {} is not used: {}", dir.string(), why));
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
  impl->warning = warning;
  std::string problem = lmdb_check::check_meta(dir / "data.mdb");
  if (problem.empty()) {
    auto env = open_env(dir, impl->dbi);
    if (env) {
      impl->env = env->release();
      return std::unique_ptr<Cache>(new Cache(std::move(impl)));
    }
    problem = env.error().message;
  }
  // Damaged: keep it for a post-mortem, start afresh.
  const auto aside = aside_path(dir);
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

// The digests of an input record: raw 32-byte values. Anything else (a value damaged
// in place) holds none.
std::unordered_set<Digest> decode_digests(std::string_view value) {
  std::unordered_set<Digest> out;
  if (value.size() % Digest::size != 0) {
    return out;
  }
  for (std::size_t i = 0; i < value.size(); i += Digest::size) {
    std::array<std::uint8_t, Digest::size> raw{};
    std::memcpy(raw.data(), value.data() + i, Digest::size);
    out.insert(Digest(raw));
  }
  return out;
}

} // namespace

Result<std::optional<NodeRecord>> Cache::node(const std::string& key) {
  return impl_->txn(Txn::Mode::read, [&](Txn& t) -> Result<std::optional<NodeRecord>> {
    auto v = t.value(node_key(key));
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
  return impl_->txn(Txn::Mode::write, [&](Txn& t) { return t.put(node_key(key), encode_node(record)); });
}

Result<void> Cache::update_node(const std::string& key, const std::function<void(NodeRecord&)>& change) {
  return impl_->txn(Txn::Mode::write, [&](Txn& t) -> Result<void> {
    auto v = t.value(node_key(key));
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
    return t.put(node_key(key), encode_node(record));
  });
}

Result<bool> Cache::forget_node(const std::string& key) {
  return impl_->txn(Txn::Mode::write, [&](Txn& t) { return t.erase(node_key(key)); });
}

Result<std::vector<std::pair<std::string, NodeRecord>>> Cache::nodes() {
  return impl_->txn(Txn::Mode::read, [&](Txn& t) -> Result<std::vector<std::pair<std::string, NodeRecord>>> {
    std::vector<std::pair<std::string, NodeRecord>> out;
    auto r = t.scan(node_prefix, [&](std::string_view key, std::string_view value) {
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
  return impl_->txn(Txn::Mode::read, [&](Txn& t) -> Result<std::unordered_set<Digest>> {
    auto v = t.value(std::string(input_prefix) + key.str());
    if (!v) {
      return std::unexpected(v.error());
    }
    return *v ? decode_digests(**v) : std::unordered_set<Digest>{};
  });
}

Result<void> Cache::add_verified(const InputKey& key, const std::vector<Digest>& digests) {
  if (digests.empty()) {
    return {};
  }
  return impl_->txn(Txn::Mode::write, [&](Txn& t) -> Result<void> {
    const auto k = std::string(input_prefix) + key.str();
    auto v = t.value(k);
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
    return t.put(k, value);
  });
}

Result<std::size_t> Cache::forget_inputs() {
  return impl_->txn(Txn::Mode::write, [&](Txn& t) -> Result<std::size_t> {
    std::vector<std::string> keys;
    auto r = t.scan(input_prefix, [&](std::string_view key, std::string_view) {
      keys.push_back(std::string(input_prefix) + std::string(key));
    });
    if (!r) {
      return std::unexpected(r.error());
    }
    for (const auto& k : keys) {
      if (auto erased = t.erase(k); !erased) {
        return std::unexpected(erased.error());
      }
    }
    return keys.size();
  });
}

Result<CacheStats> Cache::stats() {
  return impl_->txn(Txn::Mode::read, [&](Txn& t) -> Result<CacheStats> {
    CacheStats s;
    s.dir = impl_->dir;
    auto r1 = t.scan(node_prefix, [&](std::string_view, std::string_view) { ++s.nodes; });
    if (!r1) {
      return std::unexpected(r1.error());
    }
    auto r2 = t.scan(input_prefix, [&](std::string_view, std::string_view) { ++s.inputs; });
    if (!r2) {
      return std::unexpected(r2.error());
    }
    std::error_code ec;
    s.file_bytes = std::filesystem::file_size(impl_->dir / "data.mdb", ec);
    return s;
  });
}

} // namespace kload::cache
