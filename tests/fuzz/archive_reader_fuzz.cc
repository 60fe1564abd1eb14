// Fuzz target for format::read_archive.
//
// Each input is written to a private temporary file and read twice: as a file (the
// in-place path for an uncompressed tar, the decompressing path otherwise) and as
// standard input (the streaming path). What both reads accept is then hashed,
// linted and written out as a thin archive, and the two reads must agree on what
// they found. Nothing is caught: a crash, a sanitizer report or a disagreement aborts.
//
// Built with -fsanitize=fuzzer it is a libFuzzer target. Built with
// KLOAD_FUZZ_STANDALONE it carries its own main(): a mutation loop with tar-aware
// mutators and no coverage feedback, for compilers without libFuzzer (see README.md).

#include "kload/format/archive_reader.h"
#include "kload/format/oci_writer.h"
#include "kload/format/run_lint.h"
#include "kload/format/verify.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <unordered_set>
#include <vector>

namespace {

namespace fs = std::filesystem;
using kload::format::ImageSet;
using kload::format::ReadLimits;

// Small limits so that one input cannot take the fuzzer's memory or time, and a
// small in-memory threshold so that small inputs exercise spooling too.
constexpr ReadLimits limits{.max_metadata_bytes = 1u << 20,
                            .max_entries = 10000,
                            .max_expansion_ratio = 1000,
                            .ratio_grace = 1u << 20,
                            .max_expanded_bytes = 256u << 20,
                            .memory_entry_bytes = 1024};

struct Workspace {
  fs::path dir;
  fs::path input;
  int saved_stdin = -1;
  int dev_null = -1;

  Workspace() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/kload-fuzz.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir = templ;
    input = dir / "input";
    saved_stdin = ::dup(0);
    dev_null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (dev_null < 0) {
      std::abort();
    }
  }
  ~Workspace() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Workspace& workspace() {
  static Workspace w;
  return w;
}

void write_input(const fs::path& path, const std::uint8_t* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("open");
    std::abort();
  }
  std::size_t off = 0;
  while (off < size) {
    const ssize_t n = ::write(fd, data + off, size - off);
    if (n <= 0) {
      std::perror("write");
      std::abort();
    }
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

// read_archive("-") with the input file as standard input: the streaming path
// without a pipe (and without a thread to feed it).
kload::util::Result<kload::format::ReadStats> read_as_stdin(const fs::path& path, ImageSet& set) {
  auto& w = workspace();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::abort();
  }
  ::dup2(fd, 0);
  ::close(fd);
  auto r = kload::format::read_archive("-", set, limits);
  ::dup2(w.saved_stdin, 0);
  return r;
}

// Everything later steps do with a set that was read successfully.
void exercise(ImageSet& set) {
  std::vector<kload::util::Digest> all;
  std::vector<kload::format::ThinEntry> entries;
  std::unordered_set<kload::util::Digest> layers;
  for (const auto& image : set.images) {
    for (const auto& d : ImageSet::blobs_of(image)) {
      all.push_back(d);
    }
    for (const auto& l : image.layers) {
      layers.insert(l.blob.digest);
    }
    entries.push_back({&image, image.names.empty() ? "docker.io/library/fuzz:latest" : image.names.front()});
    (void)kload::format::describe_command(image.run);
    (void)kload::format::lint_run_config(image.run);
    (void)image.platform.str();
  }
  (void)set.layer_use_counts();
  auto verified = kload::format::verify_blobs(set, all, 1);
  // The writer refuses unverified or mismatching blobs; either way it must not crash.
  (void)kload::format::write_thin_archive(workspace().dev_null, set, entries, layers);
  (void)verified;
}

// What a read found, independent of where the input came from.
std::string signature(const ImageSet& set) {
  std::vector<std::string> parts;
  for (const auto& image : set.images) {
    std::string s = image.id.str() + " " + image.manifest.digest.str() + " " + image.platform.str() + " [";
    for (const auto& n : image.names) {
      s += n + ",";
    }
    s += "]";
    for (const auto& l : image.layers) {
      s += " " + l.blob.digest.str() + "/" + std::to_string(l.blob.size) + "/" + l.diff_id.str() + "/" +
           l.blob.media_type;
    }
    parts.push_back(s);
  }
  for (const auto& u : set.unavailable) {
    std::string s = "unavailable " + u.platform.str() + " [";
    for (const auto& n : u.names) {
      s += n + ",";
    }
    parts.push_back(s + "] " + u.reason);
  }
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) {
    out += p + "\n";
  }
  return out;
}

} // namespace

// Runs one input; returns a short description of the outcome (used by the standalone
// driver to keep inputs that reach new outcomes).
std::string kload_fuzz_one(const std::uint8_t* data, std::size_t size) {
  auto& w = workspace();
  write_input(w.input, data, size);
  ImageSet from_file;
  auto a = kload::format::read_archive(w.input.string(), from_file, limits);
  ImageSet from_stdin;
  auto b = read_as_stdin(w.input, from_stdin);
  if (a && b) {
    const auto sa = signature(from_file);
    const auto sb = signature(from_stdin);
    if (sa != sb) {
      std::fprintf(stderr, "read as a file and read from stdin disagree:\nfile:\n%s\nstdin:\n%s\n", sa.c_str(),
                   sb.c_str());
      std::abort();
    }
  }
  std::string outcome = a ? "ok " + std::to_string(from_file.images.size()) + "/" +
                                std::to_string(from_file.unavailable.size()) + (a->indexed_in_place ? " in-place" : "")
                          : a.error().message;
  outcome += " | ";
  outcome += b ? "ok" : b.error().message;
  if (a) {
    exercise(from_file);
  }
  if (b) {
    exercise(from_stdin);
  }
  return outcome;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)kload_fuzz_one(data, size);
  return 0;
}

#ifdef KLOAD_FUZZ_STANDALONE
// ---------------------------------------------------------------------------------
// A small driver for builds without libFuzzer: runs every corpus file, then mutates
// them at random for -runs=N inputs or -max_total_time=S seconds. Without coverage
// feedback, an input is kept for further mutation when it produces an outcome (an
// error message with numbers and digests blanked out) not seen before.

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>

namespace {

using Bytes = std::vector<std::uint8_t>;

// An outcome without what varies from input to input: only the last part of each
// error message (after the input and entry names), numbers and digests blanked.
std::string normalise(const std::string& outcome) {
  static const std::regex hex("[0-9a-f]{12,}");
  static const std::regex num("[0-9]+");
  std::string out;
  std::size_t start = 0;
  while (start <= outcome.size()) {
    auto end = outcome.find(" | ", start);
    std::string part = outcome.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (const auto colon = part.rfind(": "); colon != std::string::npos) {
      part = part.substr(colon + 2);
    }
    out += std::regex_replace(std::regex_replace(part, hex, "H"), num, "N") + " | ";
    if (end == std::string::npos) {
      break;
    }
    start = end + 3;
  }
  return out;
}

class Mutator {
public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  Bytes mutate(const Bytes& in, const std::vector<Bytes>& pool) {
    Bytes out = in;
    const int n = 1 + static_cast<int>(below(4));
    for (int i = 0; i < n; ++i) {
      one(out, pool);
    }
    return out;
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

  std::string interesting_name(const Bytes& b, std::size_t pos) {
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
    (void)pos;
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
      set_field(b, pos, 0, 100, interesting_name(b, pos));
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
      set_field(b, pos, 157, 100, interesting_name(b, pos));
      break;
    case 4:
      // GNU base-256 size.
      b[pos + 124] = 0x80;
      for (std::size_t i = 125; i < 136; ++i) {
        b[pos + i] = static_cast<std::uint8_t>(below(4) == 0 ? below(256) : 0);
      }
      break;
    default:
      set_field(b, pos, 345, 155, below(2) == 0 ? "" : interesting_name(b, pos));
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

  void one(Bytes& b, const std::vector<Bytes>& pool) {
    switch (below(10)) {
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
    case 8:
      if (!pool.empty()) {
        // Splice: the head of this archive and the tail of another, on block boundaries.
        const auto& other = pool[below(pool.size())];
        const auto cut = below(b.size() / 512 + 1) * 512;
        const auto from = below(other.size() / 512 + 1) * 512;
        b.resize(std::min(cut, b.size()));
        b.insert(b.end(), other.begin() + static_cast<long>(std::min(from, other.size())), other.end());
      }
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

Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

int usage() {
  std::cerr << "usage: archive_reader_fuzz [-runs=N] [-max_total_time=SECONDS] [-seed=N]\n"
               "                           [-artifact_prefix=DIR/] [-save_new=DIR] CORPUS_DIR_OR_FILE...\n"
               "Runs every input once, then mutated inputs until -runs or -max_total_time is reached.\n"
               "The input being run is kept in ARTIFACT_PREFIXcurrent-input, so after a crash it is the\n"
               "reproducer; run the binary on that one file to reproduce.\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  long long runs = -1;
  double max_time = 0;
  std::uint64_t seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::string artifact_prefix = "./";
  std::string save_new;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> std::optional<std::string> {
      const std::string f = std::string(flag) + "=";
      return arg.starts_with(f) ? std::optional(arg.substr(f.size())) : std::nullopt;
    };
    if (auto v = value("-runs")) {
      runs = std::stoll(*v);
    } else if (auto v = value("-max_total_time")) {
      max_time = std::stod(*v);
    } else if (auto v = value("-seed")) {
      seed = std::stoull(*v);
    } else if (auto v = value("-artifact_prefix")) {
      artifact_prefix = *v;
    } else if (auto v = value("-save_new")) {
      save_new = *v;
    } else if (arg.starts_with("-")) {
      return usage();
    } else if (fs::is_directory(arg)) {
      for (const auto& e : fs::recursive_directory_iterator(arg)) {
        if (e.is_regular_file()) {
          inputs.push_back(e.path());
        }
      }
    } else {
      inputs.push_back(arg);
    }
  }
  if (inputs.empty()) {
    return usage();
  }
  std::sort(inputs.begin(), inputs.end());
  const fs::path current = artifact_prefix + "current-input";

  std::vector<Bytes> pool;
  std::set<std::string> outcomes;
  for (const auto& p : inputs) {
    Bytes b = read_bytes(p);
    write_bytes(current, b);
    const auto outcome = kload_fuzz_one(b.data(), b.size());
    outcomes.insert(normalise(outcome));
    pool.push_back(std::move(b));
  }
  std::cerr << "ran " << inputs.size() << " inputs, " << outcomes.size() << " distinct outcomes; seed " << seed
            << "\n";
  if (runs < 0 && max_time <= 0) {
    fs::remove(current);
    return 0; // just run the inputs, like libFuzzer given files
  }

  Mutator mutator(seed);
  std::mt19937_64 pick(seed ^ 0x5deece66dull);
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  long long done = 0;
  for (; runs < 0 || done < runs; ++done) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    if (max_time > 0 && elapsed >= max_time) {
      break;
    }
    if (now - last_report > std::chrono::seconds(10)) {
      std::cerr << "#" << done << " " << static_cast<long long>(done / std::max(elapsed, 1e-3)) << " exec/s, pool "
                << pool.size() << ", outcomes " << outcomes.size() << "\n";
      last_report = now;
    }
    const auto& parent = pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(pick)];
    Bytes child = mutator.mutate(parent, pool);
    if (child.size() > (8u << 20)) {
      continue;
    }
    write_bytes(current, child);
    const auto outcome = normalise(kload_fuzz_one(child.data(), child.size()));
    if (outcomes.insert(outcome).second) {
      if (!save_new.empty()) {
        std::ostringstream name;
        name << save_new << "/new-" << done;
        write_bytes(name.str(), child);
      }
      if (pool.size() < 5000) {
        pool.push_back(std::move(child));
      }
    }
  }
  fs::remove(current);
  std::cerr << "done: " << done << " mutated inputs, " << outcomes.size() << " distinct outcomes, no crash\n";
  return 0;
}
#endif
