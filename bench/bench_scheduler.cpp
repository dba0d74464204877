// Benchmark: serve's scheduler under contention, end to end (the real
// binary, the mock nvidia-smi with two idle GPUs, the fake llama-server with
// a fixed time per request). Prints figures; no pass/fail.
//
//   swap:      models a and b, each needing a whole GPU, on ONE GPU; C clients
//              per model send R requests each, back to back. Every request is
//              served; the figure that matters is how few swaps (evictions)
//              serve needs: a scheduler that swaps per request thrashes.
//   scale-out: one model with one slot (parallel = 1) on TWO idle GPUs; C
//              clients send R requests each. Once with replicas = 1, once
//              with replicas = 2 (scale_after 500 ms): wall time, requests/s,
//              latency percentiles, and the instances that served.
//
// usage: bench_scheduler [--clients N] [--requests N] [--delay-ms MS] [--load-ms MS]
//   defaults: 4 clients per model, 5 requests each, 300 ms per request, 200 ms per load.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/serve_harness.h"

using namespace llamactl::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int clients = 4;
  int requests = 5;
  int delay_ms = 300;
  int load_ms = 200;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--clients" && has_value) {
      o.clients = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--requests" && has_value) {
      o.requests = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--delay-ms" && has_value) {
      o.delay_ms = std::max(0, std::atoi(argv[++i]));
    } else if (a == "--load-ms" && has_value) {
      o.load_ms = std::max(0, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: bench_scheduler [--clients N] [--requests N] [--delay-ms MS] [--load-ms MS]\n");
      std::exit(2);
    }
  }
  return o;
}

struct Run {
  int ok = 0, errors = 0;
  double wall_s = 0;
  std::vector<double> latency_ms;
};

/// Each client of `models` (clients per model) sends `requests` chats back to back.
Run drive(const ServeProcess& s, const std::vector<std::string>& models, const Options& o) {
  Run run;
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (const auto& model : models)
    for (int c = 0; c < o.clients; ++c)
      threads.emplace_back([&, model] {
        const std::string body =
            R"({"model":")" + model + R"(","messages":[{"role":"user","content":"hi"}],"max_tokens":3})";
        for (int i = 0; i < o.requests; ++i) {
          const auto t = Clock::now();
          const auto r = http_request(s.port(), "POST", "/v1/chat/completions", body,
                                      {"Content-Type: application/json"}, std::chrono::seconds(120));
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
          std::lock_guard lock(mu);
          (r.status == 200 ? run.ok : run.errors) += 1;
          run.latency_ms.push_back(ms);
        }
      });
  for (auto& t : threads) t.join();
  run.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(run.latency_ms.begin(), run.latency_ms.end());
  return run;
}

double pct(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5));
  return sorted[i];
}

void print(const char* label, const Run& r) {
  std::printf("  %-28s %3d ok %2d errors  %6.2f s  %6.2f req/s  p50 %7.0f ms  p95 %7.0f ms  max %7.0f ms\n", label,
              r.ok, r.errors, r.wall_s, static_cast<double>(r.ok) / std::max(r.wall_s, 1e-9), pct(r.latency_ms, 0.5),
              pct(r.latency_ms, 0.95), r.latency_ms.empty() ? 0 : r.latency_ms.back());
}

std::string delay_env(const Options& o) {
  return "FAKE_REQUEST_DELAY_MS=" + std::to_string(o.delay_ms);
}

void swap_scenario(const Options& o) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  // One instance per GPU (a GPU that runs one of ours takes no other): a and b take turns.
  sb.write_config("[models.a]\npath = \"" + sb.model("a") + "\"\n[models.b]\npath = \"" + sb.model("b") + "\"\n");
  ServeProcess s(sb, {}, {delay_env(o), "FAKE_LOAD_DELAY_MS=" + std::to_string(o.load_ms)});
  if (!s.ready()) {
    std::printf("swap: serve did not start:\n%s\n", s.output().c_str());
    return;
  }
  const Run r = drive(s, {"a", "b"}, o);
  std::printf(
      "swap: models a and b on one GPU, %d clients each, %d requests per client, %d ms per request, %d ms "
      "per load\n",
      o.clients, o.requests, o.delay_ms, o.load_ms);
  print("two models, one GPU", r);
  std::printf("  swaps (evictions): %.0f for %d requests; loads: a %.0f, b %.0f\n", metric(s, "llamactl_swaps_total"),
              r.ok + r.errors, metric(s, R"(llamactl_model_loads_total{model="a",result="ok"})"),
              metric(s, R"(llamactl_model_loads_total{model="b",result="ok"})"));
  s.terminate();
  sb.run({"unload", "--all"});
}

void scale_scenario(const Options& o, int replicas) {
  Sandbox sb;  // two idle GPUs
  sb.write_config("[models.hot]\npath = \"" + sb.model("hot") +
                  "\"\nparallel = 1\nreplicas = " + std::to_string(replicas) + "\nscale_after = \"500ms\"\n");
  ServeProcess s(sb, {}, {delay_env(o)});
  if (!s.ready()) {
    std::printf("scale-out: serve did not start:\n%s\n", s.output().c_str());
    return;
  }
  // Loaded first, so both runs measure serving, not the cold load.
  const auto warm = http_request(s.port(), "POST", "/v1/chat/completions",
                                 R"({"model":"hot","messages":[{"role":"user","content":"hi"}],"max_tokens":1})",
                                 {"Content-Type: application/json"}, std::chrono::seconds(60));
  if (warm.status != 200) std::printf("  warm-up failed: %d %s\n", warm.status, warm.body.c_str());
  const Run r = drive(s, {"hot"}, o);
  const std::string label = "replicas = " + std::to_string(replicas);
  print(label.c_str(), r);
  std::printf("  %-28s instances serving: %.0f, scale-outs: %.0f\n", "",
              metric(s, R"(llamactl_model_replicas{model="hot"})"),
              metric(s, R"(llamactl_model_scale_outs_total{model="hot"})"));
  s.terminate();
  sb.run({"unload", "--all"});
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  swap_scenario(o);
  std::printf(
      "\nscale-out: one model with one slot on two idle GPUs, %d clients, %d requests per client, %d ms per "
      "request\n",
      o.clients, o.requests, o.delay_ms);
  scale_scenario(o, 1);
  scale_scenario(o, 2);
  return 0;
}
