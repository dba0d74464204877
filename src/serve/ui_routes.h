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
/// GET /ui/api/log/<instance>: the last lines of an instance's log (a dead
/// one's too), read from the state dir's logs/ (never a path from the state
/// file), at most its last 64 KiB.
awaitable<void> ui_log(Exchange& ex);

/// The last `n` lines of `text` (an unterminated last line counts). Pure.
std::string last_lines(std::string_view text, size_t n);

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
