#pragma once
// One request being answered: the client's stream and request, the allowed
// origin, the thread's upstream pool, and what came of it (status, whether
// the connection carries on). Handlers answer through it (reply, fail, a
// chunked body) and get an instance through acquire(), the one place that
// waits for a load, admits, and retries once on an upstream that refused.

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "serve/context.h"
#include "serve/http/request.h"
#include "serve/http/stream.h"
#include "serve/http/upstream.h"

namespace llamactl::serve {

inline constexpr std::string_view kJsonType = "application/json; charset=utf-8";
inline constexpr std::string_view kTextType = "text/plain; charset=utf-8";

/// The shape of an error body: each API's own.
enum class ErrorShape {
  openai,     // {"error":{"message","type","param","code"}}
  anthropic,  // {"type":"error","error":{"type","message"}}
  ollama,     // {"error":"message"}
  text,       // the message as text/plain
};

/// An error body in `shape` (for the text shape, the message itself).
std::string error_body(ErrorShape shape, int status, std::string_view message);

/// A request admitted on a running instance: counted in flight until the
/// Lease goes (the router's finish()).
class Lease {
 public:
  Lease() = default;
  ~Lease() { release(); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  std::string model;  // the resolved name
  int port = 0;
  Clock::time_point admitted_at;  // when the instance was there for it (the wait ended)
  UpstreamCall call;              // opened when acquire() was given a request

  void hold(Router& r, std::string m, int p) {
    release();
    router_ = &r;
    model = std::move(m);
    port = p;
    admitted_at = Clock::now();
  }
  void release() {
    if (router_) router_->finish(model, port);
    router_ = nullptr;
  }

 private:
  Router* router_ = nullptr;
};

/// A request for llama-server, written once the port is known.
struct UpstreamRequest {
  std::function<std::string(int port)> head;
  std::string_view body;
};

class Exchange {
 public:
  Exchange(ServeContext& c, Stream& s, const Request& r, UpstreamPool& p, std::string allowed_origin)
      : ctx(c), client(s), req(r), pool(p), origin(std::move(allowed_origin)) {}

  ServeContext& ctx;
  Stream& client;
  const Request& req;
  UpstreamPool& pool;
  std::string origin;  // the request's Origin when allowed, else empty (then no CORS fields)
  ErrorShape shape = ErrorShape::openai;
  int status = 200;  // what the client got (499: it went away first), for the metrics and the log
  bool keep = true;  // the connection may carry another request
  /// Set by the SSE-capable relays (OpenAI, Anthropic): when the body asks to
  /// stream and the wait for an instance passes 2 s, the 200 event-stream head
  /// goes out and a comment line every 2 s says what it waits for.
  bool may_stream_while_waiting = false;
  /// That head went out: the answer continues as SSE chunks (a failure is an
  /// `error` event, the relay sends only the body).
  bool sse_started = false;

  /// A whole response (no body on HEAD). keep: the client's wish, unless
  /// the write failed.
  awaitable<void> reply(int code, std::string_view type, std::string_view body, std::string_view extra = {});
  awaitable<void> json(std::string_view body) { co_await reply(200, kJsonType, body); }
  /// An error in the route's shape; `extra`: more field lines ("Retry-After: 5\r\n").
  /// After sse_started: an `error` event that ends the stream.
  awaitable<void> fail(int code, std::string_view message, std::string_view extra = {});
  /// `event: error` with the error body for `code`, chunk-framed and followed
  /// by the last chunk: how a stream that already started ends in failure
  /// (llama-server itself ends its streams so; OpenAI and Anthropic clients read it).
  std::string sse_error(int code, std::string_view message) const;
  /// The client went away before its answer.
  void gone(int code = 499) {
    status = code;
    keep = false;
  }

  /// A chunked body: the head (with `extra` field lines) goes out at once;
  /// false when the client is gone.
  awaitable<bool> start_chunks(int code, std::string_view type, std::string_view extra = {});
  awaitable<bool> chunk(std::string_view data);
  /// The last chunk; keep stays as the client asked.
  awaitable<bool> end_chunks();
  /// Ends a chunked event stream: the last chunk, or, when the client went
  /// away, nothing more (counted as a 200 it got, the connection closed).
  awaitable<void> end_stream(bool client_gone);

  /// Gets `model` an instance with `needs` and admits the request (waiting
  /// for a load when there is none), and with `up` sends it and reads
  /// llama-server's response head into lease.call. An instance that refuses
  /// the connection died behind serve's back: the router reconciles and the
  /// request asks once more (a fresh load). False when the exchange is over:
  /// a failure was answered, or the client went away.
  awaitable<bool> acquire(const std::string& model, Launch needs, const UpstreamRequest* up, Lease& lease);

 private:
  awaitable<Ticket> wait_for(const std::string& model, Launch needs);
  /// While waiting: after 2 s, the event-stream head (once) and a comment line.
  /// False when the client is gone.
  awaitable<bool> waiting_comment(const std::string& model, Clock::duration waited);
};

/// What an event stream (the router's /models/sse, the web page's events)
/// waits on between writes: a timer that a change in the router's statuses,
/// the end of the feed and the client's going away all cut short.
/// Subscribes to the router at construction; unsubscribes and stops
/// watching the client at destruction. A local of the stream's coroutine.
class EventWait {
 public:
  explicit EventWait(Exchange& ex);
  ~EventWait();
  EventWait(const EventWait&) = delete;
  EventWait& operator=(const EventWait&) = delete;

  /// Up to `d`; false when it ended early (a change, the client, the feed).
  awaitable<bool> wait(Clock::duration d);
  bool client_gone() const { return watch_.gone(); }

 private:
  Router& router_;
  std::shared_ptr<Timer> timer_;
  // Set by a wake from the router's threads, so that one that comes while
  // the stream writes (no timer waits then) ends the next wait at once.
  std::shared_ptr<std::atomic<bool>> woken_ = std::make_shared<std::atomic<bool>>(false);
  uint64_t id_;
  ClientGoneWatch watch_;
};

}  // namespace llamactl::serve
