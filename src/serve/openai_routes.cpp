#include "serve/openai_routes.h"

#include <array>
#include <memory>

#include <nlohmann/json.hpp>

#include "serve/body_model.h"
#include "serve/http/heads.h"
#include "serve/ollama.h"
#include "util/json_depth.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::serve {
namespace {

using nlohmann::json;

/// What a relay sends the client: the upstream's head, rewritten, and its body.
struct RelayPlan {
  std::optional<uint64_t> length;
  Framing framing = Framing::length;
  bool sse = false;
  bool keep = true;  // the client's connection carries on afterwards
  std::string head;
};

/// `renamed`: the body's model is renamed (ModelRename), which changes its
/// length: the renamed whole body's, or none (chunks) for a body still to come.
RelayPlan plan_relay(const Exchange& ex, const UpstreamCall& call, bool renamed = false,
                     std::optional<uint64_t> renamed_length = std::nullopt) {
  RelayPlan p;
  p.sse = call.head().event_stream;
  p.length = call.length();
  p.framing = response_framing(p.length, call.done(), call.chunked(), ex.req.version);
  if (renamed && p.framing == Framing::length) {
    p.length = renamed_length;
    if (!renamed_length) p.framing = response_framing(std::nullopt, false, true, ex.req.version);
  }
  p.keep = ex.req.keep_alive && p.framing != Framing::close;
  p.head = relayed_response_head(call.head(), p.framing, p.length, p.sse, p.keep, ex.origin);
  return p;
}

/// Forwards the upstream body piece by piece as it arrives (a stream, or a
/// body larger than what came with the head), watching the client: one that
/// goes away closes the upstream connection, so llama-server cancels.
awaitable<void> stream_body(Exchange& ex, Lease& lease, const RelayPlan& plan, bool head_sent, ModelRename& rename) {
  auto& call = lease.call;
  auto& client = ex.client;
  bool client_gone = false;
  const auto watch = upstream_cancelling_watch(client.socket(), call.stream().socket(), client_gone);
  arm_watch(client.socket(), watch);

  // On the heap, not in the coroutine's frame: the fast path never needs it.
  constexpr size_t kPiece = 16384;
  const auto buf = std::make_unique<char[]>(kPiece);
  std::array<char, 24> size_line{};
  const bool chunked_out = plan.framing == Framing::chunked;
  bool upstream_broke = false;
  error_code ec;
  for (;;) {
    size_t n = 0;
    if (!call.done()) {
      n = co_await call.read(buf.get(), kPiece, ec);
      if (ec) {
        upstream_broke = !client_gone;
        break;
      }
      if (n == 0 && !call.done()) continue;
    }
    const bool last = call.done();
    std::string_view data(buf.get(), n);
    std::string renamed;
    if (rename.active()) {
      renamed = rename.feed(data);
      if (last) renamed += rename.finish();
      data = renamed;
    }
    const size_t len = data.size();
    // [header][chunk size][data][chunk end, last chunk]: one send.
    std::array<asio::const_buffer, 4> out{};
    if (!head_sent) out[0] = asio::buffer(plan.head);
    if (chunked_out && len > 0) out[1] = asio::buffer(size_line.data(), chunk_size_line(len, size_line.data()));
    out[2] = asio::buffer(data.data(), len);
    if (chunked_out) {
      static constexpr std::string_view kEnd = "\r\n", kLast = "0\r\n\r\n", kEndLast = "\r\n0\r\n\r\n";
      const std::string_view tail = len > 0 ? (last ? kEndLast : kEnd) : (last ? kLast : std::string_view{});
      out[3] = asio::buffer(tail.data(), tail.size());
    }
    if (asio::buffer_size(out) > 0) {
      client.expires_after(ex.ctx.opts.write_timeout);
      co_await write_all(client, out, ec);
      client.expires_never();  // next: waiting on llama-server, under its own deadline
      if (ec) {
        client_gone = true;
        break;
      }
      head_sent = true;
    }
    if (last) break;
  }
  watch->on_readable = nullptr;
  error_code ignored;
  client.socket().cancel(ignored);

  const std::string& model = lease.model;
  if (client_gone) {
    log::info("client of {} disconnected mid-response; closed the upstream connection", model);
    call.close();
    ex.gone(ex.status);
    co_return;
  }
  if (!upstream_broke) {
    call.done_with(ex.pool, lease.port);
    ex.keep = plan.keep;
    co_return;
  }
  ex.pool.drop(lease.port);
  ex.ctx.router.upstream_failed(model);
  if (!head_sent) {  // nothing was sent yet: the client gets a whole error response
    log::warn("upstream {} broke before its body: {}", model, ec.message());
    const std::string message = "llama-server for '" + model + "' failed mid-response: " + ec.message();
    co_await ex.fail(502, message);
    co_return;
  }
  log::warn("upstream {} broke mid-response: {}", model, ec.message());
  if (plan.sse && chunked_out) {
    // llama-server itself sends errors after the start this way.
    const std::string framed =
        ex.sse_error(502, "llama-server for '" + model + "' stopped mid-stream: " + ec.message());
    client.expires_after(ex.ctx.opts.write_timeout);
    co_await write_all(client, asio::buffer(framed), ignored);
    client.expires_never();
  }
  ex.keep = false;
}

/// Sends llama-server's response on to the client as it came (serve's Server
/// and CORS fields, the client's framing).
awaitable<void> forward(Exchange& ex, Lease& lease, ModelRename& rename) {
  auto& call = lease.call;
  if (ex.sse_started) {
    // The event-stream head went out while the request waited: the stream
    // goes on in chunks; a reply that is not a stream ends it as an error event.
    if (call.head().event_stream && call.status() == 200) {
      RelayPlan plan;
      plan.framing = Framing::chunked;
      plan.sse = true;
      plan.keep = ex.req.keep_alive;
      co_return co_await stream_body(ex, lease, plan, true, rename);
    }
    const int status = call.status();
    std::string text;
    if (const error_code ec = co_await call.collect(text)) {
      ex.pool.drop(lease.port);
      text = ec.message();
    } else {
      call.done_with(ex.pool, lease.port);
    }
    const auto j = json_too_deep(text) ? nlohmann::json() : nlohmann::json::parse(text, nullptr, false);
    std::string message = text;
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
      message = j["error"]["message"].get<std::string>();
    co_return co_await ex.fail(status == 200 ? 502 : status, message);
  }
  // The usual non-streaming reply came whole with its header; renamed, it
  // has a length of its own.
  std::optional<std::string_view> body;
  std::string renamed;
  if (!call.head().event_stream) body = call.whole_body();
  if (body && rename.active()) {
    renamed = rename.feed(*body);
    renamed += rename.finish();
    body = renamed;
  }
  const RelayPlan plan =
      plan_relay(ex, call, rename.active(), body ? std::optional<uint64_t>(body->size()) : std::nullopt);
  ex.status = call.status();
  error_code ec;
  // A stream's header goes out at once (the client learns it is streaming
  // while the prompt is processed). Any other response's header goes out with
  // its first body bytes: one send, one wake-up of the client, not two.
  if (plan.sse) {
    ex.client.expires_after(ex.ctx.opts.write_timeout);
    co_await write_all(ex.client, asio::buffer(plan.head), ec);
    ex.client.expires_never();
    if (ec) {
      call.close();
      ex.gone(ex.status);
      co_return;
    }
    co_await stream_body(ex, lease, plan, true, rename);
    co_return;
  }
  if (body) {
    // The usual non-streaming reply: the body came with the header. It goes
    // out from the read buffer with serve's header, in one send; no copy, no
    // parsing, no client watch (an epoll_ctl, and nothing left to wait for).
    const std::array<asio::const_buffer, 2> out{asio::buffer(plan.head), asio::buffer(body->data(), body->size())};
    ex.client.expires_after(ex.ctx.opts.write_timeout);
    co_await write_all(ex.client, out, ec);
    ex.client.expires_never();
    if (ec) {
      log::info("client of {} disconnected mid-response; closed the upstream connection", lease.model);
      call.close();
      ex.gone(ex.status);
      co_return;
    }
    call.done_with(ex.pool, lease.port);
    ex.keep = plan.keep;
    co_return;
  }
  co_await stream_body(ex, lease, plan, false, rename);
}

/// /v1/embeddings with `dimensions`, which llama-server ignores: its reply
/// collected, each vector cut and normalised again (Ollama's /v1/embeddings
/// does the same), then sent whole. An error reply goes on as it came.
awaitable<void> reply_cut_embeddings(Exchange& ex, Lease& lease, int64_t dimensions, ModelRename& rename) {
  if (lease.call.status() != 200) co_return co_await forward(ex, lease, rename);
  std::string text;
  if (const error_code ec = co_await lease.call.collect(text)) {
    ex.pool.drop(lease.port);
    ex.ctx.router.upstream_failed(lease.model);
    const std::string message = "llama-server for '" + lease.model + "' failed mid-response: " + ec.message();
    co_return co_await ex.fail(502, message);
  }
  lease.call.done_with(ex.pool, lease.port);
  std::string out;
  if (auto f = ollama::cut_openai_embeddings(text, dimensions, out)) co_return co_await ex.fail(f->status, f->message);
  out = rename.feed(out) + rename.finish();
  co_await ex.json(out);
}

/// The body-routed relay: the body's "model" picks the instance. With
/// `dimensions` (embeddings), the reply is rewritten rather than relayed.
awaitable<void> relay(Exchange& ex, Launch needs, std::optional<int64_t> dimensions = std::nullopt) {
  // Bodies parse as JSON whatever the Content-Type says (clients differ).
  const BodyModel body = body_model(ex.req.text());
  if (body.too_deep) co_return co_await ex.fail(400, kJsonTooDeepMessage);
  if (!body.is_object) co_return co_await ex.fail(400, "the request body is not a JSON object");
  if (body.model.empty()) co_return co_await ex.fail(400, "'model' is required");
  const auto model = ex.ctx.router.resolve(body.model);
  if (!model) {
    const std::string message = "model '" + body.model + "' not found";
    co_return co_await ex.fail(404, message);
  }
  const Request& req = ex.req;
  const UpstreamRequest up{[&req](int port) { return relay_head(req, port); }, req.text()};
  Lease lease;
  ex.may_stream_while_waiting = true;
  if (!co_await ex.acquire(*model, needs, &up, lease)) co_return;
  // Replies name the model as the request did (Ollama's OpenAI routes do),
  // not as llama-server's alias.
  ModelRename rename(*model, body.model);
  if (dimensions) co_return co_await reply_cut_embeddings(ex, lease, *dimensions, rename);
  co_await forward(ex, lease, rename);
}

/// `dimensions` of an embeddings body; an error message (400) when it is
/// invalid. Parsed only when the text mentions it: the relay stays
/// byte-for-byte, without a parse, for every other body.
std::string embedding_dimensions(const std::string& text, std::optional<int64_t>& dimensions) {
  if (text.find("\"dimensions\"") == std::string::npos) return {};
  const json body = parse_json_bounded<json>(text);
  if (body.is_discarded() || !body.is_object()) return {};  // relay() answers for it
  const auto f = ollama::openai_dimensions(body, dimensions);
  return f ? f->message : std::string();
}

// Built outside the coroutines: GCC 12 rejects string literals in braced
// JSON initialisers inside a coroutine ("array used as initializer").
/// `created`: the model file's mtime in seconds, as Ollama's /v1/models gives
/// it (stable from one listing to the next); now when the file cannot be read.
int64_t created_s(ServeContext& ctx, const std::string& model) {
  const auto cfg = ctx.router.config();
  const auto* mc = cfg->find_model(model);
  if (mc)
    if (auto card = ctx.card_of(*mc)) return (*card)->modified_ms / 1000;
  return now_ms() / 1000;
}

json model_object(const std::string& id, int64_t created) {
  return json{{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "llamactl"}};
}

/// OpenAI's list, with each model's load status as GET /models has it.
std::string models_json(ServeContext& ctx) {
  json data = json::array();
  for (const auto& [name, status] : ctx.router.statuses()) {
    json o = model_object(name, created_s(ctx, name));
    o["status"] = {{"value", status.value}};
    data.push_back(std::move(o));
  }
  return dump_utf8(json{{"object", "list"}, {"data", data}});
}

std::string retrieved_json(ServeContext& ctx, const std::string& requested, std::string& error) {
  const auto model = ctx.router.resolve(requested);
  if (!model || !ctx.router.config()->find_model(*model)) {
    error = "The model '" + requested + "' does not exist";
    return {};
  }
  return dump_utf8(model_object(requested, created_s(ctx, *model)));
}

std::string metrics_text(ServeContext& ctx) {
  MetricsSnapshot m = ctx.metrics.snapshot();
  ctx.router.fill(m);
  const auto probe = ctx.gpus.read();
  m.gpu_reading_ok = !probe.cpu_mode;
  m.gpus = probe.snapshot.gpus;
  return render(m);
}

}  // namespace

/// %XX escapes of a path segment decoded ("org%2Fmodel" -> "org/model").
std::string percent_decoded(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

awaitable<void> root_page(Exchange& ex) {
  co_await ex.reply(200, kTextType, "Ollama is running");
}

awaitable<void> health(Exchange& ex) {
  co_await ex.json(R"({"status":"ok"})");
}

awaitable<void> metrics_page(Exchange& ex) {
  const std::string text = metrics_text(ex.ctx);
  co_await ex.reply(200, "text/plain; version=0.0.4; charset=utf-8", text);
}

awaitable<void> list_models(Exchange& ex) {
  const std::string body = models_json(ex.ctx);
  co_await ex.json(body);
}

awaitable<void> retrieve_model(Exchange& ex) {
  constexpr std::string_view kPrefix = "/v1/models/";
  const std::string id = percent_decoded(ex.req.path.substr(kPrefix.size()));
  std::string error;
  const std::string body = retrieved_json(ex.ctx, id, error);
  if (body.empty()) co_return co_await ex.fail(404, error);
  co_await ex.json(body);
}

awaitable<void> relay_generation(Exchange& ex) {
  co_await relay(ex, Launch{});
}

awaitable<void> relay_embeddings(Exchange& ex) {
  std::optional<int64_t> dimensions;
  if (const std::string why = embedding_dimensions(ex.req.text(), dimensions); !why.empty())
    co_return co_await ex.fail(400, why);
  co_await relay(ex, Launch{true, 0, 0}, dimensions);
}

awaitable<void> relay_rerank(Exchange& ex) {
  co_await relay(ex, Launch{false, 0, 0, true});
}

}  // namespace llamactl::serve
