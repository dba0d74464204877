#pragma once
// The upstream bench_serve measures against: this program started by serve as
// the model's llama-server (`-m PATH --host H --port P ...`).

namespace bench_serve {

/// A one-thread epoll responder on --host:--port until SIGTERM or SIGINT:
/// GET /health 200, POST .../completions a fixed chat.completion, or with
/// "stream":true max_tokens SSE token events BENCH_SSE_GAP_MS apart, then a
/// finish event and [DONE]. 0 on a signal; 1 when it cannot listen.
int main_responder(int argc, char** argv);

}  // namespace bench_serve
