#include "serve/options.h"

#include <algorithm>
#include <cctype>

#include "util/duration.h"
#include "util/strings.h"

namespace llamactl::serve {
namespace {

bool is_ip_literal(const std::string& h) {
  if (h.empty()) return false;
  const bool v4 = h.find_first_not_of("0123456789.") == std::string::npos && std::count(h.begin(), h.end(), '.') == 3;
  const bool v6 =
      h.find(':') != std::string::npos && h.find_first_not_of("0123456789abcdefABCDEF:.") == std::string::npos;
  return v4 || v6;
}

Result<int> parse_port(const std::string& text, const std::string& what) {
  const auto p = parse_int(text);
  if (!p || *p < 0 || *p > 65535) return make_error(ErrorKind::usage, what + ": bad port '" + text + "'");
  return static_cast<int>(*p);
}

// "host:port", "[v6]:port", ":port", "host", "[v6]" -> host and optional port.
Result<std::pair<std::string, std::optional<std::string>>> split_host_port(const std::string& s,
                                                                           const std::string& what) {
  if (!s.empty() && s[0] == '[') {
    const auto close = s.find(']');
    if (close == std::string::npos) return make_error(ErrorKind::usage, what + ": missing ']' in '" + s + "'");
    const std::string host = s.substr(1, close - 1);
    if (close + 1 == s.size()) return std::pair{host, std::optional<std::string>()};
    if (s[close + 1] != ':') return make_error(ErrorKind::usage, what + ": unexpected text after ']' in '" + s + "'");
    return std::pair{host, std::optional<std::string>(s.substr(close + 2))};
  }
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return std::pair{s, std::optional<std::string>()};
  if (s.find(':') != colon) return std::pair{s, std::optional<std::string>()};  // bare IPv6
  return std::pair{s.substr(0, colon), std::optional<std::string>(s.substr(colon + 1))};
}

Result<std::string> check_host(std::string host, const std::string& what) {
  if (host == "localhost") return std::string("127.0.0.1");
  if (host.empty()) return std::string("0.0.0.0");
  if (!is_ip_literal(host))
    return make_error(ErrorKind::usage, what + ": '" + host +
                                            "' is not an IP address (llamactl does not look up host names; "
                                            "use 127.0.0.1, 0.0.0.0, ::1 or an address of this machine)");
  return host;
}

// "host:port" (or a form split_host_port takes) -> an endpoint; `port`
// when the text names none.
Result<Endpoint> endpoint_of(const std::string& text, int port, const std::string& what) {
  auto hp = split_host_port(text, what);
  if (!hp) return hp.error();
  auto host = check_host(hp->first, what);
  if (!host) return host.error();
  Endpoint e;
  e.host = *host;
  e.port = port;
  if (hp->second) {
    auto p = parse_port(*hp->second, what);
    if (!p) return p.error();
    e.port = *p;
  }
  return e;
}

}  // namespace

std::string Endpoint::text() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Endpoint> parse_listen(const std::string& text) {
  return endpoint_of(std::string(trim(text)), Endpoint{}.port, "--listen");
}

Result<Endpoint> parse_ollama_host(const std::string& value) {
  const std::string what = "OLLAMA_HOST";
  std::string s(trim(value));
  int default_port = 11434;
  if (const auto sep = s.find("://"); sep != std::string::npos) {
    const std::string scheme = to_lower(s.substr(0, sep));
    if (scheme == "http")
      default_port = 80;
    else if (scheme == "https")
      default_port = 443;
    s = s.substr(sep + 3);
  }
  s = s.substr(0, s.find('/'));
  if (s.empty()) return Endpoint{"127.0.0.1", default_port};
  return endpoint_of(s, default_port, what);
}

Result<int64_t> keep_alive_for(const config::Config& cfg, const std::string& model,
                               const std::optional<std::string>& flag, const std::optional<std::string>& env) {
  int64_t ms = cfg.keep_alive_ms;
  if (const auto* m = cfg.find_model(model); m && m->keep_alive_ms) ms = *m->keep_alive_ms;
  for (const auto& [text, source] : {std::pair{flag, "--keep-alive"}, std::pair{env, "OLLAMA_KEEP_ALIVE"}}) {
    if (!text || trim(*text).empty()) continue;
    auto v = parse_duration_ms(trim(*text));
    if (!v) return make_error(ErrorKind::usage, std::string(source) + ": " + v.error().message);
    ms = *v;
  }
  return ms;
}

std::vector<std::string> allowed_origins(const std::optional<std::string>& env) {
  std::vector<std::string> out;
  if (env)
    for (const auto& o : split(*env, ','))
      if (!trim(o).empty()) out.emplace_back(trim(o));
  for (const char* host : {"localhost", "127.0.0.1", "0.0.0.0"})
    for (const char* scheme : {"http", "https"}) {
      out.push_back(std::string(scheme) + "://" + host);
      out.push_back(std::string(scheme) + "://" + host + ":*");
    }
  for (const char* o : {"app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"})
    out.emplace_back(o);
  return out;
}

bool origin_allowed(const std::vector<std::string>& patterns, const std::string& origin) {
  for (const auto& p : patterns) {
    if (p == "*" || p == origin) return true;
    // One '*' wildcard, as gin-contrib/cors allows.
    const auto star = p.find('*');
    if (star == std::string::npos) continue;
    const std::string pre = p.substr(0, star), post = p.substr(star + 1);
    if (origin.size() < pre.size() + post.size() || !starts_with(origin, pre) || !ends_with(origin, post)) continue;
    // A port wildcard ("http://localhost:*") stands for a port: digits only.
    if (ends_with(pre, ":") && post.empty()) {
      const std::string_view port = std::string_view(origin).substr(pre.size());
      if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos) continue;
    }
    return true;
  }
  return false;
}

namespace {

/// "a.b.c.d" with four decimal parts of at most 255; its first part.
std::optional<int> ipv4_first(std::string_view s) {
  int parts = 0, first = -1;
  while (parts < 4) {
    size_t n = 0;
    int v = 0;
    while (n < s.size() && n < 4 && std::isdigit(static_cast<unsigned char>(s[n]))) v = v * 10 + (s[n++] - '0');
    if (n == 0 || n > 3 || v > 255) return std::nullopt;
    if (parts == 0) first = v;
    ++parts;
    s.remove_prefix(n);
    if (parts == 4) break;
    if (s.empty() || s[0] != '.') return std::nullopt;
    s.remove_prefix(1);
  }
  if (!s.empty()) return std::nullopt;
  return first;
}

bool is_ipv6_literal(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdefABCDEF:.") == std::string_view::npos &&
         s.find(':') != std::string_view::npos;
}

bool is_ipv6_loopback(std::string_view s) {
  return s == "::1" || s == "0:0:0:0:0:0:0:1" || s == "0000:0000:0000:0000:0000:0000:0000:0001";
}

bool name_matches(std::string_view host, const std::string& pattern) {
  const std::string p = to_lower(trim(pattern));
  if (starts_with(p, "*.")) return host.size() > p.size() - 1 && ends_with(host, std::string_view(p).substr(1));
  return host == p;
}

}  // namespace

bool is_loopback(const Endpoint& listen) {
  const auto v4 = ipv4_first(listen.host);
  return (v4 && *v4 == 127) || is_ipv6_loopback(listen.host) || to_lower(listen.host) == "localhost";
}

bool host_allowed(std::string_view header, bool loopback_listener, const std::vector<std::string>& allowed) {
  std::string_view h = trim(header);
  if (h.empty()) return true;
  // The name without its port: "[v6]:port", "[v6]", "name:port", "name".
  std::string_view name;
  std::string_view port;
  bool bracketed = false;
  if (h[0] == '[') {
    const size_t close = h.find(']');
    if (close == std::string_view::npos) return false;
    name = h.substr(1, close - 1);
    bracketed = true;
    const std::string_view rest = h.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return false;
      port = rest.substr(1);
    }
    if (!is_ipv6_literal(name)) return false;
  } else {
    const size_t colon = h.find(':');
    name = h.substr(0, colon);
    if (colon != std::string_view::npos) port = h.substr(colon + 1);
  }
  if (!port.empty() && (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos))
    return false;
  if (port.empty() && h.back() == ':') return false;
  std::string host = to_lower(name);
  if (!bracketed && !host.empty() && host.back() == '.') host.pop_back();  // "localhost." is localhost
  if (host.empty() || host[0] == '.') return false;
  // An IP literal cannot be rebound (rebinding needs a name that the attacker
  // re-points); loopback names are ours.
  const auto v4 = bracketed ? std::nullopt : ipv4_first(host);
  if (v4 || bracketed || host == "localhost" || ends_with(host, ".localhost")) return true;
  for (const auto& p : allowed)
    if (name_matches(host, p)) return true;
  return !loopback_listener && allowed.empty();
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer is looked at; the length difference is folded in.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

bool api_key_ok(std::string_view authorization, std::string_view x_api_key, std::string_view key) {
  if (key.empty()) return true;
  bool ok = false;
  const std::string_view auth = trim(authorization);
  if (auth.size() > 7 && iequals(auth.substr(0, 7), "Bearer ")) ok = constant_time_equal(trim(auth.substr(7)), key);
  // Both are always compared: which header carried it does not show in the time taken.
  const bool x_ok = !trim(x_api_key).empty() && constant_time_equal(trim(x_api_key), key);
  return ok || x_ok;
}

Result<uint64_t> parse_size(const std::string& text) {
  const std::string t = to_lower(trim(text));
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  const auto n = parse_int(t.substr(0, i));
  if (i == 0 || !n || *n < 0) return make_error(ErrorKind::usage, "bad size '" + text + "' (e.g. 64MiB, 1GiB, 500000)");
  const std::string unit(trim(std::string_view(t).substr(i)));
  uint64_t mult = 0;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kb")
    mult = 1000;
  else if (unit == "kib")
    mult = 1024;
  else if (unit == "m" || unit == "mb")
    mult = 1000 * 1000;
  else if (unit == "mib")
    mult = 1024 * 1024;
  else if (unit == "g" || unit == "gb")
    mult = 1000ULL * 1000 * 1000;
  else if (unit == "gib")
    mult = 1024ULL * 1024 * 1024;
  else
    return make_error(ErrorKind::usage, "bad size unit in '" + text + "' (B, KB, KiB, MB, MiB, GB, GiB)");
  return static_cast<uint64_t>(*n) * mult;
}

}  // namespace llamactl::serve
