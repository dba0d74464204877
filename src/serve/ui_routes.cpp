#include "serve/ui_routes.h"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <fstream>

#include "serve/context.h"
#include "serve/openai_routes.h"
#include "serve/web_assets.h"
#include "state/replica.h"
#include "ui/json.h"
#include "util/json_depth.h"
#include "util/log.h"
#include "util/time.h"

namespace llamactl::serve {

using ojson = nlohmann::ordered_json;

const char* const kUiHeaders =
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cache-Control: no-cache\r\n";

namespace {

template <class T>
ojson opt(const std::optional<T>& v) {
  return v ? ojson(*v) : ojson(nullptr);
}

ojson samples_json(const std::vector<GpuSample>& samples) {
  ojson out = ojson::array();
  for (const auto& s : samples) {
    ojson gpus = ojson::array();
    for (const auto& g : s.gpus)
      gpus.push_back({{"index", g.index},
                      {"used_mib", opt(g.used_mib)},
                      {"total_mib", opt(g.total_mib)},
                      {"util_pct", opt(g.util_pct)}});
    out.push_back({{"t_ms", s.t_ms}, {"gpus", std::move(gpus)}});
  }
  return out;
}

/// What the handler gathers: the latest monitor reading classified with the
/// state file (no nvidia-smi run of its own), the router's view, the history.
Result<UiInputs> gather(ServeContext& ctx, int64_t samples_after_ms) {
  UiInputs in;
  auto view = ctx.router.runtime().collect_with(ctx.gpus.read());
  if (!view) return view.error();
  in.view = std::move(*view);
  in.instances = ctx.router.models();
  in.statuses = ctx.router.statuses();
  in.config = ctx.router.config();
  in.samples = ctx.history.since(samples_after_ms);
  in.span_ms = ctx.history.span_ms();
  in.now_ms = now_ms();
  if (const int64_t at = ctx.reading_at_ms.load(); at > 0) in.reading_at_ms = at;
  in.streaming = ctx.streaming.load();
  return in;
}

/// The document as text; `last_sample_ms` advanced to its newest sample.
std::string state_text(ServeContext& ctx, int64_t& last_sample_ms, std::string& error) {
  auto in = gather(ctx, last_sample_ms);
  if (!in) {
    error = in.error().message;
    return {};
  }
  if (!in->samples.empty()) last_sample_ms = in->samples.back().t_ms;
  return dump_utf8(ui_document(*in));
}

}  // namespace

ojson ui_document(const UiInputs& in) {
  ojson doc;
  doc["version"] = LLAMACTL_VERSION;
  doc["now_ms"] = in.now_ms;
  doc["reading_at_ms"] = opt(in.reading_at_ms);
  doc["streaming"] = in.streaming;
  ojson status = ui::status_json(in.view);
  // serve's own figures for each instance it routes to.
  for (auto& inst : status["instances"]) {
    int in_flight = 0, queued = 0;
    for (const auto& info : in.instances)
      if (info.name == inst["model"].get<std::string>() && info.pid == inst["pid"].get<int64_t>()) {
        in_flight = info.in_flight;
        queued = info.queued;
      }
    inst["in_flight"] = in_flight;
    inst["queued"] = queued;
  }
  doc["status"] = std::move(status);
  ojson models = ojson::array();
  for (const auto& [name, st] : in.statuses) {
    const auto* mc = in.config ? in.config->find_model(name) : nullptr;
    ojson names = ojson::array();
    int in_flight = 0, queued = 0;
    for (const auto& info : in.instances) {
      if (info.model != name) continue;
      if (info.state != "stopped") names.push_back(info.name);
      in_flight += info.in_flight;
      queued += info.queued;
    }
    models.push_back({{"name", name},
                      {"aliases", mc ? ojson(mc->aliases) : ojson::array()},
                      {"gpu", mc && mc->gpu ? ojson(*mc->gpu) : ojson(nullptr)},
                      {"configured", mc != nullptr},
                      {"status", st.value},
                      {"failed", st.failed},
                      {"instances", std::move(names)},
                      {"in_flight", in_flight},
                      {"queued", queued}});
  }
  doc["models"] = std::move(models);
  doc["history"] = {{"interval_ms", 1000}, {"span_ms", in.span_ms}, {"samples", samples_json(in.samples)}};
  return doc;
}

std::string last_lines(std::string_view text, size_t n) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  size_t start = text.size();
  for (size_t seen = 0; start > 0; --start)
    if (text[start - 1] == '\n' && ++seen == n) break;
  std::string out(text.substr(start));
  if (!out.empty()) out += '\n';
  return out;
}

namespace {

constexpr size_t kLogTailBytes = 64 * 1024;
constexpr size_t kLogTailLines = 200;

/// {"model","log","tail"} of the instance `name`; the status and message otherwise.
std::string log_json(ServeContext& ctx, const std::string& name, int& status, std::string& error) {
  std::vector<std::string> notes;
  auto& rt = ctx.router.runtime();
  auto st = rt.reconcile_state(notes);
  if (!st) {
    status = 500;
    error = st.error().message;
    return {};
  }
  const bool known = std::any_of(st->instances.begin(), st->instances.end(),
                                 [&](const state::Instance& i) { return i.model == name; });
  if (!known) {
    status = 404;
    error = "no instance '" + name.substr(0, 200) + "' in the state (running or dead)";
    return {};
  }
  // Where llamactl writes it, not where a record says it is: a state file is input too.
  const std::string path = rt.state_dir().log_path(name);
  std::ifstream in(path, std::ios::binary);
  std::string text;
  if (in) {
    in.seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(std::max<std::streamoff>(0, in.tellg()));
    const size_t from = size > kLogTailBytes ? size - kLogTailBytes : 0;
    in.seekg(static_cast<std::streamoff>(from));
    text.resize(size - from);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
    if (from > 0)  // the first line is cut: start at the next one
      if (const auto nl = text.find('\n'); nl != std::string::npos) text.erase(0, nl + 1);
  }
  return dump_utf8(ojson{{"model", name}, {"log", path}, {"tail", last_lines(text, kLogTailLines)}});
}

}  // namespace

awaitable<void> ui_log(Exchange& ex) {
  constexpr std::string_view kPrefix = "/ui/api/log/";
  const std::string name = percent_decoded(ex.req.path.substr(kPrefix.size()));
  int status = 200;
  std::string error;
  const std::string body = log_json(ex.ctx, name, status, error);
  if (body.empty()) co_return co_await ex.fail(status, error);
  co_await ex.reply(200, kJsonType, body, "Cache-Control: no-store\r\n");
}

awaitable<void> ui_page(Exchange& ex) {
  std::string_view name = ex.req.path;
  name.remove_prefix(std::min<size_t>(name.size(), 3));  // "/ui"
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const WebAsset* asset = find_web_asset(name);
  if (!asset) {
    const std::string message = web_assets().empty()
                                    ? "404 page not found: this llamactl was built without web/ (the page)"
                                    : "404 page not found: no file '" + std::string(name.substr(0, 100)) + "' in /ui";
    co_return co_await ex.reply(404, kTextType, message, kUiHeaders);
  }
  co_await ex.reply(200, web_content_type(asset->name), asset->body, kUiHeaders);
}

awaitable<void> ui_state(Exchange& ex) {
  std::string error;
  int64_t all = 0;
  const std::string body = state_text(ex.ctx, all, error);
  if (body.empty()) co_return co_await ex.fail(500, error);
  co_await ex.reply(200, kJsonType, body, "Cache-Control: no-store\r\n");
}

awaitable<void> ui_events(Exchange& ex) {
  // A look this often for a new reading; a comment line every 15 s when
  // nothing changed (proxies keep the stream; a vanished client is found).
  constexpr auto kLook = std::chrono::milliseconds(250);
  constexpr auto kHeartbeat = std::chrono::seconds(15);
  ServeContext& ctx = ex.ctx;
  Router& router = ctx.router;
  EventWait wait(ex);
  if (!co_await ex.start_chunks(200, "text/event-stream", "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"))
    co_return;
  uint64_t cursor = 0;
  router.statuses(&cursor);
  uint64_t seen_readings = ~uint64_t{0};
  int64_t last_sample_ms = 0;
  auto last_write = Clock::now();
  for (;;) {
    const uint64_t readings = ctx.readings.load();
    const StatusFeed feed = router.events_since(cursor);
    if (feed.closed || wait.client_gone()) break;
    if (readings != seen_readings || !feed.events.empty() || feed.missed) {
      seen_readings = readings;
      std::string error;
      const std::string doc = state_text(ctx, last_sample_ms, error);
      if (doc.empty()) {
        log::warn("the web page's state: {}", error);
      } else {
        if (!co_await ex.chunk("event: state\ndata: " + doc + "\n\n")) break;
        last_write = Clock::now();
      }
    } else if (Clock::now() - last_write >= kHeartbeat) {
      if (!co_await ex.chunk(": keep-alive\n\n")) break;
      last_write = Clock::now();
    }
    co_await wait.wait(kLook);
  }
  co_await ex.end_stream(wait.client_gone());
}

}  // namespace llamactl::serve
