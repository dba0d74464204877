// Benchmark: `llamactl serve` as a reverse proxy. Prints figures; no pass/fail.
//
// The upstream is this program itself: started as `bench_serve -m PATH --host
// H --port P ...` (how serve starts a llama-server) it is a one-thread epoll
// responder that answers at once: GET /health 200, POST .../completions with
// a small fixed chat.completion, or with "stream":true an SSE stream of
// max_tokens token events spaced by BENCH_SSE_GAP_MS (headers at once, token
// k at (k+1) gaps after the request, then a finish event and [DONE]), one HTTP
// chunk per event, keep-alive without a request limit. serve starts it as the
// model's llama-server; the same process then serves all three paths:
//
//   1. throughput: C keep-alive connections (1, 16, 64), one thread each,
//      POST /v1/chat/completions {"max_tokens":1} back to back; requests/s,
//      p50 and p99 latency for (a) direct to the upstream, (b) through serve,
//      (c) through nginx (Debian's, proxy_buffering off, upstream keepalive)
//      when /usr/sbin/nginx exists; plus the repo's fake llama-server on its
//      own (direct) for reference, to show why it is not the upstream here.
//   2. SSE: one stream of N events, direct vs serve (vs nginx): time to first
//      byte, to the first data event, gaps between consecutive token events,
//      each event's lateness against the upstream's schedule, and how many
//      reads carried more than one event (a proxy that buffers shows those).
//   3. idle: serve's VmRSS/VmHWM, and its CPU (and its children's: the mock
//      nvidia-smi -lms streams of the GPU monitor) over a quiet period.
//
// Every process it starts is stopped by pid; the instance serve loaded is
// stopped with `llamactl unload --all`. A watchdog (--max-seconds) bounds the
// whole run.
//
// usage: bench_serve [--duration S] [--warmup S] [--rounds N] [--conns 1,16,64]
//                    [--sse-tokens N] [--sse-gap-ms MS] [--sse-runs N]
//                    [--idle-wait S] [--idle-measure S] [--nginx-workers N|auto]
//                    [--no-nginx] [--no-fake] [--pin] [--keep] [--max-seconds S]
//
// --pin: the proxy under test alone on the last CPU, all else on the others.
//
// The parts: responder.cpp (the upstream), load_client.cpp (the load and the
// SSE timing), driver.cpp (the processes and the three measurements),
// report.cpp (the tables), procs.cpp (/proc), options.cpp (this command line);
// loopback ports and sockets from tests/support/.

#include <cstring>

#include "serve/driver.h"
#include "serve/options.h"
#include "serve/responder.h"

int main(int argc, char** argv) {
  // serve starts us as its llama-server: `-m PATH --host H --port P ...`.
  if (argc > 1 && std::strcmp(argv[1], "-m") == 0) return bench_serve::main_responder(argc, argv);
  const auto o = bench_serve::parse_args(argc, argv);
  if (!o) {
    bench_serve::usage();
    return 2;
  }
  return bench_serve::run_bench(*o);
}
