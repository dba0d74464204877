// Benchmark: llamactl's own overhead in `load` and the cost of `status`.
//
//   1. load overhead: time from starting `llamactl load` until /health
//      answered 200 (llamactl's "ready_s"), minus the fake llama-server's
//      configured loading delay; and the whole command's wall time minus it
//      (that includes the second GPU reading for the memory report).
//   2. status wall time with 8 instances running.
// Both with the mock nvidia-smi sleeping 25 ms per call, as a real H100 does,
// and with no delay (the floor).
//
// usage: bench_lifecycle [RUNS]

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "integration/harness.h"

using namespace llamactl::testing;

namespace {

struct Stats {
  double mean, median, p95;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  return {sum / static_cast<double>(v.size()), v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 95 / 100)]};
}

void print(const std::string& what, const Stats& s) {
  std::printf("%-58s mean %7.1f ms  median %7.1f ms  p95 %7.1f ms\n", what.c_str(), s.mean, s.median, s.p95);
}

constexpr int kDelayMs = 500;

void bench_load(const std::string& smi_delay, int runs) {
  Sandbox sb;
  std::vector<double> ready, wall;
  const std::vector<std::string> env = {"FAKE_LOAD_DELAY_MS=" + std::to_string(kDelayMs),
                                        "FAKE_SMI_DELAY=" + smi_delay};
  for (int i = 0; i < runs; ++i) {
    auto r = sb.run({"load", sb.model("bench"), "--gpu", "0", "--json"}, env);
    if (r.exit_code != 0) {
      std::fprintf(stderr, "load failed: %s\n", r.err.c_str());
      std::exit(1);
    }
    ready.push_back(r.json()["ready_s"].get<double>() * 1000 - kDelayMs);
    wall.push_back(r.seconds * 1000 - kDelayMs);
    sb.run({"unload", "--all"}, env);
  }
  print("load: ready minus server delay, nvidia-smi " + smi_delay + " s/call", stats(ready));
  print("load: whole command minus server delay, nvidia-smi " + smi_delay + " s/call", stats(wall));
}

void bench_status(const std::string& smi_delay, int runs) {
  Sandbox sb;
  std::vector<std::string> gpus;
  for (int g = 0; g < 8; ++g) gpus.push_back(std::to_string(g) + " 0 81559 0 NVIDIA H100 80GB HBM3");
  sb.set_gpus(gpus);
  for (int g = 0; g < 8; ++g) {
    auto r = sb.run({"load", sb.model(std::string("m").append(std::to_string(g))), "--gpu", std::to_string(g)},
                    {"FAKE_LOAD_DELAY_MS=10"});
    if (r.exit_code != 0) {
      std::fprintf(stderr, "load failed: %s\n", r.err.c_str());
      std::exit(1);
    }
  }
  std::vector<double> wall;
  for (int i = 0; i < runs; ++i) {
    auto r = sb.run({"status", "--json"}, {"FAKE_SMI_DELAY=" + smi_delay});
    if (r.exit_code != 0 || r.json()["instances"].size() != 8) {
      std::fprintf(stderr, "status failed: %s\n", r.err.c_str());
      std::exit(1);
    }
    wall.push_back(r.seconds * 1000);
  }
  print("status --json, 8 instances, nvidia-smi " + smi_delay + " s/call", stats(wall));
  sb.run({"unload", "--all"});
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  bench_load("0.025", runs);
  bench_load("0", runs);
  bench_status("0.025", runs);
  bench_status("0", runs);
  return 0;
}
