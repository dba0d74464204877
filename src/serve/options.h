#pragma once
// serve's settings that come from flags, the environment and the config:
// pure functions, unit-tested.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "util/result.h"

namespace llamactl::serve {

struct Endpoint {
  std::string host = "127.0.0.1";  // an IP literal (no name lookups in a static binary)
  int port = 11434;
  std::string text() const;  // "127.0.0.1:11434", "[::1]:11434"
};

/// `--listen HOST:PORT` (also "[::1]:PORT", ":PORT", "HOST", "localhost:PORT").
/// Error kind usage naming the value.
Result<Endpoint> parse_listen(const std::string& text);

/// OLLAMA_HOST as Ollama reads it (envconfig Host()): "0.0.0.0",
/// "0.0.0.0:11434", ":8080", "http://127.0.0.1:8080", "https://h" (port
/// 443), "http://h" (port 80), a trailing path is ignored; an empty host
/// means every interface (as in Ollama). Error kind usage for a host that
/// is not an IP literal or localhost, or a bad port.
Result<Endpoint> parse_ollama_host(const std::string& value);

/// Keep-alive of instances serve loads; last wins: default 5m, config
/// `keep_alive`, the model's `keep_alive`, `--keep-alive`, OLLAMA_KEEP_ALIVE.
/// Negative = never. Error kind usage naming the source of a bad value.
Result<int64_t> keep_alive_for(const config::Config& cfg, const std::string& model,
                               const std::optional<std::string>& flag, const std::optional<std::string>& env);

/// OLLAMA_ORIGINS plus Ollama's defaults (localhost, 127.0.0.1, 0.0.0.0 with
/// any port, app://, file://, tauri://, vscode-webview://, vscode-file://).
std::vector<std::string> allowed_origins(const std::optional<std::string>& env);
/// Whether `origin` matches one of the patterns ("http://localhost:*", "app://*").
bool origin_allowed(const std::vector<std::string>& patterns, const std::string& origin);

/// Whether serve listens on loopback only (127.0.0.0/8 or ::1).
bool is_loopback(const Endpoint& listen);

/// Whether a request's Host header may reach serve (DNS rebinding: a page on
/// evil.example whose name now points at 127.0.0.1 sends `Host: evil.example`).
/// Always allowed, with or without a port: IP literals (127.0.0.1, [::1],
/// 0.0.0.0: a literal cannot be rebound), localhost and *.localhost, and the
/// names in `allowed` ("name" or "*.domain", case-insensitive; --allow-host).
/// On a connection that came in over loopback that is all. On one from
/// another machine (--listen 0.0.0.0:PORT), with no `allowed` names any Host
/// passes. No Host at all (HTTP/1.0) passes: a browser always sends one.
bool host_allowed(std::string_view host, bool loopback_connection, const std::vector<std::string>& allowed);

/// The API key check, in constant time for a key of the same length:
/// `Authorization: Bearer KEY` or (Anthropic's clients) `x-api-key: KEY`.
bool api_key_ok(std::string_view authorization, std::string_view x_api_key, std::string_view key);
/// a == b, taking the same time whatever bytes differ.
bool constant_time_equal(std::string_view a, std::string_view b);

/// "64MiB", "1GiB", "500KB", "1048576" -> bytes. Error kind usage.
Result<uint64_t> parse_size(const std::string& text);

}  // namespace llamactl::serve
