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
