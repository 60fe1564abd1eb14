// `kload docker-image` and kind cluster discovery, end to end: a `docker` shim on PATH
// stands in for the Docker CLI (there is no Docker engine here). It logs every argv,
// answers `ps`, `image inspect` and `save` from files the test writes, and runs
// `exec -i NODE ctr ...` against real containerd nodes started by tools/lab, so the
// tests see exactly what real Docker would be asked to run.

#include "kload/source/docker.h"
#include "support/test_support.h"

#include <algorithm>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kload::testing {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

using kload::testing::host_platform;
using kload::testing::other_platform;

constexpr const char* app_v1 = "app:v1=base:2M,mid:1M,top1:256K";
constexpr const char* app_v2 = "app:v1=base:2M,mid:1M,top2:256K";

// The shim's log line for one argv: every word in brackets, so word boundaries show.
std::string logged(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    out += "[" + w + "]";
  }
  return out;
}

const std::string ps_line = logged({"ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=dev", "--format",
                                    "{{.Names}}\\t{{.Label \"io.x-k8s.kind.role\"}}"});

// The pre-check: one `ctr images check` per node, of the names and the image ID.
// The pre-check as the shim logs it: the round trip a load begins with, a `sh -c`
// batch that checks every name and, on a first contact, lists the node.
std::string probe_line(const std::string& node, bool first_contact) {
  const std::string ctr = "'ctr' '--connect-timeout' '5s' '-n' 'k8s.io' ";
  std::string steps = ctr + "'images' 'check'|";
  if (first_contact) {
    // The snapshotter: CRI's from the configuration (the shim's nodes run no
    // `containerd`), checked against (or, without it, picked from) what is loaded.
    steps += ctr + "'version'|" + ctr + "'content' 'ls'|'containerd' 'config' 'dump'|" + ctr + "'plugins' 'ls'|";
  }
  return "[exec][-i][" + node + "][sh][-c][" + steps + "]";
}

// The docker shim. Logs each argv as one line (so parallel nodes never interleave; a
// `sh -c` batch as its steps' words, each step ended by '|'),
// then answers: ps from ps.out (only for the exact discovery argv), image inspect from
// inspect/<ref> files, save by sourcing save.sh, exec -i NODE ctr ... (or a `sh -c`
// batch of ctr commands) by running ctr against the lab node that container stands
// for (@CASES@); no `containerd` runs there. A file "down" makes it
// answer like a docker CLI whose daemon is not running.
// clang-format off
constexpr const char* shim_script = R"SH(#!/bin/sh
D=@DIR@
line=''
for a in "$@"; do
  case "$a" in
  k=*) a=$(printf '%s\n' "$a" | sed -n 's/^b; //p' | sed 's/ *<\/dev\/null; e.*$//; s/ *; e.*$//' | tr '\n' '|') ;;
  esac
  line="$line[$a]"
done
printf '%s\n' "$line" >> "$D/argv.log"
down() { echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2; exit 1; }
case "$1" in
ps)
  [ -e "$D/down" ] && down
  [ "$*" = 'ps -a --filter label=io.x-k8s.kind.cluster=dev --format {{.Names}}\t{{.Label "io.x-k8s.kind.role"}}' ] || exit 0
  cat "$D/ps.out" ;;
image)
  [ "$2" = inspect ] || exit 2
  [ -e "$D/down" ] && { echo '[]'; down; }
  shift 2; sep=''; status=0; printf '['
  for ref in "$@"; do
    f="$D/inspect/$(printf '%s' "$ref" | tr '/:@' '___')"
    if [ -f "$f" ]; then printf '%s' "$sep"; cat "$f"; sep=,
    else echo "Error response from daemon: No such image: $ref" >&2; status=1; fi
  done
  printf ']\n'; exit $status ;;
save)
  [ -e "$D/down" ] && down
  shift; . "$D/save.sh" ;;
exec)
  [ "$2" = -i ] || exit 2
  case "$3" in
@CASES@    *) echo "Error response from daemon: No such container: $3" >&2; exit 1 ;;
  esac
  shift 3
  if [ "$1" = sh ] && [ "$2" = -c ]; then
    # Every ctr the batch starts, nested shells included, reaches this node's socket.
    KLOAD_SHIM_CTR=$(command -v ctr) KLOAD_SHIM_SOCK=$sock PATH="$D/bin:$PATH" exec sh -c "$3"
  fi
  [ "$1" = ctr ] || exit 2; shift
  exec ctr -a "$sock" "$@" ;;
*) echo "shim: unexpected: $*" >&2; exit 2 ;;
esac
)SH";
// clang-format on

class E2EDockerImage : public ::testing::Test {
protected:
  Scratch scratch;
  std::filesystem::path shim_dir = scratch / "shim";

  void SetUp() override {
    std::filesystem::create_directories(shim_dir / "inspect");
    write_file(shim_dir / "argv.log", "");
    write_file(shim_dir / "ps.out", "");
    write_file(shim_dir / "save.sh", "echo 'shim: nothing to save' >&2; exit 1\n");
  }

  // Writes the shim. `containers` maps container names to lab node sockets; the
  // cluster "dev" lists them, and a load balancer that runs no containerd, in ps.
  void shim(const std::vector<std::pair<std::string, std::filesystem::path>>& containers) {
    std::string ps;
    std::string cases;
    for (const auto& [name, socket] : containers) {
      ps += name + "\t" + (name.find("control-plane") != std::string::npos ? "control-plane" : "worker") + "\n";
      cases += "    " + name + ") sock=" + socket.string() + " ;;\n";
    }
    ps += "dev-external-load-balancer\texternal-load-balancer\n";
    write_file(shim_dir / "ps.out", ps);
    std::string script = shim_script;
    script.replace(script.find("@DIR@"), 5, shim_dir.string());
    script.replace(script.find("@CASES@"), 7, cases);
    write_file(shim_dir / "docker", script);
    std::filesystem::permissions(shim_dir / "docker", std::filesystem::perms::owner_all);
    // What a batch finds on PATH on these nodes: ctr aimed at the node's socket, and
    // no containerd.
    std::filesystem::create_directories(shim_dir / "bin");
    write_file(shim_dir / "bin" / "ctr", "#!/bin/sh\nexec \"$KLOAD_SHIM_CTR\" -a \"$KLOAD_SHIM_SOCK\" \"$@\"\n");
    write_file(shim_dir / "bin" / "containerd", "#!/bin/sh\necho 'shim: no containerd here' >&2\nexit 127\n");
    for (const char* tool : {"ctr", "containerd"}) {
      std::filesystem::permissions(shim_dir / "bin" / tool, std::filesystem::perms::owner_all);
    }
  }

  // The two kind nodes of cluster "dev" on a lab of two nodes.
  void dev_cluster(const Lab& lab) { shim({{"dev-control-plane", lab.socket(1)}, {"dev-worker", lab.socket(2)}}); }

  std::string archive(const std::string& name, const std::vector<std::string>& args) {
    const auto path = (scratch / name).string();
    std::vector<std::string> full = args;
    full.push_back(path);
    mkimage(full);
    return path;
  }

  static json inspect_of(const std::string& archive_path) {
    auto r = kload({"inspect", "--json", archive_path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out)["images"][0];
  }

  // Makes Docker "have" `ref`: inspect describes the archive's first image, with
  // `id` as .Id (default: its config digest, as the classic image store reports) and
  // `tags` as .RepoTags (default: `ref`).
  std::string docker_has(const std::string& ref, const std::string& archive_path, const std::string& id = "",
                         const std::vector<std::string>& tags = {}) {
    const auto image = inspect_of(archive_path);
    json layers = json::array();
    for (const auto& l : image["layers"]) {
      layers.push_back(l["diffID"]);
    }
    const auto platform = image["platform"].get<std::string>();
    const auto slash = platform.find('/');
    const std::string the_id = id.empty() ? image["id"].get<std::string>() : id;
    json out = {{"Id", the_id},
                {"RepoTags", tags.empty() ? std::vector<std::string>{ref} : tags},
                {"RepoDigests", json::array()},
                {"Os", platform.substr(0, slash)},
                {"Architecture", platform.substr(slash + 1)},
                {"RootFS", {{"Type", "layers"}, {"Layers", layers}}}};
    std::string file = ref;
    std::replace_if(
        file.begin(), file.end(), [](char c) { return c == '/' || c == ':' || c == '@'; }, '_');
    write_file(shim_dir / "inspect" / file, out.dump(2));
    return the_id;
  }

  // What `docker save` does, as shell commands (its arguments are in "$@").
  void save_does(const std::string& script) { write_file(shim_dir / "save.sh", script + "\n"); }
  void save_cats(const std::string& archive_path) { save_does("cat " + archive_path + "; exit 0"); }

  CommandResult run(const std::vector<std::string>& args) {
    write_file(shim_dir / "argv.log", "");
    std::vector<std::string> argv{"env", "PATH=" + shim_dir.string() + ":" + std::getenv("PATH"),
                                  "KLOAD_CACHE=" + (scratch / "cache").string(), kload_binary().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }

  // Runs kload with --json, expecting `exit`, and returns the report.
  json run_json(std::vector<std::string> args, int exit = 0) {
    args.push_back("--json");
    auto r = run(args);
    EXPECT_EQ(r.exit_code, exit) << r.err;
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no JSON report: " << r.out << r.err;
    last_err = r.err;
    return j;
  }

  // The argv lines the shim logged during the last run.
  [[nodiscard]] std::vector<std::string> calls() const {
    std::vector<std::string> out;
    std::istringstream in(read_file(shim_dir / "argv.log"));
    for (std::string line; std::getline(in, line);) {
      out.push_back(line);
    }
    return out;
  }
  [[nodiscard]] std::vector<std::string> calls_starting(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& c : calls()) {
      if (c.starts_with(prefix)) {
        out.push_back(c);
      }
    }
    return out;
  }
  [[nodiscard]] std::size_t saves() const { return calls_starting("[save]").size(); }
  // `ctr images import` runs on `node`, in batches or alone.
  [[nodiscard]] std::size_t imports_on(const std::string& node) const {
    std::size_t n = 0;
    for (const auto& c : calls_starting("[exec][-i][" + node + "]")) {
      for (std::size_t at = 0; (at = c.find("'images' 'import'", at)) != std::string::npos; ++at) {
        ++n;
      }
      n += c.find("[images][import]") != std::string::npos ? 1 : 0;
    }
    return n;
  }

  static const json& node_of(const json& report, const std::string& name) {
    for (const auto& n : report["nodes"]) {
      if (n["node"] == name) {
        return n;
      }
    }
    ADD_FAILURE() << "no node " << name << " in " << report.dump();
    static const json none = json::object();
    return none;
  }

  static void expect_clean(const Lab& lab, int n) {
    for (const auto& [name, image] : lab.images(n)) {
      EXPECT_TRUE(image.complete) << name << " on node " << n;
      EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "staging name left: " << name;
      EXPECT_EQ(name.find("import-"), std::string::npos) << "stray import name: " << name;
    }
  }

  std::string last_err;
};

TEST_F(E2EDockerImage, FirstLoadIntoAKindClusterSavesOnceAndAReloadSavesNothing) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto id = docker_has("app:v1", v1);
  save_cats(v1);

  // First load: the load balancer is left out, one save feeds both nodes.
  auto first = run_json({"docker-image", "app:v1", "--name", "dev"});
  ASSERT_EQ(first["nodes"].size(), 2u);
  EXPECT_EQ(first["nodes"][0]["node"], "dev-control-plane");
  EXPECT_EQ(first["nodes"][1]["node"], "dev-worker");
  EXPECT_EQ(first["nodes"][1]["uri"], "docker://dev-worker");
  EXPECT_TRUE(first["dockerSaved"].get<bool>());
  for (const auto& n : first["nodes"]) {
    EXPECT_TRUE(n["ok"].get<bool>()) << n["error"];
    EXPECT_EQ(n["layersSent"], 3);
    EXPECT_EQ(n["images"][0]["action"], "sent");
  }
  for (int n = 1; n <= 2; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), id);
    expect_clean(lab, n);
  }
  // Exactly what real Docker was asked: discovery, one inspect, the pre-check of each
  // node (the load's first round trip), then one save, then the rest of the load.
  const auto log = calls();
  ASSERT_GE(log.size(), 5u);
  EXPECT_EQ(log[0], ps_line);
  EXPECT_EQ(log[1], logged({"image", "inspect", "app:v1"}));
  const auto save = std::find(log.begin(), log.end(), logged({"save", "app:v1"}));
  ASSERT_NE(save, log.end());
  EXPECT_THAT(std::vector<std::string>(log.begin() + 2, save),
              UnorderedElementsAre(probe_line("dev-control-plane", true), probe_line("dev-worker", true)));
  EXPECT_EQ(saves(), 1u);
  // After the save, the loader's one round trip per node (import, the name created,
  // check), a `sh -c` batch: two docker processes per node in all, one
  // fewer than `kind load` starts.
  for (auto line = save + 1; line != log.end(); ++line) {
    EXPECT_TRUE(line->starts_with("[exec][-i][dev-control-plane][sh][-c][") ||
                line->starts_with("[exec][-i][dev-worker][sh][-c]["))
        << *line;
  }
  EXPECT_EQ(calls_starting("[exec][-i][dev-worker][sh][-c][").size(), 2u);
  EXPECT_EQ(node_of(first, "dev-worker")["ctrCalls"], 2) << "two batches: probe, then stage and commit";
  // One import with the layers under a staging name; a tag, not an import, names it.
  EXPECT_EQ(imports_on("dev-worker"), 1u);

  // Reload: no save, one ctr call per node, and nothing else asked of Docker.
  auto again = run_json({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_FALSE(again["dockerSaved"].get<bool>());
  for (const auto& n : again["nodes"]) {
    EXPECT_TRUE(n["ok"].get<bool>()) << n["error"];
    EXPECT_EQ(n["ctrCalls"], 1);
    EXPECT_EQ(n["bytesSent"], 0);
    EXPECT_EQ(n["images"][0]["action"], "present");
    EXPECT_EQ(n["images"][0]["id"], id);
  }
  EXPECT_THAT(calls(), ElementsAre(ps_line, logged({"image", "inspect", "app:v1"}), ::testing::_, ::testing::_));
  EXPECT_THAT(calls_starting("[exec]"),
              UnorderedElementsAre(probe_line("dev-control-plane", false), probe_line("dev-worker", false)));
  EXPECT_THAT(last_err, HasSubstr("found to be already present on node \"dev-worker\""));
}

TEST_F(E2EDockerImage, ChangedTopLayerIsSavedAndOnlyThatLayerTravels) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  constexpr const char* sidecar = "sidecar:v1=sbase:1M,sidecar:64K";
  const auto both = archive("both.tar", {"--image", app_v1, "--image", sidecar});
  docker_has("app:v1", archive("v1.tar", {"--image", app_v1}));
  const auto sidecar_id = docker_has("sidecar:v1", archive("sidecar.tar", {"--image", sidecar}));
  save_cats(both);
  run_json({"docker-image", "app:v1", "sidecar:v1", "--name", "dev"});
  EXPECT_THAT(calls_starting("[save]"), ElementsAre(logged({"save", "app:v1", "sidecar:v1"})));

  // The app is rebuilt, the sidecar is not: only the app is saved, only its new top
  // layer travels, and the nodes are planned from the cache, without a listing.
  const auto v2 = archive("v2.tar", {"--image", app_v2});
  const auto id2 = docker_has("app:v1", v2);
  save_cats(v2);
  auto report = run_json({"docker-image", "app:v1", "sidecar:v1", "--name", "dev"});
  EXPECT_THAT(calls_starting("[save]"), ElementsAre(logged({"save", "app:v1"})));
  for (const auto& n : report["nodes"]) {
    EXPECT_EQ(n["layersSent"], 1);
    EXPECT_EQ(n["layersSkipped"], 2);
    EXPECT_EQ(n["listings"], 0);
    ASSERT_EQ(n["images"].size(), 2u);
    EXPECT_EQ(n["images"][0]["action"], "sent");
    EXPECT_EQ(n["images"][1]["action"], "present");
    EXPECT_EQ(n["images"][1]["id"], sidecar_id);
  }
  for (int n = 1; n <= 2; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), id2);
    EXPECT_EQ(lab.image_id(n, "docker.io/library/sidecar:v1"), sidecar_id);
  }
}

TEST_F(E2EDockerImage, OnlyTheNodesMissingTheImageAreLoaded) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto id = docker_has("app:v1", v1);
  save_cats(v1);

  // --nodes picks one node by container name: the other is never touched.
  auto one = run_json({"docker-image", "app:v1", "--name", "dev", "--nodes", "dev-worker"});
  ASSERT_EQ(one["nodes"].size(), 1u);
  EXPECT_EQ(one["nodes"][0]["node"], "dev-worker");
  EXPECT_TRUE(calls_starting("[exec][-i][dev-control-plane]").empty());
  EXPECT_TRUE(lab.images(1).empty());
  EXPECT_EQ(lab.image_id(2, "docker.io/library/app:v1"), id);

  // The whole cluster: one save, for the node that lacks the image only.
  auto all = run_json({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(saves(), 1u);
  EXPECT_EQ(node_of(all, "dev-worker")["ctrCalls"], 1);
  EXPECT_EQ(node_of(all, "dev-worker")["images"][0]["action"], "present");
  EXPECT_EQ(node_of(all, "dev-control-plane")["images"][0]["action"], "sent");
  EXPECT_EQ(calls_starting("[exec][-i][dev-worker]").size(), 1u);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id);
  EXPECT_THAT(last_err, HasSubstr("docker save app:v1: needed by 1 of 2 node(s)"));
}

TEST_F(E2EDockerImage, AnUnreachableNodeFailsAloneAndExitsOne) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  ASSERT_TRUE(lab.stop(2));
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto id = docker_has("app:v1", v1);
  save_cats(v1);
  auto report = run_json({"docker-image", "app:v1", "--name", "dev"}, 1);
  EXPECT_TRUE(node_of(report, "dev-control-plane")["ok"].get<bool>());
  EXPECT_FALSE(node_of(report, "dev-worker")["ok"].get<bool>());
  EXPECT_THAT(node_of(report, "dev-worker")["error"]["message"].get<std::string>(), HasSubstr("node dev-worker"));
  EXPECT_EQ(calls_starting("[exec][-i][dev-worker]").size(), 1u) << "only the pre-check";
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id);
}

TEST_F(E2EDockerImage, ContainerdStoreIndexIdIsRecognisedWithoutSave) {
  // Docker's containerd image store: .Id is the index digest (kind 4236), and the save
  // lists a platform whose blobs it does not hold (kind 3795).
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto described = scratch / "c.json";
  const auto c =
      archive("c.tar", {"--layout", "docker25", "--nested-index", "--platforms",
                        std::string(host_platform) + "," + other_platform, "--missing-platform", other_platform,
                        "--json-out", described.string(), "--image", "app:v1=base:2M,top:256K"});
  const auto index = json::parse(read_file(described))["images"][0]["index_digest"].get<std::string>();
  docker_has("app:v1", c, index);
  save_cats(c);

  auto first = run_json({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(saves(), 1u);
  const auto config = inspect_of(c)["id"].get<std::string>();
  for (int n = 1; n <= 2; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), config) << "the host's platform, the one present";
    expect_clean(lab, n);
  }
  for (const auto& n : first["nodes"]) {
    EXPECT_EQ(n["images"][0]["action"], "sent");
  }

  auto again = run_json({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(saves(), 0u);
  EXPECT_THAT(calls_starting("[exec]"),
              UnorderedElementsAre(probe_line("dev-control-plane", false), probe_line("dev-worker", false)));
  for (const auto& n : again["nodes"]) {
    EXPECT_EQ(n["ctrCalls"], 1);
    EXPECT_EQ(n["images"][0]["action"], "present");
  }

  // The platform that is not there is a clear error, after the save says so.
  auto other = run({"docker-image", "app:v1", "--name", "dev", "--platform", other_platform});
  EXPECT_EQ(other.exit_code, 2) << other.err;
  EXPECT_THAT(other.err, HasSubstr("not in the archive"));
}

TEST_F(E2EDockerImage, ContainerdStoreImageKindLoadedIsRecognisedWithoutCache) {
  // `kind load` imports the whole archive: the name then points at the index, which
  // is Docker's .Id, so one check per node recognises it even with no cache at all.
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto described = scratch / "c.json";
  const auto c =
      archive("c.tar", {"--layout", "docker25", "--nested-index", "--platforms",
                        std::string(host_platform) + "," + other_platform, "--missing-platform", other_platform,
                        "--json-out", described.string(), "--image", "app:v1=base:1M,top:128K"});
  const auto index = json::parse(read_file(described))["images"][0]["index_digest"].get<std::string>();
  for (int n = 1; n <= 2; ++n) {
    auto imported = run_command({"sh", "-c", lab.ctr_shell(n) + " images import - < " + c});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
  }
  docker_has("app:v1", c, index);
  save_cats(c);
  auto report = run_json({"docker-image", "app:v1", "--name", "dev", "--no-cache"});
  EXPECT_EQ(saves(), 0u);
  for (const auto& n : report["nodes"]) {
    EXPECT_EQ(n["ctrCalls"], 1);
    EXPECT_EQ(n["images"][0]["action"], "present");
  }
}

TEST_F(E2EDockerImage, CriImageIdRefRecognisesTheClassicStoreWithoutCache) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto id = docker_has("app:v1", v1);
  save_cats(v1);
  run_json({"docker-image", "app:v1", "--name", "dev", "--no-cache"});
  EXPECT_EQ(saves(), 1u);

  // Without a cache or CRI, nothing on the node maps the name to the image ID in one
  // call: the image is saved again, and the loader finds nothing to send.
  auto blind = run_json({"docker-image", "app:v1", "--name", "dev", "--no-cache"});
  EXPECT_EQ(saves(), 1u);
  for (const auto& n : blind["nodes"]) {
    EXPECT_EQ(n["images"][0]["action"], "present");
    EXPECT_EQ(n["bytesSent"], 0);
  }

  // kind nodes run CRI, which names every image "sha256:<config digest>" too.
  for (int n = 1; n <= 2; ++n) {
    auto tagged = lab.ctr(n, {"images", "tag", "docker.io/library/app:v1", id});
    ASSERT_EQ(tagged.exit_code, 0) << tagged.err;
  }
  auto cri = run_json({"docker-image", "app:v1", "--name", "dev", "--no-cache"});
  EXPECT_EQ(saves(), 0u);
  for (const auto& n : cri["nodes"]) {
    EXPECT_EQ(n["ctrCalls"], 1);
    EXPECT_EQ(n["images"][0]["action"], "present");
  }
}

TEST_F(E2EDockerImage, FailingSaveExitsTwoAndCommitsNothing) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  docker_has("app:v1", v1);

  // Docker dies mid-stream and says why.
  save_does("head -c 1500000 " + v1 + "; echo 'Error response from daemon: unexpected EOF' >&2; exit 1");
  auto died = run({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(died.exit_code, 2) << died.err;
  EXPECT_THAT(died.err, HasSubstr("kload: error: docker save app:v1: docker failed: Error response from daemon: "
                                  "unexpected EOF"));
  EXPECT_EQ(saves(), 1u);
  EXPECT_EQ(imports_on("dev-worker"), 0u);

  // The stream just stops, and Docker claims success.
  save_does("head -c 1500000 " + v1 + "; exit 0");
  auto cut = run({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(cut.exit_code, 2) << cut.err;
  EXPECT_THAT(cut.err, HasSubstr("kload: error: docker save app:v1"));
  for (int n = 1; n <= 2; ++n) {
    EXPECT_TRUE(lab.images(n).empty()) << "no staging and no user name on node " << n;
  }
}

TEST_F(E2EDockerImage, UnknownImageExitsTwoNamingItAndAsksNoNode) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  docker_has("app:v1", v1);
  auto r = run({"docker-image", "app:v1", "nope:v1", "--name", "dev"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("kload: error: no such image in Docker: nope:v1"));
  EXPECT_THAT(calls(), ElementsAre(ps_line, logged({"image", "inspect", "app:v1", "nope:v1"})));
}

TEST_F(E2EDockerImage, UnknownNodeIsAUsageErrorListingTheKnownOnes) {
  shim({{"dev-control-plane", "/nonexistent"}, {"dev-worker", "/nonexistent"}});
  auto r = run({"docker-image", "app:v1", "--name", "dev", "--nodes", "dev-worker,dev-worker9"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("kload: error: --nodes: unknown node \"dev-worker9\" in kind cluster \"dev\"; its "
                               "nodes are: dev-control-plane, dev-worker\n"));
  EXPECT_THAT(calls(), ElementsAre(ps_line));
}

TEST_F(E2EDockerImage, NoNodesAndNoDockerAreClearErrors) {
  shim({});
  auto none = run({"docker-image", "app:v1", "--name", "dev"});
  EXPECT_EQ(none.exit_code, 2) << none.err;
  EXPECT_THAT(none.err, HasSubstr("kload: error: no nodes for kind cluster \"dev\"; is it running? (docker ps -a "
                                  "--filter label=io.x-k8s.kind.cluster=dev)"));

  // image-archive discovers too, by default the cluster "kind".
  auto archive_none = run({"image-archive", "app.tar"});
  EXPECT_EQ(archive_none.exit_code, 2) << archive_none.err;
  EXPECT_THAT(archive_none.err, HasSubstr("no nodes for kind cluster \"kind\""));
  EXPECT_THAT(calls(), ElementsAre(logged({"ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=kind", "--format",
                                           "{{.Names}}\\t{{.Label \"io.x-k8s.kind.role\"}}"})));

  write_file(shim_dir / "down", "");
  auto down = run({"docker-image", "app:v1", "--node", "docker://dev-worker"});
  EXPECT_EQ(down.exit_code, 2) << down.err;
  EXPECT_THAT(down.err, HasSubstr("kload: error: docker image inspect app:v1: Cannot connect to the Docker daemon"));

  auto missing = run_command(
      {"env", "PATH=/nonexistent", kload_binary().string(), "docker-image", "app:v1", "--node", "docker://dev-worker"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("docker is not installed or not on PATH"));
}

TEST_F(E2EDockerImage, ImageArchiveLoadsIntoTheKindClusterNodes) {
  Lab lab(scratch / "lab", 2, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  dev_cluster(lab);
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  auto report = run_json({"image-archive", v1, "--name", "dev"});
  ASSERT_EQ(report["nodes"].size(), 2u);
  EXPECT_EQ(calls()[0], ps_line);
  for (int n = 1; n <= 2; ++n) {
    EXPECT_EQ(lab.image_id(n, "docker.io/library/app:v1"), inspect_of(v1)["id"].get<std::string>());
  }
}

TEST_F(E2EDockerImage, TagsAreRequiredAndIdsRefused) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  shim({{"dev-control-plane", lab.socket(1)}});
  const auto v1 = archive("v1.tar", {"--image", app_v1});
  const auto id = docker_has("app:v1", v1);
  // Docker resolves an ID prefix to the image, but an ID is no name to set on nodes.
  docker_has(id.substr(7, 12), v1, "", {"app:v1"});
  auto r = run({"docker-image", id.substr(7, 12), "--name", "dev"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is not one of the image's tags in Docker"));
  EXPECT_THAT(r.err, HasSubstr("docker.io/library/app:v1"));
}

// Parsing `docker image inspect` (source/docker.h) needs no process: plain values.
TEST(DockerInspect, ParsesIdTagsLayersAndPlatform) {
  const std::string out = R"([{"Id": "sha256:)" + std::string(64, 'a') + R"(",
    "RepoTags": ["app:v1", "registry.example.com/team/app:dev", "Bad:Tag"],
    "RootFS": {"Type": "layers", "Layers": ["sha256:)" +
                          std::string(64, 'b') + R"("]},
    "Os": "linux", "Architecture": "arm64", "Variant": "v8"}])";
  auto images = source::parse_inspect(out, {"app:v1"});
  ASSERT_TRUE(images.has_value()) << images.error().message;
  ASSERT_EQ(images->size(), 1u);
  const auto& i = (*images)[0];
  EXPECT_EQ(i.ref, "app:v1");
  EXPECT_EQ(i.id.hex(), std::string(64, 'a'));
  EXPECT_THAT(i.repo_tags, ElementsAre("docker.io/library/app:v1", "registry.example.com/team/app:dev"));
  ASSERT_EQ(i.diff_ids.size(), 1u);
  EXPECT_EQ(i.diff_ids[0].hex(), std::string(64, 'b'));
  EXPECT_EQ(i.platform.str(), "linux/arm64/v8");
}

TEST(DockerInspect, RefusesWhatIsNotAnAnswer) {
  EXPECT_FALSE(source::parse_inspect("Error", {"a"}).has_value());
  EXPECT_FALSE(source::parse_inspect("[]", {"a"}).has_value());
  EXPECT_FALSE(source::parse_inspect(R"([{"Id": "abc"}])", {"a"}).has_value());
  auto two = source::parse_inspect(R"([{"Id": "sha256:)" + std::string(64, 'a') + R"("}])", {"a", "b"});
  ASSERT_FALSE(two.has_value());
  EXPECT_EQ(two.error().kind, util::ErrorKind::bad_input);
}

TEST(DockerInspect, ArgvIsOneCallForAllImages) {
  EXPECT_THAT(source::inspect_argv({"app:v1", "db:v2"}), ElementsAre("docker", "image", "inspect", "app:v1", "db:v2"));
  EXPECT_THAT(source::save_argv({"app:v1", "db:v2"}), ElementsAre("docker", "save", "app:v1", "db:v2"));
}

// A Docker that answers save from canned output: only run(), so save_images streams
// through ProcessRunner's replay.
class CannedDocker final : public util::ProcessRunner {
public:
  util::ProcessResult answer;
  std::vector<std::vector<std::string>> asked;
  util::Result<util::ProcessResult> run(const std::vector<std::string>& argv, const util::StdinFeeder&,
                                        std::chrono::milliseconds) override {
    asked.push_back(argv);
    return answer;
  }
};

TEST(DockerSave, ReadsTheStreamThroughTheRunner) {
  Scratch scratch;
  const auto path = scratch / "v1.tar";
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:300K,top:1K", path.string()}));
  CannedDocker docker;
  docker.answer.exit_code = 0;
  docker.answer.out = read_file(path);
  auto saved = source::save_images({"app:v1"}, docker);
  ASSERT_TRUE(saved.has_value()) << saved.error().message;
  EXPECT_EQ(saved->set.images.size(), 1u);
  EXPECT_THAT(docker.asked, ElementsAre(ElementsAre("docker", "save", "app:v1")));
}

TEST(DockerSave, DockersOwnLineSaysWhyItFailed) {
  CannedDocker docker;
  docker.answer.exit_code = 1;
  docker.answer.err = "Error response from daemon: No such image: app:v2\n";
  auto saved = source::save_images({"app:v2"}, docker);
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error().kind, util::ErrorKind::bad_input);
  EXPECT_EQ(saved.error().message, "docker save app:v2: no such image in Docker: app:v2");
}

TEST(DockerSave, AStreamThatStopsEarlyIsAnErrorEvenWhenDockerSaysAllIsWell) {
  Scratch scratch;
  const auto path = scratch / "v1.tar";
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:300K,top:1K", path.string()}));
  CannedDocker docker;
  docker.answer.exit_code = 0;
  const auto whole = read_file(path);
  docker.answer.out = whole.substr(0, whole.size() / 2);
  auto saved = source::save_images({"app:v1"}, docker);
  ASSERT_FALSE(saved.has_value());
  EXPECT_EQ(saved.error().kind, util::ErrorKind::bad_input);
  EXPECT_THAT(saved.error().message, HasSubstr("docker save app:v1"));
}

TEST(DockerSave, ADockerThatCannotBeRunIsNamed) {
  // The real runner, with a PATH where docker cannot be found.
  const char* old = std::getenv("PATH");
  const std::string saved_path = old != nullptr ? old : "";
  ::setenv("PATH", "/nonexistent", 1);
  auto saved = source::save_images({"app:v1"});
  ::setenv("PATH", saved_path.c_str(), 1);
  ASSERT_FALSE(saved.has_value());
  EXPECT_THAT(saved.error().message, HasSubstr("docker save app:v1: docker is not installed or not on PATH"));
}

} // namespace
} // namespace kload::testing
