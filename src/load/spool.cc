#include "spool.h"

#include "kload/util/process.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>

namespace kload::load {

using util::Digest;

namespace {

// Copies go to the node in pieces of at most this, so that progress moves.
constexpr std::uint64_t copy_piece = 4 << 20;

// What one body holds, as a key: its images' targets in order, its layers, its wire.
std::string body_key(const BodyContent& content) {
  std::string key = content.wire == node::WireCompression::zstd ? "zstd" : "tar";
  for (const auto* image : content.images) {
    key += " " + image->target().digest.str();
  }
  std::vector<std::string> sorted;
  for (const auto& d : content.layers) {
    sorted.push_back(d.str());
  }
  std::sort(sorted.begin(), sorted.end());
  key += " |";
  for (const auto& d : sorted) {
    key += " " + d;
  }
  return key;
}

} // namespace

Spool::Spool(const format::ImageSet& set, BodyContent content, util::Fd file) : file_(std::move(file)) {
  writer_ = std::thread([this, &set, content = std::move(content)] { write(set, content); });
}

Spool::~Spool() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  writer_.join();
}

util::Result<void> Spool::append(std::string_view bytes) {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) {
      return util::fail(util::ErrorKind::interrupted, "the load ended before the import stream was written");
    }
  }
  if (auto r = util::write_all(file_.get(), bytes.data(), bytes.size(),
                               "the import stream's spool (TMPDIR names where it goes)");
      !r) {
    return r;
  }
  const std::lock_guard lock(mutex_);
  written_ += bytes.size();
  if (marks_.empty() || marks_.back().second != layer_bytes_) {
    marks_.emplace_back(written_, layer_bytes_);
  }
  grown_.notify_all();
  return {};
}

void Spool::write(const format::ImageSet& set, const BodyContent& content) {
  const util::ByteSink to_file = [this](std::string_view bytes) { return append(bytes); };
  const format::ProgressFn read = [this](std::uint64_t done) {
    const std::lock_guard lock(mutex_);
    layer_bytes_ = done;
  };
  auto body = in_frame<format::ThinStats>(to_file, content.wire, [&](const util::ByteSink& out) {
    return format::write_thin_body(out, set, content.images, content.layers, read);
  });
  const std::lock_guard lock(mutex_);
  if (body) {
    stats_ = *body;
    marks_.emplace_back(written_, body->layer_bytes);
  } else {
    error_ = body.error();
  }
  grown_.notify_all();
}

std::uint64_t Spool::layer_bytes_within(std::uint64_t offset) const {
  // The last mark at or before `offset`: the layer bytes the writer had read when the
  // file reached it.
  const auto after = std::upper_bound(marks_.begin(), marks_.end(), offset,
                                      [](std::uint64_t o, const auto& mark) { return o < mark.first; });
  return after == marks_.begin() ? 0 : std::prev(after)->second;
}

std::uint64_t Spool::size() const {
  const std::lock_guard lock(mutex_);
  return written_;
}

util::Result<format::ThinStats> Spool::copy_to(int fd, const format::ProgressFn& progress) {
  std::uint64_t copied = 0;
  for (;;) {
    std::unique_lock lock(mutex_);
    grown_.wait(lock, [&] { return written_ > copied || stats_ || error_; });
    if (error_) {
      return std::unexpected(*error_);
    }
    if (written_ == copied) {
      return *stats_;  // the writer is done and every byte is in fd
    }
    const std::uint64_t piece = std::min(written_ - copied, copy_piece);
    const std::uint64_t layer_bytes = layer_bytes_within(copied + piece);
    lock.unlock();
    if (auto r = util::copy_range(file_.get(), copied, piece, fd, "the import stream"); !r) {
      return std::unexpected(r.error());
    }
    copied += piece;
    if (progress) {
      progress(layer_bytes);
    }
  }
}

void Spools::expect(const BodyContent& content) {
  const std::lock_guard lock(mutex_);
  ++expected_[body_key(content)];
}

bool Spools::shared(const BodyContent& content) const {
  const std::lock_guard lock(mutex_);
  const auto it = expected_.find(body_key(content));
  return it != expected_.end() && it->second > 1;
}

util::Result<std::shared_ptr<Spool>> Spools::body(const format::ImageSet& set, const BodyContent& content) {
  const std::lock_guard lock(mutex_);
  auto key = body_key(content);
  if (const auto it = bodies_.find(key); it != bodies_.end()) {
    return it->second;
  }
  if (!dir_) {
    auto dir = util::TempDir::create("kload-stream");
    if (!dir) {
      return std::unexpected(dir.error());
    }
    dir_ = std::move(*dir);
  }
  const auto path = dir_->path() / fmt::format("body-{}", bodies_.size());
  auto file = util::open_fd(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (!file) {
    return std::unexpected(file.error());
  }
  auto spool = std::make_shared<Spool>(set, content, std::move(*file));
  bodies_.emplace(std::move(key), spool);
  return spool;
}

std::size_t Spools::count() const {
  const std::lock_guard lock(mutex_);
  return bodies_.size();
}

std::uint64_t Spools::bytes() const {
  const std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (const auto& [key, spool] : bodies_) {
    total += spool->size();
  }
  return total;
}

} // namespace kload::load
