// Fuzz target for what kload reads from other programs: the output of `ctr version`,
// `ctr plugins ls`, `ctr content ls`, `ctr images check`, the error
// text of a failed `ctr images import`, kind's `docker ps` listing, and node URIs.
//
// The input is text: a first line of exit codes, then sections separated by lines
// holding only "--". A fake transport answers CtrClient's calls from the sections:
//
//   line 0       one character per call below, '0' for exit code 0, anything else 1
//                (missing characters: 0)
//   sections     1 version, 2 plugins ls, 3 content ls, 4 unused (once `images ls`;
//                kept so that the seeds keep their meaning), 5 images check,
//                6 import, 7 tag, 8 rm: stdout of a call that succeeds, stderr of one
//                that fails; 9 `docker ps` output for kind discovery; 10 a node URI
//
// Then every CtrClient call runs, as a load would make them. The invariants: nothing
// crashes, a failed call says why, and the inventory is self-consistent (every image
// target, config and child named there is a well-formed digest). The seeds in
// seeds/ctr_output/ are real ctr 1.6 output.

#include "fuzz_support.h"
#include "support/batch_emulator.h"

#include "kload/node/containerd_config.h"
#include "kload/node/ctr_client.h"
#include "kload/node/kind.h"
#include "kload/node/node_uri.h"

#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using kload::node::CtrClient;
using kload::util::ProcessResult;

enum Section : std::size_t { version = 1, plugins, content, images, check, import, tag, rm, kind_ps, uri, count };

class FuzzTransport final : public kload::node::Transport {
public:
  FuzzTransport(std::string_view codes, const std::vector<std::string_view>& sections) : codes_(codes) {
    for (std::size_t i = 1; i < count && i < sections.size(); ++i) {
      sections_[i] = sections[i];
    }
    uri_.target = "/run/fuzz/containerd.sock";
    uri_.text = "containerd:///run/fuzz/containerd.sock";
  }

  kload::util::Result<ProcessResult> ctr(const std::vector<std::string>& args, const kload::util::StdinFeeder&,
                                         std::chrono::milliseconds) override {
    const std::string key = args.size() >= 2 ? args[0] + " " + args[1] : args.empty() ? "" : args[0];
    Section s = version;
    if (key == "version") {
      s = version;
    } else if (key == "plugins ls") {
      s = plugins;
    } else if (key == "content ls") {
      s = content;
    } else if (key == "images ls") {
      s = images;
    } else if (key == "images check") {
      s = check;
    } else if (key == "images import") {
      s = import;
    } else if (key == "images tag") {
      s = tag;
    } else if (key == "images rm") {
      s = rm;
    } else {
      kload::fuzz::fail("CtrClient ran a ctr command the target does not know: " + key);
    }
    ProcessResult r;
    const bool ok = s - 1 >= codes_.size() || codes_[s - 1] == '0';
    r.exit_code = ok ? 0 : 1;
    (ok ? r.out : r.err) = std::string(sections_[s]);
    return r;
  }

  // The URI is a containerd:// socket, whose node files kload never reads.
  kload::util::Result<ProcessResult> run(const std::vector<std::string>& argv, const kload::util::StdinFeeder&,
                                         std::chrono::milliseconds) override {
    kload::fuzz::fail("CtrClient ran a node command on a containerd:// node: " + (argv.empty() ? "" : argv[0]));
    return ProcessResult{};
  }

  // apply()'s gate, `sh -c SCRIPT sh N NAME DIGEST... CTR-CHECK...`, as the script
  // reads the check's answer: each NAME needs a row at DIGEST whose status is
  // complete, else the step exits 98.
  ProcessResult gate(const std::vector<std::string>& words, const kload::util::StdinFeeder& feed,
                     std::chrono::milliseconds timeout) {
    const std::size_t pairs = std::stoul(words[4]);
    if (words.size() < 5 + 2 * pairs + 1) {
      kload::fuzz::fail("a gate without its check");
      return ProcessResult{};
    }
    const auto check_at = words.begin() + static_cast<std::ptrdiff_t>(5 + 2 * pairs);
    const auto ns = std::find(check_at, words.end(), "-n");
    if (*check_at != "ctr" || ns == words.end() || ns + 1 == words.end()) {
      kload::fuzz::fail("a gate whose check is no ctr command");
      return ProcessResult{};
    }
    auto r = *ctr(std::vector<std::string>(ns + 2, words.end()), feed, timeout);
    for (std::size_t i = 0; i < pairs; ++i) {
      bool found = false;
      std::istringstream lines(r.out);
      for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string ref, type, target, status;
        fields >> ref >> type >> target >> status;
        found = found || (ref == words[5 + 2 * i] && target == words[6 + 2 * i] && status == "complete");
      }
      if (!found) {
        r.exit_code = 98;
        break;
      }
    }
    r.exit_code = r.exit_code == 98 ? 98 : 0;
    return r;
  }

  // A batch: each step answered as ctr() answers it, framed as the script would.
  kload::util::Result<ProcessResult> shell(const std::string& script, const kload::util::StdinFeeder& feed,
                                           std::chrono::milliseconds timeout) override {
    const auto batch = kload::testing::decode_batch(script);
    if (!batch) {
      kload::fuzz::fail("CtrClient ran a shell script that is no batch");
      return ProcessResult{};
    }
    return kload::testing::emulate_batch(batch->first, batch->second, [&](const kload::testing::EmulatedStep& step) {
      if (step.words.size() == 5 && step.words[0] == "sh") {
        // apply()'s UUID check: `ctr version`, then the UUID looked for in its output.
        auto r = *ctr({"version"}, feed, timeout);
        if (r.exit_code == 0 && r.out.find("UUID: " + step.words[4]) == std::string::npos) {
          r.exit_code = 97;
        }
        return r;
      }
      if (step.words.size() > 5 && step.words[0] == "sh" && step.words[4].find_first_not_of("0123456789") ==
                                                               std::string::npos) {
        return gate(step.words, feed, timeout);
      }
      const auto ns = std::find(step.words.begin(), step.words.end(), "-n");
      if (step.words.empty() || step.words[0] != "ctr" || ns == step.words.end() || ns + 1 == step.words.end()) {
        kload::fuzz::fail("a batch step that is no ctr command on a containerd:// node");
      }
      return *ctr(std::vector<std::string>(ns + 2, step.words.end()), feed, timeout);
    });
  }

  [[nodiscard]] const kload::node::NodeUri& uri() const override { return uri_; }

  [[nodiscard]] std::string_view section(Section s) const { return sections_[s]; }

private:
  std::string_view codes_;
  std::array<std::string_view, count> sections_{};
  kload::node::NodeUri uri_;
};

template <typename T>
void said_why(const kload::util::Result<T>& r, const char* what) {
  if (!r && r.error().message.empty()) {
    kload::fuzz::fail(std::string(what) + " failed without saying why");
  }
}

void check_inventory(const kload::node::NodeInventory& inv) {
  const kload::util::Digest zero{};
  for (const auto& [manifest, config] : inv.manifest_config) {
    if (manifest == zero || config == zero) {
      kload::fuzz::fail("an inventory manifest or config that is no digest");
    }
  }
}

} // namespace

int kload_fuzz_ctr_output(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto sections = kload::fuzz::split(text, "\n--\n");
  const auto newline = sections[0].find('\n');
  FuzzTransport transport(sections[0].substr(0, newline), sections);
  CtrClient client(transport);

  // The same bytes as a `containerd config dump`: never throws, whatever they are.
  (void)kload::node::cri_snapshotter(text);
  said_why(client.server_uuid(), "version");
  said_why(client.snapshotter(), "plugins ls");
  auto images = client.check({});
  said_why(images, "images check");
  if (images) {
    for (const auto& image : *images) {
      if (image.name.empty() || image.target == kload::util::Digest{}) {
        kload::fuzz::fail("a checked image without a name or target: '" + image.name + "'");
      }
    }
  }
  auto inv = client.inventory(images.value_or(std::vector<kload::node::ImageStatus>{}));
  said_why(inv, "inventory");
  kload::fuzz::set_accepted(inv && images && !images->empty());
  if (inv) {
    check_inventory(*inv);
  }
  auto some = client.check({"docker.io/library/app:v1", "localhost/kload-staging/x:1"});
  said_why(some, "images check of names");
  const auto imported = client.import([](int) -> kload::util::Result<void> { return {}; }, "overlayfs");
  if (!imported) {
    if (imported.error().error.message.empty()) {
      kload::fuzz::fail("a failed import without a message");
    }
    if ((imported.error().failure == kload::node::ImportFailure::missing_content) !=
        imported.error().missing.has_value()) {
      kload::fuzz::fail("missing content reported without the missing digest, or the other way round");
    }
  }
  said_why(client.tag({"a", "b"}), "tag");
  // The same answers through the round trips of a load, one batch each.
  const auto probed = client.probe({.uuid = true, .inventory = true, .snapshotter = true, .zstd = false});
  said_why(probed, "probe");
  const kload::util::StdinFeeder feed = [](int) -> kload::util::Result<void> { return {}; };
  const auto applied = client.apply({.expect_uuid = "d8b6a686-a517-49dd-9432-b6e57080147f",
                                     .import = &feed,
                                     .snapshotter = "overlayfs",
                                     .gate = {{"a", *kload::util::Digest::parse("sha256:" + std::string(64, 'a'))}},
                                     .tags = {{"a", "b"}},
                                     .remove = {"c"},
                                     .check = {"docker.io/library/app:v1"}});
  if (!applied && applied.error().error.error.message.empty()) {
    kload::fuzz::fail("a failed round trip without a message");
  }
  said_why(client.remove({"a", "b"}), "rm");

  (void)kload::node::parse_kind_nodes(kload::node::KindProvider::docker, transport.section(kind_ps));
  said_why(kload::node::parse_node_uri(transport.section(uri)), "parse_node_uri");
  return 0;
}

#ifndef KLOAD_FUZZ_REPLAY
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kload_fuzz_ctr_output(data, size);
}
#endif
