// GpuMonitor against the mock nvidia-smi (tests/fake/fake_nvidia_smi.cpp) in
// loop mode: real processes, pipes and timing. The mock answers from files
// in a temporary FAKE_GPU_DIR; a "process" is a file procs/PID naming a live
// pid (this test's own). Waits poll with deadlines; nothing sleeps blindly.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "gpu/monitor.h"
#include "platform/platform.h"
#include "support/temp_dir.h"
#include "support/wait.h"

using namespace llamactl::gpu;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using llamactl::testing::eventually;
namespace fs = std::filesystem;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct ProcStat {
  int pid = 0;
  char state = '?';
  int ppid = 0, pgrp = 0;
  std::string comm;
};

std::optional<ProcStat> proc_stat(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(in, s)) return std::nullopt;
  const auto open = s.find('('), close = s.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return std::nullopt;
  ProcStat st;
  st.pid = pid;
  st.comm = s.substr(open + 1, close - open - 1);
  std::istringstream rest(s.substr(close + 2));
  rest >> st.state >> st.ppid >> st.pgrp;
  return st;
}

std::vector<ProcStat> all_processes() {
  std::vector<ProcStat> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (auto st = proc_stat(std::stoi(name))) out.push_back(*st);
  }
  return out;
}

// Our mock nvidia-smi children, and every process in their groups (the
// helpers that "hang" mode forks).
std::set<int> mock_processes() {
  std::set<int> groups, out;
  const auto procs = all_processes();
  for (const auto& p : procs)
    if (p.ppid == ::getpid() && p.comm == "fake_nvidia_smi") groups.insert(p.pid);
  for (const auto& p : procs)
    if (groups.count(p.pgrp)) out.insert(p.pid);
  return out;
}

// Gone: no such process, or a zombie that is not ours to reap (init reaps it).
bool gone(int pid) {
  const auto st = proc_stat(pid);
  return !st || (st->state == 'Z' && st->ppid != ::getpid());
}

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "procs");
    std::ofstream(dir_ / "gpus") << "0 0 81559 0 NVIDIA H100 80GB HBM3\n1 0 81559 0 NVIDIA H100 80GB HBM3\n";
    ::setenv("FAKE_GPU_DIR", dir_.path().c_str(), 1);
    clear_switches();
  }
  void TearDown() override {
    clear_switches();
    ::unsetenv("FAKE_GPU_DIR");
  }
  static void clear_switches() {
    for (const char* v : {"FAKE_SMI_MODE", "FAKE_SMI_STREAM_DIE_AFTER", "FAKE_SMI_DELAY", "FAKE_SMI_DRIVER_MODEL"})
      ::unsetenv(v);
  }

  static MonitorOptions options(std::chrono::milliseconds interval = 100ms, std::chrono::milliseconds timeout = 2s) {
    return {FAKE_NVIDIA_SMI, "", interval, timeout};
  }
  // A GPU process for the mock: this test's own pid (alive), on one GPU.
  void add_proc(int pid, int gpu, int mib) const {
    std::ofstream(dir_ / ("procs/" + std::to_string(pid))) << gpu << " " << mib << " python3\n";
  }
  // A process with a type and a Windows name, as on a WDDM desktop.
  void add_typed(int pid, int gpu, const std::string& type, const std::string& name) const {
    std::ofstream(dir_ / ("procs/" + std::to_string(pid))) << gpu << " 0 " << name << "\ntype " << type << "\n";
  }
  // How often the mock printed its plain table.
  int table_runs() const {
    std::ifstream in(dir_ / "table_runs");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }
  void remove_proc(int pid) const { fs::remove(dir_ / ("procs/" + std::to_string(pid))); }

  llamactl::testing::TempDir dir_;
};

bool has_pid(const ProbeResult& r, int pid) {
  for (const auto& p : r.snapshot.processes)
    if (p.pid == pid) return true;
  return false;
}

std::string type_of(const ProbeResult& r, int pid) {
  for (const auto& p : r.snapshot.processes)
    if (p.pid == pid) return p.type.empty() ? "?" : p.type;
  return "absent";
}

bool warned_untyped(const ProbeResult& r) {
  for (const auto& w : r.snapshot.warnings)
    if (w.find("process types unknown") != std::string::npos) return true;
  return false;
}

constexpr const char* kEdge = "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe";
constexpr const char* kPython = "C:\\Users\\bob\\miniconda3\\python.exe";

// A live pid of our own to stand for one more process; stopped by pid.
struct Sleeper {
  Sleeper() : pid(::fork()) {
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  ~Sleeper() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;
  pid_t pid;
};

}  // namespace

TEST_F(MonitorTest, ReadingsArriveAndFollowTheProcessFiles) {
  GpuMonitor m(options());
  auto r = m.read();
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  ASSERT_EQ(r.snapshot.gpus.size(), 2u);
  EXPECT_TRUE(r.snapshot.processes.empty());
  ASSERT_TRUE(eventually([&] { return m.streaming() && m.read().source.find("-lms 100") != std::string::npos; }, 5s));
  const int me = ::getpid();
  add_proc(me, 1, 2048);
  ASSERT_TRUE(eventually(
      [&] {
        r = m.read();
        return has_pid(r, me) && r.snapshot.gpus.size() == 2 && r.snapshot.gpus[1].memory_used_mib == 2048;
      },
      5s));
  EXPECT_TRUE(r.snapshot.processes_known);
  EXPECT_EQ(r.snapshot.processes[0].used_memory_mib, 2048);
  EXPECT_EQ(r.snapshot.gpu_of(r.snapshot.processes[0]), 1);
  // read() answers from memory: no nvidia-smi run per call.
  const auto t = Clock::now();
  for (int i = 0; i < 100; ++i) (void)m.read();
  EXPECT_LT(ms_since(t), 50);
  const uint64_t before = m.readings();
  EXPECT_TRUE(eventually([&] { return m.readings() >= before + 3; }, 2s));  // ~10 per second
  EXPECT_TRUE(m.streaming());
}

TEST_F(MonitorTest, ProcessListBecomesEmptyWhenTheLastProcessGoes) {
  const int me = ::getpid(), parent = ::getppid();
  add_proc(me, 0, 1000);
  add_proc(parent, 1, 500);
  GpuMonitor m(options());
  ASSERT_TRUE(eventually([&] { return m.read().snapshot.processes.size() == 2; }, 5s));
  ASSERT_TRUE(eventually([&] { return m.streaming(); }, 5s));
  remove_proc(parent);
  ASSERT_TRUE(eventually(
      [&] {
        const auto r = m.read();
        return r.snapshot.processes.size() == 1 && has_pid(r, me);
      },
      5s));
  // The stream prints nothing at all now; silence means "no process".
  remove_proc(me);
  ProbeResult r;
  ASSERT_TRUE(eventually(
      [&] {
        r = m.read();
        return r.snapshot.processes.empty() && r.snapshot.gpus.size() == 2 && r.snapshot.gpus[0].memory_used_mib == 0;
      },
      5s));
  EXPECT_TRUE(r.snapshot.processes_known);
  EXPECT_TRUE(m.streaming());
}

TEST_F(MonitorTest, AStreamThatDiesIsRestarted) {
  ::setenv("FAKE_SMI_STREAM_DIE_AFTER", "5", 1);
  GpuMonitor m(options());
  std::set<int> seen;
  // Each run gives 5 readings, then one one-shot reading, a 1 s pause and a new run:
  // 1 + (5 + 1) + (5 + 1) readings take two runs.
  ASSERT_TRUE(eventually(
      [&] {
        for (int pid : mock_processes()) seen.insert(pid);
        return m.readings() >= 13;
      },
      8s))
      << m.readings() << " readings";
  EXPECT_TRUE(m.streaming());  // restarted, not fallen back
  EXPECT_FALSE(m.read().cpu_mode);
  EXPECT_GE(seen.size(), 4u);  // two runs of two streams at least
}

TEST_F(MonitorTest, AProgramThatPrintsOnceFallsBackToOneShotQueries) {
  ::setenv("FAKE_SMI_MODE", "noloop", 1);  // ignores -lms, like a script mock
  GpuMonitor m(options());
  ASSERT_TRUE(eventually([&] { return m.readings() >= 4; }, 5s));
  EXPECT_FALSE(m.streaming());
  const auto r = m.read();
  EXPECT_FALSE(r.cpu_mode) << r.reason;
  EXPECT_EQ(r.source, FAKE_NVIDIA_SMI);
  add_proc(::getpid(), 0, 300);
  EXPECT_TRUE(eventually([&] { return has_pid(m.read(), ::getpid()); }, 5s));
}

TEST_F(MonitorTest, AProgramThatFailsAtOnceIsCpuModeWithItsReason) {
  ::setenv("FAKE_SMI_MODE", "nodev", 1);
  GpuMonitor m(options());
  ASSERT_TRUE(eventually([&] { return m.readings() >= 3; }, 5s));
  EXPECT_FALSE(m.streaming());
  const auto r = m.read();
  EXPECT_TRUE(r.cpu_mode);
  EXPECT_NE(r.reason.find("No devices were found"), std::string::npos) << r.reason;
}

TEST_F(MonitorTest, AMissingProgramIsCpuModeWithAReason) {
  auto o = options();
  o.program = dir_ / "no-such-nvidia-smi";
  const auto t = Clock::now();
  GpuMonitor m(o);
  const auto r = m.read();
  EXPECT_LT(ms_since(t), 1000);
  EXPECT_TRUE(r.cpu_mode);
  EXPECT_NE(r.reason.find("cannot run"), std::string::npos) << r.reason;
  EXPECT_FALSE(m.streaming());
}

TEST_F(MonitorTest, AHangingProgramBlocksNeitherReadNorStop) {
  ::setenv("FAKE_SMI_MODE", "hang", 1);  // keeps stdout open, prints nothing, ignores nothing but SIGKILL
  auto t = Clock::now();
  GpuMonitor m(options(100ms, 300ms));
  const auto r = m.read();
  EXPECT_LT(ms_since(t), 300 + 300);  // the timeout, and some scheduling slack
  EXPECT_TRUE(r.cpu_mode);
  EXPECT_FALSE(r.reason.empty());
  // The streams are up (and silent) by now; then stop must not wait for them.
  std::set<int> kids;
  ASSERT_TRUE(eventually(
      [&] {
        kids = mock_processes();
        return m.streaming() && kids.size() >= 4;  // two streams, each with its forked helper
      },
      5s));
  t = Clock::now();
  m.stop();
  EXPECT_LT(ms_since(t), 300);
  for (int pid : kids) EXPECT_TRUE(eventually([&] { return gone(pid); }, 1s)) << "pid " << pid;
  m.stop();  // idempotent
  EXPECT_TRUE(m.read().cpu_mode);
}

TEST_F(MonitorTest, ItsNvidiaSmiChildrenAreGoneAfterStop) {
  GpuMonitor m(options());
  std::set<int> kids;
  ASSERT_TRUE(eventually(
      [&] {
        kids = mock_processes();
        return m.streaming() && kids.size() == 2;
      },
      5s));
  const auto t = Clock::now();
  m.stop();
  EXPECT_LT(ms_since(t), 300);
  for (int pid : kids) EXPECT_TRUE(gone(pid)) << "pid " << pid;
  EXPECT_TRUE(mock_processes().empty());
  // The last reading stays readable.
  EXPECT_FALSE(m.read().cpu_mode);
}

TEST_F(MonitorTest, AFixtureIsReadEachInterval) {
  const std::string fixture = dir_ / "smi.csv";
  std::ofstream(fixture) << "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 4111, 81559, 0\n"
                            "GPU-aaaa, 416, python3, 4102\n";
  auto o = options();
  o.fixture = fixture;
  GpuMonitor m(o);
  const auto r = m.read();
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  EXPECT_EQ(r.source, "fixture " + fixture);
  EXPECT_EQ(r.snapshot.processes.size(), 1u);
  EXPECT_TRUE(eventually([&] { return m.readings() >= 3; }, 5s));
  EXPECT_FALSE(m.streaming());
}

TEST_F(MonitorTest, OptionsComeFromTheEnvironmentAsMakeProbeReadsIt) {
  ::setenv("LLAMACTL_NVIDIA_SMI", "/opt/smi", 1);
  ::setenv("LLAMACTL_GPU_FIXTURE", "/tmp/f.txt", 1);
  auto o = monitor_options_from_env(250ms, 3s);
  EXPECT_EQ(o.fixture, "/tmp/f.txt");
  EXPECT_EQ(o.interval, 250ms);
  EXPECT_EQ(o.timeout, 3s);
  ::unsetenv("LLAMACTL_GPU_FIXTURE");
  o = monitor_options_from_env(1s, 5s);
  EXPECT_EQ(o.fixture, "");
  EXPECT_EQ(o.program, "/opt/smi");
  ::unsetenv("LLAMACTL_NVIDIA_SMI");
  EXPECT_EQ(monitor_options_from_env(1s, 5s).program, "nvidia-smi");
}

// ---- platform::LineStream, the child-with-a-pipe under the monitor ----

// A Windows desktop GPU (WDDM): compute-apps lists the apps that draw with
// the CUDA jobs and without types; the plain table tells them apart.
TEST_F(MonitorTest, OnAWddmGpuTheTableGivesEachProcessItsTypeFirstReadingAndLater) {
  ::setenv("FAKE_SMI_DRIVER_MODEL", "WDDM", 1);
  const int me = ::getpid(), parent = ::getppid();
  add_typed(me, 0, "C+G", kEdge);
  add_typed(parent, 1, "C", kPython);
  GpuMonitor m(options());
  // The first reading goes out untyped (cautious), then again with the table's types.
  ProbeResult r;
  ASSERT_TRUE(eventually(
      [&] {
        r = m.read();
        return type_of(r, me) == "C+G";
      },
      5s))
      << type_of(r, me);
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  EXPECT_EQ(r.snapshot.gpus[0].driver_model, "WDDM");
  EXPECT_EQ(type_of(r, me), "C+G");
  EXPECT_EQ(type_of(r, parent), "C");
  EXPECT_FALSE(warned_untyped(r));
  ASSERT_TRUE(eventually([&] { return m.streaming(); }, 5s));
  // A process that appears later gets its type from a new run of the table.
  Sleeper terminal;
  add_typed(terminal.pid, 0, "G", "C:\\Program Files\\WindowsApps\\WindowsTerminal.exe");
  EXPECT_TRUE(eventually([&] { return type_of(m.read(), terminal.pid) == "G"; }, 5s))
      << type_of(m.read(), terminal.pid);
  // The same from the one-shot probe the CLI uses.
  NvidiaSmiProbe probe(FAKE_NVIDIA_SMI, 2s);
  r = probe.read();
  EXPECT_EQ(type_of(r, me), "C+G");
  EXPECT_EQ(type_of(r, parent), "C");
  EXPECT_EQ(type_of(r, terminal.pid), "G");
}

TEST_F(MonitorTest, ATableThatFailsLeavesTheProcessesUntypedWithAWarning) {
  ::setenv("FAKE_SMI_DRIVER_MODEL", "WDDM", 1);
  ::setenv("FAKE_SMI_MODE", "notable", 1);
  const int me = ::getpid();
  add_typed(me, 0, "C+G", kEdge);
  GpuMonitor m(options());
  ProbeResult r;
  ASSERT_TRUE(eventually(
      [&] {
        r = m.read();
        return warned_untyped(r);
      },
      5s));
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  EXPECT_EQ(type_of(r, me), "?");
  r = NvidiaSmiProbe(FAKE_NVIDIA_SMI, 2s).read();
  EXPECT_EQ(type_of(r, me), "?");
  ASSERT_TRUE(warned_untyped(r));
  EXPECT_NE(r.snapshot.warnings.back().find("the table is switched off"), std::string::npos)
      << r.snapshot.warnings.back();
}

TEST_F(MonitorTest, OffWddmTheTableIsNeverRun) {
  add_proc(::getpid(), 0, 1024);
  GpuMonitor m(options());
  ASSERT_TRUE(eventually([&] { return m.streaming() && has_pid(m.read(), ::getpid()); }, 5s));
  const uint64_t before = m.readings();
  ASSERT_TRUE(eventually([&] { return m.readings() >= before + 5; }, 5s));
  (void)NvidiaSmiProbe(FAKE_NVIDIA_SMI, 2s).read();
  EXPECT_EQ(table_runs(), 0);  // memory decides there: no table, ever
  EXPECT_EQ(type_of(m.read(), ::getpid()), "?");
}

TEST_F(MonitorTest, OnWddmTheTableRunsOnceAndThenOncePerNewProcess) {
  ::setenv("FAKE_SMI_DRIVER_MODEL", "WDDM", 1);
  add_typed(::getpid(), 0, "C+G", kEdge);
  GpuMonitor m(options());
  ASSERT_TRUE(eventually([&] { return m.streaming() && type_of(m.read(), ::getpid()) == "C+G"; }, 5s));
  const uint64_t before = m.readings();
  ASSERT_TRUE(eventually([&] { return m.readings() >= before + 10; }, 5s));  // a second of readings
  EXPECT_EQ(table_runs(), 1);
  Sleeper job;
  add_typed(job.pid, 0, "C", kPython);
  ASSERT_TRUE(eventually([&] { return type_of(m.read(), job.pid) == "C"; }, 5s));
  const uint64_t later = m.readings();
  ASSERT_TRUE(eventually([&] { return m.readings() >= later + 10; }, 5s));
  EXPECT_EQ(table_runs(), 2);
}

TEST_F(MonitorTest, ANewCudaJobShowsBeforeItsTypeIsKnownAndAHangingTableBlocksNothing) {
  ::setenv("FAKE_SMI_DRIVER_MODEL", "WDDM", 1);
  ::setenv("FAKE_SMI_MODE", "tablehang", 1);
  const int me = ::getpid();
  add_typed(me, 0, "C", kPython);
  auto o = options();
  o.timeout = 10s;  // the table hangs 10 s; readings must not wait for it
  auto m = std::make_unique<GpuMonitor>(o);
  const auto t0 = Clock::now();
  auto r = m->read();
  EXPECT_LT(ms_since(t0), 3000);
  ASSERT_FALSE(r.cpu_mode) << r.reason;
  EXPECT_TRUE(has_pid(r, me));  // untyped: an occupant until the table says otherwise
  EXPECT_EQ(type_of(r, me), "?");
  EXPECT_TRUE(eventually([&] { return table_runs() >= 1; }, 5s));
  // stop() kills the hanging table at once.
  const auto t1 = Clock::now();
  m->stop();
  EXPECT_LT(ms_since(t1), 2000);
  m.reset();
}

TEST(LineStream, GivesLinesWithoutEndingsAndAnUnterminatedLastOne) {
  llamactl::platform::LineStream s;
  ASSERT_TRUE(s.start({"sh", "-c", "printf 'a\\r\\nb\\n'; sleep 0.05; printf 'c'"}));
  std::vector<std::string> lines;
  const auto until = Clock::now() + 5s;
  bool eof = false;
  while (!eof && Clock::now() < until) {
    auto got = s.read_lines(100ms);
    lines.insert(lines.end(), got.lines.begin(), got.lines.end());
    eof = got.eof;
  }
  EXPECT_TRUE(eof);
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(eventually([&] { return s.exit_code() == 0; }, 1s));
}

TEST(LineStream, ReadKeepsItsDeadlineAndKillEndsTheWholeGroup) {
  llamactl::platform::LineStream s;
  // The background sleep holds the pipe as a wedged helper would.
  ASSERT_TRUE(s.start({"sh", "-c", "sleep 30 & exec sleep 30"}));
  const int pid = static_cast<int>(s.pid());
  std::set<int> group;
  ASSERT_TRUE(eventually(
      [&] {
        group.clear();
        for (const auto& p : all_processes())
          if (p.pgrp == pid) group.insert(p.pid);
        return group.size() == 2;
      },
      5s));
  auto t = Clock::now();
  const auto got = s.read_lines(100ms);
  EXPECT_TRUE(got.lines.empty());
  EXPECT_FALSE(got.eof);
  EXPECT_GE(ms_since(t), 95);
  EXPECT_LT(ms_since(t), 300);
  t = Clock::now();
  s.kill();
  EXPECT_LT(ms_since(t), 150);
  for (int p : group) EXPECT_TRUE(eventually([&] { return gone(p); }, 1s)) << "pid " << p;
  EXPECT_EQ(s.exit_code(), -1);  // killed by a signal, and reaped
  EXPECT_TRUE(s.read_lines(10ms).eof);
}

TEST(LineStream, AProgramThatCannotRunIsAnError) {
  llamactl::platform::LineStream s;
  const auto st = s.start({"/nonexistent/nvidia-smi"});
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("/nonexistent/nvidia-smi"), std::string::npos);
  EXPECT_TRUE(s.read_lines(10ms).eof);
}

TEST(LineStream, AWakerEndsALongWaitFromAnotherThread) {
  llamactl::platform::LineStream s;
  ASSERT_TRUE(s.start({"sleep", "30"}));
  llamactl::platform::Waker waker;
  std::thread setter([&] {
    std::this_thread::sleep_for(50ms);
    waker.set();
  });
  const auto t = Clock::now();
  const auto got = s.read_lines(10s, &waker);
  setter.join();
  EXPECT_LT(ms_since(t), 1000);
  EXPECT_FALSE(got.eof);
  // It stays set: the next wait ends at once too.
  const auto t2 = Clock::now();
  (void)s.read_lines(10s, &waker);
  EXPECT_LT(ms_since(t2), 100);
}
