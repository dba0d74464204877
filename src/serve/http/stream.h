#pragma once
// serve's sockets: the Asio types every HTTP file names, a Stream whose
// deadline is only a number (swept once a second), write_all's direct send,
// and the client watch. Asio only; Beast stays in heads.cpp, upstream.cpp
// and server.cpp.

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace llamactl::serve {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
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
using Clock = std::chrono::steady_clock;

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
/// `expires_never()`: a two-minute load must not be cut by a 60 s write
/// timeout. A Stream is an AsyncReadStream and AsyncWriteStream, so Beast's
/// HTTP reads and writes take it. It stays where it was made (its thread's
/// list holds its address).
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
  /// `ec`, or timed_out when the deadline is why the operation failed.
  error_code why(error_code ec) const { return ec && timed_out_ ? error_code(asio::error::timed_out) : ec; }
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
  // The rest: what the send did not take, the sent part never again.
  std::vector<asio::const_buffer> rest;
  size_t skip = sent;
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers); ++it) {
    asio::const_buffer b(*it);
    if (skip >= b.size()) {
      skip -= b.size();
      continue;
    }
    rest.push_back(b + skip);
    skip = 0;
  }
  co_await asio::async_write(s, rest, ec_token(ec));
}

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

/// For a handler that waits on a timer and reads nothing meanwhile (a
/// queued request, an event stream): when the client closes its end, gone()
/// turns true and the timer is cancelled, so the wait ends at once. Armed at
/// construction; stop() (also at destruction) ends the watch and cancels the
/// socket's pending wait. A local of the handler's coroutine, whose client
/// socket outlives it.
class ClientGoneWatch {
 public:
  ClientGoneWatch(Socket& client, std::shared_ptr<Timer> timer)
      : client_(client), watch_(std::make_shared<ClientWatch>()) {
    watch_->on_readable = [this, timer = std::move(timer)] {
      if (peer_closed(client_)) {
        gone_ = true;
        timer->cancel();
      }
    };
    arm_watch(client_, watch_);
  }
  ~ClientGoneWatch() { stop(); }
  ClientGoneWatch(const ClientGoneWatch&) = delete;
  ClientGoneWatch& operator=(const ClientGoneWatch&) = delete;

  void stop() {
    if (!watch_->on_readable) return;
    watch_->on_readable = nullptr;
    error_code ignored;
    client_.cancel(ignored);
  }
  bool gone() const { return gone_; }
  /// The client went away and something else found out (a failed write).
  void set_gone() { gone_ = true; }

 private:
  Socket& client_;
  std::shared_ptr<ClientWatch> watch_;
  bool gone_ = false;
};

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

}  // namespace llamactl::serve
