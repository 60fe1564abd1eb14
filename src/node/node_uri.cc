#include "kload/node/node_uri.h"

#include <filesystem>

#include <charconv>
#include <optional>

namespace kload::node {

namespace {

using util::ErrorKind;

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Container, host and user names: [A-Za-z0-9][A-Za-z0-9_.-]*. The leading character
// rules out option-looking names ("-oProxyCommand=...") before any quoting happens.
bool is_name(std::string_view s) {
  if (s.empty() || !is_alnum(s.front())) {
    return false;
  }
  for (char c : s) {
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

// The inside of "[...]": hex digits, ':' and '.' (for a v4-mapped tail), at least one
// ':'. Not a full RFC 4291 check; ssh rejects what slips through, and nothing here can
// reach a shell.
bool is_ipv6(std::string_view s) {
  if (s.empty() || s.find(':') == std::string_view::npos) {
    return false;
  }
  for (char c : s) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex && c != ':' && c != '.') {
      return false;
    }
  }
  return true;
}

bool is_snapshotter(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

bool is_namespace(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

// Socket paths are passed as one argv word and never through a shell, so only what
// would break a message or a URI is refused: control characters.
bool is_printable_path(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return false;
    }
  }
  return true;
}

// What is wrong with a containerd socket path (the target of containerd://, or an
// address= on the node), named `what` in the reason; nothing when it is usable.
std::optional<std::string> socket_path_problem(std::string_view path, const std::string& what) {
  if (!path.starts_with('/')) {
    return what + " must be an absolute path";
  }
  if (path.ends_with('/')) {
    return what + " names a directory";
  }
  if (!is_printable_path(path)) {
    return "control character in " + what;
  }
  return std::nullopt;
}

// The URI as it may appear in a one-line message: control characters shown as '?'.
std::string printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = '?';
    }
  }
  return out;
}

std::unexpected<util::Error> bad(std::string_view text, const std::string& why) {
  return util::fail(ErrorKind::usage, "bad node URI \"" + printable(text) + "\": " + why);
}

std::optional<int> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5) {
    return std::nullopt;
  }
  int port = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  if (ec != std::errc() || end != s.data() + s.size() || port < 1 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

// "[user@]host[:port]" with host a name, an IPv4 address or "[v6]".
util::Result<void> parse_ssh_authority(std::string_view text, std::string_view auth,
                                       NodeUri& uri) {
  if (const auto at = auth.find('@'); at != std::string_view::npos) {
    uri.user = std::string(auth.substr(0, at));
    if (!is_name(uri.user)) {
      return bad(text, "bad ssh user name");
    }
    auth.remove_prefix(at + 1);
  }
  std::string_view host;
  std::string_view port;
  if (auth.starts_with('[')) {
    const auto close = auth.find(']');
    if (close == std::string_view::npos) {
      return bad(text, "unterminated [IPv6] host");
    }
    host = auth.substr(1, close - 1);
    if (!is_ipv6(host)) {
      return bad(text, "bad IPv6 host");
    }
    const auto rest = auth.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':')) {
        return bad(text, "unexpected characters after ]");
      }
      port = rest.substr(1);
      if (port.empty()) {
        return bad(text, "empty port");
      }
    }
  } else {
    const auto colon = auth.find(':');
    host = auth.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = auth.substr(colon + 1);
      if (port.empty()) {
        return bad(text, "empty port");
      }
    }
    if (host.empty()) {
      return bad(text, "empty host");
    }
    if (!is_name(host)) {
      return bad(text, "bad host name");
    }
  }
  uri.target = std::string(host);
  if (!port.empty()) {
    const auto p = parse_port(port);
    if (!p) {
      return bad(text, "bad port \"" + printable(port) + "\" (1-65535)");
    }
    uri.port = *p;
  }
  return {};
}

util::Result<void> parse_query(std::string_view text, std::string_view query, NodeUri& uri) {
  bool seen_namespace = false;
  bool seen_snapshotter = false;
  bool seen_address = false;
  while (true) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) {
      return bad(text, "query parameter \"" + printable(param) + "\" is not NAME=VALUE");
    }
    const auto key = param.substr(0, eq);
    const auto value = param.substr(eq + 1);
    if (key == "namespace") {
      if (seen_namespace) {
        return bad(text, "namespace given twice");
      }
      if (!is_namespace(value)) {
        return bad(text, "bad namespace (want [A-Za-z0-9_.-]+)");
      }
      seen_namespace = true;
      uri.ns = std::string(value);
    } else if (key == "snapshotter") {
      if (seen_snapshotter) {
        return bad(text, "snapshotter given twice");
      }
      if (!is_snapshotter(value)) {
        return bad(text, "bad snapshotter (want [a-z0-9_-]+)");
      }
      seen_snapshotter = true;
      uri.snapshotter = std::string(value);
    } else if (key == "address") {
      // One socket per URI: for containerd:// it is the target already, and two
      // spellings of it could disagree.
      if (uri.kind == TransportKind::containerd_socket) {
        return bad(text, "address is for docker://, podman:// and ssh:// nodes (containerd:///SOCKET "
                         "names the socket itself)");
      }
      if (seen_address) {
        return bad(text, "address given twice");
      }
      if (const auto why = socket_path_problem(value, "address")) {
        return bad(text, *why);
      }
      seen_address = true;
      uri.address = std::string(value);
    } else {
      return bad(text, "unknown query parameter \"" + printable(key) + "\" (known: namespace, snapshotter, address)");
    }
    if (amp == std::string_view::npos) {
      return {};
    }
    query.remove_prefix(amp + 1);
  }
}

} // namespace

std::string NodeUri::display() const {
  if (kind != TransportKind::containerd_socket) {
    return target;
  }
  // A socket path is long and its file name says little ("sock", "containerd.sock"):
  // the directory holding it names the node better (/run/containerd, lab/node1).
  const std::filesystem::path p(target);
  const auto dir = p.parent_path().filename().string();
  return dir.empty() ? target : dir;
}

util::Result<NodeUri> parse_node_uri(std::string_view text) {
  NodeUri uri;
  uri.text = std::string(text);

  const auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    return bad(text, "expected containerd:///SOCKET, docker://CONTAINER, podman://CONTAINER or "
                     "ssh://[USER@]HOST[:PORT]");
  }
  const auto scheme = text.substr(0, sep);
  auto rest = text.substr(sep + 3);
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (query.empty()) {
      return bad(text, "empty query after '?'");
    }
  }

  if (scheme == "containerd") {
    uri.kind = TransportKind::containerd_socket;
    if (rest.empty()) {
      return bad(text, "empty socket path");
    }
    if (!rest.starts_with('/')) {
      return bad(text, "socket path must be absolute (containerd:///path/to/sock)");
    }
    if (const auto why = socket_path_problem(rest, "socket path")) {
      return bad(text, *why);
    }
    uri.target = std::string(rest);
  } else if (scheme == "docker" || scheme == "podman") {
    uri.kind = scheme == "docker" ? TransportKind::docker : TransportKind::podman;
    if (rest.empty()) {
      return bad(text, "empty container name");
    }
    if (!is_name(rest)) {
      return bad(text, "bad container name (want [A-Za-z0-9][A-Za-z0-9_.-]*)");
    }
    uri.target = std::string(rest);
  } else if (scheme == "ssh") {
    uri.kind = TransportKind::ssh;
    if (rest.empty()) {
      return bad(text, "empty host");
    }
    if (rest.find('/') != std::string_view::npos) {
      return bad(text, "unexpected path after the host");
    }
    if (auto r = parse_ssh_authority(text, rest, uri); !r) {
      return std::unexpected(r.error());
    }
  } else {
    return bad(text, "unknown scheme \"" + printable(scheme) +
                         "\" (known: containerd, docker, podman, ssh)");
  }

  if (!query.empty()) {
    if (auto r = parse_query(text, query, uri); !r) {
      return std::unexpected(r.error());
    }
  }
  return uri;
}

bool same_node(const NodeUri& a, const NodeUri& b) {
  return a.kind == b.kind && a.target == b.target && a.user == b.user && a.port == b.port && a.ns == b.ns &&
         a.snapshotter == b.snapshotter && a.address == b.address;
}

} // namespace kload::node
