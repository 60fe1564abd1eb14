// End-to-end loads into a real containerd node (tools/lab) reached through a real
// OpenSSH server (tools/sshlab) on a loopback port. kload runs plain `ssh` with the
// URI's host alias, so the alias can only resolve through the user's own
// ~/.ssh/config: each run gets a private mount namespace in which the user's home (or
// ~/.ssh) is a scratch directory holding that config. OpenSSH finds ~ through the
// passwd entry, not $HOME, so this is the honest way to stand in for a user's config
// without touching the real one.

#include "support/test_support.h"

#include <arpa/inet.h>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <pwd.h>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace kload::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* host_alias = "kload-ssh-test";

// A port that was free on 127.0.0.1 a moment ago (the kernel's pick for port 0).
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string sshlab_tool() {
  return (source_dir() / "tools" / "sshlab").string();
}

// A private sshd (tools/sshlab) on a free loopback port, stopped when the test ends.
class SshServer {
public:
  // `session_path`, when not empty: the PATH every session gets (sshlab up's).
  explicit SshServer(fs::path dir, const std::string& session_path = "") : dir_(std::move(dir)) {
    // Another process may take the port between the pick and sshd's bind: try again.
    for (int attempt = 0; attempt < 3 && !up_; ++attempt) {
      port_ = free_loopback_port();
      std::vector<std::string> argv{sshlab_tool(), "up", dir_.string(), std::to_string(port_)};
      if (!session_path.empty()) {
        argv.push_back(session_path);
      }
      last_ = run_command(argv);
      up_ = last_.exit_code == 0;
    }
  }
  ~SshServer() { run_command({sshlab_tool(), "down", dir_.string()}); }
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  [[nodiscard]] bool up() const { return up_; }
  [[nodiscard]] std::string why_not_up() const { return last_.err; }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const fs::path& dir() const { return dir_; }
  [[nodiscard]] fs::path ssh_config() const { return dir_ / "ssh_config"; }
  // SIGKILLs every session process of this sshd; returns how many there were.
  int drop_connections() const {
    const auto r = run_command({sshlab_tool(), "drop", dir_.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? std::atoi(r.out.c_str()) : 0;
  }
  // Logins sshd accepted so far: one per ssh connection, i.e. per ctr call.
  [[nodiscard]] int logins() const {
    const auto log = read_file(dir_ / "log");
    int n = 0;
    for (auto at = log.find("Accepted publickey"); at != std::string::npos;
         at = log.find("Accepted publickey", at + 1)) {
      ++n;
    }
    return n;
  }

private:
  fs::path dir_;
  int port_ = 0;
  bool up_ = false;
  CommandResult last_;
};

// An ssh-agent on a socket in the scratch directory, killed when the test ends.
class SshAgent {
public:
  explicit SshAgent(const fs::path& socket) : socket_(socket) {
    const auto r = run_command({"ssh-agent", "-s", "-a", socket.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto at = r.out.find("SSH_AGENT_PID=");
    if (at != std::string::npos) {
      pid_ = std::atoi(r.out.c_str() + at + std::string("SSH_AGENT_PID=").size());
    }
  }
  ~SshAgent() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
    }
  }
  SshAgent(const SshAgent&) = delete;
  SshAgent& operator=(const SshAgent&) = delete;

  [[nodiscard]] bool up() const { return pid_ > 0; }
  [[nodiscard]] const fs::path& socket() const { return socket_; }

private:
  fs::path socket_;
  pid_t pid_ = -1;
};

class E2ESsh : public ::testing::Test {
protected:
  Scratch scratch;

  void SetUp() override {
    const passwd* pw = ::getpwuid(::getuid());
    ASSERT_NE(pw, nullptr);
    user_ = pw->pw_name;
    const fs::path home = pw->pw_dir;
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root: the stand-in ~/.ssh/config is bind-mounted in a private mount namespace";
    }
    if (!fs::exists("/usr/sbin/sshd")) {
      GTEST_SKIP() << "no /usr/sbin/sshd (Debian package openssh-server; tools/dev deps installs it)";
    }
    if (run_command({"unshare", "--mount", "--propagation", "private", "true"}).exit_code != 0) {
      GTEST_SKIP() << "cannot create a mount namespace here (unshare --mount), so there is no honest "
                      "way to give ssh a stand-in ~/.ssh/config";
    }
    // Hide the real ~/.ssh when there is one; otherwise the home itself, which must
    // then not hold anything this test runs or writes.
    const fs::path user_ssh = scratch / "home" / ".ssh";
    fs::create_directories(user_ssh);
    fs::permissions(user_ssh, fs::perms::owner_all);
    if (fs::is_directory(home / ".ssh")) {
      bind_from_ = user_ssh;
      bind_to_ = home / ".ssh";
    } else {
      bind_from_ = scratch / "home";
      bind_to_ = home;
      const auto under_home = [&](const fs::path& p) {
        const auto rel = fs::weakly_canonical(p).lexically_relative(fs::weakly_canonical(home));
        return !rel.empty() && *rel.begin() != "..";
      };
      if (home.empty() || home == "/" || !fs::is_directory(home) || under_home(kload_binary()) ||
          under_home(scratch.path()) || under_home(source_dir())) {
        GTEST_SKIP() << "the home directory " << home << " holds the build or the scratch space; cannot hide it";
      }
    }
  }

  // The user's ~/.ssh/config as every kload run of this test sees it.
  void set_user_ssh_config(const std::string& text) {
    const auto path = scratch / "home" / ".ssh" / "config";
    write_file(path, text);
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  }

  // argv that runs kload ARGS as the user would, with the stand-in ~/.ssh and
  // SSH_AUTH_SOCK set to `agent` (unset when empty), so no agent of whoever runs the
  // tests takes part.
  std::vector<std::string> kload_argv(const std::vector<std::string>& args, const std::string& agent = "") const {
    // Inside the namespace: bind the stand-in over the real directory, then run kload.
    const char* bind_then_exec = "mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"";
    std::vector<std::string> argv{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c", bind_then_exec};
    argv.insert(argv.end(), {"user-home", bind_from_.string(), bind_to_.string(), "env"});
    if (agent.empty()) {
      argv.insert(argv.end(), {"-u", "SSH_AUTH_SOCK"});
    } else {
      argv.push_back("SSH_AUTH_SOCK=" + agent);
    }
    argv.push_back(kload_binary().string());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  CommandResult run_kload(const std::vector<std::string>& args, const std::string& agent = "") const {
    return run_command(kload_argv(args, agent));
  }

  // kload image-archive --json ARCHIVE --node URI, expecting `expect_exit`.
  json load(const std::string& archive, const std::string& uri, int expect_exit = 0, std::string* err = nullptr,
            const std::string& agent = "") {
    auto r = run_kload({"image-archive", "--json", archive, "--node", uri}, agent);
    EXPECT_EQ(r.exit_code, expect_exit) << r.err;
    if (err != nullptr) {
      *err = r.err;
    }
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no JSON report: " << r.out << r.err;
    return j;
  }

  std::string archive(const std::string& name, const std::vector<std::string>& args) {
    const auto path = (scratch / name).string();
    std::vector<std::string> full = args;
    full.push_back(path);
    mkimage(full);
    return path;
  }

  json inspect(const std::string& archive_path) {
    auto r = kload({"inspect", "--json", archive_path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  std::string id_of(const std::string& archive_path) { return inspect(archive_path)["images"][0]["id"]; }

  // ssh://USER@kload-ssh-test?address=SOCKET&snapshotter=SNAP: the lab node's socket on
  // the far side of ssh, with the snapshotter the lab picked.
  std::string ssh_uri(const Lab& lab, const std::string& socket = "") const {
    const auto& lab_uri = lab.uris().at(0);
    const auto snap = lab_uri.substr(lab_uri.find("snapshotter=") + std::string("snapshotter=").size());
    return "ssh://" + user_ + "@" + host_alias + "?address=" + (socket.empty() ? lab.socket(1).string() : socket) +
           "&snapshotter=" + snap;
  }

  static const json& node0(const json& report) { return report["nodes"][0]; }

  std::string user_;

private:
  fs::path bind_from_;
  fs::path bind_to_;
};

TEST_F(E2ESsh, FirstLoadAndReloadThroughTheUsersSshConfig) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd");
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  const auto v1 = archive("v1.tar", {"--image", "app:v1=base:2M,mid:1M,top:256K"});
  const auto uri = ssh_uri(lab);

  // The control: without the user's config the alias means nothing to ssh, and the
  // failure names the node.
  set_user_ssh_config("");
  const int probe_logins = sshd.logins(); // sshlab's own check that logins work
  std::string err;
  auto unresolved = load(v1, uri, 1, &err);
  EXPECT_FALSE(node0(unresolved)["ok"].get<bool>());
  EXPECT_NE(err.find("node " + std::string(host_alias) + ": not reachable"), std::string::npos) << err;
  EXPECT_EQ(sshd.logins(), probe_logins);

  // With it: every layer travels, once, and every ctr call is one ssh login.
  set_user_ssh_config(read_file(sshd.ssh_config()));
  auto first = load(v1, uri);
  ASSERT_EQ(first["nodes"].size(), 1u);
  EXPECT_TRUE(node0(first)["ok"].get<bool>()) << node0(first)["error"];
  EXPECT_EQ(node0(first)["node"], host_alias);
  EXPECT_EQ(node0(first)["layersSent"], 3);
  EXPECT_EQ(node0(first)["layersSkipped"], 0);
  EXPECT_EQ(node0(first)["images"][0]["action"], "sent");
  EXPECT_EQ(sshd.logins() - probe_logins, node0(first)["ctrCalls"].get<int>());
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_TRUE(image.complete) << name;
    EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "staging name left: " << name;
  }

  // Unchanged reload: nothing sent, one ctr call, one login.
  const int logins_before = sshd.logins();
  auto again = load(v1, uri);
  EXPECT_TRUE(node0(again)["ok"].get<bool>()) << node0(again)["error"];
  EXPECT_EQ(node0(again)["layersSent"], 0);
  EXPECT_EQ(node0(again)["bytesSent"], 0);
  EXPECT_EQ(node0(again)["ctrCalls"], 1);
  EXPECT_EQ(node0(again)["images"][0]["action"], "present");
  EXPECT_EQ(sshd.logins() - logins_before, 1);
}

TEST_F(E2ESsh, TheUsersAgentHoldsTheKey) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd");
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  SshAgent agent(scratch / "agent.sock");
  ASSERT_TRUE(agent.up());
  auto added = run_command(
      {"env", "SSH_AUTH_SOCK=" + agent.socket().string(), "ssh-add", "-q", (sshd.dir() / "id_ed25519").string()});
  ASSERT_EQ(added.exit_code, 0) << added.err;
  // The key file is gone: only the agent can prove who the user is.
  fs::rename(sshd.dir() / "id_ed25519", scratch / "id_ed25519.in-agent-only");
  set_user_ssh_config("Host " + std::string(host_alias) + "\n  HostName 127.0.0.1\n  Port " +
                      std::to_string(sshd.port()) + "\n  UserKnownHostsFile " + (sshd.dir() / "known_hosts").string() +
                      "\n");
  const auto v1 = archive("v1.tar", {"--image", "app:v1=base:256K"});

  std::string err;
  load(v1, ssh_uri(lab), 1, &err); // no agent: no key
  EXPECT_NE(err.find("not reachable"), std::string::npos) << err;

  auto report = load(v1, ssh_uri(lab), 0, nullptr, agent.socket().string());
  EXPECT_TRUE(node0(report)["ok"].get<bool>()) << node0(report)["error"];
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
}

// A process started in the background (stdout and stderr to files), killed and reaped
// when the test ends without having waited for it.
class Child {
public:
  Child(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> cargv;
    for (const auto& a : argv) {
      cargv.push_back(const_cast<char*>(a.c_str()));
    }
    cargv.push_back(nullptr);
    if (posix_spawnp(&pid_, cargv[0], &actions, nullptr, cargv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] bool started() const { return pid_ > 0; }
  // Whether it has not exited yet (without reaping it).
  [[nodiscard]] bool running() const {
    siginfo_t info{};
    return pid_ > 0 && waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
  }
  // Its wait status, once it exits within `limit`; nothing if it does not.
  std::optional<int> wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    int status = 0;
    if (pid_ <= 0 || running() || ::waitpid(pid_, &status, 0) != pid_) {
      return std::nullopt;
    }
    pid_ = -1;
    return status;
  }

private:
  pid_t pid_ = -1;
};

// Whether some process is still running `ctr ... images import` against `socket`
// (an orphan of a dropped session finishing its failure).
bool import_running(const fs::path& socket) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string cmdline = read_file(entry.path() / "cmdline");
    for (auto& c : cmdline) {
      if (c == '\0') {
        c = ' ';
      }
    }
    if (cmdline.find(socket.string()) != std::string::npos && cmdline.find("images import") != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_F(E2ESsh, DroppedConnectionMidTransferNeverExposesAnIncompleteImageAndARerunSendsTheRest) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd");
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  set_user_ssh_config(read_file(sshd.ssh_config()));
  const auto uri = ssh_uri(lab);
  const auto old = archive("old.tar", {"--image", "app:v1=old:1M"});
  load(old, uri);
  ASSERT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(old));

  const auto big = archive("big.tar", {"--compressible", "0", "--image", "app:v1=base:96M,top:64M"});
  const auto out_file = scratch / "out";
  const auto err_file = scratch / "err";
  Child kload_run(kload_argv({"image-archive", "--json", big, "--node", uri}), out_file, err_file);
  ASSERT_TRUE(kload_run.started());
  // Cut the connection once the import runs on the node (it is then reading the
  // stream): 160 MiB take well over a second to cross ssh and be ingested.
  for (int i = 0; i < 3000 && !import_running(lab.socket(1)) && kload_run.running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int killed = sshd.drop_connections();
  const auto waited = kload_run.wait(std::chrono::seconds(120));
  ASSERT_TRUE(waited.has_value()) << "kload did not notice the dropped connection within 2 minutes";
  const int status = *waited;
  ASSERT_TRUE(WIFEXITED(status));
  const auto err = read_file(err_file);
  const auto report = json::parse(read_file(out_file), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << err;
  if (killed == 0 || node0(report)["ok"].get<bool>()) {
    GTEST_SKIP() << "the transfer finished before the connection was dropped; nothing to observe";
  }
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_EQ(node0(report)["wireCompression"], "zstd") << "the node has zstd: the cut stream was a zstd frame";
  EXPECT_NE(node0(report)["error"]["message"].get<std::string>().find("node " + std::string(host_alias)), std::string::npos)
      << node0(report)["error"];
  EXPECT_NE(err.find(host_alias), std::string::npos) << err;

  // The remote ctr of the dropped session may still be failing on its cut stream.
  for (int i = 0; i < 500 && import_running(lab.socket(1)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_FALSE(import_running(lab.socket(1))) << "the dropped import never ended";
  std::this_thread::sleep_for(std::chrono::milliseconds(500)); // containerd's GC after the lease ends

  // The name still points at the old, complete image, never at a half-loaded one,
  // and no staging name is left behind.
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_TRUE(image.complete) << name << " points at an incomplete image";
    EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "staging name left: " << name;
  }
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(old));

  // Whatever layers did arrive whole are used; the rerun sends only the others.
  const auto content = lab.ctr(1, {"content", "ls", "-q"}).out;
  const auto big_model = inspect(big);
  int present = 0;
  for (const auto& layer : big_model["images"][0]["layers"]) {
    present += content.find(layer["digest"].get<std::string>()) != std::string::npos ? 1 : 0;
  }
  auto rerun = load(big, uri);
  EXPECT_TRUE(node0(rerun)["ok"].get<bool>()) << node0(rerun)["error"];
  EXPECT_EQ(node0(rerun)["layersSent"], 2 - present);
  EXPECT_EQ(node0(rerun)["layersSkipped"], present);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(big));
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_TRUE(image.complete) << name;
  }
}

TEST_F(E2ESsh, HostileWords) {
  Lab lab(scratch / "lab", 1, LabKind{});  // host nodes: this suite drives them directly
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd");
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  set_user_ssh_config(read_file(sshd.ssh_config()));
  const auto v1 = archive("v1.tar", {"--image", "app:v1=base:256K"});
  const std::string pwned = (scratch / "pwned").string();

  // Rejected before any process starts: host, user, namespace and snapshotter are
  // names, the address must be an absolute path.
  const std::vector<std::string> rejected{
      "ssh://" + user_ + "@" + host_alias + "$(touch " + pwned + ")",
      "ssh://`touch " + pwned + "`",
      "ssh://" + user_ + ";touch " + pwned + ";@" + host_alias,
      "ssh://'" + std::string(host_alias) + "'",
      "ssh://\"" + std::string(host_alias) + "\"",
      "ssh://-oProxyCommand=touch " + pwned,
      "ssh://" + std::string(host_alias) + "?namespace=k8s.io;touch " + pwned,
      "ssh://" + std::string(host_alias) + "?snapshotter=$(touch " + pwned + ")",
      "ssh://" + std::string(host_alias) + "?address=$(touch " + pwned + ")",
  };
  for (const auto& uri : rejected) {
    auto r = run_kload({"image-archive", "--dry-run", v1, "--node", uri});
    EXPECT_EQ(r.exit_code, 2) << uri << "\n" << r.err;
    EXPECT_NE(r.err.find("bad node URI"), std::string::npos) << r.err;
  }

  // Image names are validated when the archive is read.
  const auto hostile_name = archive("name.tar", {"--image", "app:$(touch " + pwned + ")=base:256K"});
  auto named = run_kload({"image-archive", hostile_name, "--node", ssh_uri(lab)});
  EXPECT_EQ(named.exit_code, 2) << named.err;
  EXPECT_NE(named.err.find("invalid image name"), std::string::npos) << named.err;

  // A socket path may hold anything but control characters: each one reaches ctr on
  // the node as one literal word through the remote shell. Each directory below
  // holds `sock`, a symlink to the lab node's socket, so ctr reaches the node only if
  // the path arrived intact: the first load sends, imports and tags through it, the
  // others find the image with their one call.
  const std::vector<std::string> words{
      "$(touch " + pwned + "1)",
      "`touch " + pwned + "2`",
      "x;touch " + pwned + "3;'q' \"d\" \\",
  };
  for (std::size_t i = 0; i < words.size(); ++i) {
    const auto dir = scratch / ("h" + std::to_string(i)) / words[i];
    fs::create_directories(dir);
    fs::create_symlink(lab.socket(1), dir / "sock");
    const auto socket = (dir / "sock").string();
    ASSERT_LT(socket.size(), 108u) << "scratch path too long for a unix socket: " << socket;
    auto report = load(v1, ssh_uri(lab, socket));
    EXPECT_TRUE(node0(report)["ok"].get<bool>()) << socket << ": " << node0(report)["error"];
    EXPECT_EQ(node0(report)["images"][0]["action"], i == 0 ? "sent" : "present") << socket;
  }
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
  for (const auto& entry : fs::directory_iterator(scratch.path())) {
    EXPECT_EQ(entry.path().filename().string().find("pwned"), std::string::npos)
        << "a shell ran a word kload sent: " << entry.path();
  }
}

// --- the stream on the wire: zstd where the node has it ---

// How many times `text` holds `what`.
int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// The summary line of a load's stderr ("N image(s) on M node(s): sent ..."), or "".
std::string summary_of(const std::string& err) {
  const auto at = err.find(" image(s) on ");
  if (at == std::string::npos) {
    return "";
  }
  const auto newline = err.rfind('\n', at);
  const auto begin = newline == std::string::npos ? 0 : newline + 1;
  return err.substr(begin, err.find('\n', at) - begin);
}

TEST_F(E2ESsh, ANodeWithZstdGetsTheStreamCompressedAndIsAskedOnce) {
  Lab lab(scratch / "lab", 1, LabKind{});
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd");
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  set_user_ssh_config(read_file(sshd.ssh_config()));
  ASSERT_EQ(run_command({"ssh", "-F", sshd.ssh_config().string(), host_alias, "command -v zstd"}).exit_code, 0)
      << "this machine has no zstd on sshd's PATH (Debian package zstd; tools/dev deps installs it)";
  const auto uri = ssh_uri(lab);
  // Half of each MiB repeated text, half random: about what layers of files compress to.
  const auto v1 = archive("v1.tar", {"--image", "app:v1=base:8M,top:2M"});

  auto first = run_kload({"image-archive", "-v", "--json", v1, "--node", uri});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto report = json::parse(first.out);
  const auto& n1 = node0(report);
  EXPECT_EQ(n1["wireCompression"], "zstd");
  EXPECT_GT(n1["wireBytes"].get<std::uint64_t>(), 0u);
  EXPECT_LT(n1["wireBytes"].get<std::uint64_t>(), n1["bytesSent"].get<std::uint64_t>() * 3 / 4) << n1.dump();
  EXPECT_EQ(n1["ctrCalls"], 2) << "asked in the probe's round trip, not one of its own";
  EXPECT_EQ(count_of(first.err, "command -v zstd"), 1) << first.err;
  EXPECT_EQ(count_of(first.err, "zstd -dc | ctr images import"), 1) << "the staging import: " << first.err;
  EXPECT_NE(summary_of(first.err).find("on the wire"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("on the wire, zstd)"), std::string::npos) << "the node's line: " << first.err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_TRUE(image.complete) << name;
    EXPECT_EQ(name.find("kload-staging"), std::string::npos) << "staging name left: " << name;
  }

  // The node's record knows: the next load does not ask, and still compresses.
  const auto v2 = archive("v2.tar", {"--image", "app:v1=base:8M,new:2M"});
  auto second = run_kload({"image-archive", "-v", "--json", v2, "--node", uri});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(count_of(second.err, "command -v zstd"), 0) << second.err;
  EXPECT_GE(count_of(second.err, "zstd -dc | ctr images import"), 1) << second.err;
  const auto second_report = json::parse(second.out);
  const auto& n2 = node0(second_report);
  EXPECT_EQ(n2["wireCompression"], "zstd");
  EXPECT_EQ(n2["layersSent"], 1);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v2));

  // --wire-compression none: the stream as it is.
  const auto v3 = archive("v3.tar", {"--image", "app:v1=base:8M,third:2M"});
  auto plain = run_kload({"image-archive", "-v", "--json", "--wire-compression", "none", v3, "--node", uri});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(count_of(plain.err, "zstd"), 0) << plain.err;
  const auto plain_report = json::parse(plain.out);
  const auto& n3 = node0(plain_report);
  EXPECT_EQ(n3["wireCompression"], "none");
  EXPECT_EQ(n3["wireBytes"], n3["bytesSent"]);
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v3));
}

// A PATH directory holding every program of the usual ones but zstd.
fs::path path_without_zstd(const fs::path& dir) {
  fs::create_directories(dir);
  for (const char* from : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(from, ec)) {
      const auto name = entry.path().filename();
      if (name != "zstd" && !fs::exists(fs::symlink_status(dir / name))) {
        fs::create_symlink(entry.path(), dir / name);
      }
    }
  }
  return dir;
}

TEST_F(E2ESsh, ANodeWithoutZstdGetsTheStreamAsItIsAndIsAskedOnce) {
  Lab lab(scratch / "lab", 1, LabKind{});
  ASSERT_TRUE(lab.up());
  SshServer sshd(scratch / "sshd", path_without_zstd(scratch / "bin").string());
  ASSERT_TRUE(sshd.up()) << "tools/sshlab up failed: " << sshd.why_not_up();
  set_user_ssh_config(read_file(sshd.ssh_config()));
  ASSERT_NE(run_command({"ssh", "-F", sshd.ssh_config().string(), host_alias, "command -v zstd"}).exit_code, 0)
      << "zstd is still on the sessions' PATH";
  const auto uri = ssh_uri(lab);
  const auto v1 = archive("v1.tar", {"--image", "app:v1=base:2M,top:1M"});

  auto first = run_kload({"image-archive", "-v", "--json", v1, "--node", uri});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto first_report = json::parse(first.out);
  const auto& n1 = node0(first_report);
  EXPECT_EQ(n1["wireCompression"], "none");
  EXPECT_EQ(n1["wireBytes"], n1["bytesSent"]);
  EXPECT_EQ(count_of(first.err, "command -v zstd"), 1) << first.err;
  EXPECT_EQ(count_of(first.err, "zstd -dc"), 0) << first.err;
  EXPECT_FALSE(summary_of(first.err).empty()) << first.err;
  EXPECT_EQ(summary_of(first.err).find("on the wire"), std::string::npos) << "nothing was compressed: " << first.err;
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v1));

  const auto v2 = archive("v2.tar", {"--image", "app:v1=base:2M,new:1M"});
  auto second = run_kload({"image-archive", "-v", "--json", v2, "--node", uri});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(count_of(second.err, "command -v zstd"), 0) << "remembered: " << second.err;
  const auto second_report = json::parse(second.out);
  EXPECT_EQ(node0(second_report)["wireCompression"], "none");
  EXPECT_EQ(lab.image_id(1, "docker.io/library/app:v1"), id_of(v2));
}

} // namespace
} // namespace kload::testing
