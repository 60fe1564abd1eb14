// The commands around the loads: help, version, an unknown command, completion
// scripts run by the real shells, and the nodes named by KLOAD_NODES.

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kload::testing {
namespace {

using ::testing::HasSubstr;

// Skips unless `shell` is installed (tools/dev deps installs bash, zsh and fish).
#define REQUIRE_SHELL(shell)                                                                     \
  do {                                                                                           \
    if (!std::filesystem::exists("/usr/bin/" shell) && !std::filesystem::exists("/bin/" shell)) { \
      GTEST_SKIP() << "no " shell " (Debian package " shell "; tools/dev deps installs it)";      \
    }                                                                                            \
  } while (0)

TEST(EverydayCli, VersionAndHelpOfACommand) {
  auto version = kload({"version"});
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out, kload({"--version"}).out);
  EXPECT_THAT(version.out, ::testing::StartsWith("kload "));

  auto help = kload({"help", "docker-image"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  EXPECT_EQ(help.out, kload({"docker-image", "--help"}).out);
  EXPECT_THAT(help.out, HasSubstr("--nodes"));
  auto top = kload({"help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("completion"));
}

// The long options (--name) of a text, in order, each once.
std::vector<std::string> long_options(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t at = text.find("--"); at != std::string::npos; at = text.find("--", at + 2)) {
    if (at > 0 && (std::isalnum(static_cast<unsigned char>(text[at - 1])) != 0 || text[at - 1] == '-')) {
      continue;
    }
    std::size_t end = at + 2;
    while (end < text.size() && (std::islower(static_cast<unsigned char>(text[end])) != 0 || text[end] == '-')) {
      ++end;
    }
    auto option = text.substr(at, end - at);
    if (option.size() > 2 && std::find(out.begin(), out.end(), option) == out.end()) {
      out.push_back(option);
    }
  }
  return out;
}

// README's synopsis of `kload COMMAND` (the line in its Use block), or "".
std::string synopsis(const std::string& readme, const std::string& command) {
  const auto at = readme.find("\nkload " + command + " ");
  return at == std::string::npos ? "" : readme.substr(at + 1, readme.find('\n', at + 1) - at - 1);
}

// Issue 13: `--help` of every command matches README: every option a command takes is
// explained in README, and every option README's synopsis gives a command, it takes.
TEST(EverydayCli, EveryCommandsHelpAndReadmeNameTheSameOptions) {
  std::ifstream in(source_dir() / "README.md");
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(readme.empty());
  for (const std::string command : {"docker-image", "image-archive", "inspect", "cache", "ls", "rm", "prune", "push"}) {
    const auto help = kload({command, "--help"});
    ASSERT_EQ(help.exit_code, 0) << command << ": " << help.err;
    const auto taken = long_options(help.out);
    EXPECT_GT(taken.size(), 1u) << command;
    for (const auto& option : taken) {
      if (option == "--help") {
        continue;  // every command's, and said once for all
      }
      EXPECT_NE(readme.find(option), std::string::npos) << "kload " << command << " " << option << " is not in README";
    }
    const auto line = synopsis(readme, command);
    ASSERT_FALSE(line.empty()) << "README has no synopsis of kload " << command;
    for (const auto& option : long_options(line)) {
      EXPECT_NE(std::find(taken.begin(), taken.end(), option), taken.end())
          << "README's synopsis gives kload " << command << " " << option << ", which its --help does not have";
    }
  }
}

TEST(EverydayCli, AnUnknownCommandIsNamedWithTheListOfCommands) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"lod", "app.tar"}, {"help", "lod"}}) {
    auto r = kload(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("unknown command 'lod'"));
    EXPECT_THAT(r.err, HasSubstr("image-archive, docker-image"));
    EXPECT_EQ(r.out, "");
  }
  auto shell = kload({"completion", "tcsh"});
  EXPECT_EQ(shell.exit_code, 2);
  EXPECT_THAT(shell.err, HasSubstr("no completion for shell \"tcsh\": kload completes bash, zsh and fish"));
}

class Completion : public ::testing::Test {
protected:
  Scratch scratch;

  std::string script(const std::string& shell) {
    auto r = kload({"completion", shell});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto path = (scratch / ("kload." + shell)).string();
    write_file(path, r.out);
    return path;
  }
};

// What bash offers for the words of `line` (the last one being completed), with the
// script loaded as `source <(kload completion bash)` does, in `dir`.
std::string bash_offers(const std::string& script, const std::string& dir, const std::vector<std::string>& words) {
  std::string array;
  for (const auto& w : words) {
    array += " '" + w + "'";
  }
  const auto program = "cd '" + dir + "' && source '" + script + "' && _kload_docker_images() { printf '%s\\n' app:dev base:v1; } && COMP_WORDS=(" +
                       array + ") && COMP_CWORD=" + std::to_string(words.size() - 1) +
                       " && _kload && for w in \"${COMPREPLY[@]}\"; do printf '%s\\n' \"$w\"; done";
  auto r = run_command({"bash", "-c", program});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST_F(Completion, BashCompletesCommandsOptionsFilesImagesAndWords) {
  const auto bash = script("bash");
  write_file(scratch / "app.tar", "");
  const auto dir = scratch.path().string();
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "ima"}), "image-archive\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "image-archive", "--no"}), "--no-lint\n--no-cache\n--node\n--nodes\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "image-archive", "ap"}), "app.tar\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "docker-image", "ap"}), "app:dev\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "cache", "f"}), "forget\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "help", "docker"}), "docker-image\n");
  EXPECT_EQ(bash_offers(bash, dir, {"kload", "image-archive", "--platform", ""}), "") << "a value, not a file";
}

TEST_F(Completion, FishCompletesCommandsOptionsAndWords) {
  REQUIRE_SHELL("fish");
  const auto fish = script("fish");
  auto r = run_command({"fish", "-c",
                        "source '" + fish +
                            "'; complete -C 'kload ima'; complete -C 'kload image-archive --no-'; "
                            "complete -C 'kload cache f'; complete -C 'kload completion z'"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_THAT(lines[0], ::testing::StartsWith("image-archive\tLoad images from archives"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("--no-cache\t"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("--no-lint\t"));
  EXPECT_EQ(lines[3], "forget");
  EXPECT_EQ(lines[4], "zsh");
}

TEST_F(Completion, ZshLoadsTheScriptAndRegistersItForKload) {
  REQUIRE_SHELL("zsh");
  const auto zsh = script("zsh");
  EXPECT_EQ(run_command({"zsh", "-n", zsh}).exit_code, 0) << "syntax";
  auto r = run_command({"zsh", "-f", "-c",
                        "autoload -U compinit && compinit -u -D && source '" + zsh +
                            "' && print -r -- $_comps[kload] && whence -w _kload_docker_images"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "_kload\n_kload_docker_images: function\n");
}

TEST(EverydayCli, InspectCountsALayerListedTwiceInOneImageOnce) {
  Scratch scratch;
  const auto twice = (scratch / "twice.tar").string();
  ASSERT_TRUE(mkimage({"--layout", "oci", "--image", "app:v1=base:4K,top:2K,base:4K", twice}));
  auto r = kload({"inspect", twice});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("shared by"))) << r.out;
  auto j = nlohmann::json::parse(kload({"inspect", "--json", twice}).out);
  for (const auto& l : j["images"][0]["layers"]) {
    EXPECT_EQ(l["usedByImages"], 1) << l.dump();
  }
}

TEST(EverydayCli, InspectVerifyCountsBlobsHashedAsACompressedInputWasRead) {
  Scratch scratch;
  const auto plain = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K,top:2K", plain}));
  ASSERT_EQ(run_command({"gzip", "-k", plain}).exit_code, 0);
  const auto gz = nlohmann::json::parse(kload({"inspect", "--verify", "--json", plain + ".gz"}).out)["verified"];
  const auto in_place = nlohmann::json::parse(kload({"inspect", "--verify", "--json", plain}).out)["verified"];
  EXPECT_EQ(gz["blobs"], 4) << "the manifest, the config and two layers: " << gz.dump();
  EXPECT_EQ(gz["blobsHashedNow"], 0) << "hashed as the stream was read";
  EXPECT_EQ(in_place["blobs"], 4);
  EXPECT_EQ(in_place["blobsHashedNow"], 2) << "the layers; the documents were hashed as they were read";
  EXPECT_EQ(gz["bytes"], in_place["bytes"]);
  EXPECT_GT(gz["bytes"].get<std::uint64_t>(), 64u * 1024);
  auto text = kload({"inspect", "--verify", plain + ".gz"});
  EXPECT_THAT(text.out, HasSubstr("verified: 4 blobs ("));
  EXPECT_THAT(text.out, HasSubstr("(0 hashed now, the rest as they were read)"));
}

// The last line of stderr.
std::string last_line(const std::string& text) {
  const auto lines = split_lines(text);
  return lines.empty() ? "" : lines.back();
}

TEST(EverydayCli, TheSummarySaysWhatTheNodesHadAndNamesEveryFailedNode) {
  Scratch scratch;
  Lab lab(scratch / "lab", 1, LabKind{});
  ASSERT_TRUE(lab.up());
  const auto v1 = (scratch / "v1.tar").string();
  const auto v2 = (scratch / "v2.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K,top:4K", v1}));
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K,next:4K", v2}));
  const auto node = lab.uris()[0];
  auto first = kload({"image-archive", v1, "--no-cache", "--node", node});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(last_line(first.err), ::testing::StartsWith("1 image(s) on 1 node(s): sent 2 layers ("));
  EXPECT_THAT(last_line(first.err), ::testing::Not(HasSubstr("skipped")));

  auto dev = kload({"image-archive", v2, "--no-cache", "--node", node});
  ASSERT_EQ(dev.exit_code, 0) << dev.err;
  EXPECT_THAT(last_line(dev.err), ::testing::MatchesRegex(
                                      "1 image\\(s\\) on 1 node\\(s\\): sent 1 layers \\([0-9.]+ KiB\\), skipped 1 "
                                      "layers \\([0-9.]+ KiB\\) the nodes had, in .*"));

  const std::string absent = "containerd:///nonexistent/kload-test.sock";
  auto again = kload({"image-archive", v2, "--no-cache", "--node", node, "--node", absent});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  const auto summary = last_line(again.err);
  EXPECT_THAT(summary, HasSubstr("1 image(s) on 2 node(s): sent 0 layers (0 B), 1 node(s) already held every image"));
  EXPECT_THAT(summary, ::testing::EndsWith("; FAILED: \"nonexistent\"")) << "the node's short name";
}

TEST(EverydayCli, CacheStatsSpeaksJsonAndForgetAsksBeforeForgettingEveryNode) {
  Scratch scratch;
  const auto dir = (scratch / "cache").string();
  auto stats = kload({"cache", "stats", "--json", "--cache", dir});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const auto j = nlohmann::json::parse(stats.out);
  EXPECT_EQ(j["schema"], "kload.cache-stats/v1");
  EXPECT_EQ(j["nodes"], 0);

  auto all = kload({"cache", "forget", "--cache", dir});  // stdin is no terminal: nobody to ask
  EXPECT_EQ(all.exit_code, 2);
  EXPECT_THAT(all.err, HasSubstr("forgets every node's record: add --yes"));
  auto yes = kload({"cache", "forget", "--yes", "--cache", dir});
  EXPECT_EQ(yes.exit_code, 0) << yes.err;
  EXPECT_THAT(yes.err, HasSubstr("forgot 0 node(s)"));
  auto inputs = kload({"cache", "forget", "--inputs", "--cache", dir});
  EXPECT_EQ(inputs.exit_code, 0) << inputs.err;
  EXPECT_THAT(inputs.err, HasSubstr("forgot 0 input file(s)"));
  EXPECT_THAT(inputs.err, ::testing::Not(HasSubstr("node(s)"))) << "only the input records";
}

TEST(EverydayCli, KloadNodesNamesTheNodesOfACommand) {
  const std::string absent = "containerd:///nonexistent/kload-test.sock";
  auto r = run_command({"env", "KLOAD_NODES=" + absent + "\n", kload_binary().string(), "ls", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("KLOAD_NODES: 1 node(s)"));
  EXPECT_THAT(r.out, HasSubstr(absent));
  auto bare = kload({"ls", "--node", "kind-worker"});
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_THAT(bare.err, HasSubstr("--node \"kind-worker\" is not a node URI"));
  EXPECT_THAT(bare.err, HasSubstr("use docker://kind-worker, for the nodes of a kind cluster use --name kind-worker"));
  auto bad = run_command({"env", "KLOAD_NODES=kind", kload_binary().string(), "ls"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("KLOAD_NODES \"kind\" is not a node URI"));
}

} // namespace
} // namespace kload::testing
