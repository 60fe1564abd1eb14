#include "support/test_support.h"

#include "kload/util/process.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace kload::testing {

std::filesystem::path source_dir() {
  if (const char* env = std::getenv("KLOAD_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return KLOAD_SOURCE_DIR;
}

std::filesystem::path kload_binary() { return KLOAD_BINARY; }

Scratch::Scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  for (auto& c : name) {
    if (c == '/') {
      c = '_';
    }
  }
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/kload-test-" + name + ".XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = templ;
}

Scratch::~Scratch() {
  if (::testing::Test::HasFailure()) {
    std::cerr << "scratch directory kept: " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::vector<std::string>& argv, const std::string& stdin_file) {
  util::SystemProcessRunner runner;
  util::StdinFeeder feed;
  if (!stdin_file.empty()) {
    feed = [&](int fd) -> util::Result<void> {
      std::ifstream in(stdin_file, std::ios::binary);
      std::vector<char> buf(1 << 16);
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) {
          if (auto r = util::write_all(fd, buf.data(), static_cast<std::size_t>(in.gcount()), "stdin"); !r) {
            return r;
          }
        }
      }
      return {};
    };
  }
  auto r = runner.run(argv, feed, std::chrono::minutes(5));
  if (!r) {
    return CommandResult{-1, "", r.error().message};
  }
  return CommandResult{r->exit_code, r->out, r->err};
}

bool mkimage(const std::vector<std::string>& args) {
  std::vector<std::string> argv{(source_dir() / "tools" / "mkimage").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << "mkimage failed: " << r.err;
  return r.exit_code == 0;
}

void write_file(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace kload::testing
