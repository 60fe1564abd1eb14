// The live progress display of a load in a real terminal: kload runs in a detached
// tmux session (a pseudo-terminal and a terminal emulator) of 80 or 200 columns,
// loading into real containerd nodes (tools/lab). Its raw output is replayed through
// a small terminal model to see every block it drew, and tmux's own screen after the
// run must hold no stale progress. Also --quiet, -v and Ctrl-C.

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <regex>
#include <set>
#include <thread>
#include <unistd.h>

namespace kload::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A terminal as far as kload's output needs one: printable characters, CR, LF and
// the CSI sequences A (up), K (clear to the end of the line) and J (clear below), on
// a screen of `columns` x `rows` that scrolls. Like xterm, a character written in the
// last column leaves the cursor there until the next one, which wraps.
class Screen {
public:
  Screen(int columns, int rows) : columns_(columns), rows_(rows), cells_(rows, std::string(columns, ' ')) {}

  void feed(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const char c = bytes[i];
      if (c == '\033' && i + 1 < bytes.size() && bytes[i + 1] == '[') {
        std::size_t j = i + 2;
        while (j < bytes.size() && (std::isdigit(static_cast<unsigned char>(bytes[j])) != 0 || bytes[j] == ';')) {
          ++j;
        }
        if (j < bytes.size()) {
          csi(bytes[j], std::string(bytes.substr(i + 2, j - i - 2)));
        }
        i = j;
      } else if (c == '\r') {
        col_ = 0;
        pending_wrap_ = false;
        run_.clear();
        run_wrapped_ = false;
      } else if (c == '\n') {
        down();
        run_.clear();
        run_wrapped_ = false;
      } else if (static_cast<unsigned char>(c) >= 0x20) {
        put(c);
      } else {
        unknown.insert(c);
      }
    }
  }

  // The rows as they stand, trailing spaces dropped.
  [[nodiscard]] std::vector<std::string> lines() const {
    std::vector<std::string> out;
    for (auto row : cells_) {
      row.erase(row.find_last_not_of(' ') + 1);
      out.push_back(row);
    }
    return out;
  }

  // Every line written and then cleared to its end (ESC[K: how kload draws its live
  // block), as written; and those of them that wrapped.
  std::vector<std::string> drawn;
  std::vector<std::string> wrapped;
  std::set<char> unknown;  // control characters the model does not know

private:
  void csi(char final, const std::string& arg) {
    const int n = arg.empty() ? 1 : std::stoi(arg);
    switch (final) {
    case 'A':
      row_ = std::max(0, row_ - n);
      pending_wrap_ = false;
      break;
    case 'K':
      std::fill(cells_[row_].begin() + std::min(col_, columns_), cells_[row_].end(), ' ');
      drawn.push_back(run_);
      if (run_wrapped_) {
        wrapped.push_back(run_);
      }
      break;
    case 'J':
      std::fill(cells_[row_].begin() + std::min(col_, columns_), cells_[row_].end(), ' ');
      for (int r = row_ + 1; r < rows_; ++r) {
        cells_[r] = std::string(columns_, ' ');
      }
      break;
    default:
      unknown.insert(final);
    }
    run_.clear();
    run_wrapped_ = false;
  }

  void put(char c) {
    if (pending_wrap_) {
      down();
      col_ = 0;
      run_wrapped_ = true;
    }
    cells_[row_][col_] = c;
    run_ += c;
    if (col_ == columns_ - 1) {
      pending_wrap_ = true;
    } else {
      ++col_;
    }
  }

  void down() {
    pending_wrap_ = false;
    if (row_ == rows_ - 1) {
      cells_.erase(cells_.begin());
      cells_.emplace_back(columns_, ' ');
    } else {
      ++row_;
    }
  }

  int columns_;
  int rows_;
  std::vector<std::string> cells_;
  int row_ = 0;
  int col_ = 0;
  bool pending_wrap_ = false;
  std::string run_;  // what was written since the cursor last moved otherwise
  bool run_wrapped_ = false;
};

std::string shell_words(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    out += (out.empty() ? "" : " ") + util::shell_quote(a);
  }
  return out;
}

// A command run in a detached tmux session of `columns` x `rows` of its own (own
// server socket, no configuration), its output recorded raw from the first byte.
class Tmux {
public:
  Tmux(const std::filesystem::path& dir, int columns, int rows, const std::vector<std::string>& argv)
      : dir_(dir), socket_(fmt::format("kload-test-{}-{}", ::getpid(), next_id())) {
    // The command waits until the recording runs; afterwards the pane stays (sleep)
    // so that its screen can be read. The shell outlives a Ctrl-C (its trap) to say
    // how the command ended; the command itself starts with SIGINT's default.
    const auto script = fmt::format("trap : INT; tmux -L {} wait-for go; {} < /dev/null; echo $? > {}; exec sleep 600",
                                    socket_,
                                    shell_words(argv), util::shell_quote((dir_ / "rc").string()));
    tmux({"new-session", "-d", "-x", std::to_string(columns), "-y", std::to_string(rows), "-s", "t", script});
    tmux({"pipe-pane", "-t", "t", "-o", "cat > " + util::shell_quote((dir_ / "raw").string())});
    tmux({"wait-for", "-S", "go"});
  }
  ~Tmux() { (void)run_command({"tmux", "-L", socket_, "kill-server"}); }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  // The command's exit status, once it ended; -1 after `limit`.
  int wait(std::chrono::seconds limit = std::chrono::seconds(120)) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      const auto rc = read_file(dir_ / "rc");
      if (!rc.empty() && rc.back() == '\n') {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the recording catches up
        return std::stoi(rc);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  // What tmux's terminal shows now.
  [[nodiscard]] std::vector<std::string> screen() const {
    return split_lines(tmux({"capture-pane", "-p", "-t", "t"}).out);
  }
  [[nodiscard]] std::string raw() const { return read_file(dir_ / "raw"); }
  void keys(const std::string& keys) const { tmux({"send-keys", "-t", "t", keys}); }

private:
  static int next_id() {
    static int id = 0;
    return ++id;
  }
  CommandResult tmux(std::vector<std::string> args) const {
    args.insert(args.begin(), {"tmux", "-L", socket_, "-f", "/dev/null"});
    auto r = run_command(args);
    EXPECT_EQ(r.exit_code, 0) << shell_words(args) << ": " << r.err;
    return r;
  }

  std::filesystem::path dir_;
  std::string socket_;
};

// A line of the live block: a node's or the total line, or the summary line.
const std::regex progress_line(R"(^(node\d+|total) +(planning|sending|committing|confirming|done|FAILED|\d+/\d+ done)\b|^\d+/\d+ nodes done)");

std::vector<std::string> progress_lines_in(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  std::copy_if(lines.begin(), lines.end(), std::back_inserter(out),
               [](const std::string& l) { return std::regex_search(l, progress_line); });
  return out;
}

std::string joined_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    out += l + "\n";
  }
  return out;
}

class E2EProgress : public ::testing::Test {
protected:
  void SetUp() override { KLOAD_REQUIRE_PROGRAM("tmux"); }

  // An archive of one image whose layers no other test's image has.
  std::string archive(const std::string& name, const std::string& spec) {
    const auto path = (scratch / (name + ".tar")).string();
    EXPECT_TRUE(mkimage({"--compressible", "0", "--image", spec, path}));
    return path;
  }

  std::vector<std::string> load_argv(const std::string& archive, const std::vector<std::string>& uris,
                                     const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{kload_binary().string(), "image-archive", archive, "--no-cache"};
    for (const auto& u : uris) {
      argv.insert(argv.end(), {"--node", u});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  std::filesystem::path dir(const std::string& name) {
    const auto d = scratch / name;
    std::filesystem::create_directories(d);
    return d;
  }

  Scratch scratch;
};

TEST_F(E2EProgress, ALinePerNodeAt80And200ColumnsNothingWrapsNothingStaleStays) {
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  for (const auto& [columns, rows] : {std::pair{80, 24}, std::pair{200, 50}}) {
    SCOPED_TRACE(fmt::format("{}x{}", columns, rows));
    const auto tag = fmt::format("c{}", columns);
    const auto tar = archive(tag, fmt::format("app:{}=base{}:24M,top{}:8M", tag, tag, tag));
    const Tmux run(dir(tag), columns, rows, load_argv(tar, lab.uris()));
    ASSERT_EQ(run.wait(), 0) << run.raw();

    Screen model(columns, rows);
    model.feed(run.raw());
    EXPECT_TRUE(model.unknown.empty()) << "control characters the model does not know";
    EXPECT_TRUE(model.wrapped.empty()) << "block lines wrapped:\n" << joined_lines(model.wrapped);
    for (const auto& line : model.drawn) {
      EXPECT_LT(line.size(), static_cast<std::size_t>(columns)) << line;
    }
    const auto drawn = progress_lines_in(model.drawn);
    for (int n = 1; n <= 3; ++n) {
      const std::regex sending(fmt::format(R"(^node{} +sending .*/\d+\.\d MiB)", n));
      EXPECT_TRUE(std::any_of(drawn.begin(), drawn.end(), [&](const std::string& l) {
        return std::regex_search(l, sending);
      })) << "no line of node" << n << " sending:\n" << joined_lines(drawn);
    }
    EXPECT_TRUE(std::any_of(drawn.begin(), drawn.end(), [](const std::string& l) { return l.starts_with("total"); }));
    const std::regex some_sent(R"(^node\d +sending .* [1-9][\d.]* MiB/\d+\.\d MiB)");
    EXPECT_TRUE(std::any_of(drawn.begin(), drawn.end(), [&](const std::string& l) {
      return std::regex_search(l, some_sent);
    })) << "bytes going out were never shown:\n" << joined_lines(drawn);
    if (columns == 200) {
      EXPECT_TRUE(std::any_of(drawn.begin(), drawn.end(), [](const std::string& l) { return l.find("[#") != l.npos; }))
          << "a bar at 200 columns:\n" << joined_lines(drawn);
    }

    // What stays: the lines printed, the summary last, and no progress.
    for (const auto& screen : {run.screen(), model.lines()}) {
      EXPECT_THAT(progress_lines_in(screen), ::testing::IsEmpty()) << joined_lines(screen);
      EXPECT_THAT(joined_lines(screen), HasSubstr("1 image(s) on 3 node(s): sent"));
    }
  }
}

TEST_F(E2EProgress, MoreNodesThanTheTerminalHasRowsForAreOneSummaryLine) {
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  const auto tar = archive("short", "app:short=baseshort:24M");
  const Tmux run(dir("run"), 80, 5, load_argv(tar, lab.uris()));
  ASSERT_EQ(run.wait(), 0) << run.raw();
  Screen model(80, 5);
  model.feed(run.raw());
  EXPECT_TRUE(model.wrapped.empty()) << joined_lines(model.wrapped);
  const auto drawn = progress_lines_in(model.drawn);
  // A block grows as nodes start: two nodes and a total fit 5 - 2 rows, three do not.
  const auto any = [&](const std::string& pattern) {
    return std::any_of(drawn.begin(), drawn.end(), [&](const std::string& l) { return std::regex_search(l, std::regex(pattern)); });
  };
  EXPECT_TRUE(any(R"(^\d/3 nodes done  )")) << joined_lines(drawn);
  EXPECT_FALSE(any(R"(^total +\d/3 done)")) << "a line per node for 3 nodes on 5 rows:\n" << joined_lines(drawn);
  EXPECT_THAT(progress_lines_in(run.screen()), ::testing::IsEmpty()) << joined_lines(run.screen());
}

TEST_F(E2EProgress, QuietPrintsOnlyTheFailedNodeOnATerminal) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto tar = archive("quiet", "app:quiet=basequiet:4M");
  const auto absent = "containerd://" + (scratch / "absent" / "containerd.sock").string();
  const Tmux run(dir("run"), 80, 24, load_argv(tar, {lab.uris()[0], absent}, {"--quiet"}));
  ASSERT_EQ(run.wait(), 1) << run.raw();
  const auto raw = run.raw();
  EXPECT_EQ(raw.find('\033'), std::string::npos) << "no progress drawn: " << raw;
  const auto lines = split_lines(raw);
  ASSERT_EQ(lines.size(), 1u) << raw;
  EXPECT_THAT(lines[0], ::testing::StartsWith("node \"absent\": FAILED: ")) << raw;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:quiet").empty(), false) << "the good node was loaded";
}

TEST_F(E2EProgress, VerboseShowsEachCommandRunOnANodeWithItsDuration) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto tar = archive("verbose", "app:verbose=baseverbose:4M");
  auto argv = load_argv(tar, lab.uris(), {"-v"});
  argv.erase(argv.begin());
  const auto r = kload(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A first load without a cache: a check, a listing, the plugins, then the staging
  // import (every blob in it: no gate), the name created, the staging name gone and
  // the name checked.
  const std::regex run(R"(^node "node1": (ctr .*) \((\d+) ms, exit (\d(, \d)*)\)$)");
  std::vector<std::string> commands;
  for (const auto& line : split_lines(r.err)) {
    std::smatch m;
    if (std::regex_match(line, m, run)) {
      commands.push_back(m[1]);
      EXPECT_TRUE(std::regex_match(m[3].str(), std::regex("0(, 0)*"))) << line;
    }
  }
  ASSERT_GE(commands.size(), 3u) << r.err;
  EXPECT_EQ(commands.front(), "ctr images check") << r.err;
  const auto any = [&](const std::string& text) {
    return std::any_of(commands.begin(), commands.end(), [&](const std::string& c) { return c.find(text) != c.npos; });
  };
  EXPECT_TRUE(any("ctr images check; ctr version; ctr content ls")) << r.err;
  EXPECT_TRUE(any("ctr images import --snapshotter ")) << r.err;
  EXPECT_TRUE(any(" -; ctr images tag -- localhost/kload-staging/")) << r.err;
  EXPECT_TRUE(any("; ctr images rm -- localhost/kload-staging/")) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("--connect-timeout"))) << "the options every call has are left out";
}

TEST_F(E2EProgress, CtrlCClearsTheBlockAndSaysInterrupted) {
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto tar = archive("big", "app:big=basebig:96M,topbig:64M");
  const Tmux run(dir("run"), 80, 24, load_argv(tar, lab.uris()));
  bool sending = false;
  for (int i = 0; i < 600 && !sending; ++i) {
    for (const auto& line : run.screen()) {
      sending = sending || std::regex_search(line, std::regex(R"(^node1 +sending)"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(sending) << "the block never showed node1 sending:\n" << joined_lines(run.screen());
  run.keys("C-c");
  EXPECT_EQ(run.wait(), 130) << run.raw();
  const auto screen = run.screen();
  EXPECT_THAT(progress_lines_in(screen), ::testing::IsEmpty()) << joined_lines(screen);
  // The run is cancelled, not cut short: its end says so, in the one error line.
  EXPECT_THAT(screen, ::testing::Contains(::testing::StartsWith("kload: error: interrupted by SIGINT: the command was "
                                                                 "cancelled")))
      << joined_lines(screen);
  Screen model(80, 24);
  model.feed(run.raw());
  EXPECT_THAT(progress_lines_in(model.lines()), ::testing::IsEmpty()) << joined_lines(model.lines());
}

} // namespace
} // namespace kload::testing
