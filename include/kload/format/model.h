#pragma once
// The image model every later step works on: images, their manifests, configs and
// layers, and where each blob's bytes live in the input. Knows nothing of nodes.

#include "kload/util/digest.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace kload::format {

namespace media_type {
inline constexpr const char* oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* oci_layer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr const char* oci_layer_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr const char* oci_layer_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr const char* docker_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* docker_manifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* docker_layer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr const char* docker_layer_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
} // namespace media_type

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;

  // "os/arch" or "os/arch/variant"; "unknown" when empty.
  [[nodiscard]] std::string str() const;
  // Parses "os/arch[/variant]"; nullopt when malformed.
  static std::optional<Platform> parse(std::string_view text);
  // The platform this machine runs, e.g. linux/amd64.
  static Platform host();
  // True when os and architecture are equal and, if `want` names a variant, it too.
  [[nodiscard]] bool matches(const Platform& want) const;
  auto operator<=>(const Platform&) const = default;
};

struct Descriptor {
  std::string media_type;
  util::Digest digest;
  std::uint64_t size = 0;
};

struct Layer {
  Descriptor blob;       // as stored and sent (maybe compressed)
  util::Digest diff_id;  // digest of the uncompressed tar, from the config
};

// Which kind of archive an image came from: it decides which manifest kload sends.
enum class SourceFormat { docker_archive, oci_layout };

// What the image runs, decoded from its config.
struct RunConfig {
  std::optional<std::vector<std::string>> entrypoint;
  std::optional<std::vector<std::string>> cmd;
};

struct Image {
  std::vector<std::string> names;  // normalised; may be empty (OCI ref name was a bare tag)
  util::Digest id;                 // the image ID: the config digest
  Platform platform;
  Descriptor config;
  // The manifest kload sends: the archive's own for OCI layouts; for docker archives the
  // schema-2 manifest containerd itself synthesises on import, so digests agree.
  Descriptor manifest;
  std::string manifest_bytes;
  // The image indexes the input reaches the manifest through, outermost first: the
  // descriptor index.json names and each index below it down to the manifest's parent.
  // Empty when the input names the manifest itself (docker archives, flat OCI layouts).
  // Their bytes are blobs of the set, exactly as the input holds them.
  std::vector<Descriptor> indexes;
  std::vector<Layer> layers;
  RunConfig run;
  SourceFormat format = SourceFormat::docker_archive;
  std::string source;  // the input it came from, as the user named it

  // Sum of the layer blob sizes.
  [[nodiscard]] std::uint64_t layer_bytes() const;
  // What the image's names point at on a node: the outermost index when the input has
  // one and the image is of this machine's platform (the one `ctr images import` and
  // `ctr images check` pick on a node of this platform), else the manifest. Never fails.
  [[nodiscard]] const Descriptor& target() const;
  // True when target() is an index, not the manifest.
  [[nodiscard]] bool targets_index() const;
};

// A platform listed by an index whose blobs the archive does not hold (Docker's
// containerd image store writes such archives). Not an error unless asked for.
struct UnavailableImage {
  std::vector<std::string> names;
  Platform platform;
  std::string source;
  std::string reason;  // e.g. "manifest sha256:... not in the archive"
};

// Where a blob's bytes are.
struct BlobLocation {
  std::string source;               // the input, as the user named it ("-" = stdin)
  std::string entry;                // the archive entry holding it
  std::filesystem::path file;       // file to read from: the input itself or a spool file
  std::uint64_t offset = 0;         // where the bytes start in `file`
  std::shared_ptr<const std::string> memory;  // set when the bytes are held in memory
};

struct Blob {
  util::Digest digest;                   // the digest the metadata claims
  std::uint64_t size = 0;
  BlobLocation where;
  std::optional<util::Digest> computed;  // the bytes' real digest, once hashed
};

// Several archives, one set: a blob shared by several images is one Blob.
class ImageSet {
public:
  std::vector<Image> images;
  std::vector<UnavailableImage> unavailable;
  std::unordered_map<util::Digest, Blob> blobs;
  std::vector<std::string> warnings;  // non-fatal findings, one line each

  // The blob with that digest, or nullptr.
  [[nodiscard]] const Blob* find(const util::Digest& d) const;
  // The metadata blobs a node needs to name `image`: the indexes down to its manifest
  // when it targets one (outermost first), the manifest, the config.
  [[nodiscard]] static std::vector<util::Digest> metadata_of(const Image& image);
  // Every blob digest `image` needs: metadata_of, then the layers.
  [[nodiscard]] static std::vector<util::Digest> blobs_of(const Image& image);
  // For each layer digest, how many images of the set use it.
  [[nodiscard]] std::unordered_map<util::Digest, int> layer_use_counts() const;

  // Keeps spool files alive as long as the set; set by the reader.
  std::shared_ptr<void> spool_owner;
};

} // namespace kload::format
