#include "fuzz_support.h"

#include "kload/format/oci_writer.h"
#include "kload/format/run_lint.h"
#include "kload/format/verify.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>
#include <unordered_set>

namespace kload::fuzz {

namespace fs = std::filesystem;
using format::ImageSet;

namespace {

struct Scratch {
  fs::path dir;
  int saved_stdin = -1;
  int dev_null = -1;

  Scratch() {
    const char* base = std::getenv("TMPDIR");
    std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/kload-fuzz.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir = templ;
    saved_stdin = ::dup(0);
    dev_null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved_stdin < 0 || dev_null < 0) {
      std::perror("dup or open /dev/null");
      std::abort();
    }
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

bool last_accepted = false;

} // namespace

void set_accepted(bool accepted) { last_accepted = accepted; }
bool accepted() { return last_accepted; }

const fs::path& scratch_dir() { return scratch().dir; }

void fail(const std::string& what) {
  std::fprintf(stderr, "kload fuzz: %s\n", what.c_str());
  std::abort();
}

void write_file(const fs::path& path, const void* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("open");
    std::abort();
  }
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::size_t off = 0;
  while (off < size) {
    const ssize_t n = ::write(fd, p + off, size - off);
    if (n <= 0) {
      std::perror("write");
      std::abort();
    }
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

util::Result<format::ReadStats> read_as_stdin(const fs::path& path, ImageSet& set) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror("open");
    std::abort();
  }
  ::dup2(fd, 0);
  ::close(fd);
  auto r = format::read_archive("-", set, limits);
  ::dup2(scratch().saved_stdin, 0);
  return r;
}

void read_both_ways(const fs::path& path) {
  ImageSet from_file;
  auto a = format::read_archive(path.string(), from_file, limits);
  ImageSet from_stdin;
  auto b = read_as_stdin(path, from_stdin);
  if (a && b) {
    const auto sa = signature(from_file);
    const auto sb = signature(from_stdin);
    if (sa != sb) {
      fail("read as a file and read from stdin disagree:\nfile:\n" + sa + "\nstdin:\n" + sb);
    }
  }
  for (const auto* err : {a ? nullptr : &a.error(), b ? nullptr : &b.error()}) {
    if (err != nullptr && err->message.empty()) {
      fail("a failed read must say why");
    }
  }
  set_accepted(a && b && !from_file.images.empty());
  if (a) {
    exercise(from_file);
  }
  if (b) {
    exercise(from_stdin);
  }
}

void exercise(ImageSet& set) {
  std::vector<util::Digest> all;
  std::vector<format::ThinEntry> entries;
  std::unordered_set<util::Digest> layers;
  for (const auto& image : set.images) {
    for (const auto& d : ImageSet::blobs_of(image)) {
      all.push_back(d);
    }
    for (const auto& l : image.layers) {
      layers.insert(l.blob.digest);
    }
    entries.push_back({&image, image.names.empty() ? "docker.io/library/fuzz:latest" : image.names.front()});
    (void)format::describe_command(image.run);
    (void)format::lint_run_config(image.run);
    (void)image.platform.str();
  }
  (void)set.layer_use_counts();
  (void)format::verify_blobs(set, all, 1);
  // The writer refuses unverified or mismatching blobs; either way it must not crash.
  (void)format::write_thin_archive(scratch().dev_null, set, entries, layers);
}

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

std::vector<std::string_view> split(std::string_view data, std::string_view separator) {
  std::vector<std::string_view> out;
  while (true) {
    const auto at = data.find(separator);
    if (at == std::string_view::npos) {
      out.push_back(data);
      return out;
    }
    out.push_back(data.substr(0, at));
    data.remove_prefix(at + separator.size());
  }
}

} // namespace kload::fuzz
