// Heads written by hand: Beast's serializer walks a header through layers of
// buffer views, a tenth of serve's CPU per proxied request. Beast still
// parses everything.

#include "serve/http/heads.h"

#include <cstdio>
#include <cstring>

#include "serve/http/beast.h"
#include "util/strings.h"

namespace llamactl::serve {
namespace {

constexpr std::string_view kServer = "llamactl/" LLAMACTL_VERSION;

std::string& add(std::string& h, std::string_view v) {
  return h.append(v.data(), v.size());
}
std::string_view view(beast::string_view v) {
  return {v.data(), v.size()};
}

/// "NAME: VALUE\r\n".
void add_field(std::string& h, std::string_view name, std::string_view value) {
  add(add(h, name).append(": ", 2), value).append("\r\n", 2);
}

void add_status_line(std::string& h, int status, std::string_view reason) {
  if (reason.empty()) reason = view(http::obsolete_reason(static_cast<http::status>(status)));
  add(h.append("HTTP/1.1 ", 9).append(std::to_string(status)).append(" ", 1), reason).append("\r\n", 2);
}

/// CORS for an allowed origin: serve's policy on every response, as Server is.
void add_cors(std::string& h, std::string_view origin) {
  if (!origin.empty()) {
    add_field(h, "Access-Control-Allow-Origin", origin);
    add_field(h, "Vary", "Origin");
  }
}

void add_framing(std::string& h, Framing framing, uint64_t length, bool keep_alive) {
  if (framing == Framing::length) add_field(h, "Content-Length", std::to_string(length));
  if (framing == Framing::chunked) add_field(h, "Transfer-Encoding", "chunked");
  if (!keep_alive) add_field(h, "Connection", "close");
  h.append("\r\n", 2);
}

}  // namespace

bool hop_by_hop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_authenticate:
    case http::field::proxy_authorization:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::content_length:
    case http::field::host:
    case http::field::expect:
      return true;
    default:
      return false;
  }
}

Framing response_framing(const std::optional<uint64_t>& length, bool done_at_header, bool upstream_chunked,
                         unsigned client_version) {
  if (length) return Framing::length;
  // Done at its header without a length: a reply that has no body (204, 304).
  if (done_at_header && !upstream_chunked) return Framing::none;
  return client_version >= 11 ? Framing::chunked : Framing::close;
}

std::string response_head(int status, std::string_view content_type, Framing framing, uint64_t length, bool keep_alive,
                          std::string_view origin, std::string_view extra) {
  std::string h;
  h.reserve(192 + extra.size());
  add_status_line(h, status, {});
  add_field(h, "Server", kServer);
  if (!content_type.empty()) add_field(h, "Content-Type", content_type);
  add_cors(h, origin);
  add(h, extra);
  add_framing(h, framing, length, keep_alive);
  return h;
}

std::string relayed_response_head(const UpstreamHead& up, Framing framing, const std::optional<uint64_t>& length,
                                  bool sse, bool keep_alive, std::string_view origin) {
  std::string h;
  h.reserve(256 + up.fields.size());
  add_status_line(h, up.status, up.reason);
  h.append(up.fields);
  if (origin.empty()) h.append(up.vary);  // else replaced by serve's
  if (!sse) h.append(up.accel);
  add_field(h, "Server", kServer);
  add_cors(h, origin);
  if (sse) add_field(h, "X-Accel-Buffering", "no");
  add_framing(h, framing, length.value_or(0), keep_alive);
  return h;
}

std::string preflight_head(std::string_view origin, bool keep_alive) {
  // What a browser may send: the headers of the OpenAI, Anthropic and Ollama clients.
  static constexpr std::string_view kAllow =
      "Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS\r\n"
      "Access-Control-Allow-Headers: Authorization, Content-Type, User-Agent, Accept, X-Requested-With, "
      "OpenAI-Beta, x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, "
      "x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-runtime, "
      "x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout, x-stainless-helper-method\r\n"
      "Access-Control-Max-Age: 43200\r\n";
  return response_head(204, {}, Framing::none, 0, keep_alive, origin, kAllow);
}

std::string relay_head(const Request& req, int port) {
  const auto& msg = req.native->msg;
  std::string h;
  h.reserve(512);
  add(add(add(h, view(msg.method_string())).append(" ", 1), view(msg.target())), " HTTP/1.1\r\n");
  for (const auto& f : msg)
    if (!hop_by_hop(f.name()) && f.name() != http::field::authorization && f.name() != http::field::origin)
      add_field(h, view(f.name_string()), view(f.value()));
  add_field(h, "Host", "127.0.0.1:" + std::to_string(port));
  add_field(h, "Content-Length", std::to_string(msg.body().size()));
  h.append("\r\n", 2);
  return h;
}

std::string upstream_post_head(std::string_view target, int port, uint64_t length, std::string_view accept) {
  std::string h;
  h.reserve(160);
  add(add(h, "POST "), target).append(" HTTP/1.1\r\n");
  add_field(h, "Host", "127.0.0.1:" + std::to_string(port));
  add_field(h, "Content-Type", "application/json");
  if (!accept.empty()) add_field(h, "Accept", accept);
  add_field(h, "Content-Length", std::to_string(length));
  h.append("\r\n", 2);
  return h;
}

size_t chunk_size_line(size_t n, char* out) {
  const int len = std::snprintf(out, 20, "%zx\r\n", n);
  return len > 0 ? static_cast<size_t>(len) : 0;
}

void UpstreamParser::on_field_impl(http::field name, beast::string_view name_string, beast::string_view value,
                                   error_code& /*ec*/) {
  if (is_header_done()) return;  // a chunked body's trailer: not passed on
  switch (name) {
    case http::field::content_type:
      if (!seen_type_) {  // the first, as fields[] gives
        constexpr std::string_view kSse = "text/event-stream";
        head.event_stream = value.size() >= kSse.size() && iequals(std::string_view(value.data(), kSse.size()), kSse);
        seen_type_ = true;
      }
      break;
    case http::field::server:
    // CORS is serve's policy (OLLAMA_ORIGINS), not the upstream's.
    case http::field::access_control_allow_origin:
    case http::field::access_control_allow_methods:
    case http::field::access_control_allow_headers:
    case http::field::access_control_allow_credentials:
      return;
    case http::field::vary:
      add_field(head.vary, view(name_string), view(value));
      return;
    case http::field::unknown:
      if (beast::iequals(name_string, "X-Accel-Buffering")) {
        add_field(head.accel, view(name_string), view(value));
        return;
      }
      break;
    default:
      if (hop_by_hop(name)) return;
  }
  add_field(head.fields, view(name_string), view(value));
}

size_t UpstreamParser::on_body_impl(beast::string_view body, error_code& ec) {
  if (body_size == 0) {
    ec = http::error::need_buffer;
    return 0;
  }
  const size_t n = std::min(body_size, body.size());
  std::memcpy(body_data, body.data(), n);
  body_data += n;
  body_size -= n;
  if (n < body.size()) ec = http::error::need_buffer;
  return n;
}

}  // namespace llamactl::serve
