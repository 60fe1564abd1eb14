// Names that are not names, through the CLI: each refused with one error line that
// names the archive and the name, with exit 2, before any node is touched. The node
// given is a socket that does not exist: had kload gone on to it, that node would
// have failed with exit 1.

#include "support/test_support.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace kload::testing {
namespace {

const std::string absent_node = "containerd:///nonexistent/kload-test.sock";

// Writes a docker-save archive of one image named `name` (mkimage takes any name).
std::string archive(const Scratch& scratch, const std::string& file, const std::string& name,
                    const std::string& layer = "base:4K", const std::vector<std::string>& extra = {}) {
  const auto path = (scratch / file).string();
  std::vector<std::string> args{"--image=" + name + "=" + layer};  // one word: a name may start with '-'

  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(path);
  EXPECT_TRUE(mkimage(args)) << name;
  return path;
}

// The one "kload: error:" line of stderr, or "" when there is not exactly one.
std::string error_line(const CommandResult& r) {
  std::string found;
  int count = 0;
  for (const auto& line : split_lines(r.err)) {
    if (line.starts_with("kload: error: ")) {
      found = line;
      ++count;
    }
  }
  return count == 1 ? found : "";
}

void expect_refused(const std::vector<std::string>& args, const std::vector<std::string>& words) {
  auto full = args;
  full.insert(full.end(), {"--node", absent_node, "--no-cache"});
  const auto r = kload(full);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto line = error_line(r);
  ASSERT_FALSE(line.empty()) << "not exactly one error line:\n" << r.err;
  for (const auto& w : words) {
    EXPECT_NE(line.find(w), std::string::npos) << "no \"" << w << "\" in: " << line;
  }
  EXPECT_EQ(r.err.find("nonexistent"), std::string::npos) << "the node was tried:\n" << r.err;
}

TEST(CliNames, NamesTheReferenceGrammarRejectsAreRefused) {
  Scratch scratch;
  const std::string too_long(250, 'a');
  for (const std::string& name : std::vector<std::string>{"a..b:v1", "-x.io/app:v1", "App:v1", "x.io:80a/app:v1",
                                                          too_long + ":v1"}) {
    const auto file = archive(scratch, "bad.tar", name);
    expect_refused({"image-archive", file}, {"bad.tar", "invalid image name", name});
    std::filesystem::remove(file);
  }
}

TEST(CliNames, TheStagingNamespaceIsRefusedInAnArchiveAndInNameAs) {
  Scratch scratch;
  const auto file = archive(scratch, "staging.tar", "localhost/kload-staging/app:v1");
  expect_refused({"image-archive", file}, {"staging.tar", "localhost/kload-staging/app:v1", "staging namespace"});
  const auto unnamed = archive(scratch, "unnamed.tar", "app:v1", "base:4K", {"--layout", "oci"});
  expect_refused({"image-archive", unnamed, "--name-as", "localhost/kload-staging/x:1"},
                 {"--name-as", "localhost/kload-staging/x:1"});
}

TEST(CliNames, ADigestNameThatIsNotTheImagesManifestIsRefused) {
  Scratch scratch;
  const auto file = archive(scratch, "digest.tar", "app:v1");
  // Give the image a second tag carrying a digest that names another manifest.
  const std::string wrong = "sha256:" + std::string(64, '1');
  const auto edit = run_command(
      {"python3", "-c",
       "import json,sys,tarfile,io\n"
       "src,dst,digest=sys.argv[1:]\n"
       "with tarfile.open(src) as t, tarfile.open(dst,'w') as o:\n"
       "  for m in t.getmembers():\n"
       "    data=t.extractfile(m).read() if m.isfile() else None\n"
       "    if m.name=='manifest.json':\n"
       "      j=json.loads(data); j[0]['RepoTags'].append('nginx:1@'+digest); data=json.dumps(j).encode()\n"
       "      m.size=len(data)\n"
       "    o.addfile(m, io.BytesIO(data) if data is not None else None)\n",
       file, (scratch / "lying.tar").string(), wrong});
  ASSERT_EQ(edit.exit_code, 0) << edit.err;
  expect_refused({"image-archive", (scratch / "lying.tar").string()},
                 {"lying.tar", "docker.io/library/nginx:1@" + wrong, "names manifest"});
}

TEST(CliNames, OneNameOnTwoImagesIsAnErrorNamingBothArchives) {
  Scratch scratch;
  const auto one = archive(scratch, "one.tar", "app:v1", "base:4K");
  const auto two = archive(scratch, "two.tar", "app:v1", "other:4K");
  expect_refused({"image-archive", one, two},
                 {"docker.io/library/app:v1", "two different images", "one.tar", "two.tar"});
}

TEST(CliNames, AnUnnamedImageBesideANamedOneIsAnErrorNotDropped) {
  Scratch scratch;
  // skopeo's oci-archive layout with only a tag as the ref name: no name.
  const auto unnamed = archive(scratch, "unnamed.tar", "app:v1", "base:4K", {"--layout", "oci"});
  const auto named = archive(scratch, "named.tar", "sidecar:v1", "side:4K");
  expect_refused({"image-archive", named, unnamed}, {"unnamed.tar", "has no name", "--name-as"});
  // Alone, too, with the same advice.
  expect_refused({"image-archive", unnamed}, {"unnamed.tar", "has no name", "--name-as"});
}

TEST(CliNames, NameAsMustBeAValidName) {
  Scratch scratch;
  const auto unnamed = archive(scratch, "unnamed.tar", "app:v1", "base:4K", {"--layout", "oci"});
  expect_refused({"image-archive", unnamed, "--name-as", "a..b"}, {"--name-as", "a..b"});
  expect_refused({"image-archive", unnamed, "--name-as", "app@sha256:" + std::string(64, '1')},
                 {"--name-as", "not a digest"});
}

TEST(CliNames, DockerImageRefusesBadAndStagingNamesBeforeAskingDockerOrANode) {
  // Without docker on PATH: had kload asked Docker, the error would say so.
  for (const std::string ref : {"localhost/kload-staging/app:v1", "a..b:v1"}) {
    const auto r = run_command({"env", "PATH=/nonexistent", kload_binary().string(), "docker-image", ref, "--node",
                                absent_node, "--no-cache"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    const auto line = error_line(r);
    EXPECT_NE(line.find(ref), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("docker is not installed"), std::string::npos) << r.err;
  }
}

// On a real node: --name-as names the unnamed image, beside a named one.
TEST(E2ECliNames, NameAsNamesTheUnnamedImageBesideANamedOne) {
  Scratch scratch;
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto unnamed = archive(scratch, "unnamed.tar", "app:v1", "base:4K", {"--layout", "oci"});
  const auto named = archive(scratch, "named.tar", "sidecar:v1", "side:4K");
  const auto r = kload({"image-archive", named, unnamed, "--name-as", "dev:v1", "--node", lab.uris()[0], "--no-cache"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto images = lab.images(1);
  const auto has = [&](const std::string& name) {
    return std::any_of(images.begin(), images.end(),
                       [&](const auto& i) { return i.first == name && i.second.complete; });
  };
  EXPECT_TRUE(has("docker.io/library/dev:v1")) << r.err;
  EXPECT_TRUE(has("docker.io/library/sidecar:v1")) << r.err;
  EXPECT_EQ(images.size(), 2u);
}

} // namespace
} // namespace kload::testing
