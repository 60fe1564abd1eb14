#pragma once
// The only thing that differs between local, docker, podman and ssh nodes: how the argv of a
// command (nearly always `ctr`) reaches the node. Everything above this speaks ctr
// arguments.

#include "kload/node/node_uri.h"
#include "kload/util/process.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace kload::node {

// The connect timeout passed to every ctr call, so a dead socket fails fast instead
// of hanging.
inline constexpr std::chrono::seconds ctr_connect_timeout{5};

class Transport {
public:
  virtual ~Transport() = default;
  // Runs `ctr --connect-timeout 5s -n NS ARGS...` on the node, feeding stdin through
  // `feed` (empty: no stdin). `timeout` zero means none. Error: the local program
  // (ctr, docker, podman, ssh) cannot be started, or (node) a containerd:// node's socket is
  // not there, "no socket at PATH: is containerd running?", at once rather than after
  // ctr's connect timeout; a failing ctr is a ProcessResult. So for run() and shell().
  virtual util::Result<util::ProcessResult> ctr(const std::vector<std::string>& args,
                                                const util::StdinFeeder& feed,
                                                std::chrono::milliseconds timeout) = 0;
  // Runs `argv` on the node itself (node_argv), stdin from `feed` (empty: none).
  // Error: the local program cannot be started; a failing command is a ProcessResult.
  virtual util::Result<util::ProcessResult> run(const std::vector<std::string>& argv, const util::StdinFeeder& feed,
                                                std::chrono::milliseconds timeout) = 0;
  // Runs `sh -c SCRIPT` on the node (node_argv), stdin from `feed`. Errors as run().
  virtual util::Result<util::ProcessResult> shell(const std::string& script, const util::StdinFeeder& feed,
                                                  std::chrono::milliseconds timeout) = 0;
  [[nodiscard]] virtual const NodeUri& uri() const = 0;
};

// The words that run `ctr ARGS` on the node itself: ctr [-a ADDRESS] --connect-timeout
// 5s -n NS ARGS (ADDRESS: the socket of containerd://, else the URI's address=).
std::vector<std::string> ctr_words(const NodeUri& uri, const std::vector<std::string>& args);

// The exact local argv that runs `ctr ARGS` (ctr_words) on the node described by `uri`:
//   containerd: ctr -a SOCK --connect-timeout 5s -n NS ARGS
//   docker:     docker exec -i CONTAINER ctr [-a ADDRESS] --connect-timeout 5s -n NS ARGS
//   podman:     podman exec -i CONTAINER ctr ... (as docker)
//   ssh:        ssh -o BatchMode=yes -o ConnectTimeout=10 [-p PORT] [-l USER] -- HOST
//               'ctr' ['-a' 'ADDRESS'] '--connect-timeout' '5s' '-n' 'NS' 'ARGS'...
//               (every remote word shell-quoted: ssh hands one joined line to the
//               remote shell, so names can never inject commands)
// ADDRESS is the URI's address= (absent when it has none). ssh is whatever `ssh` is on
// PATH, run with the caller's environment, so the user's ~/.ssh/config (host aliases,
// keys, jump hosts) and ssh-agent apply; only BatchMode and ConnectTimeout are fixed.
std::vector<std::string> ctr_argv(const NodeUri& uri, const std::vector<std::string>& args);

// The exact local argv that runs `words` on the node: for docker `docker exec -i
// CONTAINER WORDS...` (podman: `podman exec -i ...`), for ssh the ssh prefix above with every word shell-quoted; for
// containerd:// (a socket on this machine) the words themselves.
std::vector<std::string> node_argv(const NodeUri& uri, const std::vector<std::string>& words);

// Whether the node's own files (its containerd configuration) are what node_argv
// reaches: true for docker, podman and ssh; false for a containerd:// socket, whose daemon may
// run with any configuration on this machine.
[[nodiscard]] bool reaches_node_host(const NodeUri& uri);

// A Transport running ctr_argv through `runner`, which must outlive it.
std::unique_ptr<Transport> make_transport(const NodeUri& uri, util::ProcessRunner& runner);

} // namespace kload::node
