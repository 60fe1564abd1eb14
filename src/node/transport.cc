#include "kload/node/transport.h"

#include <filesystem>

namespace kload::node {

namespace {

// "5s": ctr parses Go durations.
std::string go_duration(std::chrono::seconds s) { return std::to_string(s.count()) + "s"; }

class ProcessTransport final : public Transport {
public:
  ProcessTransport(NodeUri uri, util::ProcessRunner& runner)
      : uri_(std::move(uri)), runner_(runner) {}

  util::Result<util::ProcessResult> ctr(const std::vector<std::string>& args,
                                        const util::StdinFeeder& feed,
                                        std::chrono::milliseconds timeout) override {
    return run_local(ctr_argv(uri_, args), feed, timeout);
  }

  util::Result<util::ProcessResult> run(const std::vector<std::string>& argv, const util::StdinFeeder& feed,
                                        std::chrono::milliseconds timeout) override {
    return run_local(node_argv(uri_, argv), feed, timeout);
  }

  util::Result<util::ProcessResult> shell(const std::string& script, const util::StdinFeeder& feed,
                                          std::chrono::milliseconds timeout) override {
    return run_local(node_argv(uri_, {"sh", "-c", script}), feed, timeout);
  }

  [[nodiscard]] const NodeUri& uri() const override { return uri_; }

private:
  // Runs `argv` here. A containerd:// node whose socket is not there fails at once:
  // ctr would wait out its connect timeout only to say that its dial timed out.
  util::Result<util::ProcessResult> run_local(const std::vector<std::string>& argv, const util::StdinFeeder& feed,
                                              std::chrono::milliseconds timeout) {
    std::error_code ec;
    if (uri_.kind == TransportKind::containerd_socket && !std::filesystem::exists(uri_.target, ec)) {
      return util::fail(util::ErrorKind::node, "no socket at " + uri_.target + ": is containerd running?");
    }
    return runner_.run(argv, feed, timeout);
  }

  NodeUri uri_;
  util::ProcessRunner& runner_;
};

} // namespace

// The namespace always travels explicitly so a CONTAINERD_NAMESPACE in the node's
// environment cannot redirect kload. The address only when the URI names one: without
// it ctr on the node finds its own socket, as it would for the user.
std::vector<std::string> ctr_words(const NodeUri& uri, const std::vector<std::string>& args) {
  std::vector<std::string> words{"ctr"};
  const std::string& address = uri.kind == TransportKind::containerd_socket ? uri.target : uri.address;
  if (!address.empty()) {
    words.insert(words.end(), {"-a", address});
  }
  words.insert(words.end(), {"--connect-timeout", go_duration(ctr_connect_timeout), "-n", uri.ns});
  words.insert(words.end(), args.begin(), args.end());
  return words;
}

std::vector<std::string> node_argv(const NodeUri& uri, const std::vector<std::string>& words) {
  switch (uri.kind) {
  case TransportKind::containerd_socket:
    return words;
  case TransportKind::docker:
  case TransportKind::podman: {
    // One path for both engines: Podman's exec takes Docker's arguments.
    std::vector<std::string> argv{uri.kind == TransportKind::docker ? "docker" : "podman", "exec", "-i", uri.target};
    argv.insert(argv.end(), words.begin(), words.end());
    return argv;
  }
  case TransportKind::ssh: {
    // BatchMode: never prompt (kload may run many nodes at once, without a terminal).
    // ConnectTimeout: a dead host fails in seconds, like a dead socket.
    std::vector<std::string> argv{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"};
    if (uri.port != 0) {
      argv.insert(argv.end(), {"-p", std::to_string(uri.port)});
    }
    if (!uri.user.empty()) {
      argv.insert(argv.end(), {"-l", uri.user});
    }
    argv.insert(argv.end(), {"--", uri.target});
    // ssh joins the remote words with spaces and hands the line to the remote user's
    // shell, so each word is quoted to arrive as exactly itself.
    for (const auto& word : words) {
      argv.push_back(util::shell_quote(word));
    }
    return argv;
  }
  }
  return {};
}

std::vector<std::string> ctr_argv(const NodeUri& uri, const std::vector<std::string>& args) {
  return node_argv(uri, ctr_words(uri, args));
}

bool reaches_node_host(const NodeUri& uri) { return uri.kind != TransportKind::containerd_socket; }

std::unique_ptr<Transport> make_transport(const NodeUri& uri, util::ProcessRunner& runner) {
  return std::make_unique<ProcessTransport>(uri, runner);
}

} // namespace kload::node
