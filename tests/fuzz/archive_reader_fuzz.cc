// Fuzz target for format::read_archive.
//
// Each input is written to a private file and read twice: as a file (the in-place
// path for an uncompressed tar, the decompressing path otherwise) and as standard
// input (the streaming path). What both reads accept is then hashed, linted and
// written out as a thin archive, and the two reads must agree on what they found.
// Nothing is caught: a crash, a sanitizer report or a disagreement aborts.
//
// Random bytes rarely get past a tar header checksum, so besides libFuzzer's own
// mutations a tar-aware mutator rewrites header fields (names such as ../evil or
// another entry's name, type flags, octal and base-256 sizes, link names) with a
// valid checksum, drops and repeats 512-byte blocks, edits JSON punctuation inside
// entries, and wraps the whole input in gzip.

#include "fuzz_support.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int kload_fuzz_archive_reader(const std::uint8_t* data, std::size_t size) {
  const auto input = kload::fuzz::scratch_dir() / "archive";
  kload::fuzz::write_file(input, data, size);
  kload::fuzz::read_both_ways(input);
  return 0;
}

#ifndef KLOAD_FUZZ_REPLAY

namespace {

using Bytes = std::vector<std::uint8_t>;

class Mutator {
public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  void mutate(Bytes& b) {
    const int n = 1 + static_cast<int>(below(4));
    for (int i = 0; i < n; ++i) {
      one(b);
    }
  }

private:
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_); }

  // Offsets of 512-byte blocks that look like tar headers (valid checksum).
  static std::vector<std::size_t> headers(const Bytes& b) {
    std::vector<std::size_t> out;
    for (std::size_t pos = 0; pos + 512 <= b.size(); pos += 512) {
      unsigned sum = 0;
      for (std::size_t i = 0; i < 512; ++i) {
        sum += (i >= 148 && i < 156) ? ' ' : b[pos + i];
      }
      const std::string field(reinterpret_cast<const char*>(&b[pos + 148]), 8);
      if (sum != 256 && std::strtoul(field.c_str(), nullptr, 8) == sum) {
        out.push_back(pos);
      }
    }
    return out;
  }

  static void fix_checksum(Bytes& b, std::size_t pos) {
    std::fill(b.begin() + static_cast<long>(pos) + 148, b.begin() + static_cast<long>(pos) + 156, ' ');
    unsigned sum = 0;
    for (std::size_t i = 0; i < 512; ++i) {
      sum += b[pos + i];
    }
    char field[9];
    std::snprintf(field, sizeof(field), "%06o", sum);
    std::copy(field, field + 7, b.begin() + static_cast<long>(pos) + 148);
  }

  void set_field(Bytes& b, std::size_t pos, std::size_t off, std::size_t len, const std::string& value) {
    for (std::size_t i = 0; i < len; ++i) {
      b[pos + off + i] = i < value.size() ? static_cast<std::uint8_t>(value[i]) : 0;
    }
  }

  std::string interesting_name(const Bytes& b) {
    static const char* names[] = {"manifest.json", "index.json", "oci-layout", "repositories", "../evil",
                                  "/abs", "./manifest.json", "a/../index.json", "blobs/sha256/", "blobs//sha256/x",
                                  ".", "", "x/layer.tar", "blobs/sha256/../../index.json"};
    if (below(3) == 0) {
      // The name of another entry: duplicates, or a link target that exists.
      const auto hs = headers(b);
      if (!hs.empty()) {
        const auto other = hs[below(hs.size())];
        return std::string(reinterpret_cast<const char*>(&b[other]), strnlen(reinterpret_cast<const char*>(&b[other]), 100));
      }
    }
    return names[below(std::size(names))];
  }

  void mutate_header(Bytes& b) {
    const auto hs = headers(b);
    if (hs.empty()) {
      flip(b);
      return;
    }
    const auto pos = hs[below(hs.size())];
    switch (below(6)) {
    case 0:
      set_field(b, pos, 0, 100, interesting_name(b));
      break;
    case 1: {
      static const char types[] = {'0', '1', '2', '3', '4', '5', '6', '7', 'x', 'g', 'L', 'K', 'S', 'V', 'M', 'Z', '\0'};
      b[pos + 156] = static_cast<std::uint8_t>(types[below(sizeof(types))]);
      break;
    }
    case 2: {
      static const char* sizes[] = {"00000000000", "00000000001", "77777777777", "00000001000", "0000000000x",
                                    "-0000000001", "   1000    "};
      std::string v = sizes[below(std::size(sizes))];
      if (below(2) == 0) {
        char field[12];
        std::snprintf(field, sizeof(field), "%011llo", static_cast<unsigned long long>(below(1u << 22)));
        v = field;
      }
      set_field(b, pos, 124, 12, v);
      break;
    }
    case 3:
      set_field(b, pos, 157, 100, interesting_name(b));
      break;
    case 4:
      // GNU base-256 size.
      b[pos + 124] = 0x80;
      for (std::size_t i = 125; i < 136; ++i) {
        b[pos + i] = static_cast<std::uint8_t>(below(4) == 0 ? below(256) : 0);
      }
      break;
    default:
      set_field(b, pos, 345, 155, below(2) == 0 ? "" : interesting_name(b));
      break;
    }
    fix_checksum(b, pos);
  }

  // Same-length edits inside data blocks: keeps the tar framing, breaks the JSON.
  void mutate_data(Bytes& b) {
    std::vector<std::size_t> json_bytes;
    for (std::size_t i = 0; i < b.size(); ++i) {
      const auto c = b[i];
      if (c == '{' || c == '"' || c == ':' || c == ',' || c == '[') {
        json_bytes.push_back(i);
      }
    }
    if (json_bytes.empty()) {
      flip(b);
      return;
    }
    const auto at = json_bytes[below(json_bytes.size())] + below(80);
    if (at >= b.size()) {
      return;
    }
    static const char repl[] = "{}[]\":,0123456789abcdef -.\\/eE+nulltruefalse";
    b[at] = static_cast<std::uint8_t>(repl[below(sizeof(repl) - 1)]);
  }

  void flip(Bytes& b) {
    if (b.empty()) {
      b.push_back(static_cast<std::uint8_t>(below(256)));
      return;
    }
    b[below(b.size())] ^= static_cast<std::uint8_t>(1u << below(8));
  }

  void gzip_wrap(Bytes& b) {
    struct archive* a = archive_write_new();
    archive_write_add_filter_gzip(a);
    archive_write_set_format_raw(a);
    Bytes out(b.size() + b.size() / 2 + 4096);
    std::size_t used = 0;
    archive_write_open_memory(a, out.data(), out.size(), &used);
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_filetype(e, AE_IFREG);
    archive_write_header(a, e);
    archive_write_data(a, b.data(), b.size());
    archive_write_close(a);
    archive_entry_free(e);
    archive_write_free(a);
    out.resize(used);
    b = std::move(out);
  }

  void one(Bytes& b) {
    switch (below(9)) {
    case 0:
    case 1:
      flip(b);
      break;
    case 2:
      if (!b.empty()) {
        b.resize(below(b.size()));
      }
      break;
    case 3:
      if (b.size() > 512) {
        const auto start = below(b.size() / 512) * 512;
        const auto len = std::min<std::size_t>((1 + below(4)) * 512, b.size() - start);
        b.erase(b.begin() + static_cast<long>(start), b.begin() + static_cast<long>(start + len));
      }
      break;
    case 4:
      if (b.size() > 512) {
        // Repeat some blocks: duplicate entries, entries out of order.
        const auto start = below(b.size() / 512) * 512;
        const auto len = std::min<std::size_t>((1 + below(4)) * 512, b.size() - start);
        const Bytes copy(b.begin() + static_cast<long>(start), b.begin() + static_cast<long>(start + len));
        const auto to = below(b.size() / 512) * 512;
        b.insert(b.begin() + static_cast<long>(to), copy.begin(), copy.end());
      }
      break;
    case 5:
    case 6:
      mutate_header(b);
      break;
    case 7:
      mutate_data(b);
      break;
    default:
      if (below(4) == 0 && b.size() < (4u << 20)) {
        gzip_wrap(b);
      } else {
        flip(b);
      }
      break;
    }
  }

  std::mt19937_64 rng_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kload_fuzz_archive_reader(data, size);
}

extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  if (seed % 2 == 0) {
    return LLVMFuzzerMutate(data, size, max_size);
  }
  Bytes b(data, data + size);
  Mutator(seed).mutate(b);
  b.resize(std::min(b.size(), max_size));
  std::copy(b.begin(), b.end(), data);
  return b.size();
}

#endif
