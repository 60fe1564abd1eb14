// Fuzz target for the JSON metadata: docker-save manifest.json, OCI index.json, image
// indexes, manifests and configs, and `docker image inspect` output.
//
// The input is text: a first line naming the layout, then JSON documents separated
// by lines holding only "--". The target packs the documents into a well-formed tar,
// so that every mutation reaches the JSON handling instead of failing at the tar
// framing, and reads it both ways as the archive target does:
//
//   docker   document 0 is manifest.json; documents 1.. are blobs/sha256/<hex>
//   oci      document 0 is index.json (with an oci-layout file); documents 1.. are
//            blobs/sha256/<hex>
//   inspect  document 0 is `docker image inspect` output, document 1 the references
//            asked for, one per line (each also goes through image-name normalising)
//
// One small layer is always present, as blobs/sha256/<hex> and as layer.tar. In
// document i, "@N" stands for the hex digest and "#N" for the size of document N
// (for N > i, so references form a graph without cycles), "@L" and "#L" for the
// layer's. The seeds in seeds/metadata/ are valid images of every shape.

#include "fuzz_support.h"

#include "kload/format/image_ref.h"
#include "kload/source/docker.h"
#include "kload/util/sha256.h"

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using kload::util::Sha256;

struct Entry {
  std::string name;
  std::string body;
};

la_ssize_t append(struct archive*, void* out, const void* data, std::size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
  return static_cast<la_ssize_t>(size);
}

std::string tar_of(const std::vector<Entry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open2(a, &out, nullptr, append, nullptr, nullptr) != ARCHIVE_OK) {
    kload::fuzz::fail("cannot open the tar writer");
  }
  for (const auto& e : entries) {
    struct archive_entry* h = archive_entry_new();
    archive_entry_set_pathname(h, e.name.c_str());
    archive_entry_set_filetype(h, AE_IFREG);
    archive_entry_set_perm(h, 0644);
    archive_entry_set_size(h, static_cast<la_int64_t>(e.body.size()));
    archive_write_header(a, h);
    archive_write_data(a, e.body.data(), e.body.size());
    archive_entry_free(h);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// The one layer every image may use: a tar holding one small file.
const std::string& layer() {
  static const std::string tar = tar_of({{"hello.txt", "hello from a fuzzed image\n"}});
  return tar;
}

// Replaces the placeholders of document `i` (see the file comment).
std::string substitute(std::string_view doc, std::size_t i, const std::vector<std::string>& hex,
                       const std::vector<std::string>& sizes) {
  static const std::string layer_hex = Sha256::of(layer()).hex();
  static const std::string layer_size = std::to_string(layer().size());
  std::string out;
  out.reserve(doc.size());
  for (std::size_t k = 0; k < doc.size(); ++k) {
    const char c = doc[k];
    if ((c == '@' || c == '#') && k + 1 < doc.size()) {
      const char n = doc[k + 1];
      if (n == 'L') {
        out += c == '@' ? layer_hex : layer_size;
        ++k;
        continue;
      }
      if (n >= '1' && n <= '9') {
        const auto j = static_cast<std::size_t>(n - '0');
        if (j > i && j < hex.size()) {
          out += c == '@' ? hex[j] : sizes[j];
          ++k;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

void inspect(const std::vector<std::string_view>& docs) {
  std::vector<std::string> refs;
  if (docs.size() > 1) {
    for (const auto line : kload::fuzz::split(docs[1], "\n")) {
      refs.emplace_back(line);
      (void)kload::format::looks_like_reference(line);
      (void)kload::format::normalize_image_name(line);
    }
  }
  kload::fuzz::set_accepted(kload::source::parse_inspect(docs[0], refs).has_value());
}

} // namespace

int kload_fuzz_metadata(const std::uint8_t* data, std::size_t size) {
  kload::fuzz::set_accepted(false);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto newline = text.find('\n');
  if (newline == std::string_view::npos) {
    return 0;
  }
  const auto layout = text.substr(0, newline);
  auto docs = kload::fuzz::split(text.substr(newline + 1), "\n--\n");
  if (docs.size() > 9) {
    docs.resize(9);  // placeholders name documents 1 to 9
  }
  if (layout == "inspect") {
    inspect(docs);
    return 0;
  }
  if (layout != "docker" && layout != "oci") {
    return 0;
  }
  // Last document first: each may name the digests of the ones after it.
  std::vector<std::string> bodies(docs.size());
  std::vector<std::string> hex(docs.size());
  std::vector<std::string> sizes(docs.size());
  for (std::size_t i = docs.size(); i-- > 0;) {
    bodies[i] = substitute(docs[i], i, hex, sizes);
    hex[i] = Sha256::of(bodies[i]).hex();
    sizes[i] = std::to_string(bodies[i].size());
  }
  std::vector<Entry> entries;
  if (layout == "oci") {
    entries.push_back({"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"});
    entries.push_back({"index.json", bodies[0]});
  } else {
    entries.push_back({"manifest.json", bodies[0]});
  }
  entries.push_back({"blobs/sha256/" + Sha256::of(layer()).hex(), layer()});
  entries.push_back({"layer.tar", layer()});
  for (std::size_t i = 1; i < bodies.size(); ++i) {
    entries.push_back({"blobs/sha256/" + hex[i], bodies[i]});
  }
  const auto tar = tar_of(entries);
  const auto input = kload::fuzz::scratch_dir() / "metadata.tar";
  kload::fuzz::write_file(input, tar.data(), tar.size());
  kload::fuzz::read_both_ways(input);
  return 0;
}

#ifndef KLOAD_FUZZ_REPLAY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kload_fuzz_metadata(data, size);
}
#endif
