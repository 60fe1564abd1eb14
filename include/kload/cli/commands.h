#pragma once
// The sub-commands. Each returns an exit code after printing its own results; errors
// are returned to run(), which prints them.

#include "kload/cache/cache.h"
#include "kload/format/model.h"
#include "kload/load/loader.h"
#include "kload/load/node_images.h"
#include "kload/node/ctr_client.h"
#include "kload/node/node_uri.h"
#include "kload/registry/http.h"
#include "kload/registry/push.h"
#include "kload/util/error.h"
#include "kload/util/process.h"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace kload::cli {

class Console;
struct Config;

struct InspectOptions {
  std::vector<std::string> archives;
  bool verify = false;
  bool json = false;
  std::optional<format::Platform> platform;
  unsigned jobs = 1;
};

// `kload inspect`: prints every image of the set (text or JSON) with warnings.
// Error (bad_input): unreadable archive, verification failure, a requested platform
// that is absent or unavailable.
util::Result<int> inspect(const InspectOptions& options, Console& console);

// Whether a load warns about images that will crash-loop (format/run_lint.h).
enum class Lint { on, off };

// Whether --name may name a cluster of the config file (cli/config.h), or only a kind
// cluster (kload as kind).
enum class ConfigUse { read, ignored };

// A load through a registry: --via and what goes with it (image-archive and
// docker-image only).
struct ViaOptions {
  std::string registry;              // --via HOST[:PORT][/PREFIX]; empty: straight to the nodes
  std::string pull_address;          // --via-pull-address HOST[:PORT]; empty: --via's HOST[:PORT]
  bool plain_http = false;           // --plain-http: kload's push and the nodes' pulls
  std::optional<std::string> creds;  // --creds USER:PASSWORD, for the push
};

// What every command that talks to nodes takes: which nodes, how, and the cache (ls,
// rm and prune register only what they use: no --platform, and ls no cache).
struct TargetOptions {
  std::vector<std::string> nodes;       // --node URIs; when empty, the nodes of the kind cluster `cluster`
  std::string cluster;                  // --name: a kind cluster (empty: "kind" when no node URI is given)
  std::vector<std::string> kind_nodes;  // --nodes: only these node containers of the cluster
  std::optional<format::Platform> platform;
  bool dry_run = false;
  bool json = false;
  unsigned jobs = 1;
  std::string cache_dir;  // empty: the default location
  bool no_cache = false;
  Lint lint = Lint::on;                // --no-lint: off
  // --wire-compression: zstd compresses the stream to ssh nodes that have zstd
  node::WireCompression wire = node::WireCompression::zstd;
  std::string config;                  // --config FILE (empty: $KLOAD_CONFIG or the default, see cli/config.h)
  ConfigUse config_use = ConfigUse::read;
  load::Observer* observer = nullptr;  // when set, told what happens instead of the console (kload as kind); not owned
  ViaOptions via;
};

// How kload pushes to one registry: the push's options and the HTTP client, set up
// once for `kload push` and for a load `--via` alike (registry_session).
struct RegistrySession {
  registry::PushOptions push;
  std::unique_ptr<registry::HttpClient> http;
};

// The session for `address` over `scheme`: credentials from `creds`, else the
// environment, else the docker config (registry::find_credentials); `jobs` requests at
// once; KLOAD_PUSH_CHUNK_BYTES, when set, as the monolithic/chunked threshold; a client
// trusting `ca_file`, else Docker's certs.d CA of the host (registry::ca_file_for).
// Error: as registry::find_credentials.
util::Result<RegistrySession> registry_session(const registry::RegistryAddress& address, registry::Scheme scheme,
                                               const std::optional<std::string>& creds, const std::string& ca_file,
                                               unsigned jobs);

// A load through a registry, as the command line sets it up: where kload pushes, how,
// and the load's Via (its publish pushes with these). Not movable: Via's publish
// refers to it.
struct ViaSetup {
  registry::RegistryAddress address;  // --via
  RegistrySession session;
  load::Via via;
  ViaSetup() = default;
  ViaSetup(const ViaSetup&) = delete;
  ViaSetup& operator=(const ViaSetup&) = delete;
};

// The nodes of one command, reached and ready to load into. Owns the transports and
// clients the targets point at, and the cache (null when off or unopenable).
struct PreparedTargets {
  std::vector<std::unique_ptr<node::Transport>> transports;
  std::vector<std::unique_ptr<node::CtrClient>> clients;
  std::vector<load::Target> targets;
  std::unique_ptr<cache::Cache> cache;
  std::unique_ptr<ViaSetup> via;  // --via (prepare_via), or nullptr
};

// select_nodes, a transport per node through `runner` (which must outlive the
// result), prepare_via and open_cache. Touches no node. Error (usage): as
// select_nodes and prepare_via.
util::Result<PreparedTargets> prepare_targets(const TargetOptions& options, util::ProcessRunner& runner,
                                              Console& console);

// The registry a load goes through, from --via and what goes with it; nullptr when
// there is no --via. Touches no node and no registry. Error (usage): a bad --via or
// --via-pull-address (HOST[:PORT], no path), a bad --creds, --via-pull-address,
// --plain-http or --creds without --via; bad_input: an unreadable docker config.
util::Result<std::unique_ptr<ViaSetup>> prepare_via(const ViaOptions& options, unsigned jobs);

// Completes `setup` for `images` of `set`: each image's pull reference (its first
// name's repository under the pull address, at its manifest digest) and a publish
// that pushes to the registry (registry::push) and prints one line. `set` must
// outlive the load. Error (bad_input): a name that has no repository there.
util::Result<void> route_via(ViaSetup& setup, format::ImageSet& set, const std::vector<const format::Image*>& images,
                             Console& console);

// The load options of `options`, with `cache` and `via` (nullptr: straight to the nodes).
load::LoadOptions load_options(const TargetOptions& options, cache::Cache* cache, const ViaSetup* via = nullptr);

struct LoadCommandOptions {
  std::vector<std::string> archives;
  std::string name_as;  // --name-as: the name for images without one (empty: they are an error)
  TargetOptions target;
};

// `kload image-archive`: loads the archives' images into every node. Returns as
// print_load_report (0 when every node holds every image, 1 when some node failed).
// Error (io): no temporary space to spool the input in. Error (bad_input/usage),
// before any node is touched: unreadable input, a name that is invalid, in kload's
// staging namespace, given to two images or with a digest not of its manifest, an
// image without a name and no --name-as (see load/image_names.h), bad node URI, a
// kind cluster that cannot be listed or an unknown --nodes name; a blob that does not
// match its digest.
util::Result<int> image_archive(const LoadCommandOptions& options, Console& console);

struct DockerImageOptions {
  std::vector<std::string> images;  // as the user named them: app:dev, registry.example.com/team/app:v1
  TargetOptions target;
  bool watch = false;  // after the load, load again whenever Docker's ID of an image changes
};

// `kload docker-image`: loads images from the local Docker engine. Asks Docker for
// the images' IDs (`docker image inspect`, one call) and each node whether its names
// already hold them (one `ctr images check` per node); only if some node lacks an
// image runs `docker save` once, of the images lacked, and loads the stream into the
// nodes lacking something (decisions in load/docker_plan.h). Returns as
// print_load_report. Error (io): no temporary space for the save. Error (bad_input/usage): docker
// not installed or not running, an image Docker does not have, a name that is not
// one of its tags or lies in kload's staging namespace, a failing or truncated
// `docker save` (nothing is then sent to any node), node selection errors as for
// image_archive.
util::Result<int> docker_image(const DockerImageOptions& options, Console& console);

struct NodeImagesOptions {
  std::vector<std::string> images;  // IMAGE arguments as given: ls shows only these, rm removes them
  TargetOptions target;
  load::Layers layers = load::Layers::left_out;  // ls --layers
};

// `kload ls`: one `ctr images check` per node (never the cache) and a table of every
// name (only `images`, normalised as loads normalise names, when given) with what
// each node holds under it (load/node_images.h, cli/images_view.h), or with `json`
// the kload.ls/v2 document (write_document); with `layers`, the same round trip lists
// each node's content too, and each name's layers follow (cli::layers_text,
// add_layers_json). Returns 0, or 1 when some node could not be asked (its error is
// printed as one line), or 128+signal when cancelled. Error (usage): a name that is no reference, node
// selection errors as for image_archive.
util::Result<int> list_images(const NodeImagesOptions& options, Console& console);

// `kload rm`: removes exactly the names `images` (normalised) from every node, checks
// that they are gone and drops them from the nodes' cache records; a name not on a
// node is reported, not an error; with `json` the kload.rm/v2 document. Returns 0,
// or 1 when some node failed, or 128+signal when cancelled. Error
// (usage): a name that is no reference or in kload's staging namespace, node
// selection errors as for image_archive.
util::Result<int> remove_images(const NodeImagesOptions& options, Console& console);

// `kload prune`: removes from every node the staging names of loads that have ended,
// never a live load's, and forgets the nodes' cache records. Returns 0, or 1 when
// some node failed. Error (usage): node selection errors as for image_archive.
util::Result<int> prune_nodes(const TargetOptions& options, Console& console);

struct PushCommandOptions {
  std::vector<std::string> archives;
  std::string registry;                // --registry HOST[:PORT][/PREFIX]
  bool plain_http = false;
  std::string ca_file;                 // --ca-file FILE (PEM)
  std::string compress = "none";       // --compress none|gzip|zstd
  std::optional<std::string> creds;    // --creds USER:PASSWORD
  std::string platform_text;           // --platform
  bool json = false;
  unsigned jobs = 4;
};

// Registers `kload push` on `app`, its options parsed into `options`; returns it.
CLI::App* add_push_command(CLI::App& app, PushCommandOptions& options);

// `kload push`: pushes the archives' images (every platform of a whole index, else one
// platform per name) to the registry (registry/push.h) and prints a line per image,
// one per index and a summary (with `json`, the kload.push/v1 document on stdout,
// write_document). Returns 0. Error: usage (a bad --registry,
// --creds or --platform), bad_input (unreadable input, an image without a name, a
// blob that does not match its digest, an unreadable docker config), node (the
// registry refused or could not be reached: exit 1).
util::Result<int> push_images(const PushCommandOptions& options, Console& console);

// Where to load: node URIs given one by one, or the nodes of a kind cluster.
struct NodeSelection {
  std::vector<std::string> uris;   // --node; when empty, the kind cluster
  std::string cluster;             // --name; empty: "kind"
  std::vector<std::string> picks;  // --nodes: container names within the cluster
  // $KLOAD_NODES: node URIs separated by spaces or newlines, used when none of the
  // above is given (as `tools/lab env` or a shell profile sets it).
  std::string env_nodes;
  const Config* config = nullptr;  // the clusters of the config file; nullptr: none
};

// The nodes to load into: the URIs as given, else those of `env_nodes`, else those of
// the cluster --name (or the config's default when there is no --name): the config's
// cluster of that name if it has one, else the kind cluster's node containers (docker
// ps through `runner`, see node/kind.h) as docker:// URIs; narrowed to `picks`.
// Prints one line naming the nodes of a cluster or of KLOAD_NODES. Error (usage): a
// bad URI (a bare word gets a hint towards --name; in the config, naming the file and
// cluster), URIs together with --name or --nodes, a cluster that cannot be listed or
// has no nodes, an unknown --nodes name.
util::Result<std::vector<node::NodeUri>> select_nodes(const NodeSelection& selection, util::ProcessRunner& runner,
                                                      Console& console);

// Opens the inventory cache unless `no_cache`: `dir`, or the default location when
// empty. A cache that cannot be opened is a warning, and the run goes on without.
std::unique_ptr<cache::Cache> open_cache(bool no_cache, const std::string& dir, Console& console);

// Whether the console observer prints a line per node and image ("Image: ... not yet
// present on node ..."): kload as kind prints kind's own instead.
enum class ImageLines { shown, left_out };

// The per-node lines image-archive and docker-image print while loading, with a live
// progress line on terminals.
std::unique_ptr<load::Observer> make_console_observer(Console& console, ImageLines lines = ImageLines::shown);

// A crash-loop warning about one image of a load.
struct ImageWarning {
  std::string image;    // its first name, else its ID
  std::string warning;  // one line from format::lint_run_config
};

// Prints one warning line per problem of each image about to be loaded (see
// format::lint_run_config) and returns them for the report; nothing when `lint` is
// off. Never fails.
std::vector<ImageWarning> lint_images(const std::vector<const format::Image*>& images, Lint lint, Console& console);

struct LoadSummary {
  std::size_t images = 0;
  bool dry_run = false;
  bool json = false;
  std::optional<bool> docker_saved;  // docker-image: whether `docker save` ran (JSON "dockerSaved")
  std::vector<ImageWarning> lint;    // JSON "lint"
  std::string lead;                  // put before the summary line (a --watch reload: the time, what changed)
};

// Why a load failed, when some node failed: Error{kind, "N of M node(s) failed: a, b"},
// the kind that of the failed node furthest from a node's own failure (interrupted,
// then bad_input, then io, then node). Nullopt when every node is fine.
std::optional<util::Error> load_failure(const load::LoadReport& report);

// Prints the one-line summary of a load and, with `json`, its kload.load/v2 document
// on stdout (write_document). Returns the exit code: 0 when every node is fine and the
// run was not cancelled, else that of load_failure or of the interrupt.
int print_load_report(const load::LoadReport& report, const LoadSummary& summary, Console& console);

struct CacheCommandOptions {
  std::string action;              // ls, stats, forget, refresh
  std::vector<std::string> nodes;  // node URIs; empty: all known
  bool inputs = false;             // forget: the input-file records (alone: only those)
  bool yes = false;                // forget: every node without asking
  bool json = false;
  std::string cache_dir;
  unsigned jobs = 8;
};

// `kload cache ls|stats|forget|refresh`, with `json` (ls and stats only) the
// kload.cache-ls/v1 or kload.cache-stats/v1 document. Error: usage (--json with
// forget or refresh), io (the cache cannot be opened), node (refresh).
util::Result<int> cache_command(const CacheCommandOptions& options, Console& console);

// Reads every archive into one set, with a progress line per archive. Error
// (bad_input): the first archive that cannot be read.
util::Result<format::ImageSet> read_inputs(const std::vector<std::string>& archives, Console& console);

// Keeps only images of `platform` (when set) and reports a wanted platform that the
// set lists as unavailable. Error (bad_input): nothing of that platform.
util::Result<void> select_platform(format::ImageSet& set, const std::optional<format::Platform>& platform);

} // namespace kload::cli
