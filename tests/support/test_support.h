#pragma once
// Shared helpers for tests: a scratch directory per test (kept when the test fails),
// running the project's own tools, and running the kload binary.

#include "kload/registry/http.h"
#include "kload/util/process.h"

#include <cstdint>
#include <filesystem>
#include <sys/types.h>
#include <string>
#include <vector>

namespace kload::testing {

// The source tree (for tools/mkimage and tools/lab).
std::filesystem::path source_dir();
// The kload binary under test.
std::filesystem::path kload_binary();

// A fresh directory for the current test; removed when the test passed, kept (and
// its path printed) when it failed.
class Scratch {
public:
  Scratch();
  ~Scratch();
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv (no shell), capturing stdout and stderr; stdin from `stdin_file` or /dev/null.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& stdin_file = "");

// Runs tools/mkimage with `args`; fails the current test (and returns false) on error.
bool mkimage(const std::vector<std::string>& args);

// Runs `feed` against a pipe drained into `sink` by a thread, as a child's stdin would
// be read: what fakes of a node or a process runner do with a feeder.
util::Result<void> capture_feed(const util::StdinFeeder& feed, std::string& sink);

// The non-empty lines of `text`.
std::vector<std::string> split_lines(const std::string& text);

// Writes `data` to `path`.
void write_file(const std::filesystem::path& path, const std::string& data);
std::string read_file(const std::filesystem::path& path);

} // namespace kload::testing

namespace kload::testing {

// This machine's platform as kload and containerd write it, and another one: the
// platform a multi-platform test input's other image is built for.
#if defined(__aarch64__)
constexpr const char* host_platform = "linux/arm64";
constexpr const char* other_platform = "linux/amd64";
#else
constexpr const char* host_platform = "linux/amd64";
constexpr const char* other_platform = "linux/arm64";
#endif

// What a Lab's nodes are: containerd processes on this machine (tools/lab up), or
// Docker containers shaped as kind's nodes (tools/lab up --docker) running containerd
// `containerd` (2.x, 1.7 or 1.6).
struct LabKind {
  bool docker = false;
  std::string containerd = "2.x";
};

// The kind of node the integration suites run on: KLOAD_TEST_NODES = host (the
// default), docker-2.x, docker-1.7 or docker-1.6.
LabKind lab_kind_from_env();

// Why Docker-hosted nodes cannot run here ("" when they can): no docker client, no
// engine answering, or no Go to build the node's programs with.
std::string docker_missing();

// Skips the current test with the reason when docker_missing() says something, or
// fails it when KLOAD_REQUIRE_DOCKER=1 (CI), so CI never passes on a skip.
#define KLOAD_REQUIRE_DOCKER()                                                                     \
  do {                                                                                             \
    if (const auto why_ = ::kload::testing::docker_missing(); !why_.empty()) {                     \
      if (::kload::testing::docker_required()) {                                                   \
        FAIL() << "Docker-hosted nodes are required here (KLOAD_REQUIRE_DOCKER=1): " << why_;     \
      }                                                                                            \
      GTEST_SKIP() << "needs Docker-hosted nodes: " << why_;                                       \
    }                                                                                              \
  } while (0)
bool docker_required();

// Why `program` cannot run here ("" when it can): it is not on PATH.
std::string program_missing(const std::string& program);

// Skips the current test when `program` is not on PATH, saying so, or fails it under
// CI (KLOAD_REQUIRE_DOCKER=1, where every test must run), so CI never passes on a skip.
#define KLOAD_REQUIRE_PROGRAM(program)                                                             \
  do {                                                                                             \
    if (const auto why_ = ::kload::testing::program_missing(program); !why_.empty()) {             \
      if (::kload::testing::docker_required()) {                                                   \
        FAIL() << "required here (KLOAD_REQUIRE_DOCKER=1): " << why_;                              \
      }                                                                                            \
      GTEST_SKIP() << why_;                                                                        \
    }                                                                                              \
  } while (0)

// A lab of real containerd nodes (tools/lab) in a directory of the test's scratch
// space, stopped when the test ends.
class Lab {
public:
  // Nodes of lab_kind_from_env().
  Lab(const std::filesystem::path& dir, int nodes);
  // Docker labs get a kind cluster name unique to `dir` (cluster()).
  Lab(const std::filesystem::path& dir, int nodes, LabKind kind);
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  [[nodiscard]] bool up() const { return up_; }
  [[nodiscard]] const std::vector<std::string>& uris() const { return uris_; }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] std::filesystem::path socket(int node) const;  // 1-based; host labs only
  [[nodiscard]] const LabKind& kind() const { return kind_; }
  // The kind cluster name of a Docker lab, "" for a host lab.
  [[nodiscard]] const std::string& cluster() const { return cluster_; }
  // The node container's name of a Docker lab (e.g. CLUSTER-worker).
  [[nodiscard]] std::string container(int node) const;
  // Shell words that run `ctr -n k8s.io` on node `node`, for `sh -c` command lines
  // such as "<ctr_shell(1)> images import - < FILE".
  [[nodiscard]] std::string ctr_shell(int node) const;
  // Runs ctr on node `node` (1-based), namespace k8s.io.
  CommandResult ctr(int node, const std::vector<std::string>& args) const;
  // Runs argv on a Docker lab's node `node` (docker exec).
  CommandResult exec(int node, const std::vector<std::string>& argv) const;
  // Stops (SIGKILL) or restarts one node.
  bool stop(int node) const;
  bool start(int node) const;
  // The node's name as kload's messages show it: "nodeI" (its lab directory) for a
  // host lab, the container name for a Docker lab.
  [[nodiscard]] std::string node_name(int node) const;
  // name -> target digest and whether complete, from `ctr images check`; CRI's own
  // "sha256:<ID>" references (CRI nodes add one per image) are left out.
  struct Image {
    std::string target;
    bool complete = false;
    bool operator==(const Image&) const = default;
  };
  [[nodiscard]] std::vector<std::pair<std::string, Image>> images(int node) const;
  // The config digest (image ID) a name points at, via the manifest's gc label (for a
  // name at an index, through the first child the node holds); "" when not found.
  [[nodiscard]] std::string image_id(int node, const std::string& name) const;

private:
  // The argv that runs `ctr -n k8s.io` on node `node`.
  [[nodiscard]] std::vector<std::string> ctr_prefix(int node) const;

  std::filesystem::path dir_;
  LabKind kind_;
  std::string cluster_;
  std::vector<std::string> uris_;
  bool up_ = false;
};

// Runs the kload binary with `args`; stdin from `stdin_file` when given.
CommandResult kload(const std::vector<std::string>& args, const std::string& stdin_file = "");

// Starts the kload binary with `args` in the background, stdout to `out` and stderr to
// `err` (created or truncated); returns its pid, for the caller to signal and reap.
pid_t spawn_kload(const std::vector<std::string>& args, const std::filesystem::path& out,
                  const std::filesystem::path& err);

// The pid of a running `ctr ... import` that talks to `socket` (read from /proc), 0
// while there is none.
pid_t ctr_import_on(const std::string& socket);

// Why Debian's docker-registry cannot run here ("" when it can).
std::string registry_missing();

// Skips the current test when docker-registry is missing, saying so, or fails it under
// CI (KLOAD_REQUIRE_DOCKER=1).
#define KLOAD_REQUIRE_REGISTRY()                                                                   \
  do {                                                                                             \
    if (const auto why_ = ::kload::testing::registry_missing(); !why_.empty()) {                   \
      if (::kload::testing::docker_required()) {                                                   \
        FAIL() << "the registry is required here (KLOAD_REQUIRE_DOCKER=1): " << why_;             \
      }                                                                                            \
      GTEST_SKIP() << why_;                                                                        \
    }                                                                                              \
  } while (0)

// One docker-registry process (the CNCF distribution registry), its storage and
// access log in `dir`, on a free port of `host` (an address of this machine: loopback,
// or where containers reach it); stopped (by its PID) when the object goes.
class Registry {
public:
  // `extra`: more top-level configuration (an auth section); `host`: the address it
  // listens on. `launcher`: a command line that runs the registry's, given after it (a
  // private mount namespace).
  explicit Registry(const std::filesystem::path& dir, const std::string& extra = "",
                    const std::string& host = "127.0.0.1", std::vector<std::string> launcher = {});
  ~Registry() { stop(); }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  void start();
  void stop();
  [[nodiscard]] bool up() const;
  [[nodiscard]] std::string address() const { return host_ + ":" + std::to_string(port_); }
  [[nodiscard]] std::string log() const { return read_file(dir_ / "registry.log"); }

  // One line of the access log: the registry writes one per answer, with its size.
  struct Access {
    std::string method;
    std::string path;  // /v2/...
    int status = 0;
    std::uint64_t bytes = 0;
    std::string agent;  // the client's User-Agent
  };
  // Every answer so far, in order (after a moment for the last line to be written).
  [[nodiscard]] std::vector<Access> accesses() const;
  // The requests in the access log, as "METHOD PATH", in order.
  [[nodiscard]] std::vector<std::string> requests() const;

  // GET or HEAD `path` of the registry (its own API, not kload's push code).
  [[nodiscard]] registry::HttpResponse ask(const std::string& method, const std::string& path,
                                           std::vector<std::string> headers = {}) const;

private:
  std::filesystem::path dir_;
  std::string host_;
  int port_;
  std::vector<std::string> launcher_;
  pid_t pid_ = -1;
};

} // namespace kload::testing
