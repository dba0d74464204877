// Benchmark: wall time of `llamactl gpus --json`, (1) reading a fixture (the
// binary's own overhead) and (2) running a mock nvidia-smi that sleeps
// 25 ms per call, as a real H100 does (both queries run at the same time,
// so this should take ~25 ms, not 50).
//
// The mock is a minimal sh script written by this program (sleep, then one
// line of real H100 output), so the figure is llamactl's, not the mock's.
//
// usage: bench_gpus LLAMACTL FIXTURE [RUNS]

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
  return {sum / static_cast<double>(ms.size()), ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 95 / 100)],
          ms[0]};
}

void report(const char* what, const Stats& s) {
  std::printf("%-44s mean %7.2f ms  median %7.2f ms  p95 %7.2f ms  min %7.2f ms\n", what, s.mean, s.median, s.p95,
              s.min);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LLAMACTL FIXTURE [RUNS]\n", argv[0]);
    return 2;
  }
  const std::string bin = argv[1], fixture = argv[2];
  const int runs = argc > 3 ? std::atoi(argv[3]) : 50;
  const std::string state = "/tmp/llamactl-bench-" + std::to_string(platform::current_pid());
  const std::string mock = state + "-nvidia-smi";
  (void)platform::write_file_atomic(
      mock,
      "#!/bin/sh\n"
      "[ \"$BENCH_SMI_DELAY\" = 0 ] || sleep \"$BENCH_SMI_DELAY\"\n"
      "case \"$1\" in\n"
      "  --query-gpu=*) echo '0, GPU-af5e1943-4a06-ce7c-d399-cd0bad640fe9, NVIDIA H100 80GB HBM3, 4111, 81559, 0' ;;\n"
      "  *) echo 'GPU-af5e1943-4a06-ce7c-d399-cd0bad640fe9, 416, python3, 4102' ;;\n"
      "esac\n");
  ::chmod(mock.c_str(), 0755);
  const std::vector<std::string> cmd = {bin, "gpus", "--json", "--state-dir", state};

  ::setenv("LLAMACTL_GPU_FIXTURE", fixture.c_str(), 1);
  report("gpus --json, fixture file", measure(cmd, runs));
  ::unsetenv("LLAMACTL_GPU_FIXTURE");

  ::setenv("LLAMACTL_NVIDIA_SMI", mock.c_str(), 1);
  ::setenv("BENCH_SMI_DELAY", "0", 1);
  const Stats base = measure(cmd, runs);
  report("gpus --json, mock nvidia-smi, no delay", base);
  ::setenv("BENCH_SMI_DELAY", "0.025", 1);
  const Stats slow = measure(cmd, runs);
  report("gpus --json, mock nvidia-smi, 25 ms per call", slow);
  std::printf("cost of two 25 ms queries: %.1f ms (median; 25 = in parallel, 50 = one after the other)\n",
              slow.median - base.median);
  std::filesystem::remove_all(state);
  std::filesystem::remove(mock);
  return 0;
}
