#pragma once
// What serve's handlers share: its options, the router, the metrics, the GPU
// monitor and the model cards. One per HttpServer; the handlers are free
// functions over an Exchange, which points here.

#include <atomic>
#include <memory>
#include <vector>

#include "gpu/probe.h"
#include "serve/gpu_history.h"
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
  // The GPU monitor's readings as the web page shows them (HttpServer::record_reading).
  GpuHistory history;
  std::atomic<int64_t> reading_at_ms{0};  // wall clock of the latest reading; 0: none yet
  std::atomic<uint64_t> readings{0};      // readings recorded so far: the page's event stream watches it
  std::atomic<bool> streaming{false};     // the monitor's nvidia-smi streams are up

  /// What the card of a configured model is read from.
  ModelSource source_of(const config::ModelConfig& m) const {
    return {m.name, m.path, m.context.value_or(router.config()->context), projector_path(m.args), m.embeddings};
  }
  /// The card of a configured model (cached by file size and mtime).
  Result<std::shared_ptr<const ModelCard>> card_of(const config::ModelConfig& m) { return cards.get(source_of(m)); }
  /// Starts reading the cards of every configured model in the background
  /// (serve's start; a config reload calls it again with the new models).
  void warm_cards() {
    std::vector<ModelSource> models;
    const auto cfg = router.config();
    for (const auto& [name, m] : cfg->models) models.push_back(source_of(m));
    cards.warm(std::move(models));
  }
};

}  // namespace llamactl::serve
