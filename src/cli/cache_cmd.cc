#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/load/loader.h"
#include "kload/node/ctr_client.h"
#include "kload/node/node_uri.h"
#include "kload/util/human.h"
#include "kload/util/parallel.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <ctime>
#include <iostream>
#include <unistd.h>

namespace kload::cli {

using util::Result;

namespace {

std::string age(std::int64_t when) {
  if (when == 0) {
    return "never";
  }
  return util::human_seconds(static_cast<double>(std::time(nullptr) - when)) + " ago";
}

Result<int> cache_stats(cache::Cache& c, bool json) {
  auto s = c.stats();
  if (!s) {
    return std::unexpected(s.error());
  }
  if (json) {
    return write_document({{"schema", schema_cache_stats},
                           {"dir", s->dir.string()},
                           {"nodes", s->nodes},
                           {"inputs", s->inputs},
                           {"bytes", s->file_bytes}},
                          std::nullopt);
  }
  std::cout << fmt::format("cache:  {}\nnodes:  {}\ninputs: {}\nsize:   {}\n", s->dir.string(), s->nodes, s->inputs,
                           util::human_bytes(s->file_bytes));
  return 0;
}

nlohmann::json record_json(const std::string& key, const cache::NodeRecord& r) {
  nlohmann::json names = nlohmann::json::object();
  for (const auto& [name, n] : r.names) {
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& id : n.ids) {
      ids.push_back(id.str());
    }
    names[name] = {{"target", n.target.str()}, {"ids", ids}, {"complete", n.complete},
                   {"byKload", n.by_kload}, {"learnedAt", n.learned_at}};
  }
  return {{"node", key}, {"serverUUID", r.server_uuid}, {"listedAt", r.listed_at},
          {"updatedAt", r.updated_at}, {"blobs", r.blobs.size()}, {"names", names}};
}

void print_record(const std::string& key, const cache::NodeRecord& r) {
  std::cout << fmt::format("{}\n  containerd {}, listed {}, updated {}, {} blobs, {} names\n", key, r.server_uuid,
                           age(r.listed_at), age(r.updated_at), r.blobs.size(), r.names.size());
  for (const auto& [name, n] : r.names) {
    std::cout << fmt::format("    {}  {}{}{}\n", name, n.ids.empty() ? "(ID unknown)" : n.ids.front().str(),
                             n.complete ? "" : "  incomplete", n.by_kload ? "  (loaded by kload)" : "");
  }
}

Result<int> cache_ls(cache::Cache& c, const CacheCommandOptions& options) {
  auto all = c.nodes();
  if (!all) {
    return std::unexpected(all.error());
  }
  nlohmann::json records = nlohmann::json::array();
  for (const auto& [key, r] : *all) {
    if (!options.nodes.empty() && std::find(options.nodes.begin(), options.nodes.end(), key) == options.nodes.end()) {
      continue;
    }
    if (options.json) {
      records.push_back(record_json(key, r));
    } else {
      print_record(key, r);
    }
  }
  if (options.json) {
    return write_document({{"schema", schema_cache_ls}, {"nodes", records}}, std::nullopt);
  }
  return 0;
}

// The keys named, or every key the cache holds.
Result<std::vector<std::string>> node_keys(cache::Cache& c, const std::vector<std::string>& named) {
  if (!named.empty()) {
    return named;
  }
  auto all = c.nodes();
  if (!all) {
    return std::unexpected(all.error());
  }
  std::vector<std::string> keys;
  for (const auto& [key, r] : *all) {
    keys.push_back(key);
  }
  return keys;
}

// Whether the user, asked on the terminal, says yes.
bool confirmed(const std::string& question, Console& console) {
  if (::isatty(STDIN_FILENO) == 0 || ::isatty(STDERR_FILENO) == 0) {
    return false;
  }
  console.line(question + " [y/N]");
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "y" || answer == "Y" || answer == "yes";
}

// --inputs alone forgets the input records only; --node forgets those nodes; neither
// forgets every node, once confirmed (--yes, or a "y" on the terminal).
Result<int> cache_forget(cache::Cache& c, const CacheCommandOptions& options, Console& console) {
  if (options.inputs && options.nodes.empty()) {
    auto n = c.forget_inputs();
    if (!n) {
      return std::unexpected(n.error());
    }
    console.line(fmt::format("forgot {} input file(s)", *n));
    return 0;
  }
  if (options.nodes.empty() && !options.yes &&
      !confirmed("forget what kload remembers of every node?", console)) {
    return util::fail(util::ErrorKind::usage, "cache forget without --node forgets every node's record: add --yes, "
                                              "or name the nodes with --node");
  }
  auto keys = node_keys(c, options.nodes);
  if (!keys) {
    return std::unexpected(keys.error());
  }
  std::size_t forgotten = 0;
  for (const auto& key : *keys) {
    forgotten += c.forget_node(key).value_or(false) ? 1 : 0;
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

Result<int> cache_refresh(cache::Cache& c, const CacheCommandOptions& options, Console& console) {
  auto keys = node_keys(c, options.nodes);
  if (!keys) {
    return std::unexpected(keys.error());
  }
  std::vector<node::NodeUri> uris;
  for (const auto& key : *keys) {
    auto uri = node::parse_node_uri(key);
    if (!uri) {
      if (!options.nodes.empty()) {
        return std::unexpected(uri.error());
      }
      continue;  // a record of a URI this version no longer reads
    }
    uris.push_back(*uri);
  }
  util::SystemProcessRunner runner;
  std::vector<std::optional<util::Error>> errors(uris.size());
  util::parallel_for(uris.size(), options.jobs, [&](std::size_t i) {
    auto transport = node::make_transport(uris[i], runner);
    node::CtrClient client(*transport);
    if (auto r = load::refresh_node(load::Target{uris[i], &client, nullptr}, c); !r) {
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

} // namespace

Result<int> cache_command(const CacheCommandOptions& options, Console& console) {
  if (options.json && schema_of("cache", options.action).empty()) {
    return util::fail(util::ErrorKind::usage,
                      fmt::format("--json goes with cache ls and cache stats, not cache {}", options.action));
  }
  for (const auto& text : options.nodes) {
    if (auto uri = node::parse_node_uri(text); !uri) {
      return std::unexpected(uri.error());
    }
  }
  const auto dir = options.cache_dir.empty() ? cache::Cache::default_dir() : std::filesystem::path(options.cache_dir);
  auto opened = cache::Cache::open(dir, [&](const std::string& w) { console.warn(w); });
  if (!opened) {
    return std::unexpected(opened.error());
  }
  auto& c = **opened;
  if (options.action == "stats") {
    return cache_stats(c, options.json);
  }
  if (options.action == "ls") {
    return cache_ls(c, options);
  }
  if (options.action == "forget") {
    return cache_forget(c, options, console);
  }
  if (options.action == "refresh") {
    return cache_refresh(c, options, console);
  }
  return util::fail(util::ErrorKind::usage, fmt::format("unknown cache action \"{}\"", options.action));
}

} // namespace kload::cli
