#include "support/test_support.h"

#include "kload/util/process.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace kload::testing {

namespace {
// Tests never touch the user's own cache: each test process gets a private one.
struct PrivateCache {
  std::string dir;
  PrivateCache() {
    const char* base = std::getenv("TMPDIR");
    dir = std::string(base != nullptr ? base : "/tmp") + "/kload-test-cache.XXXXXX";
    if (mkdtemp(dir.data()) != nullptr) {
      setenv("KLOAD_CACHE", dir.c_str(), 1);
    }
  }
  ~PrivateCache() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
} private_cache;
} // namespace

std::filesystem::path source_dir() {
  if (const char* env = std::getenv("KLOAD_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return KLOAD_SOURCE_DIR;
}

std::filesystem::path kload_binary() { return KLOAD_BINARY; }

Scratch::Scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  for (auto& c : name) {
    if (c == '/') {
      c = '_';
    }
  }
  const char* base = std::getenv("TMPDIR");
  // Short: lab sockets live inside and unix socket paths are limited to 108 bytes.
  if (name.size() > 24) {
    name = name.substr(name.size() - 24);
  }
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/kt-" + name + ".XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = templ;
}

Scratch::~Scratch() {
  if (::testing::Test::HasFailure()) {
    std::cerr << "scratch directory kept: " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::vector<std::string>& argv, const std::string& stdin_file) {
  util::SystemProcessRunner runner;
  util::StdinFeeder feed;
  if (!stdin_file.empty()) {
    feed = [&](int fd) -> util::Result<void> {
      std::ifstream in(stdin_file, std::ios::binary);
      std::vector<char> buf(1 << 16);
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) {
          if (auto r = util::write_all(fd, buf.data(), static_cast<std::size_t>(in.gcount()), "stdin"); !r) {
            return r;
          }
        }
      }
      return {};
    };
  }
  auto r = runner.run(argv, feed, std::chrono::minutes(5));
  if (!r) {
    return CommandResult{-1, "", r.error().message};
  }
  return CommandResult{r->exit_code, r->out, r->err};
}

bool mkimage(const std::vector<std::string>& args) {
  std::vector<std::string> argv{(source_dir() / "tools" / "mkimage").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << "mkimage failed: " << r.err;
  return r.exit_code == 0;
}

void write_file(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace kload::testing

namespace kload::testing {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}

namespace {
std::string lab_tool() { return (source_dir() / "tools" / "lab").string(); }
} // namespace

LabKind lab_kind_from_env() {
  const char* env = std::getenv("KLOAD_TEST_NODES");
  const std::string v = env != nullptr ? env : "host";
  if (v.starts_with("docker-")) {
    return LabKind{true, v.substr(7)};
  }
  return LabKind{};
}

bool docker_required() {
  const char* env = std::getenv("KLOAD_REQUIRE_DOCKER");
  return env != nullptr && std::string(env) == "1";
}

std::string program_missing(const std::string& program) {
  if (run_command({"sh", "-c", "command -v \"$0\"", program}).exit_code != 0) {
    return "no " + program + " on PATH (Debian package " + program + ")";
  }
  return "";
}

std::string docker_missing() {
  static const std::string why = [] {
    if (run_command({"sh", "-c", "command -v docker"}).exit_code != 0) {
      return std::string("no docker client on PATH");
    }
    if (auto r = run_command({"docker", "version", "--format", "{{.Server.Version}}"}); r.exit_code != 0) {
      return "the Docker engine does not answer: " + r.err.substr(0, r.err.find('\n'));
    }
    if (run_command({"sh", "-c", "command -v go"}).exit_code != 0) {
      return std::string("no Go toolchain to build the nodes' containerd with");
    }
    return std::string();
  }();
  return why;
}

namespace {
// A kind cluster name of its own per lab directory: tests run in parallel, and node
// container names are global on the engine.
std::string cluster_for(const std::filesystem::path& dir) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016zx", std::hash<std::string>{}(dir.string()));
  return std::string("kl") + std::string(hex, 10);
}
} // namespace

Lab::Lab(const std::filesystem::path& dir, int nodes) : Lab(dir, nodes, lab_kind_from_env()) {}

Lab::Lab(const std::filesystem::path& dir, int nodes, LabKind kind) : dir_(dir), kind_(std::move(kind)) {
  std::vector<std::string> argv{lab_tool(), "up", std::to_string(nodes), dir_.string()};
  if (kind_.docker) {
    if (const auto why = docker_missing(); !why.empty()) {
      ADD_FAILURE() << "Docker-hosted nodes cannot run here: " << why;
      return;
    }
    cluster_ = cluster_for(dir_);
    argv.insert(argv.end(), {"--docker", "--containerd", kind_.containerd, "--name", cluster_});
  }
  auto r = run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << "lab up failed: " << r.err;
  uris_ = split_lines(r.out);
  up_ = r.exit_code == 0 && static_cast<int>(uris_.size()) == nodes;
}

Lab::~Lab() { run_command({lab_tool(), "down", dir_.string()}); }

std::filesystem::path Lab::socket(int node) const { return dir_ / ("node" + std::to_string(node)) / "sock"; }

std::string Lab::container(int node) const {
  const auto& uri = uris_.at(static_cast<std::size_t>(node - 1));
  return uri.substr(uri.find("://") + 3);
}

std::vector<std::string> Lab::ctr_prefix(int node) const {
  if (kind_.docker) {
    return {"docker", "exec", "-i", container(node), "ctr", "--connect-timeout", "2s", "-n", "k8s.io"};
  }
  return {"ctr", "-a", socket(node).string(), "--connect-timeout", "2s", "-n", "k8s.io"};
}

std::string Lab::node_name(int node) const {
  return kind_.docker ? container(node) : "node" + std::to_string(node);
}

std::string Lab::ctr_shell(int node) const {
  std::string out;
  for (const auto& word : ctr_prefix(node)) {
    out += (out.empty() ? "" : " ") + word;  // lab paths and names hold no spaces
  }
  return out;
}

CommandResult Lab::ctr(int node, const std::vector<std::string>& args) const {
  auto argv = ctr_prefix(node);
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

CommandResult Lab::exec(int node, const std::vector<std::string>& argv) const {
  std::vector<std::string> full{"docker", "exec", "-i", container(node)};
  full.insert(full.end(), argv.begin(), argv.end());
  return run_command(full);
}

bool Lab::stop(int node) const {
  return run_command({lab_tool(), "stop", std::to_string(node), dir_.string()}).exit_code == 0;
}

bool Lab::start(int node) const {
  return run_command({lab_tool(), "start", std::to_string(node), dir_.string()}).exit_code == 0;
}

std::vector<std::pair<std::string, Lab::Image>> Lab::images(int node) const {
  std::vector<std::pair<std::string, Image>> out;
  auto r = ctr(node, {"images", "check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto lines = split_lines(r.out);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    std::string ref, type, digest, status;
    in >> ref >> type >> digest >> status;
    if (ref.starts_with("sha256:")) {
      continue;  // CRI's own reference by image ID, not a name anyone gave
    }
    out.emplace_back(ref, Image{digest, status == "complete"});
  }
  return out;
}

namespace {

// The value of every label `prefix`N= (or `prefix`= when exact) on a `content ls` line.
std::vector<std::string> label_values(const std::string& line, const std::string& prefix) {
  std::vector<std::string> out;
  for (auto at = line.find(prefix); at != std::string::npos; at = line.find(prefix, at + 1)) {
    const auto eq = line.find('=', at);
    if (eq != std::string::npos && line.compare(eq + 1, 7, "sha256:") == 0) {
      out.push_back(line.substr(eq + 1, 7 + 64));
    }
  }
  return out;
}

} // namespace

std::string Lab::image_id(int node, const std::string& name) const {
  for (const auto& [ref, image] : images(node)) {
    if (ref != name) {
      continue;
    }
    auto r = ctr(node, {"content", "ls"});
    std::map<std::string, std::string> lines;  // digest -> its line
    for (const auto& line : split_lines(r.out)) {
      if (line.starts_with("sha256:")) {
        lines[line.substr(0, 7 + 64)] = line;
      }
    }
    // A manifest names its config; an index its children (m.0, m.1, ...), of which the
    // first present that names a config (the one platform a thin load brings) decides.
    std::vector<std::string> todo{image.target};
    for (std::size_t i = 0; i < todo.size() && i < 16; ++i) {
      const auto it = lines.find(todo[i]);
      if (it == lines.end()) {
        continue;
      }
      if (auto config = label_values(it->second, "containerd.io/gc.ref.content.config="); !config.empty()) {
        return config.front();
      }
      for (auto& child : label_values(it->second, "containerd.io/gc.ref.content.m.")) {
        todo.push_back(std::move(child));
      }
    }
  }
  return "";
}

pid_t ctr_import_on(const std::string& socket) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string word; std::getline(in, word, '\0');) {
      argv.push_back(word);
    }
    const auto has = [&](const std::string& w) { return std::find(argv.begin(), argv.end(), w) != argv.end(); };
    if (!argv.empty() && std::filesystem::path(argv[0]).filename() == "ctr" && has(socket) && has("import")) {
      return static_cast<pid_t>(std::stol(pid));
    }
  }
  return 0;
}

pid_t spawn_kload(const std::vector<std::string>& args, const std::filesystem::path& out,
                  const std::filesystem::path& err) {
  std::vector<std::string> argv{kload_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> cargv;
    for (auto& a : argv) {
      cargv.push_back(a.data());
    }
    cargv.push_back(nullptr);
    if (FILE* f = std::fopen(out.c_str(), "w"); f != nullptr) {
      dup2(fileno(f), 1);
    }
    if (FILE* f = std::fopen(err.c_str(), "w"); f != nullptr) {
      dup2(fileno(f), 2);
    }
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  return pid;
}

CommandResult kload(const std::vector<std::string>& args, const std::string& stdin_file) {
  std::vector<std::string> argv{kload_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, stdin_file);
}

util::Result<void> capture_feed(const util::StdinFeeder& feed, std::string& sink) {
  int fds[2];
  if (::pipe(fds) != 0) {
    return util::fail(util::ErrorKind::io, "capture_feed: pipe failed");
  }
  std::thread reader([&sink, fd = fds[0]] {
    char buf[65536];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
      sink.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
  });
  auto fed = feed(fds[1]);
  ::close(fds[1]);
  reader.join();
  return fed;
}

// --- a registry ---

std::string registry_missing() {
  if (run_command({"sh", "-c", "command -v docker-registry"}).exit_code != 0) {
    return "no docker-registry on PATH (Debian package docker-registry; tools/dev deps)";
  }
  return "";
}

namespace {

sockaddr_in inet_address(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  return addr;
}

// A port of `host` nobody listens on right now.
int free_port(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto addr = inet_address(host, 0);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepts(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const auto addr = inet_address(host, port);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

} // namespace

Registry::Registry(const std::filesystem::path& dir, const std::string& extra, const std::string& host,
                   std::vector<std::string> launcher)
    : dir_(dir), host_(host), port_(free_port(host)), launcher_(std::move(launcher)) {
  std::filesystem::create_directories(dir / "storage");
  write_file(dir / "config.yml", "version: 0.1\n"
                                 "log:\n  level: error\n  accesslog:\n    disabled: false\n"
                                 "storage:\n  filesystem:\n    rootdirectory: " +
                                     (dir / "storage").string() + "\nhttp:\n  addr: " + address() +
                                     "\n  secret: kload-test\n" + extra);
  start();
}

void Registry::start() {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = (dir_ / "registry.log").string();
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string config = (dir_ / "config.yml").string();
  std::vector<std::string> args = launcher_;
  args.insert(args.end(), {"docker-registry", "serve", config});
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  if (posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
    pid_ = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  for (int i = 0; i < 200 && pid_ > 0 && !accepts(host_, port_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

void Registry::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

bool Registry::up() const { return pid_ > 0 && accepts(host_, port_); }

std::vector<Registry::Access> Registry::accesses() const {
  // The access log line is written once the answer is sent: give the last one a moment.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<Access> out;
  for (const auto& l : split_lines(log())) {
    // HOST - - [date] "METHOD /v2/... HTTP/1.1" STATUS BYTES "REFERER" "USER-AGENT"
    const auto open = l.find("] \"");
    const auto close = open == std::string::npos ? std::string::npos : l.find('"', open + 3);
    if (close == std::string::npos) {
      continue;
    }
    std::istringstream request(l.substr(open + 3, close - open - 3));
    Access a;
    request >> a.method >> a.path;
    std::istringstream numbers(l.substr(close + 1));
    numbers >> a.status >> a.bytes;
    const auto agent_end = l.rfind('"');
    const auto agent_start = agent_end == std::string::npos || agent_end == 0 ? std::string::npos
                                                                               : l.rfind('"', agent_end - 1);
    if (agent_start != std::string::npos && agent_start > close) {
      a.agent = l.substr(agent_start + 1, agent_end - agent_start - 1);
    }
    if (a.path.starts_with("/v2/")) {
      out.push_back(std::move(a));
    }
  }
  return out;
}

std::vector<std::string> Registry::requests() const {
  std::vector<std::string> out;
  for (const auto& a : accesses()) {
    out.push_back(a.method + " " + a.path);
  }
  return out;
}

registry::HttpResponse Registry::ask(const std::string& method, const std::string& path,
                                     std::vector<std::string> headers) const {
  auto http = registry::make_curl_client();
  auto r = http->send(registry::HttpRequest{.method = method,
                                            .url = "http://" + address() + path,
                                            .headers = std::move(headers),
                                            .body = {},
                                            .user = {},
                                            .password = {}});
  return r ? *r : registry::HttpResponse{};
}

} // namespace kload::testing
