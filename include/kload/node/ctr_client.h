#pragma once
// What kload asks of a containerd node, expressed as ctr commands through a
// Transport: inventory, import, tag, remove, check. Parses ctr's text output and turns
// its error messages into typed failures.

#include "kload/node/batch.h"
#include "kload/node/node_client.h"
#include "kload/node/transport.h"

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace kload::node {

// One process kload ran on a node, as -v shows it.
struct NodeRun {
  std::string node;     // the node's display name
  // What ran there: the command's words (ctr without the options every call has:
  // -a, --connect-timeout, -n); a batch's commands joined by "; ".
  std::string command;
  std::chrono::milliseconds duration{0};
  // "exit 0", "exit 1", "killed by signal 9", "timed out", "not started: WHY"; a
  // batch's, each command's exit status that the node reported ("exit 0, 0, 1").
  std::string outcome;
};

// Hears of every process a CtrClient ran on its node, once it ended, on the thread
// that ran it (so implementations serialize).
using RunLog = std::function<void(const NodeRun&)>;

// NodeClient through `ctr` run by a Transport; every call below starts one process
// on the node unless it says otherwise.
class CtrClient final : public NodeClient {
public:
  // A client of the node `transport` reaches; `log`, when set, hears of every process
  // run on it.
  explicit CtrClient(Transport& transport, RunLog log = {}) : transport_(transport), log_(std::move(log)) {}

  [[nodiscard]] std::string display() const override;

  // `ctr version`. Error (node): the node does not answer, with ctr's message.
  util::Result<std::string> server_uuid() override;

  // The URI's snapshotter= if given (no call); else, on docker and ssh nodes, CRI's
  // snapshotter from `containerd config dump` run on the node (as kind reads it, both
  // configuration layouts); else a guess from `ctr plugins ls`: overlayfs if loaded,
  // else another loaded one, else native, else "overlayfs". Error (node): unreachable
  // or unparsable output of `ctr plugins ls`.
  util::Result<std::string> snapshotter() override;

  // `ctr content ls` (digests and gc labels).
  util::Result<NodeInventory> inventory(const std::vector<ImageStatus>& images) override;

  // `ctr images check`, filtered by name when `names` is not empty.
  util::Result<std::vector<ImageStatus>> check(const std::vector<std::string>& names) override;

  // `ctr images import --snapshotter S -` with stdin from `feed`; no --digests, which
  // would add a stray "import-DATE@sha256:..." image per manifest. No timeout. A
  // feeder error is reported as such unless ctr failed first. When containerd 2.x's
  // Transfer API refuses the snapshotter ("no unpack platforms defined"), the import
  // is run again, once, with --local (a second process), and so are later ones.
  std::expected<void, ImportError> import(const util::StdinFeeder& feed,
                                          const std::string& snapshotter) override;

  // `ctr images pull --snapshotter S [--plain-http] -- REFERENCE`; no timeout (ctr's
  // own dial and request timeouts bound an unreachable registry). A Transfer API
  // refusal of the snapshotter runs it again with --local, as import() does.
  util::Result<void> pull(const std::string& reference, const std::string& snapshotter,
                          PlainHttp plain_http) override;

  // `ctr images tag [--force] SOURCE TARGET` (see Tag).
  util::Result<void> tag(const Tag& t) override;

  // `ctr images rm NAME...`; no call when `names` is empty.
  util::Result<void> remove(const std::vector<std::string>& names) override;

  [[nodiscard]] int calls() const override { return calls_; }

  // One process on the node (a `sh -c` batch): `ctr images check`, then `ctr version`,
  // `ctr content ls`, `containerd config dump` and `ctr plugins ls`, and `command -v
  // zstd`, as asked.
  util::Result<Probe> probe(const ProbeRequest& want) override;

  // One process on the node: import (or each pull), `ctr images tag --force` each, `ctr images rm`,
  // `ctr images check`, stopping at the first that fails. A Transfer API refusal of
  // the snapshotter runs it again with --local, as import() does. A zstd stream is
  // imported through `zstd -dc | ctr images import ...`, which fails when either
  // side does (a cut or damaged stream fails the import even if ctr read a whole tar).
  std::expected<std::vector<ImageStatus>, ChangeError> apply(const Changes& changes) override;

private:
  // Runs one ctr command on the node, counting it; `query` also fails on a failing ctr.
  util::Result<util::ProcessResult> query(const std::vector<std::string>& args, const std::string& doing);
  util::Result<util::ProcessResult> ctr(const std::vector<std::string>& args, const util::StdinFeeder& feed,
                                        std::chrono::milliseconds timeout);
  // Runs `steps` in one process on the node, counted once; on a node without a shell,
  // one process each from then on.
  util::Result<std::vector<util::ProcessResult>> batch(const std::vector<BatchStep>& steps,
                                                       const util::StdinFeeder& feed, std::chrono::milliseconds timeout);
  util::Result<std::vector<util::ProcessResult>> one_by_one(const std::vector<BatchStep>& steps,
                                                            const util::StdinFeeder& feed,
                                                            std::chrono::milliseconds timeout);
  util::Result<std::string> snapshotter_from_plugins();
  // Every process on the node runs through here: `run` starts it; it is counted, timed
  // and told to the log as `shown`, its outcome as `outcome` words it.
  util::Result<util::ProcessResult> on_node(const std::string& shown,
                                            const std::function<util::Result<util::ProcessResult>()>& run,
                                            const std::function<std::string(const util::ProcessResult&)>& outcome);
  [[nodiscard]] std::vector<std::string> import_args(const std::string& snapshotter) const;
  [[nodiscard]] std::vector<std::string> pull_args(const std::string& reference, const std::string& snapshotter,
                                                   PlainHttp plain_http) const;

  Transport& transport_;
  RunLog log_;
  int calls_ = 0;
  // Set once a Transfer API import or pull refused the snapshotter: imports and
  // pulls then use --local.
  bool local_import_ = false;
  // Cleared once the node turned out to have no `sh`: batches then run step by step.
  bool has_shell_ = true;
};

} // namespace kload::node
