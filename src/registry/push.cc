#include "kload/registry/push.h"

#include "kload/format/verify.h"
#include "kload/registry/upload_plan.h"
#include "kload/util/parallel.h"
#include "kload/util/sha256.h"
#include "kload/util/temp_dir.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <mutex>
#include <set>

namespace kload::registry {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

std::string percent_encode(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

// One registry, spoken to through `http`: URLs, authentication (Basic, or a Bearer
// token per repository fetched on the first 401) and the count of requests sent.
class Registry {
public:
  Registry(const PushOptions& options, HttpClient& http)
      : options_(options), http_(http),
        base_(fmt::format("{}://{}", options.scheme == Scheme::https ? "https" : "http", options.registry.host)) {}

  // Sends `request` for `repository` (`from`: a second repository it reads, for a
  // mount), authenticating when challenged. Error (node): unreachable, or a 401 that
  // no credentials answer, named by `what`.
  Result<HttpResponse> call(HttpRequest request, const std::string& repository, const std::string& what,
                            const std::string& from = {}) {
    for (int attempt = 0;; ++attempt) {
      authorize(request, repository, from);
      count(request.method);
      auto response = http_.send(request);
      if (!response) {
        return std::unexpected(error(repository, what, response.error().message));
      }
      if (response->status != 401 || attempt > 0) {
        return response;
      }
      const auto challenge = parse_www_authenticate(response->header("www-authenticate"));
      if (!challenge) {
        return response;
      }
      if (auto r = authenticate(*challenge, repository, from, what); !r) {
        return std::unexpected(r.error());
      }
    }
  }

  [[nodiscard]] std::string url(const std::string& path) const { return base_ + path; }

  // An upload Location as an absolute URL.
  [[nodiscard]] std::string resolve(const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://")) {
      return location;
    }
    return location.starts_with('/') ? base_ + location : base_ + "/" + location;
  }

  [[nodiscard]] util::Error error(const std::string& repository, const std::string& what,
                                  const std::string& why) const {
    return util::Error{ErrorKind::node,
                       fmt::format("registry {}: {}: {}: {}", options_.registry.host, repository, what, why)};
  }

  [[nodiscard]] util::Error refused(const std::string& repository, const std::string& what,
                                    const HttpResponse& r) const {
    // A HEAD answer has no body to carry the registry's error code.
    if (r.status == 401 && r.body.empty()) {
      return error(repository, what, "HTTP 401 (the credentials were refused)");
    }
    return error(repository, what, describe_response(r));
  }

  [[nodiscard]] std::map<std::string, std::uint64_t> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

private:
  void count(const std::string& method) {
    std::lock_guard lock(mutex_);
    ++requests_[method];
  }

  void authorize(HttpRequest& request, const std::string& repository, const std::string& from) {
    std::lock_guard lock(mutex_);
    if (const auto t = tokens_.find(repository + "|" + from); t != tokens_.end()) {
      request.headers.push_back("Authorization: Bearer " + t->second);
    } else if (basic_ && options_.credentials) {
      request.user = options_.credentials->user;
      request.password = options_.credentials->password;
    }
  }

  // Answers a challenge: Basic means sending the credentials from now on; Bearer
  // means asking the realm for a token for this repository (and `from`).
  Result<void> authenticate(const Challenge& challenge, const std::string& repository, const std::string& from,
                            const std::string& what) {
    if (challenge.scheme == AuthScheme::basic) {
      if (!options_.credentials) {
        return std::unexpected(error(repository, what, "the registry asks for credentials (--creds, "
                                                       "KLOAD_REGISTRY_USER or ~/.docker/config.json)"));
      }
      std::lock_guard lock(mutex_);
      basic_ = true;
      return {};
    }
    const auto realm = challenge.param("realm");
    if (realm.empty()) {
      return std::unexpected(error(repository, what, "a Bearer challenge without a realm"));
    }
    std::string token_url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (const auto service = challenge.param("service"); !service.empty()) {
      token_url += "service=" + percent_encode(service) + "&";
    }
    token_url += "scope=" + percent_encode(fmt::format("repository:{}:pull,push", repository));
    if (!from.empty()) {
      token_url += "&scope=" + percent_encode(fmt::format("repository:{}:pull", from));
    }
    HttpRequest get{.method = "GET", .url = token_url, .headers = {}, .body = {}, .user = {}, .password = {}};
    if (options_.credentials) {
      get.user = options_.credentials->user;
      get.password = options_.credentials->password;
    }
    count("GET");
    auto response = http_.send(get);
    if (!response) {
      return std::unexpected(error(repository, what, "token from " + realm + ": " + response.error().message));
    }
    if (response->status != 200) {
      return std::unexpected(error(repository, what, "token from " + realm + ": " + describe_response(*response)));
    }
    const auto doc = nlohmann::json::parse(response->body, nullptr, false);
    std::string token;
    if (!doc.is_discarded() && doc.is_object()) {
      for (const char* key : {"token", "access_token"}) {
        if (const auto it = doc.find(key); token.empty() && it != doc.end() && it->is_string()) {
          token = it->get<std::string>();
        }
      }
    }
    if (token.empty()) {
      return std::unexpected(error(repository, what, "token from " + realm + ": no token in the answer"));
    }
    std::lock_guard lock(mutex_);
    tokens_[repository + "|" + from] = token;
    return {};
  }

  const PushOptions& options_;
  HttpClient& http_;
  std::string base_;
  mutable std::mutex mutex_;
  std::map<std::string, std::string> tokens_;  // "repository|from" -> Bearer token
  bool basic_ = false;
  std::map<std::string, std::uint64_t> requests_;
};

HttpRequest request(std::string method, std::string url, std::vector<std::string> headers = {},
                    std::string_view body = {}) {
  return HttpRequest{.method = std::move(method),
                     .url = std::move(url),
                     .headers = std::move(headers),
                     .body = body,
                     .user = {},
                     .password = {}};
}

std::string blob_what(const Digest& d) { return "blob " + d.str(); }

// Whether the repository holds the blob. Error (node): any answer but 200 or 404.
Result<bool> head_blob(Registry& r, const std::string& repo, const Digest& d) {
  auto response = r.call(request("HEAD", r.url(fmt::format("/v2/{}/blobs/{}", repo, d.str()))), repo, blob_what(d));
  if (!response) {
    return std::unexpected(response.error());
  }
  if (response->status == 200) {
    return true;
  }
  if (response->status == 404) {
    return false;
  }
  return std::unexpected(r.refused(repo, blob_what(d), *response));
}

// Starts an upload session, or mounts the blob from `from` when given. Returns the
// session's URL, or "" when the mount made the blob present. Error (node): refused.
Result<std::string> start_upload(Registry& r, const std::string& repo, const Digest& d, const std::string& from) {
  std::string path = fmt::format("/v2/{}/blobs/uploads/", repo);
  if (!from.empty()) {
    path += fmt::format("?mount={}&from={}", d.str(), from);
  }
  auto response = r.call(request("POST", r.url(path)), repo, blob_what(d), from);
  if (!response) {
    return std::unexpected(response.error());
  }
  if (!from.empty() && response->status == 201) {
    return std::string();
  }
  if (response->status != 202 || response->header("location").empty()) {
    return std::unexpected(r.refused(repo, blob_what(d), *response));
  }
  return r.resolve(response->header("location"));
}

std::string with_query(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

// Sends the blob's bytes into the upload session at `location`: PATCH chunks of
// `chunk` bytes while more than that is left, then the rest with the closing PUT.
// Only proven bytes leave (Blob::computed), and the read that sends them hashes
// them again: the closing PUT, which is what makes the blob exist, goes only once
// that hash matches, so a changed input never completes a blob. Returns the bytes
// sent. Error: bad_input (not proven, mismatching, changed), io (unreadable), node.
Result<std::uint64_t> upload_blob(Registry& r, const std::string& repo, const format::Blob& b, std::string location,
                                  std::uint64_t chunk) {
  const Digest& d = b.digest;
  if (!b.computed || *b.computed != d) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: {}: blob {} was not proven before sending; not sending it",
                                                        b.where.source, b.where.entry, d.str()));
  }
  util::Sha256 hash;
  std::string buffer;
  std::uint64_t done = 0;
  std::uint64_t sent = 0;
  auto patch = [&](std::string_view part) -> Result<void> {
    auto response = r.call(request("PATCH", location,
                                   {"Content-Type: application/octet-stream",
                                    fmt::format("Content-Range: {}-{}", sent, sent + part.size() - 1)},
                                   part),
                           repo, blob_what(d));
    if (!response) {
      return std::unexpected(response.error());
    }
    if (response->status != 202 || response->header("location").empty()) {
      return std::unexpected(r.refused(repo, blob_what(d), *response));
    }
    location = r.resolve(response->header("location"));
    sent += part.size();
    return {};
  };
  auto read = format::read_blob(b, [&](std::string_view bytes) -> Result<void> {
    hash.update(bytes);
    done += bytes.size();
    buffer.append(bytes);
    // Strictly more than a chunk: the closing PUT always carries the last bytes.
    while (buffer.size() > chunk) {
      if (auto p = patch(std::string_view(buffer).substr(0, chunk)); !p) {
        return p;
      }
      buffer.erase(0, chunk);
    }
    return {};
  });
  if (!read) {
    return std::unexpected(read.error());
  }
  if (done != b.size) {
    return util::fail(ErrorKind::io, fmt::format("{}: {}: read {} bytes of blob {}, expected {}", b.where.source,
                                                 b.where.entry, done, d.str(), b.size));
  }
  if (const auto now = hash.finish(); now != d) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: {}: the input changed since it was read (blob {} now hashes to {}); "
                                  "run kload again",
                                  b.where.source, b.where.entry, d.str(), now.str()));
  }
  auto response = r.call(request("PUT", with_query(location, "digest=" + d.str()),
                                  {"Content-Type: application/octet-stream"}, buffer),
                         repo, blob_what(d));
  if (!response) {
    return std::unexpected(response.error());
  }
  if (response->status != 201) {
    return std::unexpected(r.refused(repo, blob_what(d), *response));
  }
  return b.size;
}

// Writes `doc` (a manifest or an index; `bytes` exactly) under `reference` of
// `repository` unless the reference already names it; `kind` names it in messages and
// `source` is the input it came from. Returns whether it was written. Error:
// bad_input (the bytes are not its digest), node (refused, or stored under another
// digest).
Result<bool> put_document(Registry& r, const format::Descriptor& doc, const std::string& bytes,
                          const std::string& repository, const std::string& reference, std::string_view kind,
                          const std::string& source) {
  const std::string what = reference == doc.digest.str()
                               ? fmt::format("{} {}", kind, doc.digest.str())
                               : fmt::format("{} {} ({})", kind, doc.digest.str(), reference);
  if (util::Sha256::of(bytes) != doc.digest || bytes.size() != doc.size) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: the {}'s bytes are not {}; not pushing it", source, kind, doc.digest.str()));
  }
  const auto url = r.url(fmt::format("/v2/{}/manifests/{}", repository, reference));
  // Every type accepted: a registry asked for a manifest type answers a tag naming an
  // index with one platform's manifest, which could look like what is to be written.
  auto head = r.call(request("HEAD", url,
                             {fmt::format("Accept: {}, {}, {}, {}", format::media_type::oci_manifest,
                                          format::media_type::docker_manifest, format::media_type::oci_index,
                                          format::media_type::docker_list)}),
                     repository, what);
  if (!head) {
    return std::unexpected(head.error());
  }
  if (head->status == 200 && Digest::parse(head->header("docker-content-digest")) == doc.digest) {
    return false;
  }
  if (head->status != 200 && head->status != 404) {
    return std::unexpected(r.refused(repository, what, *head));
  }
  auto put = r.call(request("PUT", url, {"Content-Type: " + doc.media_type}, bytes), repository, what);
  if (!put) {
    return std::unexpected(put.error());
  }
  if (put->status != 201) {
    return std::unexpected(r.refused(repository, what, *put));
  }
  if (const auto stored = put->header("docker-content-digest");
      !stored.empty() && Digest::parse(stored) != doc.digest) {
    return std::unexpected(r.error(repository, what, "the registry stored it as " + stored));
  }
  return true;
}

// The bytes of an index of the set. Error: bad_input (not in the input), io.
Result<std::string> index_bytes(const format::ImageSet& set, const Digest& digest, const std::string& source) {
  const format::Blob* blob = set.find(digest);
  if (blob == nullptr) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: index {} is not in the input", source, digest.str()));
  }
  std::string out;
  auto read = format::read_blob(*blob, [&](std::string_view bytes) -> Result<void> {
    out.append(bytes);
    return {};
  });
  if (!read) {
    return std::unexpected(read.error());
  }
  return out;
}

// What an index lists, through the indexes nested in it.
struct IndexTree {
  std::vector<Digest> manifests;           // every manifest listed, at any depth
  std::vector<format::Descriptor> nested;  // the nested indexes, each after those it lists
};

bool is_index(const std::string& media_type) {
  return media_type == format::media_type::oci_index || media_type == format::media_type::docker_list;
}

// The tree below `index`; nullopt when it or an index nested in it is not in the set
// or not an index document.
std::optional<IndexTree> index_tree(const format::ImageSet& set, const Digest& index, int depth = 0) {
  auto bytes = index_bytes(set, index, {});
  if (!bytes || depth > 4) {
    return std::nullopt;
  }
  const auto doc = nlohmann::json::parse(*bytes, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("manifests") || !doc["manifests"].is_array()) {
    return std::nullopt;
  }
  IndexTree tree;
  for (const auto& child : doc["manifests"]) {
    if (!child.is_object() || !child.contains("digest") || !child["digest"].is_string() ||
        !child.contains("size") || !child["size"].is_number_unsigned()) {
      return std::nullopt;
    }
    const auto digest = Digest::parse(child["digest"].get<std::string>());
    if (!digest) {
      return std::nullopt;
    }
    const auto type = child.contains("mediaType") && child["mediaType"].is_string()
                          ? child["mediaType"].get<std::string>()
                          : std::string();
    if (!is_index(type)) {
      tree.manifests.push_back(*digest);
      continue;
    }
    auto below = index_tree(set, *digest, depth + 1);
    if (!below) {
      return std::nullopt;
    }
    tree.manifests.insert(tree.manifests.end(), below->manifests.begin(), below->manifests.end());
    tree.nested.insert(tree.nested.end(), below->nested.begin(), below->nested.end());
    tree.nested.push_back(format::Descriptor{type, *digest, child["size"].get<std::uint64_t>()});
  }
  return tree;
}

// The blobs a manifest references besides itself: config, then layers.
std::vector<Digest> content_of(const format::Image& image) {
  std::vector<Digest> out{image.config.digest};
  for (const auto& l : image.layers) {
    out.push_back(l.blob.digest);
  }
  return out;
}

// The first error of a phase, in item order, so that the message does not depend on
// thread timing.
Result<void> first_error(const std::vector<std::optional<util::Error>>& errors) {
  for (const auto& e : errors) {
    if (e) {
      return std::unexpected(*e);
    }
  }
  return {};
}

struct Repository {
  std::string name;
  std::vector<Digest> blobs;  // distinct, in first-use order
  std::unordered_set<Digest> present;
  std::unordered_map<Digest, BlobAction> outcome;
  std::unordered_map<Digest, std::uint64_t> bytes;
};

// The repositories of a push, in order of first use.
struct Repositories {
  std::vector<Repository> list;
  std::map<std::string, std::size_t> index;

  Repository& operator[](const std::string& name) {
    auto [at, added] = index.emplace(name, list.size());
    if (added) {
      list.push_back(Repository{name, {}, {}, {}, {}});
    }
    return list[at->second];
  }
};

// What one reference gets: one image's manifest, or the index its images complete.
struct Target {
  Destination destination;
  std::vector<const format::Image*> images;
  std::optional<format::Descriptor> index;  // the outermost index, when the reference gets it
  std::vector<format::Descriptor> nested;   // the indexes inside it, each after those it lists
};

// Gives `t` its images' outermost index when they share it and it lists no manifest
// but theirs. Error (bad_input): several images that are not the whole of one index.
Result<void> choose_index(const format::ImageSet& set, Target& t, const RegistryAddress& address) {
  const auto* first = t.images.front();
  const bool shared = std::all_of(t.images.begin(), t.images.end(), [&](const format::Image* i) {
    return !i->indexes.empty() && !first->indexes.empty() &&
           i->indexes.front().digest == first->indexes.front().digest;
  });
  if (shared) {
    std::unordered_set<Digest> have;
    for (const auto* i : t.images) {
      have.insert(i->manifest.digest);
    }
    const auto tree = index_tree(set, first->indexes.front().digest);
    if (tree && std::all_of(tree->manifests.begin(), tree->manifests.end(),
                            [&](const Digest& d) { return have.contains(d); })) {
      t.index = first->indexes.front();
      t.nested = tree->nested;
      return {};
    }
  }
  if (t.images.size() == 1) {
    return {};
  }
  return util::fail(ErrorKind::bad_input,
                    fmt::format("{} would name two images ({} and {}) that are not the whole of one index; push "
                                "one platform (--platform)",
                                t.destination.display(address), t.images[0]->id.str(), t.images[1]->id.str()));
}

// Step 0: `images` with their layers compressed (compress_layers) into a private
// spool that the report owns, as it owns the compressed copies; `images` as they are
// without compression. Error: as compress_layers, TempDir::create.
Result<std::vector<const format::Image*>> compressed(format::ImageSet& set,
                                                     const std::vector<const format::Image*>& images,
                                                     Compression compression, PushReport& report) {
  if (compression == Compression::none) {
    return images;
  }
  auto spool = util::TempDir::create("kload-push");
  if (!spool) {
    return std::unexpected(spool.error());
  }
  struct Owner {
    util::TempDir dir;
    std::deque<format::Image> images;
  };
  auto owner = std::make_shared<Owner>(Owner{std::move(*spool), {}});
  auto out = compress_layers(set, images, compression, owner->dir.path(), owner->images);
  if (!out) {
    return std::unexpected(out.error());
  }
  report.compressed = owner;
  return out;
}

// Step 1: each image under each of its names, and the blobs each repository needs.
// Error (bad_input): an image without a name, a reference given to two images that
// are not the whole of one index.
Result<std::vector<Target>> place(const format::ImageSet& set, const std::vector<const format::Image*>& images,
                                  const RegistryAddress& address, Repositories& repos, PushReport& report) {
  std::vector<Target> targets;
  std::map<std::string, std::size_t> at;
  for (const auto* image : images) {
    if (auto named = has_push_name(*image); !named) {
      return std::unexpected(named.error());
    }
    for (const auto& name : image->names) {
      auto dest = destination_for(name, address);
      if (!dest) {
        return std::unexpected(dest.error());
      }
      const auto [it, fresh] = at.emplace(dest->display(address), targets.size());
      if (fresh) {
        targets.push_back(Target{std::move(*dest), {}, std::nullopt, {}});
      }
      auto& t = targets[it->second];
      if (std::find(t.images.begin(), t.images.end(), image) == t.images.end()) {
        t.images.push_back(image);
      }
    }
  }
  for (auto& t : targets) {
    if (auto r = choose_index(set, t, address); !r) {
      return std::unexpected(r.error());
    }
    auto& repo = repos[t.destination.repository];
    for (const auto* image : t.images) {
      for (const auto& d : content_of(*image)) {
        if (std::find(repo.blobs.begin(), repo.blobs.end(), d) == repo.blobs.end()) {
          repo.blobs.push_back(d);
        }
      }
      PushedImage pushed;
      pushed.image = image;
      pushed.destination = t.destination;
      pushed.under_index = t.index.has_value();
      report.images.push_back(std::move(pushed));
    }
  }
  return targets;
}

// Step 2: one HEAD per blob of every repository, `jobs` at a time. Fills each
// repository's `present` and returns, per blob found, a repository holding it.
Result<std::unordered_map<Digest, std::string>> probe(Registry& registry, Repositories& repos, unsigned jobs) {
  std::vector<std::pair<Repository*, Digest>> probes;
  for (auto& repo : repos.list) {
    for (const auto& d : repo.blobs) {
      probes.emplace_back(&repo, d);
    }
  }
  std::vector<std::optional<util::Error>> errors(probes.size());
  std::vector<char> held(probes.size(), 0);
  util::parallel_for(probes.size(), jobs, [&](std::size_t i) {
    auto r = head_blob(registry, probes[i].first->name, probes[i].second);
    if (!r) {
      errors[i] = r.error();
    } else {
      held[i] = *r ? 1 : 0;
    }
  });
  if (auto r = first_error(errors); !r) {
    return std::unexpected(r.error());
  }
  std::unordered_map<Digest, std::string> holders;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    if (held[i] != 0) {
      probes[i].first->present.insert(probes[i].second);
      holders.emplace(probes[i].second, probes[i].first->name);
    }
  }
  return holders;
}

// Step 3: every blob that may travel is hashed before any is sent. Returns the bytes
// hashed. Error (bad_input): a mismatch or an unreadable blob (format::verify_blobs).
Result<std::uint64_t> prove(format::ImageSet& set, const Repositories& repos, unsigned jobs) {
  std::vector<Digest> wanted;
  for (const auto& repo : repos.list) {
    for (const auto& d : repo.blobs) {
      if (!repo.present.contains(d)) {
        wanted.push_back(d);
      }
    }
  }
  if (wanted.empty()) {
    return 0;
  }
  auto proven = format::verify_blobs(set, wanted, jobs);
  if (!proven) {
    return std::unexpected(proven.error());
  }
  return proven->bytes_hashed;
}

// Step 4, one repository: its blobs in parallel, mounted from a repository of
// `holders` or uploaded (where the registry refuses a mount, into the session it
// opened instead). Records each outcome in `repo` and `report`, and the blobs now
// held in `holders`. Error: as upload_blob and start_upload.
Result<void> send_blobs(Registry& registry, const format::ImageSet& set, Repository& repo,
                        std::unordered_map<Digest, std::string>& holders, const PushOptions& options,
                        PushReport& report) {
  const auto steps = plan_uploads(repo.name, repo.blobs, repo.present, holders);
  std::vector<std::optional<util::Error>> failed(steps.size());
  std::vector<BlobAction> done(steps.size(), BlobAction::present);
  std::vector<std::uint64_t> bytes(steps.size(), 0);
  util::parallel_for(steps.size(), options.jobs, [&](std::size_t i) {
    const auto& step = steps[i];
    if (step.action == BlobAction::present) {
      return;
    }
    auto location = start_upload(registry, repo.name, step.digest, step.from);
    if (!location) {
      failed[i] = location.error();
      return;
    }
    if (location->empty()) {
      done[i] = BlobAction::mount;
      return;
    }
    const format::Blob* blob = set.find(step.digest);
    if (blob == nullptr) {
      failed[i] = util::Error{ErrorKind::bad_input, fmt::format("blob {} is not in the input", step.digest.str())};
      return;
    }
    auto sent = upload_blob(registry, repo.name, *blob, *location, options.chunk_bytes);
    if (!sent) {
      failed[i] = sent.error();
      return;
    }
    done[i] = BlobAction::upload;
    bytes[i] = *sent;
  });
  if (auto r = first_error(failed); !r) {
    return r;
  }
  for (std::size_t i = 0; i < steps.size(); ++i) {
    repo.outcome[steps[i].digest] = done[i];
    repo.bytes[steps[i].digest] = bytes[i];
    holders.emplace(steps[i].digest, repo.name);
    switch (done[i]) {
    case BlobAction::present:
      ++report.blobs_present;
      break;
    case BlobAction::mount:
      ++report.blobs_mounted;
      break;
    case BlobAction::upload:
      ++report.blobs_uploaded;
      report.bytes_uploaded += bytes[i];
      break;
    }
  }
  return {};
}

// What each image's repository got of its blobs.
void tally(Repositories& repos, PushReport& report) {
  for (auto& pushed : report.images) {
    const auto& repo = repos[pushed.destination.repository];
    for (const auto& d : content_of(*pushed.image)) {
      switch (repo.outcome.at(d)) {
      case BlobAction::present:
        ++pushed.blobs_present;
        break;
      case BlobAction::mount:
        ++pushed.blobs_mounted;
        break;
      case BlobAction::upload:
        ++pushed.blobs_uploaded;
        pushed.bytes_uploaded += repo.bytes.at(d);
        break;
      }
    }
  }
}

// The index of `t` under its reference, after the indexes nested in it (by digest).
// Returns whether the reference was written. Error: as put_document, index_bytes.
Result<bool> put_index(Registry& registry, const format::ImageSet& set, const Target& t) {
  const auto& repo = t.destination.repository;
  const auto& source = t.images.front()->source;
  for (const auto& nested : t.nested) {
    auto bytes = index_bytes(set, nested.digest, source);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    if (auto r = put_document(registry, nested, *bytes, repo, nested.digest.str(), "index", source); !r) {
      return std::unexpected(r.error());
    }
  }
  auto bytes = index_bytes(set, t.index->digest, source);
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  return put_document(registry, *t.index, *bytes, repo, t.destination.reference, "index", source);
}

// Step 5: each reference's manifest, or its index after every platform's manifest
// (by digest), once every blob is there. Error: as put_document.
Result<void> write_manifests(Registry& registry, const format::ImageSet& set, const std::vector<Target>& targets,
                             PushReport& report) {
  std::size_t next = 0;  // report.images lists the targets' images in order
  for (const auto& t : targets) {
    for (const auto* image : t.images) {
      auto& pushed = report.images[next++];
      const auto reference = t.index ? image->manifest.digest.str() : t.destination.reference;
      auto written = put_document(registry, image->manifest, image->manifest_bytes, t.destination.repository,
                                  reference, "manifest", image->source);
      if (!written) {
        return std::unexpected(written.error());
      }
      pushed.manifest_written = *written;
    }
    if (t.index) {
      auto written = put_index(registry, set, t);
      if (!written) {
        return std::unexpected(written.error());
      }
      report.indexes.push_back(PushedIndex{t.destination, *t.index, t.images, *written});
    }
  }
  return {};
}

} // namespace

Result<PushReport> push(format::ImageSet& set, const std::vector<const format::Image*>& images,
                        const PushOptions& options, HttpClient& http) {
  Registry registry(options, http);
  PushReport report;
  Repositories repos;
  // Compressed layers, when asked for, before anything is asked of the registry.
  auto chosen = compressed(set, images, options.compress, report);
  if (!chosen) {
    return std::unexpected(chosen.error());
  }
  // Where each image goes, and which blobs each repository needs.
  auto targets = place(set, *chosen, options.registry, repos, report);
  if (!targets) {
    return std::unexpected(targets.error());
  }
  // What the registry holds already: a HEAD per blob.
  auto holders = probe(registry, repos, options.jobs);
  if (!holders) {
    return std::unexpected(holders.error());
  }
  // Proof of every blob that may travel, before anything is sent.
  auto hashed = prove(set, repos, options.jobs);
  if (!hashed) {
    return std::unexpected(hashed.error());
  }
  report.bytes_hashed = *hashed;
  // The blobs, repository by repository: what one received is mounted into the
  // later ones, which needs it complete in the first.
  for (auto& repo : repos.list) {
    if (auto r = send_blobs(registry, set, repo, *holders, options, report); !r) {
      return std::unexpected(r.error());
    }
  }
  // Manifests last, indexes after the manifests they list: a tag never names a
  // manifest whose blobs are not all there.
  tally(repos, report);
  if (auto r = write_manifests(registry, set, *targets, report); !r) {
    return std::unexpected(r.error());
  }
  report.requests = registry.requests();
  return report;
}

} // namespace kload::registry
