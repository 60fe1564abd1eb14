#include "kload/format/archive_reader.h"
#include "kload/format/tar_index.h"

#include "kload/format/go_json.h"
#include "kload/format/image_ref.h"
#include "kload/util/process.h"
#include "kload/util/sha256.h"
#include "kload/util/temp_dir.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>
#include <unordered_set>

namespace kload::format {

using util::Digest;
using util::ErrorKind;
using util::Result;

namespace {

// Appends the names of `more` that `names` lacks, in order. Linear: an archive may
// list a very large number of tags.
void add_new_names(std::vector<std::string>& names, const std::vector<std::string>& more) {
  std::unordered_set<std::string> seen(names.begin(), names.end());
  for (const auto& n : more) {
    if (seen.insert(n).second) {
      names.push_back(n);
    }
  }
}

// The fields of containerd's structs kload reads (index, manifest, descriptor,
// platform, image config, docker-save manifest.json entry; "config" and "layers" also
// match "Config" and "Layers"), and the map fields among them. Nothing else of a
// document is kept.
const gojson::Keep& metadata_fields() {
  static const gojson::Keep keep{{"mediaType", "digest", "size", "platform", "annotations", "manifests", "config",
                                  "layers", "os", "architecture", "variant", "rootfs", "diff_ids", "Entrypoint", "Cmd",
                                  "RepoTags"},
                                 {"annotations"}};
  return keep;
}

// The layout half of the reader: interprets the entries a TarIndex found as docker-save
// (Docker 24 and older, Docker 25 and later, skopeo) or OCI archives, adding their
// images and blobs to an ImageSet.
class LayoutReader {
public:
  LayoutReader(TarIndex& index, ImageSet& set, const ReadLimits& limits)
      : index_(index), input_(index.input()), set_(set), limits_(limits) {}

  // Error (bad_input): see read_archive.
  Result<void> interpret() {
    const TarEntry* index_entry = index_.lookup("index.json");
    const TarEntry* manifest_entry = index_.lookup("manifest.json");
    if (index_entry == nullptr && manifest_entry == nullptr) {
      return bad("", "neither manifest.json nor index.json found: not a docker or OCI image archive");
    }
    std::optional<std::vector<DockerEntry>> docker;
    if (manifest_entry != nullptr) {
      auto root = top_document("manifest.json", *manifest_entry);
      if (!root) {
        return std::unexpected(root.error());
      }
      auto entries = decode_docker_manifest(*root);
      if (!entries) {
        return std::unexpected(entries.error());
      }
      docker = std::move(*entries);
    }
    if (index_entry != nullptr) {
      auto root = top_document("index.json", *index_entry);
      if (!root) {
        return std::unexpected(root.error());
      }
      // An index that names nothing beside a manifest.json that names images: the
      // archive is a docker save, read as `docker load` reads it.
      if (docker && !docker->empty() && names_nothing(*root)) {
        return read_docker(*docker);
      }
      if (docker) {
        for (const auto& m : *docker) {
          // Docker >= 25 names a manifest only through its config/layer paths; map the
          // config path back so index entries can borrow the repo tags.
          if (const auto d = digest_from_name(m.config)) {
            config_tags_[*d] = m.repo_tags;
          }
        }
      }
      if (auto r = read_oci(*root); !r) {
        return r;
      }
      for (auto& image : set_.images) {
        if (image.names.empty() && image.source == input_) {
          if (auto it = config_tags_.find(image.id); it != config_tags_.end()) {
            auto names = normalize_names("manifest.json", it->second);
            if (!names) {
              return std::unexpected(names.error());
            }
            image.names = *names;
          }
        }
      }
      return {};
    }
    return read_docker(*docker);
  }

  // JSON documents parsed: each distinct one once.
  [[nodiscard]] std::uint64_t documents_parsed() const { return documents_parsed_; }

private:
  Result<void> bad(const std::string& entry, const std::string& what) const {
    return std::unexpected(archive_error(input_, entry, what));
  }

  // Parses a metadata document as containerd's Go decoder will (see go_json.h), once
  // per distinct document: the count is in ReadStats so tests can hold it to that.
  Result<gojson::Value> parse_json(const std::string& name, const std::string& text) {
    ++documents_parsed_;
    auto v = gojson::parse(name, text, metadata_fields());
    if (!v) {
      return std::unexpected(util::Error{ErrorKind::bad_input, fmt::format("{}: {}", input_, v.error().message)});
    }
    return v;
  }

  // A decoding error of the document `entry`, as one line naming it.
  util::Error in(const std::string& entry, const util::Error& e) const { return bad(entry, e.message).error(); }

  void add_blob(const Digest& d, std::uint64_t size, BlobLocation loc, std::optional<Digest> computed) {
    if (set_.blobs.contains(d)) {
      return;
    }
    set_.blobs.emplace(d, Blob{d, size, std::move(loc), computed});
  }

  void add_memory_blob(const Digest& d, const std::string& entry, const std::string& bytes) {
    BlobLocation loc;
    loc.source = input_;
    loc.entry = entry;
    loc.memory = std::make_shared<const std::string>(bytes);
    add_blob(d, bytes.size(), std::move(loc), d);
  }

  // A metadata blob (manifest, index, config): read, digest-checked and kept, once
  // per digest; size-checked against every descriptor naming it.
  Result<const std::string*> metadata_blob(const Digest& d, std::optional<std::uint64_t> size,
                                           const std::string& what) {
    const std::string name = "blobs/sha256/" + d.hex();
    auto it = verified_.find(d);
    if (it == verified_.end()) {
      const TarEntry* e = index_.lookup(name);
      if (e == nullptr) {
        return std::unexpected(bad(name, fmt::format("{} {} is not in the archive", what, d.str())).error());
      }
      auto bytes = index_.bytes(name, *e, limits_.max_metadata_bytes);
      if (!bytes) {
        return std::unexpected(bytes.error());
      }
      const auto actual = util::Sha256::of(*bytes);
      if (actual != d) {
        return std::unexpected(
            bad(name, fmt::format("{} bytes hash to {}, expected {}", what, actual.str(), d.str())).error());
      }
      it = verified_.emplace(d, std::move(*bytes)).first;
    }
    if (size && *size != it->second.size()) {
      return std::unexpected(
          bad(name, fmt::format("{} is {} bytes, its descriptor says {}", what, it->second.size(), *size)).error());
    }
    return &it->second;
  }

  struct ParsedConfig {
    Platform platform;
    std::vector<Digest> diff_ids;
    RunConfig run;
  };

  // The platform fields of a Go struct (ocispec.Platform, or ocispec.Image, which
  // embeds it).
  static Result<Platform> platform_of(const gojson::Struct& s) {
    Platform p;
    for (auto [field, out] : {std::pair{"os", &p.os}, {"architecture", &p.architecture}, {"variant", &p.variant}}) {
      auto v = s.string(field);
      if (!v) {
        return std::unexpected(v.error());
      }
      *out = v->value_or("");
    }
    return p;
  }

  // The fields of containerd's ocispec.Image that kload uses.
  Result<ParsedConfig> decode_config(const gojson::Value& root) const {
    if (!root.is_object()) {
      return util::fail(ErrorKind::bad_input, "image config is not a JSON object");
    }
    auto c = gojson::Struct::of(root);
    ParsedConfig out;
    auto platform = platform_of(*c);
    if (!platform) {
      return std::unexpected(platform.error());
    }
    out.platform = *platform;
    auto rootfs = c->object("rootfs");
    if (!rootfs) {
      return std::unexpected(rootfs.error());
    }
    auto diff_ids = rootfs->strings("diff_ids");
    if (!diff_ids) {
      return std::unexpected(diff_ids.error());
    }
    if (!*diff_ids) {
      return util::fail(ErrorKind::bad_input, "image config has no rootfs.diff_ids");
    }
    if ((*diff_ids)->size() > limits_.max_layers) {
      return util::fail(ErrorKind::bad_input, fmt::format("image config has {} layers; kload refuses more than {} "
                                                          "(overlayfs stacks at most 500)",
                                                          (*diff_ids)->size(), limits_.max_layers));
    }
    for (const auto& text : **diff_ids) {
      auto d = Digest::parse(text);
      if (!d) {
        return util::fail(ErrorKind::bad_input, "image config has an invalid diff_id");
      }
      out.diff_ids.push_back(*d);
    }
    auto run = c->object("config");
    if (!run) {
      return std::unexpected(run.error());
    }
    auto entrypoint = run->strings("Entrypoint");
    auto cmd = run->strings("Cmd");
    if (!entrypoint || !cmd) {
      return std::unexpected(!entrypoint ? entrypoint.error() : cmd.error());
    }
    out.run.entrypoint = *entrypoint;
    out.run.cmd = *cmd;
    return out;
  }

  // An image config, parsed once per distinct digest however many images name it.
  Result<const ParsedConfig*> parse_config(const Digest& digest, const std::string& entry, const std::string& bytes) {
    if (auto it = configs_.find(digest); it != configs_.end()) {
      return &it->second;
    }
    auto root = parse_json(entry, bytes);
    if (!root) {
      return std::unexpected(root.error());
    }
    auto c = decode_config(*root);
    if (!c) {
      return std::unexpected(in(entry, c.error()));
    }
    return &configs_.emplace(digest, std::move(*c)).first->second;
  }

  static Result<std::optional<Platform>> descriptor_platform(const gojson::Struct& d) {
    auto p = d.object("platform");
    if (!p) {
      return std::unexpected(p.error());
    }
    if (!p->present()) {
      return std::optional<Platform>{};
    }
    auto platform = platform_of(*p);
    if (!platform) {
      return std::unexpected(platform.error());
    }
    return std::optional<Platform>{*platform};
  }

  struct Parsed {
    std::string media_type;
    Digest digest;
    std::optional<std::uint64_t> size;
  };

  // An ocispec.Descriptor's mediaType, digest and size.
  Result<Parsed> parse_descriptor(const std::string& where, const gojson::Struct& d) const {
    auto digest_text = d.string("digest");
    auto media = d.string("mediaType");
    auto size = d.uint64("size");
    if (!digest_text || !media || !size) {
      return std::unexpected(in(where, !digest_text ? digest_text.error() : !media ? media.error() : size.error()));
    }
    if (!*digest_text) {
      return std::unexpected(bad(where, "descriptor without a digest").error());
    }
    auto digest = Digest::parse(**digest_text);
    if (!digest) {
      return std::unexpected(bad(where, fmt::format("unsupported digest \"{}\"", **digest_text)).error());
    }
    return Parsed{media->value_or(""), *digest, *size};
  }

  static bool is_index_type(const std::string& mt) {
    return mt == media_type::oci_index || mt == media_type::docker_list;
  }
  static bool is_manifest_type(const std::string& mt) {
    return mt == media_type::oci_manifest || mt == media_type::docker_manifest;
  }
  static bool is_config_type(const std::string& mt) {
    return mt == media_type::oci_config || mt == media_type::docker_config;
  }

  // containerd (1.7 and later) refuses a manifest or index whose own mediaType differs
  // from its descriptor's, or a manifest carrying "manifests" or an index carrying
  // "config" or "layers" (any value, null included): refused here before anything is
  // sent. Returns the document's media type: its descriptor's, else its own, else
  // `fallback`.
  Result<std::string> document_type(const std::string& entry, const gojson::Struct& doc,
                                    const std::string& descriptor_type, const char* fallback) const {
    auto own = doc.string("mediaType");
    if (!own) {
      return std::unexpected(in(entry, own.error()));
    }
    if (*own && !descriptor_type.empty() && **own != descriptor_type) {
      return std::unexpected(
          bad(entry, fmt::format("its mediaType \"{}\" differs from its descriptor's \"{}\"", **own, descriptor_type))
              .error());
    }
    const std::string type = !descriptor_type.empty() ? descriptor_type : own->value_or(fallback);
    const bool index = is_index_type(type);
    for (const char* field : {"manifests", "config", "layers"}) {
      auto has = doc.has(field);
      if (!has) {
        return std::unexpected(in(entry, has.error()));
      }
      const bool wrong = index ? std::string_view(field) != "manifests" : std::string_view(field) == "manifests";
      if (*has && wrong) {
        return std::unexpected(bad(entry, fmt::format("a {} must not have a \"{}\" field",
                                                      index ? "index" : "manifest", field)).error());
      }
    }
    return type;
  }

  // A manifest or index blob: read, checked against its descriptor, parsed once per
  // digest.
  Result<const gojson::Value*> metadata_document(const Parsed& desc, const std::string& what) {
    auto bytes = metadata_blob(desc.digest, desc.size, what);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    if (auto it = documents_.find(desc.digest); it != documents_.end()) {
      return &it->second;
    }
    auto root = parse_json("blobs/sha256/" + desc.digest.hex(), **bytes);
    if (!root) {
      return std::unexpected(root.error());
    }
    return &documents_.emplace(desc.digest, std::move(*root)).first->second;
  }

  // The fields of a manifest document that name its blobs, checked as containerd
  // checks them.
  struct ManifestFields {
    std::string type;
    Parsed config;
    std::vector<gojson::Struct> layers;
  };

  Result<ManifestFields> manifest_fields(const std::string& entry, const gojson::Value& root,
                                         const std::string& descriptor_type) {
    if (!root.is_object()) {
      return std::unexpected(archive_error(input_, entry, "manifest is not a JSON object"));
    }
    auto m = gojson::Struct::of(root);
    auto type = document_type(entry, *m, descriptor_type, media_type::oci_manifest);
    if (!type) {
      return std::unexpected(type.error());
    }
    if (!is_manifest_type(*type)) {
      return std::unexpected(archive_error(input_, entry, fmt::format("unsupported manifest media type \"{}\"", *type)));
    }
    auto config_struct = m->object("config");
    auto layers = m->structs("layers");
    if (!config_struct || !layers) {
      return std::unexpected(in(entry, !config_struct ? config_struct.error() : layers.error()));
    }
    if (!config_struct->present() || !*layers) {
      return std::unexpected(archive_error(input_, entry, "manifest without config or layers"));
    }
    if ((*layers)->size() > limits_.max_layers) {
      return std::unexpected(archive_error(
          input_, entry,
          fmt::format("manifest lists {} layers; kload refuses more than {} (overlayfs stacks at most 500)",
                      (*layers)->size(), limits_.max_layers)));
    }
    auto config = parse_descriptor(entry, *config_struct);
    if (!config) {
      return std::unexpected(config.error());
    }
    if (!config->media_type.empty() && !is_config_type(config->media_type)) {
      return std::unexpected(archive_error(
          input_, entry, fmt::format("unsupported config media type \"{}\"", config->media_type)));
    }
    return ManifestFields{std::move(*type), std::move(*config), std::move(**layers)};
  }

  // A layer's tar entry against what the manifest and the config say of it.
  Result<void> check_layer(const std::string& layer_entry, const Parsed& ld, const TarEntry& e,
                           const Digest& diff_id) const {
    if (ld.size && *ld.size != e.size) {
      return bad(layer_entry, fmt::format("layer is {} bytes, the manifest says {}", e.size, *ld.size));
    }
    if (e.computed && *e.computed != ld.digest) {
      return bad(layer_entry,
                 fmt::format("layer bytes hash to {}, the manifest says {}", e.computed->str(), ld.digest.str()));
    }
    const bool uncompressed = ld.media_type == media_type::oci_layer || ld.media_type == media_type::docker_layer;
    if (uncompressed && ld.digest != diff_id) {
      return bad(layer_entry, fmt::format("uncompressed layer {} disagrees with the config's diff_id {}",
                                          ld.digest.str(), diff_id.str()));
    }
    return {};
  }

  // One manifest of an OCI layout. `in_index` is set when the manifest is one platform
  // of an index: then missing blobs make it unavailable instead of an error.
  Result<void> oci_manifest(const Parsed& desc, const std::vector<std::string>& names,
                            const std::optional<Platform>& platform_hint, bool in_index,
                            const std::vector<Descriptor>& indexes) {
    const std::string manifest_entry = "blobs/sha256/" + desc.digest.hex();
    auto unavailable = [&](const std::string& reason) -> Result<void> {
      if (!in_index) {
        return bad(manifest_entry, reason);
      }
      set_.unavailable.push_back(UnavailableImage{names, platform_hint.value_or(Platform{}), input_, reason});
      return {};
    };
    if (index_.lookup(manifest_entry) == nullptr) {
      return unavailable(fmt::format("manifest {} is not in the archive", desc.digest.str()));
    }
    auto root = metadata_document(desc, "manifest");
    if (!root) {
      return std::unexpected(root.error());
    }
    const std::string& bytes = verified_.at(desc.digest);
    auto fields = manifest_fields(manifest_entry, **root, desc.media_type);
    if (!fields) {
      return std::unexpected(fields.error());
    }
    const Parsed& config_desc = fields->config;
    const std::string config_entry = "blobs/sha256/" + config_desc.digest.hex();
    if (index_.lookup(config_entry) == nullptr) {
      return unavailable(fmt::format("config {} named by manifest {} is not in the archive",
                                     config_desc.digest.str(), desc.digest.str()));
    }
    auto config_blob = metadata_blob(config_desc.digest, config_desc.size, "config");
    if (!config_blob) {
      return std::unexpected(config_blob.error());
    }
    const std::string* config_bytes = *config_blob;
    auto config = parse_config(config_desc.digest, config_entry, *config_bytes);
    if (!config) {
      return std::unexpected(config.error());
    }
    const ParsedConfig& cfg = **config;
    Image image;
    image.names = names;
    image.id = config_desc.digest;
    image.platform = cfg.platform;
    if (platform_hint && image.platform.os.empty()) {
      image.platform = *platform_hint;
    }
    image.config = Descriptor{config_desc.media_type.empty() ? media_type::oci_config : config_desc.media_type,
                              config_desc.digest, config_bytes->size()};
    image.manifest = Descriptor{fields->type, desc.digest, bytes.size()};
    image.manifest_bytes = bytes;
    image.indexes = indexes;
    image.run = cfg.run;
    image.format = SourceFormat::oci_layout;
    image.source = input_;
    if (fields->layers.size() != cfg.diff_ids.size()) {
      return bad(manifest_entry, fmt::format("manifest lists {} layers but config {} has {} diff_ids",
                                             fields->layers.size(), config_desc.digest.str(), cfg.diff_ids.size()));
    }
    std::vector<std::pair<std::string, const TarEntry*>> layer_entries;
    for (std::size_t i = 0; i < fields->layers.size(); ++i) {
      auto ld = parse_descriptor(manifest_entry, fields->layers[i]);
      if (!ld) {
        return std::unexpected(ld.error());
      }
      std::string resolved;
      const std::string layer_entry = "blobs/sha256/" + ld->digest.hex();
      const TarEntry* e = index_.lookup(layer_entry, &resolved);
      if (e == nullptr) {
        return unavailable(fmt::format("layer {} named by manifest {} is not in the archive", ld->digest.str(),
                                       desc.digest.str()));
      }
      if (auto ok = check_layer(layer_entry, *ld, *e, cfg.diff_ids[i]); !ok) {
        return ok;
      }
      image.layers.push_back(Layer{Descriptor{ld->media_type, ld->digest, e->size}, cfg.diff_ids[i]});
      layer_entries.emplace_back(resolved, e);
    }
    add_memory_blob(desc.digest, manifest_entry, bytes);
    add_memory_blob(config_desc.digest, config_entry, *config_bytes);
    for (std::size_t i = 0; i < layer_entries.size(); ++i) {
      const auto& [name, e] = layer_entries[i];
      add_blob(image.layers[i].blob.digest, e->size, index_.location_of(name, *e), e->computed);
    }
    add_image(std::move(image));
    return {};
  }

  // One descriptor of index.json or of an index; `indexes` are the indexes above it,
  // outermost first.
  Result<void> oci_descriptor(const gojson::Struct& d, const std::string& where, const std::vector<std::string>& names,
                              const std::optional<Platform>& platform, bool in_index,
                              std::vector<Descriptor> indexes) {
    const auto depth = static_cast<int>(indexes.size());
    if (depth > 4) {
      return bad(where, "indexes nested more than 4 deep");
    }
    auto desc = parse_descriptor(where, d);
    if (!desc) {
      return std::unexpected(desc.error());
    }
    if (!desc->media_type.empty() && !is_index_type(desc->media_type) && !is_manifest_type(desc->media_type)) {
      // containerd skips children of a type it does not know; so does kload, but only
      // inside an index: what the user named must be an image.
      if (depth > 0) {
        set_.unavailable.push_back(UnavailableImage{names, platform.value_or(Platform{}), input_,
                                                    fmt::format("unsupported media type \"{}\"", desc->media_type)});
        return {};
      }
      return bad(where, fmt::format("unsupported media type \"{}\" for {}", desc->media_type, desc->digest.str()));
    }
    if (!is_index_type(desc->media_type)) {
      return oci_manifest(*desc, names, platform, in_index, indexes);
    }
    const std::string entry = "blobs/sha256/" + desc->digest.hex();
    if (index_.lookup(entry) == nullptr) {
      if (in_index) {
        set_.unavailable.push_back(UnavailableImage{names, platform.value_or(Platform{}), input_,
                                                    fmt::format("index {} is not in the archive", desc->digest.str())});
        return {};
      }
      return bad(entry, fmt::format("index {} named by {} is not in the archive", desc->digest.str(), where));
    }
    auto root = metadata_document(*desc, "index");
    if (!root) {
      return std::unexpected(root.error());
    }
    if (!(*root)->is_object()) {
      return bad(entry, "index is not a JSON object");
    }
    auto index = gojson::Struct::of(**root);
    auto type = document_type(entry, *index, desc->media_type, media_type::oci_index);
    if (!type) {
      return std::unexpected(type.error());
    }
    auto children = index->structs("manifests");
    if (!children) {
      return std::unexpected(in(entry, children.error()));
    }
    if (!*children) {
      return bad(entry, "index without manifests");
    }
    add_memory_blob(desc->digest, entry, verified_.at(desc->digest));
    indexes.push_back(Descriptor{*type, desc->digest, verified_.at(desc->digest).size()});
    for (const auto& child : **children) {
      auto child_platform = descriptor_platform(child);
      if (!child_platform) {
        return std::unexpected(in(entry, child_platform.error()));
      }
      if (auto r = oci_descriptor(child, entry, names, *child_platform, true, indexes); !r) {
        return r;
      }
    }
    return {};
  }

  Result<std::vector<std::string>> normalize_names(const std::string& entry, const std::vector<std::string>& raw) {
    std::vector<std::string> normalized;
    for (const auto& n : raw) {
      auto norm = normalize_image_name(n);
      if (!norm) {
        return std::unexpected(bad(entry, norm.error().message).error());
      }
      normalized.push_back(std::move(*norm));
    }
    std::vector<std::string> out;
    add_new_names(out, normalized);
    return out;
  }

  Result<void> read_oci(const gojson::Value& root) {
    auto index = gojson::Struct::of(root);
    if (!index || !root.is_object()) {
      return bad("index.json", "not a JSON object");
    }
    auto manifests = index->structs("manifests");
    if (!manifests) {
      return std::unexpected(in("index.json", manifests.error()));
    }
    if (!*manifests) {
      return bad("index.json", "no \"manifests\" array");
    }
    for (const auto& d : **manifests) {
      auto annotations = d.string_map("annotations");
      if (!annotations) {
        return std::unexpected(in("index.json", annotations.error()));
      }
      std::vector<std::string> raw;
      if (auto it = annotations->find("io.containerd.image.name"); it != annotations->end()) {
        raw.push_back(it->second);
      } else if (auto ref = annotations->find("org.opencontainers.image.ref.name");
                 ref != annotations->end() && looks_like_reference(ref->second)) {
        raw.push_back(ref->second);
      }
      auto names = normalize_names("index.json", raw);
      if (!names) {
        return std::unexpected(names.error());
      }
      // A descriptor that names its platform is one platform of a multi-platform image:
      // if its blobs are absent it is unavailable, not an error.
      auto platform = descriptor_platform(d);
      if (!platform) {
        return std::unexpected(in("index.json", platform.error()));
      }
      if (auto r = oci_descriptor(d, "index.json", *names, *platform, platform->has_value(), {}); !r) {
        return r;
      }
    }
    return {};
  }

  // The docker schema-2 manifest containerd's importer synthesises for a docker
  // archive: compact JSON, keys in Go struct order, so its digest equals a full import's.
  static std::string docker_manifest(const Descriptor& config, const std::vector<Layer>& layers) {
    nlohmann::ordered_json m;
    m["schemaVersion"] = 2;
    m["mediaType"] = media_type::docker_manifest;
    m["config"] = {{"mediaType", config.media_type}, {"digest", config.digest.str()}, {"size", config.size}};
    m["layers"] = nlohmann::ordered_json::array();
    for (const auto& l : layers) {
      m["layers"].push_back({{"mediaType", l.blob.media_type}, {"digest", l.blob.digest.str()}, {"size", l.blob.size}});
    }
    return m.dump();
  }

  // The digest a docker-archive file name promises: "<hex>.tar", "<hex>.json" or
  // "blobs/sha256/<hex>".
  static std::optional<Digest> digest_from_name(const std::string& name) {
    auto base = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
    if (base.ends_with(".tar") || base.ends_with(".json")) {
      base = base.substr(0, base.rfind('.'));
    }
    return Digest::parse_hex(base);
  }

  // One entry of a docker-save manifest.json, as containerd's importer and `docker
  // load` decode it.
  struct DockerEntry {
    std::string config;
    std::vector<std::string> repo_tags;
    std::vector<std::string> layers;
  };

  Result<std::vector<DockerEntry>> decode_docker_manifest(const gojson::Value& root) const {
    auto entries = gojson::Struct::elements(root);
    if (!entries) {
      return std::unexpected(bad("manifest.json", entries.error().message).error());
    }
    std::vector<DockerEntry> out;
    for (std::size_t idx = 0; idx < entries->size(); ++idx) {
      const auto& m = (*entries)[idx];
      const std::string where = fmt::format("manifest.json[{}]", idx);
      auto config = m.string("Config");
      auto tags = m.strings("RepoTags");
      auto layers = m.strings("Layers");
      if (!config || !tags || !layers) {
        return std::unexpected(in(where, !config ? config.error() : !tags ? tags.error() : layers.error()));
      }
      if (!*config || !*layers) {
        return std::unexpected(bad(where, "needs \"Config\" and \"Layers\"").error());
      }
      if ((*layers)->size() > limits_.max_layers) {
        return std::unexpected(bad(where, fmt::format("lists {} layers; kload refuses more than {} (overlayfs "
                                                      "stacks at most 500)",
                                                      (*layers)->size(), limits_.max_layers)).error());
      }
      out.push_back(DockerEntry{**config, tags->value_or(std::vector<std::string>{}), **layers});
    }
    return out;
  }

  // A docker-archive config: its bytes, read and hashed once per entry however many
  // images name it. Identified by the digest of its bytes, as containerd and `docker
  // load` identify it; a file name promising another digest only earns a warning.
  struct DockerConfig {
    Digest digest;
    std::string entry;
    std::string bytes;
  };

  Result<const DockerConfig*> docker_config(const std::string& config_name, const std::string& where) {
    std::string config_entry;
    const TarEntry* ce = index_.lookup(config_name, &config_entry);
    if (ce == nullptr) {
      return std::unexpected(bad(config_name, fmt::format("config named by {} is not in the archive", where)).error());
    }
    if (auto it = docker_configs_.find(config_entry); it != docker_configs_.end()) {
      return &it->second;
    }
    auto config_bytes = index_.bytes(config_name, *ce, limits_.max_metadata_bytes);
    if (!config_bytes) {
      return std::unexpected(config_bytes.error());
    }
    const auto config_digest = util::Sha256::of(*config_bytes);
    if (auto claimed = digest_from_name(config_name); claimed && *claimed != config_digest) {
      set_.warnings.push_back(fmt::format("{}: {}: config bytes hash to {}, not the {} its name says; the image is "
                                          "identified by its bytes, as containerd and docker load do",
                                          input_, config_name, config_digest.str(), claimed->str()));
    }
    return &docker_configs_.emplace(config_entry, DockerConfig{config_digest, config_entry, std::move(*config_bytes)})
                .first->second;
  }

  Result<void> read_docker(const std::vector<DockerEntry>& manifest) {
    for (std::size_t idx = 0; idx < manifest.size(); ++idx) {
      const auto& m = manifest[idx];
      const std::string where = fmt::format("manifest.json[{}]", idx);
      auto dc = docker_config(m.config, where);
      if (!dc) {
        return std::unexpected(dc.error());
      }
      const Digest config_digest = (*dc)->digest;
      auto config = parse_config(config_digest, m.config, (*dc)->bytes);
      if (!config) {
        return std::unexpected(config.error());
      }
      const ParsedConfig& cfg = **config;
      const auto& layer_names = m.layers;
      if (layer_names.size() != cfg.diff_ids.size()) {
        return bad(where, fmt::format("lists {} layers but config {} has {} diff_ids", layer_names.size(),
                                      config_digest.str(), cfg.diff_ids.size()));
      }
      Image image;
      auto names = normalize_names(where, m.repo_tags);
      if (!names) {
        return std::unexpected(names.error());
      }
      image.names = *names;
      image.id = config_digest;
      image.platform = cfg.platform;
      image.config = Descriptor{media_type::docker_config, config_digest, (*dc)->bytes.size()};
      image.run = cfg.run;
      image.format = SourceFormat::docker_archive;
      image.source = input_;
      std::vector<std::pair<std::string, const TarEntry*>> layer_entries;
      for (std::size_t i = 0; i < layer_names.size(); ++i) {
        const auto& lname = layer_names[i];
        std::string resolved;
        const TarEntry* e = index_.lookup(lname, &resolved);
        if (e == nullptr) {
          return bad(lname, fmt::format("layer {} named by {} is not in the archive", cfg.diff_ids[i].str(), where));
        }
        auto layer = docker_layer(lname, resolved, *e, cfg.diff_ids[i]);
        if (!layer) {
          return std::unexpected(layer.error());
        }
        image.layers.push_back(*layer);
        layer_entries.emplace_back(resolved, e);
      }
      image.manifest_bytes = docker_manifest(image.config, image.layers);
      image.manifest = Descriptor{media_type::docker_manifest, util::Sha256::of(image.manifest_bytes),
                                  image.manifest_bytes.size()};
      add_memory_blob(image.manifest.digest, where, image.manifest_bytes);
      add_memory_blob(config_digest, (*dc)->entry, (*dc)->bytes);
      for (std::size_t i = 0; i < layer_entries.size(); ++i) {
        const auto& [name, e] = layer_entries[i];
        std::optional<Digest> computed = e->computed;
        if (!computed && image.layers[i].blob.media_type == media_type::docker_layer_gzip) {
          computed = image.layers[i].blob.digest;
        }
        add_blob(image.layers[i].blob.digest, e->size, index_.location_of(name, *e), computed);
      }
      add_image(std::move(image));
    }
    return {};
  }

  // One layer of a docker archive: plain tar (its digest is the diff_id) or gzip (hashed
  // once per entry, however many images use it).
  Result<Layer> docker_layer(const std::string& lname, const std::string& resolved, const TarEntry& e,
                             const Digest& diff_id) {
    auto head = index_.peek(e, 2);
    if (!head) {
      return std::unexpected(bad(lname, "cannot read layer").error());
    }
    Layer layer;
    layer.diff_id = diff_id;
    layer.blob.size = e.size;
    if (head->size() == 2 && static_cast<unsigned char>((*head)[0]) == 0x1f &&
        static_cast<unsigned char>((*head)[1]) == 0x8b) {
      // A compressed layer: its digest is not the diff_id and nothing names it, so it
      // has to be hashed now.
      layer.blob.media_type = media_type::docker_layer_gzip;
      if (auto it = hashed_layers_.find(resolved); it != hashed_layers_.end()) {
        layer.blob.digest = it->second;
        return layer;
      }
      auto d = e.computed ? *e.computed : index_.hash(e);
      if (!d) {
        return std::unexpected(bad(lname, "cannot read layer").error());
      }
      layer.blob.digest = *d;
      hashed_layers_.emplace(resolved, *d);
      return layer;
    }
    layer.blob.media_type = media_type::docker_layer;
    layer.blob.digest = layer.diff_id;
    const auto claimed = digest_from_name(resolved);
    if (claimed && *claimed != layer.diff_id) {
      return std::unexpected(bad(lname, fmt::format("file name says {} but the config's diff_id is {}",
                                                    claimed->str(), layer.diff_id.str())).error());
    }
    if (e.computed && *e.computed != layer.diff_id) {
      return std::unexpected(bad(lname, fmt::format("layer bytes hash to {} but the config's diff_id is {}",
                                                    e.computed->str(), layer.diff_id.str())).error());
    }
    return layer;
  }

  void add_image(Image image) {
    for (auto& existing : set_.images) {
      if (existing.id == image.id && existing.manifest.digest == image.manifest.digest &&
          existing.target().digest == image.target().digest) {
        add_new_names(existing.names, image.names);
        return;
      }
    }
    set_.images.push_back(std::move(image));
  }

  Result<gojson::Value> top_document(const char* name, const TarEntry& e) {
    auto bytes = index_.bytes(name, e, limits_.max_metadata_bytes);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    return parse_json(name, *bytes);
  }

  // True when index.json lists no manifest (an empty or absent "manifests").
  static bool names_nothing(const gojson::Value& root) {
    auto index = gojson::Struct::of(root);
    if (!index || !root.is_object()) {
      return false;
    }
    auto manifests = index->structs("manifests");
    return manifests && (!*manifests || (*manifests)->empty());
  }

  TarIndex& index_;
  const std::string& input_;
  ImageSet& set_;
  const ReadLimits& limits_;
  std::map<Digest, std::vector<std::string>> config_tags_;
  // Each distinct metadata document is read, hashed and parsed once, however many
  // images name it (a manifest.json of 100 entries naming one 15 MiB config).
  std::map<Digest, std::string> verified_;            // metadata blobs, digest-checked
  std::map<Digest, gojson::Value> documents_;         // manifests and indexes, parsed
  std::map<Digest, ParsedConfig> configs_;            // image configs, decoded
  std::map<std::string, DockerConfig> docker_configs_;  // by entry name
  std::map<std::string, Digest> hashed_layers_;       // gzip docker layers, by entry name
  std::uint64_t documents_parsed_ = 0;
};

} // namespace

namespace {
Result<ReadStats> read_into(const std::string& input, int fd, ImageSet& set, const ReadLimits& limits) {
  util::install_cleanup_signal_handlers();
  ImageSet scratch;  // nothing of a failed archive reaches the caller's set
  scratch.blobs = set.blobs;
  scratch.spool_owner = set.spool_owner;
  TarIndex index(input, limits, fd);
  if (auto r = index.scan(); !r) {
    return std::unexpected(r.error());
  }
  LayoutReader layout(index, scratch, limits);
  if (auto r = layout.interpret(); !r) {
    return std::unexpected(r.error());
  }
  ReadStats stats = index.stats();
  stats.documents_parsed = layout.documents_parsed();
  if (index.spool()) {
    // The set keeps every spool directory of every input alive.
    scratch.spool_owner = std::make_shared<std::pair<std::shared_ptr<void>, std::shared_ptr<util::TempDir>>>(
        scratch.spool_owner, index.spool());
  }
  for (auto& image : scratch.images) {
    bool merged = false;
    for (auto& existing : set.images) {
      if (existing.id == image.id && existing.manifest.digest == image.manifest.digest &&
          existing.target().digest == image.target().digest) {
        add_new_names(existing.names, image.names);
        merged = true;
      }
    }
    if (!merged) {
      set.images.push_back(std::move(image));
    }
  }
  for (auto& u : scratch.unavailable) {
    set.unavailable.push_back(std::move(u));
  }
  for (auto& w : scratch.warnings) {
    set.warnings.push_back(std::move(w));
  }
  set.blobs = std::move(scratch.blobs);
  set.spool_owner = scratch.spool_owner;
  return stats;
}
} // namespace

Result<ReadStats> read_archive(const std::string& input, ImageSet& set, const ReadLimits& limits) {
  return read_into(input, -1, set, limits);
}

Result<ReadStats> read_archive_fd(int fd, const std::string& name, ImageSet& set, const ReadLimits& limits) {
  return read_into(name, fd, set, limits);
}

} // namespace kload::format
