#pragma once
// Ollama's API on serve: the native routes, answered from the config, the
// GGUF headers and the router; chat/generate/embed translated to
// llama-server's OpenAI endpoints by serve/ollama.h (pure) and streamed back
// as NDJSON, one line per upstream chunk, as it arrives.

#include "serve/exchange.h"

namespace llamactl::serve {

awaitable<void> ollama_version(Exchange& ex);
awaitable<void> ollama_tags(Exchange& ex);
awaitable<void> ollama_ps(Exchange& ex);
awaitable<void> ollama_show(Exchange& ex);
awaitable<void> ollama_pull(Exchange& ex);
awaitable<void> ollama_chat(Exchange& ex);
awaitable<void> ollama_generate(Exchange& ex);
awaitable<void> ollama_embed(Exchange& ex);
awaitable<void> ollama_embeddings(Exchange& ex);  // the legacy route
/// push, create, copy, delete, blobs: serve serves the models of its config.
awaitable<void> ollama_unsupported(Exchange& ex);

}  // namespace llamactl::serve
