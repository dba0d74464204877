#pragma once
// bench_serve's client side: plain HTTP/1.1 over loopback, the keep-alive load
// generator, and the timing of one SSE (or Ollama NDJSON) stream.

#include <chrono>
#include <cstdint>
#include <string>

namespace bench_serve {

std::string post_request(int port, const std::string& path, const std::string& body);
std::string get_request(int port, const std::string& path);

/// One request on a new connection; status (0 on failure).
int http_once(int port, const std::string& req, std::string* body = nullptr);

/// Repeats `req` on new connections until it answers `want`; false after `timeout`.
bool wait_status(int port, const std::string& req, int want, std::chrono::milliseconds timeout);

struct LoadResult {
  std::string path;
  int conns = 0;
  int round = 0;
  double rps = 0, p50 = 0, p99 = 0, mean = 0;
  uint64_t n = 0, errors = 0, non200 = 0, reconnects = 0;
  uint64_t total_ok = 0;  // 200s over the whole run, warm-up included (for CPU per request)
  double proxy_us = -1, upstream_us = -1, client_us = -1;  // CPU per request
  double proxy_cs = -1;                                    // the proxy's context switches per request
  double idle_pct = -1, steal_pct = -1;                    // the machine's, over the run (all CPUs)
  std::string first_error;
};

/// `conns` keep-alive connections, one thread each, POST /v1/chat/completions
/// (max_tokens 1) back to back for `warmup_s` + `duration_s`; the latencies
/// after the warm-up. The CPU and machine fields are left to the caller.
LoadResult run_load(const std::string& name, int port, int conns, double warmup_s, double duration_s);

struct SseRun {
  bool ok = false;
  std::string error;
  double ttfb = 0, first_event = 0, total = 0;
  double gap_mean = 0, gap_p50 = 0, gap_p99 = 0, gap_max = 0;
  double late_p50 = 0, late_max = 0;  // event arrival minus its schedule ((k+1) gaps after sending)
  int token_events = 0, coalesced = 0;
};

/// One stream of `tokens` events from an upstream `gap_ms` apart, timed event
/// by event. ollama: POST /api/chat through serve's translation; NDJSON lines
/// instead of SSE events, the done:true line instead of [DONE].
SseRun sse_once(int port, int tokens, double gap_ms, bool ollama = false);

}  // namespace bench_serve
