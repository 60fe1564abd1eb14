// `--json` writes exactly one valid document on every way a command ends (issue 13),
// checked field by field against docs/json.md's tables, so the documentation and
// the documents cannot drift apart; and exit codes mean what README says (3 for a
// local failure, 130/143 for an interrupt, after which the document is still whole).
// Issue 11, item 11: `--json` output survives any byte in a file name.

#include "support/test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace kload::testing {
namespace {

using nlohmann::json;

// One row of a field table in docs/json.md.
struct Field {
  std::vector<std::string> types;  // "string", "object", "map", ...
  std::string presence;            // always, report, docker-image
};
using Fields = std::map<std::string, Field>;  // by path: nodes[].error.category

std::vector<std::string> cells_of(const std::string& row) {
  std::vector<std::string> cells;
  std::stringstream in(row);
  for (std::string cell; std::getline(in, cell, '|');) {
    const auto first = cell.find_first_not_of(" `");
    const auto last = cell.find_last_not_of(" `");
    cells.push_back(first == std::string::npos ? "" : cell.substr(first, last - first + 1));
  }
  return cells;  // cells[0] is what precedes the first '|'
}

std::vector<std::string> types_of(const std::string& cell) {
  std::vector<std::string> out;
  std::string rest = cell;
  for (auto at = rest.find(" or "); at != std::string::npos; at = rest.find(" or ")) {
    out.push_back(rest.substr(0, at));
    rest = rest.substr(at + 4);
  }
  out.push_back(rest);
  return out;
}

// docs/json.md's field tables: schema name -> its fields, the fields every document
// has included.
std::map<std::string, Fields> documented_schemas() {
  std::ifstream in(source_dir() / "docs" / "json.md");
  std::map<std::string, Fields> out;
  Fields common;
  std::string section;
  bool in_table = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("## ")) {
      section = line.starts_with("## `kload.") ? cells_of(line.substr(3)).at(0) : line.substr(3);
      in_table = false;
    } else if (line == "| field | type | presence | meaning |") {
      in_table = true;
    } else if (line.empty()) {
      in_table = false;
    } else if (in_table && line.starts_with("| `")) {
      const auto cells = cells_of(line);
      auto& fields = section.starts_with("kload.") ? out[section] : common;
      fields[cells.at(1)] = Field{types_of(cells.at(2)), cells.at(3)};
    }
  }
  for (auto& [name, fields] : out) {
    fields.insert(common.begin(), common.end());
  }
  return out;
}

bool has_type(const json& value, const std::vector<std::string>& types) {
  const auto is = [&](const char* t) { return std::find(types.begin(), types.end(), t) != types.end(); };
  switch (value.type()) {
  case json::value_t::null:
    return is("null");
  case json::value_t::boolean:
    return is("boolean");
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
    return is("integer") || is("number");
  case json::value_t::number_float:
    return is("number");
  case json::value_t::string:
    return is("string");
  case json::value_t::array:
    return is("array");
  case json::value_t::object:
    return is("object") || is("map");
  default:
    return false;
  }
}

std::string parent_of(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

// Checks `value` at `path` and everything under it against `fields`: every field is
// documented with its type, and every field documented as "always" under an object
// that is there is there. `report`: the document's "report" fields must be there too.
void check_value(const json& value, const std::string& path, const Fields& fields, bool report,
                 const std::string& what) {
  // An object in an array is described by its fields (nodes[].node), not a row.
  if (!path.empty() && !(path.ends_with("[]") && value.is_object())) {
    const auto it = fields.find(path);
    ASSERT_NE(it, fields.end()) << what << ": " << path << " is not in docs/json.md";
    EXPECT_TRUE(has_type(value, it->second.types)) << what << ": " << path << " is " << value.dump();
    if (value.is_object() && it->second.types.at(0) == "map") {
      for (const auto& [key, v] : value.items()) {
        check_value(v, path + ".*", fields, report, what);
      }
      return;
    }
  }
  if (value.is_array()) {
    for (const auto& e : value) {
      check_value(e, path + "[]", fields, report, what);
    }
    return;
  }
  if (!value.is_object()) {
    return;
  }
  for (const auto& [key, v] : value.items()) {
    check_value(v, path.empty() ? key : path + "." + key, fields, report, what);
  }
  for (const auto& [field, f] : fields) {
    const bool wanted = f.presence == "always" || (path.empty() && report && f.presence == "report");
    if (wanted && parent_of(field) == path && !field.ends_with("[]") && !field.ends_with(".*")) {
      const auto key = path.empty() ? field : field.substr(path.size() + 1);
      EXPECT_TRUE(value.contains(key)) << what << ": " << field << " is missing: " << value.dump();
    }
  }
}

enum class Report { whole, none };

// Parses stdout as exactly one document of `schema` and checks it against the docs;
// `report`: whether the command got as far as its report.
json checked_document(const CommandResult& r, const std::string& schema, Report report, const std::string& what) {
  const auto doc = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << what << ": stdout is not one JSON document: " << r.out << "\n" << r.err;
  if (doc.is_discarded()) {
    return json();
  }
  static const auto schemas = documented_schemas();
  EXPECT_EQ(doc.value("schema", ""), schema) << what;
  const auto it = schemas.find(schema);
  EXPECT_NE(it, schemas.end()) << schema << " is not in docs/json.md";
  if (it != schemas.end()) {
    check_value(doc, "", it->second, report == Report::whole, what);
  }
  EXPECT_EQ(doc.value("exitCode", -1), r.exit_code) << what;
  EXPECT_EQ(doc.value("ok", false), r.exit_code == 0) << what;
  return doc;
}

// The document of a command that failed: its category, and a message that says
// `says`.
json failed_document(const CommandResult& r, const std::string& schema, Report report, int exit_code,
                     const std::string& category, const std::string& says, const std::string& what) {
  EXPECT_EQ(r.exit_code, exit_code) << what << ": " << r.err;
  auto doc = checked_document(r, schema, report, what);
  if (doc.is_object() && doc["error"].is_object()) {
    EXPECT_EQ(doc["error"]["category"], category) << what << ": " << doc.dump();
    EXPECT_NE(doc["error"]["message"].get<std::string>().find(says), std::string::npos) << what << ": " << doc.dump();
  } else {
    ADD_FAILURE() << what << ": no error object: " << r.out;
  }
  return doc;
}

bool whole_milliseconds(double seconds) { return std::fabs(std::round(seconds * 1000) / 1000 - seconds) < 1e-9; }

TEST(CliJson, InspectOfAFileNameThatIsNotUtf8GivesWholeJson) {
  Scratch scratch;
  const auto path = (scratch / "app\xff\xfe.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:4K", path}));
  const auto r = kload({"inspect", "--json", path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << r.out;
  ASSERT_EQ(doc["images"].size(), 1u);
  EXPECT_NE(r.out.find("app\xef\xbf\xbd\xef\xbf\xbd.tar"), std::string::npos)
      << "each byte that is not UTF-8 becomes U+FFFD: " << r.out;
}

// Every schema a command's help names is documented, and docs/json.md's tables hold
// what the checks below read.
TEST(CliJson, TheDocsDescribeEverySchemaTheHelpNames) {
  const auto schemas = documented_schemas();
  const std::vector<std::pair<std::string, std::string>> named{
      {"inspect", "kload.inspect/v1"}, {"image-archive", "kload.load/v2"}, {"docker-image", "kload.load/v2"},
      {"ls", "kload.ls/v2"},           {"rm", "kload.rm/v2"},              {"push", "kload.push/v1"}};
  for (const auto& [command, schema] : named) {
    EXPECT_NE(kload({"help", command}).out.find(schema), std::string::npos) << command << " --help names " << schema;
    ASSERT_TRUE(schemas.contains(schema)) << schema;
    EXPECT_TRUE(schemas.at(schema).contains("error.category")) << schema;
    EXPECT_GT(schemas.at(schema).size(), 6u) << schema << ": its own fields";
  }
  EXPECT_TRUE(schemas.contains("kload.cache-ls/v1"));
  EXPECT_TRUE(schemas.contains("kload.cache-stats/v1"));
  EXPECT_EQ(schemas.at("kload.load/v2").at("nodes[].lacks").types, std::vector<std::string>{"array"});
  EXPECT_EQ(schemas.at("kload.load/v2").at("nodes[].wireBytes").types, std::vector<std::string>{"integer"});
  EXPECT_EQ(schemas.at("kload.load/v2").at("nodes[].wireCompression").presence, "always");
}

TEST(CliJson, InspectWritesADocumentOnSuccessAndOnEveryFailure) {
  Scratch scratch;
  const auto archive = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:4K,top:2K", archive}));
  const auto ok = kload({"inspect", "--json", "--verify", archive});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const auto doc = checked_document(ok, "kload.inspect/v1", Report::whole, "inspect");
  EXPECT_TRUE(doc["error"].is_null());
  EXPECT_EQ(doc["images"][0]["layers"].size(), 2u);

  failed_document(kload({"inspect", "--json", (scratch / "none.tar").string()}), "kload.inspect/v1", Report::none, 2,
                  "input", "none.tar", "a missing archive");
  failed_document(kload({"inspect", archive, "--json", "--jobs", "0"}), "kload.inspect/v1", Report::none, 2, "usage",
                  "--jobs", "a bad option after --json");
  failed_document(kload({"inspect", "--json", "--platform", "nonsense", archive}), "kload.inspect/v1", Report::none,
                  2, "usage", "--platform", "a bad --platform");
}

// A load through a registry: its document has the via object, documented field by
// field; a direct load's is null.
TEST(CliJson, AViaLoadSaysWhatLeftThisMachineAndWhatADirectLoadWouldHaveSent) {
  KLOAD_REQUIRE_REGISTRY();
  Scratch scratch;
  Lab lab(scratch / "lab", 2, LabKind{});
  ASSERT_TRUE(lab.up());
  Registry registry(scratch / "registry");
  ASSERT_TRUE(registry.up()) << registry.log();
  const auto archive = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K,top:8K", archive}));
  auto args = std::vector<std::string>{"image-archive", archive, "--json", "--via", registry.address(), "--plain-http"};
  for (const auto& u : lab.uris()) {
    args.insert(args.end(), {"--node", u});
  }
  const auto r = kload(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto doc = checked_document(r, "kload.load/v2", Report::whole, "via load");
  ASSERT_TRUE(doc["via"].is_object()) << r.out;
  EXPECT_EQ(doc["via"]["pullAddress"], registry.address());
  EXPECT_TRUE(doc["via"]["published"].get<bool>());
  EXPECT_EQ(doc["via"]["blobsUploaded"], 3);  // config and two layers
  EXPECT_EQ(doc["via"]["directLayerBytes"],
            doc["nodes"][0]["layerBytesPlanned"].get<std::uint64_t>() * 2);
  EXPECT_EQ(doc["nodes"][1]["layersPulled"], 2);
  EXPECT_NE(r.err.find("through registry " + registry.address()), std::string::npos) << r.err;

  const auto direct = kload({"image-archive", archive, "--json", "--node", lab.uris()[0]});
  EXPECT_TRUE(checked_document(direct, "kload.load/v2", Report::whole, "direct load")["via"].is_null());
  failed_document(kload({"image-archive", archive, "--json", "--plain-http", "--node", lab.uris()[0]}),
                  "kload.load/v2", Report::none, 2, "usage", "--via", "--plain-http without --via");
  failed_document(kload({"image-archive", archive, "--json", "--via", "x:1", "--via-pull-address", "h:1/p", "--node",
                         lab.uris()[0]}),
                  "kload.load/v2", Report::none, 2, "usage", "--via-pull-address", "a pull address with a path");
}

// A node that cannot be reached: its own containerd socket path that nothing serves.
std::string unreachable_node(const Scratch& scratch) { return "containerd://" + (scratch / "no.sock").string(); }

TEST(CliJson, LoadLsAndRmWriteDocumentsForGoodAndFailedNodes) {
  Scratch scratch;
  Lab lab(scratch / "lab", 1, LabKind{});
  ASSERT_TRUE(lab.up());
  const auto archive = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:64K,top:8K", archive}));
  const auto node = lab.uris().at(0);
  const auto gone = unreachable_node(scratch);

  const auto dry = kload({"image-archive", archive, "--no-cache", "--json", "--dry-run", "--node", node});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  checked_document(dry, "kload.load/v2", Report::whole, "dry run");
  const auto loaded = kload({"image-archive", archive, "--no-cache", "--json", "--node", node});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  const auto doc = checked_document(loaded, "kload.load/v2", Report::whole, "load");
  EXPECT_TRUE(whole_milliseconds(doc["seconds"].get<double>())) << doc["seconds"];
  EXPECT_TRUE(whole_milliseconds(doc["nodes"][0]["seconds"].get<double>())) << doc["nodes"][0]["seconds"];
  EXPECT_TRUE(doc["nodes"][0]["lacks"].empty());
  // A node on this machine: the stream goes as it is, so the wire carries bytesSent.
  EXPECT_EQ(doc["nodes"][0]["wireCompression"], "none");
  EXPECT_GT(doc["nodes"][0]["bytesSent"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(doc["nodes"][0]["wireBytes"], doc["nodes"][0]["bytesSent"]);

  const auto half = kload({"image-archive", archive, "--no-cache", "--json", "--node", node, "--node", gone});
  const auto failed = failed_document(half, "kload.load/v2", Report::whole, 1, "node", "1 of 2 node(s) failed",
                                      "one node unreachable");
  ASSERT_EQ(failed["nodes"].size(), 2u) << half.out;
  EXPECT_TRUE(failed["nodes"][0]["ok"].get<bool>()) << half.out;
  const auto& bad = failed["nodes"][1];
  EXPECT_EQ(bad["error"]["category"], "node") << half.out;
  EXPECT_NE(bad["error"]["message"].get<std::string>().find("no.sock"), std::string::npos) << half.out;
  ASSERT_EQ(bad["lacks"].size(), 1u) << half.out;
  EXPECT_EQ(bad["lacks"][0]["names"], json::array({"docker.io/library/app:v1"})) << half.out;
  EXPECT_EQ(bad["lacks"][0]["id"], doc["nodes"][0]["images"][0]["id"]) << half.out;

  const auto ls = kload({"ls", "--json", "--node", node});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  checked_document(ls, "kload.ls/v2", Report::whole, "ls");
  const auto layers = kload({"ls", "--json", "--layers", "--node", node, "--node", gone});
  const auto with_layers = checked_document(layers, "kload.ls/v2", Report::whole, "ls --layers");
  ASSERT_FALSE(with_layers["images"].empty()) << layers.out;
  ASSERT_FALSE(with_layers["images"][0]["layers"].empty()) << layers.out;
  EXPECT_EQ(with_layers["images"][0]["layers"][0]["held"], json::array({true, nullptr})) << layers.out;
  const auto ls_failed = failed_document(kload({"ls", "--json", "--node", node, "--node", gone}), "kload.ls/v2",
                                         Report::whole, 1, "node", "1 of 2 node(s) failed", "ls, one node unreachable");
  EXPECT_EQ(ls_failed["nodes"][1]["error"]["category"], "node") << ls_failed.dump();

  const auto rm = kload({"rm", "app:v1", "--json", "--no-cache", "--node", node});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  checked_document(rm, "kload.rm/v2", Report::whole, "rm");
  failed_document(kload({"rm", "app:v1", "--json", "--no-cache", "--node", node, "--node", gone}), "kload.rm/v2",
                  Report::whole, 1, "node", "1 of 2 node(s) failed", "rm, one node unreachable");
}

TEST(CliJson, CommandsThatFailBeforeTheirReportStillWriteOneDocument) {
  Scratch scratch;
  const auto archive = (scratch / "app.tar").string();
  ASSERT_TRUE(mkimage({"--image", "app:v1=base:4K", archive}));
  const auto gone = unreachable_node(scratch);
  failed_document(kload({"image-archive", (scratch / "none.tar").string(), "--json", "--node", gone}),
                  "kload.load/v2", Report::none, 2, "input", "none.tar", "a missing archive");
  failed_document(kload({"image-archive", archive, "--json", "--node", "kind-worker"}), "kload.load/v2", Report::none,
                  2, "usage", "kind-worker", "a bare word as --node");
  failed_document(kload({"image-archive", archive, "--json", "--jobs", "0", "--node", gone}), "kload.load/v2",
                  Report::none, 2, "usage", "--jobs", "a bad --jobs after --json");
  failed_document(kload({"docker-image", "app:v1", "--json", "--watch", "--node", gone}), "kload.load/v2",
                  Report::none, 2, "usage", "--watch", "--watch with --json");
  failed_document(kload({"push", archive, "--json", "--plain-http", "--registry", "127.0.0.1:1"}), "kload.push/v1",
                  Report::none, 1, "node", "127.0.0.1:1", "a registry that does not answer");
  failed_document(kload({"ls", "--json", "--node", "nosuch://x"}), "kload.ls/v2", Report::none, 2, "usage",
                  "nosuch://x", "a bad URI");

  const auto cache = (scratch / "cache").string();
  const auto stats = kload({"cache", "stats", "--json", "--cache", cache});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  checked_document(stats, "kload.cache-stats/v1", Report::whole, "cache stats");
  const auto ls = kload({"cache", "ls", "--json", "--cache", cache});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  checked_document(ls, "kload.cache-ls/v1", Report::whole, "cache ls");
  write_file(scratch / "file", "not a directory");
  failed_document(kload({"cache", "stats", "--json", "--cache", (scratch / "file").string()}),
                  "kload.cache-stats/v1", Report::none, 3, "local-io", "file", "a cache that cannot be opened");
  const auto forget = kload({"cache", "forget", "--json", "--yes", "--cache", cache});
  EXPECT_EQ(forget.exit_code, 2) << forget.err;
  EXPECT_EQ(forget.out, "") << "cache forget has no document";
}

// No temporary space: a compressed input must be spooled, and TMPDIR is not there.
// That is this machine's failure, not the node's nor the input's: exit 3.
TEST(CliJson, NoTemporarySpaceIsALocalFailureThatExitsThree) {
  Scratch scratch;
  const auto archive = (scratch / "app.tar.zst").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:4M", archive}));
  const auto missing = (scratch / "no-such-dir").string();
  ::setenv("TMPDIR", missing.c_str(), 1);
  const auto json_run = kload({"image-archive", archive, "--json", "--node", unreachable_node(scratch)});
  const auto text_run = kload({"image-archive", archive, "--node", unreachable_node(scratch)});
  ::unsetenv("TMPDIR");
  failed_document(json_run, "kload.load/v2", Report::none, 3, "local-io", "TMPDIR", "no temporary space");
  EXPECT_EQ(text_run.exit_code, 3) << text_run.err;
  EXPECT_NE(text_run.err.find("kload: error: cannot create a temporary directory " + missing), std::string::npos)
      << text_run.err;
  EXPECT_NE(text_run.err.find("set TMPDIR to a writable directory"), std::string::npos) << text_run.err;
}

// SIGINT or SIGTERM while a node's import is under way (held still with SIGSTOP, so
// the load cannot finish first): kload cancels the load, writes the whole document
// from its main thread, and exits 128+signal; the node keeps no name.
class CliJsonInterrupt : public ::testing::TestWithParam<int> {};

TEST_P(CliJsonInterrupt, ASignalDuringALoadWritesTheDocumentAndExits128PlusIt) {
  const int signal = GetParam();
  Scratch scratch;
  Lab lab(scratch / "lab", 1, LabKind{});
  ASSERT_TRUE(lab.up());
  const auto archive = (scratch / "big.tar").string();
  ASSERT_TRUE(mkimage({"--compressible", "0", "--image", "app:v1=base:16M,top:8M", archive}));
  const auto tmp = scratch / "tmp";
  std::filesystem::create_directories(tmp);
  ::setenv("TMPDIR", tmp.c_str(), 1);
  const pid_t pid = spawn_kload({"image-archive", archive, "--json", "--no-cache", "--node", lab.uris().at(0)},
                                scratch / "out", scratch / "err");
  ::unsetenv("TMPDIR");
  pid_t import = 0;
  for (int i = 0; i < 3000 && import == 0; ++i) {
    import = ctr_import_on(lab.socket(1).string());
    if (import == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ASSERT_NE(import, 0) << "the import never started: " << read_file(scratch / "err");
  ::kill(import, SIGSTOP);
  const auto started = std::chrono::steady_clock::now();
  ::kill(pid, signal);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const auto took = std::chrono::steady_clock::now() - started;
  ::kill(import, SIGCONT);  // harmless once it is killed

  ASSERT_TRUE(WIFEXITED(status)) << "ended by a signal, not by exiting: " << read_file(scratch / "err");
  const CommandResult r{WEXITSTATUS(status), read_file(scratch / "out"), read_file(scratch / "err")};
  EXPECT_LT(took, std::chrono::seconds(4)) << "cancelled at once, not at the end of the grace period";
  const auto doc = failed_document(r, "kload.load/v2", Report::whole, 128 + signal, "interrupted",
                                   signal == SIGINT ? "SIGINT" : "SIGTERM", "interrupted load");
  ASSERT_EQ(doc["nodes"].size(), 1u) << r.out;
  EXPECT_FALSE(doc["nodes"][0]["ok"].get<bool>()) << r.out;
  EXPECT_EQ(doc["nodes"][0]["error"]["category"], "interrupted") << r.out;
  ASSERT_EQ(doc["nodes"][0]["lacks"].size(), 1u) << r.out;
  EXPECT_NE(r.err.find("kload: error: interrupted by"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "temporary files left behind";
  for (const auto& [name, image] : lab.images(1)) {
    EXPECT_NE(name.find("kload-staging"), std::string::npos) << "only staging names may be left: " << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Signals, CliJsonInterrupt, ::testing::Values(SIGINT, SIGTERM),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == SIGINT ? std::string("SIGINT") : std::string("SIGTERM");
                         });

} // namespace
} // namespace kload::testing
