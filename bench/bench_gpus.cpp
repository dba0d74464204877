// Benchmark: wall time of `llamactl gpus --json`, (1) reading a fixture (the
// binary's own overhead) and (2) running a mock nvidia-smi that sleeps
// 25 ms per call, as a real H100 does (both queries run at the same time,
// so this should take ~25 ms, not 50).
//
// usage: bench_gpus LLAMACTL FAKE_NVIDIA_SMI FIXTURE [RUNS]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "platform/platform.h"

using namespace llamactl;

namespace {

struct Stats {
  double mean, median, p95, min;
};

Stats measure(const std::vector<std::string>& argv, int runs) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = platform::run_capture(argv, std::chrono::seconds(30));
    const auto t1 = std::chrono::steady_clock::now();
    if (!r.started || r.exit_code != 0) {
      std::fprintf(stderr, "run failed (exit %d): %s%s\n", r.exit_code, r.error.c_str(), r.err.c_str());
      std::exit(1);
    }
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  double sum = 0;
  for (double v : ms) sum += v;
  return {sum / static_cast<double>(ms.size()), ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 95 / 100)], ms[0]};
}

void report(const char* what, const Stats& s) {
  std::printf("%-44s mean %7.2f ms  median %7.2f ms  p95 %7.2f ms  min %7.2f ms\n", what, s.mean, s.median, s.p95, s.min);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s LLAMACTL FAKE_NVIDIA_SMI FIXTURE [RUNS]\n", argv[0]);
    return 2;
  }
  const std::string bin = argv[1], smi = argv[2], fixture = argv[3];
  const int runs = argc > 4 ? std::atoi(argv[4]) : 50;
  const std::string state = "/tmp/llamactl-bench-" + std::to_string(platform::current_pid());
  const std::vector<std::string> cmd = {bin, "gpus", "--json", "--state-dir", state};

  ::setenv("LLAMACTL_GPU_FIXTURE", fixture.c_str(), 1);
  report("gpus --json, fixture file", measure(cmd, runs));
  ::unsetenv("LLAMACTL_GPU_FIXTURE");

  ::setenv("LLAMACTL_NVIDIA_SMI", smi.c_str(), 1);
  ::setenv("FAKE_SMI_DELAY", "0.025", 1);
  const std::string gpus_dir = state + "-gpus";
  ::setenv("FAKE_GPU_DIR", gpus_dir.c_str(), 1);
  report("gpus --json, mock nvidia-smi 25 ms per call", measure(cmd, runs));
  ::setenv("FAKE_SMI_DELAY", "0", 1);
  report("gpus --json, mock nvidia-smi no delay", measure(cmd, runs));
  return 0;
}
