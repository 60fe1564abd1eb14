// kload as kind: which kind command lines kload serves and how it reads them (as
// cobra and pflag read them), which it hands on, how it finds the real kind on PATH;
// then the binary through a link named kind, with a stand-in for the real kind that
// records what it was given.

#include "kload/cli/kind_dropin.h"

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <string>
#include <vector>

namespace kload::testing {
namespace {

using cli::KindHandOn;
using cli::KindLoad;
using cli::KindVerb;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

cli::KindRoute route(const std::vector<std::string>& args, const char* env = nullptr,
                     const char* provider = nullptr) {
  return cli::route_kind_args(args, env, provider);
}

// The load kload serves for `args`; fails the test when they are handed on.
KindLoad served(const std::vector<std::string>& args, const char* env = nullptr) {
  const auto r = route(args, env);
  if (const auto* hand_on = std::get_if<KindHandOn>(&r)) {
    ADD_FAILURE() << "handed on (" << hand_on->why << "): " << ::testing::PrintToString(args);
    return {};
  }
  return std::get<KindLoad>(r);
}

bool handed_on(const std::vector<std::string>& args, const char* env = nullptr) {
  return std::holds_alternative<KindHandOn>(route(args, env));
}

TEST(KindRoute, DockerImageWithTheDefaults) {
  const auto load = served({"load", "docker-image", "app:dev"});
  EXPECT_EQ(load.verb, KindVerb::docker_image);
  EXPECT_THAT(load.inputs, ElementsAre("app:dev"));
  EXPECT_EQ(load.cluster, "kind");
  EXPECT_THAT(load.nodes, IsEmpty());
  EXPECT_FALSE(load.quiet);
  EXPECT_FALSE(load.help);
}

TEST(KindRoute, ImageArchiveOfSeveralFiles) {
  const auto load = served({"load", "image-archive", "a.tar", "b.tar", "--name", "dev"});
  EXPECT_EQ(load.verb, KindVerb::image_archive);
  EXPECT_THAT(load.inputs, ElementsAre("a.tar", "b.tar"));
  EXPECT_EQ(load.cluster, "dev");
}

TEST(KindRoute, EveryFormOfTheClusterName) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"load", "docker-image", "app:dev", "--name", "dev"},  // kind's documentation
           {"load", "docker-image", "--name=dev", "app:dev"},     // Skaffold, Tilt, Makefiles
           {"load", "docker-image", "--name", "dev", "app:dev"},
           {"load", "docker-image", "-n", "dev", "app:dev"},
           {"load", "docker-image", "-ndev", "app:dev"},
           {"load", "docker-image", "-n=dev", "app:dev"},
           {"-n", "dev", "load", "docker-image", "app:dev"},  // cobra takes flags before the command words too
           {"load", "--name", "dev", "docker-image", "app:dev"},
       }) {
    const auto load = served(args);
    EXPECT_EQ(load.cluster, "dev") << ::testing::PrintToString(args);
    EXPECT_THAT(load.inputs, ElementsAre("app:dev")) << ::testing::PrintToString(args);
  }
}

TEST(KindRoute, TheLastNameWins) {
  EXPECT_EQ(served({"load", "docker-image", "x", "--name", "a", "-n", "b"}).cluster, "b");
}

TEST(KindRoute, KindClusterNameIsTheDefaultThatNameOverrides) {
  EXPECT_EQ(served({"load", "docker-image", "app:dev"}, "from-env").cluster, "from-env");
  EXPECT_EQ(served({"load", "docker-image", "app:dev", "--name", "given"}, "from-env").cluster, "given");
  EXPECT_EQ(served({"load", "image-archive", "a.tar"}, "from-env").cluster, "from-env");
  EXPECT_EQ(served({"load", "docker-image", "app:dev"}, "").cluster, "kind");
}

TEST(KindRoute, NodesAreACommaListThatAddsUp) {
  EXPECT_THAT(served({"load", "docker-image", "x", "--nodes", "a,b"}).nodes, ElementsAre("a", "b"));
  EXPECT_THAT(served({"load", "docker-image", "x", "--nodes=a,b"}).nodes, ElementsAre("a", "b"));
  EXPECT_THAT(served({"load", "docker-image", "x", "--nodes", "a", "--nodes=b,c"}).nodes, ElementsAre("a", "b", "c"));
  EXPECT_THAT(served({"load", "docker-image", "x", "--nodes="}).nodes, IsEmpty());
}

TEST(KindRoute, GlobalFlags) {
  auto load = served({"load", "docker-image", "x", "-q", "-v", "3"});
  EXPECT_TRUE(load.quiet);
  EXPECT_EQ(load.verbosity, 3);
  EXPECT_EQ(served({"-v=2", "load", "docker-image", "x"}).verbosity, 2);
  EXPECT_EQ(served({"load", "docker-image", "x", "-v7"}).verbosity, 7);
  EXPECT_EQ(served({"load", "docker-image", "x", "--verbosity", "4"}).verbosity, 4);
  EXPECT_TRUE(served({"--quiet", "load", "docker-image", "x"}).quiet);
  EXPECT_FALSE(served({"load", "docker-image", "x", "--quiet=false"}).quiet);
  EXPECT_FALSE(served({"load", "docker-image", "x", "-q=0"}).quiet);
  // Shorthands share a word, the last one taking the value.
  load = served({"load", "docker-image", "x", "-qn", "dev"});
  EXPECT_TRUE(load.quiet);
  EXPECT_EQ(load.cluster, "dev");
  load = served({"load", "docker-image", "x", "-qv3"});
  EXPECT_TRUE(load.quiet);
  EXPECT_EQ(load.verbosity, 3);
}

TEST(KindRoute, HelpIsServedWithoutInputs) {
  EXPECT_TRUE(served({"load", "docker-image", "--help"}).help);
  EXPECT_TRUE(served({"load", "image-archive", "-h"}).help);
}

TEST(KindRoute, DoubleDashEndsTheFlags) {
  const auto load = served({"load", "docker-image", "--name", "dev", "--", "-odd"});
  EXPECT_THAT(load.inputs, ElementsAre("-odd"));
  EXPECT_EQ(load.cluster, "dev");
}

TEST(KindRoute, OtherCommandsAreHandedOn) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"version"},
           {"--version"},
           {"get", "clusters"},
           {"create", "cluster", "--name", "dev"},
           {"delete", "cluster"},
           {"load"},
           {"load", "--help"},
           {"help", "load", "docker-image"},
           {"load", "container-image", "x"},
           {"export", "logs"},
       }) {
    EXPECT_TRUE(handed_on(args)) << ::testing::PrintToString(args);
  }
}

TEST(KindRoute, LoadsKindWouldRefuseAreHandedOnForKindToSaySo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"load", "docker-image"},                                  // no image
           {"load", "image-archive", "--name", "dev"},                // no archive
           {"load", "docker-image", "x", "--bogus"},                  // a flag kind does not have
           {"load", "docker-image", "x", "-x"},                       // nor a shorthand
           {"load", "docker-image", "x", "--node", "docker://n"},     // kload's own flag, not kind's
           {"load", "docker-image", "x", "--name"},                   // a value missing
           {"load", "docker-image", "x", "-n"},
           {"load", "docker-image", "x", "-v", "many"},               // not a number
           {"load", "docker-image", "x", "--quiet=perhaps"},
           {"load", "docker-image", "x", "--name", ""},               // an empty cluster name
       }) {
    EXPECT_TRUE(handed_on(args)) << ::testing::PrintToString(args);
  }
}

// KIND_EXPERIMENTAL_PROVIDER: archives go to Podman-hosted nodes as to Docker-hosted
// ones; docker-image under Podman means Podman's image store, which only kind reads.
TEST(KindRoute, TheProviderDecidesWhatIsServed) {
  const std::vector<std::string> archive{"load", "image-archive", "a.tar"};
  const std::vector<std::string> image{"load", "docker-image", "app:dev"};
  EXPECT_FALSE(std::holds_alternative<KindHandOn>(route(archive, nullptr, "podman")));
  EXPECT_FALSE(std::holds_alternative<KindHandOn>(route(image, nullptr, "docker")));
  EXPECT_FALSE(std::holds_alternative<KindHandOn>(route(image, nullptr, "")));
  const auto podman_image = route(image, nullptr, "podman");
  ASSERT_TRUE(std::holds_alternative<KindHandOn>(podman_image));
  EXPECT_EQ(std::get<KindHandOn>(podman_image).why, "docker-image from Podman's image store");
  const auto nerdctl = route(archive, nullptr, "nerdctl");
  ASSERT_TRUE(std::holds_alternative<KindHandOn>(nerdctl));
  EXPECT_EQ(std::get<KindHandOn>(nerdctl).why, "KIND_EXPERIMENTAL_PROVIDER=nerdctl");
  EXPECT_TRUE(std::holds_alternative<KindHandOn>(route(archive, nullptr, "finch")));
}

TEST(KindArgv, ByProgramNameOrByCommand) {
  std::string kind = "kind", path_kind = "/home/u/.local/bin/kind", kload = "kload", kindly = "kindly",
              version = "version";
  char* as_kind[] = {kind.data(), version.data(), nullptr};
  EXPECT_EQ(cli::kind_argv(2, as_kind).size(), 2U);
  char* as_path_kind[] = {path_kind.data(), nullptr};
  EXPECT_EQ(cli::kind_argv(1, as_path_kind).size(), 1U);
  char* as_command[] = {kload.data(), kind.data(), version.data(), nullptr};
  const auto span = cli::kind_argv(3, as_command);
  ASSERT_EQ(span.size(), 2U);
  EXPECT_EQ(std::string(span[0]), "kind");
  char* as_kload[] = {kload.data(), version.data(), nullptr};
  EXPECT_TRUE(cli::kind_argv(2, as_kload).empty());
  char* as_kindly[] = {kindly.data(), nullptr};
  EXPECT_TRUE(cli::kind_argv(1, as_kindly).empty());
}

TEST(KindPassed, ParsesWhatItWrites) {
  const auto ids = cli::parse_passed("12:345 junk 6: :7 8:9x 66305:1048577");
  ASSERT_EQ(ids.size(), 2U);
  EXPECT_EQ(ids[0], (cli::FileId{12, 345}));
  EXPECT_EQ(ids[1], (cli::FileId{66305, 1048577}));
  EXPECT_TRUE(cli::parse_passed("").empty());
}

// An executable script at `path`.
void write_script(const std::filesystem::path& path, const std::string& body) {
  write_file(path, "#!/bin/sh\n" + body);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

TEST(FindRealKind, SkipsLinksAndCopiesOfKloadAndWhatIsNoProgram) {
  Scratch scratch;
  for (const auto* d : {"link", "hard", "plain", "dir", "real", "later"}) {
    std::filesystem::create_directories(scratch / d);
  }
  const auto kload = scratch / "kload";
  write_script(kload, "exit 0\n");
  std::filesystem::create_symlink(kload, scratch / "link" / "kind");
  std::filesystem::create_hard_link(kload, scratch / "hard" / "kind");
  write_file(scratch / "plain" / "kind", "not executable");
  std::filesystem::create_directories(scratch / "dir" / "kind");
  write_script(scratch / "real" / "kind", "exit 0\n");
  write_script(scratch / "later" / "kind", "exit 0\n");
  const auto self = cli::file_id(kload);
  ASSERT_TRUE(self);
  const std::string path = (scratch / "missing").string() + ":" + (scratch / "link").string() + ":" +
                           (scratch / "hard").string() + ":" + (scratch / "plain").string() + ":" +
                           (scratch / "dir").string() + ":" + (scratch / "real").string() + ":" +
                           (scratch / "later").string();
  const std::vector<cli::FileId> skip{*self};
  EXPECT_EQ(cli::find_real_kind(path, skip), scratch / "real" / "kind");
  // Without kload to skip, the link is the first kind.
  EXPECT_EQ(cli::find_real_kind(path, {}), scratch / "link" / "kind");
  // A kload the command already passed is skipped too.
  const std::vector<cli::FileId> both{*self, *cli::file_id(scratch / "real" / "kind")};
  EXPECT_EQ(cli::find_real_kind(path, both), scratch / "later" / "kind");
  EXPECT_EQ(cli::find_real_kind((scratch / "link").string(), skip), std::nullopt);
  EXPECT_EQ(cli::find_real_kind("", skip), std::nullopt);
}

// The kload binary behind a link named kind in `bin`, first on PATH, and a stand-in
// for the real kind in `real` that prints its arguments and the environment
// variable PROBE, reads a line of stdin, and exits 3.
class KindDropIn : public ::testing::Test {
protected:
  void SetUp() override {
    std::filesystem::create_directories(bin);
    std::filesystem::create_directories(real);
    std::filesystem::create_symlink(kload_binary(), bin / "kind");
    write_script(real / "kind", "printf 'args:'; printf ' [%s]' \"$@\"; echo; echo \"probe:$PROBE\"\n"
                                "read line; echo \"stdin:$line\"; echo to-stderr >&2; exit 3\n");
    write_file(scratch / "stdin", "a line\n");
  }

  // Runs `argv` with PATH = bin, then `path_rest`, then the system's directories.
  CommandResult run(const std::vector<std::string>& argv, const std::string& path_rest,
                    const std::vector<std::string>& env = {}) const {
    std::vector<std::string> full{"env", "PATH=" + bin.string() + ":" + path_rest + ":/usr/bin:/bin", "PROBE=kept"};
    full.insert(full.end(), env.begin(), env.end());
    full.insert(full.end(), argv.begin(), argv.end());
    return run_command(full, (scratch / "stdin").string());
  }

  Scratch scratch;
  std::filesystem::path bin = scratch / "bin";
  std::filesystem::path real = scratch / "real";
};

TEST_F(KindDropIn, OtherCommandsReachTheRealKindUnchanged) {
  const auto r = run({"kind", "get", "clusters", "--name=x y", ""}, real.string());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "args: [get] [clusters] [--name=x y] []\nprobe:kept\nstdin:a line\n");
  EXPECT_EQ(r.err, "to-stderr\n");
}

TEST_F(KindDropIn, KloadKindIsTheSameAsALinkNamedKind) {
  const auto r = run({kload_binary().string(), "kind", "version"}, real.string());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "args: [version]\nprobe:kept\nstdin:a line\n");
}

TEST_F(KindDropIn, ALoadKindWouldRefuseReachesTheRealKind) {
  const auto r = run({"kind", "load", "docker-image", "--no-such-flag", "app:dev"}, real.string());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.out, HasSubstr("args: [load] [docker-image] [--no-such-flag] [app:dev]"));
}

TEST_F(KindDropIn, TwoKloadsNamedKindDoNotHandTheCommandToEachOther) {
  // A copy of kload named kind after the link: each would take the other for the real kind.
  const auto copy = scratch / "copy";
  std::filesystem::create_directories(copy);
  std::filesystem::copy_file(kload_binary(), copy / "kind");
  std::filesystem::permissions(copy / "kind", std::filesystem::perms::owner_all);
  const auto r = run({"kind", "version"}, copy.string() + ":" + real.string());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.out, HasSubstr("args: [version]"));
  const auto none = run({"kind", "version"}, copy.string());
  EXPECT_EQ(none.exit_code, 127) << none.err;
}

TEST_F(KindDropIn, NoRealKindIsOneLineAnd127) {
  const auto r = run({"kind", "create", "cluster"}, (scratch / "nothing").string());
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_EQ(split_lines(r.err).size(), 1U) << r.err;
  EXPECT_THAT(r.err, HasSubstr("\"kind create cluster\""));
  EXPECT_THAT(r.err, HasSubstr("no other kind on PATH"));
  EXPECT_EQ(r.out, "");
}

TEST_F(KindDropIn, HelpOfALoadIsKloads) {
  const auto r = run({"kind", "load", "docker-image", "--help"}, real.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("kind load docker-image <IMAGE> [IMAGE...] [flags]"));
  EXPECT_THAT(r.out, HasSubstr("--nodes strings"));
  EXPECT_THAT(r.out, Not(HasSubstr("args:")));
}

TEST_F(KindDropIn, AServedLoadThatFailsSaysErrorAsKindDoesAndExits1) {
  // kload serves it (the stand-in is not run): an archive that does not exist is
  // kload's bad input, which kind's callers know as exit 1.
  const auto r = run({"kind", "load", "image-archive", (scratch / "absent.tar").string(), "--name",
                      "kload-no-such-cluster"},
                     real.string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("args:")));
  EXPECT_THAT(r.err, HasSubstr("ERROR: "));
  EXPECT_THAT(r.err, Not(HasSubstr("kload: error:")));
}

TEST_F(KindDropIn, QuietLeavesStderrEmpty) {
  const auto r = run({"kind", "-q", "load", "image-archive", (scratch / "absent.tar").string(), "--name",
                      "kload-no-such-cluster"},
                     real.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "");
}

} // namespace
} // namespace kload::testing
