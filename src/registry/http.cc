#include "kload/registry/http.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kload::registry {

std::string HttpResponse::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string describe_response(const HttpResponse& r) {
  std::string out = fmt::format("HTTP {}", r.status);
  const auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return out;
  }
  const auto errors = doc.find("errors");
  if (errors == doc.end() || !errors->is_array() || errors->empty() || !(*errors)[0].is_object()) {
    return out;
  }
  const auto& e = (*errors)[0];
  const auto text = [&](const char* key) {
    const auto it = e.find(key);
    return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const auto code = text("code");
  const auto message = text("message");
  if (code.empty() && message.empty()) {
    return out;
  }
  return fmt::format("{} ({}{}{})", out, code, !code.empty() && !message.empty() ? ": " : "", message);
}

} // namespace kload::registry
