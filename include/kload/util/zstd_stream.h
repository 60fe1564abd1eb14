#pragma once
// zstd streaming compression in front of a byte sink (libzstd), and its inverse for
// whole buffers. A stream is one frame with a content checksum: only finish() ends
// it, so a writer dropped half-way leaves a frame that every decoder refuses as cut.

#include "kload/util/error.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

struct ZSTD_CCtx_s;

namespace kload::util {

// Where bytes go, in order: each call takes all of `bytes` or fails (and the stream
// ends there).
using ByteSink = std::function<Result<void>(std::string_view bytes)>;

// A sink writing to `fd` with write_all (its stall limit included); `what` names the
// stream in errors.
ByteSink fd_sink(int fd, std::string what);

class ZstdWriter {
public:
  // A compressor at `level` (1: fastest) whose output goes to `sink`. Error (io):
  // libzstd has no context for it or refuses the level.
  static Result<ZstdWriter> open(ByteSink sink, int level);

  // Compresses `bytes`; what libzstd has ready goes to the sink (it keeps up to a
  // block back). Error: the sink's, or (io) libzstd's.
  Result<void> write(std::string_view bytes);
  // Ends the frame (the rest of the data and the checksum). Error: as write().
  Result<void> finish();

  [[nodiscard]] std::uint64_t bytes_in() const { return in_; }
  [[nodiscard]] std::uint64_t bytes_out() const { return out_; }

private:
  struct FreeContext {
    void operator()(ZSTD_CCtx_s* c) const;
  };
  ZstdWriter(std::unique_ptr<ZSTD_CCtx_s, FreeContext> ctx, ByteSink sink);
  enum class Frame { open, close };
  // Runs the compressor over `bytes` until it took them all (and, for Frame::close,
  // until the frame is closed), passing its output to the sink.
  Result<void> pump(std::string_view bytes, Frame frame);

  std::unique_ptr<ZSTD_CCtx_s, FreeContext> ctx_;
  ByteSink sink_;
  std::string buffer_;
  std::uint64_t in_ = 0;
  std::uint64_t out_ = 0;
};

// The bytes one or more whole zstd frames hold. Error (bad_input): not zstd, corrupt
// (checksum included), or cut before a frame's end.
Result<std::string> zstd_decompress(std::string_view compressed);

} // namespace kload::util
