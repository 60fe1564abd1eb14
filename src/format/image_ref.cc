#include "kload/format/image_ref.h"

#include "kload/util/digest.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <optional>

namespace kload::format {

namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// One path component of a repository, as the distribution reference grammar has it:
// [a-z0-9]+ runs joined by exactly one separator: '.', '_', '__' or one or more '-'
// ("a..b", "a___b" and "a.-b" are not names).
bool valid_component(std::string_view c) {
  std::size_t i = 0;
  while (true) {
    const auto run = i;
    while (i < c.size() && is_lower_alnum(c[i])) {
      ++i;
    }
    if (i == run) {
      return false;  // empty, or a separator first, last or doubled
    }
    if (i == c.size()) {
      return true;
    }
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      i += i + 1 < c.size() && c[i + 1] == '_' ? 2 : 1;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') {
        ++i;
      }
    } else {
      return false;
    }
  }
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') {
    return false;
  }
  return std::all_of(t.begin(), t.end(), [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

// One label of a registry host: letters, digits and inner '-'.
bool valid_host_label(std::string_view l) {
  return !l.empty() && is_alnum(l.front()) && is_alnum(l.back()) &&
         std::all_of(l.begin(), l.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// host[:port], host being dot-separated labels or a bracketed IPv6 address.
bool valid_domain(std::string_view d) {
  std::string_view host = d;
  if (d.starts_with('[')) {
    const auto close = d.find(']');
    if (close == std::string_view::npos || close < 2) {
      return false;
    }
    const auto inside = d.substr(1, close - 1);
    if (!std::all_of(inside.begin(), inside.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':'; })) {
      return false;
    }
    host = {};
    d = d.substr(close + 1);
  } else if (const auto colon = d.find(':'); colon != std::string_view::npos) {
    host = d.substr(0, colon);
    d = d.substr(colon);
  } else {
    d = {};
  }
  if (!d.empty()) {  // ":port"
    const auto port = d.substr(1);
    if (!d.starts_with(':') || port.empty() ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
  }
  std::size_t start = 0;
  while (!host.empty()) {
    const auto dot = host.find('.', start);
    if (!valid_host_label(host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return true;
}

// Docker's rule for the first component: a registry when it holds '.' or ':', is
// "localhost", or has an upper-case letter (which no repository may have).
bool is_registry(std::string_view first) {
  return first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
         first == "localhost" || std::any_of(first.begin(), first.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// What is wrong with a repository path (components joined by '/'), if anything.
std::optional<std::string> path_problem(std::string_view path) {
  std::size_t start = 0;
  while (true) {
    const auto end = path.find('/', start);
    const auto comp = path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!valid_component(comp)) {
      if (std::any_of(comp.begin(), comp.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return "repository names must be lower case";
      }
      return "bad repository component \"" + std::string(comp) + "\"";
    }
    if (end == std::string_view::npos) {
      return std::nullopt;
    }
    start = end + 1;
  }
}

} // namespace

bool looks_like_reference(std::string_view name) {
  return name.find('/') != std::string_view::npos || name.find(':') != std::string_view::npos ||
         name.find('@') != std::string_view::npos;
}

util::Result<std::string> normalize_image_name(std::string_view name) {
  const std::string original(name);
  auto bad = [&](const std::string& why) {
    return util::fail(util::ErrorKind::bad_input, "invalid image name \"" + original + "\": " + why);
  };
  if (name.empty()) {
    return bad("empty");
  }
  std::string digest;
  if (const auto at = name.find('@'); at != std::string_view::npos) {
    digest = std::string(name.substr(at));
    name = name.substr(0, at);
    if (!util::Digest::parse(std::string_view(digest).substr(1))) {
      return bad("digest must be sha256:<64 hex>");
    }
  }
  std::string domain;
  std::string rest(name);
  if (const auto slash = name.find('/'); slash != std::string_view::npos) {
    const auto first = name.substr(0, slash);
    if (is_registry(first)) {
      domain = std::string(first);
      rest = std::string(name.substr(slash + 1));
    }
  }
  if (domain.empty() || domain == "index.docker.io") {
    domain = "docker.io";
  }
  if (!valid_domain(domain)) {
    return bad("bad registry \"" + domain + "\"");
  }
  std::string tag;
  const auto last_slash = rest.rfind('/');
  const auto colon = rest.rfind(':');
  if (colon != std::string::npos && (last_slash == std::string::npos || colon > last_slash)) {
    tag = rest.substr(colon + 1);
    rest.resize(colon);
    if (!valid_tag(tag)) {
      return bad("bad tag \"" + tag + "\"");
    }
  }
  if (rest.empty()) {
    return bad("empty repository");
  }
  if (auto why = path_problem(rest)) {
    return bad(*why);
  }
  if (domain == "docker.io" && rest.find('/') == std::string::npos) {
    rest = "library/" + rest;
  }
  if (tag.empty() && digest.empty()) {
    tag = "latest";
  }
  std::string out = domain + "/" + rest;
  if (out.size() > max_repository_length) {
    return bad(fmt::format("the repository is {} characters long, more than {}", out.size(), max_repository_length));
  }
  if (!tag.empty()) {
    out += ":" + tag;
  }
  return out + digest;
}

} // namespace kload::format
