#include "serve/http_server.h"

#include "serve/context.h"
#include "serve/http/server.h"
#include "serve/routes.h"

namespace llamactl::serve {

HttpServer::HttpServer(ServerOptions opts, Router& router, Metrics& metrics, gpu::GpuProbe& gpus)
    : ctx_(new ServeContext{opts, router, metrics, gpus, {}}) {
  ServeContext& ctx = *ctx_;
  server_ = std::make_unique<Server>(
      std::move(opts),
      [&ctx](Stream& client, const Request& req, UpstreamPool& pool, bool via_loopback) {
        return dispatch(ctx, client, req, pool, via_loopback);
      },
      metrics);
}

HttpServer::~HttpServer() {
  stop(std::chrono::milliseconds(0));
}

Status HttpServer::bind() {
  return server_->bind();
}

Status HttpServer::start() {
  return server_->start();
}

Endpoint HttpServer::bound() const {
  return server_->bound();
}

int HttpServer::active() const {
  return server_->active();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  // Status streams (GET /models/sse) never end by themselves: end them first,
  // so the grace is for the requests in flight.
  ctx_->router.close_feed();
  server_->stop(grace);
}

}  // namespace llamactl::serve
