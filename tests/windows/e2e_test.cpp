// llamactl.exe end to end on Windows (run under Wine in CI): gpus and status
// against a saved Windows nvidia-smi screen and against the mock nvidia-smi
// built for Windows, and a load/unload of the fake llama-server built for
// Windows. Each test has its own temporary state dir and free ports; every
// server a test starts is ended by pid when the test ends.

#include <windows.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "platform/platform.h"
#include "unit/gguf_writer.h"
#include "unit/test_dir.h"
#include "unit/wait.h"

using nlohmann::json;
using namespace std::chrono_literals;
namespace platform = llamactl::platform;
using llamactl::testing::eventually;
using llamactl::testing::read_text;
using llamactl::testing::TempDir;

namespace {

json parse(const std::string& out) {
  try {
    return json::parse(out);
  } catch (const std::exception& e) {
    return json{{"__parse_error", e.what()}, {"__out", out}};
  }
}

int free_base_port() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int base = 20000 + static_cast<int>(rd() % 400) * 100;
    bool ok = true;
    for (int p = base; p < base + 10 && ok; ++p) ok = platform::port_available(p);
    if (ok) return base;
  }
  return 45000;
}

// A state dir, a config naming the fake llama-server, and the mock
// nvidia-smi's GPU files, as tests/integration/harness.h has them on Linux.
class WinSandbox {
 public:
  WinSandbox() : base_port_(free_base_port()) {
    std::filesystem::create_directories(dir_ / "gpus/procs");
    set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3", "1 0 81559 0 NVIDIA H100 80GB HBM3"});
    // A TOML literal string keeps a Windows path's backslashes as they are.
    std::ofstream(dir_ / "llamactl.toml")
        << "llama_server = '" << FAKE_LLAMA_SERVER << "'\nbase_port = " << base_port_ << "\n";
  }
  ~WinSandbox() {
    // End every server this sandbox's state knows, by pid, with what it started.
    const json st = parse(read_text(dir_ / "state/state.json"));
    if (st.contains("instances"))
      for (const auto& i : st["instances"])
        if (i.value("pid", int64_t{0}) > 0) platform::signal_group(i["pid"].get<int64_t>(), platform::Signal::kill);
  }
  WinSandbox(const WinSandbox&) = delete;
  WinSandbox& operator=(const WinSandbox&) = delete;

  void set_gpus(const std::vector<std::string>& lines) const {
    std::ofstream out(dir_ / "gpus/gpus");
    for (const auto& l : lines) out << l << "\n";
  }
  std::string model(const std::string& name) const {
    const std::string p = dir_ / (name + ".gguf");
    if (!std::filesystem::exists(p)) llamactl::testing::write_gguf(p, llamactl::testing::GgufSpec{});
    return p;
  }

  struct Run {
    int exit_code = -1;
    std::string out, err;
    json j() const { return parse(out); }
  };
  // llamactl.exe ARGS with this sandbox's state dir and config, the mock
  // nvidia-smi (or `fixture`), and `env` (NAME=VALUE) for this run only.
  Run run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) const {
    std::vector<std::pair<std::string, std::string>> vars = {
        {"LLAMACTL_NVIDIA_SMI", FAKE_NVIDIA_SMI}, {"FAKE_GPU_DIR", dir_ / "gpus"}, {"LLAMACTL_GPU_FIXTURE", ""}};
    for (const auto& e : env) vars.emplace_back(e.substr(0, e.find('=')), e.substr(e.find('=') + 1));
    for (const auto& [k, v] : vars) ::SetEnvironmentVariableA(k.c_str(), v.empty() ? nullptr : v.c_str());
    std::vector<std::string> argv = {LLAMACTL_BIN, "--state-dir", dir_ / "state", "--config", dir_ / "llamactl.toml"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = platform::run_capture(argv, 60s);
    for (const auto& [k, v] : vars) ::SetEnvironmentVariableA(k.c_str(), nullptr);
    Run out;
    out.exit_code = r.timed_out ? -2 : r.exit_code;
    out.out = r.out;
    out.err = r.err + r.error;
    return out;
  }
  int base_port() const { return base_port_; }

 private:
  TempDir dir_;
  int base_port_;
};

bool alive(int64_t pid) {
  return platform::process_alive(pid, std::nullopt);
}

}  // namespace

TEST(WindowsE2e, GpusJsonFromASavedWindowsScreen) {
  WinSandbox sb;
  const std::string fixture = std::string(LLAMACTL_FIXTURES) + "/nvidia-smi/win-rtx2080s-610.62-wddm-table-load.txt";
  auto r = sb.run({"gpus", "--json"}, {"LLAMACTL_GPU_FIXTURE=" + fixture});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = r.j();
  ASSERT_EQ(j["gpu_status"].size(), 1u) << r.out;
  const json& g = j["gpu_status"][0];
  EXPECT_EQ(g["memory_used_mib"], 1366);
  EXPECT_EQ(g["memory_total_mib"], 8192);
  // Two ffmpeg.exe compute (type C) processes run beside the desktop: the GPU
  // is someone's, whatever the desktop rule makes of the rest.
  EXPECT_EQ(g["state"], "occupied_by_others") << g.dump();
  EXPECT_EQ(g["loadable"], false);
  bool ffmpeg = false;
  for (const auto& p : g["process_info"])
    ffmpeg = ffmpeg || p["process_name"].get<std::string>().find("ffmpeg.exe") != std::string::npos;
  EXPECT_TRUE(ffmpeg) << g.dump();
}

TEST(WindowsE2e, GpusAndStatusJsonFromTheMockNvidiaSmi) {
  WinSandbox sb;
  sb.set_gpus({"0 0 24564 0 NVIDIA GeForce RTX 4090", "1 2048 24564 35 NVIDIA GeForce RTX 4090"});
  auto r = sb.run({"gpus", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = r.j();
  EXPECT_EQ(j["mode"], "gpu") << r.out;
  ASSERT_EQ(j["gpu_status"].size(), 2u) << r.out;
  EXPECT_EQ(j["gpu_status"][0]["state"], "idle");
  EXPECT_EQ(j["gpu_status"][0]["loadable"], true);
  EXPECT_EQ(j["gpu_status"][1]["state"], "occupied_by_others");
  EXPECT_EQ(j["gpu_status"][1]["memory_used_mib"], 2048);

  auto s = sb.run({"status", "--json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.j()["instances"].size(), 0u) << s.out;
  EXPECT_EQ(s.j()["gpus"]["gpu_status"].size(), 2u) << s.out;
}

TEST(WindowsE2e, NoNvidiaSmiIsCpuMode) {
  WinSandbox sb;
  auto r = sb.run({"gpus", "--json"}, {"LLAMACTL_NVIDIA_SMI=C:\\no\\such\\nvidia-smi.exe"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.j()["mode"], "cpu") << r.out;
  EXPECT_NE(r.err.find("nvidia-smi"), std::string::npos) << r.err;
}

TEST(WindowsE2e, LoadStatusUnloadStopsTheServerGracefully) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json j = r.j();
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["gpus"], json::array({0}));
  EXPECT_EQ(j["port"], sb.base_port());
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["memory_used_mib"], 700) << "the mock sees the fake server's pid on GPU 0";
  const int64_t pid = j["pid"];
  EXPECT_TRUE(alive(pid));
  const std::string log_path = j["log"];
  const std::string log = read_text(log_path);
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=0 CUDA_DEVICE_ORDER=PCI_BUS_ID"), std::string::npos) << log;

  auto s = sb.run({"status", "--json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const json sj = s.j();
  ASSERT_EQ(sj["instances"].size(), 1u) << s.out;
  EXPECT_EQ(sj["instances"][0]["healthy"], true);
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["state"], "model_loaded");
  EXPECT_EQ(sj["gpus"]["gpu_status"][1]["state"], "idle");
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);

  // Loading it again is a no-op that says so (the Task Scheduler job).
  auto again = sb.run({"-q", "load", sb.model("tiny"), "--gpu", "0"});
  EXPECT_EQ(again.exit_code, 0) << again.err;

  auto u = sb.run({"unload", "tiny", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(u.j()["unloaded"][0]["stopped"], true) << u.out;
  EXPECT_EQ(u.j()["unloaded"][0]["killed"], false) << "the console Ctrl-C stopped it" << u.out;
  EXPECT_TRUE(eventually([&] { return !alive(pid); }));
  EXPECT_NE(read_text(log_path).find("cleaning up before exit"), std::string::npos) << read_text(log_path);
  EXPECT_EQ(sb.run({"status", "--json"}).j()["instances"].size(), 0u);
}

TEST(WindowsE2e, UnloadKillsAServerThatIgnoresTheStop) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("stubborn"), "--gpu", "1", "--json"}, {"FAKE_IGNORE_SIGTERM=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const int64_t pid = r.j()["pid"];
  auto u = sb.run({"unload", "stubborn", "--timeout", "1", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(u.j()["unloaded"][0]["killed"], true) << u.out;
  EXPECT_TRUE(eventually([&] { return !alive(pid); }));
}

TEST(WindowsE2e, AServerThatDiesIsReportedByStatusCheck) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const int64_t pid = r.j()["pid"];
  // Killed behind llamactl's back.
  ASSERT_TRUE(platform::signal_group(pid, platform::Signal::kill));
  ASSERT_TRUE(eventually([&] { return !alive(pid); }));
  auto check = sb.run({"status", "--check", "--json"});
  EXPECT_EQ(check.exit_code, 13) << check.err;
  EXPECT_EQ(check.j()["instances"][0]["state"], "dead") << check.out;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13) << "a later check still reports it";
  auto cleared = sb.run({"unload", "tiny"});
  EXPECT_EQ(cleared.exit_code, 0) << cleared.err;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
}
