#pragma once
// The sub-commands. Each returns an exit code after printing its own results; errors
// are returned to run(), which prints them.

#include "kload/format/model.h"
#include "kload/util/error.h"

#include <optional>
#include <string>
#include <vector>

namespace kload::cli {

class Console;

struct InspectOptions {
  std::vector<std::string> archives;
  bool verify = false;
  bool json = false;
  std::optional<format::Platform> platform;
  unsigned jobs = 1;
};

// `kload inspect`: prints every image of the set (text or JSON) with warnings.
// Error (bad_input): unreadable archive, verification failure, a requested platform
// that is absent or unavailable.
util::Result<int> inspect(const InspectOptions& options, Console& console);

struct LoadCommandOptions {
  std::vector<std::string> archives;
  std::vector<std::string> nodes;  // node URIs
  std::optional<format::Platform> platform;
  bool dry_run = false;
  bool json = false;
  unsigned jobs = 1;
  std::string cache_dir;  // empty: the default location
  bool no_cache = false;
};

// `kload image-archive`: loads the archives' images into every node. Returns 0 when
// every node holds every image, 1 when some node failed. Error (bad_input/usage):
// unreadable input, bad node URI, a blob that does not match its digest.
util::Result<int> image_archive(const LoadCommandOptions& options, Console& console);

struct CacheCommandOptions {
  std::string action;              // ls, stats, forget, refresh
  std::vector<std::string> nodes;  // node URIs; empty: all known
  bool inputs = false;             // forget: the input-file records too
  bool json = false;
  std::string cache_dir;
  unsigned jobs = 8;
};

// `kload cache ls|stats|forget|refresh`. Error (usage/io/node).
util::Result<int> cache_command(const CacheCommandOptions& options, Console& console);

// Reads every archive into one set, with a progress line per archive. Error
// (bad_input): the first archive that cannot be read.
util::Result<format::ImageSet> read_inputs(const std::vector<std::string>& archives, Console& console);

// Keeps only images of `platform` (when set) and reports a wanted platform that the
// set lists as unavailable. Error (bad_input): nothing of that platform.
util::Result<void> select_platform(format::ImageSet& set, const std::optional<format::Platform>& platform);

} // namespace kload::cli
