#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/load/loader.h"
#include "kload/node/ctr_client.h"
#include "kload/node/node_uri.h"
#include "kload/util/human.h"
#include "kload/util/parallel.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>

namespace kload::cli {

using util::Result;

namespace {

std::string age(std::int64_t when) {
  if (when == 0) {
    return "never";
  }
  return util::human_seconds(static_cast<double>(std::time(nullptr) - when)) + " ago";
}

} // namespace

Result<int> cache_command(const CacheCommandOptions& options, Console& console) {
  const auto dir = options.cache_dir.empty() ? cache::Cache::default_dir() : std::filesystem::path(options.cache_dir);
  auto opened = cache::Cache::open(dir, [&](const std::string& w) { console.warn(w); });
  if (!opened) {
    return std::unexpected(opened.error());
  }
  auto& c = **opened;
  std::vector<node::NodeUri> uris;
  for (const auto& text : options.nodes) {
    auto uri = node::parse_node_uri(text);
    if (!uri) {
      return std::unexpected(uri.error());
    }
    uris.push_back(*uri);
  }
  if (options.action == "stats") {
    auto s = c.stats();
    if (!s) {
      return std::unexpected(s.error());
    }
    std::cout << fmt::format("cache:  {}\nnodes:  {}\ninputs: {}\nsize:   {}\n", s->dir.string(), s->nodes, s->inputs,
                             util::human_bytes(s->file_bytes));
    return 0;
  }
  if (options.action == "ls") {
    auto all = c.nodes();
    if (!all) {
      return std::unexpected(all.error());
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [key, r] : *all) {
      if (!options.nodes.empty() && std::find(options.nodes.begin(), options.nodes.end(), key) == options.nodes.end()) {
        continue;
      }
      if (options.json) {
        nlohmann::json names = nlohmann::json::object();
        for (const auto& [name, n] : r.names) {
          nlohmann::json ids = nlohmann::json::array();
          for (const auto& id : n.ids) {
            ids.push_back(id.str());
          }
          names[name] = {{"target", n.target.str()}, {"ids", ids}, {"complete", n.complete},
                         {"byKload", n.by_kload}, {"learnedAt", n.learned_at}};
        }
        out.push_back({{"node", key}, {"serverUUID", r.server_uuid}, {"listedAt", r.listed_at},
                       {"updatedAt", r.updated_at}, {"blobs", r.blobs.size()}, {"names", names}});
        continue;
      }
      std::cout << fmt::format("{}\n  containerd {}, listed {}, updated {}, {} blobs, {} names\n", key, r.server_uuid,
                               age(r.listed_at), age(r.updated_at), r.blobs.size(), r.names.size());
      for (const auto& [name, n] : r.names) {
        std::cout << fmt::format("    {}  {}{}{}\n", name, n.ids.empty() ? "(ID unknown)" : n.ids.front().str(),
                                 n.complete ? "" : "  incomplete", n.by_kload ? "  (loaded by kload)" : "");
      }
    }
    if (options.json) {
      std::cout << out.dump(2) << "\n";
    }
    return 0;
  }
  if (options.action == "forget") {
    std::size_t forgotten = 0;
    if (options.nodes.empty()) {
      auto all = c.nodes();
      if (!all) {
        return std::unexpected(all.error());
      }
      for (const auto& [key, r] : *all) {
        forgotten += c.forget_node(key).value_or(false) ? 1 : 0;
      }
    } else {
      for (const auto& key : options.nodes) {
        forgotten += c.forget_node(key).value_or(false) ? 1 : 0;
      }
    }
    console.line(fmt::format("forgot {} node(s)", forgotten));
    if (options.inputs) {
      auto n = c.forget_inputs();
      if (!n) {
        return std::unexpected(n.error());
      }
      console.line(fmt::format("forgot {} input file(s)", *n));
    }
    return 0;
  }
  if (options.action == "refresh") {
    if (uris.empty()) {
      auto all = c.nodes();
      if (!all) {
        return std::unexpected(all.error());
      }
      for (const auto& [key, r] : *all) {
        auto uri = node::parse_node_uri(key);
        if (uri) {
          uris.push_back(*uri);
        }
      }
    }
    util::SystemProcessRunner runner;
    std::vector<std::optional<util::Error>> errors(uris.size());
    util::parallel_for(uris.size(), options.jobs, [&](std::size_t i) {
      auto transport = node::make_transport(uris[i], runner);
      node::CtrClient client(*transport);
      if (auto r = load::refresh_node(load::Target{uris[i], &client}, c); !r) {
        errors[i] = r.error();
      }
    });
    int failed = 0;
    for (std::size_t i = 0; i < uris.size(); ++i) {
      if (errors[i]) {
        console.line(fmt::format("node \"{}\": FAILED: {}", uris[i].display(), errors[i]->message));
        ++failed;
      } else {
        console.line(fmt::format("node \"{}\": listed", uris[i].display()));
      }
    }
    return failed > 0 ? 1 : 0;
  }
  return util::fail(util::ErrorKind::usage, fmt::format("unknown cache action \"{}\"", options.action));
}

} // namespace kload::cli
