#include "kload/registry/compress.h"

#include "kload/format/verify.h"
#include "kload/util/fd.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>
#include <zstd.h>

#include <memory>

namespace kload::registry {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

// Compressed bytes go to the spool file and through a hash on their way.
struct Sink {
  util::Fd fd;
  std::string path;
  util::Sha256 hash;
  std::uint64_t size = 0;

  Result<void> write(const char* data, std::size_t n) {
    hash.update(std::string_view(data, n));
    size += n;
    return util::write_all(fd.get(), data, n, path);
  }
};

// A streaming compressor: feed() bytes, then finish(); output goes to the sink.
class Compressor {
public:
  virtual ~Compressor() = default;
  virtual Result<void> feed(std::string_view in, bool last) = 0;
};

class Gzip final : public Compressor {
public:
  explicit Gzip(Sink& sink) : sink_(sink) {
    // 16 + 15 window bits: a gzip wrapper, as registries and containerd expect.
    ok_ = deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Gzip() override { deflateEnd(&z_); }
  Gzip(const Gzip&) = delete;
  Gzip& operator=(const Gzip&) = delete;

  Result<void> feed(std::string_view in, bool last) override {
    if (!ok_) {
      return util::fail(ErrorKind::io, "cannot start gzip compression");
    }
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    char out[1 << 16];
    int rc = Z_OK;
    do {
      z_.next_out = reinterpret_cast<Bytef*>(out);
      z_.avail_out = sizeof(out);
      rc = deflate(&z_, last ? Z_FINISH : Z_NO_FLUSH);
      if (rc == Z_STREAM_ERROR) {
        return util::fail(ErrorKind::io, "gzip compression failed");
      }
      if (auto w = sink_.write(out, sizeof(out) - z_.avail_out); !w) {
        return w;
      }
    } while (z_.avail_out == 0 || (last && rc != Z_STREAM_END));
    return {};
  }

private:
  Sink& sink_;
  z_stream z_{};
  bool ok_ = false;
};

class Zstd final : public Compressor {
public:
  explicit Zstd(Sink& sink) : sink_(sink), cctx_(ZSTD_createCCtx(), ZSTD_freeCCtx) {
    if (cctx_) {
      ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, 3);
    }
  }

  Result<void> feed(std::string_view in, bool last) override {
    if (!cctx_) {
      return util::fail(ErrorKind::io, "cannot start zstd compression");
    }
    ZSTD_inBuffer input{in.data(), in.size(), 0};
    std::string out(ZSTD_CStreamOutSize(), '\0');
    for (;;) {
      ZSTD_outBuffer output{out.data(), out.size(), 0};
      const std::size_t left = ZSTD_compressStream2(cctx_.get(), &output, &input, last ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(left) != 0) {
        return util::fail(ErrorKind::io, fmt::format("zstd compression failed: {}", ZSTD_getErrorName(left)));
      }
      if (auto w = sink_.write(out.data(), output.pos); !w) {
        return w;
      }
      if (last ? left == 0 : input.pos == input.size) {
        return {};
      }
    }
  }

private:
  Sink& sink_;
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx_;
};

// One layer through the compressor into `spool`/DIGEST-HEX.EXT; the new blob joins
// `set`. The uncompressed bytes are hashed on the way: a layer that changed since it
// was read is refused. Error: io, bad_input.
Result<format::Descriptor> compress_blob(format::ImageSet& set, const format::Blob& blob, Compression compression,
                                         const std::filesystem::path& spool) {
  Sink sink;
  sink.path = (spool / fmt::format("{}.{}", blob.digest.hex(), compression == Compression::gzip ? "gz" : "zst"))
                  .string();
  sink.fd = util::Fd(::open(sink.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!sink.fd) {
    return util::fail(ErrorKind::io, fmt::format("{}: cannot create the compressed layer's spool file", sink.path));
  }
  std::unique_ptr<Compressor> c;
  if (compression == Compression::gzip) {
    c = std::make_unique<Gzip>(sink);
  } else {
    c = std::make_unique<Zstd>(sink);
  }
  util::Sha256 plain;
  auto read = format::read_blob(blob, [&](std::string_view bytes) -> Result<void> {
    plain.update(bytes);
    return c->feed(bytes, false);
  });
  if (!read) {
    return std::unexpected(read.error());
  }
  if (auto end = c->feed({}, true); !end) {
    return std::unexpected(end.error());
  }
  if (const auto now = plain.finish(); now != blob.digest) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: {}: layer {} hashes to {}; not sending it",
                                                        blob.where.source, blob.where.entry, blob.digest.str(),
                                                        now.str()));
  }
  const Digest digest = sink.hash.finish();
  format::Blob out{digest, sink.size, format::BlobLocation{blob.where.source, blob.where.entry, sink.path, 0, nullptr},
                   digest};
  set.blobs.insert_or_assign(digest, std::move(out));
  const char* type = compression == Compression::gzip ? format::media_type::docker_layer_gzip
                                                      : format::media_type::oci_layer_zstd;
  return format::Descriptor{type, digest, sink.size};
}

bool uncompressed(const std::string& media_type) {
  return media_type == format::media_type::docker_layer || media_type == format::media_type::oci_layer;
}

// The manifest naming the image's config and (compressed) layers: Docker schema 2 for
// gzip, OCI for zstd (Docker's schema has no zstd layer type).
void rebuild_manifest(format::Image& image, Compression compression) {
  const bool oci = compression == Compression::zstd;
  nlohmann::ordered_json m;
  m["schemaVersion"] = 2;
  m["mediaType"] = oci ? format::media_type::oci_manifest : format::media_type::docker_manifest;
  image.config.media_type = oci ? format::media_type::oci_config : format::media_type::docker_config;
  m["config"] = {{"mediaType", image.config.media_type},
                 {"digest", image.config.digest.str()},
                 {"size", image.config.size}};
  m["layers"] = nlohmann::ordered_json::array();
  for (const auto& l : image.layers) {
    m["layers"].push_back({{"mediaType", l.blob.media_type}, {"digest", l.blob.digest.str()}, {"size", l.blob.size}});
  }
  image.manifest_bytes = m.dump();
  image.manifest = format::Descriptor{m["mediaType"].get<std::string>(), util::Sha256::of(image.manifest_bytes),
                                     image.manifest_bytes.size()};
}

} // namespace

std::optional<Compression> parse_compression(std::string_view text) {
  if (text == "none") {
    return Compression::none;
  }
  if (text == "gzip") {
    return Compression::gzip;
  }
  if (text == "zstd") {
    return Compression::zstd;
  }
  return std::nullopt;
}

Result<std::vector<const format::Image*>> compress_layers(format::ImageSet& set,
                                                          const std::vector<const format::Image*>& images,
                                                          Compression compression, const std::filesystem::path& spool,
                                                          std::deque<format::Image>& out) {
  std::vector<const format::Image*> result;
  std::unordered_map<Digest, format::Descriptor> done;  // a layer shared by images is compressed once
  for (const auto* image : images) {
    if (compression == Compression::none || image->format != format::SourceFormat::docker_archive) {
      result.push_back(image);
      continue;
    }
    format::Image copy = *image;
    for (auto& layer : copy.layers) {
      if (!uncompressed(layer.blob.media_type)) {
        continue;
      }
      auto it = done.find(layer.blob.digest);
      if (it == done.end()) {
        const format::Blob* blob = set.find(layer.blob.digest);
        if (blob == nullptr) {
          return util::fail(ErrorKind::bad_input,
                            fmt::format("{}: layer {} is not in the input", image->source, layer.blob.digest.str()));
        }
        auto compressed = compress_blob(set, *blob, compression, spool);
        if (!compressed) {
          return std::unexpected(compressed.error());
        }
        it = done.emplace(layer.blob.digest, *compressed).first;
      }
      layer.blob = it->second;
    }
    rebuild_manifest(copy, compression);
    out.push_back(std::move(copy));
    result.push_back(&out.back());
  }
  return result;
}

} // namespace kload::registry
