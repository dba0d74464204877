#include "serve/routes.h"

#include <array>

#include "serve/http/heads.h"
#include "serve/ollama_routes.h"
#include "serve/openai_routes.h"
#include "serve/options.h"
#include "serve/router_api.h"
#include "serve/ui_routes.h"
#include "util/log.h"
#include "util/strings.h"

namespace llamactl::serve {
namespace {

using enum ErrorShape;

// The table. Relayed routes take the body's "model"; the rest are answered
// by serve. Labels are the paths of llamactl_requests_total (a fixed set).
constexpr std::array kRoutes{
    Route{kGet, "/", false, false, "/", text, root_page},
    Route{kGet, "/health", false, false, "/health", openai, health},
    Route{kGet, "/metrics", false, true, "/metrics", openai, metrics_page},
    // The web page: its files load without a key, its data needs one (--api-key).
    Route{kGet, "/ui", false, false, "/ui", text, ui_page},
    Route{kGet, "/ui/", false, false, "/ui", text, ui_page},
    Route{kGet, "/ui/api/state", false, true, "/ui/api/state", openai, ui_state},
    Route{kGet, "/ui/api/events", false, true, "/ui/api/events", openai, ui_events},
    Route{kGet, "/ui/api/log/", true, true, "/ui/api/log", openai, ui_log},
    Route{kGet, "/ui/", true, false, "/ui", text, ui_page},
    // OpenAI
    Route{kGet, "/v1/models", false, true, "/v1/models", openai, list_models},
    Route{kGet, "/v1/models/", true, true, "/v1/models/{id}", openai, retrieve_model},
    Route{kPost, "/v1/chat/completions", false, true, "/v1/chat/completions", openai, relay_generation},
    Route{kPost, "/v1/chat/completions/input_tokens", false, true, "/v1/chat/completions/input_tokens", openai,
          relay_generation},
    Route{kPost, "/v1/completions", false, true, "/v1/completions", openai, relay_generation},
    Route{kPost, "/v1/embeddings", false, true, "/v1/embeddings", openai, relay_embeddings},
    Route{kPost, "/v1/responses", false, true, "/v1/responses", openai, relay_generation},
    Route{kPost, "/responses", false, true, "/v1/responses", openai, relay_generation},
    Route{kPost, "/v1/responses/input_tokens", false, true, "/v1/responses/input_tokens", openai, relay_generation},
    Route{kPost, "/v1/rerank", false, true, "/v1/rerank", openai, relay_rerank},
    Route{kPost, "/v1/reranking", false, true, "/v1/rerank", openai, relay_rerank},
    Route{kPost, "/rerank", false, true, "/v1/rerank", openai, relay_rerank},
    Route{kPost, "/reranking", false, true, "/v1/rerank", openai, relay_rerank},
    // llama-server's router API
    Route{kGet, "/models", false, true, "/models", openai, router_models},
    Route{kPost, "/models/load", false, true, "/models/load", openai, router_load},
    Route{kPost, "/models/unload", false, true, "/models/unload", openai, router_unload},
    Route{kGet, "/models/sse", false, true, "/models/sse", openai, router_events},
    // Anthropic
    Route{kPost, "/v1/messages", false, true, "/v1/messages", anthropic, relay_generation},
    Route{kPost, "/v1/messages/count_tokens", false, true, "/v1/messages/count_tokens", anthropic, relay_generation},
    // Ollama
    Route{kPost, "/api/chat", false, true, "/api/chat", ollama, ollama_chat},
    Route{kPost, "/api/generate", false, true, "/api/generate", ollama, ollama_generate},
    Route{kPost, "/api/embed", false, true, "/api/embed", ollama, ollama_embed},
    Route{kPost, "/api/embeddings", false, true, "/api/embeddings", ollama, ollama_embeddings},
    Route{kGet, "/api/tags", false, true, "/api/tags", ollama, ollama_tags},
    Route{kGet, "/api/ps", false, true, "/api/ps", ollama, ollama_ps},
    Route{kPost, "/api/show", false, true, "/api/show", ollama, ollama_show},
    Route{kGet, "/api/version", false, true, "/api/version", ollama, ollama_version},
    Route{kPost, "/api/pull", false, true, "/api/pull", ollama, ollama_pull},
    Route{kAnyMethod, "/api/push", false, true, "/api/push", ollama, ollama_unsupported},
    Route{kAnyMethod, "/api/create", false, true, "/api/create", ollama, ollama_unsupported},
    Route{kAnyMethod, "/api/copy", false, true, "/api/copy", ollama, ollama_unsupported},
    Route{kAnyMethod, "/api/delete", false, true, "/api/delete", ollama, ollama_unsupported},
    Route{kAnyMethod, "/api/blobs/", true, true, "/api/blobs", ollama, ollama_unsupported},
};

uint8_t bit_of(Method m) {
  switch (m) {
    case Method::get:
    case Method::head:  // a GET route answers HEAD
      return kGet;
    case Method::post:
      return kPost;
    default:
      return 1U << 7U;  // only kAnyMethod takes it
  }
}

std::string allow_of(uint8_t methods) {
  if (methods == kAnyMethod) return "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
  std::string out;
  if (methods & kGet) out += "GET, HEAD";
  if (methods & kPost) out += out.empty() ? "POST" : ", POST";
  return out + ", OPTIONS";
}

bool path_matches(const Route& r, std::string_view path) {
  return r.prefix ? path.size() > r.path.size() && starts_with(path, r.path) : path == r.path;
}

std::string forbidden_host_message(std::string_view host) {
  return "403 Forbidden: Host '" + std::string(host.substr(0, 100)) +
         "' is not a name of this serve (it answers loopback names; add others with --allow-host NAME)";
}

bool authorized(const ServeContext& ctx, const Request& req) {
  return ctx.opts.api_key.empty() || api_key_ok(req.authorization, req.x_api_key, ctx.opts.api_key);
}

/// The answer when no route takes the request: 405 for a known path, 404.
awaitable<void> no_route(Exchange& ex, const RouteMatch& m) {
  if (!m.path_known) {
    const std::string_view message = ex.shape == ErrorShape::text ? "404 page not found" : "";
    if (!message.empty()) co_return co_await ex.reply(404, kTextType, message);
    const std::string text = "no route " + std::string(ex.req.method_name) + " " + std::string(ex.req.path);
    co_return co_await ex.fail(404, text);
  }
  if (ex.shape == ErrorShape::text || ex.shape == ErrorShape::ollama)
    co_return co_await ex.reply(405, kTextType, "405 method not allowed");
  const std::string text = std::string(ex.req.method_name) + " is not allowed on " + std::string(ex.req.path) +
                           " (it takes " + m.allow + ")";
  co_await ex.fail(405, text);
}

awaitable<void> preflight(Exchange& ex) {
  const std::string head = preflight_head(ex.origin, ex.req.keep_alive);
  error_code ec;
  ex.client.expires_after(ex.ctx.opts.write_timeout);
  co_await write_all(ex.client, asio::buffer(head), ec);
  ex.client.expires_never();
  ex.status = 204;
  ex.keep = !ec && ex.req.keep_alive;
}

awaitable<void> answer(Exchange& ex, const RouteMatch& m, bool via_loopback) {
  const Request& req = ex.req;
  if (!host_allowed(req.host, via_loopback, ex.ctx.opts.allowed_hosts)) {
    // DNS rebinding: a page whose name now resolves to this machine.
    ex.origin.clear();
    co_return co_await ex.reply(403, kTextType, forbidden_host_message(req.host));
  }
  if (!req.origin.empty() && ex.origin.empty())
    // A page on another site: refused on every method, as gin-contrib/cors
    // does for Ollama, so a form post or a no-preflight fetch cannot drive serve.
    co_return co_await ex.reply(403, kTextType, "403 Forbidden: Origin not allowed (add it to OLLAMA_ORIGINS)");
  if (req.method == Method::options) {
    // CORS preflight: only for the origins Ollama allows (OLLAMA_ORIGINS).
    if (ex.origin.empty())
      co_return co_await ex.reply(403, kTextType, "403 Forbidden: a CORS preflight needs an allowed Origin");
    co_return co_await preflight(ex);
  }
  const bool needs_key = m.route ? m.route->auth : true;
  if (needs_key && !authorized(ex.ctx, req)) co_return co_await ex.fail(401, "invalid or missing API key");
  if (!m.route) co_return co_await no_route(ex, m);
  co_await m.route->handler(ex);
}

}  // namespace

std::span<const Route> routes() {
  return kRoutes;
}

RouteMatch match(std::span<const Route> table, Method method, std::string_view path) {
  RouteMatch m;
  uint8_t methods = 0;
  for (const Route& r : table) {
    if (!path_matches(r, path)) continue;
    if (r.methods & bit_of(method)) {
      m.route = &r;
      return m;
    }
    methods |= r.methods;
  }
  if (methods != 0) {
    m.path_known = true;
    m.allow = allow_of(methods);
  }
  return m;
}

ErrorShape shape_of_path(std::string_view path) {
  if (path == "/v1/messages" || starts_with(path, "/v1/messages/")) return ErrorShape::anthropic;
  if (starts_with(path, "/v1/")) return ErrorShape::openai;
  return ErrorShape::text;
}

awaitable<bool> dispatch(ServeContext& ctx, Stream& client, const Request& req, UpstreamPool& pool, bool via_loopback) {
  const auto t0 = Clock::now();
  std::string origin;
  if (!req.origin.empty()) {
    std::string o(req.origin);
    // The page serve itself serves (same origin; its Host passes the Host check in answer()).
    const bool same = o == "http://" + std::string(req.host) || o == "https://" + std::string(req.host);
    if (same || origin_allowed(ctx.opts.origins, o)) origin = std::move(o);
  }
  Exchange ex(ctx, client, req, pool, std::move(origin));
  const RouteMatch m = match(routes(), req.method, req.path);
  ex.shape = m.route ? m.route->shape : shape_of_path(req.path);
  co_await answer(ex, m, via_loopback);
  const std::string_view label = m.route ? m.route->label : std::string_view("other");
  ctx.metrics.request(label, ex.status);
  log::info("{} {} {} {:.1f} ms", req.method_name, req.target, ex.status,
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  co_return ex.keep;
}

}  // namespace llamactl::serve
