#pragma once
// The body of an import stream, written once and read by every node it goes to: the
// input is read for it once, however many nodes lack the same blobs, and each node's
// stream is a copy of a file (splice: its bytes never pass through kload) followed by
// that node's own index.json.

#include "kload/format/model.h"
#include "kload/format/oci_writer.h"
#include "kload/load/loader.h"
#include "kload/node/node_client.h"
#include "kload/util/error.h"
#include "kload/util/fd.h"
#include "kload/util/temp_dir.h"
#include "kload/util/zstd_stream.h"

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace kload::load {

// What one body holds: the blobs of `images` (their metadata, and their layers in
// `layers`), and how it crosses to the node.
struct BodyContent {
  std::vector<const format::Image*> images;
  std::unordered_set<util::Digest> layers;
  node::WireCompression wire = node::WireCompression::none;
};

// Writes into `out` what `write` writes, inside one zstd frame of its own when `wire`
// is zstd (`zstd -d` reads frames one after another). A failure leaves the frame open,
// so the node's `zstd -d` fails on the cut stream as ctr does on a cut tar.
template <class T>
util::Result<T> in_frame(const util::ByteSink& out, node::WireCompression wire,
                         const std::function<util::Result<T>(const util::ByteSink&)>& write) {
  if (wire == node::WireCompression::none) {
    return write(out);
  }
  auto zstd = util::ZstdWriter::open(out, wire_zstd_level);
  if (!zstd) {
    return std::unexpected(zstd.error());
  }
  auto r = write([&](std::string_view bytes) { return zstd->write(bytes); });
  if (!r) {
    return r;
  }
  if (auto end = zstd->finish(); !end) {
    return std::unexpected(end.error());
  }
  return r;
}

// One body (format::write_thin_body, through zstd when the wire is compressed: one
// whole frame), written into `file` by a thread of its own from construction on, while
// any number of streams copy it behind the writer. Destroying it stops the writer.
class Spool {
public:
  Spool(const format::ImageSet& set, BodyContent content, util::Fd file);
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;
  ~Spool();

  // Copies the body into `fd` as it is written (util::copy_range), calling
  // `progress` with the layer bytes the copy has reached; returns the body's figures
  // once all of it is in `fd`. Error: the writer's (bad_input: the input changed
  // since it was proven; io: the spool's file system is full), or `fd`'s.
  util::Result<format::ThinStats> copy_to(int fd, const format::ProgressFn& progress);

  // The body's bytes written so far (all of them once the writer is done).
  [[nodiscard]] std::uint64_t size() const;

private:
  void write(const format::ImageSet& set, const BodyContent& content);
  util::Result<void> append(std::string_view bytes);
  // The layer bytes within the first `offset` bytes of the file. Caller holds mutex_.
  [[nodiscard]] std::uint64_t layer_bytes_within(std::uint64_t offset) const;

  util::Fd file_;
  mutable std::mutex mutex_;
  std::condition_variable grown_;
  std::uint64_t written_ = 0;
  std::uint64_t layer_bytes_ = 0;                                // what the writer has read so far
  std::vector<std::pair<std::uint64_t, std::uint64_t>> marks_;  // (file offset, layer bytes before it)
  std::optional<format::ThinStats> stats_;                       // set when the writer is done
  std::optional<util::Error> error_;
  bool stopping_ = false;
  std::thread writer_;
};

// The bodies of one load, one per distinct content: nodes sent the same images and
// layers over the same wire share one. Files live in a private directory that goes
// with the load (util::TempDir).
//
// A body only one node reads is better written straight into that node's stream: the
// file costs a copy more, and the node's import cannot start before the writer does
// anyway (bench/writer_bench.cc). So the load says what each node's plan will send
// (expect) before any is sent, and a node asks whether its body is shared.
class Spools {
public:
  // One more node will be sent `content`.
  void expect(const BodyContent& content);
  // Whether more than one node was expected to be sent `content`.
  [[nodiscard]] bool shared(const BodyContent& content) const;

  // The body of `content`; the first to ask starts writing it (and the first of all
  // makes the private directory). Error (io): no directory, or no file in it.
  util::Result<std::shared_ptr<Spool>> body(const format::ImageSet& set, const BodyContent& content);

  // How many bodies were written (one per distinct content), and their bytes so far.
  [[nodiscard]] std::size_t count() const;
  [[nodiscard]] std::uint64_t bytes() const;

private:
  std::optional<util::TempDir> dir_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Spool>> bodies_;
  std::map<std::string, int> expected_;  // nodes per body key
};

} // namespace kload::load
