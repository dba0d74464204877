#pragma once
// serve's HTTP side, as cmd/serve.cpp sees it: the listener (http/server),
// the route table (routes) and the handlers over one ServeContext. Beast
// lives only in src/serve/http/{heads,upstream,server}.cpp.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gpu/probe.h"
#include "serve/metrics.h"
#include "serve/options.h"
#include "serve/router.h"
#include "util/result.h"

namespace llamactl::serve {

struct ServeContext;
class Server;

struct ServerOptions {
  Endpoint listen;
  std::string api_key;                                                   // empty: none
  uint64_t body_limit = 64ULL << 20;                                     // bytes; base64 images need room
  std::vector<std::string> origins;                                      // CORS patterns; others get 403
  std::vector<std::string> allowed_hosts;                                // Host names beyond loopback ones
  int threads = 2;                                                       // I/O threads
  std::chrono::milliseconds read_timeout{std::chrono::seconds(60)};      // a whole request, from its first byte
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};      // keep-alive connection with no request
  std::chrono::milliseconds write_timeout{std::chrono::seconds(60)};     // each write to a client
  std::chrono::milliseconds upstream_timeout{std::chrono::minutes(10)};  // llama-server silent (long prompts)
  std::chrono::milliseconds wait_timeout{std::chrono::minutes(11)};      // waiting for a load, safety net
};

class HttpServer {
 public:
  HttpServer(ServerOptions opts, Router& router, Metrics& metrics, gpu::GpuProbe& gpus);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and listens, without accepting yet: connections wait in the
  /// backlog until start(). Error kind port_in_use when the address is
  /// taken, usage when it is not this machine's.
  Status bind();
  /// Starts accepting and the I/O threads (binds first when bind() was not
  /// called).
  Status start();
  /// The address actually bound (port 0 resolved).
  Endpoint bound() const;
  /// Stops accepting, lets requests in flight finish for up to `grace`, then
  /// cuts the rest and joins the threads.
  void stop(std::chrono::milliseconds grace);
  /// The config was reloaded: the model cards of new and changed models are
  /// read in the background (those of removed ones are dropped).
  void config_changed();
  /// Open client requests (being read, waiting or streaming).
  int active() const;
  /// A new reading of the GPU monitor (taken at `at_ms`, wall clock): kept
  /// for the web page's history and pushed to its open event streams.
  void record_reading(const gpu::ProbeResult& reading, int64_t at_ms, bool streaming);

 private:
  std::unique_ptr<ServeContext> ctx_;
  std::unique_ptr<Server> server_;
};

}  // namespace llamactl::serve
