// kload in its users' world: nodes that are Docker containers shaped as kind's (tools/lab
// up --docker: kind's names and labels, CRI on, kind's containerd configuration), the
// real Docker engine building and saving the images, and the real `kind` binary beside
// kload. One suite per containerd version of the nodes; KLOAD_TEST_CONTAINERD picks it
// (2.x when unset).

#include "support/test_support.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <optional>
#include <random>

namespace kload::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::string containerd_version() {
  const char* env = std::getenv("KLOAD_TEST_CONTAINERD");
  return env != nullptr && *env != '\0' ? env : "2.x";
}

// The directory of the real kind binary (tools/thirdparty), and the shim directory
// that lets it exec into nodes on an engine that refuses privileged execs.
std::string kind_path() {
  const auto thirdparty = (source_dir() / "tools" / "thirdparty").string();
  auto r = run_command({thirdparty, "dir", "kind"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return (source_dir() / "tools" / "kind-shim").string() + ":" + split_lines(r.out).at(0) + ":" + std::getenv("PATH");
}

// Images built by the real engine from a busybox base of its own (`docker import` of
// Debian's static busybox: nothing is pulled), each tag unique to the test, removed
// when the test ends.
class Images {
public:
  Images() {
    std::random_device rd;
    prefix_ = "kload-e2e-" + std::to_string(rd() % 1000000) + "/app";
  }
  // By ID as well as by name: an image whose tag a rebuild took is left untagged.
  ~Images() {
    for (const auto& image : built_) {
      run_command({"docker", "rmi", "-f", image.name, image.id});
    }
  }
  Images(const Images&) = delete;
  Images& operator=(const Images&) = delete;

  struct Image {
    std::string name;  // as given to Docker, PREFIX:TAG
    std::string id;    // the engine's image ID
  };

  // Builds PREFIX:TAG, whose command prints `text`, with its context in `scratch`.
  Image build(const Scratch& scratch, const std::string& tag, const std::string& text) {
    if (!base_ready()) {
      ADD_FAILURE() << "cannot make the busybox base image";
      return {};
    }
    const auto ctx = scratch / ("ctx-" + tag);
    std::filesystem::create_directories(ctx);
    // The prefix makes the image this object's own: the same Dockerfile in another
    // test would give the same ID (the build cache), and that test's `rmi -f` of its
    // ID would take this test's name with it.
    write_file(ctx / "Dockerfile", "FROM " + std::string(base) + "\nRUN echo " + text + " > /msg && echo " +
                                       prefix_ + " > /.built-for\nCMD [\"/bin/cat\", \"/msg\"]\n");
    const auto name = prefix_ + ":" + tag;
    // No network: the build needs none, and the engine's default bridge may be absent.
    auto r = run_command({"docker", "build", "-q", "--network", "none", "-t", name, ctx.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    built_.push_back({name, split_lines(run_command({"docker", "image", "inspect", "-f", "{{.Id}}", name}).out).at(0)});
    return built_.back();
  }

  static constexpr const char* base = "kload-test-base:busybox";

private:
  static bool base_ready() {
    if (run_command({"docker", "image", "inspect", base}).exit_code == 0) {
      return true;
    }
    const std::string script =
        "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp \"$(command -v busybox)\" $d/bin/busybox; "
        "for c in sh cat echo ls sleep true; do ln -s busybox $d/bin/$c; done; "
        "tar -C $d -c . | docker import - " + std::string(base) + " >/dev/null; rm -rf $d";
    auto r = run_command({"sh", "-c", script});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0;
  }

  std::string prefix_;
  std::vector<Image> built_;
};

// Sets an environment variable while it lives: every program the test starts then
// inherits it.
class ScopedEnv {
public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) {
      old_ = old;
    }
    ::setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  std::string name_;
  std::optional<std::string> old_;
};

// A Docker engine of the test's own that stores images in containerd (tools/engine),
// removed when the test ends.
class PrivateEngine {
public:
  explicit PrivateEngine(std::filesystem::path dir) : dir_(std::move(dir)) {
    auto r = run_command({tool(), "up", dir_.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (r.exit_code == 0) {
      host_ = split_lines(r.out).at(0);
    }
  }
  ~PrivateEngine() {
    if (!host_.empty()) {
      auto r = run_command({tool(), "down", dir_.string()});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
  }
  PrivateEngine(const PrivateEngine&) = delete;
  PrivateEngine& operator=(const PrivateEngine&) = delete;

  // Its DOCKER_HOST; empty when it did not start.
  [[nodiscard]] const std::string& host() const { return host_; }

private:
  static std::string tool() { return (source_dir() / "tools" / "engine").string(); }
  std::filesystem::path dir_;
  std::string host_;
};

// "docker.io/" + name, as kind and containerd normalise a name with a path.
std::string full(const std::string& name) { return "docker.io/" + name; }

class E2EKind : public ::testing::Test {
protected:
  void SetUp() override { KLOAD_REQUIRE_DOCKER(); }

  LabKind kind() const { return LabKind{true, containerd_version()}; }

  // What `crictl images` shows for `name` on node `n`: its image ID, "" when absent.
  static std::string crictl_id(const Lab& lab, int n, const std::string& name) {
    auto r = lab.exec(n, {"crictl", "images", "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto listed = json::parse(r.out);
    for (const auto& image : listed["images"]) {
      for (const auto& tag : image["repoTags"]) {
        if (tag == name) {
          return image["id"].get<std::string>();
        }
      }
    }
    ADD_FAILURE() << "node " << n << ": crictl images lists no " << name << ":\n" << r.out;
    return "";
  }

  // Runs the image's command in a container on node `n` (ctr run) and returns its output.
  static std::string run_on(const Lab& lab, int n, const std::string& name) {
    auto r = lab.ctr(n, {"run", "--rm", name, "kload-e2e-run"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  // Loaded means usable: on each of nodes 1..n, `crictl images` lists `name` with
  // image ID `id`, and a container from it prints `text`.
  static void expect_usable(const Lab& lab, int nodes, const std::string& name, const std::string& id,
                            const std::string& text) {
    for (int n = 1; n <= nodes; ++n) {
      EXPECT_EQ(crictl_id(lab, n, name), id) << "node " << n << ": crictl images";
      EXPECT_THAT(run_on(lab, n, name), HasSubstr(text)) << "node " << n;
    }
  }

  // Builds an image (see Images::build) in this test's scratch directory.
  Images::Image build(const std::string& tag, const std::string& text) { return images.build(scratch, tag, text); }

  Scratch scratch;
  Images images;
};

TEST_F(E2EKind, RealKindSeesTheLabAsACluster) {
  Lab lab(scratch / "lab", 3, kind());
  ASSERT_TRUE(lab.up());
  auto nodes = run_command({"env", "PATH=" + kind_path(), "kind", "get", "nodes", "--name", lab.cluster()});
  ASSERT_EQ(nodes.exit_code, 0) << nodes.err;
  auto names = split_lines(nodes.out);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{lab.cluster() + "-control-plane", lab.cluster() + "-worker",
                                             lab.cluster() + "-worker2"}));
}

TEST_F(E2EKind, DockerImageLoadsUsableImagesIntoEveryNode) {
  Lab lab(scratch / "lab", 3, kind());
  ASSERT_TRUE(lab.up());
  const auto [name, id] = build("v1", "hello-from-v1");
  auto r = kload({"docker-image", name, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = json::parse(r.out);
  ASSERT_EQ(report["nodes"].size(), 3U);
  expect_usable(lab, 3, full(name), id, "hello-from-v1");
  // Unchanged reload: nothing is saved or sent.
  auto again = kload({"docker-image", name, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto second = json::parse(again.out);
  EXPECT_FALSE(second["dockerSaved"].get<bool>());
  for (const auto& node : second["nodes"]) {
    EXPECT_EQ(node["layersSent"], 0) << node;
  }
}

TEST_F(E2EKind, DevReloadSendsOnlyTheChangedLayer) {
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  const auto [v1, id1] = build("dev", "first-build");
  ASSERT_EQ(kload({"docker-image", v1, "--name", lab.cluster()}).exit_code, 0);
  const auto [v2, id2] = build("dev", "second-build");
  ASSERT_NE(id1, id2);
  auto r = kload({"docker-image", v2, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = json::parse(r.out);
  for (const auto& node : report["nodes"]) {
    EXPECT_EQ(node["layersSent"], 1) << "only the top layer changed: " << node;
    // The probe, then the import with its gate and the tag that moves the name: 2.x's
    // ctr tags through the Transfer API, which moves an existing name in one step;
    // 1.x's refuses, and the commit import takes a round trip of its own.
    EXPECT_EQ(node["ctrCalls"], containerd_version() == "2.x" ? 2 : 3) << node;
  }
  expect_usable(lab, 2, full(v2), id2, "second-build");
}

// The image ID `crictl images` shows for `name` on node `n`, "" while there is none.
std::string held_id(const Lab& lab, int n, const std::string& name) {
  const auto listed = json::parse(lab.exec(n, {"crictl", "images", "-o", "json"}).out, nullptr, false);
  if (listed.is_discarded()) {
    return "";
  }
  for (const auto& image : listed["images"]) {
    for (const auto& tag : image["repoTags"]) {
      if (tag == name) {
        return image["id"].get<std::string>();
      }
    }
  }
  return "";
}

// Waits up to a minute for node `n` to show `name` with image ID `id`.
bool wait_for(const Lab& lab, int n, const std::string& name, const std::string& id) {
  for (int i = 0; i < 240; ++i) {
    if (held_id(lab, n, name) == id) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

TEST_F(E2EKind, WatchLoadsEveryRebuildUntilCtrlC) {
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  const auto [name, id1] = build("watched", "first-build");
  const auto err = scratch / "watch.err";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    const auto bin = kload_binary().string();
    const std::string cluster = lab.cluster();
    ::execl(bin.c_str(), bin.c_str(), "docker-image", name.c_str(), "--watch", "--name", cluster.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{pid};
  EXPECT_TRUE(wait_for(lab, 1, full(name), id1) && wait_for(lab, 2, full(name), id1)) << read_file(err);
  for (int i = 0; i < 200 && read_file(err).find("watching Docker") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto [again, id2] = build("watched", "second-build");
  ASSERT_NE(id1, id2);
  EXPECT_TRUE(wait_for(lab, 1, full(name), id2) && wait_for(lab, 2, full(name), id2)) << read_file(err);
  // A node's name moves in the middle of its commit round trip, before the check that
  // confirms it: Ctrl-C only once the reload's line says the load has ended.
  for (int i = 0; i < 400 && read_file(err).find(name + " is now " + id2) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  reap.pid = 0;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status;
  const auto log = read_file(err);
  EXPECT_THAT(log, HasSubstr("watching Docker for new builds of " + name + " (Ctrl-C ends)"));
  // A reload is one line: the time, what changed, what was sent.
  const auto reload = log.find(name + " is now " + id2 + ": 1 image(s) on 2 node(s): sent 2 layers (");
  ASSERT_NE(reload, std::string::npos) << "the rebuild's top layer, to each node:\n" << log;
  const auto line_start = log.rfind('\n', reload) + 1;
  const auto line = log.substr(line_start, log.find('\n', reload) - line_start);
  EXPECT_THAT(line, ::testing::MatchesRegex("[0-9][0-9]:[0-9][0-9]:[0-9][0-9] .*")) << line;
  EXPECT_THAT(line, HasSubstr(", skipped 2 layers ("));
  const auto watching = log.find("watching Docker");
  ASSERT_LT(watching, line_start) << log;
  EXPECT_EQ(log.substr(watching, line_start - watching).find("sending"), std::string::npos)
      << "no per-node lines for a reload:\n" << log.substr(watching);
  expect_usable(lab, 2, full(name), id2, "second-build");
  for (int n = 1; n <= 2; ++n) {
    for (const auto& [image, state] : lab.images(n)) {
      EXPECT_EQ(image.find("kload-staging"), std::string::npos) << image;
    }
  }
  EXPECT_TRUE(run_command({"pgrep", "-f", "docker events --filter type=image"}).out.empty())
      << "docker events must end with kload";
}

TEST_F(E2EKind, ImageArchiveOfARealDockerSave) {
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  const auto [name, id] = build("saved", "from-an-archive");
  const auto tar = (scratch / "saved.tar").string();
  auto saved = run_command({"docker", "save", "-o", tar, name});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  auto r = kload({"image-archive", tar, "--name", lab.cluster()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_usable(lab, 2, full(name), id, "from-an-archive");
}

TEST_F(E2EKind, RealKindLoadAndKloadAgreeOnTheImage) {
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  const auto [name, id] = build("both", "loaded-by-kind");
  auto k = run_command({"env", "PATH=" + kind_path(), "kind", "load", "docker-image", name, "--name", lab.cluster(),
                        "--nodes", lab.container(1)});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  EXPECT_EQ(crictl_id(lab, 1, full(name)), id);
  // kload finds node 1 already holding what kind loaded, and loads node 2 itself.
  auto r = kload({"docker-image", name, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto report = json::parse(r.out);
  for (const auto& node : report["nodes"]) {
    const bool first = node["node"] == lab.container(1);
    EXPECT_EQ(node["layersSent"].get<int>() == 0, first) << node;
  }
  EXPECT_EQ(crictl_id(lab, 2, full(name)), id);
  EXPECT_THAT(run_on(lab, 2, full(name)), HasSubstr("loaded-by-kind"));
}

TEST_F(E2EKind, SnapshotterIsTheOneCriUses) {
  // The node's CRI is configured for native while overlayfs also loads: an import
  // unpacked into overlayfs would make CRI unpack the image again.
  Lab lab(scratch / "lab", 1, kind());
  ASSERT_TRUE(lab.up());
  auto set_native = lab.exec(1, {"sh", "-c",
                                 "sed -i 's/snapshotter = \"overlayfs\"/snapshotter = \"native\"/' "
                                 "/etc/containerd/config.toml && old=$(pgrep -x containerd) && kill $old && "
                                 "while kill -0 $old 2>/dev/null; do sleep 0.1; done"});
  ASSERT_EQ(set_native.exit_code, 0) << set_native.err;
  ASSERT_TRUE(lab.start(1));  // waits until the restarted containerd answers
  const auto [name, id] = build("snap", "native");
  auto r = kload({"docker-image", name, "--name", lab.cluster()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto native = lab.ctr(1, {"snapshots", "--snapshotter", "native", "ls"});
  EXPECT_GE(split_lines(native.out).size(), 2U) << "no native snapshot: " << native.out;
  auto overlay = lab.ctr(1, {"snapshots", "--snapshotter", "overlayfs", "ls"});
  EXPECT_LE(split_lines(overlay.out).size(), 1U) << "unpacked into overlayfs as well: " << overlay.out;
}

TEST_F(E2EKind, SshAcrossTheLabNetwork) {
  Lab lab(scratch / "lab", 1, kind());
  ASSERT_TRUE(lab.up());
  const auto [name, id] = build("ssh", "over-ssh");
  const auto tar = (scratch / "ssh.tar").string();
  ASSERT_EQ(run_command({"docker", "save", "-o", tar, name}).exit_code, 0);
  // ssh reads the lab's ssh_config through GIT_SSH-style indirection: a wrapper named
  // ssh earlier on PATH that adds -F, so nothing of the user's own ssh setup changes.
  const auto shim = scratch / "ssh-shim";
  std::filesystem::create_directories(shim);
  write_file(shim / "ssh", "#!/bin/sh\nexec /usr/bin/ssh -F " + (lab.dir() / "ssh_config").string() + " \"$@\"\n");
  std::filesystem::permissions(shim / "ssh", std::filesystem::perms::owner_all);
  const auto path = shim.string() + ":" + std::getenv("PATH");
  auto r = run_command({"env", "PATH=" + path, kload_binary().string(), "image-archive", tar, "--node",
                        "ssh://" + lab.container(1)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_usable(lab, 1, full(name), id, "over-ssh");
}

// kload as kind, the way Makefiles, CI scripts, Skaffold and Tilt meet it: a link
// named kind first on PATH, the real kind after it. What kload does not serve is the
// real kind's to answer, byte for byte; the loads are kload's, and land on the nodes.
TEST_F(E2EKind, KloadAsKindServesLoadsAndHandsOnTheRest) {
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  const auto bin = scratch / "bin";
  std::filesystem::create_directories(bin);
  std::filesystem::create_symlink(kload_binary(), bin / "kind");
  const auto real_path = kind_path();
  const auto dropin_path = bin.string() + ":" + real_path;
  const auto kind_with = [](const std::string& path, const std::vector<std::string>& args,
                            const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv{"env", "PATH=" + path};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.emplace_back("kind");
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  };

  // Handed on: output and exit code are the real kind's, failures included.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"version"}, {"get", "nodes", "--name", lab.cluster()}, {"no-such-command"}, {"load", "docker-image"}}) {
    const auto want = kind_with(real_path, args);
    const auto got = kind_with(dropin_path, args);
    EXPECT_EQ(got.exit_code, want.exit_code) << ::testing::PrintToString(args);
    EXPECT_EQ(got.out, want.out) << ::testing::PrintToString(args);
    EXPECT_EQ(got.err, want.err) << ::testing::PrintToString(args);
  }
  // Other tests' clusters may come and go between two runs of `get clusters`.
  const auto before = kind_with(real_path, {"get", "clusters"});
  const auto clusters = kind_with(dropin_path, {"get", "clusters"});
  const auto after = kind_with(real_path, {"get", "clusters"});
  EXPECT_EQ(clusters.exit_code, before.exit_code);
  EXPECT_TRUE(clusters.out == before.out || clusters.out == after.out) << clusters.out << "\n--\n" << before.out;
  EXPECT_THAT(split_lines(clusters.out), ::testing::Contains(lab.cluster()));

  // Served: image-archive into the one node --nodes picks, checked with ctr on each node.
  const auto [name, id] = build("dropin", "served-as-kind");
  const auto tar = (scratch / "dropin.tar").string();
  ASSERT_EQ(run_command({"docker", "save", "-o", tar, name}).exit_code, 0);
  const auto a =
      kind_with(dropin_path, {"load", "image-archive", tar, "-n", lab.cluster(), "--nodes", lab.container(2)});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(lab.image_id(2, full(name)), id);
  for (const auto& [image_name, image] : lab.images(1)) {
    EXPECT_NE(image_name, full(name)) << "node 1 was not picked";
  }
  // docker-image as Skaffold runs it: kind's line for the node that lacks the image.
  const auto r = kind_with(dropin_path, {"load", "docker-image", "--name", lab.cluster(), name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Image: \"" + name + "\" with ID \"" + id + "\" not yet present on node \"" +
                               lab.container(1) + "\", loading..."));
  EXPECT_THAT(r.err, Not(HasSubstr("on node \"" + lab.container(2) + "\", loading")));
  EXPECT_THAT(r.err, HasSubstr("kind cluster \"" + lab.cluster() + "\": 2 of 2 node(s)"));  // kload's own line
  EXPECT_EQ(lab.image_id(1, full(name)), id);
  EXPECT_EQ(crictl_id(lab, 1, full(name)), id);
  // Again, as Tilt and kind's documentation write it, as Makefiles often do, and by
  // KIND_CLUSTER_NAME: nothing to do.
  for (const auto& [args, env] : std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"load", "docker-image", name, "--name", lab.cluster()}, {}},
           {{"load", "docker-image", "--name=" + lab.cluster(), name}, {}},
           {{"load", "docker-image", name}, {"KIND_CLUSTER_NAME=" + lab.cluster()}}}) {
    const auto again = kind_with(dropin_path, args, env);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_THAT(again.err, HasSubstr("Image: \"" + name + "\" with ID \"" + id +
                                     "\" found to be already present on all nodes."));
    EXPECT_THAT(again.err, Not(HasSubstr("loading...")));
  }

  // Served loads that fail: kind's ERROR line and exit code, for an image Docker does
  // not have and for a node that fails (its ctr gone).
  const auto missing =
      kind_with(dropin_path, {"load", "docker-image", "kload-e2e-absent/none:v0", "-n", lab.cluster()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("ERROR: "));
  const auto hide_ctr =
      lab.exec(1, {"sh", "-c",
                   "for c in /usr/local/bin/ctr /usr/bin/ctr; do if [ -e $c ]; then mv $c $c.away; fi; done; "
                   "! command -v ctr"});
  ASSERT_EQ(hide_ctr.exit_code, 0) << hide_ctr.err;
  const auto failed = kind_with(dropin_path, {"load", "docker-image", name, "-n", lab.cluster()});
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_THAT(failed.err, HasSubstr("ERROR: failed to load images: node " + lab.container(1)));
  EXPECT_THAT(failed.err, Not(HasSubstr("present on all nodes")));
}

// Docker's containerd image store, as Docker 29 sets up new installs: the engine's
// image ID is the manifest's digest, not the config's, and `docker save` writes an OCI
// layout. The nodes are on the same engine, as kind puts them.
TEST_F(E2EKind, DockerImageFromAnEngineWithTheContainerdImageStore) {
  const char* machine = std::getenv("DOCKER_HOST");
  PrivateEngine engine(scratch / "engine");
  ASSERT_FALSE(engine.host().empty());
  const ScopedEnv source("KLOAD_LAB_IMAGE_SOURCE", machine != nullptr ? machine : "unix:///var/run/docker.sock");
  const ScopedEnv host("DOCKER_HOST", engine.host());
  Lab lab(scratch / "lab", 2, kind());
  ASSERT_TRUE(lab.up());
  Images own;  // this engine's images, removed while DOCKER_HOST still names it
  const auto [name, id] = own.build(scratch, "dev", "from-the-containerd-store");
  auto r = kload({"docker-image", name, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto first = json::parse(r.out);
  EXPECT_TRUE(first["dockerSaved"].get<bool>());
  const auto config = first["nodes"][0]["images"][0]["id"].get<std::string>();
  EXPECT_NE(config, id) << "the engine names the image by its manifest's digest";
  for (int n = 1; n <= 2; ++n) {
    const auto listed = lab.images(n);
    const auto it = std::find_if(listed.begin(), listed.end(), [&](const auto& i) { return i.first == full(name); });
    ASSERT_NE(it, listed.end()) << "node " << n;
    EXPECT_EQ(it->second.target, id) << "node " << n << ": the name points at what the engine calls the image";
    EXPECT_TRUE(it->second.complete);
  }
  expect_usable(lab, 2, full(name), config, "from-the-containerd-store");

  // Unchanged: the engine's ID is recognised on every node; nothing is saved.
  auto again = kload({"docker-image", name, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto second = json::parse(again.out);
  EXPECT_FALSE(second["dockerSaved"].get<bool>());
  for (const auto& node : second["nodes"]) {
    EXPECT_EQ(node["ctrCalls"], 1) << node;
  }

  // A rebuild under the same tag: only its own layer travels.
  const auto [v2, id2] = own.build(scratch, "dev", "rebuilt-in-the-containerd-store");
  ASSERT_NE(id2, id);
  auto reload = kload({"docker-image", v2, "--name", lab.cluster(), "--json"});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  for (const auto& node : json::parse(reload.out)["nodes"]) {
    EXPECT_EQ(node["layersSent"], 1) << node;
  }
  const auto config2 = json::parse(reload.out)["nodes"][0]["images"][0]["id"].get<std::string>();
  expect_usable(lab, 2, full(v2), config2, "rebuilt-in-the-containerd-store");
}

} // namespace
} // namespace kload::testing
