#pragma once
// Shared helpers for tests: a scratch directory per test (kept when the test fails),
// running the project's own tools, and running the kload binary.

#include <filesystem>
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

// Writes `data` to `path`.
void write_file(const std::filesystem::path& path, const std::string& data);
std::string read_file(const std::filesystem::path& path);

} // namespace kload::testing

namespace kload::testing {

// A lab of real containerd nodes (tools/lab) in a directory of the test's scratch
// space, stopped when the test ends.
class Lab {
public:
  Lab(const std::filesystem::path& dir, int nodes);
  ~Lab();
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  [[nodiscard]] bool up() const { return up_; }
  [[nodiscard]] const std::vector<std::string>& uris() const { return uris_; }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] std::filesystem::path socket(int node) const;  // 1-based
  // Runs ctr on node `node` (1-based), namespace k8s.io.
  CommandResult ctr(int node, const std::vector<std::string>& args) const;
  // Stops (SIGKILL) or restarts one node.
  bool stop(int node) const;
  bool start(int node) const;
  // name -> target digest and whether complete, from `ctr images check`.
  struct Image {
    std::string target;
    bool complete = false;
  };
  [[nodiscard]] std::vector<std::pair<std::string, Image>> images(int node) const;
  // The config digest (image ID) a name points at, via the manifest's gc label.
  [[nodiscard]] std::string image_id(int node, const std::string& name) const;

private:
  std::filesystem::path dir_;
  std::vector<std::string> uris_;
  bool up_ = false;
};

// Runs the kload binary with `args`; stdin from `stdin_file` when given.
CommandResult kload(const std::vector<std::string>& args, const std::string& stdin_file = "");

} // namespace kload::testing
