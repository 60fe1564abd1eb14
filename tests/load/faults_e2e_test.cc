// Faults on real nodes: kload killed at seeded random points, interrupted with
// SIGINT, several kload processes at once. After every trial no name points at an
// incomplete image, no good image is lost, and a rerun completes.

#include "kload/cache/cache.h"
#include "kload/util/digest.h"
#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <random>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace kload::testing {
namespace {

using nlohmann::json;
using Names = std::map<std::string, Lab::Image>;

Names names_on(const Lab& lab, int node) {
  Names out;
  for (auto& [name, image] : lab.images(node)) {
    out[name] = image;
  }
  return out;
}


int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The invariant: every name that was complete before still is, pointing at what it
// pointed at or at the image being loaded; nothing is incomplete.
void check_invariants(const Lab& lab, int nodes, const std::vector<Names>& before, const std::string& name,
                      const std::string& new_target, const std::string& what) {
  for (int n = 1; n <= nodes; ++n) {
    const auto after = names_on(lab, n);
    for (const auto& [ref, image] : after) {
      if (ref.find("kload-staging") == std::string::npos) {
        EXPECT_TRUE(image.complete) << what << ": node " << n << ": " << ref << " is incomplete";
      }
    }
    for (const auto& [ref, image] : before[n - 1]) {
      if (!image.complete || ref.find("kload-staging") != std::string::npos) {
        continue;
      }
      const auto it = after.find(ref);
      ASSERT_NE(it, after.end()) << what << ": node " << n << " lost " << ref;
      const bool same = it->second.target == image.target;
      const bool replaced = ref == name && it->second.target == new_target;
      EXPECT_TRUE(same || replaced) << what << ": node " << n << ": " << ref << " changed to " << it->second.target;
    }
  }
}

// Layer digests of the (first) image in an archive.
std::set<std::string> layers_of(const std::string& archive) {
  const auto report = json::parse(kload({"inspect", "--json", archive}).out);
  std::set<std::string> out;
  for (const auto& l : report["images"][0]["layers"]) {
    out.insert(l["digest"].get<std::string>());
  }
  EXPECT_FALSE(out.empty()) << archive;
  return out;
}

// Layers present on the node that its images reference, by the gc labels of their
// manifests: what the node keeps for sure, GC or not. Staging images count only when
// the load with process `pid` left them: what earlier killed loads left behind is
// removed after an hour and the cache may forget it before (it then costs a resend,
// never a wrong image). (An image can reference an absent layer: an import creates
// its records first.)
std::set<std::string> referenced_layers(const Lab& lab, int node, pid_t pid) {
  std::set<std::string> targets;
  for (const auto& [name, image] : lab.images(node)) {
    const bool staging = name.find("kload-staging") != std::string::npos;
    if (!staging || name.find("-" + std::to_string(pid) + ".") != std::string::npos) {
      targets.insert(image.target);
    }
  }
  std::set<std::string> present;
  std::set<std::string> referenced;
  std::istringstream lines(lab.ctr(node, {"content", "ls"}).out);
  for (std::string line; std::getline(lines, line);) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) {
      continue;
    }
    present.insert(line.substr(0, tab));
    if (!targets.contains(line.substr(0, tab))) {
      continue;
    }
    static const std::string label = "containerd.io/gc.ref.content.l.";
    for (auto at = line.find(label); at != std::string::npos; at = line.find(label, at + 1)) {
      const auto eq = line.find('=', at);
      const auto end = line.find_first_of(",\t\n ", eq);
      referenced.insert(line.substr(eq + 1, end == std::string::npos ? std::string::npos : end - eq - 1));
    }
  }
  std::set<std::string> out;
  std::set_intersection(present.begin(), present.end(), referenced.begin(), referenced.end(),
                        std::inserter(out, out.begin()));
  return out;
}

// Manifest digests of the two versions, as a full import would produce them.
std::string manifest_of(const std::string& archive) {
  auto r = kload({"inspect", "--json", archive});
  return json::parse(r.out)["images"][0]["manifest"]["digest"].get<std::string>();
}

TEST(E2EFaults, KillAtSeededRandomPointsNeverLeavesAHalfLoadedNode) {
  Scratch scratch;
  Lab lab(scratch / "lab", 3);
  ASSERT_TRUE(lab.up());
  const int trials = std::getenv("KLOAD_FAULT_TRIALS") != nullptr ? std::atoi(std::getenv("KLOAD_FAULT_TRIALS")) : 6;
  const unsigned seed = std::getenv("KLOAD_FAULT_SEED") != nullptr ? std::atoi(std::getenv("KLOAD_FAULT_SEED")) : 380;
  std::mt19937 rng(seed);
  const std::vector<std::string> archives{(scratch / "v1.tar").string(), (scratch / "v2.tar").string()};
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:24M,top1:24M", archives[0]}));
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:24M,top2:24M", archives[1]}));
  const std::vector<std::string> manifests{manifest_of(archives[0]), manifest_of(archives[1])};
  const std::vector<std::set<std::string>> layers{layers_of(archives[0]), layers_of(archives[1])};
  const auto cache = (scratch / "cache").string();
  auto args_for = [&](const std::string& archive) {
    std::vector<std::string> args{"image-archive", archive, "--cache", cache};
    for (const auto& u : lab.uris()) {
      args.push_back("--node");
      args.push_back(u);
    }
    return args;
  };
  // Measure one full load to know where "random points" can fall.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_exit(spawn_kload(args_for(archives[0]), "/dev/null", scratch / "warmup.err")), 0);
  const auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  std::uniform_int_distribution<int> when(0, static_cast<int>(full_ms.count()) + 50);
  for (int t = 0; t < trials; ++t) {
    const int version = (t + 1) % 2;
    std::vector<Names> before;
    for (int n = 1; n <= 3; ++n) {
      before.push_back(names_on(lab, n));
    }
    const int delay = when(rng);
    const pid_t pid = spawn_kload(args_for(archives[version]), "/dev/null", scratch / "trial.err");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    kill(pid, SIGKILL);
    wait_exit(pid);
    const std::string what = "trial " + std::to_string(t) + " (seed " + std::to_string(seed) + ", killed after " +
                             std::to_string(delay) + " ms)";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let ctr notice the closed stream
    check_invariants(lab, 3, before, "docker.io/library/app:v1", manifests[version], what);
    // A rerun completes and sends no layer that an image on the node already holds
    // (what the killed load committed, under a staging or the real name, included);
    // the cache agrees with the nodes afterwards.
    std::vector<std::size_t> most;
    for (int n = 1; n <= 3; ++n) {
      const auto held = referenced_layers(lab, n, pid);
      most.push_back(std::count_if(layers[version].begin(), layers[version].end(),
                                   [&](const std::string& l) { return !held.contains(l); }));
    }
    auto rerun = args_for(archives[version]);
    rerun.push_back("--json");
    const auto r = kload(rerun);
    ASSERT_EQ(r.exit_code, 0) << what << ": " << r.err;
    const auto report = json::parse(r.out);
    for (const auto& node : report["nodes"]) {
      const auto uris = lab.uris();
      const auto n = std::find(uris.begin(), uris.end(), node["uri"].get<std::string>()) - uris.begin();
      ASSERT_LT(n, 3) << node.dump();
      EXPECT_LE(node["layersSent"].get<std::size_t>(), most[n]) << what << ": node " << n + 1 << " was sent "
                                                                 << "layers it held: " << node.dump();
    }
    for (int n = 1; n <= 3; ++n) {
      const auto after = names_on(lab, n);
      ASSERT_TRUE(after.contains("docker.io/library/app:v1")) << what;
      EXPECT_EQ(after.at("docker.io/library/app:v1").target, manifests[version]) << what;
      EXPECT_TRUE(after.at("docker.io/library/app:v1").complete) << what;
    }
  }
  RecordProperty("trials", trials);
}

TEST(E2EFaults, CtrlCDuringALoadExitsCleanlyAndRemovesTemporaryFiles) {
  Scratch scratch;
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto zst = (scratch / "app.tar.zst").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:64M,top:32M", zst}));
  const auto tmp = scratch / "tmp";
  std::filesystem::create_directories(tmp);
  setenv("TMPDIR", tmp.c_str(), 1);
  const pid_t pid = spawn_kload({"image-archive", zst, "--no-cache", "--node", lab.uris()[0]}, "/dev/null", scratch / "err");
  unsetenv("TMPDIR");
  // Interrupt once it is sending (the compressed input has been spooled by then).
  for (int i = 0; i < 1000 && read_file(scratch / "err").find("sending") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGINT);
  const int rc = wait_exit(pid);
  EXPECT_TRUE(rc == 130 || rc == 0) << "interrupted: exit " << rc;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "temporary files left behind";
  for (const auto& [ref, image] : lab.images(1)) {
    if (ref.find("kload-staging") == std::string::npos) {
      EXPECT_TRUE(image.complete) << ref;
    }
  }
}

// N kload processes at once, twice, into the same two nodes with one cache. Round 0:
// two processes load the same image (with four, the others load other images sharing
// its base); round 1: every process a different image or a repeat, as listed below.
class E2EConcurrent : public ::testing::TestWithParam<int> {};

TEST_P(E2EConcurrent, KloadsAtOnceShareNodesAndCache) {
  const int count = GetParam();
  Scratch scratch;
  Lab lab(scratch / "lab", 2);
  ASSERT_TRUE(lab.up());
  const auto cache = (scratch / "cache").string();
  std::vector<std::string> archives;
  for (int i = 0; i < 3; ++i) {
    archives.push_back((scratch / ("a" + std::to_string(i) + ".tar")).string());
    const std::string tag = "app" + std::to_string(i) + ":v1";
    ASSERT_TRUE(mkimage({"--image", tag + "=base:8M,top" + std::to_string(i) + ":2M", archives.back()}));
  }
  // Which archive process i loads in each round.
  const std::vector<std::vector<int>> rounds = count == 2 ? std::vector<std::vector<int>>{{0, 0}, {1, 2}}
                                                          : std::vector<std::vector<int>>{{0, 1, 2, 0}, {2, 1, 0, 2}};
  for (const auto& round : rounds) {
    std::vector<pid_t> pids;
    for (int i = 0; i < count; ++i) {
      pids.push_back(spawn_kload({"image-archive", archives[round[i]], "--cache", cache, "--node", lab.uris()[0],
                                  "--node", lab.uris()[1]},
                                 "/dev/null", scratch / ("err" + std::to_string(i))));
    }
    for (int i = 0; i < count; ++i) {
      EXPECT_EQ(wait_exit(pids[i]), 0) << read_file(scratch / ("err" + std::to_string(i)));
    }
  }
  for (int n = 1; n <= 2; ++n) {
    const auto names = names_on(lab, n);
    for (int i = 0; i < 3; ++i) {
      const auto name = "docker.io/library/app" + std::to_string(i) + ":v1";
      ASSERT_TRUE(names.contains(name)) << name;
      EXPECT_TRUE(names.at(name).complete) << name;
      EXPECT_EQ(names.at(name).target, manifest_of(archives[i])) << name;
    }
    for (const auto& [name, image] : names) {
      EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "left behind on node " << n << ": " << name;
    }
  }
  // The cache agrees with the nodes: it never claims what a node lacks. Every name a
  // record holds points at the manifest the node has for it, and no record carries a
  // mark of a load still sending. (It may know less than the node, when a listing
  // raced a load: that costs a resend or a listing later, never a wrong plan.)
  auto opened = cache::Cache::open(cache, [](const std::string&) {});
  ASSERT_TRUE(opened.has_value()) << opened.error().message;
  for (const auto& uri : lab.uris()) {
    auto record = (*opened)->node(uri);
    ASSERT_TRUE(record && *record) << uri;
    const auto& rec = **record;
    EXPECT_TRUE(rec.sending.empty()) << uri;
    for (int i = 0; i < 3; ++i) {
      const auto name = "docker.io/library/app" + std::to_string(i) + ":v1";
      if (rec.names.contains(name)) {
        EXPECT_EQ(rec.names.at(name).target.str(), manifest_of(archives[i])) << uri << " " << name;
      }
    }
  }
  // And loading any of the images again is the one-call reload on both nodes.
  for (const auto& archive : archives) {
    auto r = kload({"image-archive", "--json", archive, "--cache", cache, "--node", lab.uris()[0], "--node",
                    lab.uris()[1]});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto report = json::parse(r.out);
    for (const auto& node : report["nodes"]) {
      EXPECT_EQ(node["ctrCalls"], 1) << archive << ": " << node.dump();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Processes, E2EConcurrent, ::testing::Values(2, 4),
                         [](const auto& info) { return std::to_string(info.param) + "AtOnce"; });

TEST(E2EFaults, HostileImageNamesAreRejectedBeforeAnyNodeIsTouched) {
  Scratch scratch;
  Lab lab(scratch / "lab", 1);
  ASSERT_TRUE(lab.up());
  const auto marker = scratch / "pwned";
  const std::vector<std::string> hostile{"app:$(touch " + marker.string() + ")",
                                         "app`touch " + marker.string() + "`:v1", "app;touch:v1", "app:v1 --all",
                                         "app\":v1"};
  int tried = 0;
  for (const auto& name : hostile) {
    const auto archive = (scratch / "hostile.tar").string();
    std::filesystem::remove(archive);
    auto mk = run_command({(source_dir() / "tools" / "mkimage").string(), "--image", name + "=base:64K", archive});
    if (mk.exit_code != 0) {
      continue;  // the generator itself refused the name
    }
    ++tried;
    auto r = kload({"image-archive", archive, "--node", lab.uris()[0]});
    EXPECT_EQ(r.exit_code, 2) << name << ": " << r.err;
    EXPECT_NE(r.err.find("invalid image name"), std::string::npos) << r.err;
  }
  EXPECT_EQ(tried, static_cast<int>(hostile.size())) << "the generator refused some names; nothing was tried";
  EXPECT_FALSE(std::filesystem::exists(marker));
  EXPECT_TRUE(lab.images(1).empty());
}


// Whether `pid` is a live process (a zombie is not).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) {
    return false;
  }
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

// A node whose ctr stops taking the stream (here: SIGSTOP, as a wedged containerd
// client or a frozen node would) fails alone once the stall limit passes; the other
// node completes, the stalled node keeps its good image, and a rerun completes.
TEST(E2EFaults, AnImportThatTakesNoInputFailsThatNodeAloneAtTheStallLimit) {
  Scratch scratch;
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: the test finds node1's ctr by its socket
  ASSERT_TRUE(lab.up());
  const auto old = (scratch / "old.tar").string();
  const auto big = (scratch / "big.tar").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=old:1M", old}));
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:40M,top:24M", big}));
  auto first = kload({"image-archive", old, "--no-cache", "--node", lab.uris()[0], "--node", lab.uris()[1]});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto before = names_on(lab, 1);

  std::atomic<bool> done{false};
  std::atomic<pid_t> stopped{0};
  std::thread freezer([&] {
    const auto socket = lab.socket(1).string();
    for (int i = 0; i < 6000 && !done; ++i) {
      if (const pid_t pid = ctr_import_on(socket); pid != 0) {
        ::kill(pid, SIGSTOP);
        stopped = pid;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  ::setenv("KLOAD_STALL_SECONDS", "2", 1);
  const auto started = std::chrono::steady_clock::now();
  auto r = kload({"image-archive", big, "--no-cache", "--node", lab.uris()[0], "--node", lab.uris()[1]});
  const auto took = std::chrono::steady_clock::now() - started;
  ::unsetenv("KLOAD_STALL_SECONDS");
  done = true;
  freezer.join();
  ASSERT_NE(stopped.load(), 0) << "node1's import never started: " << r.err;
  ::kill(stopped.load(), SIGCONT);  // harmless if the stall limit already killed it

  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(lab.node_name(1)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("took nothing for 2 s"), std::string::npos) << r.err;
  EXPECT_LT(took, std::chrono::seconds(60)) << "the stall limit must end the node's import, not ctr's own timeouts";
  EXPECT_FALSE(alive(stopped.load())) << "the stalled ctr must be killed with its process group";
  EXPECT_EQ(names_on(lab, 1), before) << "the stalled node keeps its good image and gets no new name";
  const auto id = json::parse(kload({"inspect", "--json", big}).out)["images"][0]["id"].get<std::string>();
  EXPECT_EQ(lab.image_id(2, "docker.io/library/app:v1"), id);

  auto rerun = kload({"image-archive", big, "--no-cache", "--node", lab.uris()[0], "--node", lab.uris()[1]});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id);
}

} // namespace
} // namespace kload::testing

namespace kload::testing {
namespace {

TEST(E2EFaults, NodeWhoseDiskFillsUpFailsAloneAndKeepsItsGoodImage) {
  Scratch scratch;
  const auto lab_dir = scratch / "lab";
  const auto tool = (source_dir() / "tools" / "lab").string();
  auto up = run_command({tool, "up", "1", lab_dir.string(), "--disk", "48m"});
  if (up.exit_code != 0 && up.err.find("cannot mount") != std::string::npos) {
    GTEST_SKIP() << "tmpfs mounts are not allowed here: " << up.err;
  }
  ASSERT_EQ(up.exit_code, 0) << up.err;
  struct Down {
    std::string tool, dir;
    ~Down() { run_command({tool, "down", dir}); }
  } down{tool, lab_dir.string()};
  Lab roomy(scratch / "roomy", 1);
  ASSERT_TRUE(roomy.up());
  const auto small_uri = up.out.substr(0, up.out.find('\n'));
  const auto old = (scratch / "old.tar").string();
  const auto big = (scratch / "big.tar").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=old:4M", old}));
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:40M,top:24M", big}));
  auto first = kload({"image-archive", old, "--no-cache", "--node", small_uri});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto sock = (lab_dir / "node1" / "sock").string();
  auto before = run_command({"ctr", "-a", sock, "-n", "k8s.io", "images", "check"}).out;
  auto r = kload({"image-archive", big, "--no-cache", "--node", small_uri, "--node", roomy.uris()[0]});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("no space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("node1"), std::string::npos) << r.err;
  auto after = run_command({"ctr", "-a", sock, "-n", "k8s.io", "images", "check"}).out;
  EXPECT_EQ(after, before) << "the full node's good image must be untouched";
  const auto id = nlohmann::json::parse(kload({"inspect", "--json", big}).out)["images"][0]["id"].get<std::string>();
  EXPECT_EQ(roomy.image_id(1, "docker.io/library/app:v1"), id);
}

} // namespace
} // namespace kload::testing
