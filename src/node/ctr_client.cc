#include "kload/node/ctr_client.h"
#include "kload/node/batch.h"
#include "kload/node/containerd_config.h"
#include "kload/util/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <iterator>
#include <map>
#include <string_view>

namespace kload::node {

namespace {

using util::Digest;
using util::Error;
using util::ErrorKind;
using util::ProcessResult;

// Queries answer in well under a second (measured 40-70 ms); 30 s only catches a node
// that accepted the connection and then hung. Imports get no limit: their duration
// grows with the bytes sent, and ctr's connect timeout still catches a dead node.
constexpr std::chrono::milliseconds query_timeout{30'000};
constexpr std::chrono::milliseconds no_timeout{0};

constexpr std::string_view gc_content_prefix = "containerd.io/gc.ref.content.";

using util::fields_of;
using util::trim;

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// A line as it may appear inside a one-line message, cut at `max` characters.
std::string excerpt(std::string_view line, std::size_t max = 120) {
  std::string out(line.substr(0, max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) {
      c = ' ';
    }
  }
  if (line.size() > max) {
    out += "...";
  }
  return out;
}

// What ctr said last. ctr prints its fatal error as one "ctr: ..." line, possibly after
// logrus lines (`time=... level=info msg="apply failure"`); docker and ssh print their
// own single line instead. Trimmed, never empty unless stderr was.
std::string last_message(std::string_view err) {
  std::string_view last;
  std::string_view last_ctr;
  for (const auto line : lines_of(err)) {
    const auto t = trim(line);
    if (t.empty()) {
      continue;
    }
    last = t;
    if (t.starts_with("ctr: ")) {
      last_ctr = t;
    }
  }
  // ctr's messages chain every cause ("failed to extract layer ...: failed to get
  // reader ...: content digest ...: not found"); keep them whole unless absurd.
  return excerpt(last_ctr.empty() ? last : last_ctr, 1000);
}

bool has_ctr_message(std::string_view err) {
  for (const auto line : lines_of(err)) {
    if (trim(line).starts_with("ctr: ")) {
      return true;
    }
  }
  return false;
}

// The node could not be reached at all, as opposed to a ctr command that failed.
bool unreachable(const NodeUri& uri, const ProcessResult& r) {
  // ctr's gRPC dial: no socket, nobody listening, permission denied, connect timeout.
  if (r.err.find("failed to dial \"") != std::string::npos) {
    return true;
  }
  switch (uri.kind) {
  case TransportKind::containerd_socket:
    return false;
  case TransportKind::docker:
    // "No such container", "is not running", or no docker daemon at all.
    return r.err.find("Error response from daemon:") != std::string::npos ||
           r.err.find("Cannot connect to the Docker daemon") != std::string::npos;
  case TransportKind::podman:
    // Podman exits 125 for its own failures ("no container with name or ID"); a stopped
    // container is "container state improper", with exit status 255.
    return r.exit_code == 125 || r.err.find("container state improper") != std::string::npos;
  case TransportKind::ssh:
    // ssh reserves 255 for its own failures (resolve, connect, auth).
    return r.exit_code == 255;
  }
  return false;
}

std::string node_prefix(const Transport& t) { return "node " + t.uri().display(); }

// "node NAME: DOING: WHY", or "node NAME: not reachable: WHY".
Error failure(const Transport& t, const std::string& doing, const ProcessResult& r) {
  if (r.timed_out) {
    return Error{ErrorKind::node, node_prefix(t) + ": " + doing + ": no answer within " +
                                      std::to_string(query_timeout.count() / 1000) + " s"};
  }
  std::string why = last_message(r.err);
  if (why.empty()) {
    why = r.signal != 0 ? "ctr killed by signal " + std::to_string(r.signal)
                        : "ctr exited with status " + std::to_string(r.exit_code);
  }
  if (unreachable(t.uri(), r)) {
    return Error{ErrorKind::node, node_prefix(t) + ": not reachable: " + why};
  }
  return Error{ErrorKind::node, node_prefix(t) + ": " + doing + ": " + why};
}

std::unexpected<Error> unparsable(const Transport& t, std::string_view command,
                                  std::size_t line_no, std::string_view line) {
  return util::fail(ErrorKind::node, node_prefix(t) + ": unexpected output from \"ctr " +
                                         std::string(command) + "\" (line " +
                                         std::to_string(line_no) + ": \"" + excerpt(line) +
                                         "\")");
}

enum class Algorithm { sha256, other, invalid };

// containerd can hold non-sha256 content in principle; kload's world is sha256, so such
// rows are skipped rather than treated as garbage.
Algorithm algorithm_of(std::string_view digest) {
  if (digest.starts_with("sha256:")) {
    return Algorithm::sha256;
  }
  const auto colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Algorithm::invalid;
  }
  for (char c : digest.substr(0, colon)) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return Algorithm::invalid;
    }
  }
  return Algorithm::other;
}

// `ctr version`: the "UUID:" line of the "Server:" section (absent before 1.5).
util::Result<std::string> parse_version(const Transport& t, std::string_view out) {
  bool in_server = false;
  std::size_t no = 0;
  for (const auto line : lines_of(out)) {
    ++no;
    const auto l = trim(line);
    if (l == "Server:") {
      in_server = true;
    } else if (in_server && l.starts_with("UUID:")) {
      const auto uuid = trim(l.substr(5));
      if (uuid.empty() || uuid.find_first_of(" \t") != std::string_view::npos) {
        return unparsable(t, "version", no, line);
      }
      return std::string(uuid);
    }
  }
  if (!in_server) {
    return unparsable(t, "version", 1, out.substr(0, out.find('\n')));
  }
  return std::string();
}

// The LABELS cell of `ctr content ls`: "k=v,k=v" or "-". Only containerd's own gc
// references matter; other labels may hold commas in their values
// (distribution.source lists repositories), so pieces that do not start with the gc
// prefix are skipped rather than parsed.
util::Result<void> parse_gc_labels(const Transport& t, const Digest& blob,
                                   std::string_view labels, std::size_t no,
                                   std::string_view line, NodeInventory& inv) {
  std::map<int, Digest> children;
  for (const auto piece : fields_of(labels, ",")) {
    if (!piece.starts_with(gc_content_prefix)) {
      continue;
    }
    const auto eq = piece.find('=');
    if (eq == std::string_view::npos) {
      return unparsable(t, "content ls", no, line);
    }
    const auto key = piece.substr(gc_content_prefix.size(), eq - gc_content_prefix.size());
    const auto value = piece.substr(eq + 1);
    if (key == "config") {
      const auto d = Digest::parse(value);
      if (!d) {
        return unparsable(t, "content ls", no, line);
      }
      inv.manifest_config[blob] = *d;
    } else if (key.starts_with("m.")) {
      const auto index_text = key.substr(2);
      int index = 0;
      const auto [end, ec] =
          std::from_chars(index_text.data(), index_text.data() + index_text.size(), index);
      const auto d = Digest::parse(value);
      if (ec != std::errc() || end != index_text.data() + index_text.size() || index < 0 ||
          !d) {
        return unparsable(t, "content ls", no, line);
      }
      children[index] = *d;
    } else if (key.starts_with("l.")) {
      // A manifest's layers: the cache uses them to know which blobs GC takes when no
      // name points at the manifest any more.
      if (const auto d = Digest::parse(value)) {
        inv.manifest_layers[blob].push_back(*d);
      }
    }
    // Anything newer (referrers, ...) is not needed for planning.
  }
  if (!children.empty()) {
    auto& out = inv.index_children[blob];
    out.clear();
    for (const auto& [index, d] : children) {
      out.push_back(d);
    }
  }
  return {};
}

// `ctr content ls`: "DIGEST\tSIZE\tAGE\tLABELS", tab-padded (AGE holds spaces: "About a
// minute", so only tabs separate cells).
util::Result<void> parse_content_ls(const Transport& t, std::string_view out,
                                    NodeInventory& inv) {
  std::size_t no = 0;
  for (const auto line : lines_of(out)) {
    ++no;
    if (trim(line).empty()) {
      continue;
    }
    const auto cells = fields_of(line, "\t");
    if (no == 1 && !cells.empty() && cells[0] == "DIGEST") {
      continue;
    }
    if (cells.size() < 4) {
      return unparsable(t, "content ls", no, line);
    }
    const auto first = trim(cells[0]);
    switch (algorithm_of(first)) {
    case Algorithm::other:
      continue;
    case Algorithm::invalid:
      return unparsable(t, "content ls", no, line);
    case Algorithm::sha256:
      break;
    }
    const auto blob = Digest::parse(first);
    if (!blob) {
      return unparsable(t, "content ls", no, line);
    }
    inv.blobs.insert(*blob);
    const auto labels = trim(cells.back());
    if (labels != "-") {
      if (auto r = parse_gc_labels(t, *blob, labels, no, line, inv); !r) {
        return std::unexpected(r.error());
      }
    }
  }
  return {};
}

// `ctr images check`: "REF TYPE DIGEST STATUS SIZE UNPACKED" where STATUS is
// "complete (3/3)", "incomplete (2/3)", "unavailable (0/?)" or "error".
util::Result<std::vector<ImageStatus>> parse_images_check(const Transport& t,
                                                         std::string_view out) {
  std::vector<ImageStatus> statuses;
  std::size_t no = 0;
  for (const auto line : lines_of(out)) {
    ++no;
    const auto cols = fields_of(line, " \t");
    if (cols.empty() || (no == 1 && cols[0] == "REF")) {
      continue;
    }
    if (cols.size() < 5) {
      return unparsable(t, "images check", no, line);
    }
    const auto target = Digest::parse(cols[2]);
    if (!target) {
      if (algorithm_of(cols[2]) == Algorithm::other) {
        continue;
      }
      return unparsable(t, "images check", no, line);
    }
    const auto status = cols[3];
    if (status != "complete" && status != "incomplete" && status != "unavailable" &&
        status != "error") {
      return unparsable(t, "images check", no, line);
    }
    statuses.push_back(ImageStatus{std::string(cols[0]), *target, status == "complete"});
  }
  return statuses;
}

// `ctr plugins ls`: "TYPE ID PLATFORMS STATUS": the snapshotters loaded (status ok).
util::Result<std::vector<std::string>> loaded_snapshotters(const Transport& t, std::string_view out) {
  std::vector<std::string> ok;
  std::size_t no = 0;
  for (const auto line : lines_of(out)) {
    ++no;
    const auto cols = fields_of(line, " \t");
    if (cols.empty() || (no == 1 && cols[0] == "TYPE")) {
      continue;
    }
    if (cols.size() < 4) {
      return unparsable(t, "plugins ls", no, line);
    }
    if (cols[0] == "io.containerd.snapshotter.v1" && cols.back() == "ok") {
      ok.emplace_back(cols[1]);
    }
  }
  return ok;
}

// The node's CRI snapshotter is only in its config file, which ctr cannot read; what
// is loaded is the next best thing. overlayfs is every distribution's default; another
// loaded snapshotter (a proxy such as fuse-overlayfs, or btrfs/zfs whose plugins only
// load on their own file system) was set up on purpose; native loads everywhere, so it
// is the last resort.
std::string best_snapshotter(const std::vector<std::string>& ok) {
  const auto has = [&](std::string_view name) {
    return std::find(ok.begin(), ok.end(), name) != ok.end();
  };
  if (has("overlayfs")) {
    return "overlayfs";
  }
  for (const auto& name : ok) {
    if (name != "native") {
      return name;
    }
  }
  return has("native") ? "native" : "overlayfs";
}

// 'image "NAME": already exists': another writer created a name between the
// importer's update and its create.
bool name_taken(std::string_view err) {
  const auto at = err.find("\": already exists");
  return at != std::string_view::npos && err.substr(0, at).rfind("image \"") != std::string_view::npos;
}

// "content digest sha256:<hex>: not found": an import needed a blob that was neither in
// the stream nor on the node.
std::optional<Digest> missing_content(std::string_view err) {
  constexpr std::string_view marker = "content digest sha256:";
  std::optional<Digest> found;
  std::size_t pos = 0;
  while ((pos = err.find(marker, pos)) != std::string_view::npos) {
    const auto hex_at = pos + marker.size() - std::string_view("sha256:").size();
    const auto digest = err.substr(hex_at, 7 + 2 * Digest::size);
    const auto tail = err.substr(hex_at + digest.size());
    if (tail.starts_with(": not found")) {
      if (auto d = Digest::parse(digest)) {
        found = d;
      }
    }
    pos += marker.size();
  }
  return found;
}

// Filter values are quoted so that every character of a ref stays literal.
std::string name_filter(const std::string& name) {
  std::string out = "name==\"";
  for (char c : name) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
  return out;
}

// Only blobs an image reaches are safe from containerd's garbage collector. Any other
// (what a failed import brought, an image removed a moment ago, a bare ingest) can
// be collected between this listing and the import that counts on it: containerd
// 2.x's Transfer API keeps no image record of a failed import, so the blobs that
// arrived in it are of that kind, and a retry planned on them fails again.
void keep_only_reachable_blobs(NodeInventory& inv, const std::vector<ImageStatus>& images) {
  std::unordered_set<Digest> reached;
  std::vector<Digest> todo;
  const auto reach = [&](const Digest& d) {
    if (inv.blobs.contains(d) && reached.insert(d).second) {
      todo.push_back(d);
    }
  };
  for (const auto& image : images) {
    reach(image.target);
  }
  while (!todo.empty()) {
    const Digest d = todo.back();
    todo.pop_back();
    if (auto it = inv.index_children.find(d); it != inv.index_children.end()) {
      std::for_each(it->second.begin(), it->second.end(), reach);
    }
    if (auto it = inv.manifest_config.find(d); it != inv.manifest_config.end()) {
      reach(it->second);
    }
    if (auto it = inv.manifest_layers.find(d); it != inv.manifest_layers.end()) {
      std::for_each(it->second.begin(), it->second.end(), reach);
    }
  }
  inv.blobs = std::move(reached);
}

} // namespace

std::string CtrClient::display() const { return transport_.uri().display(); }

// --- one ctr command: its words, and what its result means ---

namespace {

std::vector<std::string> check_args(const std::vector<std::string>& names) {
  std::vector<std::string> args{"images", "check"};
  if (!names.empty()) {
    args.emplace_back("--");
    for (const auto& name : names) {
      args.push_back(name_filter(name));
    }
  }
  return args;
}

std::vector<std::string> tag_args(const Tag& t) {
  if (t.replace == Replace::no) {
    return {"images", "tag", "--", t.source, t.target};
  }
  return {"images", "tag", "--force", "--", t.source, t.target};
}

std::string tagging(const Tag& t) { return "tagging " + t.source + " as " + t.target; }

std::vector<std::string> remove_args(const std::vector<std::string>& names) {
  std::vector<std::string> args{"images", "rm", "--"};
  args.insert(args.end(), names.begin(), names.end());
  return args;
}

std::string removing(const std::vector<std::string>& names) {
  return names.size() == 1 ? "removing " + names.front() : "removing images";
}

// A command that must succeed: "node NAME: DOING: WHY" otherwise.
util::Result<void> settled(const Transport& t, const ProcessResult& r, const std::string& doing) {
  if (r.exit_code != 0 || r.timed_out) {
    return std::unexpected(failure(t, doing, r));
  }
  return {};
}

// The snapshotter a load imports with, from the probe's `ctr plugins ls`: `named` (the
// URI's, or CRI's from the node's configuration) when loaded there, else the best one
// loaded. A named snapshotter the node has not loaded fails here, before any byte is
// sent, instead of in the import after the whole stream.
util::Result<std::string> chosen_snapshotter(const Transport& t, const std::optional<std::string>& named,
                                             std::string_view origin, const ProcessResult& plugins) {
  if (auto ok = settled(t, plugins, "listing plugins"); !ok) {
    return std::unexpected(ok.error());
  }
  auto loaded = loaded_snapshotters(t, plugins.out);
  if (!loaded) {
    return std::unexpected(loaded.error());
  }
  if (!named) {
    return best_snapshotter(*loaded);
  }
  if (std::find(loaded->begin(), loaded->end(), *named) == loaded->end()) {
    return util::fail(ErrorKind::node,
                      fmt::format("{}: snapshotter \"{}\" ({}) is not loaded there (loaded: {}); give the node URI "
                                  "?snapshotter= with one of those, or load the plugin on the node",
                                  node_prefix(t), *named, origin,
                                  loaded->empty() ? std::string("none") : util::joined(*loaded, ", ")));
  }
  return *named;
}

util::Result<std::vector<ImageStatus>> check_result(const Transport& t, const ProcessResult& r) {
  // check exits 1 when one image cannot be checked ("unable to check unpack" when the
  // default snapshotter is not loaded, a corrupt manifest) but still prints every row;
  // those rows are the answer. Without a table there is nothing to go on.
  if (r.timed_out || (r.exit_code != 0 && !trim(r.out).starts_with("REF"))) {
    return std::unexpected(failure(t, "checking images", r));
  }
  return parse_images_check(t, r.out);
}

util::Result<std::string> version_result(const Transport& t, const ProcessResult& r) {
  if (auto ok = settled(t, r, "asking for its version"); !ok) {
    return std::unexpected(ok.error());
  }
  return parse_version(t, r.out);
}

util::Result<NodeInventory> content_result(const Transport& t, const ProcessResult& r,
                                           const std::vector<ImageStatus>& images) {
  if (auto ok = settled(t, r, "listing content"); !ok) {
    return std::unexpected(ok.error());
  }
  NodeInventory inv;
  if (auto parsed = parse_content_ls(t, r.out, inv); !parsed) {
    return std::unexpected(parsed.error());
  }
  keep_only_reachable_blobs(inv, images);
  return inv;
}

// Whether `command -v zstd` found it: a path and status 0; not found: status 1 (bash)
// or 127 (dash); anything else (a cut batch) says nothing.
std::optional<bool> zstd_result(const ProcessResult& r) {
  if (r.timed_out || r.signal != 0) {
    return std::nullopt;
  }
  if (r.exit_code == 0) {
    return !trim(r.out).empty();
  }
  if (r.exit_code == 1 || r.exit_code == 127) {
    return false;
  }
  return std::nullopt;
}

// CRI's snapshotter from `containerd config dump`, if it ran and says.
std::optional<std::string> dump_result(const ProcessResult& r) {
  if (r.exit_code != 0 || r.timed_out) {
    return std::nullopt;
  }
  return cri_snapshotter(r.out);
}

const std::string importing = "importing";

// A failed import: why, and whether kload can act on it.
ImportError import_failure(const Transport& t, const ProcessResult& r) {
  // A feeder failure kills ctr. When ctr had already failed on its own (it stops
  // reading, so the feeder then sees EPIPE) ctr's message is the cause; when ctr was
  // still reading (or even finished), the feeder's error is.
  const bool ctr_failed = r.exit_code > 0 || has_ctr_message(r.err);
  if (r.feed_error && !ctr_failed) {
    return ImportError{ImportFailure::other, std::nullopt,
                       r.feed_error->with_context(node_prefix(t) + ": " + importing)};
  }
  ImportError error{ImportFailure::other, std::nullopt, failure(t, importing, r)};
  if (auto missing = missing_content(r.err)) {
    error.failure = ImportFailure::missing_content;
    error.missing = missing;
  } else if (name_taken(r.err)) {
    error.failure = ImportFailure::name_taken;
  }
  return error;
}

bool import_ok(const ProcessResult& r) { return r.exit_code == 0 && !r.timed_out && !r.feed_error; }

// containerd 2.x's ctr imports through the Transfer API, which unpacks only into the
// snapshotters its transfer service is configured for (overlayfs unless set up
// otherwise), and refuses any other before it reads the stream. ctr's in-process
// import (--local) unpacks into any snapshotter, as 1.x's ctr always did.
bool needs_local_import(const ProcessResult& r) {
  return r.err.find("no unpack platforms defined") != std::string::npos;
}

// The references `changes` pulls, none when it pulls nothing.
const std::vector<std::string>& pulls(const Changes& changes) {
  static const std::vector<std::string> none;
  return changes.pull != nullptr ? changes.pull->references : none;
}

// The exit status of the UUID check of apply() when the UUID is another.
constexpr int uuid_mismatch = 97;

// The exit status of apply()'s gate when a name is missing, incomplete or elsewhere.
constexpr int not_staged = 98;

// apply()'s gate on the node, run as `sh -c gate_script sh N NAME DIGEST... CHECK...`:
// CHECK (`ctr images check` of the N names) runs, then each NAME must have a row with
// that DIGEST as its target and status complete, else exit not_staged. The table is
// read as parse_images_check reads it: fields split at blanks, REF TYPE DIGEST STATUS
// first. Names and digests hold no blanks, '=' or glob characters (references and
// digests cannot). One line, as every step of a batch is.
constexpr std::string_view gate_script =
    "set -f; n=$1; shift; want=; "
    "while [ \"$n\" -gt 0 ]; do want=\"$want $1=$2\"; shift 2; n=$((n - 1)); done; "
    "out=$(\"$@\"); "
    "for w in $want; do "
    "printf '%s\\n' \"$out\" | { "
    "miss=1; "
    "while read -r ref type target status rest; do "
    "if [ \"$ref\" = \"${w%%=*}\" ] && [ \"$target\" = \"${w#*=}\" ] && [ \"$status\" = complete ]; then miss=0; fi; "
    "done; exit $miss; } || exit 98; "
    "done";
static_assert(not_staged == 98, "gate_script exits 98");

std::vector<std::string> gate_words(const NodeUri& uri, const std::vector<std::pair<std::string, Digest>>& gate) {
  std::vector<std::string> words{"sh", "-c", std::string(gate_script), "sh", std::to_string(gate.size())};
  for (const auto& [name, target] : gate) {
    words.push_back(name);
    words.push_back(target.str());
  }
  const auto check = ctr_words(uri, check_args(gate_names(gate)));
  words.insert(words.end(), check.begin(), check.end());
  return words;
}

// A shell the node lacks: docker exec and ssh say so with 126 or 127.
bool no_shell(const ProcessResult& r) { return r.exit_code == 126 || r.exit_code == 127; }

// A word as -v shows it: bare when a shell would read it as it is, else quoted.
std::string shown_word(const std::string& word) {
  constexpr std::string_view plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%";
  return !word.empty() && word.find_first_not_of(plain) == std::string::npos ? word : util::shell_quote(word);
}

// Runs its arguments (the import) with `zstd -dc` feeding their stdin, and fails
// unless both succeed: a stream cut on the way, or damaged, must fail the import even
// when ctr read a whole tar from what did arrive. POSIX sh has no pipefail (dash has
// none), so each side writes its status to fd 3, which the command substitution
// reads; ctr's own stdout goes on to fd 4, the step's stdout. The import's status
// wins, so its errors read as a plain import's.
// One line, as every word of a batch step is.
constexpr std::string_view unzstd_script =
    "exec 4>&1; "
    "s=$( { { zstd -dcq 3>&- 4>&-; echo \"z$?\" >&3; } | { \"$@\" 3>&- 4>&-; echo \"c$?\" >&3; } >&4; } 3>&1 ); "
    "z=1 c=1; "
    "for w in $s; do case $w in z*) z=${w#z} ;; c*) c=${w#c} ;; esac; done; "
    "[ \"$c\" = 0 ] || exit \"$c\"; "
    "[ \"$z\" = 0 ] || { echo \"zstd -dc exited with status $z: the stream did not arrive whole\" >&2; exit 1; }";

// `words` (ctr on the node) reading stdin as `wire` says.
std::vector<std::string> decoded_by(WireCompression wire, std::vector<std::string> words) {
  if (wire == WireCompression::none) {
    return words;
  }
  std::vector<std::string> out{"sh", "-c", std::string(unzstd_script), "sh"};
  out.insert(out.end(), std::make_move_iterator(words.begin()), std::make_move_iterator(words.end()));
  return out;
}

// The words of a command on the node as -v shows them: ctr without the options every
// call has (ctr_words'), which would push what differs off a terminal's line; an
// import through zstd as `zstd -dc | ctr ...`.
std::string shown_command(const NodeUri& uri, const std::vector<std::string>& words) {
  if (words.size() > 4 && words[0] == "sh" && words[2] == unzstd_script) {
    return "zstd -dc | " + shown_command(uri, std::vector<std::string>(words.begin() + 4, words.end()));
  }
  if (words.size() > 5 && words[0] == "sh" && words[2] == gate_script) {
    const auto check = words.begin() + 5 + 2 * std::stoll(words[4]);
    return "gate: " + shown_command(uri, std::vector<std::string>(check, words.end()));
  }
  const auto prefix = ctr_words(uri, {});
  auto word = words.begin();
  std::vector<std::string> shown;
  if (words.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), words.begin())) {
    shown.emplace_back("ctr");
    word += static_cast<std::ptrdiff_t>(prefix.size());
  }
  for (; word != words.end(); ++word) {
    shown.push_back(shown_word(*word));
  }
  return util::joined(shown);
}

std::string outcome_text(const ProcessResult& r) {
  if (r.timed_out) {
    return "timed out";
  }
  return r.signal != 0 ? "killed by signal " + std::to_string(r.signal) : "exit " + std::to_string(r.exit_code);
}

// How each step of a batch ended, as far as the node said: "exit 0, 0, 1".
std::string batch_outcome(std::string_view marker, const std::vector<BatchStep>& steps, const ProcessResult& whole) {
  const auto results = split_batch(marker, steps, whole);
  if (!results) {
    return outcome_text(whole);
  }
  std::vector<std::string> each;
  bool plain = true;
  for (const auto& r : *results) {
    each.push_back(outcome_text(r));
    plain = plain && !r.timed_out && r.signal == 0;
  }
  if (plain) {
    for (auto& e : each) {
      e.erase(0, std::string_view("exit ").size());
    }
    return "exit " + util::joined(each, ", ");
  }
  return util::joined(each, ", ");
}

} // namespace

std::vector<std::string> CtrClient::import_args(const std::string& snapshotter) const {
  // No --digests: it adds an "import-DATE@sha256:..." image for every manifest, which
  // nothing removes and which keeps pointing at a broken image when unpack fails.
  std::vector<std::string> args{"images", "import", "--snapshotter", snapshotter};
  if (local_import_) {
    args.emplace_back("--local");
  }
  args.emplace_back("-");
  return args;
}

std::vector<std::string> CtrClient::pull_args(const std::string& reference, const std::string& snapshotter,
                                              PlainHttp plain_http) const {
  std::vector<std::string> args{"images", "pull", "--snapshotter", snapshotter};
  if (plain_http == PlainHttp::yes) {
    args.emplace_back("--plain-http");
  }
  if (local_import_) {
    args.emplace_back("--local");  // as for imports: the Transfer API refused the snapshotter
  }
  args.emplace_back("--");
  args.push_back(reference);
  return args;
}

// --- processes ---

util::Result<ProcessResult> CtrClient::on_node(const std::string& shown,
                                               const std::function<util::Result<ProcessResult>()>& run,
                                               const std::function<std::string(const ProcessResult&)>& outcome) {
  ++calls_;
  const auto start = std::chrono::steady_clock::now();
  auto r = run();
  if (log_) {
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    log_(NodeRun{display(), shown, took, r ? outcome(*r) : "not started: " + r.error().message});
  }
  return r;
}

util::Result<ProcessResult> CtrClient::ctr(const std::vector<std::string>& args, const util::StdinFeeder& feed,
                                           std::chrono::milliseconds timeout) {
  return on_node(shown_command(transport_.uri(), ctr_words(transport_.uri(), args)),
                 [&] { return transport_.ctr(args, feed, timeout); }, outcome_text);
}

// A query that must succeed: "node NAME: DOING: WHY" otherwise.
util::Result<ProcessResult> CtrClient::query(const std::vector<std::string>& args, const std::string& doing) {
  auto r = ctr(args, {}, query_timeout);
  if (!r) {
    return std::unexpected(r.error().with_context(node_prefix(transport_) + ": " + doing));
  }
  if (auto ok = settled(transport_, *r, doing); !ok) {
    return std::unexpected(ok.error());
  }
  return r;
}

util::Result<std::vector<ProcessResult>> CtrClient::batch(const std::vector<BatchStep>& steps,
                                                          const util::StdinFeeder& feed,
                                                          std::chrono::milliseconds timeout) {
  if (!has_shell_) {
    return one_by_one(steps, feed, timeout);
  }
  const auto marker = batch_marker();
  std::vector<std::string> shown;
  for (const auto& step : steps) {
    shown.push_back(shown_command(transport_.uri(), step.words));
  }
  auto whole = on_node(
      util::joined(shown, "; "), [&] { return transport_.shell(batch_script(marker, steps), feed, timeout); },
      [&](const ProcessResult& r) { return batch_outcome(marker, steps, r); });
  if (!whole) {
    return std::unexpected(whole.error());
  }
  if (auto results = split_batch(marker, steps, *whole)) {
    return std::move(*results);
  }
  if (no_shell(*whole)) {
    has_shell_ = false;
    return one_by_one(steps, feed, timeout);
  }
  return std::vector<ProcessResult>{std::move(*whole)};  // the first step's failure
}

util::Result<std::vector<ProcessResult>> CtrClient::one_by_one(const std::vector<BatchStep>& steps,
                                                               const util::StdinFeeder& feed,
                                                               std::chrono::milliseconds timeout) {
  std::vector<ProcessResult> results;
  for (const auto& step : steps) {
    auto r = on_node(
        shown_command(transport_.uri(), step.words),
        [&] { return transport_.run(step.words, step.reads_stdin ? feed : util::StdinFeeder{}, timeout); },
        outcome_text);
    if (!r) {
      return std::unexpected(r.error());
    }
    results.push_back(std::move(*r));
    if (results.back().exit_code != 0 && step.stop_on_failure) {
      break;
    }
  }
  return results;
}

// --- the steps one by one ---

util::Result<std::string> CtrClient::server_uuid() {
  auto r = ctr({"version"}, {}, query_timeout);
  if (!r) {
    return std::unexpected(r.error().with_context(node_prefix(transport_) + ": asking for its version"));
  }
  return version_result(transport_, *r);
}

util::Result<std::string> CtrClient::snapshotter() {
  if (!transport_.uri().snapshotter.empty()) {
    return transport_.uri().snapshotter;
  }
  // kind's way: CRI's snapshotter from the node's configuration, so that CRI finds
  // the image unpacked where it looks. Only where the node's own files are in reach;
  // a node whose `containerd` is not on PATH, or that runs without CRI, falls back.
  if (reaches_node_host(transport_.uri())) {
    const std::vector<std::string> words{"containerd", "config", "dump"};
    auto dump = on_node(
        shown_command(transport_.uri(), words), [&] { return transport_.run(words, {}, query_timeout); },
        outcome_text);
    if (dump) {
      if (auto snap = dump_result(*dump)) {
        return *snap;
      }
    }
  }
  return snapshotter_from_plugins();
}

util::Result<std::string> CtrClient::snapshotter_from_plugins() {
  auto r = query({"plugins", "ls"}, "listing plugins");
  if (!r) {
    return std::unexpected(r.error());
  }
  auto loaded = loaded_snapshotters(transport_, r->out);
  if (!loaded) {
    return std::unexpected(loaded.error());
  }
  return best_snapshotter(*loaded);
}

util::Result<NodeInventory> CtrClient::inventory(const std::vector<ImageStatus>& images) {
  auto r = ctr({"content", "ls"}, {}, query_timeout);
  if (!r) {
    return std::unexpected(r.error().with_context(node_prefix(transport_) + ": listing content"));
  }
  return content_result(transport_, *r, images);
}

util::Result<std::vector<ImageStatus>> CtrClient::check(const std::vector<std::string>& names) {
  auto r = ctr(check_args(names), {}, query_timeout);
  if (!r) {
    return std::unexpected(r.error().with_context(node_prefix(transport_) + ": checking images"));
  }
  return check_result(transport_, *r);
}

std::expected<void, ImportError> CtrClient::import(const util::StdinFeeder& feed,
                                                   const std::string& snapshotter) {
  auto r = ctr(import_args(snapshotter), feed, no_timeout);
  if (!r) {
    return std::unexpected(ImportError{ImportFailure::other, std::nullopt,
                                       r.error().with_context(node_prefix(transport_) + ": " + importing)});
  }
  if (import_ok(*r)) {
    return {};
  }
  if (!local_import_ && needs_local_import(*r)) {
    local_import_ = true;
    return import(feed, snapshotter);
  }
  return std::unexpected(import_failure(transport_, *r));
}

util::Result<void> CtrClient::pull(const std::string& reference, const std::string& snapshotter,
                                   PlainHttp plain_http) {
  auto r = ctr(pull_args(reference, snapshotter, plain_http), {}, no_timeout);
  if (!r) {
    return std::unexpected(r.error().with_context(node_prefix(transport_) + ": pulling " + reference));
  }
  if (r->exit_code != 0 && !local_import_ && needs_local_import(*r)) {
    local_import_ = true;
    return pull(reference, snapshotter, plain_http);
  }
  return settled(transport_, *r, "pulling " + reference);
}

util::Result<void> CtrClient::tag(const Tag& t) {
  auto r = query(tag_args(t), tagging(t));
  if (!r) {
    return std::unexpected(r.error());
  }
  return {};
}

util::Result<void> CtrClient::remove(const std::vector<std::string>& names) {
  if (names.empty()) {
    return {};
  }
  auto r = query(remove_args(names), removing(names));
  if (!r) {
    return std::unexpected(r.error());
  }
  return {};
}

// --- the round trips of a load: several steps in one process ---

util::Result<Probe> CtrClient::probe(const ProbeRequest& want) {
  const auto& uri = transport_.uri();
  const bool dump = want.snapshotter && uri.snapshotter.empty() && reaches_node_host(uri);
  // Queries that each answer on their own: they run at the same time.
  std::vector<BatchStep> steps{query_step(ctr_words(uri, check_args({})))};
  if (want.uuid) {
    steps.push_back(query_step(ctr_words(uri, {"version"})));
  }
  if (want.inventory) {
    steps.push_back(query_step(ctr_words(uri, {"content", "ls"})));
  }
  if (dump) {
    steps.push_back(query_step({"containerd", "config", "dump"}));
  }
  if (want.snapshotter) {
    steps.push_back(query_step(ctr_words(uri, {"plugins", "ls"})));
  }
  if (want.zstd) {
    steps.push_back(query_step({"command", "-v", "zstd"}));
  }
  auto results = batch(steps, {}, query_timeout);
  if (!results) {
    return std::unexpected(results.error().with_context(node_prefix(transport_) + ": checking images"));
  }
  StepResults result(*results);
  Probe p;
  auto images = check_result(transport_, result.next());
  if (!images) {
    return std::unexpected(images.error());
  }
  p.images = std::move(*images);
  if (want.uuid) {
    auto uuid = version_result(transport_, result.next());
    if (!uuid) {
      return std::unexpected(uuid.error());
    }
    p.uuid = std::move(*uuid);
  }
  if (want.inventory) {
    auto inv = content_result(transport_, result.next(), p.images);
    if (!inv) {
      return std::unexpected(inv.error());
    }
    p.inventory = std::move(*inv);
  }
  if (want.snapshotter) {
    std::optional<std::string> named;
    std::string origin = "from the node URI";
    if (!uri.snapshotter.empty()) {
      named = uri.snapshotter;
    } else if (dump) {
      named = dump_result(result.next());
      origin = "CRI's, from containerd config dump";
    }
    auto snap = chosen_snapshotter(transport_, named, origin, result.next());
    if (!snap) {
      return std::unexpected(snap.error());
    }
    p.snapshotter = std::move(*snap);
  }
  if (want.zstd) {
    p.zstd = zstd_result(result.next());
  }
  return p;
}

std::expected<std::vector<ImageStatus>, ChangeError> CtrClient::apply(const Changes& changes) {
  using Step = ChangeError::Step;
  const auto& uri = transport_.uri();
  std::vector<BatchStep> steps;
  if (!changes.expect_uuid.empty()) {
    // The steps after it run only on the node planned for: `ctr version` must show
    // the UUID, else the step ends with uuid_mismatch.
    std::string version;
    for (const auto& w : ctr_words(uri, {"version"})) {
      version += util::shell_quote(w) + " ";
    }
    steps.push_back({{"sh", "-c",
                      "v=$(" + version + ") || exit; case $v in *\"UUID: $1\"*) exit 0 ;; esac; exit " +
                          std::to_string(uuid_mismatch),
                      "sh", changes.expect_uuid},
                     false,
                     true});
  }
  if (changes.import != nullptr) {
    steps.push_back({decoded_by(changes.wire, ctr_words(uri, import_args(changes.snapshotter))), true, true});
  }
  for (const auto& reference : pulls(changes)) {
    steps.push_back({ctr_words(uri, pull_args(reference, changes.snapshotter, changes.pull->plain_http)), false, true});
  }
  if (!changes.gate.empty()) {
    steps.push_back({gate_words(uri, changes.gate), false, true});
  }
  for (const auto& t : changes.tags) {
    steps.push_back({ctr_words(uri, tag_args(t)), false, true});
  }
  // Once the names are set, dropping the staging names and checking the final ones
  // answer on their own where they share no name: they run at the same time (a failed
  // removal still fails the changes).
  const bool apart = std::ranges::none_of(
      changes.check, [&](const auto& name) { return std::ranges::find(changes.remove, name) != changes.remove.end(); });
  if (!changes.remove.empty()) {
    steps.push_back({ctr_words(uri, remove_args(changes.remove)), false, !apart, apart});
  }
  if (!changes.check.empty()) {
    steps.push_back({ctr_words(uri, check_args(changes.check)), false, false, apart});
  }
  if (steps.empty()) {
    return std::vector<ImageStatus>{};
  }
  const auto fail = [](Step step, Error e) {
    return std::unexpected(ChangeError{step, ImportError{ImportFailure::other, std::nullopt, std::move(e)}});
  };
  const util::StdinFeeder none;
  // An import or a pull takes as long as its bytes do: only the queries have a deadline.
  const bool moves_bytes = changes.import != nullptr || !pulls(changes).empty();
  auto results = batch(steps, changes.import != nullptr ? *changes.import : none,
                       moves_bytes ? no_timeout : query_timeout);
  if (!results) {
    return fail(changes.import != nullptr ? Step::import : changes.pull != nullptr ? Step::pull : Step::tag,
                results.error().with_context(node_prefix(transport_) + ": " + importing));
  }
  StepResults result(*results);
  if (!changes.expect_uuid.empty()) {
    const auto& r = result.next();
    if (r.exit_code == uuid_mismatch) {
      return fail(Step::node_changed, Error{ErrorKind::node, node_changed_message(display())});
    }
    if (auto ok = settled(transport_, r, "asking for its version"); !ok) {
      return fail(Step::node_changed, ok.error());
    }
  }
  if (changes.import != nullptr) {
    const auto& r = result.next();
    if (!import_ok(r)) {
      if (!local_import_ && needs_local_import(r)) {
        local_import_ = true;
        return apply(changes);
      }
      return std::unexpected(ChangeError{Step::import, import_failure(transport_, r)});
    }
  }
  for (const auto& reference : pulls(changes)) {
    const auto& r = result.next();
    if (r.exit_code != 0 && !local_import_ && needs_local_import(r)) {
      local_import_ = true;
      return apply(changes);
    }
    if (auto ok = settled(transport_, r, "pulling " + reference); !ok) {
      return fail(Step::pull, ok.error());
    }
  }
  if (!changes.gate.empty()) {
    const auto& r = result.next();
    if (r.exit_code == not_staged) {
      return std::unexpected(ChangeError{Step::gate, ImportError{ImportFailure::missing_content, std::nullopt,
                                                                 Error{ErrorKind::node, node_prefix(transport_) +
                                                                                            ": " + incomplete_import}}});
    }
    if (auto ok = settled(transport_, r, "checking the imported images"); !ok) {
      return fail(Step::gate, ok.error());
    }
  }
  for (const auto& t : changes.tags) {
    if (auto ok = settled(transport_, result.next(), tagging(t)); !ok) {
      return fail(Step::tag, ok.error());
    }
  }
  if (!changes.remove.empty()) {
    if (auto ok = settled(transport_, result.next(), removing(changes.remove)); !ok) {
      return fail(Step::remove, ok.error());
    }
  }
  if (changes.check.empty()) {
    return std::vector<ImageStatus>{};
  }
  auto statuses = check_result(transport_, result.next());
  if (!statuses) {
    return fail(Step::check, statuses.error());
  }
  return std::move(*statuses);
}

} // namespace kload::node
