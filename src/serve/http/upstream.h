#pragma once
// serve's side of llama-server: a pool of idle keep-alive connections per
// I/O thread, one call (request out, head in, body read piece by piece or
// collected), and post_json for serve's own small requests. Beast-free
// header; upstream.cpp parses with Beast.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "serve/http/heads.h"
#include "serve/http/stream.h"

namespace llamactl::serve {

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr size_t kPoolPerPort = 64;

struct UpstreamTimeouts {
  std::chrono::milliseconds write{std::chrono::seconds(60)};  // sending a request
  std::chrono::milliseconds read{std::chrono::minutes(10)};   // llama-server silent (long prompts)
};

/// Idle keep-alive connections to llama-servers, by port. A connection per
/// request would cost a connect and leave TIME_WAIT sockets under load. One
/// pool per I/O thread: a socket never changes threads, so no lock and no
/// re-registration with another reactor. It carries the thread's Deadlines,
/// which every Stream made there joins.
class UpstreamPool {
 public:
  UpstreamPool(Deadlines& d, UpstreamTimeouts t) : deadlines(d), timeouts(t) {}
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
  const UpstreamTimeouts timeouts;

 private:
  std::map<int, std::vector<Socket>> idle_;
};

/// One request to llama-server whose response head has been read.
class UpstreamCall {
 public:
  UpstreamCall();
  ~UpstreamCall();
  UpstreamCall(const UpstreamCall&) = delete;
  UpstreamCall& operator=(const UpstreamCall&) = delete;
  UpstreamCall(UpstreamCall&&) noexcept;
  UpstreamCall& operator=(UpstreamCall&&) noexcept;

  const UpstreamHead& head() const;
  int status() const { return head().status; }
  std::optional<uint64_t> length() const;  // Content-Length
  bool done() const;                       // the whole message is read
  bool chunked() const;
  bool keep_alive() const;
  /// The whole body, when it came with the head (the usual non-streaming
  /// reply): it can go out from the read buffer, unparsed and uncopied.
  std::optional<std::string_view> whole_body() const;
  /// The next piece of the body into `buf` (at most `n` bytes), under the
  /// pool's read timeout. 0 is no error: a piece of framing only, or done().
  awaitable<size_t> read(char* buf, size_t n, error_code& ec);
  /// The rest of the body, appended to `out`; body_limit past `limit` bytes.
  awaitable<error_code> collect(std::string& out, uint64_t limit = 512ULL << 20);
  Stream& stream();
  /// The exchange is over: the connection goes back to `pool` when it may
  /// carry another request (kept alive, read to its end, nothing after it),
  /// else it closes.
  void done_with(UpstreamPool& pool, int port);
  void close();

 private:
  friend awaitable<error_code> open_upstream(UpstreamPool& pool, int port, std::string_view head, std::string_view body,
                                             UpstreamCall& call);
  struct State;
  std::unique_ptr<State> s_;
  std::chrono::milliseconds read_timeout_{};
};

/// Connects (a pooled connection first, then a fresh one), sends `head`
/// (request line and fields, ending in the blank line) and `body` together,
/// and reads the response head. connection_refused: nothing listens there.
/// A pooled connection that the server had closed is retried once, fresh.
awaitable<error_code> open_upstream(UpstreamPool& pool, int port, std::string_view head, std::string_view body,
                                    UpstreamCall& call);

/// A JSON request to llama-server answered in full (small bodies: embeddings, /tokenize).
struct JsonExchange {
  error_code ec;           // set: the exchange failed
  bool connected = false;  // false with ec: nothing answered (connection_refused: nothing listens)
  int status = 0;
  std::string text;
};
awaitable<JsonExchange> post_json(UpstreamPool& pool, int port, std::string_view target, std::string body);

}  // namespace llamactl::serve
