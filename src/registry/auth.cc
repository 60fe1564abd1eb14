#include "kload/registry/auth.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace kload::registry {

using util::ErrorKind;
using util::Result;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void skip_space(std::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
}

std::string_view take_token(std::string_view& s) {
  std::size_t n = 0;
  while (n < s.size() && is_token_char(s[n])) {
    ++n;
  }
  const auto token = s.substr(0, n);
  s.remove_prefix(n);
  return token;
}

// Standard base64 with padding; nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view in) {
  static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (in.size() % 4 != 0) {
    return std::nullopt;
  }
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t padding = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '=') {
      if (i + 2 < in.size()) {
        return std::nullopt;
      }
      ++padding;
      continue;
    }
    if (padding > 0) {
      return std::nullopt;
    }
    const auto v = alphabet.find(c);
    if (v == std::string_view::npos) {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// "https://HOST/v1/" -> "HOST".
std::string host_of_key(std::string_view key) {
  if (const auto scheme = key.find("://"); scheme != std::string_view::npos) {
    key.remove_prefix(scheme + 3);
  }
  return std::string(key.substr(0, key.find('/')));
}

} // namespace

std::string Challenge::param(const std::string& name) const {
  const auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

std::optional<Challenge> parse_www_authenticate(std::string_view s) {
  skip_space(s);
  const auto scheme = lower(take_token(s));
  Challenge out;
  if (scheme == "bearer") {
    out.scheme = AuthScheme::bearer;
  } else if (scheme == "basic") {
    out.scheme = AuthScheme::basic;
  } else {
    return std::nullopt;
  }
  while (true) {
    skip_space(s);
    while (!s.empty() && s.front() == ',') {
      s.remove_prefix(1);
      skip_space(s);
    }
    if (s.empty()) {
      break;
    }
    auto rest = s;
    const auto name = take_token(rest);
    skip_space(rest);
    if (name.empty()) {
      return std::nullopt;
    }
    if (rest.empty() || rest.front() != '=') {
      if (out.params.empty() && !rest.empty() && rest.front() != ',') {
        return std::nullopt;  // a parameter without '='
      }
      break;  // the next challenge begins
    }
    rest.remove_prefix(1);
    skip_space(rest);
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      rest.remove_prefix(1);
      bool closed = false;
      while (!rest.empty()) {
        const char c = rest.front();
        rest.remove_prefix(1);
        if (c == '\\' && !rest.empty()) {
          value.push_back(rest.front());
          rest.remove_prefix(1);
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value.push_back(c);
        }
      }
      if (!closed) {
        return std::nullopt;
      }
    } else {
      value = std::string(take_token(rest));
    }
    out.params[lower(name)] = value;
    s = rest;
  }
  return out;
}

Result<Credentials> parse_creds(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return util::fail(ErrorKind::usage, "--creds: expected USER:PASSWORD");
  }
  return Credentials{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

Result<std::optional<Credentials>> docker_config_credentials(std::string_view json, std::string_view host,
                                                             const std::string& origin) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return util::fail(ErrorKind::bad_input, fmt::format("{}: not a JSON object", origin));
  }
  const auto auths = doc.find("auths");
  if (auths == doc.end() || !auths->is_object()) {
    return std::optional<Credentials>();
  }
  for (const auto& [key, entry] : auths->items()) {
    if (host_of_key(key) != host || !entry.is_object()) {
      continue;
    }
    if (const auto a = entry.find("auth"); a != entry.end() && a->is_string() && !a->get<std::string>().empty()) {
      const auto decoded = base64_decode(a->get<std::string>());
      if (!decoded || decoded->find(':') == std::string::npos || decoded->front() == ':') {
        return util::fail(ErrorKind::bad_input,
                          fmt::format("{}: auths[\"{}\"].auth is not base64 of USER:PASSWORD", origin, key));
      }
      const auto colon = decoded->find(':');
      return std::optional<Credentials>(Credentials{decoded->substr(0, colon), decoded->substr(colon + 1)});
    }
    const auto u = entry.find("username");
    const auto p = entry.find("password");
    if (u != entry.end() && p != entry.end() && u->is_string() && p->is_string()) {
      return std::optional<Credentials>(Credentials{u->get<std::string>(), p->get<std::string>()});
    }
  }
  return std::optional<Credentials>();
}

Result<std::optional<Credentials>> find_credentials(const std::optional<std::string>& creds, std::string_view host) {
  if (creds) {
    auto c = parse_creds(*creds);
    if (!c) {
      return std::unexpected(c.error());
    }
    return std::optional<Credentials>(*c);
  }
  if (const char* user = std::getenv("KLOAD_REGISTRY_USER"); user != nullptr && *user != '\0') {
    const char* password = std::getenv("KLOAD_REGISTRY_PASSWORD");
    return std::optional<Credentials>(Credentials{user, password == nullptr ? "" : password});
  }
  std::string path;
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    path = std::string(dir) + "/config.json";
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    path = std::string(home) + "/.docker/config.json";
  } else {
    return std::optional<Credentials>();
  }
  std::ifstream in(path);
  if (!in) {
    return std::optional<Credentials>();
  }
  std::stringstream text;
  text << in.rdbuf();
  return docker_config_credentials(text.str(), host, path);
}

} // namespace kload::registry
