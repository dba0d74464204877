#include "serve/web_assets.h"

#include "util/strings.h"

namespace llamactl::serve {

const WebAsset* find_web_asset(std::string_view name) {
  if (name.empty()) name = "index.html";
  for (const auto& a : web_assets())
    if (a.name == name) return &a;
  return nullptr;
}

std::string_view web_content_type(std::string_view name) {
  if (ends_with(name, ".html")) return "text/html; charset=utf-8";
  if (ends_with(name, ".js")) return "text/javascript; charset=utf-8";
  if (ends_with(name, ".css")) return "text/css; charset=utf-8";
  if (ends_with(name, ".svg")) return "image/svg+xml";
  if (ends_with(name, ".png")) return "image/png";
  if (ends_with(name, ".json")) return "application/json";
  return "application/octet-stream";
}

}  // namespace llamactl::serve
