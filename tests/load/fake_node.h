#pragma once
// A containerd node in memory, for unit tests of the loader's protocol: content
// store, image names, imports read from the real archive kload writes, garbage
// collection after every change, and hooks that fail a call or change the node behind
// kload's back between two steps. It behaves as containerd 1.6 does where versions
// differ: a failed import still creates its image records (pointing at an incomplete
// image), and a layer whose snapshot exists need not be in the content store.

#include "kload/node/node_client.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "kload/util/zstd_stream.h"
#include "support/test_support.h"

#include <archive.h>
#include <archive_entry.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <unistd.h>

namespace kload::test {

class FakeNode final : public node::NodeClient {
public:
  enum class Op { uuid, snapshotter, inventory, check, import, pull, tag, remove };

  std::map<util::Digest, std::string> content;  // blob -> bytes
  std::map<std::string, util::Digest> images;   // name -> target
  std::set<util::Digest> unpacked;              // layers whose snapshot exists
  std::string uuid = "11111111-2222-3333-4444-555555555555";
  bool has_zstd = true;                         // what a probe asking for zstd hears
  // containerd 2.x: `ctr images tag` creates or updates a name (the Transfer API),
  // --force or not; 1.x's refuses a name that exists unless --force.
  bool tag_updates = false;
  std::vector<Op> log;                          // every call, in order
  // A registry the node pulls from: blob (manifests, configs, layers) -> bytes, shared
  // by the nodes of a test; and every blob this node fetched from it, in order.
  const std::map<util::Digest, std::string>* registry = nullptr;
  std::vector<util::Digest> fetched;
  std::vector<node::ProbeRequest> probes;       // what each probe asked
  std::vector<node::WireCompression> streams;   // how each import's stream came
  std::string last_compressed;                  // the bytes of the last zstd stream

  // The `nth` call of `op` from now (1: the next one) fails with `message`; an import
  // fails as `kind` says.
  void fail(Op op, int nth, std::string message, node::ImportFailure kind = node::ImportFailure::other) {
    faults_.emplace(op, Fault{calls_of(op) + nth, std::move(message), kind});
  }
  // Runs `change` just before the `nth` call of `op` from now.
  void before(Op op, int nth, std::function<void(FakeNode&)> change) {
    hooks_[op] = {calls_of(op) + nth, std::move(change)};
  }

  [[nodiscard]] std::string display() const override { return "fake"; }
  // Starts the log and the count afresh (hooks and faults count from here on).
  void forget_calls() {
    log.clear();
    round_trips_ = 0;
    faults_.clear();
    hooks_.clear();
  }

  // Round trips, as a client that batches would count them: a probe or an apply is
  // one, whatever steps it ran (the log has those); any other call is one.
  [[nodiscard]] int calls() const override { return round_trips_; }

  util::Result<node::Probe> probe(const node::ProbeRequest& want) override {
    const RoundTrip one(*this);
    probes.push_back(want);
    auto p = NodeClient::probe(want);
    if (p && want.zstd) {
      p->zstd = has_zstd;
    }
    return p;
  }

  // As a node decompressing a zstd stream with `zstd -dc` would: the stream must be a
  // whole frame, else the import fails.
  std::expected<std::vector<node::ImageStatus>, node::ChangeError> apply(const node::Changes& changes) override {
    const RoundTrip one(*this);
    if (changes.import != nullptr) {
      streams.push_back(changes.wire);
    }
    if (changes.import == nullptr || changes.wire == node::WireCompression::none) {
      return NodeClient::apply(changes);
    }
    const util::StdinFeeder& compressed = *changes.import;
    const util::StdinFeeder decoded = [&](int fd) -> util::Result<void> {
      std::string bytes;
      auto fed = kload::testing::capture_feed(compressed, bytes);
      last_compressed = bytes;
      if (!fed) {
        return fed;
      }
      auto plain = util::zstd_decompress(bytes);
      if (!plain) {
        return std::unexpected(plain.error());
      }
      return util::write_all(fd, plain->data(), plain->size(), "the decompressed stream");
    };
    auto plain = changes;
    plain.import = &decoded;
    plain.wire = node::WireCompression::none;
    return NodeClient::apply(plain);
  }
  [[nodiscard]] int calls_of(Op op) const { return static_cast<int>(std::count(log.begin(), log.end(), op)); }

  util::Result<std::string> server_uuid() override {
    return step(Op::uuid, [&]() -> util::Result<std::string> { return uuid; });
  }
  util::Result<std::string> snapshotter() override {
    return step(Op::snapshotter, [&]() -> util::Result<std::string> { return std::string("overlayfs"); });
  }

  util::Result<node::NodeInventory> inventory(const std::vector<node::ImageStatus>& roots) override {
    return step(Op::inventory, [&]() -> util::Result<node::NodeInventory> {
      node::NodeInventory inv;
      std::set<util::Digest> root_set;
      for (const auto& r : roots) {
        root_set.insert(r.target);
      }
      for (const auto& d : reachable(root_set)) {
        inv.blobs.insert(d);
      }
      for (const auto& [digest, bytes] : content) {
        const auto refs = refs_of(bytes);
        if (refs.config) {
          inv.manifest_config[digest] = *refs.config;
          inv.manifest_layers[digest] = refs.layers;
        } else if (!refs.children.empty()) {
          inv.index_children[digest] = refs.children;
        }
      }
      return inv;
    });
  }

  util::Result<std::vector<node::ImageStatus>> check(const std::vector<std::string>& names) override {
    return step(Op::check, [&]() -> util::Result<std::vector<node::ImageStatus>> {
      std::vector<node::ImageStatus> out;
      for (const auto& [name, target] : images) {
        if (names.empty() || std::find(names.begin(), names.end(), name) != names.end()) {
          out.push_back(node::ImageStatus{name, target, complete(target)});
        }
      }
      return out;
    });
  }

  std::expected<void, node::ImportError> import(const util::StdinFeeder& feed, const std::string&) override {
    std::string archive;
    auto fed = kload::testing::capture_feed(feed, archive);
    auto r = step(Op::import, [&]() -> util::Result<void> {
      if (!fed) {
        return std::unexpected(fed.error());
      }
      return ingest(archive);
    });
    if (!r) {
      node::ImportError e{fault_kind_, missing_, r.error()};
      if (missing_) {
        e.failure = node::ImportFailure::missing_content;
      }
      missing_.reset();
      fault_kind_ = node::ImportFailure::other;
      return std::unexpected(e);
    }
    return {};
  }

  // As ctr pulls by digest: the manifest, then each blob the content store lacks; the
  // image is named `reference` only once every blob is here (a missing one fails the
  // pull and names nothing); layers are unpacked.
  util::Result<void> pull(const std::string& reference, const std::string&, node::PlainHttp) override {
    return step(Op::pull, [&]() -> util::Result<void> {
      const auto at = reference.find('@');
      const auto digest = at == std::string::npos ? std::nullopt : util::Digest::parse(reference.substr(at + 1));
      if (registry == nullptr || !digest) {
        return util::fail(util::ErrorKind::node, "node fake: pulling " + reference + ": ctr: failed to resolve");
      }
      std::vector<util::Digest> wanted{*digest};
      if (auto m = registry->find(*digest); m != registry->end()) {
        const auto refs = refs_of(m->second);
        if (refs.config) {
          wanted.push_back(*refs.config);
        }
        wanted.insert(wanted.end(), refs.layers.begin(), refs.layers.end());
      }
      for (const auto& d : wanted) {
        if (content.contains(d)) {
          continue;
        }
        auto it = registry->find(d);
        if (it == registry->end()) {
          return util::fail(util::ErrorKind::node,
                            fmt::format("node fake: pulling {}: ctr: {}: not found", reference, d.str()));
        }
        content[d] = it->second;
        fetched.push_back(d);
      }
      const auto refs = refs_of(content[*digest]);
      unpacked.insert(refs.layers.begin(), refs.layers.end());
      images[reference] = *digest;
      return {};
    });
  }

  util::Result<void> tag(const node::Tag& t) override {
    return step(Op::tag, [&]() -> util::Result<void> {
      auto it = images.find(t.source);
      if (it == images.end()) {
        return util::fail(util::ErrorKind::node, fmt::format("node fake: ctr: image \"{}\": not found", t.source));
      }
      if (t.replace == node::Replace::no && !tag_updates && images.contains(t.target)) {
        return util::fail(util::ErrorKind::node,
                          fmt::format("node fake: ctr: image \"{}\": already exists", t.target));
      }
      images[t.target] = it->second;
      collect_garbage();
      return {};
    });
  }

  util::Result<void> remove(const std::vector<std::string>& names) override {
    if (names.empty()) {
      return {};
    }
    return step(Op::remove, [&]() -> util::Result<void> {
      for (const auto& n : names) {
        images.erase(n);
      }
      collect_garbage();
      return {};
    });
  }

  // Whether every blob `target` needs is here (a layer also when only its snapshot is).
  [[nodiscard]] bool complete(const util::Digest& target) const {
    auto it = content.find(target);
    if (it == content.end()) {
      return false;
    }
    const auto refs = refs_of(it->second);
    if (refs.config && !content.contains(*refs.config)) {
      return false;
    }
    for (const auto& l : refs.layers) {
      if (!content.contains(l)) {
        return false;
      }
    }
    return std::all_of(refs.children.begin(), refs.children.end(), [&](const util::Digest& c) { return complete(c); });
  }

  // Drops every blob no image reaches, as containerd's garbage collector does.
  void collect_garbage() {
    std::set<util::Digest> roots;
    for (const auto& [name, target] : images) {
      roots.insert(target);
    }
    const auto keep = reachable(roots);
    std::erase_if(content, [&](const auto& kv) { return !keep.contains(kv.first); });
  }

private:
  struct Refs {
    std::optional<util::Digest> config;
    std::vector<util::Digest> layers;
    std::vector<util::Digest> children;
  };

  static Refs refs_of(const std::string& bytes) {
    Refs refs;
    const auto doc = nlohmann::json::parse(bytes, nullptr, false);
    if (!doc.is_object()) {
      return refs;
    }
    const auto digest_of = [](const nlohmann::json& d) {
      return d.is_object() && d.contains("digest") && d["digest"].is_string() ? util::Digest::parse(d["digest"].get<std::string>())
                                                                                : std::nullopt;
    };
    if (doc.contains("config")) {
      refs.config = digest_of(doc["config"]);
      if (doc.contains("layers") && doc["layers"].is_array()) {
        for (const auto& l : doc["layers"]) {
          if (auto d = digest_of(l)) {
            refs.layers.push_back(*d);
          }
        }
      }
    } else if (doc.contains("manifests") && doc["manifests"].is_array()) {
      for (const auto& m : doc["manifests"]) {
        if (auto d = digest_of(m)) {
          refs.children.push_back(*d);
        }
      }
    }
    return refs;
  }

  [[nodiscard]] std::set<util::Digest> reachable(std::set<util::Digest> todo) const {
    std::set<util::Digest> seen;
    while (!todo.empty()) {
      const auto d = *todo.begin();
      todo.erase(todo.begin());
      auto it = content.find(d);
      if (it == content.end() || !seen.insert(d).second) {
        continue;
      }
      const auto refs = refs_of(it->second);
      if (refs.config) {
        todo.insert(*refs.config);
      }
      todo.insert(refs.layers.begin(), refs.layers.end());
      todo.insert(refs.children.begin(), refs.children.end());
    }
    return seen;
  }

  // Reads the OCI archive: blobs checked against their names, then one image record
  // per named index entry; a blob the images need that is neither in the archive, nor
  // here, nor unpacked is missing content.
  util::Result<void> ingest(const std::string& archive) {
    std::map<util::Digest, std::string> blobs;
    std::string index;
    auto* a = archive_read_new();
    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, archive.data(), archive.size()) != ARCHIVE_OK) {
      archive_read_free(a);
      return util::fail(util::ErrorKind::node, "node fake: ctr: unrecognized image format");
    }
    archive_entry* e = nullptr;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      const std::string path = archive_entry_pathname(e);
      std::string data(static_cast<std::size_t>(archive_entry_size(e)), '\0');
      archive_read_data(a, data.data(), data.size());
      if (path == "index.json") {
        index = data;
      } else if (path.starts_with("blobs/sha256/")) {
        const auto d = util::Digest::parse("sha256:" + path.substr(13));
        if (!d || util::Sha256::of(data) != *d) {
          archive_read_free(a);
          return util::fail(util::ErrorKind::node, "node fake: ctr: unexpected commit digest");
        }
        blobs[*d] = std::move(data);
      }
    }
    archive_read_free(a);
    if (index.empty()) {
      return util::fail(util::ErrorKind::node, "node fake: ctr: unrecognized image format");
    }
    content.insert(blobs.begin(), blobs.end());
    const auto doc = nlohmann::json::parse(index);
    for (const auto& m : doc["manifests"]) {
      const auto target = *util::Digest::parse(m["digest"].get<std::string>());
      images[m["annotations"]["io.containerd.image.name"].get<std::string>()] = target;
      if (auto it = content.find(target); it != content.end()) {
        const auto refs = refs_of(it->second);
        for (const auto& l : refs.layers) {
          if (!content.contains(l) && !unpacked.contains(l)) {
            missing_ = l;
          }
        }
        unpacked.insert(refs.layers.begin(), refs.layers.end());
      }
    }
    collect_garbage();
    if (missing_) {
      return util::fail(util::ErrorKind::node,
                        fmt::format("node fake: importing: ctr: content digest {}: not found", missing_->str()));
    }
    return {};
  }

  // Counts one round trip for its scope, however many steps run inside it.
  struct RoundTrip {
    explicit RoundTrip(FakeNode& node) : node_(node) {
      if (node_.in_round_trip_++ == 0) {
        ++node_.round_trips_;
      }
    }
    ~RoundTrip() { --node_.in_round_trip_; }
    RoundTrip(const RoundTrip&) = delete;
    RoundTrip& operator=(const RoundTrip&) = delete;
    FakeNode& node_;
  };

  template <typename F>
  auto step(Op op, F run) -> decltype(run()) {
    const RoundTrip one(*this);
    log.push_back(op);
    const int n = calls_of(op);
    if (auto h = hooks_.find(op); h != hooks_.end() && h->second.first == n) {
      auto change = std::move(h->second.second);
      hooks_.erase(h);
      change(*this);
    }
    const auto [first, last] = faults_.equal_range(op);
    if (auto f = std::find_if(first, last, [&](const auto& kv) { return kv.second.nth == n; }); f != last) {
      const auto message = f->second.message;
      fault_kind_ = f->second.kind;
      faults_.erase(f);
      return std::unexpected(util::Error{util::ErrorKind::node, message});
    }
    return run();
  }

  struct Fault {
    int nth = 0;
    std::string message;
    node::ImportFailure kind = node::ImportFailure::other;
  };
  std::multimap<Op, Fault> faults_;
  node::ImportFailure fault_kind_ = node::ImportFailure::other;
  std::map<Op, std::pair<int, std::function<void(FakeNode&)>>> hooks_;
  std::optional<util::Digest> missing_;
  int round_trips_ = 0;
  int in_round_trip_ = 0;
};

} // namespace kload::test
