#include "kload/util/zstd_stream.h"

#include "kload/util/process.h"

#include <zstd.h>

#include <fmt/format.h>

namespace kload::util {

ByteSink fd_sink(int fd, std::string what) {
  return [fd, what = std::move(what)](std::string_view bytes) { return write_all(fd, bytes.data(), bytes.size(), what); };
}

void ZstdWriter::FreeContext::operator()(ZSTD_CCtx_s* c) const { ZSTD_freeCCtx(c); }

ZstdWriter::ZstdWriter(std::unique_ptr<ZSTD_CCtx_s, FreeContext> ctx, ByteSink sink)
    : ctx_(std::move(ctx)), sink_(std::move(sink)), buffer_(ZSTD_CStreamOutSize(), '\0') {}

Result<ZstdWriter> ZstdWriter::open(ByteSink sink, int level) {
  std::unique_ptr<ZSTD_CCtx_s, FreeContext> ctx(ZSTD_createCCtx());
  if (!ctx) {
    return fail(ErrorKind::io, "zstd: no memory for a compression context");
  }
  // The checksum lets the decoder tell a stream damaged on the way from a whole one.
  for (const auto& [param, value] : {std::pair{ZSTD_c_compressionLevel, level}, std::pair{ZSTD_c_checksumFlag, 1}}) {
    if (const auto r = ZSTD_CCtx_setParameter(ctx.get(), param, value); ZSTD_isError(r) != 0) {
      return fail(ErrorKind::io, fmt::format("zstd: {} (level {})", ZSTD_getErrorName(r), level));
    }
  }
  return ZstdWriter(std::move(ctx), std::move(sink));
}

Result<void> ZstdWriter::pump(std::string_view bytes, Frame frame) {
  ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
  const auto directive = frame == Frame::close ? ZSTD_e_end : ZSTD_e_continue;
  for (;;) {
    ZSTD_outBuffer out{buffer_.data(), buffer_.size(), 0};
    const auto left = ZSTD_compressStream2(ctx_.get(), &out, &in, directive);
    if (ZSTD_isError(left) != 0) {
      return fail(ErrorKind::io, fmt::format("zstd: {}", ZSTD_getErrorName(left)));
    }
    if (out.pos > 0) {
      if (auto r = sink_(std::string_view(buffer_.data(), out.pos)); !r) {
        return r;
      }
      out_ += out.pos;
    }
    // continue: done once every input byte is taken; end: once nothing is left to flush.
    if (frame == Frame::close ? left == 0 : in.pos == in.size) {
      break;
    }
  }
  in_ += bytes.size();
  return {};
}

Result<void> ZstdWriter::write(std::string_view bytes) { return pump(bytes, Frame::open); }

Result<void> ZstdWriter::finish() { return pump({}, Frame::close); }

Result<std::string> zstd_decompress(std::string_view compressed) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) {
    return fail(ErrorKind::io, "zstd: no memory for a decompression context");
  }
  std::string out;
  std::string buffer(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  std::size_t left = 0;  // 0: the last frame is whole and flushed
  bool full = false;     // the last call filled the buffer: it may hold more back
  do {
    ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
    left = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(left) != 0) {
      return fail(ErrorKind::bad_input, fmt::format("zstd: {}", ZSTD_getErrorName(left)));
    }
    out.append(buffer.data(), o.pos);
    full = o.pos == o.size;
  } while (in.pos < in.size || (full && left != 0));
  if (left != 0 || compressed.empty()) {
    return fail(ErrorKind::bad_input, "zstd: the stream ends before its frame does (cut)");
  }
  return out;
}

} // namespace kload::util
