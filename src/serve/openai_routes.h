#pragma once
// serve's own routes and the OpenAI-style ones: answered by serve (/, health,
// metrics, /v1/models) or relayed to the model's llama-server by the body's
// "model" (chat, completions, embeddings, Responses, Anthropic Messages,
// token counts, rerank), each chunk as it arrives.

#include "serve/exchange.h"

namespace llamactl::serve {

/// %XX escapes of a path segment decoded ("org%2Fmodel" -> "org/model"). Pure.
std::string percent_decoded(std::string_view s);

awaitable<void> root_page(Exchange& ex);
awaitable<void> health(Exchange& ex);
awaitable<void> metrics_page(Exchange& ex);
/// GET /v1/models: every configured model, with its load status.
awaitable<void> list_models(Exchange& ex);
/// GET /v1/models/{id} (OpenAI's models.retrieve), from the config.
awaitable<void> retrieve_model(Exchange& ex);

/// Relays to the model the body names: chat, completions, Responses, Messages, token counts.
awaitable<void> relay_generation(Exchange& ex);
/// The same for /v1/embeddings: the instance must run with --embeddings.
awaitable<void> relay_embeddings(Exchange& ex);
/// The same for rerank: the instance must run with --reranking.
awaitable<void> relay_rerank(Exchange& ex);

}  // namespace llamactl::serve
