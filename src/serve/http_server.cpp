#include "serve/http_server.h"

#include "serve/context.h"
#include "serve/http/server.h"
#include "serve/routes.h"

namespace llamactl::serve {

HttpServer::HttpServer(ServerOptions opts, Router& router, Metrics& metrics, gpu::GpuProbe& gpus)
    : ctx_(new ServeContext{opts, router, metrics, gpus, {}, GpuHistory(), {}, {}, {}}) {
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
  auto s = server_->start();
  // The model cards are read in the background from now on, so that the
  // first /api/tags finds them ready rather than reading every GGUF itself.
  if (s) ctx_->warm_cards();
  return s;
}

Endpoint HttpServer::bound() const {
  return server_->bound();
}

void HttpServer::config_changed() {
  ctx_->warm_cards();
}

int HttpServer::active() const {
  return server_->active();
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  // Status streams (GET /models/sse) never end by themselves: end them first,
  // so the grace is for the requests in flight.
  ctx_->router.close_feed();
  ctx_->cards.stop();  // HttpServer outlives serve's end (cmd/serve.cpp): its workers must end here
  server_->stop(grace);
}

void HttpServer::record_reading(const gpu::ProbeResult& reading, int64_t at_ms, bool streaming) {
  ctx_->history.record(reading, at_ms);
  ctx_->reading_at_ms = at_ms;
  ctx_->streaming = streaming;
  ++ctx_->readings;
}

}  // namespace llamactl::serve
