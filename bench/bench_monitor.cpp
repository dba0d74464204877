// Benchmark: what one GPU reading costs with GpuMonitor (two `nvidia-smi
// -lms` streams) against a loop of one-shot NvidiaSmiProbe reads (two new
// nvidia-smi processes per reading). Prints readings/s and CPU time per
// reading (getrusage of this process + its reaped children); no pass/fail.
//
// usage: bench_monitor [PROGRAM [SECONDS [INTERVAL_MS]]]   (defaults: mock, 5, 100)
// Without PROGRAM (or with "") it runs the mock nvidia-smi on a temporary FAKE_GPU_DIR
// with two GPUs and one process (this one), so the mock streams both
// queries; the mock's own cost (file reads) stands in for NVML's. With
// PROGRAM=nvidia-smi on a GPU host the figures are the real ones.

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "gpu/monitor.h"
#include "gpu/probe.h"

using namespace llamactl;
using Clock = std::chrono::steady_clock;

namespace {

struct Cpu {
  double self = 0, children = 0;  // seconds, user + system
};

double seconds(const rusage& ru) {
  double s = 0;
  for (const timeval& tv : {ru.ru_utime, ru.ru_stime}) s += static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
  return s;
}

Cpu cpu_now() {
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return {seconds(self), seconds(children)};
}

struct Figures {
  uint64_t readings = 0;
  double wall_s = 0;
  Cpu cpu;  // used during the run
};

Cpu since(const Cpu& start) {
  const Cpu now = cpu_now();
  return {now.self - start.self, now.children - start.children};
}

void report(const char* what, const Figures& f) {
  const double n = static_cast<double>(f.readings);
  const auto per = [&](double s) { return n > 0 ? s * 1000 / n : 0.0; };
  std::printf(
      "%-30s %5llu readings in %4.2f s = %6.1f/s; CPU per reading %7.3f ms (llamactl %6.3f + nvidia-smi %6.3f)\n", what,
      static_cast<unsigned long long>(f.readings), f.wall_s, n / f.wall_s, per(f.cpu.self + f.cpu.children),
      per(f.cpu.self), per(f.cpu.children));
}

// The monitor as serve uses it: a reader asks for the reading each interval.
// Its children are reaped at stop(), so their CPU time is counted after it.
Figures run_monitor(const std::string& program, std::chrono::milliseconds interval, std::chrono::seconds length) {
  const Cpu cpu0 = cpu_now();
  const auto t0 = Clock::now();
  gpu::GpuMonitor m({program, "", interval, std::chrono::seconds(5)});
  bool cpu_mode = false;
  while (Clock::now() - t0 < length) {
    cpu_mode = m.read().cpu_mode || cpu_mode;
    std::this_thread::sleep_for(interval);
  }
  const bool streamed = m.streaming();
  const uint64_t n = m.readings();
  m.stop();
  Figures f{n, std::chrono::duration<double>(Clock::now() - t0).count(), since(cpu0)};
  if (!streamed) std::printf("note: the monitor fell back to one-shot queries\n");
  if (cpu_mode) std::printf("note: some readings were CPU mode: %s\n", m.read().reason.c_str());
  return f;
}

// One-shot reads back to back: the cost of a reading without the monitor.
Figures run_one_shots(const std::string& program, std::chrono::seconds length) {
  gpu::NvidiaSmiProbe probe(program, std::chrono::seconds(5));
  const Cpu cpu0 = cpu_now();
  const auto t0 = Clock::now();
  Figures f;
  while (Clock::now() - t0 < length) {
    (void)probe.read();
    ++f.readings;
  }
  f.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  f.cpu = since(cpu0);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string program = argc > 1 && *argv[1] ? argv[1] : FAKE_NVIDIA_SMI;
  const auto length = std::chrono::seconds(argc > 2 ? std::atoi(argv[2]) : 5);
  const auto interval = std::chrono::milliseconds(argc > 3 ? std::atoi(argv[3]) : 100);
  const std::string dir = "/tmp/llamactl-bench-monitor-" + std::to_string(::getpid());
  if (program == FAKE_NVIDIA_SMI) {
    std::filesystem::create_directories(dir + "/procs");
    std::ofstream(dir + "/gpus") << "0 0 81559 0 NVIDIA H100 80GB HBM3\n1 0 81559 0 NVIDIA H100 80GB HBM3\n";
    std::ofstream(dir + "/procs/" + std::to_string(::getpid())) << "1 4102 python3\n";
    ::setenv("FAKE_GPU_DIR", dir.c_str(), 1);
  }
  std::printf("program %s, %lld s each, monitor interval %lld ms\n", program.c_str(),
              static_cast<long long>(length.count()), static_cast<long long>(interval.count()));
  report("GpuMonitor (-lms streams)", run_monitor(program, interval, length));
  report("NvidiaSmiProbe, one-shot loop", run_one_shots(program, length));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
