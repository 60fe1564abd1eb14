// Hostile archives: what a crafted image archive can do to the reader, and what kload
// answers. The archives are written here byte by byte, tar headers included, so that
// sizes, links and duplicates lie exactly as an attacker's would. Each is read as a
// file (the in-place index) and from standard input (the stream), through the library
// and through `kload inspect`.

#include "kload/format/archive_reader.h"

#include "kload/format/verify.h"
#include "kload/util/sha256.h"
#include "format_helpers.h"
#include "support/test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <functional>
#include <limits>
#include <optional>
#include <thread>
#include <unistd.h>

namespace kload::format {
namespace {

namespace fs = std::filesystem;
using kload::testing::Scratch;
using nlohmann::json;
using util::Sha256;

std::string sha_hex(std::string_view data) {
  return Sha256::of(data).hex();
}
std::string sha(std::string_view data) {
  return Sha256::of(data).str();
}

// ---------------------------------------------------------------------------------
// Tar archives that lie

struct Member {
  std::string name;
  char type = '0'; // '0' file, '1' hard link, '2' symbolic link, '5' directory, 'x' pax header
  std::string body;
  std::string link;
  std::optional<std::string> size_field; // the 12 bytes of the size field, when it must lie
};

Member file(std::string name, std::string body) {
  return Member{std::move(name), '0', std::move(body), "", {}};
}
Member symlink(std::string name, std::string target) {
  return Member{std::move(name), '2', "", std::move(target), {}};
}
Member hardlink(std::string name, std::string target) {
  return Member{std::move(name), '1', "", std::move(target), {}};
}
Member directory(std::string name) {
  return Member{std::move(name), '5', "", "", {}};
}

// A numeric header field of `width` bytes: octal digits and a NUL, as tar writes sizes
// below 8 GiB.
std::string octal_field(std::uint64_t value, std::size_t width = 12) {
  auto digits = fmt::format("{:0{}o}", value, width - 1);
  return digits.substr(digits.size() - (width - 1)) + '\0';
}

// The base-256 form tar uses for sizes of 8 GiB and more: a marker byte, then the value
// big-endian in two's complement (all 0xff bytes is -1).
std::string base256_field(std::int64_t value) {
  std::string f(12, value < 0 ? '\xff' : '\0');
  f[0] = value < 0 ? '\xff' : '\x80';
  for (int i = 0; i < 8; ++i) {
    f[11 - i] = static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
  }
  return f;
}

// A pax extended header that gives the next entry the size `size`.
Member pax_size(std::uint64_t size) {
  const std::string record = fmt::format(" size={}\n", size);
  // A record starts with its own length in decimal, those digits included.
  std::size_t length = record.size() + 1;
  while (std::to_string(length).size() + record.size() != length) {
    ++length;
  }
  return Member{"PaxHeader", 'x', std::to_string(length) + record, "", {}};
}

std::size_t padded(std::size_t n) {
  return (n + 511) / 512 * 512;
}

bool has_body(const Member& m) {
  return m.type == '0' || m.type == 'x';
}

// Ustar bytes of `members`, then the end-of-archive blocks.
std::string tar_of(const std::vector<Member>& members) {
  std::string out;
  for (const auto& m : members) {
    EXPECT_LE(m.name.size(), 100u) << m.name;
    std::string h(512, '\0');
    const auto put = [&](std::size_t at, const std::string& field) { h.replace(at, field.size(), field); };
    put(0, m.name.substr(0, 100));
    put(100, octal_field(m.type == '5' ? 0755 : m.type == '2' ? 0777 : 0644, 8));
    put(108, octal_field(0, 8));
    put(116, octal_field(0, 8));
    put(124, m.size_field.value_or(octal_field(has_body(m) ? m.body.size() : 0)));
    put(136, octal_field(0));
    put(148, std::string(8, ' '));
    h[156] = m.type;
    put(157, m.link.substr(0, 100));
    put(257, std::string("ustar") + '\0' + "00");
    unsigned sum = 0;
    for (const char c : h) {
      sum += static_cast<unsigned char>(c);
    }
    put(148, octal_field(sum, 7) + ' ');
    out += h;
    if (has_body(m)) {
      out += m.body;
      out.append(padded(m.body.size()) - m.body.size(), '\0');
    }
  }
  out.append(1024, '\0');
  return out;
}

// Where member `index`'s data starts in tar_of(members).
std::uint64_t data_offset(const std::vector<Member>& members, std::size_t index) {
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < index; ++i) {
    at += 512 + (has_body(members[i]) ? padded(members[i].body.size()) : 0);
  }
  return at + 512;
}

// ---------------------------------------------------------------------------------
// One image, as `docker save` (Docker 24 and older) or an OCI archive lays it out

enum class Layout { docker_save, oci };

std::string layout_name(Layout l) {
  return l == Layout::docker_save ? "docker_save" : "oci";
}

// The documents a test may rewrite before the digests that name them are taken.
enum class Doc { manifest_json, config, manifest, index_json };
using Edit = std::function<void(Doc, std::string&)>;

struct Options {
  int layers = 2;
  std::size_t layer_size = 0; // pad each layer body to this many bytes
  Edit edit{};
};

// The members of a valid archive, and the entries a test may want to change.
struct ImageArchive {
  std::vector<Member> members;
  std::string config;
  std::string config_entry;
  std::string manifest_entry; // the OCI manifest blob; "manifest.json" for docker
  std::vector<std::string> layer_bodies;
  std::vector<std::string> layer_entries; // bottom first
  std::vector<std::string> v1_ids;        // docker: the layer directories

  std::size_t index_of(const std::string& name) const {
    const auto it = std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.name == name; });
    EXPECT_NE(it, members.end()) << "no member " << name;
    return static_cast<std::size_t>(it - members.begin());
  }
  Member& at(const std::string& name) { return members[index_of(name)]; }
  // Puts `replacement` where the member named `name` is.
  void replace(const std::string& name, Member replacement) { at(name) = std::move(replacement); }
  // Moves the member named `name` to the end.
  void move_to_end(const std::string& name) {
    const auto i = index_of(name);
    auto m = members[i];
    members.erase(members.begin() + static_cast<std::ptrdiff_t>(i));
    members.push_back(std::move(m));
  }
  [[nodiscard]] std::string bytes() const { return tar_of(members); }
};

ImageArchive image_archive(Layout layout, const Options& options = {}) {
  const auto edit = [&](Doc d, std::string& text) {
    if (options.edit) {
      options.edit(d, text);
    }
  };
  ImageArchive a;
  json diff_ids = json::array();
  for (int i = 0; i < options.layers; ++i) {
    auto body = fmt::format("layer {}\n", i);
    body.resize(std::max(body.size(), options.layer_size), '.');
    diff_ids.push_back(sha(body));
    a.layer_bodies.push_back(std::move(body));
  }
  a.config = json{{"architecture", "amd64"},
                  {"os", "linux"},
                  {"config", {{"Cmd", {"/bin/sh"}}}},
                  {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
                 .dump();
  edit(Doc::config, a.config);
  if (layout == Layout::docker_save) {
    json layer_names = json::array();
    for (int i = 0; i < options.layers; ++i) {
      const auto v1 = sha_hex(fmt::format("v1 {}", i));
      a.v1_ids.push_back(v1);
      a.layer_entries.push_back(v1 + "/layer.tar");
      layer_names.push_back(v1 + "/layer.tar");
      a.members.push_back(directory(v1 + "/"));
      a.members.push_back(file(v1 + "/VERSION", "1.0"));
      a.members.push_back(file(v1 + "/json", json{{"id", v1}}.dump()));
      a.members.push_back(file(v1 + "/layer.tar", a.layer_bodies[static_cast<std::size_t>(i)]));
    }
    a.config_entry = sha_hex(a.config) + ".json";
    auto manifest =
        json::array({{{"Config", a.config_entry}, {"RepoTags", {"app:v1"}}, {"Layers", layer_names}}}).dump();
    edit(Doc::manifest_json, manifest);
    a.manifest_entry = "manifest.json";
    a.members.push_back(file(a.config_entry, a.config));
    a.members.push_back(file("manifest.json", manifest));
    a.members.push_back(file("repositories", json{{"app", {{"v1", a.v1_ids.back()}}}}.dump()));
    return a;
  }
  json layers = json::array();
  for (const auto& body : a.layer_bodies) {
    layers.push_back({{"mediaType", media_type::oci_layer}, {"digest", sha(body)}, {"size", body.size()}});
    a.layer_entries.push_back("blobs/sha256/" + sha_hex(body));
  }
  const json config_descriptor{
      {"mediaType", media_type::oci_config}, {"digest", sha(a.config)}, {"size", a.config.size()}};
  auto manifest = json{
      {"schemaVersion", 2},
      {"mediaType", media_type::oci_manifest},
      {"config", config_descriptor},
      {"layers",
       layers}}.dump();
  edit(Doc::manifest, manifest);
  auto index = json{{"schemaVersion", 2},
                    {"manifests",
                     {{{"mediaType", media_type::oci_manifest},
                       {"digest", sha(manifest)},
                       {"size", manifest.size()},
                       {"annotations", {{"io.containerd.image.name", "docker.io/library/app:v1"}}}}}}}
                   .dump();
  edit(Doc::index_json, index);
  a.config_entry = "blobs/sha256/" + sha_hex(a.config);
  a.manifest_entry = "blobs/sha256/" + sha_hex(manifest);
  a.members.push_back(file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
  a.members.push_back(directory("blobs/"));
  a.members.push_back(directory("blobs/sha256/"));
  a.members.push_back(file(a.config_entry, a.config));
  a.members.push_back(file(a.manifest_entry, manifest));
  for (std::size_t i = 0; i < a.layer_bodies.size(); ++i) {
    a.members.push_back(file(a.layer_entries[i], a.layer_bodies[i]));
  }
  a.members.push_back(file("index.json", index));
  return a;
}

// A value nested `levels` deep: [[[...]]] or {"a":{"a":...null}}.
std::string deep_array(std::size_t levels) {
  return std::string(levels, '[') + std::string(levels, ']');
}
std::string deep_object(std::size_t levels) {
  std::string out;
  for (std::size_t i = 0; i < levels; ++i) {
    out += R"({"a":)";
  }
  return out + "null" + std::string(levels, '}');
}

// Adds `value` to a JSON document: as member "x" of an object, or as one more element
// of an array.
void embed(std::string& document, const std::string& value) {
  const char close = document.back();
  document.pop_back();
  document += (close == '}' ? R"(,"x":)" : ",") + value + close;
}

// ---------------------------------------------------------------------------------
// Reading


enum class Mode { file, stdin_pipe };

const char* mode_name(Mode m) {
  return m == Mode::file ? "file" : "stdin";
}

util::Result<ReadStats> read_in(Mode mode, const fs::path& archive, ImageSet& set, const ReadLimits& limits = {}) {
  return mode == Mode::file ? read_archive(archive.string(), set, limits) : read_via_stdin(archive, set, limits);
}

std::string shown(Mode mode, const fs::path& archive) {
  return mode == Mode::file ? archive.string() : "-";
}

kload::testing::CommandResult inspect(Mode mode, const fs::path& archive, std::vector<std::string> options = {}) {
  options.insert(options.begin(), "inspect");
  options.push_back(shown(mode, archive));
  return kload::testing::kload(options, mode == Mode::stdin_pipe ? archive.string() : "");
}


bool spool_left(const fs::path& dir) {
  return std::any_of(fs::directory_iterator(dir), fs::directory_iterator(),
                     [](const auto& e) { return e.path().filename().string().starts_with("kload-spool."); });
}

// Sets TMPDIR to a directory of the scratch space for the lifetime of the guard (the
// kload binary inherits it), to see what is left behind.
class PrivateTmp {
public:
  explicit PrivateTmp(const Scratch& scratch) : path_(scratch / "tmp") {
    fs::create_directories(path_);
    if (const char* old = std::getenv("TMPDIR"); old != nullptr) {
      old_ = old;
    }
    ::setenv("TMPDIR", path_.c_str(), 1);
  }
  ~PrivateTmp() {
    if (old_) {
      ::setenv("TMPDIR", old_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }
  PrivateTmp(const PrivateTmp&) = delete;
  PrivateTmp& operator=(const PrivateTmp&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

private:
  fs::path path_;
  std::optional<std::string> old_;
};

// Reads `archive` in `mode` through the library and `kload inspect`: both must fail
// with exactly "<input>: <what>", as one line, leaving nothing behind.
void expect_rejected(const fs::path& archive, Mode mode, const std::string& what, const fs::path& tmp) {
  SCOPED_TRACE(mode_name(mode));
  const auto expected = shown(mode, archive) + ": " + what;
  ImageSet set;
  auto r = read_in(mode, archive, set);
  ASSERT_FALSE(r.has_value()) << "accepted, " << set.images.size() << " image(s); expected: " << expected;
  EXPECT_EQ(r.error().kind, util::ErrorKind::bad_input);
  EXPECT_EQ(r.error().message, expected);
  EXPECT_TRUE(set.images.empty());
  EXPECT_TRUE(set.blobs.empty());
  const auto cli = inspect(mode, archive);
  EXPECT_EQ(cli.exit_code, 2) << cli.err;
  EXPECT_EQ(cli.err, "kload: error: " + expected + "\n");
  EXPECT_EQ(cli.out, "");
  EXPECT_FALSE(spool_left(tmp)) << "spool directory left behind";
}

class Hostile : public ::testing::Test {
protected:
  // This process feeds archives into pipes whose reader may rightly stop early: the
  // writer must see EPIPE, not die.
  void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }
  fs::path write(const std::string& name, const std::string& bytes) const {
    const auto path = scratch / name;
    kload::testing::write_file(path, bytes);
    return path;
  }
  Scratch scratch;
};

// ---------------------------------------------------------------------------------
// Rejected archives: the table

// What kload must answer, after "<input>: ", as a file and from standard input.
struct Refusal {
  std::string bytes;
  std::string as_file;
  std::string streamed; // empty: as as_file
};

struct HostileCase {
  std::string name;
  std::function<Refusal(const fs::path& scratch)> make;
};

void PrintTo(const HostileCase& c, std::ostream* os) {
  *os << c.name;
}

constexpr std::size_t deep = 100000; // levels of nesting, far past any limit

Refusal deeply_nested(Layout layout, Doc doc, const std::string& value) {
  const auto a = image_archive(layout, {.edit = [&](Doc d, std::string& text) {
                                 if (d == doc) {
                                   embed(text, value);
                                 }
                               }});
  const std::string entry = doc == Doc::config       ? a.config_entry
                            : doc == Doc::manifest   ? a.manifest_entry
                            : doc == Doc::index_json ? "index.json"
                                                     : "manifest.json";
  return {a.bytes(), entry + ": JSON nested more than 10000 levels deep", ""};
}

// A second entry named `name` (or `as`) with a different body, at the end.
Refusal duplicated(Layout layout, const std::string& which, const std::string& as = "") {
  auto a = image_archive(layout);
  const std::string name = which == "config"     ? a.config_entry
                           : which == "layer"    ? a.layer_entries[0]
                           : which == "manifest" ? a.manifest_entry
                                                 : which;
  auto copy = a.at(name);
  copy.name = as.empty() ? name : as;
  copy.body += " ";
  a.members.push_back(copy);
  return {a.bytes(), copy.name + ": duplicate entry", ""};
}

std::vector<HostileCase> hostile_cases() {
  std::vector<HostileCase> cases;
  const auto add = [&](std::string name, std::function<Refusal(const fs::path&)> make) {
    cases.push_back({std::move(name), std::move(make)});
  };

  // Deeply nested JSON in every document kload parses.
  for (const auto& [shape, value] : {std::pair{"array", deep_array(deep)}, std::pair{"object", deep_object(deep)}}) {
    const std::string s = shape;
    add("nested_" + s + "_in_manifest_json",
        [=](const fs::path&) { return deeply_nested(Layout::docker_save, Doc::manifest_json, value); });
    add("nested_" + s + "_in_docker_config",
        [=](const fs::path&) { return deeply_nested(Layout::docker_save, Doc::config, value); });
    add("nested_" + s + "_in_index_json",
        [=](const fs::path&) { return deeply_nested(Layout::oci, Doc::index_json, value); });
    add("nested_" + s + "_in_oci_manifest",
        [=](const fs::path&) { return deeply_nested(Layout::oci, Doc::manifest, value); });
    add("nested_" + s + "_in_oci_config",
        [=](const fs::path&) { return deeply_nested(Layout::oci, Doc::config, value); });
  }

  // The same name twice, with different bodies: whichever copy kload took, the other
  // could be what the user meant, so neither is taken.
  add("duplicate_manifest_json", [](const fs::path&) { return duplicated(Layout::docker_save, "manifest.json"); });
  add("duplicate_manifest_json_spelt_differently",
      [](const fs::path&) { return duplicated(Layout::docker_save, "manifest.json", "./manifest.json"); });
  add("duplicate_docker_config", [](const fs::path&) { return duplicated(Layout::docker_save, "config"); });
  add("duplicate_docker_layer", [](const fs::path&) { return duplicated(Layout::docker_save, "layer"); });
  add("duplicate_index_json", [](const fs::path&) { return duplicated(Layout::oci, "index.json"); });
  add("duplicate_oci_manifest", [](const fs::path&) { return duplicated(Layout::oci, "manifest"); });
  add("duplicate_oci_config", [](const fs::path&) { return duplicated(Layout::oci, "config"); });
  add("duplicate_oci_layer", [](const fs::path&) { return duplicated(Layout::oci, "layer"); });
  add("duplicate_with_the_same_body", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    a.members.push_back(a.at("manifest.json"));
    return Refusal{a.bytes(), "manifest.json: duplicate entry", ""};
  });
  add("duplicate_layer_as_a_link_to_another_layer", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    a.members.push_back(symlink(a.layer_entries[0], "../" + a.layer_entries[1]));
    return Refusal{a.bytes(), a.layer_entries[0] + ": duplicate entry", ""};
  });

  // Links that lead out of the archive are refused as they are read, used or not; a
  // link is never looked up on the file system.
  const auto link_out = [](Layout layout, const std::string& which, Member link) {
    auto a = image_archive(layout);
    const std::string name = which == "config"     ? a.config_entry
                             : which == "layer"    ? a.layer_entries[0]
                             : which == "manifest" ? a.manifest_entry
                                                   : which;
    link.name = name;
    a.replace(name, link);
    const auto what = link.type == '2' ? fmt::format("symbolic link to \"{}\" leads outside the archive", link.link)
                                       : std::string("hard links are not supported in image archives");
    return Refusal{a.bytes(), name + ": " + what, ""};
  };
  add("manifest_json_links_to_etc_passwd",
      [=](const fs::path&) { return link_out(Layout::docker_save, "manifest.json", symlink("", "/etc/passwd")); });
  add("docker_layer_links_two_levels_up",
      [=](const fs::path&) { return link_out(Layout::docker_save, "layer", symlink("", "../../x")); });
  add("docker_layer_links_through_the_archive_and_out", [=](const fs::path&) {
    return link_out(Layout::docker_save, "layer",
                    symlink("", "../" + image_archive(Layout::docker_save).v1_ids[1] + "/../../etc/passwd"));
  });
  add("docker_config_links_to_a_file_holding_its_bytes", [=](const fs::path& dir) {
    // If the link were followed, the config would be found, with the right digest.
    const auto outside = dir / "outside.json";
    kload::testing::write_file(outside, image_archive(Layout::docker_save).config);
    return link_out(Layout::docker_save, "config", symlink("", outside.string()));
  });
  add("manifest_json_is_a_hard_link_to_etc_passwd",
      [=](const fs::path&) { return link_out(Layout::docker_save, "manifest.json", hardlink("", "/etc/passwd")); });
  add("docker_layer_is_a_hard_link_two_levels_up",
      [=](const fs::path&) { return link_out(Layout::docker_save, "layer", hardlink("", "../../x")); });
  add("index_json_links_to_etc_passwd",
      [=](const fs::path&) { return link_out(Layout::oci, "index.json", symlink("", "/etc/passwd")); });
  add("oci_layer_links_to_etc_passwd_relatively",
      [=](const fs::path&) { return link_out(Layout::oci, "layer", symlink("", "../../../etc/passwd")); });
  add("oci_manifest_is_a_hard_link_to_etc_passwd",
      [=](const fs::path&) { return link_out(Layout::oci, "manifest", hardlink("", "/etc/passwd")); });
  add("blobs_directory_links_to_etc", [](const fs::path&) {
    auto a = image_archive(Layout::oci);
    a.replace("blobs/sha256/", symlink("blobs/sha256", "/etc"));
    return Refusal{a.bytes(), R"(blobs/sha256: symbolic link to "/etc" leads outside the archive)", ""};
  });
  add("docker_layer_links_to_itself", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    a.replace(a.layer_entries[0], symlink(a.layer_entries[0], "layer.tar"));
    return Refusal{a.bytes(),
                   fmt::format("{}: layer {} named by manifest.json[0] is not in the archive", a.layer_entries[0],
                               sha(a.layer_bodies[0])),
                   ""};
  });

  // Sizes in tar headers that disagree with the data.
  add("last_entry_claims_more_than_the_archive_holds", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    const auto layer = a.layer_entries[0];
    a.move_to_end(layer);
    auto& m = a.at(layer);
    m.size_field = octal_field(m.body.size() + 30000);
    const auto bytes = a.bytes();
    return Refusal{bytes,
                   fmt::format("{}: truncated: entry needs {} bytes past offset {}, file has {}", layer,
                               m.body.size() + 30000, data_offset(a.members, a.members.size() - 1), bytes.size()),
                   layer + ": cannot read: Truncated tar archive"};
  });
  add("index_json_claims_more_than_the_archive_holds", [](const fs::path&) {
    auto a = image_archive(Layout::oci);
    auto& m = a.at("index.json");
    m.size_field = octal_field(m.body.size() + 30000);
    const auto bytes = a.bytes();
    return Refusal{bytes,
                   fmt::format("index.json: truncated: entry needs {} bytes past offset {}, file has {}",
                               m.body.size() + 30000, data_offset(a.members, a.members.size() - 1), bytes.size()),
                   "index.json: cannot read: Truncated tar archive"};
  });
  add("manifest_json_claims_less_and_misframes_the_next_header", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    auto& m = a.at("manifest.json");
    m.body += std::string(1200, ' ');
    m.size_field = octal_field(100);
    return Refusal{a.bytes(), "after entry manifest.json: corrupt or truncated archive: Damaged tar archive", ""};
  });
  add("oci_layer_claims_less_and_misframes_the_next_header", [](const fs::path&) {
    auto a = image_archive(Layout::oci, {.layer_size = 1500});
    a.at(a.layer_entries[0]).size_field = octal_field(8);
    return Refusal{a.bytes(),
                   "after entry " + a.layer_entries[0] + ": corrupt or truncated archive: Damaged tar archive", ""};
  });
  add("layer_claims_less_and_zeros_read_as_the_end", [](const fs::path&) {
    // The body goes on with zeros where the next header should be: they read as the
    // end of the archive, and what came after is missing.
    auto a = image_archive(Layout::docker_save);
    a.move_to_end(a.config_entry);
    a.move_to_end("manifest.json");
    std::rotate(a.members.rbegin(), a.members.rbegin() + 2, a.members.rend());
    auto& m = a.at(a.layer_entries[0]);
    const auto claimed = m.body.size();
    m.body.append(1100, '\0');
    m.size_field = octal_field(claimed);
    return Refusal{a.bytes(),
                   fmt::format("{}: layer {} named by manifest.json[0] is not in the archive", a.layer_entries[1],
                               sha(a.layer_bodies[1])),
                   ""};
  });
  const auto huge_layer = [](Layout layout, std::int64_t size, const std::string& previous_what) {
    auto a = image_archive(layout);
    const auto layer = a.layer_entries[0];
    const auto i = a.index_of(layer);
    a.members[i].size_field = base256_field(size);
    const auto bytes = a.bytes();
    if (!previous_what.empty()) {
      return Refusal{bytes, "after entry " + a.members[i - 1].name + ": corrupt or truncated archive: " + previous_what,
                     ""};
    }
    return Refusal{bytes,
                   fmt::format("{}: truncated: entry needs {} bytes past offset {}, file has {}", layer, size,
                               data_offset(a.members, i), bytes.size()),
                   fmt::format("{}: its header claims {} bytes, so the archive expands beyond 4398046511104 bytes; "
                               "refusing to read further",
                               layer, size)};
  };
  add("docker_layer_size_2_to_the_62_in_base_256",
      [=](const fs::path&) { return huge_layer(Layout::docker_save, std::int64_t{1} << 62, ""); });
  add("oci_layer_size_2_to_the_62_in_base_256",
      [=](const fs::path&) { return huge_layer(Layout::oci, std::int64_t{1} << 62, ""); });
  add("layer_size_2_to_the_63_minus_1_in_base_256", [=](const fs::path&) {
    return huge_layer(Layout::docker_save, std::numeric_limits<std::int64_t>::max(), "Tar entry size overflow");
  });
  add("layer_size_minus_1_in_base_256",
      [=](const fs::path&) { return huge_layer(Layout::oci, -1, "Tar entry has negative size"); });
  add("layer_size_2_to_the_62_in_a_pax_header", [](const fs::path&) {
    auto a = image_archive(Layout::docker_save);
    const auto layer = a.layer_entries[0];
    const auto i = a.index_of(layer);
    a.members.insert(a.members.begin() + static_cast<std::ptrdiff_t>(i), pax_size(std::uint64_t{1} << 62));
    const auto bytes = a.bytes();
    return Refusal{bytes,
                   fmt::format("{}: truncated: entry needs {} bytes past offset {}, file has {}", layer,
                               std::uint64_t{1} << 62, data_offset(a.members, i + 1), bytes.size()),
                   fmt::format("{}: its header claims {} bytes, so the archive expands beyond 4398046511104 bytes; "
                               "refusing to read further",
                               layer, std::uint64_t{1} << 62)};
  });

  // Sizes in OCI descriptors that disagree with the blobs (docker archives have none).
  const auto descriptor = [](Doc doc, const std::function<void(json&)>& change,
                             const std::function<std::string(const ImageArchive&)>& what) {
    const auto a = image_archive(Layout::oci, {.edit = [&](Doc d, std::string& text) {
                                   if (d == doc) {
                                     auto j = json::parse(text);
                                     change(j);
                                     text = j.dump();
                                   }
                                 }});
    return Refusal{a.bytes(), what(a), ""};
  };
  add("oci_layer_larger_than_its_descriptor_says", [=](const fs::path&) {
    return descriptor(
        Doc::manifest, [](json& m) { m["layers"][0]["size"] = 7; },
        [](const ImageArchive& a) {
          return fmt::format("{}: layer is {} bytes, the manifest says 7", a.layer_entries[0],
                             a.layer_bodies[0].size());
        });
  });
  // Go decodes a size into an int64: containerd refuses anything from 2^63 on.
  add("oci_layer_descriptor_size_2_to_the_64_minus_1", [=](const fs::path&) {
    return descriptor(
        Doc::manifest, [](json& m) { m["layers"][0]["size"] = std::numeric_limits<std::uint64_t>::max(); },
        [](const ImageArchive& a) {
          return a.manifest_entry + ": field \"size\": expected a non-negative integer below 2^63";
        });
  });
  add("oci_config_smaller_than_its_descriptor_says", [=](const fs::path&) {
    return descriptor(
        Doc::manifest, [](json& m) { m["config"]["size"] = m["config"]["size"].get<std::uint64_t>() + 1; },
        [](const ImageArchive& a) {
          return fmt::format("{}: config is {} bytes, its descriptor says {}", a.config_entry, a.config.size(),
                             a.config.size() + 1);
        });
  });
  add("oci_config_descriptor_size_negative", [=](const fs::path&) {
    return descriptor(
        Doc::manifest, [](json& m) { m["config"]["size"] = -1; },
        [](const ImageArchive& a) {
          return a.manifest_entry + ": field \"size\": expected a non-negative integer below 2^63";
        });
  });
  add("oci_manifest_larger_than_index_json_says", [=](const fs::path&) {
    return descriptor(
        Doc::index_json, [](json& index) { index["manifests"][0]["size"] = 100; },
        [](const ImageArchive& a) {
          const auto& manifest = a.members[a.index_of(a.manifest_entry)].body;
          return fmt::format("{}: manifest is {} bytes, its descriptor says 100", a.manifest_entry, manifest.size());
        });
  });
  add("oci_layer_header_smaller_within_its_last_block", [](const fs::path&) {
    // The framing holds, the layer reads as 200 bytes; its descriptor says 300.
    auto a = image_archive(Layout::oci, {.layer_size = 300});
    a.at(a.layer_entries[0]).size_field = octal_field(200);
    return Refusal{a.bytes(), a.layer_entries[0] + ": layer is 200 bytes, the manifest says 300", ""};
  });
  return cases;
}

class RefusedArchive : public Hostile, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(RefusedArchive, IsRefusedTheSameWayAsAFileFromStdinAndByTheCli) {
  const auto refusal = GetParam().make(scratch.path());
  ASSERT_FALSE(HasFailure());
  const auto archive = write("hostile.tar", refusal.bytes);
  PrivateTmp tmp(scratch);
  expect_rejected(archive, Mode::file, refusal.as_file, tmp.path());
  expect_rejected(archive, Mode::stdin_pipe, refusal.streamed.empty() ? refusal.as_file : refusal.streamed, tmp.path());
}

INSTANTIATE_TEST_SUITE_P(Hostile, RefusedArchive, ::testing::ValuesIn(hostile_cases()),
                         [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------
// 10,000 layers

std::vector<std::string> layer_digests(const Image& image) {
  std::vector<std::string> out;
  for (const auto& l : image.layers) {
    out.push_back(l.blob.digest.str());
  }
  return out;
}

class ManyLayers : public Hostile, public ::testing::WithParamInterface<Layout> {};

// Read completely and correctly, however many layers a caller allows, as a file and
// from stdin; `kload inspect`, with the default limit (issue #11 item 11), refuses the
// image in one line instead of doing the work for an image no snapshotter could mount.
TEST_P(ManyLayers, TenThousandLayersAreReadCompletelyWhenAllowed) {
  const auto a = image_archive(GetParam(), {.layers = 10000});
  const auto archive = write("many.tar", a.bytes());
  std::vector<std::string> want;
  for (const auto& body : a.layer_bodies) {
    want.push_back(sha(body));
  }
  PrivateTmp tmp(scratch);
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, archive, set, ReadLimits{.max_layers = 10000});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(set.images.size(), 1u);
    const auto& image = set.images[0];
    EXPECT_EQ(image.names, std::vector<std::string>{"docker.io/library/app:v1"});
    EXPECT_EQ(image.id.str(), sha(a.config));
    EXPECT_EQ(layer_digests(image), want);
    EXPECT_EQ(set.blobs.size(), 10002u) << "manifest, config and every layer";
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
      const auto* blob = set.find(image.layers[i].blob.digest);
      ASSERT_NE(blob, nullptr);
      EXPECT_EQ(blob->size, a.layer_bodies[i].size());
      EXPECT_EQ(blob->where.entry, a.layer_entries[i]);
    }
    auto v = verify_blobs(set, all_blobs(set), 2);
    ASSERT_TRUE(v.has_value()) << v.error().message;

    const auto cli = inspect(mode, archive, {"--json"});
    EXPECT_EQ(cli.exit_code, 2) << cli.err;
    const std::string where = GetParam() == Layout::docker_save ? "manifest.json[0]: lists" : a.manifest_entry + ": manifest lists";
    EXPECT_EQ(cli.err, fmt::format("kload: error: {}: {} 10000 layers; kload refuses more than 500 (overlayfs stacks "
                                   "at most 500)\n",
                                   shown(mode, archive), where));
  }
  EXPECT_FALSE(spool_left(tmp.path()));
}

INSTANTIATE_TEST_SUITE_P(Hostile, ManyLayers, ::testing::Values(Layout::docker_save, Layout::oci),
                         [](const auto& info) { return layout_name(info.param); });

// The entry limit counts every entry, directories too; at the limit an archive is read,
// past it refused with one line naming the input.
TEST_F(Hostile, EntryLimitIsExactAndNamed) {
  const auto a = image_archive(Layout::docker_save, {.layers = 10000});
  const auto archive = write("many.tar", a.bytes());
  const auto entries = a.members.size();
  ASSERT_EQ(entries, 40003u) << "four entries per layer, config, manifest.json, repositories";
  ASSERT_GT(ReadLimits{}.max_entries, entries) << "the default allows 10,000 layers";
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, archive, set, ReadLimits{.max_entries = entries, .max_layers = 10000});
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(set.images.at(0).layers.size(), 10000u);
    ImageSet refused;
    r = read_in(mode, archive, refused, ReadLimits{.max_entries = entries - 1, .max_layers = 10000});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message, fmt::format("{}: more than {} entries", shown(mode, archive), entries - 1));
  }
}

// Streamed, small entries stay in memory only up to 64 times memory_entry_bytes in all;
// the rest is spooled, and the result is the same.
TEST_F(Hostile, StreamKeepsABoundedAmountInMemory) {
  const auto a = image_archive(Layout::docker_save, {.layers = 2000});
  const auto archive = write("many.tar", a.bytes());
  PrivateTmp tmp(scratch);
  const ReadLimits limits{.max_layers = 2000, .memory_entry_bytes = 1024};
  ImageSet set;
  auto stats = read_via_stdin(archive, set, limits);
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_GT(stats->bytes_spooled, 0u);
  EXPECT_LE(stats->bytes_hashed - stats->bytes_spooled, 64u * 1024);
  ASSERT_EQ(set.images.size(), 1u);
  EXPECT_EQ(set.images[0].layers.size(), 2000u);
  auto v = verify_blobs(set, all_blobs(set), 2);
  EXPECT_TRUE(v.has_value()) << v.error().message;
}

// ---------------------------------------------------------------------------------
// Names, nesting, links and sizes that are read, and how

// A manifest.json may list any number of tags, repeats included. (Merging them was
// quadratic: 200,000 tags took 40 s; bench/index_bench.cc measures how reading scales.)
TEST_F(Hostile, TwoHundredThousandTagsAreRead) {
  constexpr int tags = 200000;
  const auto a = image_archive(Layout::docker_save, {.edit = [&](Doc d, std::string& text) {
                                 if (d == Doc::manifest_json) {
                                   auto j = json::parse(text);
                                   for (int i = 0; i < tags; ++i) {
                                     j[0]["RepoTags"].push_back(fmt::format("app:v{}", i % (tags / 2)));
                                   }
                                   text = j.dump();
                                 }
                               }});
  const auto archive = write("tags.tar", a.bytes());
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, archive, set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(set.images.size(), 1u);
    EXPECT_EQ(set.images[0].names.size(), static_cast<std::size_t>(tags / 2)) << "app:v1 is listed three times";
    EXPECT_EQ(set.images[0].names.front(), "docker.io/library/app:v1");
  }
}

// Nesting is limited where Go's encoding/json, and so containerd, limits it: 10,000
// levels are read, 10,001 refused.
TEST_F(Hostile, NestingLimitIsTheOneContainerdApplies) {
  // The config object is the first level.
  const auto nested = [](std::size_t levels) {
    return image_archive(Layout::docker_save, {.edit = [=](Doc d, std::string& text) {
                           if (d == Doc::config) {
                             embed(text, deep_array(levels - 1));
                           }
                         }});
  };
  PrivateTmp tmp(scratch);
  const auto ok = write("ok.tar", nested(10000).bytes());
  const auto deeper = nested(10001);
  const auto refused = write("refused.tar", deeper.bytes());
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, ok, set);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    expect_rejected(refused, mode, deeper.config_entry + ": JSON nested more than 10000 levels deep", tmp.path());
  }
}

// Docker links a layer that it already saved at another place of the chain as
// "../<v1id>/layer.tar": such links, and chains of them, are followed within the
// archive (they were refused as "not in the archive").
TEST_F(Hostile, LinksWithinTheArchiveAreFollowed) {
  const auto docker = scratch / "docker.tar";
  // "top" sits on "base" in app:v1 and alone in b:v1: two v1 ids, one blob.
  ASSERT_TRUE(kload::testing::mkimage(
      {"--layout", "docker-save", "--image", "app:v1=base:2K,top:1K", "--image", "b:v1=top:1K", docker.string()}));
  auto chain = image_archive(Layout::docker_save);
  const auto second = chain.layer_entries[1];
  chain.members.push_back(file("store/blob", chain.at(second).body));
  chain.members.push_back(symlink("store/link", "./blob"));
  chain.replace(second, symlink(second, "../store/../store/link"));
  const auto chained = write("chain.tar", chain.bytes());
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, docker, set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    ASSERT_EQ(set.images.size(), 2u);
    EXPECT_EQ(set.images[1].layers.at(0).blob.digest, set.images[0].layers.at(1).blob.digest);
    EXPECT_TRUE(verify_blobs(set, all_blobs(set), 2).has_value());

    ImageSet chain_set;
    r = read_in(mode, chained, chain_set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    const auto* blob = chain_set.find(*util::Digest::parse(sha(chain.layer_bodies[1])));
    ASSERT_NE(blob, nullptr);
    EXPECT_EQ(blob->where.entry, "store/blob");
    auto v = verify_blobs(chain_set, all_blobs(chain_set), 2);
    EXPECT_TRUE(v.has_value()) << v.error().message;
    EXPECT_EQ(inspect(mode, chained).exit_code, 0);
  }
}

// A header size a little short keeps the framing: in place the layer is indexed with
// that size, and only hashing -- `inspect --verify`, or the proof every blob passes
// before it is sent -- finds it; streamed, it is hashed on the way and refused.
TEST_F(Hostile, SizeShortWithinTheLastBlockIsCaughtByHashing) {
  auto a = image_archive(Layout::docker_save, {.layer_size = 300});
  const auto layer = a.layer_entries[0];
  a.at(layer).size_field = octal_field(200);
  const auto archive = write("short.tar", a.bytes());
  const auto read_bytes = a.layer_bodies[0].substr(0, 200);
  const auto diff_id = sha(a.layer_bodies[0]);
  PrivateTmp tmp(scratch);

  ImageSet set;
  auto r = read_archive(archive.string(), set);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(set.images.at(0).layers.at(0).blob.size, 200u);
  auto v = verify_blobs(set, all_blobs(set), 2);
  ASSERT_FALSE(v.has_value()) << "a blob whose bytes are not its digest passed";
  EXPECT_NE(v.error().message.find(layer), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find(sha(read_bytes)), std::string::npos) << v.error().message;
  const auto cli = inspect(Mode::file, archive, {"--verify"});
  EXPECT_EQ(cli.exit_code, 2) << cli.err;
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;
  EXPECT_TRUE(cli.err.starts_with("kload: error: " + archive.string() + ": " + layer + ": ")) << cli.err;

  expect_rejected(
      archive, Mode::stdin_pipe,
      fmt::format("{}: layer bytes hash to {} but the config's diff_id is {}", layer, sha(read_bytes), diff_id),
      tmp.path());
}

// A top-level document over the metadata limit that nothing uses is ignored, in place
// as when streamed (in place it was refused); one that is used is refused either way.
TEST_F(Hostile, UnusedOversizedDocumentIsIgnoredWhetherStreamedOrNot) {
  auto a = image_archive(Layout::docker_save);
  a.at("repositories").body = R"({"app":{"v1":")" + std::string(3000, 'x') + R"("}})";
  const auto archive = write("big-repositories.tar", a.bytes());
  const ReadLimits limits{.max_metadata_bytes = 2000};
  ASSERT_LT(a.at("manifest.json").body.size(), 2000u);
  ASSERT_LT(a.config.size(), 2000u);
  auto used = a;
  used.at("manifest.json").body += std::string(3000, ' ');
  const auto used_archive = write("big-manifest.tar", used.bytes());
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, archive, set, limits);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    ImageSet refused;
    r = read_in(mode, used_archive, refused, limits);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().message,
              fmt::format("{}: manifest.json: {} bytes is too large for a metadata document (limit 2000)",
                          shown(mode, used_archive), used.at("manifest.json").body.size()));
  }
}

// ---------------------------------------------------------------------------------
// Documents read as containerd's Go decoder reads them (issue #11 item 2)

// Replaces the first `from` in `text` by `to`; the test fails when it is absent.
void replace_once(std::string& text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << "no \"" << from << "\" in " << text;
  text.replace(at, from.size(), to);
}

// A second image config for the same layers as image_archive's default one, for
// another platform: what a hostile document may name instead of the first.
std::string other_config(int layers = 2) {
  json diff_ids = json::array();
  for (int i = 0; i < layers; ++i) {
    diff_ids.push_back(sha(fmt::format("layer {}\n", i)));
  }
  return json{{"architecture", "arm64"},
              {"os", "linux"},
              {"config", {{"Cmd", {"/bin/other"}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
      .dump();
}

class GoDecoding : public Hostile {
protected:
  // Reads `bytes` as a file and from stdin; both must succeed with one image, the same.
  Image read_one(const ImageArchive& a, ImageSet* out = nullptr) {
    const auto archive = write("go-json.tar", a.bytes());
    std::optional<Image> first;
    for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
      SCOPED_TRACE(mode_name(mode));
      ImageSet set;
      auto r = read_in(mode, archive, set);
      EXPECT_TRUE(r.has_value()) << r.error().message;
      if (!r || set.images.size() != 1) {
        ADD_FAILURE() << "expected one image, got " << set.images.size();
        return {};
      }
      if (first) {
        EXPECT_EQ(set.images[0].id, first->id);
        EXPECT_EQ(set.images[0].manifest.digest, first->manifest.digest);
      } else {
        first = set.images[0];
        if (out != nullptr) {
          *out = std::move(set);
        }
      }
    }
    return *first;
  }
};

// manifest.json naming "Config" and then "config": containerd's importer, like `docker
// load`, takes the last; kload took "Config", so it reported and verified one image
// while containerd stored another.
TEST_F(GoDecoding, DockerManifestConfigNamedTwiceTakesTheLast) {
  const auto other = other_config();
  auto a = image_archive(Layout::docker_save, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::manifest_json) {
                             replace_once(text, "}]", R"(,"config":")" + sha_hex(other) + R"(.json"}])");
                           }
                         }});
  a.members.push_back(file(sha_hex(other) + ".json", other));
  const auto image = read_one(a);
  EXPECT_EQ(image.id.str(), sha(other));
  EXPECT_EQ(image.platform.architecture, "arm64");
}

// An OCI manifest whose config descriptor is named "config" and then "Config", and
// whose digest is named "digeſt" (long s) in the second: Go decodes both objects into
// one descriptor, the second's digest winning.
TEST_F(GoDecoding, OciManifestConfigDescriptorNamedTwiceMergesAsGoDoes) {
  const auto other = other_config();
  auto a = image_archive(Layout::oci, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::manifest) {
                             replace_once(text, R"("layers":)",
                                          "\"Config\":{\"dige\u017Ft\":\"" + sha(other) + "\",\"size\":" +
                                              std::to_string(other.size()) + "},\"layers\":");
                           }
                         }});
  a.members.push_back(file("blobs/sha256/" + sha_hex(other), other));
  const auto image = read_one(a);
  EXPECT_EQ(image.id.str(), sha(other));
  EXPECT_EQ(image.config.media_type, media_type::oci_config) << "kept from the first object";
  EXPECT_EQ(image.platform.architecture, "arm64");
}

// An image config naming "rootfs" and then "RootFS": the diff_ids are the last one's.
TEST_F(GoDecoding, ImageConfigRootfsNamedTwiceTakesTheLast) {
  for (const Layout layout : {Layout::docker_save, Layout::oci}) {
    SCOPED_TRACE(layout_name(layout));
    auto a = image_archive(layout, {.edit = [&](Doc d, std::string& text) {
                             if (d == Doc::config) {
                               replace_once(text, R"("rootfs":)",
                                            R"("rootfs":{"type":"layers","diff_ids":[")" + sha("bogus") +
                                                R"("]},"RootFS":)");
                             }
                           }});
    const auto image = read_one(a);
    ASSERT_EQ(image.layers.size(), 2u);
    EXPECT_EQ(image.layers[1].diff_id.str(), sha("layer 1\n"));
  }
}

// index.json naming a manifest by "digest" and then "Digest": the second is the image.
TEST_F(GoDecoding, IndexDescriptorDigestNamedTwiceTakesTheLast) {
  std::string first_manifest;
  auto a = image_archive(Layout::oci, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::manifest) {
                             first_manifest = text;
                           }
                         }});
  // The second manifest: the same, with the other config.
  const auto other = other_config();
  auto second = first_manifest;
  replace_once(second, sha(a.config), sha(other));
  replace_once(second, R"("size":)" + std::to_string(a.config.size()), R"("size":)" + std::to_string(other.size()));
  a.members.push_back(file("blobs/sha256/" + sha_hex(other), other));
  a.members.push_back(file("blobs/sha256/" + sha_hex(second), second));
  auto& index = a.at("index.json").body;
  replace_once(index, R"("size":)" + std::to_string(first_manifest.size()),
               R"("size":)" + std::to_string(second.size()) + R"(,"Digest":")" + sha(second) + "\"");
  const auto image = read_one(a);
  EXPECT_EQ(image.manifest.digest.str(), sha(second));
  EXPECT_EQ(image.id.str(), sha(other));
  EXPECT_EQ(image.names, std::vector<std::string>{"docker.io/library/app:v1"});
}

// Item 6: a docker-save config whose file name is not the digest of its bytes loads,
// identified by its bytes as containerd and `docker load` identify it (it was refused),
// with a warning naming both digests.
TEST_F(GoDecoding, DockerConfigNamedByAnotherDigestIsIdentifiedByItsBytes) {
  const auto wrong = sha_hex("not the config");
  auto a = image_archive(Layout::docker_save, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::manifest_json) {
                             auto j = json::parse(text);
                             j[0]["Config"] = wrong + ".json";
                             text = j.dump();
                           }
                         }});
  a.at(a.config_entry).name = wrong + ".json";
  ImageSet set;
  const auto image = read_one(a, &set);
  EXPECT_EQ(image.id.str(), sha(a.config));
  EXPECT_EQ(image.config.size, a.config.size());
  ASSERT_EQ(set.warnings.size(), 1u);
  EXPECT_NE(set.warnings[0].find("config bytes hash to " + sha(a.config)), std::string::npos) << set.warnings[0];
  const auto* blob = set.find(image.id);
  ASSERT_NE(blob, nullptr);
  EXPECT_EQ(blob->where.entry, wrong + ".json");
}

// Item 6: index.json naming nothing beside a manifest.json naming the image: read as
// `docker load` reads it (kload found no image).
TEST_F(GoDecoding, EmptyIndexBesideManifestJsonIsReadAsDockerSave) {
  for (const std::string index : {R"({"schemaVersion":2,"manifests":[]})", R"({"schemaVersion":2})"}) {
    SCOPED_TRACE(index);
    auto a = image_archive(Layout::docker_save);
    a.members.push_back(file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
    a.members.push_back(file("index.json", index));
    const auto image = read_one(a);
    EXPECT_EQ(image.id.str(), sha(a.config));
    EXPECT_EQ(image.format, SourceFormat::docker_archive);
    EXPECT_EQ(image.names, std::vector<std::string>{"docker.io/library/app:v1"});
  }
}

// Item 11: a manifest.json of 100 entries naming one config is read, hashed and parsed
// once (it was once per entry: 28 s for a 15 MiB config); the count, not a timer.
TEST_F(GoDecoding, OneConfigNamedByManyEntriesIsParsedOnce) {
  auto a = image_archive(Layout::docker_save, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::manifest_json) {
                             auto j = json::parse(text);
                             for (int i = 0; i < 99; ++i) {
                               auto copy = j[0];
                               copy["RepoTags"] = {fmt::format("app:v{}", i + 2)};
                               j.push_back(copy);
                             }
                             text = j.dump();
                           }
                         }});
  const auto archive = write("many-entries.tar", a.bytes());
  for (const Mode mode : {Mode::file, Mode::stdin_pipe}) {
    SCOPED_TRACE(mode_name(mode));
    ImageSet set;
    auto r = read_in(mode, archive, set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->documents_parsed, 2u) << "manifest.json and the config, once each";
    ASSERT_EQ(set.images.size(), 1u);
    EXPECT_EQ(set.images[0].names.size(), 100u);
  }
}

// Item 11: an OCI index naming one manifest 100 times parses it and its config once.
TEST_F(GoDecoding, OneManifestNamedByManyIndexEntriesIsParsedOnce) {
  auto a = image_archive(Layout::oci, {.edit = [&](Doc d, std::string& text) {
                           if (d == Doc::index_json) {
                             auto j = json::parse(text);
                             for (int i = 0; i < 99; ++i) {
                               auto copy = j["manifests"][0];
                               copy["annotations"]["io.containerd.image.name"] =
                                   fmt::format("docker.io/library/app:v{}", i + 2);
                               j["manifests"].push_back(copy);
                             }
                             text = j.dump();
                           }
                         }});
  const auto archive = write("many-index-entries.tar", a.bytes());
  ImageSet set;
  auto r = read_archive(archive.string(), set);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->documents_parsed, 3u) << "index.json, the manifest and the config, once each";
  ASSERT_EQ(set.images.size(), 1u);
  EXPECT_EQ(set.images[0].names.size(), 100u);
}

// Item 11: the default layer limit is exact: 500 layers are read, 501 refused in one line.
TEST_F(GoDecoding, LayerLimitIsExact) {
  PrivateTmp tmp(scratch);
  for (const Layout layout : {Layout::docker_save, Layout::oci}) {
    SCOPED_TRACE(layout_name(layout));
    ImageSet set;
    auto r = read_archive(write("500.tar", image_archive(layout, {.layers = 500}).bytes()).string(), set);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(set.images.at(0).layers.size(), 500u);
    const auto a = image_archive(layout, {.layers = 501});
    const std::string where =
        layout == Layout::docker_save ? "manifest.json[0]: lists" : a.manifest_entry + ": manifest lists";
    expect_rejected(write("501.tar", a.bytes()), Mode::file,
                    where + " 501 layers; kload refuses more than 500 (overlayfs stacks at most 500)", tmp.path());
  }
}

// What containerd would refuse, or what Go versions decode differently, is refused
// before anything is sent, in one line naming the document.
struct GoRefusal {
  std::string name;
  Layout layout;
  Doc doc;
  std::string from;
  std::string to;
  std::string what; // after "<entry>: "
};

void PrintTo(const GoRefusal& c, std::ostream* os) {
  *os << c.name;
}

class GoJsonRefused : public GoDecoding, public ::testing::WithParamInterface<GoRefusal> {};

TEST_P(GoJsonRefused, IsRefusedInOneLine) {
  const auto& c = GetParam();
  const auto a = image_archive(c.layout, {.edit = [&](Doc d, std::string& text) {
                                 if (d == c.doc) {
                                   if (c.from.empty()) {
                                     text = c.to + text;
                                   } else {
                                     replace_once(text, c.from, c.to);
                                   }
                                 }
                               }});
  const std::string entry = c.doc == Doc::config       ? a.config_entry
                            : c.doc == Doc::manifest   ? a.manifest_entry
                            : c.doc == Doc::index_json ? "index.json"
                                                       : "manifest.json[0]";
  const std::string what = (c.doc == Doc::manifest_json && c.what.starts_with("starts with") ? "manifest.json" : entry) +
                           ": " + c.what;
  PrivateTmp tmp(scratch);
  const auto archive = write("refused.tar", a.bytes());
  expect_rejected(archive, Mode::file, what, tmp.path());
  expect_rejected(archive, Mode::stdin_pipe, what, tmp.path());
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, GoJsonRefused,
    ::testing::Values(
        GoRefusal{"manifest_json_with_a_byte_order_mark", Layout::docker_save, Doc::manifest_json, "", "\xEF\xBB\xBF",
                  "starts with a UTF-8 byte order mark, which Go's encoding/json (and so containerd) refuses"},
        GoRefusal{"oci_layers_named_twice", Layout::oci, Doc::manifest, R"("schemaVersion")",
                  R"("Layers":[{"digest":"sha256:00"}],"schemaVersion")",
                  "field \"layers\": named twice with elements both times; Go would merge the second array into the "
                  "first one's elements"},
        GoRefusal{"oci_layers_named_twice_with_long_s", Layout::oci, Doc::manifest, R"("schemaVersion")",
                  "\"layer\u017F\":[{\"digest\":\"sha256:00\"}],\"schemaVersion\"",
                  "field \"layers\": named twice with elements both times; Go would merge the second array into the "
                  "first one's elements"},
        GoRefusal{"docker_config_key_with_dotless_i", Layout::docker_save, Doc::manifest_json, R"("Layers")",
                  "\"Conf\u0131g\":\"x.json\",\"Layers\"",
                  "field \"Config\": key \"Conf\u0131g\" matches it only in Go 1.21 and later; refusing a document Go "
                  "versions decode differently"},
        GoRefusal{"oci_config_of_an_unsupported_media_type", Layout::oci, Doc::manifest,
                  media_type::oci_config, "application/vnd.example.config.v1+json",
                  "unsupported config media type \"application/vnd.example.config.v1+json\""},
        GoRefusal{"oci_manifest_type_differs_from_its_descriptor", Layout::oci, Doc::manifest,
                  R"("mediaType":")" + std::string(media_type::oci_manifest),
                  R"("mediaType":")" + std::string(media_type::docker_manifest),
                  fmt::format("its mediaType \"{}\" differs from its descriptor's \"{}\"", media_type::docker_manifest,
                              media_type::oci_manifest)},
        GoRefusal{"oci_manifest_with_manifests", Layout::oci, Doc::manifest, R"("schemaVersion")",
                  R"("manifests":null,"schemaVersion")", "a manifest must not have a \"manifests\" field"},
        GoRefusal{"config_diff_ids_not_strings", Layout::docker_save, Doc::config, R"("diff_ids":[)",
                  R"("diff_ids":[null,)", "field \"diff_ids\": expected an array of strings"}),
    [](const auto& info) { return info.param.name; });

// index.json naming a top-level descriptor of a type kload cannot load is refused.
TEST_F(GoDecoding, UnsupportedTopLevelMediaTypeIsRefused) {
  const std::string artifact = "application/vnd.oci.artifact.manifest.v1+json";
  const auto a = image_archive(Layout::oci, {.edit = [&](Doc d, std::string& text) {
                                 if (d == Doc::index_json) {
                                   replace_once(text, media_type::oci_manifest, artifact);
                                 }
                               }});
  PrivateTmp tmp(scratch);
  const auto manifest = a.members[a.index_of(a.manifest_entry)].body;
  expect_rejected(write("artifact.tar", a.bytes()), Mode::file,
                  fmt::format("index.json: unsupported media type \"{}\" for {}", artifact, sha(manifest)), tmp.path());
}

} // namespace
} // namespace kload::format
