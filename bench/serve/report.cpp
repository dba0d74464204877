// bench_serve's tables (see report.h).

#include "serve/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "serve/common.h"

namespace bench_serve {
namespace {

/// Of one path's rounds at one concurrency, the one with the median req/s.
const LoadResult* median_round(const std::vector<LoadResult>& rs, const std::string& path, int conns) {
  std::vector<const LoadResult*> v;
  for (const auto& r : rs)
    if (r.conns == conns && r.path == path) v.push_back(&r);
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end(), [](const LoadResult* a, const LoadResult* b) { return a->rps < b->rps; });
  return v[(v.size() - 1) / 2];
}

void print_load_rows(const std::vector<LoadResult>& rs, const Options& o) {
  std::printf(
      "\n== throughput: POST /v1/chat/completions, max_tokens 1, non-streaming; %.1f s per run after %.1f s "
      "warm-up; of %d rounds, the median one by req/s ==\n",
      o.duration, o.warmup, o.rounds);
  std::printf("%-6s %5s %8s %8s %8s %8s %9s %8s %21s %7s %10s %s\n", "path", "conns", "req/s", "p50 ms", "p99 ms",
              "mean ms", "vs direct", "+p99 ms", "CPU us/req prx/up/cli", "prx cs", "idle/steal", "err/non-200/reconn");
  std::vector<std::string> order;
  for (const auto& r : rs)
    if (std::find(order.begin(), order.end(), r.path) == order.end()) order.push_back(r.path);
  for (int c : o.conns) {
    const LoadResult* direct = median_round(rs, "direct", c);
    for (const auto& path : order) {
      const LoadResult* m = median_round(rs, path, c);
      if (!m) continue;
      const auto& r = *m;
      std::string ratio = "-", added = "-";
      if (direct && &r != direct && direct->rps > 0) {
        char b[32];
        std::snprintf(b, sizeof b, "%.2fx", r.rps / direct->rps);
        ratio = b;
        std::snprintf(b, sizeof b, "%+.3f", r.p99 - direct->p99);
        added = b;
      }
      char cpu[64];
      auto us = [](double v) { return v < 0 ? std::string("-") : std::to_string(static_cast<int>(std::lround(v))); };
      std::snprintf(cpu, sizeof cpu, "%s/%s/%s", us(r.proxy_us).c_str(), us(r.upstream_us).c_str(),
                    us(r.client_us).c_str());
      char cs[32] = "-";
      if (r.proxy_cs >= 0) std::snprintf(cs, sizeof cs, "%.1f", r.proxy_cs);
      char idle[32] = "-";
      if (r.idle_pct >= 0) std::snprintf(idle, sizeof idle, "%.0f%%/%.0f%%", r.idle_pct, r.steal_pct);
      std::printf("%-6s %5d %8.0f %8.3f %8.3f %8.3f %9s %8s %21s %7s %10s %llu/%llu/%llu\n", r.path.c_str(), r.conns,
                  r.rps, r.p50, r.p99, r.mean, ratio.c_str(), added.c_str(), cpu, cs, idle,
                  static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.non200),
                  static_cast<unsigned long long>(r.reconnects));
      if (!r.first_error.empty()) std::printf("    first error: %s\n", r.first_error.c_str());
    }
  }
}

// serve against nginx, round by round (the runs of a round are next to each other in time).
void print_serve_vs_nginx(const std::vector<LoadResult>& rs, const Options& o) {
  bool header = false;
  for (int c : o.conns) {
    std::vector<double> tput, cpu, p99;
    std::string each;
    for (int round = 0; round < o.rounds; ++round) {
      const LoadResult *s = nullptr, *n = nullptr;
      for (const auto& r : rs)
        if (r.conns == c && r.round == round) {
          if (r.path == "serve") s = &r;
          if (r.path == "nginx") n = &r;
        }
      if (!s || !n || n->rps <= 0) continue;
      tput.push_back(s->rps / n->rps);
      if (s->proxy_us > 0 && n->proxy_us > 0) cpu.push_back(s->proxy_us / n->proxy_us);
      p99.push_back(s->p99 - n->p99);
      char b[16];
      std::snprintf(b, sizeof b, "%s%.2f", each.empty() ? "" : " ", s->rps / n->rps);
      each += b;
    }
    if (tput.empty()) continue;
    if (!header) std::printf("serve vs nginx (median of the rounds; each round's throughput ratio in brackets):\n");
    header = true;
    std::printf("  %2d conns: throughput %.2fx nginx's [%s], CPU per request %.2fx nginx's, p99 %+.3f ms vs nginx\n", c,
                median(tput), each.c_str(), cpu.empty() ? 0.0 : median(cpu), median(p99));
  }
}

// One path's row of the SSE table; its runs' median lateness, for the notes below it.
std::vector<double> print_sse_row(const std::string& name, const std::vector<SseRun>& runs) {
  std::vector<double> ttfb, first, total, gmean, gp50, gp99, gmax, lp50, lmax, coal;
  double worst = 0;
  int failed = 0;
  std::string err;
  for (const auto& r : runs) {
    if (!r.ok) {
      ++failed;
      err = r.error;
      continue;
    }
    ttfb.push_back(r.ttfb);
    first.push_back(r.first_event);
    total.push_back(r.total);
    gmean.push_back(r.gap_mean);
    gp50.push_back(r.gap_p50);
    gp99.push_back(r.gap_p99);
    gmax.push_back(r.gap_max);
    lp50.push_back(r.late_p50);
    lmax.push_back(r.late_max);
    coal.push_back(r.coalesced);
    worst = std::max(worst, r.gap_max);
  }
  std::printf("%-8s %8.3f %9.3f %9.1f %9.3f %9.3f %9.3f %9.3f %12.3f %10.3f %10.3f %9.0f\n", name.c_str(), median(ttfb),
              median(first), median(total), median(gmean), median(gp50), median(gp99), median(gmax), worst,
              median(lp50), median(lmax), median(coal));
  if (failed) std::printf("    %d run(s) failed: %s\n", failed, err.c_str());
  return lp50;
}

}  // namespace

void print_load_table(const std::vector<LoadResult>& rs, const Options& o) {
  print_load_rows(rs, o);
  print_serve_vs_nginx(rs, o);
  std::printf(
      "CPU us/req: CPU time per request (warm-up included) of the proxy (serve; nginx master+workers), the\n"
      "upstream process and this load generator; with N cores, req/s <= N x 1e6 / (their sum).\n"
      "prx cs: the proxy's context switches per request (all its threads).\n"
      "idle/steal: the machine's CPU time over the run (warm-up included, all CPUs) that was idle, and that the\n"
      "hypervisor took; a run that leaves CPUs idle is bound by wake-ups and latency, not by CPU.\n"
      "fake: the repo's fake llama-server alone (thread per connection, 100 requests per connection).\n");
}

void print_sse_table(const std::vector<std::string>& paths, const std::map<std::string, std::vector<SseRun>>& runs,
                     const Options& o) {
  std::printf(
      "\n== SSE: one stream of %d token events, upstream gap %.3f ms; medians of %d runs (worst max gap "
      "of all runs) ==\n",
      o.sse_tokens, o.sse_gap_ms, o.sse_runs);
  std::printf("%-8s %8s %9s %9s %9s %9s %9s %9s %12s %10s %10s %9s\n", "path", "TTFB ms", "1st ev ms", "total ms",
              "gap mean", "gap p50", "gap p99", "gap max", "worst max", "late p50", "late max", "coalesced");
  std::map<std::string, std::vector<double>> late_p50s;
  for (const auto& name : paths) late_p50s[name] = print_sse_row(name, runs.at(name));
  std::printf(
      "late: event k's arrival minus (k+1) x gap after the request was sent (includes the request's "
      "trip);\ncoalesced: token events that arrived in a read together with another one.\n");
  if (!late_p50s["serve"].empty() && !late_p50s["direct"].empty())
    std::printf(
        "through serve each event arrives %.3f ms later than direct (median lateness; includes the request's "
        "forward trip)\n",
        median(late_p50s["serve"]) - median(late_p50s["direct"]));
  if (!late_p50s["ollama"].empty() && !late_p50s["serve"].empty())
    std::printf(
        "the Ollama translation (SSE -> NDJSON) adds %.3f ms per streamed chunk (median lateness, ollama "
        "vs serve's OpenAI relay)\n",
        median(late_p50s["ollama"]) - median(late_p50s["serve"]));
}

}  // namespace bench_serve
