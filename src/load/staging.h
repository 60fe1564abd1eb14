#pragma once
// Staging names: the private names a load imports images under before their real
// names are committed, who made each one, and a guard that removes them on every path.

#include "kload/format/model.h"
#include "kload/node/node_client.h"

#include <cstdint>
#include <string>
#include <vector>

namespace kload::load {

// A staging name for `manifest` that no other load, here or on another machine, can
// make: localhost/kload-staging/<manifest short hex>:<unix time>-<boot>-<pid>.<start>-
// <random>, where boot, pid and start name this process on this machine.
std::string make_staging_name(const util::Digest& manifest);

// The first 8 hex digits of this boot's random ID: with a process token it names one
// process on one machine.
const std::string& boot_tag();

// Whether the load that made a staging name has provably ended: it ran on this
// machine (same boot) and its process is gone, or its name is over an hour old
// (another machine's, or an older kload's). Names kload did not make never are.
bool staging_abandoned(const std::string& name, std::int64_t now);

// Removes the staging names it holds when it goes out of scope, on every path. The
// removal is best effort there; `remove()` reports its error.
class StagingGuard {
public:
  explicit StagingGuard(node::NodeClient& client) : client_(client) {}
  ~StagingGuard();
  StagingGuard(const StagingGuard&) = delete;
  StagingGuard& operator=(const StagingGuard&) = delete;

  void add(const std::string& name) { names_.push_back(name); }
  [[nodiscard]] bool empty() const { return names_.empty(); }
  [[nodiscard]] const std::vector<std::string>& names() const { return names_; }
  // The names held were removed by another step (a round trip that also removed them).
  void removed() { names_.clear(); }
  // Removes every name held now. Error (node): the removal failed (the names are still
  // held, and tried again at the end of the scope).
  util::Result<void> remove();

private:
  node::NodeClient& client_;
  std::vector<std::string> names_;
};

} // namespace kload::load
