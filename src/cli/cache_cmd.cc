#include "kload/cache/cache.h"
#include "kload/cli/commands.h"
#include "kload/cli/console.h"
#include "kload/cli/json_report.h"
#include "kload/load/loader.h"
#include "kload/node/ctr_client.h"
#include "kload/node/node_uri.h"
#include "kload/util/human.h"
#include "kload/util/parallel.h"
#include "kload/util/text.h"

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

// The record key `named` stands for: a node URI (written any way that names the same
// node), or a short node name as the load lines show it (kind-worker, a host, a
// socket's directory). Error (usage): a name no record has, or that several have.
Result<std::string> record_key(const std::vector<std::string>& keys, const std::string& named) {
  std::optional<node::NodeUri> uri;  // none: a short name
  if (named.find("://") != std::string::npos) {
    auto parsed = node::parse_node_uri(named);
    if (!parsed) {
      return std::unexpected(parsed.error());
    }
    uri = std::move(*parsed);
  }
  std::vector<std::string> matches;
  std::vector<std::string> names;
  for (const auto& key : keys) {
    const auto recorded = node::parse_node_uri(key);
    if (!recorded) {
      continue;  // a record of a URI this version no longer reads
    }
    names.push_back(recorded->display());
    if (uri ? node::same_node(*uri, *recorded) : recorded->display() == named) {
      matches.push_back(key);
    }
  }
  if (matches.size() == 1) {
    return matches.front();
  }
  if (matches.empty() && uri) {
    return uri->text;  // nothing recorded: forgetting or refreshing it is still asked for
  }
  if (matches.empty()) {
    return util::fail(util::ErrorKind::usage,
                      fmt::format("--node {}: no node of that name in the cache (it has: {})", named,
                                  names.empty() ? std::string("none") : util::joined(names, ", ")));
  }
  return util::fail(util::ErrorKind::usage, fmt::format("--node {}: names {} nodes in the cache ({}): give the URI",
                                                        named, matches.size(), util::joined(matches, ", ")));
}

// The keys of the nodes `named` (record_key), or every key the cache holds.
Result<std::vector<std::string>> node_keys(cache::Cache& c, const std::vector<std::string>& named) {
  auto all = c.nodes();
  if (!all) {
    return std::unexpected(all.error());
  }
  std::vector<std::string> keys;
  for (const auto& [key, r] : *all) {
    keys.push_back(key);
  }
  if (named.empty()) {
    return keys;
  }
  std::vector<std::string> out;
  for (const auto& n : named) {
    auto key = record_key(keys, n);
    if (!key) {
      return std::unexpected(key.error());
    }
    out.push_back(std::move(*key));
  }
  return out;
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
  auto keys = node_keys(c, options.nodes);
  if (!keys) {
    return std::unexpected(keys.error());
  }
  nlohmann::json records = nlohmann::json::array();
  for (const auto& [key, r] : *all) {
    if (std::find(keys->begin(), keys->end(), key) == keys->end()) {
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
      console.error(fmt::format("node \"{}\": FAILED: {}", uris[i].display(), errors[i]->message));
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
