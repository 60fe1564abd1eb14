#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/plan/planner.h"
#include "kload/registry/push.h"
#include "kload/util/human.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdlib>
#include <iostream>

namespace kload::cli {

using util::Result;

CLI::App* add_push_command(CLI::App& app, PushCommandOptions& options) {
  auto* cmd = app.add_subcommand("push", "Push the images of archives to a registry, sending only the blobs it lacks");
  cmd->add_option("archive", options.archives,
                  "Image archives (docker save, skopeo, OCI; plain, gzip, zstd or xz; '-' for stdin)")
      ->required();
  cmd->add_option("--registry", options.registry, "HOST[:PORT][/PREFIX], e.g. localhost:5000 or registry.example.com/team")
      ->required();
  cmd->add_flag("--plain-http", options.plain_http, "Speak plain HTTP, not HTTPS (a local registry)");
  cmd->add_option("--creds", options.creds,
                  "USER:PASSWORD (default: KLOAD_REGISTRY_USER and KLOAD_REGISTRY_PASSWORD, else the\n"
                  "registry's \"auths\" entry in ~/.docker/config.json, else anonymous)");
  cmd->add_option("--platform", options.platform_text,
                  "Push this platform of multi-platform images (default: the host's)");
  cmd->add_flag("--json", options.json, "Print a JSON report (schema kload.push/v1) on stdout");
  cmd->add_option("-j,--jobs", options.jobs, "At most this many requests at once (default 4)")
      ->check(CLI::Range(1u, 64u));
  cmd->footer(
      "Examples:\n"
      "  kload push app.tar --registry localhost:5000 --plain-http\n"
      "  kload push app.tar --registry registry.example.com/team --creds ci:$TOKEN\n"
      "Names: REGISTRY[/PREFIX]/PATH:TAG, where PATH is the image name's path without its\n"
      "registry host: docker.io/library/app:v1 (saved as app:v1) becomes\n"
      "localhost:5000/library/app:v1, and ghcr.io/org/tool:1 with --registry\n"
      "registry.example.com/team becomes registry.example.com/team/org/tool:1.\n"
      "Per repository one HEAD per blob; only missing blobs are sent (mounted from another\n"
      "repository of the same push when one holds it), each hashed before and while it\n"
      "is sent; manifests last, and only where the tag does not already name them. A\n"
      "docker-save image gets the manifest containerd synthesises on import, so its\n"
      "manifest digest is the one a load gives it. Multi-platform indexes are not pushed:\n"
      "one platform per name. Exit codes: 0 pushed, 1 the registry failed, 2 bad input, 3 a local failure.");
  return cmd;
}

namespace {

// KLOAD_PUSH_CHUNK_BYTES overrides the monolithic/chunked threshold (tests use it to
// send chunks without writing 32 MiB layers).
std::uint64_t chunk_bytes() {
  std::uint64_t out = registry::PushOptions{}.chunk_bytes;
  if (const char* env = std::getenv("KLOAD_PUSH_CHUNK_BYTES"); env != nullptr && *env != '\0') {
    std::uint64_t v = 0;
    const auto end = env + std::char_traits<char>::length(env);
    if (auto [p, ec] = std::from_chars(env, end, v); ec == std::errc() && p == end && v > 0) {
      out = v;
    }
  }
  return out;
}

std::string blob_counts(std::size_t uploaded, std::uint64_t bytes, std::size_t mounted, std::size_t present) {
  return fmt::format("{} blobs uploaded ({}), {} mounted, {} present", uploaded, util::human_bytes(bytes), mounted,
                     present);
}

} // namespace

Result<int> push_images(const PushCommandOptions& options, Console& console) {
  auto address = registry::parse_registry(options.registry);
  if (!address) {
    return std::unexpected(address.error());
  }
  std::optional<format::Platform> platform;
  if (!options.platform_text.empty()) {
    platform = format::Platform::parse(options.platform_text);
    if (!platform) {
      return util::fail(util::ErrorKind::usage, "--platform: expected OS/ARCH[/VARIANT], e.g. linux/amd64");
    }
  }
  auto creds = registry::find_credentials(options.creds, address->host);
  if (!creds) {
    return std::unexpected(creds.error());
  }
  auto set = read_inputs(options.archives, console);
  if (!set) {
    return std::unexpected(set.error());
  }
  for (const auto& image : set->images) {
    if (image.names.empty()) {
      return util::fail(util::ErrorKind::bad_input,
                        fmt::format("{}: image {} has no name to push it under", image.source, image.id.str()));
    }
  }
  auto images = plan::select_images(*set, platform);
  if (!images) {
    return std::unexpected(images.error());
  }
  registry::PushOptions push_options;
  push_options.registry = *address;
  push_options.scheme = options.plain_http ? registry::Scheme::http : registry::Scheme::https;
  push_options.credentials = *creds;
  push_options.jobs = options.jobs;
  push_options.chunk_bytes = chunk_bytes();
  auto http = registry::make_curl_client();
  auto report = registry::push(*set, *images, push_options, *http);
  if (!report) {
    return std::unexpected(report.error());
  }
  std::size_t written = 0;
  for (const auto& p : report->images) {
    written += p.manifest_written ? 1 : 0;
    console.line(fmt::format("{}: {}; manifest {} {}", p.destination.display(*address),
                             blob_counts(p.blobs_uploaded, p.bytes_uploaded, p.blobs_mounted, p.blobs_present),
                             p.image->manifest.digest.short_hex(), p.manifest_written ? "written" : "unchanged"));
  }
  std::uint64_t requests = 0;
  for (const auto& [method, n] : report->requests) {
    requests += n;
  }
  console.line(fmt::format("pushed {} images to {}: {}; {} manifests written, {} unchanged; {} requests",
                           report->images.size(), address->host,
                           blob_counts(report->blobs_uploaded, report->bytes_uploaded, report->blobs_mounted,
                                       report->blobs_present),
                           written, report->images.size() - written, requests));
  if (options.json) {
    nlohmann::json doc;
    doc["schema"] = schema_push;
    doc["registry"] = address->host;
    doc["images"] = nlohmann::json::array();
    for (const auto& p : report->images) {
      doc["images"].push_back({{"reference", p.destination.display(*address)},
                               {"repository", p.destination.repository},
                               {"tag", p.destination.reference},
                               {"id", p.image->id.str()},
                               {"manifest", p.image->manifest.digest.str()},
                               {"manifestWritten", p.manifest_written},
                               {"blobsUploaded", p.blobs_uploaded},
                               {"blobsMounted", p.blobs_mounted},
                               {"blobsPresent", p.blobs_present},
                               {"bytesUploaded", p.bytes_uploaded}});
    }
    doc["blobsUploaded"] = report->blobs_uploaded;
    doc["blobsMounted"] = report->blobs_mounted;
    doc["blobsPresent"] = report->blobs_present;
    doc["bytesUploaded"] = report->bytes_uploaded;
    doc["bytesHashed"] = report->bytes_hashed;
    doc["requests"] = report->requests;
    return write_document(std::move(doc), std::nullopt);
  }
  return 0;
}

} // namespace kload::cli
