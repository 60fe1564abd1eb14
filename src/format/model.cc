#include "kload/format/model.h"

#include <sys/utsname.h>

#include <unordered_set>

namespace kload::format {

std::string Platform::str() const {
  if (os.empty() && architecture.empty()) {
    return "unknown";
  }
  return variant.empty() ? os + "/" + architecture : os + "/" + architecture + "/" + variant;
}

std::optional<Platform> Platform::parse(std::string_view text) {
  Platform p;
  const auto a = text.find('/');
  if (a == std::string_view::npos || a == 0) {
    return std::nullopt;
  }
  p.os = std::string(text.substr(0, a));
  const auto rest = text.substr(a + 1);
  const auto b = rest.find('/');
  p.architecture = std::string(rest.substr(0, b));
  if (b != std::string_view::npos) {
    p.variant = std::string(rest.substr(b + 1));
    if (p.variant.empty() || p.variant.find('/') != std::string::npos) {
      return std::nullopt;
    }
  }
  if (p.architecture.empty()) {
    return std::nullopt;
  }
  return p;
}

Platform Platform::host() {
  Platform p{"linux", "amd64", ""};
  utsname u{};
  if (uname(&u) == 0) {
    const std::string m = u.machine;
    if (m == "aarch64" || m == "arm64") {
      p.architecture = "arm64";
    } else if (m.starts_with("armv7")) {
      p.architecture = "arm";
      p.variant = "v7";
    } else if (m == "ppc64le" || m == "s390x" || m == "riscv64") {
      p.architecture = m;
    }
  }
  return p;
}

bool Platform::matches(const Platform& want) const {
  return os == want.os && architecture == want.architecture &&
         (want.variant.empty() || variant == want.variant);
}

std::uint64_t Image::layer_bytes() const {
  std::uint64_t total = 0;
  for (const auto& l : layers) {
    total += l.blob.size;
  }
  return total;
}

bool Image::targets_index() const {
  // `ctr images check` judges an index by the node's own platform: an index whose
  // manifest for that platform is absent reads "unavailable" even when this image is
  // complete. So only an image of this machine's platform is named at its index.
  return !indexes.empty() && platform.matches(Platform::host());
}

const Descriptor& Image::target() const { return targets_index() ? indexes.front() : manifest; }

const Blob* ImageSet::find(const util::Digest& d) const {
  const auto it = blobs.find(d);
  return it == blobs.end() ? nullptr : &it->second;
}

std::vector<util::Digest> ImageSet::metadata_of(const Image& image) {
  std::vector<util::Digest> out;
  if (image.targets_index()) {
    for (const auto& index : image.indexes) {
      out.push_back(index.digest);
    }
  }
  out.push_back(image.manifest.digest);
  out.push_back(image.config.digest);
  return out;
}

std::vector<util::Digest> ImageSet::blobs_of(const Image& image) {
  auto out = metadata_of(image);
  for (const auto& l : image.layers) {
    out.push_back(l.blob.digest);
  }
  return out;
}

std::unordered_map<util::Digest, int> ImageSet::layer_use_counts() const {
  std::unordered_map<util::Digest, int> counts;
  for (const auto& image : images) {
    std::unordered_set<util::Digest> seen;  // a layer listed twice is one image's
    for (const auto& l : image.layers) {
      if (seen.insert(l.blob.digest).second) {
        ++counts[l.blob.digest];
      }
    }
  }
  return counts;
}

} // namespace kload::format
