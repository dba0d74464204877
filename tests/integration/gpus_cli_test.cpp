// The built binary with a mock nvidia-smi: output, exit codes, CPU fallback, timeouts.

#include <gtest/gtest.h>

#include "integration/harness.h"
#include "platform/platform.h"

using namespace llamactl::testing;

TEST(CliFrame, VersionHelpAndUsageErrors) {
  Sandbox sb;
  auto v = sb.run({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out, "llamactl " LLAMACTL_VERSION "\n");
  auto h = sb.run({"--help"});
  EXPECT_EQ(h.exit_code, 0);
  for (const char* cmd : {"gpus", "load", "unload", "status", "serve", "watch", "mcp"})
    EXPECT_NE(h.out.find(cmd), std::string::npos) << cmd;
  auto sub_help = sb.run({"load", "--help"});
  EXPECT_EQ(sub_help.exit_code, 0);
  EXPECT_NE(sub_help.out.find("--gpu"), std::string::npos);
  EXPECT_EQ(sb.run({"gpus", "--no-such-flag"}).exit_code, 2);
  EXPECT_EQ(sb.run({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(sb.run({}).exit_code, 2);
  EXPECT_EQ(sb.run({"gpus", "--threshold", "abc"}).exit_code, 2);
}

TEST(CliFrame, GlobalFlagsBeforeOrAfterSubcommand) {
  Sandbox sb;
  auto before = sb.run({"--json", "gpus"});
  auto after = sb.run({"gpus", "--json"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(before.json()["total_gpus"], 2);
  EXPECT_EQ(after.json()["total_gpus"], 2);
}

TEST(Gpus, HumanAndJsonWithMock) {
  Sandbox sb;
  sb.set_gpus({"0 1 24564 0 NVIDIA GeForce RTX 4090", "1 363 24564 3 NVIDIA GeForce RTX 4090"});
  auto h = sb.run({"gpus"});
  ASSERT_EQ(h.exit_code, 0) << h.err;
  EXPECT_EQ(h.out.rfind("Total GPUs: 2\n", 0), 0u) << h.out;
  EXPECT_NE(h.out.find("occupied by others"), std::string::npos);
  auto j = sb.run({"gpus", "--json"}).json();
  EXPECT_EQ(j["mode"], "gpu");
  EXPECT_EQ(j["gpu_status"][0]["state"], "idle");
  EXPECT_EQ(j["gpu_status"][0]["uuid"], "GPU-00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(j["gpu_status"][1]["state"], "occupied_by_others");
  EXPECT_EQ(j["gpu_status"][1]["process_info"][0]["process_name"], "unknown");
  // --threshold moves the line.
  auto t = sb.run({"gpus", "--json", "--threshold", "500"}).json();
  EXPECT_EQ(t["gpu_status"][1]["state"], "idle");
  EXPECT_EQ(t["threshold_mib"], 500);
}

TEST(Gpus, OthersProcessNamedWithPidAndUser) {
  Sandbox sb;
  const auto pid = sb.start_other("0", 2566, "/opt/torch/.venv/bin/python3");
  auto j = sb.run({"gpus", "--json"}).json();
  const auto& p = j["gpu_status"][0]["process_info"][0];
  EXPECT_EQ(p["pid"], pid);
  EXPECT_EQ(p["process_name"], "/opt/torch/.venv/bin/python3");
  EXPECT_EQ(p["used_memory_mib"], 2566);
  EXPECT_EQ(p["user"], llamactl::platform::current_user());
  EXPECT_EQ(j["gpu_status"][0]["loadable"], false);
}

// A Windows desktop GPU (the mock says WDDM, as nvidia-smi does there):
// Edge and Windows Terminal draw on GPU 0, someone's CUDA job runs on GPU 1.
TEST(Gpus, AWindowsDesktopGpuWithAppsOpenIsIdleAndACudaJobOccupiesIt) {
  Sandbox sb;
  sb.set_gpus({"0 800 8192 7 NVIDIA GeForce RTX 2080 SUPER", "1 300 8192 0 NVIDIA GeForce RTX 2080 SUPER"});
  const auto edge = sb.start_other("0", 0, "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe", "C+G");
  sb.start_other("0", 0, "C:\\Program Files\\WindowsApps\\Microsoft.WindowsTerminal\\WindowsTerminal.exe", "G");
  const auto job = sb.start_other("1", 0, "C:\\Users\\bob\\miniconda3\\python.exe", "C");
  const std::vector<std::string> wddm = {"FAKE_SMI_DRIVER_MODEL=WDDM"};
  auto r = sb.run({"gpus", "--json"}, wddm);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = r.json();
  const auto& g0 = j["gpu_status"][0];
  EXPECT_EQ(g0["state"], "idle") << g0.dump();
  EXPECT_EQ(g0["loadable"], true);
  EXPECT_EQ(g0["process_info"].size(), 0u);
  ASSERT_EQ(g0["desktop_apps"].size(), 2u) << g0.dump();
  const auto& app = g0["desktop_apps"][0]["pid"] == edge ? g0["desktop_apps"][0] : g0["desktop_apps"][1];
  EXPECT_EQ(app["pid"], edge);
  EXPECT_EQ(app["type"], "C+G");
  const auto& g1 = j["gpu_status"][1];
  EXPECT_EQ(g1["state"], "occupied_by_others");
  EXPECT_EQ(g1["process_info"][0]["pid"], job);
  EXPECT_EQ(g1["process_info"][0]["type"], "C");
  auto h = sb.run({"gpus"}, wddm);
  const auto line = h.out.find("GPU 0 desktop apps (they draw, type G/C+G; not occupants): ");
  ASSERT_NE(line, std::string::npos) << h.out;
  const std::string apps = h.out.substr(line, h.out.find('\n', line) - line);
  EXPECT_NE(apps.find("msedge.exe"), std::string::npos) << apps;
  EXPECT_NE(apps.find("WindowsTerminal.exe"), std::string::npos) << apps;
  EXPECT_NE(h.out.find("python.exe"), std::string::npos) << h.out;
  // A load goes to the desktop GPU; the CUDA job's GPU refuses, naming it.
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  auto refused = sb.run({"load", "tiny", "--gpu", "1"}, wddm);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("python.exe"), std::string::npos) << refused.err;
  auto loaded = sb.run({"load", "tiny", "--gpu", "0"}, wddm);
  EXPECT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_EQ(sb.run({"unload", "tiny"}, wddm).exit_code, 0);
  // Without the table, nothing tells an app from a job: the apps count, and gpus says why.
  r = sb.run({"gpus", "--json"}, {"FAKE_SMI_DRIVER_MODEL=WDDM", "FAKE_SMI_MODE=notable"});
  j = r.json();
  EXPECT_EQ(j["gpu_status"][0]["state"], "occupied_by_others");
  EXPECT_NE(j["warnings"].dump().find("process types unknown"), std::string::npos) << j.dump();
}

// Another user names a process to drive the terminal of whoever runs
// llamactl: its name reaches `gpus`, the load refusal and the warnings.
TEST(Gpus, AProcessNameWithEscapeSequencesNeverReachesTheTerminalRaw) {
  Sandbox sb;
  const std::string evil = "evil\x1b]0;pwned\x07\x1b[2J";
  sb.start_other("0", 2048, evil);
  sb.start_other("1", 0, "C:\\apps\\draw\x1b[31m.exe", "C+G");
  auto h = sb.run({"gpus"}, {"FAKE_SMI_DRIVER_MODEL=WDDM"});
  ASSERT_EQ(h.exit_code, 0) << h.err;
  EXPECT_EQ(h.out.find('\x1b'), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("evil?]0;pwned??[2J"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("draw?[31m.exe"), std::string::npos) << h.out;  // the desktop apps line
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  auto r = sb.run({"load", "tiny", "--gpu", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("evil?]0;pwned"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x07'), std::string::npos) << r.err;
  // --json escapes it instead: the name is kept whole.
  auto j = sb.run({"gpus", "--json"}).json();
  EXPECT_EQ(j["gpu_status"][0]["process_info"][0]["process_name"], evil);
}

TEST(Gpus, ConfigPerGpuThresholdAndBadConfig) {
  Sandbox sb;
  sb.set_gpus({"0 800 8192 2 NVIDIA GeForce RTX 2080 SUPER"});
  sb.write_config("[gpu.0]\nthreshold_mib = 1024\n");
  EXPECT_EQ(sb.run({"gpus", "--json"}).json()["gpu_status"][0]["state"], "idle");
  sb.write_config("memory_threshold_mib = \"lots\"\n");
  auto r = sb.run({"gpus"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("llamactl.toml:3: key 'memory_threshold_mib'"), std::string::npos) << r.err;
}

TEST(Gpus, CpuFallbackForEveryFailure) {
  Sandbox sb;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"LLAMACTL_NVIDIA_SMI=/nonexistent/nvidia-smi"}, "cannot run"},
      {{"FAKE_SMI_MODE=nodev"}, "No devices were found"},
      {{"FAKE_SMI_MODE=mismatch"}, "version mismatch"},
      {{"FAKE_SMI_MODE=nodriver"}, "communicate with the NVIDIA driver"},
      {{"FAKE_SMI_MODE=garbage"}, "unrecognised nvidia-smi output"},
  };
  for (const auto& [env, reason] : cases) {
    auto r = sb.run({"gpus"}, env);
    EXPECT_EQ(r.exit_code, 0) << env[0];
    EXPECT_EQ(r.out.rfind("CPU Mode (No GPU Detected)\n", 0), 0u) << env[0] << ": " << r.out;
    // The reason once: in the output, not again on stderr.
    EXPECT_NE(r.out.find("  reason: "), std::string::npos) << env[0] << ": " << r.out;
    EXPECT_NE(r.out.find(reason), std::string::npos) << env[0] << ": " << r.out;
    EXPECT_EQ(r.err.find(reason), std::string::npos) << env[0] << ": " << r.err;
    auto j = sb.run({"gpus", "--json"}, env).json();
    EXPECT_EQ(j["mode"], "cpu");
    EXPECT_EQ(j["total_gpus"], 0);
    EXPECT_EQ(sb.run({"gpus", "--strict"}, env).exit_code, 10) << env[0];
  }
}

TEST(Gpus, HangingNvidiaSmiDoesNotHang) {
  Sandbox sb;
  auto r = sb.run({"gpus", "--smi-timeout", "0.5"}, {"FAKE_SMI_MODE=hang"}, std::chrono::seconds(20));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_LT(r.seconds, 3.0);
  EXPECT_NE(r.out.find("did not answer within 0.5 s"), std::string::npos) << r.out;
}

TEST(Gpus, ExitedNvidiaSmiWhoseHelperHoldsThePipeIsStillRead) {
  Sandbox sb;
  auto r = sb.run({"gpus", "--json"}, {"FAKE_SMI_MODE=linger"}, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_LT(r.seconds, 2.0);
  EXPECT_EQ(r.json()["mode"], "gpu") << r.err;
}

TEST(Gpus, FixtureModeReadsSavedOutput) {
  Sandbox sb;
  auto r =
      sb.run({"gpus", "--json"}, {"LLAMACTL_GPU_FIXTURE=" LLAMACTL_FIXTURES "/nvidia-smi/h100-580-plain-busy.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = r.json();
  EXPECT_EQ(j["gpu_status"][0]["memory_used_mib"], 4111);
  EXPECT_EQ(j["gpu_status"][0]["process_info"][0]["pid"], 416);
}

TEST(Gpus, LostGpuIsUnavailableOthersStillRead) {
  Sandbox sb;
  auto j = sb.run({"gpus", "--json"}, {"FAKE_SMI_MODE=lost1"}).json();
  ASSERT_EQ(j["total_gpus"], 2);
  EXPECT_EQ(j["gpu_status"][0]["state"], "idle");
  EXPECT_EQ(j["gpu_status"][1]["state"], "unavailable");
  EXPECT_EQ(j["gpu_status"][1]["error"], "GPU is lost");
}

TEST(Gpus, ColourOnlyOnRequestAndNeverWithNoColor) {
  Sandbox sb;
  EXPECT_EQ(sb.run({"gpus"}).out.find('\033'), std::string::npos);
  EXPECT_NE(sb.run({"gpus"}, {"CLICOLOR_FORCE=1"}).out.find('\033'), std::string::npos);
}
