#pragma once
// Fakes of Runtime's effects (GPU readings, processes, health probes) for the
// unit tests of Runtime and of serve's Router: no processes, no sockets.

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gpu/parse.h"
#include "runtime/runtime.h"

namespace llamactl::testing {

class FakeProbe final : public gpu::GpuProbe {
 public:
  std::string text = "0, GPU-a, H100, 0, 81559, 0\n1, GPU-b, H100, 0, 81559, 0\n";
  gpu::ProbeResult read() override { return gpu::result_from_text(text, "fake"); }
};

class FakeOps final : public runtime::ProcessOps {
 public:
  int64_t next_pid = 1000;
  std::set<int64_t> alive_pids;
  std::set<int64_t> ignores_term;
  std::set<int64_t> term_undeliverable;  // like a Windows process without our console
  std::map<int64_t, int> exited;         // pid -> exit code reported by try_reap
  std::set<int> taken_ports;
  std::vector<platform::SpawnSpec> spawned;
  std::vector<std::pair<int64_t, platform::Signal>> signals;

  Result<platform::Spawned> spawn(const platform::SpawnSpec& spec) override {
    spawned.push_back(spec);
    const int64_t pid = next_pid++;
    alive_pids.insert(pid);
    return platform::Spawned{pid, 77};
  }
  // An exited child is a zombie until reaped: not alive, but try_reap still has its code.
  bool alive(int64_t pid, uint64_t) override { return alive_pids.count(pid) > 0 && !exited.count(pid); }
  std::optional<int> try_reap(int64_t pid) override {
    const auto it = exited.find(pid);
    if (it == exited.end()) return std::nullopt;
    alive_pids.erase(pid);
    return it->second;
  }
  bool signal_group(int64_t pgid, platform::Signal sig) override {
    signals.emplace_back(pgid, sig);
    if (sig == platform::Signal::terminate && term_undeliverable.count(pgid)) return false;
    if (sig == platform::Signal::kill || !ignores_term.count(pgid)) alive_pids.erase(pgid);
    return true;
  }
  std::map<int64_t, std::string> owners;  // pid -> user; absent: alice
  std::optional<std::string> user_of(int64_t pid) override {
    const auto it = owners.find(pid);
    return it == owners.end() ? "alice" : it->second;
  }
  std::string me() override { return "alice"; }
  bool port_available(int port) override { return !taken_ports.count(port); }
};

class FakeHealth final : public runtime::HealthProbe {
 public:
  std::map<int, int> status;  // port -> HTTP status; absent: 200
  int health(int port, std::chrono::milliseconds) override {
    const auto it = status.find(port);
    return it == status.end() ? 200 : it->second;
  }
};

}  // namespace llamactl::testing
