#pragma once
// The one JSON document a command run with --json writes on stdout, whatever way it
// ends: the command's own fields when it got as far as making them, and always
// "schema", "ok", "exitCode" and "error". docs/json.md describes every schema.

#include "kload/util/error.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace kload::cli {

// The schemas. A field whose type or meaning changes takes a new version; fields are
// only added within one.
inline constexpr std::string_view schema_inspect = "kload.inspect/v1";
inline constexpr std::string_view schema_load = "kload.load/v2";  // image-archive, docker-image
inline constexpr std::string_view schema_ls = "kload.ls/v2";
inline constexpr std::string_view schema_rm = "kload.rm/v2";
inline constexpr std::string_view schema_push = "kload.push/v1";
inline constexpr std::string_view schema_cache_ls = "kload.cache-ls/v1";
inline constexpr std::string_view schema_cache_stats = "kload.cache-stats/v1";

// The schema of `command`'s --json document (for `cache`, of its `action`); empty for
// a command, or a cache action, without one.
std::string_view schema_of(std::string_view command, std::string_view action = "");

// The category of an error in documents: input, usage, node, local-io, interrupted.
std::string_view category_name(util::ErrorKind kind);

// {"category": ..., "message": ...}.
nlohmann::json error_json(const util::Error& error);

// A node's error where only its message is known (ls, rm): null when `message` is
// empty, else {"category": "node", or "interrupted" once cancelled, "message"}.
nlohmann::json node_error_json(const std::string& message);

// `error`, unless the run was cancelled by a signal (util::cancelled_by): then the
// interrupt, which decides the exit code whatever failed because of it.
std::optional<util::Error> unless_interrupted(std::optional<util::Error> error);

// The interrupt error of a run cancelled by `signal`.
util::Error interrupted_error(int signal);

// A duration in seconds rounded to milliseconds, as documents give them.
double rounded_seconds(double seconds);

// Completes `doc` with "ok", "exitCode" and "error" (null when ok) for how the command
// ended, `error` (nullopt: it succeeded) passed through unless_interrupted, writes it
// on stdout with json_text and returns the exit code (exit_code_for).
int write_document(nlohmann::json doc, const std::optional<util::Error>& error);

} // namespace kload::cli
