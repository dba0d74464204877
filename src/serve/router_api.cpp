#include "serve/router_api.h"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include <atomic>

#include "serve/body_model.h"
#include "ui/json.h"
#include "util/duration.h"
#include "util/json_depth.h"
#include "util/log.h"
#include "util/time.h"

namespace llamactl::serve {
namespace {

using nlohmann::json;

json status_object(const ModelStatus& s) {
  json o{{"value", s.value}, {"args", s.args}};
  if (s.failed) {
    o["failed"] = true;
    if (s.exit_code) o["exit_code"] = *s.exit_code;
  }
  // A model with replicas: each instance, where it runs.
  if (!s.instances.empty()) {
    json list = json::array();
    for (const auto& i : s.instances)
      list.push_back({{"name", i.name}, {"port", i.port}, {"pid", i.pid}, {"gpus", i.gpus}});
    o["instances"] = std::move(list);
  }
  return o;
}

// Built outside the coroutines: GCC 12 rejects string literals in braced
// JSON initialisers inside a coroutine ("array used as initializer").
std::string models_json(ServeContext& ctx) {
  const auto snapshot = ctx.router.config();
  const auto& cfg = *snapshot;
  const int64_t created = now_ms() / 1000;
  json data = json::array();
  for (const auto& [name, status] : ctx.router.statuses()) {
    json o{{"id", name}, {"object", "model"}, {"owned_by", "llamactl"}, {"created", created}};
    if (const auto* m = cfg.find_model(name)) {
      o["path"] = m->path;
      o["aliases"] = m->aliases;
    }
    o["status"] = status_object(status);
    data.push_back(std::move(o));
  }
  return dump_utf8(json{{"data", std::move(data)}, {"object", "list"}});
}

std::string success_json() {
  return dump_utf8(json{{"success", true}});
}

/// The configured (or running) model the body names; the error to answer otherwise.
struct Named {
  std::string model;
  int status = 0;  // set: answer this with `error`
  std::string error;
};

Named named_model(ServeContext& ctx, const std::string& body_text) {
  const BodyModel body = body_model(body_text);
  if (body.too_deep) return {{}, 400, std::string(kJsonTooDeepMessage)};
  if (!body.is_object) return {{}, 400, "the request body is not a JSON object"};
  if (body.model.empty()) return {{}, 400, "model name is missing from the request"};
  const auto model = ctx.router.resolve(body.model);
  if (!model) return {{}, 404, "model '" + body.model + "' is not found"};
  return {*model, 0, {}};
}

std::string status_value(Router& router, const std::string& model) {
  for (const auto& [name, s] : router.statuses())
    if (name == model) return s.value;
  return "unloaded";
}

}  // namespace

std::string status_json(const ModelStatus& s) {
  return dump_utf8(status_object(s));
}

std::string status_event(const std::string& model, const ModelStatus& s) {
  json data = status_object(s);
  data["status"] = s.value;
  data.erase("value");
  return "data: " + dump_utf8(json{{"model", model}, {"event", "model_status"}, {"data", std::move(data)}}) + "\n\n";
}

awaitable<void> router_models(Exchange& ex) {
  const std::string body = models_json(ex.ctx);
  co_await ex.json(body);
}

namespace {

int status_of(ErrorKind k) {
  switch (k) {
    case ErrorKind::model_not_found:
      return 404;
    case ErrorKind::usage:
    case ErrorKind::config:
      return 400;
    case ErrorKind::gpu_unavailable:
    case ErrorKind::insufficient_memory:
    case ErrorKind::port_in_use:
      return 409;  // the GPUs as they are now refuse it: the same refusal as `llamactl load`
    case ErrorKind::timeout:
      return 504;
    default:
      return 500;
  }
}

std::string loaded_json(const runtime::LoadOutcome& out) {
  return dump_utf8(json{{"success", true}, {"instance", ui::load_json(out)}});
}

/// `llamactl load MODEL --gpu G --keep-alive D` for the web page: the
/// Runtime's load on a router job thread (it blocks until the model is
/// healthy), then a sync so the router routes to it at once.
awaitable<void> load_on_runtime(Exchange& ex, runtime::LoadRequest req) {
  struct Shared {
    std::atomic<bool> done{false};
    std::optional<Result<runtime::LoadOutcome>> result;
  };
  auto shared = std::make_shared<Shared>();
  Router& router = ex.ctx.router;
  const auto exec = co_await asio::this_coro::executor;
  auto timer = std::make_shared<Timer>(exec);
  log::info("load {} on GPU {} (web page)", req.model, req.gpu.value_or("auto"));
  if (!router.run_job([&rt = router.runtime(), req, shared, timer, exec] {
        shared->result = rt.load(req);
        shared->done = true;
        asio::post(exec, [timer] { timer->cancel(); });
      }))
    co_return co_await ex.fail(503, "llamactl serve is shutting down");
  // Looked at every 100 ms as well: a wake posted before the wait began is not lost.
  while (!shared->done) {
    timer->expires_after(std::chrono::milliseconds(100));
    error_code ec;
    co_await timer->async_wait(ec_token(ec));
  }
  auto& r = *shared->result;
  if (!r) co_return co_await ex.fail(status_of(r.error().kind), r.error().message);
  router.refresh();  // routable now, and the page's next reading shows it
  const std::string body = loaded_json(*r);
  co_await ex.json(body);
}

}  // namespace

std::optional<std::string> load_extras(std::string_view body, runtime::LoadRequest& req) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  if (const auto g = j.find("gpu"); g != j.end() && !g->is_null()) {
    if (g->is_number_integer())
      req.gpu = std::to_string(g->get<int64_t>());
    else if (g->is_string() && !g->get<std::string>().empty())
      req.gpu = g->get<std::string>();
    else
      return "gpu must be a GPU index or a string such as \"0\", \"0,1\", \"all\", \"auto\" or \"cpu\"";
  }
  if (const auto k = j.find("keep_alive"); k != j.end() && !k->is_null()) {
    if (k->is_number()) {
      const double s = k->get<double>();
      req.keep_alive_ms = s < 0 ? -1 : static_cast<int64_t>(s * 1000);
    } else if (k->is_string()) {
      auto ms = parse_duration_ms(k->get<std::string>());
      if (!ms) return "keep_alive: " + ms.error().message;
      req.keep_alive_ms = *ms;
    } else {
      return std::string("keep_alive must be a duration (\"10m\", \"1h\", -1 for never) or seconds");
    }
  }
  return std::nullopt;
}

awaitable<void> router_load(Exchange& ex) {
  const Named n = named_model(ex.ctx, ex.req.text());
  if (n.status != 0) co_return co_await ex.fail(n.status, n.error);
  // llamactl's fields (the web page): a chosen GPU or a keep-alive is the CLI's load.
  runtime::LoadRequest req;
  req.model = n.model;
  req.loaded_by = "web";
  if (const auto why = load_extras(ex.req.text(), req)) co_return co_await ex.fail(400, *why);
  if (req.gpu || req.keep_alive_ms) co_return co_await load_on_runtime(ex, std::move(req));
  if (status_value(ex.ctx.router, n.model) == "loaded") co_return co_await ex.fail(400, "model is already loaded");
  {
    Lease lease;  // admitted, then handed back at once: nothing is sent upstream
    if (!co_await ex.acquire(n.model, Launch{}, nullptr, lease)) co_return;
  }
  const std::string body = success_json();
  co_await ex.json(body);
}

awaitable<void> router_unload(Exchange& ex) {
  const Named n = named_model(ex.ctx, ex.req.text());
  if (n.status != 0) co_return co_await ex.fail(n.status, n.error);
  Router& router = ex.ctx.router;
  if (status_value(router, n.model) == "unloaded") {
    router.refresh();  // `llamactl load` may have started it since the last sync
    if (status_value(router, n.model) == "unloaded") co_return co_await ex.fail(400, "model is not loaded");
  }
  // A loading model is unloaded once loaded; a busy one once its requests end.
  Timer timer(co_await asio::this_coro::executor);
  const auto until = Clock::now() + ex.ctx.opts.wait_timeout;
  bool asked = false;
  for (;;) {
    const std::string value = status_value(router, n.model);
    if (value == "unloaded") break;
    if (value == "loaded" && !asked) asked = router.unload_now(n.model);
    if (Clock::now() >= until) {
      const std::string message = "timed out waiting for '" + n.model + "' to unload";
      co_return co_await ex.fail(504, message);
    }
    timer.expires_after(std::chrono::milliseconds(50));
    error_code ec;
    co_await timer.async_wait(ec_token(ec));
  }
  const std::string body = success_json();
  co_await ex.json(body);
}

awaitable<void> router_events(Exchange& ex) {
  // A comment line this often: proxies keep the stream open, and a client
  // that went away without a FIN is found by the failed write.
  constexpr auto kHeartbeat = std::chrono::seconds(15);
  Router& router = ex.ctx.router;
  EventWait wait(ex);
  uint64_t cursor = 0;
  std::string out;
  for (const auto& [name, s] : router.statuses(&cursor)) out += status_event(name, s);  // where things stand
  if (!co_await ex.start_chunks(200, "text/event-stream", "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"))
    co_return;
  if (!co_await ex.chunk(out)) co_return;
  for (;;) {
    StatusFeed feed = router.events_since(cursor);
    out.clear();
    if (feed.missed)  // it fell behind: where things stand now instead
      for (const auto& [name, s] : router.statuses(&cursor)) out += status_event(name, s);
    else
      for (const auto& e : feed.events) out += status_event(e.model, e.status);
    if (feed.closed || wait.client_gone()) break;
    if (!out.empty() && !co_await ex.chunk(out)) break;
    const bool quiet = co_await wait.wait(kHeartbeat);
    if (quiet && !wait.client_gone() && !co_await ex.chunk(": keep-alive\n\n")) break;
  }
  co_await ex.end_stream(wait.client_gone());
}

}  // namespace llamactl::serve
