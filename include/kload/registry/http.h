#pragma once
// The one door to the network: HTTP requests sent through libcurl, behind a small
// interface so that what speaks the registry protocol never touches a socket itself.

#include "kload/util/error.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kload::registry {

struct HttpRequest {
  std::string method;  // HEAD, GET, POST, PUT, PATCH
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string_view body;             // sent as is (PUT, PATCH, POST); must outlive send()
  std::string user;                  // Basic credentials for this request, when not empty
  std::string password;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; the last of repeated ones
  std::string body;                            // at most 4 MiB kept

  // The header `name` (lower case), or "" when absent.
  [[nodiscard]] std::string header(const std::string& name) const;
};

// The answer in one line for an error message: "HTTP 404 (MANIFEST_UNKNOWN: manifest
// unknown)", the status and the registry's own errors[0] code and message when its
// body carries them (distribution's error document), else "HTTP 405".
std::string describe_response(const HttpResponse& response);

class HttpClient {
public:
  virtual ~HttpClient() = default;
  // Sends one request and returns the registry's answer, whatever its status. Safe to
  // call from several threads at once. Error (node): the connection or TLS failed, or
  // the transfer stalled; the message is libcurl's, without the URL (the caller names it).
  virtual util::Result<HttpResponse> send(const HttpRequest& request) = 0;
};

// libcurl, verifying TLS peers with the certificates of `ca_file` (PEM) when given,
// else the system's; a connection that does not open within 30 s or moves fewer than
// 1 KiB/s for 60 s fails. A peer whose certificate is not trusted, or that does not
// speak TLS, fails with a message saying how to trust it (--ca-file, or Docker's
// /etc/docker/certs.d/HOST/ca.crt) or to use --plain-http.
std::unique_ptr<HttpClient> make_curl_client(const std::filesystem::path& ca_file = {});

// The CA file to trust for `host` (HOST[:PORT]): `given` when not empty, else Docker's
// /etc/docker/certs.d/HOST/ca.crt when it exists (under `certs_dir`), else empty (the
// system's certificates). Never fails.
std::filesystem::path ca_file_for(const std::string& host, const std::filesystem::path& given,
                                  const std::filesystem::path& certs_dir = "/etc/docker/certs.d");

} // namespace kload::registry
