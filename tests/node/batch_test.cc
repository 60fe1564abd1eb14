#include "kload/node/batch.h"

#include "kload/util/temp_dir.h"
#include "support/batch_emulator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iterator>

namespace kload::node {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using std::chrono_literals::operator""ms;

// Runs `steps` as one real `sh -c` batch, as a node would; `tmpdir`: the node's $TMPDIR.
std::optional<std::vector<util::ProcessResult>> run_batch(const std::vector<BatchStep>& steps,
                                                          const util::StdinFeeder& feed = {},
                                                          std::chrono::milliseconds timeout = 10'000ms,
                                                          const std::string& tmpdir = "/tmp") {
  const auto marker = batch_marker();
  util::SystemProcessRunner runner;
  auto whole = runner.run({"env", "TMPDIR=" + tmpdir, "sh", "-c", batch_script(marker, steps)}, feed, timeout);
  EXPECT_TRUE(whole.has_value());
  return split_batch(marker, steps, *whole);
}

BatchStep sh(const std::string& script, bool stop_on_failure = true) {
  return BatchStep{{"sh", "-c", script}, false, stop_on_failure};
}

// A query that runs at the same time as its concurrent neighbours.
BatchStep query(const std::string& script) { return query_step({"sh", "-c", script}); }

// Waits up to `tries` x 10 ms for FILE to exist, then prints "saw"; else exits 9. It
// sees FILE only when the step that creates it runs at the same time, not after it.
std::string waits_for(const std::string& file, int tries = 500) {
  return "i=0; while [ ! -e '" + file + "' ]; do i=$((i+1)); [ $i -gt " + std::to_string(tries) +
         " ] && exit 9; sleep 0.01; done; echo saw";
}

TEST(Batch, EachStepGetsExactlyItsOwnOutputAndStatus) {
  const auto results = run_batch({sh("printf 'one\\n'; printf 'warn\\n' >&2"), sh("printf 'no newline'"),
                                  sh("printf '\\n\\n'"), sh("true")});
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 4u);
  EXPECT_EQ((*results)[0].out, "one\n");
  EXPECT_EQ((*results)[0].err, "warn\n");
  EXPECT_EQ((*results)[1].out, "no newline");
  EXPECT_EQ((*results)[2].out, "\n\n");
  EXPECT_EQ((*results)[3].out, "");
  for (const auto& r : *results) {
    EXPECT_EQ(r.exit_code, 0);
  }
}

TEST(Batch, AFailingStepStopsTheBatchWithItsStatus) {
  const auto results = run_batch({sh("echo ok"), sh("echo 'ctr: boom' >&2; exit 3"), sh("echo never")});
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[1].exit_code, 3);
  EXPECT_EQ((*results)[1].err, "ctr: boom\n");
}

TEST(Batch, StepsTheBatchNeverReachedShareTheLastResult) {
  const auto results = run_batch({sh("printf a"), sh("printf b; exit 3"), sh("printf c")});
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  StepResults cursor(*results);
  EXPECT_EQ(cursor.next().out, "a");
  EXPECT_EQ(cursor.next().exit_code, 3);
  const auto& unreached = cursor.next();
  EXPECT_EQ(unreached.out, "b");
  EXPECT_EQ(unreached.exit_code, 3);
}

TEST(Batch, AStepThatMayFailLetsTheNextRun) {
  const auto results = run_batch({sh("exit 1", false), sh("echo after")});
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].exit_code, 1);
  EXPECT_EQ((*results)[1].out, "after\n");
}

TEST(Batch, OnlyTheStepThatReadsStdinGetsIt) {
  std::vector<BatchStep> steps{sh("cat"), BatchStep{{"cat"}, true, true}, sh("cat")};
  const util::StdinFeeder feed = [](int fd) -> util::Result<void> {
    const std::string data = "the stream";
    return util::write_all(fd, data.data(), data.size(), "stdin");
  };
  const auto results = run_batch(steps, feed);
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].out, "");
  EXPECT_EQ((*results)[1].out, "the stream");
  EXPECT_EQ((*results)[2].out, "");
}

TEST(Batch, WordsArriveExactlyWhateverTheyHold) {
  const std::string hostile = "it's $(rm -rf /) `x` \"q\" ; | & \n end";
  const auto results = run_batch({BatchStep{{"printf", "%s", hostile}, false, true}});
  ASSERT_TRUE(results);
  EXPECT_EQ((*results)[0].out, hostile);
}

TEST(Batch, OutputThatImitatesTheFramingCannotForgeAStep) {
  // A step cannot know the random marker; text that looks like framing is its output.
  const auto results = run_batch({sh("printf 'kload-batch-0 end 0\\nkload-batch-0 begin\\n'"), sh("exit 4")});
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].out, "kload-batch-0 end 0\nkload-batch-0 begin\n");
  EXPECT_EQ((*results)[1].exit_code, 4);
}

TEST(Batch, AStepCutOffByTheTimeoutIsTheLastResultAndSaysSo) {
  const auto results = run_batch({sh("echo first"), sh("echo partial; sleep 30"), sh("echo never")}, {}, 500ms);
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].exit_code, 0);
  EXPECT_TRUE((*results)[1].timed_out);
  EXPECT_NE((*results)[1].exit_code, 0);
  EXPECT_EQ((*results)[1].out, "partial\n");
}

TEST(Batch, AShellThatEndsBetweenStepsFailsTheNextOne) {
  // `exit 0` inside a step's own shell is fine; ending the batch's shell is not.
  const std::vector<BatchStep> steps{sh("true"), sh("true")};
  util::ProcessResult whole;
  whole.exit_code = 255;
  const std::string marker = "kload-batch-x";
  whole.out = marker + " begin\n\n" + marker + " end 0\n";
  whole.err = "Connection to node closed.\n";
  const auto results = split_batch(marker, steps, whole);
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[1].exit_code, 255);
  EXPECT_THAT((*results)[1].err, HasSubstr("ended before this step"));
}

TEST(Batch, NoFramingAtAllIsNoBatch) {
  util::ProcessResult whole;
  whole.exit_code = 127;
  whole.err = "exec: \"sh\": executable file not found in $PATH\n";
  EXPECT_FALSE(split_batch("kload-batch-x", {sh("true")}, whole));
}

TEST(Batch, WhatALoginShellPrintsFirstIsIgnored) {
  const std::string marker = "kload-batch-x";
  util::ProcessResult whole;
  whole.exit_code = 0;
  whole.out = "Welcome!\n" + marker + " begin\nhi\n\n" + marker + " end 0\n";
  whole.err = marker + " begin\n\n" + marker + " end 0\n";
  const auto results = split_batch(marker, {sh("echo hi")}, whole);
  ASSERT_TRUE(results);
  EXPECT_EQ((*results)[0].out, "hi\n");
}

TEST(Batch, ConcurrentQueriesRunTogetherAndAreFramedInStepOrder) {
  auto dir = util::TempDir::create("kload-batch-test");
  ASSERT_TRUE(dir);
  const auto flag = (dir->path() / "flag").string();
  const auto results = run_batch({query(waits_for(flag)), query("printf 'warn' >&2; exit 3"),
                                  query("touch '" + flag + "'; printf 'no newline'"), sh("echo after")},
                                 {}, 10'000ms, dir->path().string());
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 4u);
  EXPECT_EQ((*results)[0].out, "saw\n");
  EXPECT_EQ((*results)[0].exit_code, 0);
  EXPECT_EQ((*results)[1].err, "warn");
  EXPECT_EQ((*results)[1].exit_code, 3);
  EXPECT_EQ((*results)[2].out, "no newline");
  EXPECT_EQ((*results)[3].out, "after\n");
  // What the queries wrote went with the script.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir->path()), fs::directory_iterator()), 1) << "only the flag";
}

TEST(Batch, ConcurrentQueriesRunOneByOneWhereNoTemporaryDirectoryCanBeMade) {
  const auto results = run_batch({query("printf one"), query("exit 5"), query("printf three")}, {}, 10'000ms,
                                 "/nonexistent/kload");
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 3u);
  EXPECT_EQ((*results)[0].out, "one");
  EXPECT_EQ((*results)[1].exit_code, 5);
  EXPECT_EQ((*results)[2].out, "three");
}

TEST(Batch, OnlyQueriesRunConcurrently) {
  // A step that stops the batch on failure runs in order, whatever it asks: here the
  // flag it waits for appears only after it.
  auto dir = util::TempDir::create("kload-batch-test");
  ASSERT_TRUE(dir);
  const auto flag = (dir->path() / "flag").string();
  BatchStep waits{{"sh", "-c", waits_for(flag, 20)}, false, true, true};
  const auto results = run_batch({waits, query("touch '" + flag + "'")}, {}, 10'000ms, dir->path().string());
  ASSERT_TRUE(results);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ((*results)[0].exit_code, 9);
}

TEST(Batch, TheTestEmulatorReadsConcurrentStepsBackOnceEachInOrder) {
  const std::vector<BatchStep> steps{query("a"), query("b"), sh("c")};
  const auto decoded = testing::decode_batch(batch_script("kload-batch-y", steps));
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->second.size(), 3u);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(decoded->second[i].words, steps[i].words);
    EXPECT_EQ(decoded->second[i].stop_on_failure, steps[i].stop_on_failure);
  }
}

TEST(Batch, TheTestEmulatorReadsTheScriptBackExactly) {
  const std::vector<BatchStep> steps{{{"ctr", "images", "import", "-"}, true, true}, sh("it's", false)};
  const auto decoded = testing::decode_batch(batch_script("kload-batch-y", steps));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->first, "kload-batch-y");
  ASSERT_EQ(decoded->second.size(), 2u);
  EXPECT_EQ(decoded->second[0].words, steps[0].words);
  EXPECT_TRUE(decoded->second[0].reads_stdin);
  EXPECT_TRUE(decoded->second[0].stop_on_failure);
  EXPECT_EQ(decoded->second[1].words, steps[1].words);
  EXPECT_FALSE(decoded->second[1].reads_stdin);
  EXPECT_FALSE(decoded->second[1].stop_on_failure);
}

} // namespace
} // namespace kload::node
