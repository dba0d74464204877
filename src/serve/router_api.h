#pragma once
// llama-server's router API, answered from serve's own state: GET /models
// (every configured model and its load status), POST /models/load and
// /models/unload (through the router, so the same Runtime, checks and
// refusals as `llamactl load`/`unload`), and GET /models/sse (a
// model_status event for every change, whoever made it). The web page
// and clients written for llama-server's router mode use these.

#include <optional>
#include <string>
#include <string_view>

#include "runtime/runtime.h"
#include "serve/exchange.h"

namespace llamactl::serve {

awaitable<void> router_models(Exchange& ex);
/// Waits for the load to finish (or fail, with the refusal), unlike
/// llama-server, which answers at once: the answer says what happened.
awaitable<void> router_load(Exchange& ex);
/// Waits until the instance has stopped; requests in flight finish first.
awaitable<void> router_unload(Exchange& ex);
awaitable<void> router_events(Exchange& ex);

/// llamactl's own fields of a POST /models/load body, into `req`: "gpu"
/// (an index, "0,1", "all", "auto", "cpu") and "keep_alive" (a duration or
/// seconds; negative: never). The message of what is wrong; nullopt when
/// fine. Pure.
std::optional<std::string> load_extras(std::string_view body, runtime::LoadRequest& req);

/// One status as the JSON that GET /models puts under "status" (pure; tested).
std::string status_json(const ModelStatus& s);
/// One SSE event for a status change: "data: {...}\n\n".
std::string status_event(const std::string& model, const ModelStatus& s);

}  // namespace llamactl::serve
