#include "kload/format/run_lint.h"

#include <gtest/gtest.h>

namespace kload::format {
namespace {

using Words = std::vector<std::string>;

RunConfig entrypoint(Words words, std::optional<Words> cmd = std::nullopt) {
  return RunConfig{std::move(words), std::move(cmd)};
}

bool mentions(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

TEST(RunLint, SshdThenShellWarnsOnce) {
  const auto run = entrypoint({"/bin/sh", "-c", "/usr/sbin/sshd && /bin/bash"});
  EXPECT_EQ(describe_command(run), "/usr/sbin/sshd && /bin/bash");
  const auto warnings = lint_run_config(run);
  ASSERT_EQ(warnings.size(), 1u);
  const auto& w = warnings[0];
  EXPECT_TRUE(mentions(w, "sshd")) << w;
  EXPECT_TRUE(mentions(w, "TTY")) << w;
  EXPECT_TRUE(mentions(w, "code 0")) << w;
  EXPECT_TRUE(mentions(w, "restarts it forever")) << w;
  EXPECT_TRUE(mentions(w, "CrashLoopBackOff")) << w;
  EXPECT_TRUE(mentions(w, "sshd -D")) << w;
  EXPECT_TRUE(mentions(w, "/usr/sbin/sshd && /bin/bash")) << "the warning quotes the script: " << w;
  EXPECT_EQ(w.find('\n'), std::string::npos) << "one line";
}

TEST(RunLint, ShellFormInCmdToo) {
  const auto run = RunConfig{std::nullopt, Words{"sh", "-c", "service ssh start; bash"}};
  EXPECT_EQ(describe_command(run), "service ssh start; bash");
  const auto warnings = lint_run_config(run);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(mentions(warnings[0], "service")) << warnings[0];
  EXPECT_TRUE(mentions(warnings[0], "TTY")) << warnings[0];
}

TEST(RunLint, NothingToRunWarns) {
  for (const auto& run : {RunConfig{}, RunConfig{Words{}, Words{}}, RunConfig{std::nullopt, Words{}}}) {
    EXPECT_EQ(describe_command(run), "(none)");
    const auto warnings = lint_run_config(run);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_TRUE(mentions(warnings[0], "no Entrypoint and no Cmd")) << warnings[0];
  }
}

TEST(RunLint, ForegroundDaemonsDoNotWarn) {
  const RunConfig quiet[] = {
      entrypoint({"nginx", "-g", "daemon off;"}),
      entrypoint({"/usr/sbin/sshd", "-D"}),
      entrypoint({"/usr/sbin/sshd", "-D", "-e"}),
      entrypoint({"/bin/sh", "-c", "exec /usr/sbin/sshd -D"}),
      entrypoint({"/bin/sh", "-c", "echo starting && exec nginx -g 'daemon off;'"}),
      entrypoint({"httpd", "-DFOREGROUND"}),
      RunConfig{std::nullopt, Words{"/app/server", "--port", "8080"}},
      RunConfig{Words{"/docker-entrypoint.sh"}, Words{"postgres"}},
  };
  for (const auto& run : quiet) {
    const auto warnings = lint_run_config(run);
    EXPECT_TRUE(warnings.empty()) << describe_command(run) << ": " << warnings.front();
  }
}

TEST(RunLint, BackgroundingDaemonsInExecFormWarn) {
  const auto warnings = lint_run_config(entrypoint({"/usr/sbin/sshd"}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(mentions(warnings[0], "sshd -D")) << warnings[0];
  EXPECT_TRUE(mentions(warnings[0], "CrashLoopBackOff")) << warnings[0];

  const auto nginx = lint_run_config(entrypoint({"nginx"}));
  ASSERT_EQ(nginx.size(), 1u);
  EXPECT_TRUE(mentions(nginx[0], "daemon off")) << nginx[0];
}

TEST(RunLint, ScriptEndingInABareShellWarns) {
  const auto warnings = lint_run_config(entrypoint({"/bin/sh", "-c", "echo hello && /bin/bash"}));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(mentions(warnings[0], "interactive shell")) << warnings[0];
  EXPECT_TRUE(mentions(warnings[0], "TTY")) << warnings[0];
}

TEST(RunLint, DescribeCommand) {
  EXPECT_EQ(describe_command(entrypoint({"nginx", "-g", "daemon off;"})), "nginx -g \"daemon off;\"");
  EXPECT_EQ(describe_command(entrypoint({"/entry.sh"}, Words{"run", "--fast"})), "/entry.sh run --fast");
  EXPECT_EQ(describe_command(RunConfig{std::nullopt, Words{"/bin/sh"}}), "/bin/sh");
  // Entrypoint "sh -c" with the script in Cmd is shell form as well.
  EXPECT_EQ(describe_command(entrypoint({"/bin/sh", "-c"}, Words{"a && b"})), "a && b");
}

} // namespace
} // namespace kload::format

namespace kload::format {
namespace {

TEST(RunLint, EverySeparatorEndsACommandButAPipeDoesNot) {
  for (const std::string script : {"true && sshd", "false || sshd", "x; sshd", "x\nsshd", "x & sshd", "x &sshd"}) {
    const auto w = lint_run_config(RunConfig{Words{"/bin/sh", "-c", script}, std::nullopt});
    ASSERT_EQ(w.size(), 1u) << script;
    EXPECT_NE(w[0].find("sshd forks into the background"), std::string::npos) << w[0];
  }
  EXPECT_TRUE(lint_run_config(RunConfig{Words{"/bin/sh", "-c", "x | sshd"}, std::nullopt}).empty());
}

TEST(RunLint, ScriptsOfOnlySeparatorsAreNoCommands) {
  for (const std::string script : {";", "&&", " ; && || & \n ", "&"}) {
    EXPECT_TRUE(lint_run_config(RunConfig{Words{"/bin/sh", "-c", script}, std::nullopt}).empty()) << script;
  }
}

// A config is input: a script of millions of characters is linted in one pass (a
// regex once overflowed the stack here) and quoted in a warning only in part.
TEST(RunLint, HugeScriptsAreLintedAndQuotedShort) {
  const std::string script = "/usr/sbin/sshd" + std::string(3'000'000, ' ') + "&& bash" + std::string(1000, 'x');
  const auto w = lint_run_config(RunConfig{Words{"/bin/sh", "-c", script}, std::nullopt});
  ASSERT_EQ(w.size(), 1u);
  EXPECT_LT(w[0].size(), 1000u);
  EXPECT_NE(w[0].find("sshd forks into the background"), std::string::npos) << w[0].substr(0, 300);
}

} // namespace
} // namespace kload::format
