// serve's HTTP side on Boost.Asio/Beast with C++20 coroutines: one session
// coroutine per connection (on one I/O thread from accept to close), a deadline on every read and
// write, and a relay that forwards each upstream chunk as it arrives (Beast's
// relay() with buffer_body), never collecting a whole body. The only
// translation unit of serve that includes Beast (slow to compile).

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include "serve/http_server.h"

#include <array>
#include <cstring>
#include <future>

#include "serve/http_session.h"
#include "serve/openai.h"
#include "util/json_depth.h"

namespace llamactl::serve {
namespace {

/// Parses what the buffer already holds of a request's body; true when that
/// completed the request. The usual request comes in one read with its
/// header: an async_read for a body that is already here completes without
/// I/O, and Asio then posts its completion behind everything queued on this
/// thread (other connections' work and an epoll_wait): the request would
/// wait that long before it goes on to llama-server.
bool parse_buffered_body(http::request_parser<http::string_body>& parser, beast::flat_buffer& buffer, error_code& ec) {
  ec = {};
  while (!parser.is_done() && buffer.size() > 0) {
    const size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more) ec = {};
    if (ec || used == 0) break;
  }
  return !ec && parser.is_done();
}

/// A request that did not parse as HTTP (request line, fields, chunks): not a
/// connection that closed or timed out.
bool malformed(const error_code& ec) {
  static const auto& http_errors = make_error_code(http::error::bad_method).category();
  return ec && ec.category() == http_errors && ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more;
}

/// Framing that a proxy in front could read differently (RFC 9112 6.1, 6.3:
/// request smuggling): a Transfer-Encoding other than exactly "chunked", or
/// one together with Content-Length. Empty when the framing is plain.
std::string framing_problem(const http::request_parser<http::string_body>::value_type& h) {
  size_t te = 0;
  std::string_view value;
  for (const auto& f : h)
    if (f.name() == http::field::transfer_encoding) {
      ++te;
      value = std::string_view(f.value().data(), f.value().size());
    }
  if (te == 0) return {};
  if (te > 1 || !iequals(trim(value), "chunked"))
    return "Transfer-Encoding other than 'chunked' is not accepted (RFC 9112 6.1)";
  if (h.count(http::field::content_length) > 0)
    return "Transfer-Encoding together with Content-Length is not accepted (RFC 9112 6.3)";
  return {};
}

}  // namespace

HttpServer::HttpServer(ServerOptions opts, Router& router, Metrics& metrics, gpu::GpuProbe& gpus)
    : impl_(std::make_unique<Impl>(std::move(opts), router, metrics, gpus)) {}

HttpServer::~HttpServer() {
  stop(std::chrono::milliseconds(0));
}

Status HttpServer::bind() {
  auto& s = *impl_;
  error_code ec;
  const auto address = asio::ip::make_address(s.opts.listen.host, ec);
  if (ec) return make_error(ErrorKind::usage, "cannot listen on '" + s.opts.listen.host + "': not an IP address");
  const tcp::endpoint ep(address, static_cast<unsigned short>(s.opts.listen.port));
  auto& acceptor = *s.acceptor;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor.close(ignored);  // a later bind() or start() begins afresh
    const auto kind = ec == asio::error::address_in_use ? ErrorKind::port_in_use : ErrorKind::usage;
    return make_error(kind, "cannot listen on " + s.opts.listen.text() + ": " + ec.message());
  }
  s.bound = s.opts.listen;
  s.bound.port = acceptor.local_endpoint().port();
  return ok_status();
}

Status HttpServer::start() {
  auto& s = *impl_;
  if (!s.acceptor->is_open())
    if (auto b = bind(); !b) return b;
  asio::co_spawn(*s.iocs[0], s.listen(), asio::detached);
  for (size_t i = 0; i < s.iocs.size(); ++i) asio::co_spawn(*s.iocs[i], s.sweep(*s.deadlines[i]), asio::detached);
  for (auto& ioc : s.iocs) {
    // Keep idle workers running until stop().
    auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(ioc->get_executor());
    s.threads.emplace_back([io = ioc.get(), guard] { io->run(); });
  }
  return ok_status();
}

Endpoint HttpServer::bound() const {
  return impl_->bound;
}

int HttpServer::active() const {
  return impl_->active();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  auto& s = *impl_;
  if (s.threads.empty()) return;
  s.stopping = true;
  // Nothing new is accepted from here on: the port is closed before the
  // grace starts (and before the router's stop, which may take seconds).
  auto closed = std::make_shared<std::promise<void>>();
  asio::post(*s.iocs[0], [&s, closed] {
    error_code ignored;
    s.acceptor->close(ignored);
    closed->set_value();
  });
  closed->get_future().wait_for(std::chrono::seconds(1));
  const auto until = Clock::now() + grace;
  while (s.active() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (const int n = s.active(); n > 0) log::warn("stopping with {} request(s) still open: cut", n);
  for (auto& ioc : s.iocs) ioc->stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  error_code ignored;
  s.acceptor->close(ignored);  // if the posted close never ran; no thread runs now
}

awaitable<void> HttpServer::Impl::listen() {
  for (size_t next = 0;; next = (next + 1) % iocs.size()) {
    error_code ec;
    Socket sock = co_await acceptor->async_accept(iocs[next]->get_executor(), ec_token(ec));
    if (ec) {
      if (!acceptor->is_open() || stopping) co_return;
      // EMFILE and friends: back off instead of spinning.
      Timer t(*iocs[0], std::chrono::milliseconds(50));
      co_await t.async_wait(ec_token(ec));
      continue;
    }
    sock.set_option(tcp::no_delay(true), ec);
    sock.non_blocking(true, ec);  // for write_all's first, direct send
    auto exec = sock.get_executor();
    asio::co_spawn(exec, session(std::move(sock), next), asio::detached);
  }
}

awaitable<void> HttpServer::Impl::sweep(Deadlines& d) const {
  Timer timer(co_await asio::this_coro::executor);
  // A deadline is enforced up to a period late: a second, less for short timeouts (tests).
  const auto shortest = std::min({opts.read_timeout, opts.idle_timeout, opts.write_timeout});
  const auto sweep_period =
      std::clamp<std::chrono::milliseconds>(shortest / 4, std::chrono::milliseconds(50), std::chrono::seconds(1));
  for (;;) {
    timer.expires_after(sweep_period);
    error_code ec;
    co_await timer.async_wait(ec_token(ec));
    if (ec) co_return;  // the io_context stops; deadlines hold through the stop's grace
    if (const size_t n = d.sweep(Clock::now())) log::debug("closed {} connection(s) past their deadline", n);
  }
}

awaitable<void> HttpServer::Impl::session(Socket sock, size_t worker) {
  UpstreamPool& pool = *pools[worker];
  // Over loopback: the listener is, or (0.0.0.0) this connection's own address is.
  bool via_loopback = loopback;
  if (!via_loopback) {
    error_code lec;
    const auto local = sock.local_endpoint(lec);
    const auto a = local.address();
    via_loopback = lec || a.is_loopback() ||
                   (a.is_v6() && a.to_v6().is_v4_mapped() &&
                    asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback());
  }
  Stream client(std::move(sock), *deadlines[worker]);
  std::atomic<int>& in_flight = active_by_worker[worker].n;
  beast::flat_buffer buffer;
  bool refused = false;  // answered with an error the connection does not survive
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(opts.body_limit);
    parser.header_limit(64 * 1024);
    error_code ec;
    client.expires_after(opts.idle_timeout);
    co_await http::async_read_header(client, buffer, parser, ec_token(ec));
    if (ec == http::error::body_limit) {
      co_await too_large(client);
      refused = true;
      break;
    }
    if (ec == http::error::header_limit) {
      co_await refuse(client, 431, "the request's header fields are larger than the limit of 64 KiB");
      refused = true;
      break;
    }
    if (malformed(ec)) {
      co_await refuse(client, 400, "malformed HTTP request (" + ec.message() + ")");
      refused = true;
      break;
    }
    if (ec) break;  // closed or timed out
    if (const std::string why = framing_problem(parser.get()); !why.empty()) {
      co_await refuse(client, 400, why);
      refused = true;
      break;
    }
    ++in_flight;
    // curl waits a second for this before sending a large body.
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      co_await http::async_write(client, cont, ec_token(ec));
      if (ec) {
        --in_flight;
        break;
      }
    }
    client.expires_after(opts.read_timeout);
    if (!parse_buffered_body(parser, buffer, ec) && !ec)
      co_await http::async_read(client, buffer, parser, ec_token(ec));
    if (ec == http::error::body_limit) {
      co_await too_large(client);
      refused = true;
      --in_flight;
      break;
    }
    if (malformed(ec)) {  // a bad chunk
      co_await refuse(client, 400, "malformed HTTP request body (" + ec.message() + ")");
      refused = true;
      --in_flight;
      break;
    }
    if (ec) {
      --in_flight;
      break;
    }
    client.expires_never();  // the request is in: what follows may wait on a load or llama-server
    auto req = parser.release();
    bool keep = false;
    try {
      keep = co_await handle(client, req, pool, via_loopback);
    } catch (const std::exception& e) {
      log::error("request {} failed: {}", std::string(req.target()), e.what());
    }
    --in_flight;
    if (!keep || !req.keep_alive() || stopping) break;
  }
  error_code ignored;
  client.socket().shutdown(Socket::shutdown_send, ignored);
  if (refused) {
    // The client may still be sending (a body, the rest of its fields):
    // closing with bytes unread sends a reset, which can destroy the answer
    // before the client reads it. Read and drop for a moment first (RFC 9112
    // 9.6, closing in stages).
    client.expires_after(std::chrono::milliseconds(500));
    std::array<char, 16384> scratch{};
    for (size_t dropped = 0; dropped < (1U << 20);) {
      const size_t n = co_await client.async_read_some(asio::buffer(scratch), ec_token(ignored));
      if (ignored) break;
      dropped += n;
    }
  }
  client.close();
}

awaitable<void> HttpServer::Impl::too_large(Stream& client) {
  co_await refuse(
      client, 413,
      "request body is larger than the limit of " + std::to_string(opts.body_limit) + " bytes (serve --max-body)");
}

awaitable<void> HttpServer::Impl::refuse(Stream& client, int status, const std::string& message) {
  http::request<http::string_body> none;
  none.keep_alive(false);  // Connection: close on the answer
  co_await reply(client, none, status, "application/json; charset=utf-8",
                 openai_error(message, error_type(status), status), "");
  metrics.request("other", status);
  log::info("refused a request: {} {}", status, message);
}

bool HttpServer::Impl::authorized(const http::request<http::string_body>& req) const {
  if (opts.api_key.empty()) return true;
  const auto auth = req[http::field::authorization];
  const auto x_key = req["x-api-key"];
  return api_key_ok(std::string_view(auth.data(), auth.size()), std::string_view(x_key.data(), x_key.size()),
                    opts.api_key);
}

awaitable<bool> HttpServer::Impl::reply(Stream& client, const http::request<http::string_body>& req, int status,
                                        const std::string& type, std::string body, const std::string& origin) const {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "llamactl/" LLAMACTL_VERSION);
  res.set(http::field::content_type, type);
  if (!origin.empty()) {
    res.set(http::field::access_control_allow_origin, origin);
    res.set(http::field::vary, "Origin");
  }
  const bool head = req.method() == http::verb::head;
  res.body() = std::move(body);
  res.prepare_payload();
  if (head) res.body().clear();
  const bool keep = req.keep_alive() && status != 413;
  res.keep_alive(keep);
  error_code ec;
  client.expires_after(opts.write_timeout);
  if (head) {
    http::response_serializer<http::string_body> sr{res};
    co_await http::async_write_header(client, sr, ec_token(ec));
  } else {
    co_await http::async_write(client, res, ec_token(ec));
  }
  client.expires_never();
  co_return keep && !ec;
}

awaitable<bool> HttpServer::Impl::handle(Stream& client, http::request<http::string_body>& req, UpstreamPool& pool,
                                         bool via_loopback) {
  const auto t0 = Clock::now();
  // Views into the request (alive in the session's frame): no copies per request.
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  const auto method = req.method();
  const std::string req_origin(req[http::field::origin]);
  const std::string origin = !req_origin.empty() && origin_allowed(opts.origins, req_origin) ? req_origin : "";
  static const std::vector<std::string> kRoutes = {"/",
                                                   "/health",
                                                   "/metrics",
                                                   "/v1/models",
                                                   "/v1/embeddings",
                                                   "/v1/chat/completions",
                                                   "/v1/completions",
                                                   "/api/chat",
                                                   "/api/generate",
                                                   "/api/embed",
                                                   "/api/embeddings",
                                                   "/api/tags",
                                                   "/api/ps",
                                                   "/api/show",
                                                   "/api/version",
                                                   "/api/pull"};
  static const std::string kOther = "other";
  const auto known = std::find(kRoutes.begin(), kRoutes.end(), path);
  const std::string& route = known != kRoutes.end() ? *known : kOther;
  int status = 200;
  bool keep = true;
  const auto json_type = "application/json; charset=utf-8";

  const auto host = req[http::field::host];
  if (!host_allowed(std::string_view(host.data(), host.size()), via_loopback, opts.allowed_hosts)) {
    // DNS rebinding: a page whose name now resolves to this machine.
    status = 403;
    const std::string shown(host.substr(0, 100));
    keep = co_await reply(client, req, 403, "text/plain; charset=utf-8",
                          "403 Forbidden: Host '" + shown +
                              "' is not a name of this serve (it answers loopback names; add others with "
                              "--allow-host NAME)",
                          "");
  } else if (!req_origin.empty() && origin.empty()) {
    // A page on another site: refused on every method, as gin-contrib/cors
    // does for Ollama, so a form post or a no-preflight fetch cannot drive serve.
    status = 403;
    keep = co_await reply(client, req, 403, "text/plain; charset=utf-8",
                          "403 Forbidden: Origin not allowed (add it to OLLAMA_ORIGINS)", "");
  } else if (method == http::verb::options && origin.empty()) {
    status = 403;
    keep = co_await reply(client, req, 403, "text/plain; charset=utf-8",
                          "403 Forbidden: a CORS preflight needs an allowed Origin", "");
  } else if (method == http::verb::options) {
    // CORS preflight: only for the origins Ollama allows (OLLAMA_ORIGINS).
    http::response<http::empty_body> res{http::status::no_content, 11};
    status = 204;
    {
      res.set(http::field::access_control_allow_origin, origin);
      res.set(http::field::access_control_allow_methods, "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
      res.set(http::field::access_control_allow_headers,
              "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, x-api-key, "
              "anthropic-version, anthropic-beta, x-stainless-arch, "
              "x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-runtime, "
              "x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout");
      res.set(http::field::access_control_max_age, "43200");
      res.set(http::field::vary, "Origin");
    }
    res.keep_alive(req.keep_alive());
    error_code ec;
    client.expires_after(opts.write_timeout);
    co_await http::async_write(client, res, ec_token(ec));
    keep = !ec && req.keep_alive();
  } else if (!(path == "/" || path == "/health") && !authorized(req)) {
    status = 401;
    keep = co_await reply(client, req, 401, json_type, openai_error("invalid or missing API key", error_type(401), 401),
                          origin);
  } else if (path == "/" && (method == http::verb::get || method == http::verb::head)) {
    keep = co_await reply(client, req, 200, "text/plain; charset=utf-8", "Ollama is running", origin);
  } else if (path == "/health" && method == http::verb::get) {
    keep = co_await reply(client, req, 200, json_type, R"({"status":"ok"})", origin);
  } else if (path == "/metrics" && method == http::verb::get) {
    keep = co_await reply(client, req, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(), origin);
  } else if (path == "/v1/models" && method == http::verb::get) {
    keep = co_await reply(client, req, 200, json_type, models_json(), origin);
  } else if (method == http::verb::post &&
             (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/embeddings")) {
    keep = co_await proxy(client, req, path, origin, status, pool);
  } else if (starts_with(path, "/api/")) {
    const std::string api_path(path);
    keep = co_await ollama(client, req, api_path, origin, status, pool);
  } else {
    status = 404;
    keep = co_await reply(client, req, 404, "text/plain; charset=utf-8", "404 page not found", origin);
  }
  metrics.request(route, status);
  log::info("{} {} {} {:.1f} ms", std::string(req.method_string()), target, status,
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  co_return keep;
}

awaitable<bool> HttpServer::Impl::proxy(Stream& client, http::request<http::string_body>& req, std::string_view route,
                                        const std::string& origin, int& status, UpstreamPool& pool) {
  const auto json_type = "application/json; charset=utf-8";
  const auto fail = [&](int code, const std::string& message) -> awaitable<bool> {
    status = code;
    co_return co_await reply(client, req, code, json_type, openai_error(message, error_type(code), code), origin);
  };
  // Bodies parse as JSON whatever the Content-Type says (clients differ).
  const BodyModel body = body_model(req.body());
  if (body.too_deep) co_return co_await fail(400, std::string(kJsonTooDeepMessage));
  if (!body.is_object) co_return co_await fail(400, "the request body is not a JSON object");
  if (body.model.empty()) co_return co_await fail(400, "'model' is required");
  const std::string& requested = body.model;
  const auto model = router.resolve(requested);
  if (!model) co_return co_await fail(404, "model '" + requested + "' not found");

  for (int attempt = 0;; ++attempt) {
    const auto t0 = Clock::now();
    const Launch needs{route == "/v1/embeddings", 0, 0};
    // Most requests find their model ready: no coroutine frame for the wait.
    Ticket t{Ticket::Kind::ready, 0, 0, 0, {}};
    if (const auto ready = router.admit_ready(*model, needs))
      t.port = *ready;
    else
      t = co_await wait_for(client, *model, needs);        // not in a ?: (GCC 12 miscompiles co_await there)
    if (t.kind == Ticket::Kind::pending) co_return false;  // the client went away while waiting
    if (t.kind == Ticket::Kind::failed) co_return co_await fail(t.status, t.error);
    metrics.queue_wait(std::chrono::duration<double>(Clock::now() - t0).count());
    Admitted admitted(router, *model);
    const int port = t.port;
    int upstream_status = 0;
    const bool keep = co_await relay(client, req, *model, port, origin, upstream_status, pool);
    if (upstream_status != -1) {
      status = upstream_status > 0 ? upstream_status : 502;
      co_return keep;
    }
    // Nothing answered on its port (relay sent nothing and dropped the
    // port's pooled connections): the instance died or was unloaded behind
    // our back. The router has reconciled; ask once more (a fresh load).
    if (attempt > 0)
      co_return co_await fail(502, "llama-server for '" + *model + "' refused the connection, also after a reload");
  }
}

awaitable<Ticket> HttpServer::Impl::wait_for(Stream& client, const std::string& model, Launch needs) {
  // Most requests find their model ready: no timer, no wake-up to set up.
  if (const auto port = router.admit_ready(model, needs)) co_return Ticket{Ticket::Kind::ready, *port, 0, 0, {}};
  auto exec = co_await asio::this_coro::executor;
  auto timer = std::make_shared<Timer>(exec);
  timer->expires_after(opts.wait_timeout);
  Ticket t = router.admit(model, needs, [timer, exec] { asio::post(exec, [timer] { timer->cancel(); }); });
  if (t.kind != Ticket::Kind::pending) co_return t;
  auto watch = std::make_shared<ClientWatch>();
  bool gone = false;
  watch->on_readable = [&] {
    if (peer_closed(client.socket())) {
      gone = true;
      timer->cancel();
    }
  };
  arm_watch(client.socket(), watch);
  for (;;) {
    error_code ec;
    co_await timer->async_wait(ec_token(ec));
    Ticket r = router.result(t.waiter);
    if (r.kind != Ticket::Kind::pending) {
      watch->on_readable = nullptr;
      client.socket().cancel(ec);
      if (gone && r.kind == Ticket::Kind::ready) {
        router.finish(model);  // granted but never used
        co_return Ticket{Ticket::Kind::pending, 0, t.waiter, 0, {}};
      }
      co_return r;
    }
    if (gone || !ec) {  // client gone, or waited past the safety net
      watch->on_readable = nullptr;
      client.socket().cancel(ec);
      router.cancel(model, t.waiter);
      log::info("request for {} left the queue: {}", model, gone ? "client disconnected" : "wait timed out");
      if (gone) co_return Ticket{Ticket::Kind::pending, 0, t.waiter, 0, {}};
      co_return Ticket{Ticket::Kind::failed, 0, 0, 504, "timed out waiting for '" + model + "' to load"};
    }
  }
}

// Request and response heads written by hand for the relay: Beast's
// serializer walks a header through layers of buffer views, a tenth of
// serve's CPU per proxied request. Beast still parses everything.

namespace {

std::string& add(std::string& h, beast::string_view v) {
  return h.append(v.data(), v.size());
}

/// "NAME: VALUE\r\n".
void add_field(std::string& h, beast::string_view name, beast::string_view value) {
  add(add(h, name).append(": ", 2), value).append("\r\n", 2);
}

/// "METHOD TARGET HTTP/1.1\r\n".
void add_request_line(std::string& h, const http::request<http::string_body>& req) {
  add(add(h, req.method_string()).append(" ", 1), req.target()).append(" HTTP/1.1\r\n", 11);
}

}  // namespace

namespace detail {

std::string request_head(const http::request<http::string_body>& up) {
  std::string h;
  h.reserve(256);
  add_request_line(h, up);
  for (const auto& f : up) add_field(h, f.name_string(), f.value());
  h.append("\r\n", 2);
  return h;
}

std::string relay_head(const http::request<http::string_body>& req, int port) {
  std::string h;
  h.reserve(512);
  add_request_line(h, req);
  for (const auto& f : req)
    if (!hop_by_hop(f.name()) && f.name() != http::field::authorization && f.name() != http::field::origin)
      add_field(h, f.name_string(), f.value());
  add_field(h, "Host", "127.0.0.1:" + std::to_string(port));
  add_field(h, "Content-Length", std::to_string(req.body().size()));
  h.append("\r\n", 2);
  return h;
}

void UpstreamParser::on_field_impl(http::field name, beast::string_view name_string, beast::string_view value,
                                   error_code& /*ec*/) {
  if (is_header_done()) return;  // a chunked body's trailer: not passed on
  switch (name) {
    case http::field::content_type:
      if (!seen_type_) {  // the first, as fields[] gives
        constexpr std::string_view kSse = "text/event-stream";
        event_stream = value.size() >= kSse.size() && iequals(std::string_view(value.data(), kSse.size()), kSse);
        seen_type_ = true;
      }
      break;
    case http::field::server:
    // CORS is serve's policy (OLLAMA_ORIGINS), not the upstream's.
    case http::field::access_control_allow_origin:
    case http::field::access_control_allow_methods:
    case http::field::access_control_allow_headers:
    case http::field::access_control_allow_credentials:
      return;
    case http::field::vary:
      add_field(vary, name_string, value);
      return;
    case http::field::unknown:
      if (beast::iequals(name_string, "X-Accel-Buffering")) {
        add_field(accel, name_string, value);
        return;
      }
      break;
    default:
      if (hop_by_hop(name)) return;
  }
  add_field(fields, name_string, value);
}

size_t UpstreamParser::on_body_impl(beast::string_view body, error_code& ec) {
  if (body_size == 0) {
    ec = http::error::need_buffer;
    return 0;
  }
  const size_t n = std::min(body_size, body.size());
  std::memcpy(body_data, body.data(), n);
  body_data += n;
  body_size -= n;
  if (n < body.size()) ec = http::error::need_buffer;
  return n;
}

std::string relayed_response_head(const UpstreamParser& up, Framing framing, const std::optional<uint64_t>& length,
                                  bool sse, bool keep_alive, const std::string& origin) {
  std::string h;
  h.reserve(256 + up.fields.size());
  const beast::string_view reason =
      up.reason.empty() ? http::obsolete_reason(static_cast<http::status>(up.status)) : beast::string_view(up.reason);
  add(h.append("HTTP/1.1 ", 9).append(std::to_string(up.status)).append(" ", 1), reason).append("\r\n", 2);
  h.append(up.fields);
  if (origin.empty()) h.append(up.vary);  // else replaced below
  if (!sse) h.append(up.accel);
  add_field(h, "Server", "llamactl/" LLAMACTL_VERSION);
  if (!origin.empty()) {
    add_field(h, "Access-Control-Allow-Origin", origin);
    add_field(h, "Vary", "Origin");
  }
  if (sse) add_field(h, "X-Accel-Buffering", "no");
  if (framing == Framing::length) add_field(h, "Content-Length", std::to_string(*length));
  if (framing == Framing::chunked) add_field(h, "Transfer-Encoding", "chunked");
  if (!keep_alive) add_field(h, "Connection", "close");
  h.append("\r\n", 2);
  return h;
}

Framing response_framing(const std::optional<uint64_t>& length, bool done_at_header, bool upstream_chunked,
                         unsigned client_version) {
  if (length) return Framing::length;
  // Done at its header without a length: a reply that has no body (204, 304).
  if (done_at_header && !upstream_chunked) return Framing::none;
  return client_version >= 11 ? Framing::chunked : Framing::close;
}

}  // namespace detail

awaitable<error_code> HttpServer::Impl::open_upstream(UpstreamPool& pool, int port,
                                                      http::request<http::string_body>& up, UpstreamExchange& x) const {
  const std::string head = request_head(up);
  co_return co_await open_upstream(pool, port, head, up.body(), x);
}

awaitable<error_code> HttpServer::Impl::open_upstream(UpstreamPool& pool, int port, const std::string& head,
                                                      std::string_view body, UpstreamExchange& x) const {
  auto exec = co_await asio::this_coro::executor;
  // A pooled connection may have been closed by the server meanwhile: on a
  // failure before any response byte, try once more on a fresh connection.
  error_code ec;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto pooled = attempt == 0 ? pool.take(port) : std::nullopt;
    auto& upstream =
        pooled ? x.stream.emplace(std::move(*pooled), pool.deadlines) : x.stream.emplace(exec, pool.deadlines);
    if (!pooled) {
      upstream.expires_after(kConnectTimeout);
      co_await upstream.socket().async_connect(
          tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port)), ec_token(ec));
      if (ec) {
        ec = upstream.why(ec);
        break;
      }
      upstream.socket().set_option(tcp::no_delay(true), ec);
      upstream.socket().non_blocking(true, ec);  // for write_all's first, direct send
    }
    upstream.expires_after(opts.write_timeout);
    // The header and the body in one send, the body not copied.
    const std::array<asio::const_buffer, 2> request{asio::buffer(head), asio::buffer(body.data(), body.size())};
    co_await write_all(upstream, request, ec);
    if (!ec) {
      x.parser.emplace();
      x.buf.clear();
      upstream.expires_after(opts.upstream_timeout);
      co_await http::async_read_header(upstream, x.buf, *x.parser, ec_token(ec));
    }
    upstream.expires_never();
    ec = upstream.why(ec);
    // A pooled connection the server had closed fails at once (reset, or
    // the end of the stream): send again on a fresh one. Never after a
    // timeout: the request may be running there.
    const bool closed_before = ec == http::error::end_of_stream || ec == asio::error::eof ||
                               ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
    if (!ec || !pooled || !closed_before) break;
  }
  co_return ec;
}

awaitable<bool> HttpServer::Impl::relay(Stream& client, http::request<http::string_body>& req, const std::string& model,
                                        int port, const std::string& origin, int& status, UpstreamPool& pool) {
  const std::string up_head = relay_head(req, port);
  UpstreamExchange x;
  error_code ec = co_await open_upstream(pool, port, up_head, req.body(), x);
  if (ec) {
    const bool refused = ec == asio::error::connection_refused;
    log::warn("upstream {} (port {}): {}", model, port, ec.message());
    router.upstream_failed(model);
    pool.drop(port);
    if (refused) {
      status = -1;  // the caller asks again
      co_return true;
    }
    status = 502;
    co_return co_await reply(
        client, req, 502, "application/json; charset=utf-8",
        openai_error("llama-server for '" + model + "' failed: " + ec.message(), "server_error", 502), origin);
  }

  auto& p = *x.parser;
  auto& upstream = *x.stream;
  auto& ubuf = x.buf;
  status = p.status;
  const bool sse = p.event_stream;
  // A body of known length goes on with that length; any other (chunked, or
  // until the upstream closes) goes on in chunks of what arrived.
  const std::optional<uint64_t> length =
      p.content_length() ? std::optional<uint64_t>(*p.content_length()) : std::nullopt;
  const Framing framing = response_framing(length, p.is_done(), p.chunked(), req.version());
  const bool chunked_out = framing == Framing::chunked;
  const bool keep = req.keep_alive() && framing != Framing::close;
  const std::string head = relayed_response_head(p, framing, length, sse, keep, origin);
  bool head_sent = false;
  // A stream's header goes out at once (the client learns it is streaming
  // while the prompt is processed). Any other response's header goes out with
  // its first body bytes: one send, one wake-up of the client, not two.
  if (sse) {
    client.expires_after(opts.write_timeout);
    co_await write_all(client, asio::buffer(head), ec);
    client.expires_never();
    if (ec) co_return false;
    head_sent = true;
  }

  // Watch the client while we wait on llama-server: a client that goes away
  // closes the upstream connection, which makes llama-server cancel the task.
  // Not when the whole body is already here (the usual non-streaming reply):
  // arming the watch costs an epoll_ctl, and there is nothing left to wait for.
  const bool whole_body_here = length && ubuf.size() >= *length;
  if (whole_body_here && !head_sent) {
    // The usual non-streaming reply: the body came with the header. It goes
    // out from the read buffer with serve's header, in one send; no copy,
    // no parsing of the body, no client watch.
    const std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(ubuf.data().data(), *length)};
    client.expires_after(opts.write_timeout);
    co_await write_all(client, out, ec);
    client.expires_never();
    if (ec) {
      log::info("client of {} disconnected mid-response; closed the upstream connection", model);
      upstream.close();
      co_return false;
    }
    // Anything after the body is not ours to make sense of: that connection is not reused.
    if (p.keep_alive() && ubuf.size() == *length) pool.give(port, upstream.release_socket());
    co_return keep;
  }
  bool client_gone = false;
  const auto watch = upstream_cancelling_watch(client.socket(), upstream.socket(), client_gone);
  if (!whole_body_here) arm_watch(client.socket(), watch);
  const auto disarm = [&] {
    if (whole_body_here) return;
    watch->on_readable = nullptr;
    error_code ignored;
    client.socket().cancel(ignored);
  };

  // On the heap, not in the coroutine's frame: the fast path above never needs it.
  constexpr size_t kPiece = 16384;
  const auto buf = std::make_unique<char[]>(kPiece);
  char chunk_size[24];
  bool upstream_broke = false;
  for (;;) {
    size_t n = 0;
    if (!p.is_done()) {
      p.body_data = buf.get();
      p.body_size = kPiece;
      upstream.expires_after(opts.upstream_timeout);
      co_await http::async_read_some(upstream, ubuf, p, ec_token(ec));
      upstream.expires_never();  // next: a client write, under the client's deadline
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        ec = upstream.why(ec);
        upstream_broke = !client_gone;
        break;
      }
      n = kPiece - p.body_size;
      if (n == 0 && !p.is_done()) continue;
    }
    const bool last = p.is_done();
    // [header][chunk size][data][chunk end, last chunk]: one send.
    std::array<asio::const_buffer, 4> out{};
    if (!head_sent) out[0] = asio::buffer(head);
    if (chunked_out && n > 0) {
      const int len = std::snprintf(chunk_size, sizeof chunk_size, "%zx\r\n", n);
      out[1] = asio::buffer(chunk_size, static_cast<size_t>(len));
    }
    out[2] = asio::buffer(buf.get(), n);
    if (chunked_out) {
      static constexpr std::string_view kEnd = "\r\n", kLast = "0\r\n\r\n", kEndLast = "\r\n0\r\n\r\n";
      const std::string_view tail = n > 0 ? (last ? kEndLast : kEnd) : (last ? kLast : std::string_view{});
      out[3] = asio::buffer(tail.data(), tail.size());
    }
    if (asio::buffer_size(out) > 0) {
      client.expires_after(opts.write_timeout);
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
  disarm();

  if (client_gone) {
    log::info("client of {} disconnected mid-response; closed the upstream connection", model);
    upstream.close();
    co_return false;
  }
  if (upstream_broke && !head_sent) {
    // Nothing was sent yet: the client gets a whole error response.
    log::warn("upstream {} broke before its body: {}", model, ec.message());
    pool.drop(port);
    router.upstream_failed(model);
    status = 502;
    co_return co_await reply(
        client, req, 502, "application/json; charset=utf-8",
        openai_error("llama-server for '" + model + "' failed mid-response: " + ec.message(), "server_error", 502),
        origin);
  }
  if (upstream_broke) {
    log::warn("upstream {} broke mid-response: {}", model, ec.message());
    if (sse && chunked_out) {
      // OpenAI clients read an error event; llama-server itself sends errors after the start this way.
      const std::string event =
          "event: error\ndata: " +
          openai_error("llama-server for '" + model + "' stopped mid-stream: " + ec.message(), "server_error", 502) +
          "\n\n";
      std::snprintf(chunk_size, sizeof chunk_size, "%zx\r\n", event.size());
      const std::string framed = chunk_size + event + "\r\n0\r\n\r\n";
      error_code wec;
      client.expires_after(opts.write_timeout);
      co_await asio::async_write(client, asio::buffer(framed), ec_token(wec));
    }
    pool.drop(port);
    router.upstream_failed(model);
    co_return false;
  }
  if (p.keep_alive()) pool.give(port, upstream.release_socket());
  co_return keep;
}

std::string HttpServer::Impl::models_json() {
  json data = json::array();
  for (const auto& m : router.models())
    data.push_back({{"id", m.name},
                    {"object", "model"},
                    {"created", now_ms() / 1000},
                    {"owned_by", "llamactl"},
                    {"status",
                     {{"value", m.state == "ready"     ? "loaded"
                                : m.state == "stopped" ? "unloaded"
                                                       : m.state}}}});
  return dump_utf8(json{{"object", "list"}, {"data", data}});
}

std::string HttpServer::Impl::metrics_text() {
  MetricsSnapshot m = metrics.snapshot();
  router.fill(m);
  const auto probe = gpus.read();
  m.gpu_reading_ok = !probe.cpu_mode;
  m.gpus = probe.snapshot.gpus;
  return render(m);
}

}  // namespace llamactl::serve
