#pragma once
// serve's routes: ONE table of {methods, path, auth, metrics label, error
// shape, handler}. Dispatch, the CORS preflight and the 401, 404 and 405
// answers all come from it; match() is pure and unit-tested.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "serve/exchange.h"

namespace llamactl::serve {

using Handler = awaitable<void> (*)(Exchange&);

/// Methods as a bit set; a GET route answers HEAD too.
enum MethodBits : uint8_t {
  kGet = 1U << 0U,
  kPost = 1U << 1U,
  kAnyMethod = 0xFF,
};

struct Route {
  uint8_t methods;         // MethodBits
  std::string_view path;   // exact, or a prefix when it ends in '/'... see prefix
  bool prefix;             // path is a prefix ("/api/blobs/")
  bool auth;               // needs the API key when serve has one
  std::string_view label;  // the route label of llamactl_requests_total
  ErrorShape shape;
  Handler handler;
};

/// The table, in match order.
std::span<const Route> routes();

struct RouteMatch {
  const Route* route = nullptr;  // set: the path and method matched
  bool path_known = false;       // the path matched with another method (405)
  std::string allow;             // then the methods it takes, for Allow
};

RouteMatch match(std::span<const Route> table, Method method, std::string_view path);

/// The shape of an error on a path no route has: each API's own (Anthropic's
/// under /v1/messages, OpenAI's under /v1/, text elsewhere, as Ollama's gin).
ErrorShape shape_of_path(std::string_view path);

/// Answers one request: Host and Origin checks, the preflight, auth, then
/// the route's handler. Returns whether the connection carries on.
/// `via_loopback`: the connection came in over loopback (a browser on this
/// machine may be behind it): the Host must be one of ours (DNS rebinding).
awaitable<bool> dispatch(ServeContext& ctx, Stream& client, const Request& req, UpstreamPool& pool, bool via_loopback);

}  // namespace llamactl::serve
