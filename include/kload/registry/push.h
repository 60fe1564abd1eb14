#pragma once
// `kload push`: images of an ImageSet sent to an OCI distribution registry, only the
// blobs it lacks, then the manifests, so that a tag never names a manifest whose
// blobs are not all there.

#include "kload/format/model.h"
#include "kload/registry/auth.h"
#include "kload/registry/compress.h"
#include "kload/registry/http.h"
#include "kload/registry/names.h"
#include "kload/util/error.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kload::registry {

enum class Scheme { https, http };

struct PushOptions {
  RegistryAddress registry;
  Scheme scheme = Scheme::https;
  std::optional<Credentials> credentials;  // nullopt: anonymous (a Bearer token may still be granted)
  unsigned jobs = 4;                       // requests (and blobs in memory) at once
  // Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
  // Each blob in flight holds at most this much in memory.
  std::uint64_t chunk_bytes = 32ull << 20;
  // Docker-archive images' uncompressed layers compressed before they travel
  // (compress_layers), into a private temporary directory kept as long as the report.
  Compression compress = Compression::none;
};

// What one image under one reference got.
struct PushedImage {
  const format::Image* image = nullptr;
  Destination destination;
  std::size_t blobs_uploaded = 0;  // config and layers of this image, in this repository
  std::size_t blobs_mounted = 0;
  std::size_t blobs_present = 0;
  std::uint64_t bytes_uploaded = 0;
  bool manifest_written = false;  // false: the reference (or the digest, under an index) already named it
  bool under_index = false;       // the reference names an index listing this manifest, sent by digest
};

// An image index written under a reference: the input's own bytes, after the manifests
// of every platform it lists (and the indexes nested in it).
struct PushedIndex {
  Destination destination;
  format::Descriptor index;                  // the outermost index the input reaches its images through
  std::vector<const format::Image*> images;  // its platforms, as PushReport::images lists them
  bool written = false;                      // false: the reference already named it
};

struct PushReport {
  std::vector<PushedImage> images;
  std::vector<PushedIndex> indexes;
  // Distinct (repository, blob) pairs over the whole push.
  std::size_t blobs_uploaded = 0;
  std::size_t blobs_mounted = 0;
  std::size_t blobs_present = 0;
  std::uint64_t bytes_uploaded = 0;
  std::uint64_t bytes_hashed = 0;  // proving the blobs sent before sending them
  std::map<std::string, std::uint64_t> requests;  // HTTP method -> requests sent
  // With PushOptions::compress: the compressed images `images` point at and their
  // spool, alive as long as the report.
  std::shared_ptr<void> compressed;
};

// Pushes each image of `images` (from `set`) under each of its names, mapped by
// destination_for. Images that share a reference are the platforms of one index: the
// reference gets that index (its own bytes, after each platform's manifest by digest
// and the indexes nested in it) when `images` hold every manifest it lists; a single
// image reached through an index it alone completes gets the index too, any other
// single image its manifest. Per repository, one HEAD per blob (config and layers) on
// up to `jobs` threads; then every blob to send is hashed before any is sent (as a
// load proves what travels) and hashed again by the read that sends it, its last
// bytes held back until that hash matches; blobs another repository of this push
// holds are mounted from there; then, once every blob of every repository is there,
// each manifest, then each index, is checked (HEAD: the reference already names this
// digest, nothing written) and else PUT. A docker-archive image's manifest is the one
// the reader synthesised (format::Image::manifest_bytes), as a load sends it. Error:
// bad_input (an image without a name, a reference given to two images that are not
// the whole of one index, a blob, manifest or index that does not match its digest or
// changed since it was read); node (the registry refused or could not be reached: one
// line naming the registry, the repository, the blob or manifest, the HTTP status and
// the registry's error code and message); io (unreadable input, no temporary space
// to compress layers into).
util::Result<PushReport> push(format::ImageSet& set, const std::vector<const format::Image*>& images,
                              const PushOptions& options, HttpClient& http);

} // namespace kload::registry
