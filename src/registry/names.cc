#include "kload/registry/names.h"

#include "kload/format/image_ref.h"

#include <fmt/format.h>

#include <regex>

namespace kload::registry {

using util::ErrorKind;
using util::Result;

namespace {

bool valid_host(std::string_view host) {
  static const std::regex pattern(
      R"(^(([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(\.([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$)");
  return std::regex_match(host.begin(), host.end(), pattern);
}

bool valid_component(std::string_view c) {
  static const std::regex pattern(R"(^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$)");
  return std::regex_match(c.begin(), c.end(), pattern);
}

} // namespace

Result<RegistryAddress> parse_registry(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return util::fail(ErrorKind::usage, fmt::format("--registry \"{}\": {}", std::string(text), why));
  };
  if (text.empty()) {
    return bad("empty; expected HOST[:PORT][/PREFIX]");
  }
  if (text.find("://") != std::string_view::npos) {
    return bad("give HOST[:PORT][/PREFIX] without a scheme (TLS unless --plain-http)");
  }
  while (text.ends_with('/')) {
    text.remove_suffix(1);
  }
  RegistryAddress out;
  const auto slash = text.find('/');
  out.host = std::string(text.substr(0, slash));
  if (!valid_host(out.host)) {
    return bad(fmt::format("\"{}\" is not a host name with an optional port", out.host));
  }
  if (slash != std::string_view::npos) {
    out.prefix = std::string(text.substr(slash + 1));
    std::string_view rest = out.prefix;
    while (true) {
      const auto next = rest.find('/');
      if (!valid_component(rest.substr(0, next))) {
        return bad(fmt::format("prefix component \"{}\" is not a repository path component",
                               std::string(rest.substr(0, next))));
      }
      if (next == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(next + 1);
    }
  }
  return out;
}

std::string Destination::display(const RegistryAddress& registry) const {
  const char separator = reference.starts_with("sha256:") ? '@' : ':';
  return fmt::format("{}/{}{}{}", registry.host, repository, separator, reference);
}

Result<Destination> destination_for(std::string_view name, const RegistryAddress& registry) {
  auto bad = [&](const std::string& why) {
    return util::fail(ErrorKind::bad_input, fmt::format("image name \"{}\": {}", std::string(name), why));
  };
  Destination out;
  std::string_view repo_part = name;
  if (const auto at = name.find('@'); at != std::string_view::npos) {
    out.reference = std::string(name.substr(at + 1));
    repo_part = name.substr(0, at);
  } else {
    const auto last_slash = name.rfind('/');
    const auto colon = name.rfind(':');
    if (colon == std::string_view::npos || (last_slash != std::string_view::npos && colon < last_slash)) {
      return bad("no tag or digest (names are normalised first)");
    }
    out.reference = std::string(name.substr(colon + 1));
    repo_part = name.substr(0, colon);
  }
  const auto first_slash = repo_part.find('/');
  if (first_slash == std::string_view::npos || first_slash + 1 == repo_part.size() || out.reference.empty()) {
    return bad("not a normalised name (HOST/PATH:TAG)");
  }
  const auto path = repo_part.substr(first_slash + 1);
  out.repository = registry.prefix.empty() ? std::string(path) : registry.prefix + "/" + std::string(path);
  if (registry.host.size() + 1 + out.repository.size() > format::max_repository_length) {
    return bad(fmt::format("{}/{} is longer than {} characters", registry.host, out.repository,
                           format::max_repository_length));
  }
  return out;
}

} // namespace kload::registry
