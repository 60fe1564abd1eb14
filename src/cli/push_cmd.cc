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
  cmd->add_option("--ca-file", options.ca_file,
                  "Trust the registry's TLS certificate when this CA (PEM) signed it (default:\n"
                  "/etc/docker/certs.d/HOST[:PORT]/ca.crt when it exists, else the system's CAs)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--creds", options.creds,
                  "USER:PASSWORD (default: KLOAD_REGISTRY_USER and KLOAD_REGISTRY_PASSWORD, else the\n"
                  "registry's \"auths\" entry in ~/.docker/config.json, else anonymous)");
  cmd->add_option("--platform", options.platform_text,
                  "Push only this platform of multi-platform images, its manifest under the tag\n"
                  "(default: every platform and the index, when the input holds them all)");
  cmd->add_option("--compress", options.compress,
                  "Compress the uncompressed layers of docker-save images before they travel:\n"
                  "gzip (a Docker manifest) or zstd (an OCI manifest); the image ID is unchanged,\n"
                  "the manifest digest is the new manifest's (default: none)")
      ->check(CLI::IsMember({"none", "gzip", "zstd"}));
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
      "manifest digest is the one a load gives it. A multi-platform image goes whole: each\n"
      "platform's manifest by digest, then the input's index under the tag; when the input\n"
      "lacks some of its platforms, the host's platform alone (as with --platform).\n"
      "Exit codes: 0 pushed, 1 the registry failed, 2 bad input, 3 a local failure.");
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

// One line per image pushed (its platform too when it went under an index), one per
// index, and the totals.
void print_report(const registry::PushReport& report, const registry::RegistryAddress& address, Console& console) {
  std::size_t written = 0;
  for (const auto& p : report.images) {
    written += p.manifest_written ? 1 : 0;
    const auto platform = p.under_index ? " (" + p.image->platform.str() + ")" : std::string();
    console.line(fmt::format("{}{}: {}; manifest {} {}", p.destination.display(address), platform,
                             blob_counts(p.blobs_uploaded, p.bytes_uploaded, p.blobs_mounted, p.blobs_present),
                             p.image->manifest.digest.short_hex(), p.manifest_written ? "written" : "unchanged"));
  }
  std::size_t indexes_written = 0;
  for (const auto& x : report.indexes) {
    indexes_written += x.written ? 1 : 0;
    console.line(fmt::format("{}: index {} of {} platforms {}", x.destination.display(address),
                             x.index.digest.short_hex(), x.images.size(), x.written ? "written" : "unchanged"));
  }
  std::uint64_t requests = 0;
  for (const auto& [method, n] : report.requests) {
    requests += n;
  }
  const auto indexes = report.indexes.empty()
                           ? std::string()
                           : fmt::format(", {} indexes written, {} unchanged", indexes_written,
                                         report.indexes.size() - indexes_written);
  console.line(fmt::format("pushed {} images to {}: {}; {} manifests written, {} unchanged{}; {} requests",
                           report.images.size(), address.host,
                           blob_counts(report.blobs_uploaded, report.bytes_uploaded, report.blobs_mounted,
                                       report.blobs_present),
                           written, report.images.size() - written, indexes, requests));
}

// The kload.push/v1 document of a push (docs/json.md).
nlohmann::json push_document(const registry::PushReport& report, const registry::RegistryAddress& address,
                             const std::string& compress) {
  nlohmann::json doc;
  doc["schema"] = schema_push;
  doc["registry"] = address.host;
  doc["compress"] = compress;
  doc["images"] = nlohmann::json::array();
  for (const auto& p : report.images) {
    doc["images"].push_back({{"reference", p.destination.display(address)},
                             {"repository", p.destination.repository},
                             {"tag", p.destination.reference},
                             {"id", p.image->id.str()},
                             {"platform", p.image->platform.str()},
                             {"manifest", p.image->manifest.digest.str()},
                             {"manifestWritten", p.manifest_written},
                             {"underIndex", p.under_index},
                             {"blobsUploaded", p.blobs_uploaded},
                             {"blobsMounted", p.blobs_mounted},
                             {"blobsPresent", p.blobs_present},
                             {"bytesUploaded", p.bytes_uploaded}});
  }
  doc["indexes"] = nlohmann::json::array();
  for (const auto& x : report.indexes) {
    nlohmann::json platforms = nlohmann::json::array();
    for (const auto* image : x.images) {
      platforms.push_back(image->platform.str());
    }
    doc["indexes"].push_back({{"reference", x.destination.display(address)},
                              {"repository", x.destination.repository},
                              {"tag", x.destination.reference},
                              {"digest", x.index.digest.str()},
                              {"mediaType", x.index.media_type},
                              {"platforms", std::move(platforms)},
                              {"written", x.written}});
  }
  doc["blobsUploaded"] = report.blobs_uploaded;
  doc["blobsMounted"] = report.blobs_mounted;
  doc["blobsPresent"] = report.blobs_present;
  doc["bytesUploaded"] = report.bytes_uploaded;
  doc["bytesHashed"] = report.bytes_hashed;
  doc["requests"] = report.requests;
  return doc;
}

} // namespace

Result<RegistrySession> registry_session(const registry::RegistryAddress& address, registry::Scheme scheme,
                                         const std::optional<std::string>& creds, const std::string& ca_file,
                                         unsigned jobs) {
  auto found = registry::find_credentials(creds, address.host);
  if (!found) {
    return std::unexpected(found.error());
  }
  RegistrySession out;
  out.push.registry = address;
  out.push.scheme = scheme;
  out.push.credentials = *found;
  out.push.jobs = jobs;
  out.push.chunk_bytes = chunk_bytes();
  out.http = registry::make_curl_client(registry::ca_file_for(address.host, ca_file));
  return out;
}

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
  auto session = registry_session(*address, options.plain_http ? registry::Scheme::http : registry::Scheme::https,
                                  options.creds, options.ca_file, options.jobs);
  if (!session) {
    return std::unexpected(session.error());
  }
  auto set = read_inputs(options.archives, console);
  if (!set) {
    return std::unexpected(set.error());
  }
  for (const auto& image : set->images) {
    if (auto named = registry::has_push_name(image); !named) {
      return std::unexpected(named.error());
    }
  }
  auto images = platform ? plan::select_images(*set, platform) : plan::select_every_platform(*set);
  if (!images) {
    return std::unexpected(images.error());
  }
  session->push.compress = registry::parse_compression(options.compress).value_or(registry::Compression::none);
  auto report = registry::push(*set, *images, session->push, *session->http);
  if (!report) {
    return std::unexpected(report.error());
  }
  print_report(*report, *address, console);
  if (options.json) {
    return write_document(push_document(*report, *address, options.compress), std::nullopt);
  }
  return 0;
}

} // namespace kload::cli
