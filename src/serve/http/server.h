#pragma once
// serve's listener: bind, start and stop; the accept loop; one session
// coroutine per connection (on one I/O thread from accept to close) that
// reads requests under deadlines and hands each to the dispatcher.
// Beast-free header.

#include <chrono>
#include <functional>
#include <memory>

#include "serve/http/request.h"
#include "serve/http/stream.h"
#include "serve/http/upstream.h"
#include "serve/http_server.h"

namespace llamactl::serve {

/// Answers one request; returns whether the connection carries on.
using Dispatcher = std::function<awaitable<bool>(Stream&, const Request&, UpstreamPool&, bool via_loopback)>;

class Server {
 public:
  Server(ServerOptions opts, Dispatcher dispatch, Metrics& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Status bind();
  Status start();
  Endpoint bound() const;
  void stop(std::chrono::milliseconds grace);
  int active() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace llamactl::serve
