#include "serve/http/server.h"

#include <array>
#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include "serve/exchange.h"
#include "serve/http/beast.h"
#include "serve/options.h"
#include "util/log.h"
#include "util/strings.h"

namespace llamactl::serve {
namespace {

constexpr size_t kHeaderLimit = 64 * 1024;

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

std::string_view view(beast::string_view v) {
  return {v.data(), v.size()};
}

Method method_of(http::verb v) {
  switch (v) {
    case http::verb::get:
      return Method::get;
    case http::verb::head:
      return Method::head;
    case http::verb::post:
      return Method::post;
    case http::verb::put:
      return Method::put;
    case http::verb::patch:
      return Method::patch;
    case http::verb::delete_:
      return Method::del;
    case http::verb::options:
      return Method::options;
    default:
      return Method::other;
  }
}

/// The handlers' view of a parsed request (no copies).
Request view_of(const NativeRequest& n) {
  const auto& m = n.msg;
  Request r;
  r.method = method_of(m.method());
  r.method_name = view(m.method_string());
  r.target = view(m.target());
  r.path = r.target.substr(0, r.target.find('?'));
  r.version = m.version();
  r.keep_alive = m.keep_alive();
  r.host = view(m[http::field::host]);
  r.origin = view(m[http::field::origin]);
  r.authorization = view(m[http::field::authorization]);
  r.x_api_key = view(m["x-api-key"]);
  r.body = &m.body();
  r.native = &n;
  return r;
}

}  // namespace

struct Server::State {
  ServerOptions opts;
  Dispatcher dispatch;
  Metrics& metrics;
  // One io_context per thread (as nginx runs one worker per core): a
  // connection lives on one thread from accept to close, so nothing is
  // handed between threads and a session needs no strand.
  // Declared before the io_contexts: coroutine frames still in them at the
  // end hold Streams, which leave their Deadlines when destroyed.
  std::vector<std::unique_ptr<Deadlines>> deadlines;
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<std::unique_ptr<UpstreamPool>> pools;
  std::unique_ptr<Acceptor> acceptor;
  std::vector<std::thread> threads;
  /// Requests being answered, counted per I/O thread (no cache line shared per request).
  struct alignas(64) ActiveCount {
    std::atomic<int> n{0};
  };
  std::unique_ptr<ActiveCount[]> active_by_worker;
  std::atomic<bool> stopping{false};
  Endpoint bound;
  bool loopback = true;  // listening on loopback only: every connection comes over loopback

  State(ServerOptions o, Dispatcher d, Metrics& m)
      : opts(std::move(o)), dispatch(std::move(d)), metrics(m), loopback(is_loopback(opts.listen)) {
    const UpstreamTimeouts timeouts{opts.write_timeout, opts.upstream_timeout};
    for (int i = 0; i < std::max(1, opts.threads); ++i) {
      iocs.push_back(std::make_unique<asio::io_context>(1));
      deadlines.push_back(std::make_unique<Deadlines>());
      pools.push_back(std::make_unique<UpstreamPool>(*deadlines.back(), timeouts));
    }
    active_by_worker = std::make_unique<ActiveCount[]>(iocs.size());
    acceptor = std::make_unique<Acceptor>(*iocs[0]);
  }

  int active() const {
    int n = 0;
    for (size_t i = 0; i < iocs.size(); ++i) n += active_by_worker[i].n.load();
    return n;
  }

  awaitable<void> listen();
  /// Once a second, closes the thread's Streams past their deadline.
  awaitable<void> sweep(Deadlines& d) const;
  awaitable<void> session(Socket sock, size_t worker);
  /// Answers a request that cannot be read on (malformed, ambiguous framing,
  /// fields or body too large) with `status` and `message`, and says the
  /// connection closes (RFC 9112 9.6): the caller closes it.
  awaitable<void> refuse(Stream& client, int status, const std::string& message);
  awaitable<void> too_large(Stream& client) {
    co_await refuse(
        client, 413,
        "request body is larger than the limit of " + std::to_string(opts.body_limit) + " bytes (serve --max-body)");
  }
};

Server::Server(ServerOptions opts, Dispatcher dispatch, Metrics& metrics)
    : s_(std::make_unique<State>(std::move(opts), std::move(dispatch), metrics)) {}

Server::~Server() {
  stop(std::chrono::milliseconds(0));
}

Status Server::bind() {
  auto& s = *s_;
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

Status Server::start() {
  auto& s = *s_;
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

Endpoint Server::bound() const {
  return s_->bound;
}

int Server::active() const {
  return s_->active();
}

void Server::stop(std::chrono::milliseconds grace) {
  auto& s = *s_;
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

awaitable<void> Server::State::listen() {
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

awaitable<void> Server::State::sweep(Deadlines& d) const {
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

awaitable<void> Server::State::refuse(Stream& client, int status, const std::string& message) {
  const std::string body = error_body(ErrorShape::openai, status, message);
  const std::string head = response_head(status, kJsonType, Framing::length, body.size(), false, "");
  const std::array<asio::const_buffer, 2> out{asio::buffer(head), asio::buffer(body)};
  error_code ec;
  client.expires_after(opts.write_timeout);
  co_await write_all(client, out, ec);
  client.expires_never();
  metrics.request("other", status);
  log::info("refused a request: {} {}", status, message);
}

awaitable<void> Server::State::session(Socket sock, size_t worker) {
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
    parser.header_limit(kHeaderLimit);
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
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client.expires_after(opts.write_timeout);
      co_await write_all(client, asio::buffer(kContinue.data(), kContinue.size()), ec);
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
    const NativeRequest native{parser.release()};
    const Request req = view_of(native);
    bool keep = false;
    try {
      keep = co_await dispatch(client, req, pool, via_loopback);
    } catch (const std::exception& e) {
      log::error("request {} failed: {}", req.target, e.what());
    }
    --in_flight;
    if (!keep || !req.keep_alive || stopping) break;
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

}  // namespace llamactl::serve
