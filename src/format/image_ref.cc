#include "kload/format/image_ref.h"

#include "kload/util/digest.h"

#include <algorithm>

namespace kload::format {

namespace {

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One path component of a repository: [a-z0-9]+ separated by '.', '_', '__' or '-'.
bool valid_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) {
    return false;
  }
  return std::all_of(c.begin(), c.end(),
                     [](char ch) { return is_lower_alnum(ch) || ch == '.' || ch == '_' || ch == '-'; });
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') {
    return false;
  }
  return std::all_of(t.begin(), t.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

bool valid_domain(std::string_view d) {
  return !d.empty() && std::all_of(d.begin(), d.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == ':' ||
           c == '[' || c == ']';
  });
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
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost") {
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
  std::size_t start = 0;
  while (true) {
    const auto end = rest.find('/', start);
    const auto comp = std::string_view(rest).substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!valid_component(comp)) {
      if (std::any_of(comp.begin(), comp.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return bad("repository names must be lower case");
      }
      return bad("bad repository component \"" + std::string(comp) + "\"");
    }
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  if (domain == "docker.io" && rest.find('/') == std::string::npos) {
    rest = "library/" + rest;
  }
  if (tag.empty() && digest.empty()) {
    tag = "latest";
  }
  std::string out = domain + "/" + rest;
  if (!tag.empty()) {
    out += ":" + tag;
  }
  return out + digest;
}

} // namespace kload::format
