#pragma once
// Registry authentication, the pure parts: the challenge a registry answers 401 with,
// and the credentials the user gave (--creds, the environment, ~/.docker/config.json).

#include "kload/util/error.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kload::registry {

enum class AuthScheme { basic, bearer };

// One WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="..."` or
// `Basic realm="..."`. Parameter names are lower-cased; values unquoted.
struct Challenge {
  AuthScheme scheme = AuthScheme::basic;
  std::map<std::string, std::string> params;  // realm, service, scope, error...

  // The parameter `name`, or "" when absent.
  [[nodiscard]] std::string param(const std::string& name) const;
};

// Parses a WWW-Authenticate header value (the first challenge when it lists several).
// nullopt: empty, another scheme, or malformed (an unterminated quoted string, a
// parameter without '=').
std::optional<Challenge> parse_www_authenticate(std::string_view header);

struct Credentials {
  std::string user;
  std::string password;
};

// Parses --creds USER:PASS (split at the first ':'). Error (usage): no ':' or an
// empty user.
util::Result<Credentials> parse_creds(std::string_view text);

// The credentials a docker config (`~/.docker/config.json`, text `json`) holds for
// `host` in its "auths" map: the entry keyed by the host, by "https://HOST" or
// "http://HOST" (with or without a path), whose "auth" is base64 of USER:PASS, or
// whose "username" and "password" are given. nullopt: no entry for the host (or
// only a credential helper's, which kload does not run). Error (bad_input, naming
// `origin`): the document is not JSON, or an entry's auth is not base64 of USER:PASS.
util::Result<std::optional<Credentials>> docker_config_credentials(std::string_view json, std::string_view host,
                                                                   const std::string& origin);

// The credentials to use for `host`: `creds` when given, else
// KLOAD_REGISTRY_USER/KLOAD_REGISTRY_PASSWORD when the user is set, else
// $DOCKER_CONFIG/config.json or ~/.docker/config.json when it names the host, else
// nullopt (anonymous). Error: as parse_creds and docker_config_credentials.
util::Result<std::optional<Credentials>> find_credentials(const std::optional<std::string>& creds,
                                                          std::string_view host);

} // namespace kload::registry
