#pragma once
// A ProcessRunner for tests: records every argv and the bytes its feeder wrote, and
// answers with results scripted per ctr subcommand ("version", "content ls",
// "images import", ...), so node-level code runs without any process or socket.

#include "kload/util/process.h"
#include "support/batch_emulator.h"
#include "support/test_support.h"

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace kload::test {

class FakeRunner final : public util::ProcessRunner {
public:
  struct Call {
    std::vector<std::string> argv;
    std::string key;    // the ctr subcommand, see key_of; "batch" for a `sh -c` batch
    std::string stdin;  // what the feeder wrote (empty without a feeder)
    std::chrono::milliseconds timeout{0};
    std::vector<std::string> steps;  // a batch's steps, by key
  };

  // The answer to the next call whose key is `key`. Answers queue up in order; the last
  // one is reused for any further calls.
  void script(const std::string& key, util::Result<util::ProcessResult> answer) {
    const std::lock_guard lock(mutex_);
    scripts_[key].push_back(std::move(answer));
  }

  // Shorthands: a successful run printing `out`; a failed one printing `err`.
  void ok(const std::string& key, std::string out) {
    util::ProcessResult r;
    r.exit_code = 0;
    r.out = std::move(out);
    script(key, r);
  }
  void fails(const std::string& key, std::string err, int exit_code = 1) {
    util::ProcessResult r;
    r.exit_code = exit_code;
    r.err = std::move(err);
    script(key, r);
  }

  util::Result<util::ProcessResult> run(const std::vector<std::string>& argv,
                                        const util::StdinFeeder& feed,
                                        std::chrono::milliseconds timeout) override {
    Call call{argv, key_of(argv), {}, timeout, {}};
    std::optional<util::Error> feed_error;
    if (feed) {
      auto fed = kload::testing::capture_feed(feed, call.stdin);
      if (!fed) {
        feed_error = fed.error();
      }
    }
    util::Result<util::ProcessResult> answer = util::ProcessResult{};
    if (auto batch = batch_of(argv); batch && !scripted("batch")) {
      call.key = "batch";
      answer = kload::testing::emulate_batch(batch->first, batch->second, [&](const kload::testing::EmulatedStep& step) {
        call.steps.push_back(key_of(step.words));
        auto r = next_answer(call.steps.back());
        if (r) {
          return *r;
        }
        util::ProcessResult failed;
        failed.exit_code = 127;
        failed.err = r.error().message;
        return failed;
      });
      const std::lock_guard lock(mutex_);
      calls_.push_back(call);
    } else {
      if (batch) {
        call.key = "batch";  // answered as a whole, as scripted
      }
      answer = next_answer(call.key);
      const std::lock_guard lock(mutex_);
      calls_.push_back(call);
    }
    if (answer && feed_error && !answer->feed_error) {
      answer->feed_error = feed_error;
    }
    return answer;
  }

  [[nodiscard]] std::vector<Call> calls() const {
    const std::lock_guard lock(mutex_);
    return calls_;
  }

  // The words after ctr's global options ("-a S", "--connect-timeout D", "-n NS"), with
  // ssh's quoting undone: "version", or a command group and its subcommand ("images
  // import"). argv[0] for anything that is not a ctr call.
  static std::string key_of(const std::vector<std::string>& argv) {
    std::vector<std::string> words;
    for (const auto& a : argv) {
      words.push_back(unquote(a));
    }
    std::size_t i = 0;
    while (i < words.size() && words[i] != "ctr") {
      ++i;
    }
    if (i == words.size()) {
      return argv.empty() ? std::string() : argv[0];
    }
    ++i;
    while (i + 1 < words.size() &&
           (words[i] == "-a" || words[i] == "-n" || words[i] == "--connect-timeout" ||
            words[i] == "--namespace" || words[i] == "--address")) {
      i += 2;
    }
    if (i == words.size()) {
      return "ctr";
    }
    std::string key = words[i];
    if (key != "version" && i + 1 < words.size()) {
      key += " " + words[i + 1];
    }
    return key;
  }

private:
  bool scripted(const std::string& key) const {
    const std::lock_guard lock(mutex_);
    return scripts_.contains(key);
  }

  // The next scripted answer for `key`.
  util::Result<util::ProcessResult> next_answer(const std::string& key) {
    const std::lock_guard lock(mutex_);
    auto it = scripts_.find(key);
    if (it == scripts_.end() || it->second.empty()) {
      return util::fail(util::ErrorKind::io, "FakeRunner: nothing scripted for \"" + key + "\"");
    }
    auto answer = it->second.front();
    if (it->second.size() > 1) {
      it->second.pop_front();
    }
    return answer;
  }

public:
  // The marker and steps of a `sh -c SCRIPT` batch in `argv` (its words shell-quoted
  // for ssh), else nullopt.
  static std::optional<std::pair<std::string, std::vector<kload::testing::EmulatedStep>>> batch_of(
      const std::vector<std::string>& argv) {
    for (std::size_t i = 0; i + 2 < argv.size(); ++i) {
      if (argv[i] == "sh" && argv[i + 1] == "-c") {
        return kload::testing::decode_batch(argv[i + 2]);
      }
      if (argv[i] == "'sh'" && argv[i + 1] == "'-c'") {
        std::size_t pos = 0;
        return kload::testing::decode_batch(kload::testing::shell_word(argv[i + 2], pos));
      }
    }
    return std::nullopt;
  }

private:
  // Undoes util::shell_quote for words without embedded quotes.
  static std::string unquote(const std::string& w) {
    if (w.size() >= 2 && w.front() == '\'' && w.back() == '\'' &&
        w.find('\'', 1) == w.size() - 1) {
      return w.substr(1, w.size() - 2);
    }
    return w;
  }

  mutable std::mutex mutex_;
  std::map<std::string, std::deque<util::Result<util::ProcessResult>>> scripts_;
  std::vector<Call> calls_;
};

} // namespace kload::test
