#include "kload/registry/names.h"

#include "kload/format/image_ref.h"

#include <fmt/format.h>

#include <algorithm>

namespace kload::registry {

using util::ErrorKind;
using util::Result;

namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Dot-separated labels of letters, digits and inner '-', or [IPv6], then an optional
// :PORT of 1 to 5 digits. (Hand-written: libstdc++'s std::regex recurses per
// character, and --registry can be any length.)
bool valid_host(std::string_view host) {
  if (const auto colon = host.rfind(':'); colon != std::string_view::npos && !host.ends_with(']')) {
    const auto port = host.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::ranges::all_of(port, [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    host = host.substr(0, colon);
  }
  if (host.starts_with('[')) {
    return host.size() > 2 && host.ends_with(']') &&
           std::ranges::all_of(host.substr(1, host.size() - 2), [](char c) {
             return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
           });
  }
  while (true) {
    const auto dot = host.find('.');
    const auto label = host.substr(0, dot);
    if (label.empty() || !alnum(label.front()) || !alnum(label.back()) ||
        !std::ranges::all_of(label, [](char c) { return alnum(c) || c == '-'; })) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    host.remove_prefix(dot + 1);
  }
}

// [a-z0-9]+ joined by one '.', one '_', "__" or a run of '-'.
bool valid_component(std::string_view c) {
  auto lower_alnum = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'); };
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back())) {
    return false;
  }
  for (std::size_t i = 0; i < c.size();) {
    if (lower_alnum(c[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < c.size() && !lower_alnum(c[j])) {
      ++j;
    }
    const auto sep = c.substr(i, j - i);
    const bool dashes = std::ranges::all_of(sep, [](char ch) { return ch == '-'; });
    if (sep != "." && sep != "_" && sep != "__" && !dashes) {
      return false;
    }
    i = j;
  }
  return true;
}

} // namespace

Result<RegistryAddress> parse_registry(std::string_view text) {
  auto bad = [&](const std::string& why) {
    const auto shown = text.size() > 80 ? std::string(text.substr(0, 80)) + "..." : std::string(text);
    return util::fail(ErrorKind::usage, fmt::format("--registry \"{}\": {}", shown, why));
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
  if (text.size() > format::max_repository_length) {
    return bad(fmt::format("longer than {} characters", format::max_repository_length));
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

Result<void> has_push_name(const format::Image& image) {
  if (image.names.empty()) {
    return util::fail(ErrorKind::bad_input,
                      fmt::format("{}: image {} has no name to push it under", image.source, image.id.str()));
  }
  return {};
}

} // namespace kload::registry
