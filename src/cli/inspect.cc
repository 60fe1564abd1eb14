#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/format/archive_reader.h"
#include "kload/format/run_lint.h"
#include "kload/format/verify.h"
#include "kload/util/human.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <unordered_map>

namespace kload::cli {

using util::Result;

Result<format::ImageSet> read_inputs(const std::vector<std::string>& archives, Console& console) {
  format::ImageSet set;
  for (const auto& a : archives) {
    const auto start = std::chrono::steady_clock::now();
    auto stats = format::read_archive(a, set);
    if (!stats) {
      return std::unexpected(stats.error());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!stats->indexed_in_place && stats->bytes_expanded > (64u << 20)) {
      console.line(fmt::format("read {}: {} decompressed and hashed in {}", a, util::human_bytes(stats->bytes_expanded),
                               util::human_seconds(secs)));
    }
  }
  for (const auto& w : set.warnings) {
    console.warn(w);
  }
  return set;
}

Result<void> select_platform(format::ImageSet& set, const std::optional<format::Platform>& platform) {
  if (!platform) {
    return {};
  }
  std::erase_if(set.images, [&](const format::Image& i) { return !i.platform.matches(*platform); });
  if (!set.images.empty()) {
    return {};
  }
  for (const auto& u : set.unavailable) {
    if (u.platform.matches(*platform)) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("{}: platform {} is listed but not loadable: {}", u.source, platform->str(), u.reason));
    }
  }
  return util::fail(util::ErrorKind::bad_input, fmt::format("no image for platform {} in the input", platform->str()));
}

namespace {

nlohmann::json descriptor_json(const format::Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
}

nlohmann::json optional_words(const std::optional<std::vector<std::string>>& words) {
  return words ? nlohmann::json(*words) : nlohmann::json(nullptr);
}

std::string names_of(const format::Image& image) {
  if (image.names.empty()) {
    return "(no name)";
  }
  std::string out;
  for (const auto& n : image.names) {
    if (!out.empty()) {
      out += ", ";
    }
    out += n;
  }
  return out;
}

struct Verified {
  format::VerifyStats stats;
  double seconds = 0;
};

// Hashes every blob of every image, and every compressed layer against its diff_id.
Result<Verified> verify_all(format::ImageSet& set, unsigned jobs) {
  std::vector<util::Digest> all;
  for (const auto& image : set.images) {
    for (const auto& d : format::ImageSet::blobs_of(image)) {
      all.push_back(d);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  auto v = format::verify_blobs(set, all, jobs);
  if (!v) {
    return std::unexpected(v.error());
  }
  auto diff = format::verify_diff_ids(set, jobs);
  if (!diff) {
    return std::unexpected(diff.error());
  }
  v->bytes_decompressed = diff->bytes_hashed;
  return Verified{*v, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

nlohmann::json image_json(const format::Image& image, const std::unordered_map<util::Digest, int>& uses) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : image.layers) {
    layers.push_back({{"mediaType", l.blob.media_type},
                      {"digest", l.blob.digest.str()},
                      {"size", l.blob.size},
                      {"diffID", l.diff_id.str()},
                      {"usedByImages", uses.at(l.blob.digest)}});
  }
  return {{"names", image.names},
          {"id", image.id.str()},
          {"platform", image.platform.str()},
          {"source", image.source},
          {"format", image.format == format::SourceFormat::docker_archive ? "docker-archive" : "oci-layout"},
          {"manifest", descriptor_json(image.manifest)},
          {"index", image.indexes.empty() ? nlohmann::json(nullptr) : descriptor_json(image.indexes.front())},
          {"target", image.target().digest.str()},
          {"config", descriptor_json(image.config)},
          {"layers", layers},
          {"layerBytes", image.layer_bytes()},
          {"entrypoint", optional_words(image.run.entrypoint)},
          {"cmd", optional_words(image.run.cmd)},
          {"command", format::describe_command(image.run)},
          {"warnings", format::lint_run_config(image.run)}};
}

// The kload.inspect/v1 document, less what write_document adds.
nlohmann::json inspect_json(const format::ImageSet& set, const std::optional<Verified>& verified) {
  const auto uses = set.layer_use_counts();
  nlohmann::json out;
  out["schema"] = schema_inspect;
  out["images"] = nlohmann::json::array();
  for (const auto& image : set.images) {
    out["images"].push_back(image_json(image, uses));
  }
  out["unavailable"] = nlohmann::json::array();
  for (const auto& u : set.unavailable) {
    out["unavailable"].push_back(
        {{"names", u.names}, {"platform", u.platform.str()}, {"source", u.source}, {"reason", u.reason}});
  }
  if (verified) {
    out["verified"] = {{"blobs", verified->stats.blobs_checked},
                       {"bytes", verified->stats.bytes_checked},
                       {"blobsHashedNow", verified->stats.blobs_hashed},
                       {"decompressedBytes", verified->stats.bytes_decompressed}};
  } else {
    out["verified"] = nullptr;
  }
  return out;
}

std::string image_text(const format::Image& image, const std::unordered_map<util::Digest, int>& uses) {
  std::string text = fmt::format("{}\n", names_of(image));
  text += fmt::format("  ID:        {}\n", image.id.str());
  text += fmt::format("  platform:  {}\n", image.platform.str());
  text += fmt::format("  source:    {} ({})\n", image.source,
                      image.format == format::SourceFormat::docker_archive ? "docker archive" : "OCI layout");
  text += fmt::format("  manifest:  {} ({})\n", image.manifest.digest.str(), image.manifest.media_type);
  if (!image.indexes.empty()) {
    text += fmt::format("  index:     {}{}\n", image.indexes.front().digest.str(),
                        image.targets_index() ? " (loaded names point here)" : "");
  }
  text += fmt::format("  size:      {} in {} layers\n", util::human_bytes(image.layer_bytes()), image.layers.size());
  for (const auto& l : image.layers) {
    const int n = uses.at(l.blob.digest);
    text += fmt::format("    {}  {:>10}{}\n", l.blob.digest.str(), util::human_bytes(l.blob.size),
                        n > 1 ? fmt::format("  shared by {} images", n) : "");
  }
  text += fmt::format("  command:   {}\n", format::describe_command(image.run));
  for (const auto& w : format::lint_run_config(image.run)) {
    text += fmt::format("  warning:   {}\n", w);
  }
  return text;
}

std::string inspect_text(const format::ImageSet& set, const std::optional<Verified>& verified, unsigned jobs) {
  const auto uses = set.layer_use_counts();
  std::string text;
  for (const auto& image : set.images) {
    text += image_text(image, uses);
  }
  for (const auto& u : set.unavailable) {
    text += fmt::format("{} [{}]: unavailable: {}\n", u.names.empty() ? "(no name)" : u.names.front(), u.platform.str(),
                        u.reason);
  }
  if (verified) {
    const auto& v = verified->stats;
    text += fmt::format("verified: {} blobs ({}) match their digests ({} hashed now, the rest as they were "
                        "read), {} of compressed layers checked against their diff_ids, in {} ({} jobs)\n",
                        v.blobs_checked, util::human_bytes(v.bytes_checked), v.blobs_hashed,
                        util::human_bytes(v.bytes_decompressed), util::human_seconds(verified->seconds), jobs);
  }
  return text;
}

} // namespace

Result<int> inspect(const InspectOptions& options, Console& console) {
  auto set = read_inputs(options.archives, console);
  if (!set) {
    return std::unexpected(set.error());
  }
  if (auto r = select_platform(*set, options.platform); !r) {
    return std::unexpected(r.error());
  }
  std::optional<Verified> verified;
  if (options.verify) {
    auto v = verify_all(*set, options.jobs);
    if (!v) {
      return std::unexpected(v.error());
    }
    verified = *v;
  }
  if (options.json) {
    return write_document(inspect_json(*set, verified), std::nullopt);
  }
  std::fputs(inspect_text(*set, verified, options.jobs).c_str(), stdout);
  return 0;
}

} // namespace kload::cli
