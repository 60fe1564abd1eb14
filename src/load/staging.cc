#include "staging.h"

#include "kload/load/loader.h"
#include "kload/util/process.h"
#include "kload/util/text.h"

#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <fstream>
#include <random>

namespace kload::load {

namespace {

constexpr std::int64_t abandoned_after_seconds = 3600;

std::optional<std::int64_t> number(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

} // namespace

const std::string& boot_tag() {
  static const std::string tag = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(in, id);
    std::string hex;
    for (char c : id) {
      if (std::isxdigit(static_cast<unsigned char>(c)) != 0 && hex.size() < 8) {
        hex += c;
      }
    }
    return hex.size() == 8 ? hex : std::string("00000000");
  }();
  return tag;
}

std::string make_staging_name(const util::Digest& manifest) {
  std::random_device rd;
  return fmt::format("{}{}:{}-{}-{}-{:08x}", staging_prefix, manifest.short_hex(), static_cast<long>(std::time(nullptr)),
                     boot_tag(), util::own_process_token(), rd());
}

bool staging_abandoned(const std::string& name, std::int64_t now) {
  if (!is_staging_name(name)) {
    return false;
  }
  const auto colon = name.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  // TIME-BOOT-PID.START-RANDOM; older kloads wrote TIME-PID-RANDOM.
  const auto fields = util::fields_of(std::string_view(name).substr(colon + 1), "-");
  const auto when = fields.empty() ? std::nullopt : number(fields[0]);
  if (!when) {
    return false;
  }
  if (fields.size() == 4 && fields[1] == boot_tag()) {
    const std::string token(fields[2]);
    return token != util::own_process_token() && !util::process_running(token);
  }
  return now - *when > abandoned_after_seconds;
}

StagingGuard::~StagingGuard() { (void)remove(); }

util::Result<void> StagingGuard::remove() {
  if (names_.empty()) {
    return {};
  }
  if (auto r = client_.remove(names_); !r) {
    return r;
  }
  names_.clear();
  return {};
}

} // namespace kload::load
