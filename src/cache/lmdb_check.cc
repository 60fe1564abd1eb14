#include "lmdb_check.h"

#include "kload/util/fd.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <span>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace kload::cache::lmdb_check {

namespace {

// LMDB 0.9's on-disk layout, 64-bit build (lmdb's mdb.c: MDB_page, MDB_node, MDB_meta).
struct LmdbPageHeader {
  std::uint64_t pgno;
  std::uint16_t pad;
  std::uint16_t flags;
  std::uint16_t lower;  // overflow pages: these two hold the page count
  std::uint16_t upper;
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
  LmdbDb dbs[2];  // 0: free list, 1: main
  std::uint64_t last_pg;
  std::uint64_t txnid;
};
struct LmdbNode {
  std::uint16_t lo;  // leaf: data size, low half; branch: child page, bits 0-15
  std::uint16_t hi;  // leaf: data size, high half; branch: child page, bits 16-31
  std::uint16_t flags;  // branch: child page, bits 32-47
  std::uint16_t ksize;
};
static_assert(sizeof(LmdbPageHeader) == 16);
static_assert(sizeof(LmdbDb) == 48);
static_assert(sizeof(LmdbMeta) == 136);
static_assert(sizeof(LmdbNode) == 8);

constexpr std::uint32_t lmdb_magic = 0xBEEFC0DE;
// A page on disk carries exactly one of these: LMDB clears its in-memory flags
// (dirty, loose, keep) before writing, and other bits change how it reads the page.
constexpr std::uint16_t p_branch = 0x01;
constexpr std::uint16_t p_leaf = 0x02;
constexpr std::uint16_t p_overflow = 0x04;
constexpr std::uint16_t p_meta = 0x08;
constexpr std::uint16_t f_bigdata = 0x01;
constexpr std::uint16_t free_list_flags = 0x08;  // MDB_INTEGERKEY
constexpr std::uint64_t no_root = ~std::uint64_t{0};
constexpr std::size_t max_key = 511;
constexpr int max_depth = 32;

struct Metas {
  util::Fd fd;
  std::uint64_t size = 0;
  std::uint32_t psize = 0;
  LmdbMeta m[2]{};
};

// Reads both meta pages; the problem, or empty.
std::string read_metas(const std::filesystem::path& file, Metas& out, bool& missing) {
  missing = false;
  out.fd.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!out.fd) {
    missing = errno == ENOENT;
    return missing ? "" : fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
  }
  struct stat st{};
  if (::fstat(out.fd.get(), &st) != 0) {
    return fmt::format("cannot stat {}: {}", file.string(), std::strerror(errno));
  }
  out.size = static_cast<std::uint64_t>(st.st_size);
  // LMDB reads meta page 1 at meta page 0's page size, then takes everything,
  // the page size included, from the newer one: they must agree.
  auto read_meta = [&](std::uint64_t offset, LmdbMeta& meta) {
    LmdbPageHeader h{};
    return ::pread(out.fd.get(), &h, sizeof(h), static_cast<off_t>(offset)) == static_cast<ssize_t>(sizeof(h)) &&
           h.flags == p_meta &&
           ::pread(out.fd.get(), &meta, sizeof(meta), static_cast<off_t>(offset + sizeof(LmdbPageHeader))) ==
               static_cast<ssize_t>(sizeof(meta));
  };
  if (out.size == 0) {
    return "empty data file";
  }
  if (!read_meta(0, out.m[0]) || out.m[0].magic != lmdb_magic || out.m[0].version != 1) {
    return "not an LMDB data file";
  }
  out.psize = out.m[0].dbs[0].pad;
  if (out.psize < 512 || out.psize > 65536 || (out.psize & (out.psize - 1)) != 0 || out.size < 2 * out.psize ||
      !read_meta(out.psize, out.m[1]) || out.m[1].magic != lmdb_magic || out.m[1].version != 1 ||
      out.m[1].dbs[0].pad != out.psize) {
    return "damaged meta pages";
  }
  return "";
}

// Walks the pages of one database, checking each before anything it says is used.
class Walker {
public:
  Walker(int fd, std::uint32_t psize, std::uint64_t last_pg)
      : fd_(fd), psize_(psize), last_pg_(last_pg), used_(last_pg + 1, false) {}

  struct Counts {
    std::uint64_t branch = 0;
    std::uint64_t leaf = 0;
    std::uint64_t overflow = 0;
    std::uint64_t entries = 0;
  };

  // The problem with database `db` (named `name`), or empty.
  std::string check(const LmdbDb& db, const char* name, bool free_list) {
    free_list_ = free_list;
    Counts c;
    if (db.root == no_root) {
      if (db.depth != 0 || db.entries != 0) {
        return fmt::format("{} database: no root but depth {}, {} entries", name, db.depth, db.entries);
      }
      return "";
    }
    if (db.depth == 0 || db.depth > max_depth) {
      return fmt::format("{} database: depth {}", name, db.depth);
    }
    if (!walk(db.root, db.depth, c)) {
      return fmt::format("{} database: {}", name, problem_);
    }
    if (c.branch != db.branch_pages || c.leaf != db.leaf_pages || c.overflow != db.overflow_pages ||
        c.entries != db.entries) {
      return fmt::format("{} database: found {}/{}/{} branch/leaf/overflow pages and {} entries, meta says "
                         "{}/{}/{} and {}",
                         name, c.branch, c.leaf, c.overflow, c.entries, db.branch_pages, db.leaf_pages,
                         db.overflow_pages, db.entries);
    }
    return "";
  }

private:
  bool bad(std::string why) {
    problem_ = std::move(why);
    return false;
  }

  // Marks pages [pgno, pgno + count) as used by one tree; each page may be used once.
  bool claim(std::uint64_t pgno, std::uint64_t count) {
    if (pgno < 2 || count == 0 || pgno > last_pg_ || count > last_pg_ + 1 - pgno) {
      return bad(fmt::format("page {} (+{}) beyond the last page {}", pgno, count, last_pg_));
    }
    for (std::uint64_t p = pgno; p < pgno + count; ++p) {
      if (used_[p]) {
        return bad(fmt::format("page {} used twice", p));
      }
      used_[p] = true;
    }
    return true;
  }

  bool read(std::uint64_t pgno, std::vector<std::uint8_t>& buf, std::size_t pages = 1) {
    buf.resize(pages * psize_);
    const auto want = static_cast<ssize_t>(buf.size());
    if (::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(pgno * psize_)) != want) {
      return bad(fmt::format("page {} cannot be read", pgno));
    }
    return true;
  }

  static LmdbPageHeader header(const std::vector<std::uint8_t>& page) {
    LmdbPageHeader h{};
    std::memcpy(&h, page.data(), sizeof(h));
    return h;
  }

  // The value of a leaf node, read from its overflow pages when it is big: the
  // free list's values are parsed.
  bool overflow(std::uint64_t pgno, std::uint64_t dsize, Counts& c, std::vector<std::uint8_t>* value) {
    std::vector<std::uint8_t> first;
    if (pgno < 2 || pgno > last_pg_ || !read(pgno, first)) {
      return problem_.empty() ? bad(fmt::format("overflow page {} beyond the last page", pgno)) : false;
    }
    const auto h = header(first);
    const std::uint64_t pages = h.lower | (std::uint64_t{h.upper} << 16);
    if (h.pgno != pgno || h.flags != p_overflow) {
      return bad(fmt::format("page {}: not the overflow page a node points to", pgno));
    }
    if (!claim(pgno, pages)) {
      return false;
    }
    if (dsize + sizeof(LmdbPageHeader) > pages * psize_) {
      return bad(fmt::format("page {}: {} bytes of data on {} overflow pages", pgno, dsize, pages));
    }
    c.overflow += pages;
    if (value != nullptr) {
      std::vector<std::uint8_t> all;
      if (!read(pgno, all, pages)) {
        return false;
      }
      value->assign(all.begin() + sizeof(LmdbPageHeader),
                    all.begin() + static_cast<std::ptrdiff_t>(sizeof(LmdbPageHeader) + dsize));
    }
    return true;
  }

  // A free-list value: a count, then that many page numbers, strictly descending.
  bool free_ids(std::span<const std::uint8_t> v) {
    if (v.size() < 8 || v.size() % 8 != 0) {
      return bad(fmt::format("free list entry of {} bytes", v.size()));
    }
    std::vector<std::uint64_t> ids(v.size() / 8);
    std::memcpy(ids.data(), v.data(), v.size());
    if (ids[0] + 1 > ids.size()) {
      return bad(fmt::format("free list entry counts {} pages in {} bytes", ids[0], v.size()));
    }
    for (std::uint64_t i = 1; i <= ids[0]; ++i) {
      if (ids[i] < 2 || ids[i] > last_pg_ || (i > 1 && ids[i] >= ids[i - 1])) {
        return bad(fmt::format("free list entry holds page {}", ids[i]));
      }
    }
    return true;
  }

  bool walk(std::uint64_t pgno, int level, Counts& c) {
    if (!claim(pgno, 1)) {
      return false;
    }
    std::vector<std::uint8_t> page;
    if (!read(pgno, page)) {
      return false;
    }
    const auto h = header(page);
    const bool leaf = level == 1;
    if (h.pgno != pgno) {
      return bad(fmt::format("page {} says it is page {}", pgno, h.pgno));
    }
    if (h.flags != (leaf ? p_leaf : p_branch)) {
      return bad(fmt::format("page {}: flags {:#x} where a {} page belongs", pgno, h.flags, leaf ? "leaf" : "branch"));
    }
    if (h.lower < sizeof(LmdbPageHeader) + 2 || h.lower % 2 != 0 || h.lower > h.upper || h.upper > psize_) {
      return bad(fmt::format("page {}: free space {}..{}", pgno, h.lower, h.upper));
    }
    const std::size_t keys = (h.lower - sizeof(LmdbPageHeader)) / 2;
    (leaf ? c.leaf : c.branch) += 1;
    for (std::size_t i = 0; i < keys; ++i) {
      std::uint16_t off = 0;
      std::memcpy(&off, page.data() + sizeof(LmdbPageHeader) + 2 * i, 2);
      if (off < h.upper || off % 2 != 0 || std::size_t{off} + sizeof(LmdbNode) > psize_) {
        return bad(fmt::format("page {}: node {} at offset {}", pgno, i, off));
      }
      LmdbNode n{};
      std::memcpy(&n, page.data() + off, sizeof(n));
      const std::size_t key_end = std::size_t{off} + sizeof(LmdbNode) + n.ksize;
      if (n.ksize > max_key || key_end > psize_ || (leaf && n.ksize == 0) || (free_list_ && leaf && n.ksize != 8)) {
        return bad(fmt::format("page {}: node {} has a {}-byte key", pgno, i, n.ksize));
      }
      if (!leaf) {
        const std::uint64_t child = n.lo | (std::uint64_t{n.hi} << 16) | (std::uint64_t{n.flags} << 32);
        if (!walk(child, level - 1, c)) {
          return false;
        }
        continue;
      }
      const std::uint64_t dsize = n.lo | (std::uint64_t{n.hi} << 16);
      if ((n.flags & ~f_bigdata) != 0) {
        return bad(fmt::format("page {}: node {} has flags {:#x}", pgno, i, n.flags));
      }
      std::vector<std::uint8_t> value;
      if ((n.flags & f_bigdata) != 0) {
        if (key_end + 8 > psize_) {
          return bad(fmt::format("page {}: node {} overflows its page", pgno, i));
        }
        std::uint64_t first = 0;
        std::memcpy(&first, page.data() + key_end, 8);
        if (!overflow(first, dsize, c, free_list_ ? &value : nullptr)) {
          return false;
        }
      } else {
        if (key_end + dsize > psize_) {
          return bad(fmt::format("page {}: node {} overflows its page", pgno, i));
        }
        if (free_list_) {
          value.assign(page.begin() + static_cast<std::ptrdiff_t>(key_end),
                       page.begin() + static_cast<std::ptrdiff_t>(key_end + dsize));
        }
      }
      if (free_list_ && !free_ids(value)) {
        return false;
      }
      ++c.entries;
    }
    return true;
  }

  int fd_;
  std::uint32_t psize_;
  std::uint64_t last_pg_;
  std::vector<bool> used_;
  bool free_list_ = false;
  std::string problem_;
};

} // namespace

std::string check_meta(const std::filesystem::path& file) {
  Metas metas;
  bool missing = false;
  if (auto problem = read_metas(file, metas, missing); !problem.empty() || missing) {
    return problem;
  }
  const auto& meta = metas.m[1].txnid > metas.m[0].txnid ? metas.m[1] : metas.m[0];
  // Said without multiplying: a damaged last page number could overflow.
  if (meta.last_pg >= metas.size / metas.psize) {
    return fmt::format("truncated: {} bytes, needs {}", metas.size, (meta.last_pg + 1) * metas.psize);
  }
  return "";
}

std::optional<std::string> check_tree(const std::filesystem::path& file, std::uint64_t txnid) {
  Metas metas;
  bool missing = false;
  if (auto problem = read_metas(file, metas, missing); !problem.empty() || missing) {
    return missing ? std::string("data file gone") : problem;
  }
  const LmdbMeta* meta = nullptr;
  for (const auto& m : metas.m) {
    if (m.txnid == txnid) {
      meta = &m;
    }
  }
  if (meta == nullptr) {
    return std::nullopt;
  }
  if (meta->last_pg < 1 || meta->last_pg >= metas.size / metas.psize) {
    return fmt::format("last page {} beyond the {}-byte file", meta->last_pg, metas.size);
  }
  // LMDB takes the databases' flags from here: a damaged DUPSORT, say, would make
  // it read nodes as sub-pages. The cache uses a plain main database.
  if (meta->dbs[1].flags != 0 || meta->dbs[0].flags != free_list_flags) {
    return fmt::format("database flags {:#x} and {:#x}", meta->dbs[1].flags, meta->dbs[0].flags);
  }
  Walker walker(metas.fd.get(), metas.psize, meta->last_pg);
  if (auto problem = walker.check(meta->dbs[1], "main", false); !problem.empty()) {
    return problem;
  }
  return walker.check(meta->dbs[0], "free-list", true);
}

} // namespace kload::cache::lmdb_check
