#include "kload/node/node_client.h"

#include <algorithm>

namespace kload::node {

const char* const incomplete_import = "an image is incomplete after the import";

std::string node_changed_message(const std::string& node) {
  return "node " + node + ": containerd's UUID is not the one kload's cache knows (a recreated node)";
}

util::Result<Probe> NodeClient::probe(const ProbeRequest& want) {
  Probe p;
  auto images = check({});
  if (!images) {
    return std::unexpected(images.error());
  }
  p.images = std::move(*images);
  if (want.uuid) {
    auto uuid = server_uuid();
    if (!uuid) {
      return std::unexpected(uuid.error());
    }
    p.uuid = std::move(*uuid);
  }
  if (want.inventory) {
    auto inv = inventory(p.images);
    if (!inv) {
      return std::unexpected(inv.error());
    }
    p.inventory = std::move(*inv);
  }
  if (want.snapshotter) {
    auto snap = snapshotter();
    if (!snap) {
      return std::unexpected(snap.error());
    }
    p.snapshotter = std::move(*snap);
  }
  if (want.zstd) {
    p.zstd = false;
  }
  return p;
}

std::vector<std::string> gate_names(const std::vector<std::pair<std::string, util::Digest>>& gate) {
  std::vector<std::string> names;
  for (const auto& [name, target] : gate) {
    names.push_back(name);
  }
  return names;
}

namespace {

// Whether every name of `gate` is complete at its target in `statuses`.
bool passes(const std::vector<std::pair<std::string, util::Digest>>& gate, const std::vector<ImageStatus>& statuses) {
  return std::all_of(gate.begin(), gate.end(), [&](const auto& want) {
    return std::any_of(statuses.begin(), statuses.end(), [&](const ImageStatus& s) {
      return s.name == want.first && s.target == want.second && s.complete;
    });
  });
}

} // namespace

std::expected<std::vector<ImageStatus>, ChangeError> NodeClient::apply(const Changes& changes) {
  using Step = ChangeError::Step;
  const auto fail = [](Step step, util::Error e) {
    return std::unexpected(ChangeError{step, ImportError{ImportFailure::other, std::nullopt, std::move(e)}});
  };
  if (!changes.expect_uuid.empty()) {
    auto uuid = server_uuid();
    if (!uuid) {
      return fail(Step::node_changed, std::move(uuid.error()));
    }
    if (*uuid != changes.expect_uuid) {
      return fail(Step::node_changed, util::Error{util::ErrorKind::node, node_changed_message(display())});
    }
  }
  if (changes.import != nullptr && changes.wire != WireCompression::none) {
    return fail(Step::import, util::Error{util::ErrorKind::node,
                                          "node " + display() + ": importing: no way to decompress the stream there"});
  }
  if (changes.import != nullptr) {
    if (auto r = import(*changes.import, changes.snapshotter); !r) {
      return std::unexpected(ChangeError{Step::import, std::move(r.error())});
    }
  }
  if (changes.pull != nullptr) {
    for (const auto& reference : changes.pull->references) {
      if (auto r = pull(reference, changes.snapshotter, changes.pull->plain_http); !r) {
        return fail(Step::pull, std::move(r.error()));
      }
    }
  }
  if (!changes.gate.empty()) {
    auto statuses = check(gate_names(changes.gate));
    if (!statuses) {
      return fail(Step::gate, std::move(statuses.error()));
    }
    if (!passes(changes.gate, *statuses)) {
      return std::unexpected(ChangeError{Step::gate, ImportError{ImportFailure::missing_content, std::nullopt,
                                                                 util::Error{util::ErrorKind::node,
                                                                             "node " + display() + ": " +
                                                                                 incomplete_import}}});
    }
  }
  for (const auto& t : changes.tags) {
    if (auto r = tag(t); !r) {
      return fail(Step::tag, std::move(r.error()));
    }
  }
  if (auto r = remove(changes.remove); !r) {
    return fail(Step::remove, std::move(r.error()));
  }
  if (changes.check.empty()) {
    return std::vector<ImageStatus>{};
  }
  auto statuses = check(changes.check);
  if (!statuses) {
    return fail(Step::check, std::move(statuses.error()));
  }
  return std::move(*statuses);
}

} // namespace kload::node
