#include "serve/exchange.h"

#include <array>
#include <atomic>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include "serve/http/heads.h"
#include "util/json_depth.h"
#include "util/log.h"

namespace llamactl::serve {
namespace {

std::string openai_type(int status) {
  switch (status) {
    case 400:
    case 413:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 503:
      return "unavailable_error";
    default:
      return "server_error";
  }
}

/// Anthropic's error types (docs.anthropic.com, "Errors").
std::string anthropic_type(int status) {
  switch (status) {
    case 400:
    case 405:
    case 431:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      return "api_error";
  }
}

/// Whether a request body asks for a stream ("stream": true at the top).
bool body_asks_to_stream(std::string_view text) {
  if (text.find("\"stream\"") == std::string_view::npos || json_too_deep(text)) return false;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return false;
  const auto it = j.find("stream");
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

std::string error_body(ErrorShape shape, int status, std::string_view message) {
  using nlohmann::json;
  std::string m(message);
  switch (shape) {
    case ErrorShape::openai:
      return dump_utf8(
          json{{"error", {{"message", m}, {"type", openai_type(status)}, {"param", nullptr}, {"code", status}}}});
    case ErrorShape::anthropic:
      return dump_utf8(json{{"type", "error"}, {"error", {{"type", anthropic_type(status)}, {"message", m}}}});
    case ErrorShape::ollama:
      return dump_utf8(json{{"error", m}});
    case ErrorShape::text:
      return m;
  }
  return m;
}

awaitable<void> Exchange::reply(int code, std::string_view type, std::string_view body, std::string_view extra) {
  status = code;
  const bool k = req.keep_alive && code != 413;
  const std::string head = response_head(code, type, Framing::length, body.size(), k, origin, extra);
  error_code ec;
  client.expires_after(ctx.opts.write_timeout);
  if (req.method == Method::head) {
    co_await write_all(client, asio::buffer(head), ec);
  } else {
    const std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(body.data(), body.size())};
    co_await write_all(client, out, ec);
  }
  client.expires_never();
  keep = k && !ec;
}

std::string Exchange::sse_error(int code, std::string_view message) const {
  const std::string event = "event: error\ndata: " + error_body(shape, code, message) + "\n\n";
  std::array<char, 24> size{};
  const size_t n = chunk_size_line(event.size(), size.data());
  return std::string(size.data(), n) + event + "\r\n0\r\n\r\n";
}

awaitable<void> Exchange::fail(int code, std::string_view message, std::string_view extra) {
  if (sse_started) {
    const std::string framed = sse_error(code, message);
    error_code ec;
    client.expires_after(ctx.opts.write_timeout);
    co_await write_all(client, asio::buffer(framed), ec);
    client.expires_never();
    status = code;
    keep = keep && req.keep_alive && !ec;
    co_return;
  }
  const std::string body = error_body(shape, code, message);
  co_await reply(code, shape == ErrorShape::text ? kTextType : kJsonType, body, extra);
}

awaitable<bool> Exchange::start_chunks(int code, std::string_view type, std::string_view extra) {
  status = code;
  const std::string head = response_head(code, type, Framing::chunked, 0, req.keep_alive, origin, extra);
  error_code ec;
  client.expires_after(ctx.opts.write_timeout);
  co_await write_all(client, asio::buffer(head), ec);
  client.expires_never();  // next: waiting on llama-server
  if (ec) gone(code);
  co_return !ec;
}

awaitable<bool> Exchange::chunk(std::string_view data) {
  if (data.empty()) co_return true;  // an empty chunk would end the body
  std::array<char, 24> size{};
  const size_t n = chunk_size_line(data.size(), size.data());
  const std::array<asio::const_buffer, 3> out{asio::buffer(size.data(), n), asio::buffer(data.data(), data.size()),
                                              asio::buffer("\r\n", 2)};
  error_code ec;
  client.expires_after(ctx.opts.write_timeout);
  co_await write_all(client, out, ec);
  client.expires_never();
  if (ec) gone(status);
  co_return !ec;
}

awaitable<bool> Exchange::end_chunks() {
  error_code ec;
  client.expires_after(ctx.opts.write_timeout);
  co_await write_all(client, asio::buffer("0\r\n\r\n", 5), ec);
  client.expires_never();
  if (ec) gone(status);
  keep = keep && req.keep_alive && !ec;
  co_return !ec;
}

awaitable<bool> Exchange::acquire(const std::string& model, Launch needs, const UpstreamRequest* up, Lease& lease) {
  for (int attempt = 0;; ++attempt) {
    const auto t0 = Clock::now();
    // Most requests find their model ready: no coroutine frame for the wait.
    Ticket t{Ticket::Kind::ready, 0, 0, 0, {}};
    if (const auto ready = ctx.router.admit_ready(model, needs))
      t.port = *ready;
    else
      t = co_await wait_for(model, needs);  // not in a ?: (GCC 12 miscompiles co_await there)
    if (t.kind == Ticket::Kind::pending) {  // the client went away while waiting
      gone();
      co_return false;
    }
    if (t.kind == Ticket::Kind::failed) {
      const std::string extra =
          t.retry_after_s > 0 ? "Retry-After: " + std::to_string(t.retry_after_s) + "\r\n" : std::string();
      co_await fail(t.status, t.error, extra);
      co_return false;
    }
    lease.hold(ctx.router, model, t.port);
    ctx.metrics.queue_wait(model, std::chrono::duration<double>(lease.admitted_at - t0).count());
    if (!up) co_return true;
    const std::string head = up->head(t.port);
    const error_code ec = co_await open_upstream(pool, t.port, head, up->body, lease.call);
    if (!ec) co_return true;
    log::warn("upstream {} (port {}): {}", model, t.port, ec.message());
    ctx.router.upstream_failed(model);
    pool.drop(t.port);
    lease.release();
    const bool refused = ec == asio::error::connection_refused;
    // Nothing answered on its port: the instance died or was unloaded behind
    // our back. The router has reconciled; ask once more (a fresh load).
    if (refused && attempt == 0) continue;
    const std::string message = refused ? "llama-server for '" + model + "' refused the connection, also after a reload"
                                        : "llama-server for '" + model + "' failed: " + ec.message();
    co_await fail(502, message);
    co_return false;
  }
}

awaitable<bool> Exchange::waiting_comment(const std::string& model, Clock::duration waited) {
  if (!sse_started) {
    if (!may_stream_while_waiting || req.version < 11 || !body_asks_to_stream(req.text())) co_return true;
    if (!co_await start_chunks(200, "text/event-stream")) co_return false;
    sse_started = true;
  }
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(waited).count();
  const std::string line = ": " + ctx.router.waiting_for(model) + ", " + std::to_string(seconds) + " s\n\n";
  co_return co_await chunk(line);
}

awaitable<Ticket> Exchange::wait_for(const std::string& model, Launch needs) {
  auto& router = ctx.router;
  if (const auto port = router.admit_ready(model, needs)) co_return Ticket{Ticket::Kind::ready, *port, 0, 0, {}};
  auto exec = co_await asio::this_coro::executor;
  auto timer = std::make_shared<Timer>(exec);
  const auto t0 = Clock::now();
  const auto deadline = t0 + ctx.opts.wait_timeout;
  // A streaming client hears from serve every 2 s after the first 2 (read timeouts of clients and proxies).
  constexpr auto kTick = std::chrono::seconds(2);
  const auto next_wake = [&] { return may_stream_while_waiting ? std::min(deadline, Clock::now() + kTick) : deadline; };
  timer->expires_at(next_wake());
  // The wake marks, too: one that comes while a comment line is written (no
  // timer waits then) ends the next wait at once instead of a tick later.
  auto woken = std::make_shared<std::atomic<bool>>(false);
  Ticket t = router.admit(model, needs, [timer, exec, woken] {
    woken->store(true);
    asio::post(exec, [timer] { timer->cancel(); });
  });
  if (t.kind != Ticket::Kind::pending) co_return t;
  ClientGoneWatch watch(client.socket(), timer);
  for (;;) {
    error_code ec;
    co_await timer->async_wait(ec_token(ec));
    Ticket r = router.result(t.waiter);
    if (r.kind != Ticket::Kind::pending) {
      watch.stop();
      if (watch.gone() && r.kind == Ticket::Kind::ready) {
        router.finish(model, r.port);  // granted but never used
        co_return Ticket{Ticket::Kind::pending, 0, t.waiter, 0, {}};
      }
      co_return r;
    }
    const bool timed_out = !ec && Clock::now() >= deadline;
    if (!watch.gone() && !ec && !timed_out) {  // a tick: tell a streaming client, then wait on
      if (Clock::now() - t0 >= kTick) {
        const bool alive = co_await waiting_comment(model, Clock::now() - t0);
        if (!alive) watch.set_gone();
      }
      if (!watch.gone()) {
        timer->expires_at(woken->exchange(false) ? Clock::now() : next_wake());
        continue;
      }
    }
    if (watch.gone() || timed_out) {  // client gone, or waited past the safety net
      watch.stop();
      router.cancel(model, t.waiter);
      log::info("request for {} left the queue: {}", model, watch.gone() ? "client disconnected" : "wait timed out");
      if (watch.gone()) co_return Ticket{Ticket::Kind::pending, 0, t.waiter, 0, {}};
      co_return Ticket{Ticket::Kind::failed, 0, 0, 504, "timed out waiting for '" + model + "' to load"};
    }
  }
}

awaitable<void> Exchange::end_stream(bool client_gone) {
  if (client_gone) {
    gone(200);
    co_return;
  }
  if (keep) co_await end_chunks();
}

EventWait::EventWait(Exchange& ex)
    : router_(ex.ctx.router),
      timer_(std::make_shared<Timer>(ex.client.socket().get_executor())),
      // The wake runs on the router's threads: it only marks and posts a cancel to ours.
      id_(router_.subscribe([timer = timer_, woken = woken_] {
        woken->store(true);
        asio::post(timer->get_executor(), [timer] { timer->cancel(); });
      })),
      watch_(ex.client.socket(), timer_) {}

EventWait::~EventWait() {
  watch_.stop();
  router_.unsubscribe(id_);
}

awaitable<bool> EventWait::wait(Clock::duration d) {
  // What came while the stream wrote: the client's end, a change.
  if (watch_.gone() || woken_->exchange(false)) co_return false;
  timer_->expires_after(d);
  error_code ec;
  co_await timer_->async_wait(ec_token(ec));
  woken_->store(false);
  co_return !ec;
}

}  // namespace llamactl::serve
