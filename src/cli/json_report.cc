#include "kload/cli/json_report.h"

#include "kload/cli/app.h"
#include "kload/cli/console.h"
#include "kload/util/temp_dir.h"

#include <cmath>
#include <cstdio>

namespace kload::cli {

std::string_view schema_of(std::string_view command, std::string_view action) {
  if (command == "inspect") {
    return schema_inspect;
  }
  if (command == "image-archive" || command == "docker-image") {
    return schema_load;
  }
  if (command == "ls") {
    return schema_ls;
  }
  if (command == "rm") {
    return schema_rm;
  }
  if (command == "push") {
    return schema_push;
  }
  if (command == "cache" && action == "ls") {
    return schema_cache_ls;
  }
  if (command == "cache" && action == "stats") {
    return schema_cache_stats;
  }
  return "";
}

std::string_view category_name(util::ErrorKind kind) {
  switch (kind) {
  case util::ErrorKind::bad_input:
    return "input";
  case util::ErrorKind::usage:
    return "usage";
  case util::ErrorKind::node:
    return "node";
  case util::ErrorKind::io:
    return "local-io";
  case util::ErrorKind::interrupted:
    return "interrupted";
  }
  return "node";
}

nlohmann::json error_json(const util::Error& error) {
  return {{"category", category_name(error.kind)}, {"message", error.message}};
}

nlohmann::json node_error_json(const std::string& message) {
  if (message.empty()) {
    return nullptr;
  }
  const auto kind = util::cancelled_by() != 0 ? util::ErrorKind::interrupted : util::ErrorKind::node;
  return error_json(util::Error{kind, message});
}

util::Error interrupted_error(int signal) {
  return util::Error{util::ErrorKind::interrupted,
                     "interrupted by " + util::signal_name(signal) +
                         ": the command was cancelled (a load leaves no name on a partial image); run it again "
                         "to finish"};
}

std::optional<util::Error> unless_interrupted(std::optional<util::Error> error) {
  if (const int signal = util::cancelled_by(); signal != 0) {
    return interrupted_error(signal);
  }
  return error;
}

double rounded_seconds(double seconds) { return std::round(seconds * 1000.0) / 1000.0; }

int write_document(nlohmann::json doc, const std::optional<util::Error>& error) {
  const auto outcome = unless_interrupted(error);
  const int code = outcome ? exit_code_for(*outcome) : exit_ok;
  doc["ok"] = !outcome.has_value();
  doc["exitCode"] = code;
  doc["error"] = outcome ? error_json(*outcome) : nlohmann::json(nullptr);
  const auto text = json_text(doc) + "\n";
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  return code;
}

} // namespace kload::cli
