#pragma once
// Internal to serve's HTTP side: the server's state and the helpers its
// translation units share (http_server.cpp: listener, sessions, OpenAI
// relay; http_ollama.cpp: Ollama's API). Includes Beast: include it only there.

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include "serve/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

#include "serve/model_card.h"
#include "util/json_depth.h"

namespace llamactl::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
// Everything runs on one io_context per thread, so the coroutines and I/O
// objects name its executor, not the type-erased any_io_executor: copying,
// tracking and dispatching through the erased one per operation cost about
// a twentieth of serve's CPU per request.
using Executor = asio::io_context::executor_type;
template <class T>
using awaitable = asio::awaitable<T, Executor>;
inline constexpr asio::use_awaitable_t<Executor> use_awaitable{};
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer =
    asio::basic_waitable_timer<std::chrono::steady_clock, asio::wait_traits<std::chrono::steady_clock>, Executor>;
using beast::error_code;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace detail {

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr size_t kPoolPerPort = 64;

inline auto ec_token(error_code& ec) {
  return asio::redirect_error(use_awaitable, ec);
}

class Deadlines;

/// A client or upstream connection: a socket whose deadline is only a
/// number. Beast's tcp_stream arms a timer for every read and write (a lock,
/// a timer-queue update, a cancel); under load that and its wrapping of each
/// operation were a sixth of serve's CPU per request. Here `expires_after`
/// stores a time, and the I/O thread's Deadlines, once a second, closes the
/// sockets whose time has passed: their pending operation ends with an error
/// (`timed_out()` tells it apart). A deadline stands until it is changed, so
/// before waiting on something else (a load, llama-server) the owner calls
/// `expires_never()`: Beast's deadline covered only its own operations, and
/// a two-minute load must not be cut by a 60 s write timeout. A Stream is an AsyncReadStream and
/// AsyncWriteStream, so Beast's HTTP reads and writes take it. It stays where
/// it was made (its thread's list holds its address).
class Stream {
 public:
  using executor_type = Socket::executor_type;
  Stream(Socket sock, Deadlines& owner);
  Stream(const executor_type& ex, Deadlines& owner) : Stream(Socket(ex), owner) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&&) = delete;
  Stream& operator=(Stream&&) = delete;

  executor_type get_executor() noexcept { return sock_.get_executor(); }
  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return sock_.async_read_some(buffers, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return sock_.async_write_some(buffers, std::forward<Token>(token));
  }

  Socket& socket() noexcept { return sock_; }
  void expires_after(Clock::duration d) { deadline_ = Clock::now() + d; }
  void expires_never() noexcept { deadline_ = Clock::time_point::max(); }
  /// True once the sweeper closed the socket for its deadline.
  bool timed_out() const noexcept { return timed_out_; }
  /// `ec`, or timeout when the deadline is why the operation failed.
  error_code why(error_code ec) const { return ec && timed_out_ ? error_code(beast::error::timeout) : ec; }
  /// The socket, for the pool; the Stream is left empty.
  Socket release_socket() {
    expires_never();
    return std::move(sock_);
  }
  void close() {
    error_code ignored;
    sock_.close(ignored);
  }

 private:
  friend class Deadlines;
  Socket sock_;
  Deadlines* owner_;  // null once the list is gone
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  Stream* prev_ = nullptr;  // the owner's list
  Stream* next_ = nullptr;
};

/// The Streams of one I/O thread, swept for passed deadlines. Only that
/// thread touches it (and the destructor's thread after the threads stop).
class Deadlines {
 public:
  Deadlines() = default;
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;
  ~Deadlines() {
    for (Stream* s = head_; s;) {  // Streams outliving their list (not expected): detach them
      Stream* next = s->next_;
      s->prev_ = s->next_ = nullptr;
      s->owner_ = nullptr;
      s = next;
    }
  }
  void add(Stream* s) {
    s->next_ = head_;
    if (head_) head_->prev_ = s;
    head_ = s;
  }
  void remove(Stream* s) {
    if (s->prev_)
      s->prev_->next_ = s->next_;
    else if (head_ == s)
      head_ = s->next_;
    if (s->next_) s->next_->prev_ = s->prev_;
    s->prev_ = s->next_ = nullptr;
  }
  /// Closes every Stream whose deadline is not after `now`; returns how many.
  size_t sweep(Clock::time_point now) {
    size_t closed = 0;
    for (Stream* s = head_; s; s = s->next_)
      if (s->deadline_ <= now) {
        s->timed_out_ = true;
        s->deadline_ = Clock::time_point::max();
        s->close();
        ++closed;
      }
    return closed;
  }
  size_t size() const {
    size_t n = 0;
    for (Stream* s = head_; s; s = s->next_) ++n;
    return n;
  }

 private:
  Stream* head_ = nullptr;
};

inline Stream::Stream(Socket sock, Deadlines& owner) : sock_(std::move(sock)), owner_(&owner) {
  owner_->add(this);
}
inline Stream::~Stream() {
  if (owner_) owner_->remove(this);
}

/// Writes all of `buffers` to `s`, whose socket is in non-blocking mode: what
/// the socket takes at once goes now, and only a rest waits for the reactor.
/// An async_write that completes at once (the usual case: the socket's send
/// buffer has room) has its completion posted behind all the work queued on
/// this I/O thread, and the request's next step (reading llama-server's
/// answer, or the client's next request) waits that long.
template <class Buffers>
awaitable<void> write_all(Stream& s, const Buffers& buffers, error_code& ec) {
  ec = {};
  if (!s.socket().non_blocking()) {  // a send now could block the thread
    co_await asio::async_write(s, buffers, ec_token(ec));
    co_return;
  }
  const size_t sent = s.socket().send(buffers, 0, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  if (ec || sent == asio::buffer_size(buffers)) co_return;
  beast::buffers_suffix<Buffers> rest(buffers);
  rest.consume(sent);
  co_await asio::async_write(s, rest, ec_token(ec));
}

/// Idle keep-alive connections to llama-servers, by port. A connection per
/// request would cost a connect and leave TIME_WAIT sockets under load. One
/// pool per I/O thread: a socket never changes threads, so no lock and no
/// re-registration with another reactor. It carries the thread's Deadlines,
/// which every Stream made there joins.
class UpstreamPool {
 public:
  explicit UpstreamPool(Deadlines& d) : deadlines(d) {}
  std::optional<Socket> take(int port) {
    auto& v = idle_[port];
    if (v.empty()) return std::nullopt;
    Socket s = std::move(v.back());
    v.pop_back();
    return s;
  }
  void give(int port, Socket s) {
    if (!s.is_open()) return;  // closed by its deadline at the last moment
    auto& v = idle_[port];
    if (v.size() < kPoolPerPort) v.push_back(std::move(s));
  }
  void drop(int port) { idle_.erase(port); }

  Deadlines& deadlines;

 private:
  std::map<int, std::vector<Socket>> idle_;
};

/// Watches a client socket for the peer going away while we wait on
/// something else (a load, the upstream). The handler only runs `on_close`
/// while the owner keeps it set; the owner clears it before its sockets go.
struct ClientWatch {
  std::function<void()> on_readable;
};

inline void arm_watch(Socket& sock, const std::shared_ptr<ClientWatch>& w) {
  sock.async_wait(Socket::wait_read, [w](error_code ec) {
    if (!ec && w->on_readable) w->on_readable();
  });
}

inline bool peer_closed(Socket& sock);

/// A watch (not yet armed) for a client waiting on llama-server: when the
/// client goes away it sets `client_gone` and closes the upstream connection,
/// which makes llama-server cancel the task.
inline std::shared_ptr<ClientWatch> upstream_cancelling_watch(Socket& client, Socket& upstream, bool& client_gone) {
  auto watch = std::make_shared<ClientWatch>();
  watch->on_readable = [&client, &upstream, &client_gone] {
    if (peer_closed(client)) {
      client_gone = true;
      error_code ignored;
      upstream.close(ignored);
    }
  };
  return watch;
}

/// True when the peer closed (EOF or reset); false when it sent data (a
/// pipelined request) or nothing is there. Sockets are non-blocking from
/// accept and connect on (write_all); one that is not is made so and stays
/// so. Turning blocking mode back on would also clear Asio's own
/// non-blocking flag while an async_write may wait in the reactor, whose
/// send would then block the I/O thread until the client read.
inline bool peer_closed(Socket& sock) {
  error_code ec;
  if (!sock.non_blocking()) sock.non_blocking(true, ec);
  if (ec) return false;
  char byte = 0;
  const size_t n = sock.receive(asio::buffer(&byte, 1), Socket::message_peek, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return false;
  return ec || n == 0;
}

// Hop-by-hop and per-connection fields are never forwarded.
inline bool hop_by_hop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_authenticate:
    case http::field::proxy_authorization:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::content_length:
    case http::field::host:
    case http::field::expect:
      return true;
    default:
      return false;
  }
}

inline std::string openai_error(const std::string& message, const std::string& type, int code) {
  return dump_utf8(json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}});
}

inline std::string error_type(int status) {
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

/// Releases an admitted request's in-flight count on every path out.
class Admitted {
 public:
  Admitted(Router& r, std::string model) : r_(r), model_(std::move(model)) {}
  ~Admitted() { r_.finish(model_); }
  Admitted(const Admitted&) = delete;
  Admitted& operator=(const Admitted&) = delete;

 private:
  Router& r_;
  std::string model_;
};

/// The request line and header llama-server gets for a relayed request:
/// the client's fields but hop-by-hop ones, Authorization and Origin; its
/// own Host and the body's Content-Length.
std::string relay_head(const http::request<http::string_body>& req, int port);
/// A request's head as Beast holds it (request line, fields, blank line).
std::string request_head(const http::request<http::string_body>& up);

/// How a relayed body is delimited for the client.
enum class Framing {
  length,   // the upstream's Content-Length
  chunked,  // no length (chunked, or until the upstream closes): chunks of what arrives
  close,    // no length and an HTTP/1.0 client (no chunks there): until serve closes
  none,     // no body at all (204, 304)
};
Framing response_framing(const std::optional<uint64_t>& length, bool done_at_header, bool upstream_chunked,
                         unsigned client_version);
/// llama-server's response as serve reads it. Beast parses; the header is
/// kept as the field lines serve may pass on and the few values it reads,
/// not as a basic_fields (a node, an allocation and a tree insert per field,
/// and lookups after: a tenth of serve's CPU per relayed request). The body
/// goes to the caller's buffer, as with http::buffer_body: set `body_data`
/// and `body_size` before each read; `body_size` is what is left of it.
class UpstreamParser final : public http::basic_parser<false> {
 public:
  UpstreamParser() {
    fields.reserve(256);  // one allocation for llama-server's few fields
    // Unlimited: Beast 1.74 treats body_limit(none) as "exceeded" for any Content-Length.
    body_limit(std::numeric_limits<std::uint64_t>::max());
  }
  UpstreamParser(const UpstreamParser&) = delete;
  UpstreamParser& operator=(const UpstreamParser&) = delete;
  UpstreamParser(UpstreamParser&&) = delete;
  UpstreamParser& operator=(UpstreamParser&&) = delete;
  ~UpstreamParser() override = default;

  int status = 0;
  std::string reason;         // as sent (often empty: llama-server's httplib sends one)
  bool event_stream = false;  // its (first) Content-Type is text/event-stream
  /// "Name: value\r\n" lines of the fields that may go on to the client:
  /// all but hop-by-hop ones, Server and CORS (serve's policy). Vary and
  /// X-Accel-Buffering are apart: whether they go on depends on the request.
  std::string fields, vary, accel;
  char* body_data = nullptr;
  size_t body_size = 0;

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int, error_code&) override {}
  void on_response_impl(int code, beast::string_view why, int, error_code&) override {
    status = code;
    reason.assign(why.data(), why.size());
  }
  void on_field_impl(http::field name, beast::string_view name_string, beast::string_view value, error_code&) override;
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  size_t on_body_impl(beast::string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  bool seen_type_ = false;
};

/// The client's response head for an upstream response: its fields but
/// hop-by-hop ones and the upstream's Server and CORS fields; with serve's
/// Server, CORS for an allowed `origin`, `X-Accel-Buffering: no` on SSE, the
/// framing's field and `Connection: close` when not `keep_alive`.
std::string relayed_response_head(const UpstreamParser& up, Framing framing, const std::optional<uint64_t>& length,
                                  bool sse, bool keep_alive, const std::string& origin);

}  // namespace detail

using namespace detail;  // NOLINT(google-build-using-namespace): internal header of two files

/// An exchange with llama-server whose response header has been read.
struct UpstreamExchange {
  std::optional<Stream> stream;
  beast::flat_buffer buf;
  std::optional<UpstreamParser> parser;
};

namespace ollama {
struct EmbedRequest;
}  // namespace ollama

/// A JSON request to llama-server answered in full (small bodies: embeddings, /tokenize).
struct JsonExchange {
  error_code ec;           // set: the exchange failed
  bool connected = false;  // false with ec: nothing answered (connection_refused: nothing listens)
  int status = 0;
  std::string text;
};

struct HttpServer::Impl {
  ServerOptions opts;
  Router& router;
  Metrics& metrics;
  gpu::GpuProbe& gpus;
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
  int active() const {
    int n = 0;
    for (size_t i = 0; i < iocs.size(); ++i) n += active_by_worker[i].n.load();
    return n;
  }
  std::atomic<bool> stopping{false};
  Endpoint bound;
  ModelCatalog cards;  // GGUF headers for /api/tags, /api/show, /api/ps
  /// The card of a configured model (cached by file size and mtime).
  Result<std::shared_ptr<const ModelCard>> card_of(const config::ModelConfig& m) {
    return cards.get(m.name, m.path, m.context.value_or(router.config().context), projector_path(m.args));
  }

  bool loopback = true;  // listening on loopback only: every connection comes over loopback

  Impl(ServerOptions o, Router& r, Metrics& m, gpu::GpuProbe& g)
      : opts(std::move(o)), router(r), metrics(m), gpus(g), loopback(is_loopback(opts.listen)) {
    for (int i = 0; i < std::max(1, opts.threads); ++i) {
      iocs.push_back(std::make_unique<asio::io_context>(1));
      deadlines.push_back(std::make_unique<Deadlines>());
      pools.push_back(std::make_unique<UpstreamPool>(*deadlines.back()));
    }
    active_by_worker = std::make_unique<ActiveCount[]>(iocs.size());
    acceptor = std::make_unique<Acceptor>(*iocs[0]);
  }

  awaitable<void> listen();
  /// Once a second, closes the thread's Streams past their deadline.
  awaitable<void> sweep(Deadlines& d) const;
  awaitable<void> session(Socket sock, size_t worker);
  /// `via_loopback`: the connection came in over loopback (a browser on this
  /// machine may be behind it): the Host must be one of ours (DNS rebinding).
  awaitable<bool> handle(Stream& client, http::request<http::string_body>& req, UpstreamPool& pool, bool via_loopback);
  awaitable<bool> proxy(Stream& client, http::request<http::string_body>& req, std::string_view route,
                        const std::string& origin, int& status, UpstreamPool& pool);
  awaitable<Ticket> wait_for(Stream& client, const std::string& model, Launch needs);
  /// Connects (a pooled connection first, then a fresh one), sends `up` and
  /// reads the response header. connection_refused: nothing listens there.
  awaitable<error_code> open_upstream(UpstreamPool& pool, int port, http::request<http::string_body>& up,
                                      UpstreamExchange& x) const;
  /// The same with the request already written out: `head` (request line
  /// and fields, ending in the blank line) then `body`, sent together.
  awaitable<error_code> open_upstream(UpstreamPool& pool, int port, const std::string& head, std::string_view body,
                                      UpstreamExchange& x) const;

  // Ollama's API (http_ollama.cpp). Each answers the request and returns keep-alive.
  awaitable<bool> ollama(Stream& client, http::request<http::string_body>& req, const std::string& path,
                         const std::string& origin, int& status, UpstreamPool& pool);
  awaitable<bool> ollama_generate(Stream& client, http::request<http::string_body>& req, bool chat,
                                  const nlohmann::json& body, const std::string& origin, int& status,
                                  UpstreamPool& pool);
  awaitable<bool> ollama_embed(Stream& client, http::request<http::string_body>& req, bool legacy,
                               const nlohmann::json& body, const std::string& origin, int& status, UpstreamPool& pool);
  awaitable<JsonExchange> post_json(UpstreamPool& pool, int port, std::string target, std::string body) const;
  /// Cuts the inputs longer than `limit` tokens (/tokenize, then /detokenize
  /// of the first `limit`); false with `why` when none could be cut.
  awaitable<bool> truncate_inputs(UpstreamPool& pool, int port, int64_t limit, ollama::EmbedRequest& e,
                                  std::string& why) const;
  std::string ollama_tags();
  std::string ollama_ps();
  awaitable<bool> relay(Stream& client, http::request<http::string_body>& req, const std::string& model, int port,
                        const std::string& origin, int& status, UpstreamPool& pool);
  awaitable<bool> reply(Stream& client, const http::request<http::string_body>& req, int status,
                        const std::string& type, std::string body, const std::string& origin) const;
  awaitable<void> too_large(Stream& client);
  /// Answers a request that cannot be read on (malformed, ambiguous framing,
  /// fields too large) with `status` and `message`, framed, and says the
  /// connection closes (RFC 9112 9.6): the caller closes it.
  awaitable<void> refuse(Stream& client, int status, const std::string& message);
  bool authorized(const http::request<http::string_body>& req) const;
  std::string models_json();
  std::string metrics_text();
};

}  // namespace llamactl::serve
