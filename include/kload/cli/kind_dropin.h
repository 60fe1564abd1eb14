#pragma once
// kload as `kind`: what Makefiles, CI scripts, Skaffold and Tilt run as a subprocess,
// `kind load docker-image IMAGE...` and `kind load image-archive FILE...`, is served
// by kload's own docker-image and image-archive; every other kind command is handed,
// unchanged, to the real kind further along PATH. kload answers as kind when its
// program name is `kind` (a symbolic link named kind earlier on PATH) and as
// `kload kind ARGS...`.

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kload::cli {

// The kind load commands kload serves.
enum class KindVerb { docker_image, image_archive };

// A kind load command line, read as kind reads it.
struct KindLoad {
  KindVerb verb = KindVerb::docker_image;
  std::vector<std::string> inputs;  // images (docker-image) or archives (image-archive), as given
  std::string cluster;              // --name/-n, else $KIND_CLUSTER_NAME, else "kind"
  std::vector<std::string> nodes;   // --nodes: node container names; empty: every node
  bool quiet = false;               // -q/--quiet: nothing on stderr
  bool help = false;                // -h/--help: print the command's usage, load nothing
  int verbosity = 0;                // -v/--verbosity: 1 or more shows what kload's -v shows
};

// A kind command line kload does not serve, and what made it so.
struct KindHandOn {
  std::string why;
};

using KindRoute = std::variant<KindLoad, KindHandOn>;

// Reads kind's arguments (those after the program name) as kind's command line parser
// (cobra, pflag) reads them: flags anywhere, before or after the command words;
// `--name x`, `--name=x`, `-n x`, `-nx`, `-n=x`; combined short flags (`-qn x`);
// `--nodes a,b`, repeatable, adding up; `--` ends the flags. Served: `load
// docker-image|image-archive` with at least one input and no flag but kind's own for
// that command (-n/--name, --nodes, and the global -v/--verbosity, -q/--quiet,
// -h/--help). Anything else is handed on, so that the real kind answers it, its errors
// included: other commands, unknown flags, a flag without its value, a bad number, no
// input, an empty --name. `cluster_env` is $KIND_CLUSTER_NAME (null when unset), taken
// when --name is not given, as kind does. `provider_env` is $KIND_EXPERIMENTAL_PROVIDER
// (null when unset): Docker and Podman clusters are served, except `load docker-image`
// on Podman (the images are in Podman's store, which kload does not read); on any
// other provider the command is handed on. Never fails.
KindRoute route_kind_args(std::span<const std::string> args, const char* cluster_env, const char* provider_env);

// kind's argv within kload's: all of argv when argv[0]'s file name is "kind", argv
// from its second word for `kload kind ...`; empty when kload runs as itself.
std::span<char*> kind_argv(int argc, char** argv);

// A file as the kernel knows it: the same (device, inode) is the same program,
// whatever the path or the links to it.
struct FileId {
  dev_t device = 0;
  ino_t inode = 0;
  bool operator==(const FileId&) const = default;
};

// The FileId of `path`, following links; nullopt when it cannot be read.
std::optional<FileId> file_id(const std::filesystem::path& path);

// The first `kind` in the directories of `path` (a $PATH value; an empty entry is the
// current directory) that is an executable regular file and, after following links,
// none of `skip` (this kload, and kloads that already handed the command on).
// nullopt when there is none.
std::optional<std::filesystem::path> find_real_kind(std::string_view path, std::span<const FileId> skip);

// The environment variable through which one kload acting as kind tells the next
// which kloads the command already passed (so that two kloads named kind on PATH,
// say a copy and a link, cannot hand it to each other for ever): "DEV:INODE ...".
inline constexpr const char* kind_passed_env = "KLOAD_KIND_PASSED";

// The FileIds listed in a kind_passed_env value; words that are not DEV:INODE are
// left out.
std::vector<FileId> parse_passed(std::string_view text);

// Runs kload as kind with `argv` (argv[0] as kind's program name): serves what
// route_kind_args serves, through docker_image or image_archive with kind's messages
// ("ERROR: ..." and kind's "Image: ..." lines on stderr); else replaces this process
// (execv) with the real kind (find_real_kind), argv and environment as they are, but
// for kind_passed_env. Returns the exit code as kind's: 0 success, 1 any failure; 127
// when the command is to be handed on and no real kind is on PATH, 126 when the one
// found cannot be run (one line says so).
// Must run before kload installs its signal handlers: the real kind is to start with
// the signal dispositions kload was started with.
int run_as_kind(std::span<char*> argv);

} // namespace kload::cli
