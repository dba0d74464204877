#pragma once
// The web page (GET /ui): its files, compiled in, and the two data routes it
// reads: GET /ui/api/state (one document: `status --json` from the GPU
// monitor's latest reading, serve's models with their queues, and the memory
// history) and GET /ui/api/events (the same document pushed as server-sent
// events whenever a reading or a model's status changes). Its actions go
// through POST /models/load and /models/unload (router_api.h), so the same
// Runtime, checks and refusals as the CLI.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/runtime.h"
#include "serve/exchange.h"
#include "serve/gpu_history.h"

namespace llamactl::serve {

awaitable<void> ui_page(Exchange& ex);
awaitable<void> ui_state(Exchange& ex);
awaitable<void> ui_events(Exchange& ex);

/// What the page's document is made of (collected by the handler).
struct UiInputs {
  runtime::View view;
  std::vector<ModelInfo> instances;                           // the router's, for in flight and queued
  std::vector<std::pair<std::string, ModelStatus>> statuses;  // the router's, per model
  std::shared_ptr<const config::Config> config;
  std::vector<GpuSample> samples;
  int64_t span_ms = 0;
  int64_t now_ms = 0;
  std::optional<int64_t> reading_at_ms;
  bool streaming = false;
};

/// The page's document (GET /ui/api/state, each /ui/api/events event). Pure.
nlohmann::ordered_json ui_document(const UiInputs& in);

/// The security headers of the page's files: a strict Content-Security-Policy
/// (no inline script, nothing from another origin), no framing, no sniffing.
extern const char* const kUiHeaders;

}  // namespace llamactl::serve
