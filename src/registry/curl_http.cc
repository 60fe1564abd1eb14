#include "kload/registry/http.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace kload::registry {

using util::ErrorKind;
using util::Result;

namespace {

constexpr std::size_t max_body_bytes = 4u << 20;

struct Transfer {
  HttpResponse response;
  std::string_view upload;  // what is left to send
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  const size_t room = max_body_bytes - std::min(max_body_bytes, t->response.body.size());
  t->response.body.append(data, std::min(n, room));
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    t->response.headers.clear();  // a new response (after 100 Continue or a redirect)
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    return n;
  }
  std::string name(line.substr(0, colon));
  for (auto& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  auto value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
    value.remove_prefix(1);
  }
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  t->response.headers[name] = std::string(value);
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = std::min(size * count, t->upload.size());
  std::copy_n(t->upload.data(), n, buffer);
  t->upload.remove_prefix(n);
  return n;
}

// "HOST[:PORT]" of an absolute URL.
std::string host_of(const std::string& url) {
  const auto start = url.find("://");
  const auto from = start == std::string::npos ? 0 : start + 3;
  return url.substr(from, url.find('/', from) - from);
}

// libcurl's failure in one line, with what to do next when the failure is TLS trust.
std::string failure(CURLcode rc, const char* why, const std::string& url) {
  const std::string what = why[0] != '\0' ? std::string(why) : std::string(curl_easy_strerror(rc));
  if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
    return fmt::format("its TLS certificate is not trusted ({}): give the CA that signed it with --ca-file FILE "
                       "or as /etc/docker/certs.d/{}/ca.crt, or use --plain-http for a registry without TLS",
                       what, host_of(url));
  }
  if (rc == CURLE_SSL_CONNECT_ERROR) {
    return fmt::format("the TLS handshake failed ({}); if the registry speaks plain HTTP, use --plain-http", what);
  }
  return what;
}

class CurlClient final : public HttpClient {
public:
  explicit CurlClient(std::filesystem::path ca_file) : ca_file_(std::move(ca_file)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Result<HttpResponse> send(const HttpRequest& request) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) {
      return util::fail(ErrorKind::io, "cannot start libcurl");
    }
    CURL* h = curl.get();
    Transfer t;
    t.upload = request.body;
    curl_slist* list = nullptr;
    for (const auto& header : request.headers) {
      list = curl_slist_append(list, header.c_str());
    }
    // No "Expect: 100-continue" pause before each body.
    list = curl_slist_append(list, "Expect:");
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(list, curl_slist_free_all);
    curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!ca_file_.empty()) {
      curl_easy_setopt(h, CURLOPT_CAINFO, ca_file_.c_str());
    }
    if (!request.user.empty()) {
      curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(h, CURLOPT_USERNAME, request.user.c_str());
      curl_easy_setopt(h, CURLOPT_PASSWORD, request.password.c_str());
    }
    if (request.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
      // Every other method sends the body (maybe empty) through the read callback,
      // so that a blob chunk is never copied into libcurl.
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    char why[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    if (const CURLcode rc = curl_easy_perform(h); rc != CURLE_OK) {
      return util::fail(ErrorKind::node, failure(rc, why, request.url));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &t.response.status);
    return std::move(t.response);
  }

private:
  std::filesystem::path ca_file_;
};

} // namespace

std::unique_ptr<HttpClient> make_curl_client(const std::filesystem::path& ca_file) {
  return std::make_unique<CurlClient>(ca_file);
}

std::filesystem::path ca_file_for(const std::string& host, const std::filesystem::path& given,
                                  const std::filesystem::path& certs_dir) {
  if (!given.empty()) {
    return given;
  }
  std::error_code ec;
  const auto docker = certs_dir / host / "ca.crt";
  return std::filesystem::is_regular_file(docker, ec) ? docker : std::filesystem::path();
}

} // namespace kload::registry
