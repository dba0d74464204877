#pragma once
// What serve's handlers share: its options, the router, the metrics, the GPU
// monitor and the model cards. One per HttpServer; the handlers are free
// functions over an Exchange, which points here.

#include <memory>

#include "gpu/probe.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/model_card.h"
#include "serve/router.h"

namespace llamactl::serve {

struct ServeContext {
  ServerOptions opts;
  Router& router;
  Metrics& metrics;
  gpu::GpuProbe& gpus;
  ModelCatalog cards;  // GGUF headers for /api/tags, /api/show, /api/ps, /v1/models

  /// The card of a configured model (cached by file size and mtime).
  Result<std::shared_ptr<const ModelCard>> card_of(const config::ModelConfig& m) {
    return cards.get(m.name, m.path, m.context.value_or(router.config().context), projector_path(m.args), m.embeddings);
  }
};

}  // namespace llamactl::serve
