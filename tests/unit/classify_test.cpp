#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "gpu/classify.h"
#include "gpu/parse.h"
#include "gpu/process_types.h"

using namespace llamactl::gpu;

namespace {

std::string fixture(const std::string& name) {
  std::ifstream in(std::string(LLAMACTL_FIXTURES) + "/nvidia-smi/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ProbeResult probe_of(const std::string& csv) {
  return result_from_text(csv, "test");
}

ClassifyOptions defaults() {
  ClassifyOptions o;
  o.ignore_processes = default_ignore_processes();
  return o;
}

const std::string kSeed =
    "0, GPU-a, NVIDIA GeForce RTX 4090, 1, 24564, 0\n"
    "1, GPU-b, NVIDIA GeForce RTX 4090, 363, 24564, 3\n";

}  // namespace

TEST(Classify, SeedExampleIdleAndOccupiedWithoutProcess) {
  const auto v = classify(probe_of(kSeed), defaults(), {}, nullptr);
  ASSERT_EQ(v.gpus.size(), 2u);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
  EXPECT_TRUE(v.gpus[0].select_enabled);
  EXPECT_TRUE(v.gpus[0].loadable);
  EXPECT_EQ(v.gpus[1].state, GpuState::occupied_by_others);
  EXPECT_FALSE(v.gpus[1].select_enabled);
  EXPECT_FALSE(v.gpus[1].loadable);
  ASSERT_EQ(v.gpus[1].processes.size(), 1u);
  EXPECT_EQ(v.gpus[1].processes[0].name, "unknown");  // memory in use, nobody visible
  EXPECT_FALSE(v.gpus[1].processes[0].pid.has_value());
}

TEST(Classify, ThresholdFromOptionsAndPerGpuOverride) {
  auto o = defaults();
  o.threshold_mib = 400;
  auto v = classify(probe_of(kSeed), o, {}, nullptr);
  EXPECT_EQ(v.gpus[1].state, GpuState::idle);
  o.threshold_mib = 30;
  o.per_gpu_threshold_mib[1] = 1024;  // a display GPU
  v = classify(probe_of(kSeed), o, {}, nullptr);
  EXPECT_EQ(v.gpus[1].state, GpuState::idle);
  EXPECT_EQ(v.gpus[1].threshold_mib, 1024);
  EXPECT_EQ(v.gpus[0].threshold_mib, 30);
}

TEST(Classify, OursIsModelLoadedSelectableNotLoadable) {
  const std::string csv = kSeed + "GPU-b, 4242, /usr/bin/llama-server, 333\n";
  const auto v = classify(probe_of(csv), defaults(), {{"llama-7b", {1}, 4242}}, nullptr);
  EXPECT_EQ(v.gpus[1].state, GpuState::model_loaded);
  EXPECT_EQ(v.gpus[1].model_name, "llama-7b");
  EXPECT_TRUE(v.gpus[1].select_enabled);
  EXPECT_FALSE(v.gpus[1].loadable);
  ASSERT_EQ(v.gpus[1].processes.size(), 1u);
  EXPECT_TRUE(v.gpus[1].processes[0].ours);
}

TEST(Classify, OurStartingInstanceHoldsItsGpuBeforeMemoryShows) {
  const auto v = classify(probe_of(kSeed), defaults(), {{"m", {0}, 99}}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::model_loaded);
}

TEST(Classify, OthersProcessesNamedWithUser) {
  const std::string csv =
      "0, GPU-a, NVIDIA H100 80GB HBM3, 2570, 81559, 0\nGPU-a, 420, /opt/torch/.venv/bin/python3, 2566\n";
  const auto v = classify(probe_of(csv), defaults(), {}, [](int64_t pid) -> std::optional<std::string> {
    return pid == 420 ? std::optional<std::string>("alice") : std::nullopt;
  });
  ASSERT_EQ(v.gpus[0].processes.size(), 1u);
  EXPECT_EQ(v.gpus[0].processes[0].user, "alice");
  EXPECT_EQ(v.gpus[0].processes[0].used_memory_mib, 2566);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
}

TEST(Classify, IgnoredCompositorMemoryDoesNotOccupy) {
  // kwin_wayland (C+G) holds 25 MiB + 20 MiB unattributed graphics: 45 > 30, minus 25 ignored = 20.
  const std::string csv = "0, GPU-a, RTX 4080, 45, 16376, 0\nGPU-a, 2165, /usr/bin/kwin_wayland, 25\n";
  auto v = classify(probe_of(csv), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
  EXPECT_TRUE(v.gpus[0].processes.empty());
  auto o = defaults();
  o.ignore_processes.clear();
  v = classify(probe_of(csv), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
}

TEST(Classify, UnknownMemoryOrLostGpuIsUnavailable) {
  const std::string csv =
      "0, GPU-a, H100, [N/A], 81559, 0\n"
      "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system to recover this "
      "GPU\n";
  const auto v = classify(probe_of(csv), defaults(), {}, nullptr);
  ASSERT_EQ(v.gpus.size(), 2u);
  for (const auto& g : v.gpus) {
    EXPECT_EQ(g.state, GpuState::unavailable);
    EXPECT_FALSE(g.select_enabled);
    EXPECT_FALSE(g.loadable);
  }
}

TEST(Classify, WddmDesktopWithPerGpuThreshold) {
  // Six columns, as a mock of the older query prints them: no driver model, so the memory rule.
  auto text = std::string("0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 2\n");
  auto o = defaults();
  auto v = classify(probe_of(text), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  o.per_gpu_threshold_mib[0] = 1024;
  v = classify(probe_of(text), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
  // With driver_model.current = WDDM and nobody listed, the desktop rule needs no threshold.
  v = classify(probe_of("0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 2, WDDM\n"), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
}

TEST(Classify, CpuModeHasNoGpus) {
  const auto v = classify(probe_of("No devices were found\n"), defaults(), {}, nullptr);
  EXPECT_TRUE(v.cpu_mode);
  EXPECT_TRUE(v.gpus.empty());
  EXPECT_FALSE(v.cpu_reason.empty());
}

// --- Display GPUs: the Windows desktop (WDDM) rule of classify.h ---------

namespace {

// llamactl's own query-gpu row on a Windows desktop: the seventh column is driver_model.current.
const std::string kWddmIdle = "0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 0, WDDM\n";

// What compute-apps lists on an idle Windows 11 desktop (names from the 610.62 capture), memory [N/A].
const std::string kShell =
    "GPU-w, 2140, C:\\Windows\\System32\\dwm.exe, [N/A]\n"
    "GPU-w, 13160, C:\\Windows\\explorer.exe, [N/A]\n"
    "GPU-w, 13264, C:\\Windows\\System32\\ShellHost.exe, [N/A]\n"
    "GPU-w, 14808, "
    "C:\\Windows\\SystemApps\\MicrosoftWindows.Client.CBS_cw5n1h2txyewy\\SearchHost.exe, [N/A]\n"
    "GPU-w, 17648, C:\\Program Files\\NVIDIA Corporation\\NVIDIA App\\CEF\\NVIDIA Overlay.exe, [N/A]\n";

std::set<int64_t> pids_of(const GpuStatus& g) {
  std::set<int64_t> out;
  for (const auto& p : g.processes) out.insert(p.pid.value_or(-1));
  return out;
}

// The user's own apps in the 610.62 captures: C+G in the table, but the CSV cannot say so.
const std::set<int64_t> kUserApps610 = {17840, 19956, 20440, 23480, 23988};  // webview2, terminal, ..., msedge
const std::set<int64_t> kFfmpeg610 = {12940, 13820};                         // type C: NVENC jobs

ClassifyOptions with_user_apps() {
  auto o = defaults();
  for (const char* app :
       {"msedgewebview2.exe", "WindowsTerminal.exe", "ControllerCompanion.exe", "1Password.exe", "msedge.exe"})
    o.ignore_processes.emplace_back(app);
  return o;
}

// The 610.62 capture's idle table: the load table without its two ffmpeg rows, at 797 MiB
// (the origin file's "idle" section has exactly these 19 rows and 797MiB).
std::string idle_table_610() {
  std::string out;
  std::istringstream in(fixture("win-rtx2080s-610.62-wddm-table-load.txt"));
  for (std::string line; std::getline(in, line);) {
    if (line.find("ffmpeg.exe") != std::string::npos) continue;
    if (const auto at = line.find(" 1366MiB"); at != std::string::npos) line.replace(at, 8, "  797MiB");
    out += line + "\n";
  }
  return out;
}

}  // namespace

TEST(ClassifyDesktop, IdleWindowsDesktopIsIdleAndLoadable) {
  const auto v = classify(probe_of(kWddmIdle + kShell), defaults(), {}, nullptr);
  const auto& g = v.gpus[0];
  EXPECT_TRUE(g.desktop);              // nvidia-smi says WDDM: the process list decides
  EXPECT_EQ(g.state, GpuState::idle);  // 797 MiB is the shell's; every process on it is in ignore_processes
  EXPECT_TRUE(g.loadable);
  EXPECT_TRUE(g.processes.empty());     // the desktop is not listed as an occupant
  EXPECT_EQ(g.free_mib(), 8192 - 797);  // the desktop's memory is really used: the load check sees it
  EXPECT_EQ(g.threshold_mib, 30);       // unchanged, and unused on a WDDM GPU without a per-GPU threshold
}

TEST(ClassifyDesktop, SomeonesComputeProcessOnTheDesktopOccupiesItAndIsNamed) {
  const std::string job = "GPU-w, 9120, C:\\Users\\bob\\miniconda3\\python.exe, [N/A]\n";
  const auto v = classify(probe_of(kWddmIdle + kShell + job), defaults(), {},
                          [](int64_t pid) { return pid == 9120 ? std::optional<std::string>("bob") : std::nullopt; });
  const auto& g = v.gpus[0];
  EXPECT_EQ(g.state, GpuState::occupied_by_others);  // its memory is [N/A]: it may hold any amount
  EXPECT_FALSE(g.loadable);
  ASSERT_EQ(g.processes.size(), 1u);  // only the job: the shell is still the desktop
  EXPECT_EQ(g.processes[0].pid, 9120);
  EXPECT_EQ(g.processes[0].name, "C:\\Users\\bob\\miniconda3\\python.exe");
  EXPECT_FALSE(g.processes[0].used_memory_mib.has_value());  // unknown, never 0
  EXPECT_EQ(g.processes[0].user, "bob");
}

TEST(ClassifyDesktop, OurInstanceOnTheDesktopIsOursNotOthers) {
  const std::string ours = "GPU-w, 7001, C:\\llama\\llama-server.exe, [N/A]\n";
  const auto v = classify(probe_of(kWddmIdle + kShell + ours), defaults(), {{"qwen", {0}, 7001}}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::model_loaded);  // ours wins, as on Linux
  ASSERT_EQ(v.gpus[0].processes.size(), 1u);
  EXPECT_TRUE(v.gpus[0].processes[0].ours);
}

TEST(ClassifyDesktop, NamelessProcessCountsAsSomeoneElse) {
  // netdata's 516.59 WDDM capture (XML) lists five C+G processes with an empty name: nvidia-smi
  // could not read them, and another user's job would look the same.
  const auto v = classify(probe_of(kWddmIdle + kShell + "GPU-w, 10808, , [N/A]\n"), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  ASSERT_EQ(v.gpus[0].processes.size(), 1u);
  EXPECT_EQ(v.gpus[0].processes[0].pid, 10808);
}

TEST(ClassifyDesktop, WithoutAProcessListMemoryDecidesAgain) {
  auto probe = probe_of(kWddmIdle);
  probe.snapshot.processes_known = false;  // the compute-apps query failed
  const auto v = classify(probe, defaults(), {}, nullptr);
  EXPECT_FALSE(v.gpus[0].desktop);  // an empty list would prove nothing
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(v.gpus[0].processes[0].name, "unknown");  // 797 MiB > 30, nobody visible
}

TEST(ClassifyDesktop, PerGpuThresholdStillOverridesOnWddm) {
  const std::string app = "GPU-w, 23988, C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe, [N/A]\n";
  auto o = defaults();
  o.per_gpu_threshold_mib[0] = 1024;
  auto v = classify(probe_of(kWddmIdle + kShell + app), o, {}, nullptr);
  EXPECT_FALSE(v.gpus[0].desktop);             // the user's threshold: memory decides, as the README says
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);  // 797 <= 1024, the browser included
  EXPECT_EQ(v.gpus[0].threshold_mib, 1024);
  const std::string busy = "0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 1366, 8192, 7, WDDM\n";
  v = classify(probe_of(busy + kShell + app), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);  // 1366 > 1024
  EXPECT_EQ(pids_of(v.gpus[0]), std::set<int64_t>{23988});   // the shell stays hidden
}

TEST(ClassifyDesktop, IgnoreProcessesStillOverridesOnWddm) {
  const std::string app = "GPU-w, 23988, C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe, [N/A]\n";
  auto v = classify(probe_of(kWddmIdle + kShell + app), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);  // a browser is not the desktop by default
  auto o = defaults();
  o.ignore_processes.emplace_back("MSEDGE.EXE");  // basename, case-insensitive
  v = classify(probe_of(kWddmIdle + kShell + app), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
  o.ignore_processes = {"msedge.exe"};  // the list replaces the default: the shell counts again
  v = classify(probe_of(kWddmIdle + kShell + app), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(v.gpus[0].processes.size(), 5u);
}

TEST(ClassifyDesktop, TccGpuKeepsTheMemoryRule) {
  // TCC (datacenter cards on Windows) reports per-process memory and runs no desktop.
  const std::string tcc = "0, GPU-t, Tesla V100-PCIE-16GB, 412, 16384, 0, TCC\n";
  auto v = classify(probe_of(tcc), defaults(), {}, nullptr);
  EXPECT_FALSE(v.gpus[0].desktop);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);  // 412 MiB used, nobody listed: "unknown"
  EXPECT_EQ(v.gpus[0].processes[0].name, "unknown");
  v = classify(probe_of("0, GPU-t, Tesla V100-PCIE-16GB, 20, 16384, 0, TCC\n"
                        "GPU-t, 880, C:\\jobs\\train.exe, 18\n"),
               defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);  // 20 <= 30: a listed process under the threshold does not occupy
}

TEST(ClassifyDesktop, LinuxDisplayGpuWithXorgUnaffected) {
  // Our query on Linux: driver_model.current is [N/A]. Xorg's memory is known and subtracted.
  const std::string linux_gpu =
      "0, GPU-l, NVIDIA GeForce RTX 3090, 262, 24576, 1, [N/A]\n"
      "GPU-l, 1234, /usr/lib/xorg/Xorg, 180\n"
      "GPU-l, 1302, /usr/bin/gnome-shell, 60\n";
  auto v = classify(probe_of(linux_gpu), defaults(), {}, nullptr);
  EXPECT_FALSE(v.gpus[0].desktop);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);  // 262 - 240 = 22 <= 30
  EXPECT_TRUE(v.gpus[0].processes.empty());
  const std::string more =
      "0, GPU-l, NVIDIA GeForce RTX 3090, 900, 24576, 1, [N/A]\n"
      "GPU-l, 1234, /usr/lib/xorg/Xorg, 180\n";
  v = classify(probe_of(more), defaults(), {}, nullptr);
  // Unlike WDDM, memory nobody here accounts for still occupies (a graphics-only or container process).
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(v.gpus[0].processes[0].name, "unknown");
}

TEST(ClassifyDesktop, LinuxDesktopCaptureKeepsTheMemoryRule) {
  // linux-rtx4080s table: Disp.A On, KDE (kwin_wayland 25 + Xwayland 4 + plasmashell 120 MiB ignored),
  // plasma-keyboard and xwaylandvideobridge (G) and two ffmpeg (C) with known memory.
  const auto v =
      classify(result_from_text(fixture("linux-rtx4080s-595.71.05-table-load.txt"), "t"), defaults(), {}, nullptr);
  const auto& g = v.gpus[0];
  EXPECT_EQ(g.reading.driver_model, "");  // "Off" there is Persistence-M, not a driver model
  EXPECT_FALSE(g.desktop);
  EXPECT_EQ(g.state, GpuState::occupied_by_others);  // 1474 - 149 = 1325 > 30
  EXPECT_EQ(pids_of(g), (std::set<int64_t>{2496, 3527, 5021, 5022}));
}

// The CSV reading of the 610.62 capture with the types the table gives, as
// both probes make it on a WDDM GPU (gpu/process_types.h).
ProbeResult typed_csv_610() {
  auto r = result_from_text(fixture("win-rtx2080s-610.62-wddm-query-gpu-load.csv") +
                                fixture("win-rtx2080s-610.62-wddm-compute-apps-load.csv"),
                            "c");
  const auto table = parse_table(fixture("win-rtx2080s-610.62-wddm-table-load.txt"));
  apply_types(r.snapshot, types_from_table(*table, r.snapshot));
  return r;
}

std::set<int64_t> desktop_pids(const GpuStatus& g) {
  std::set<int64_t> out;
  for (const auto& p : g.desktop_apps) out.insert(p.pid.value_or(-1));
  return out;
}

TEST(ClassifyDesktop, Win610AppsThatDrawAreNotOccupantsOnceTheirTypeIsKnown) {
  // The same machine state as the table (types C+G and C) and as our CSV queries with the table's types.
  const auto table =
      classify(result_from_text(fixture("win-rtx2080s-610.62-wddm-table-load.txt"), "t"), defaults(), {}, nullptr);
  const auto csv = classify(typed_csv_610(), defaults(), {}, nullptr);
  for (const auto* v : {&table, &csv}) {
    ASSERT_EQ(v->gpus.size(), 1u);
    const auto& g = v->gpus[0];
    EXPECT_EQ(g.reading.driver_model, "WDDM");  // table: Driver-Model column; CSV: driver_model.current
    EXPECT_TRUE(g.desktop);
    // The two ffmpeg NVENC jobs (type C) occupy the GPU, and only they are named...
    EXPECT_EQ(g.state, GpuState::occupied_by_others);
    EXPECT_EQ(pids_of(g), kFfmpeg610);
    // ...the user's apps (browser, WebView2, terminal, password manager, controller tool) draw (C+G):
    // listed apart, not occupants. The 14 shell processes are ignored as before.
    EXPECT_EQ(desktop_pids(g), kUserApps610);
    for (const auto& p : g.desktop_apps) EXPECT_EQ(p.type, "C+G") << p.name;
    EXPECT_EQ(g.free_mib(), 8192 - 1366);  // honest: all of memory.used is in use
  }
}

TEST(ClassifyDesktop, Win610UntypedCsvCountsTheAppsAsOccupants) {
  // Without the table (it failed, or a CSV fixture) nothing tells an app from a CUDA job: cautious.
  const auto v = classify(result_from_text(fixture("win-rtx2080s-610.62-wddm-query-gpu-load.csv") +
                                               fixture("win-rtx2080s-610.62-wddm-compute-apps-load.csv"),
                                           "c"),
                          defaults(), {}, nullptr);
  const auto& g = v.gpus[0];
  EXPECT_EQ(g.state, GpuState::occupied_by_others);
  std::set<int64_t> expected = kFfmpeg610;
  expected.insert(kUserApps610.begin(), kUserApps610.end());
  EXPECT_EQ(pids_of(g), expected);
  EXPECT_TRUE(g.desktop_apps.empty());
}

TEST(ClassifyDesktop, Win610GpuQueryAloneKeepsTheMemoryRule) {
  // The wide query-gpu capture says WDDM but lists no process: memory decides (1366 > 30, nobody seen).
  const auto v =
      classify(result_from_text(fixture("win-rtx2080s-610.62-wddm-query-gpu-load.csv"), "q"), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].reading.driver_model, "WDDM");
  EXPECT_FALSE(v.gpus[0].desktop);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(v.gpus[0].processes[0].name, "unknown");
}

TEST(ClassifyDesktop, Win610IdleDesktopWithAppsOpenIsIdle) {
  const auto idle = result_from_text(idle_table_610(), "idle");
  ASSERT_EQ(idle.snapshot.processes.size(), 19u);
  // Edge, Windows Terminal and 1Password are open (C+G): the GPU is idle and loadable.
  auto v = classify(idle, defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
  EXPECT_TRUE(v.gpus[0].loadable);
  EXPECT_TRUE(v.gpus[0].processes.empty());
  EXPECT_EQ(desktop_pids(v.gpus[0]), kUserApps610);
  EXPECT_EQ(v.gpus[0].free_mib(), 8192 - 797);
  // Untyped (the same rows as compute-apps gives them), the apps count, unless the user names them.
  auto untyped = idle;
  for (auto& p : untyped.snapshot.processes) p.type.clear();
  v = classify(untyped, defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(pids_of(v.gpus[0]), kUserApps610);
  v = classify(untyped, with_user_apps(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
}

TEST(ClassifyDesktop, ACudaJobOfOursOrAnotherUsersTypeCIsNeverADesktopApp) {
  auto load = result_from_text(fixture("win-rtx2080s-610.62-wddm-table-load.txt"), "load");
  // One ffmpeg is ours (say, our llama-server): it is ours, the other still occupies.
  const auto v = classify(load, defaults(), {{"tiny", {0}, 12940}}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::model_loaded);
  EXPECT_EQ(pids_of(v.gpus[0]), kFfmpeg610);
  for (const auto& p : v.gpus[0].processes) EXPECT_EQ(p.ours, p.pid == 12940);
}

TEST(ClassifyDesktop, Win591DisplayOffStillWddm) {
  // 591.86: Disp.A is Off although dwm.exe and explorer.exe run on the GPU (display asleep): the
  // rule keys on WDDM, not on Disp.A. The CSV form pairs our own query-gpu row with the real
  // compute-apps capture.
  const auto table =
      classify(result_from_text(fixture("win-rtx2080s-591.86-wddm-table-load.txt"), "t"), defaults(), {}, nullptr);
  const auto csv =
      classify(result_from_text("0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA GeForce RTX 2080 SUPER, 1296, "
                                "8192, 7, WDDM\n" +
                                    fixture("win-rtx2080s-591.86-wddm-compute-apps-load.csv"),
                                "c"),
               defaults(), {}, nullptr);
  for (const auto* v : {&table, &csv}) {
    const auto& g = v->gpus[0];
    EXPECT_TRUE(g.desktop);
    EXPECT_EQ(g.state, GpuState::occupied_by_others);
  }
  // The table types NZXT CAM and Controller Companion C+G: only ffmpeg x2 (C) occupy. The CSV cannot
  // tell, so they count there. NVIDIA Share.exe is the overlay (ignored).
  EXPECT_EQ(pids_of(table.gpus[0]), (std::set<int64_t>{25704, 26660}));
  EXPECT_EQ(desktop_pids(table.gpus[0]), (std::set<int64_t>{16280, 20372}));
  EXPECT_EQ(pids_of(csv.gpus[0]), (std::set<int64_t>{16280, 20372, 25704, 26660}));
}

// ---- gpu/process_types.h: the table's types onto the CSV's processes ----

namespace {

// One WDDM GPU (and one that is not) with processes as compute-apps gives them: no type.
GpuSnapshot csv_reading() {
  GpuSnapshot s;
  s.gpus.push_back({0, "GPU-w", "RTX", "", 1366, 8192, 7, "WDDM", ""});
  s.gpus.push_back({1, "GPU-l", "RTX", "", 500, 8192, 0, "", ""});
  s.processes.push_back({std::nullopt, "GPU-w", 23988,
                         "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe", std::nullopt, ""});
  s.processes.push_back({std::nullopt, "GPU-w", 12940, "C:\\tools\\ffmpeg.exe", std::nullopt, ""});
  s.processes.push_back({std::nullopt, "GPU-l", 777, "python3", 400, ""});
  return s;
}

// Table rows: GPU, pid, type, name as the table shows it.
GpuSnapshot table_of(std::vector<std::tuple<int, int64_t, std::string, std::string>> rows) {
  GpuSnapshot t;
  for (auto& [gpu, pid, type, name] : rows) t.processes.push_back({gpu, "", pid, name, std::nullopt, type});
  return t;
}

ProbeResult probe_with(const GpuSnapshot& s) {
  ProbeResult r;
  r.snapshot = s;
  r.source = "t";
  return r;
}

}  // namespace

TEST(ProcessTypes, OnlyAWddmGpuWithAnUntypedProcessWantsTheTable) {
  auto s = csv_reading();
  EXPECT_TRUE(wants_types(s, {}));
  EXPECT_TRUE(has_wddm_process(s));
  s.gpus[0].driver_model = "TCC";  // memory decides there, and on GPU 1 (Linux)
  EXPECT_FALSE(wants_types(s, {}));
  EXPECT_FALSE(has_wddm_process(s));
}

TEST(ProcessTypes, TypesGoByGpuPidAndTheTablesLeftCutName) {
  auto s = csv_reading();
  const auto t = types_from_table(
      table_of({{0, 23988, "C+G", "...t\\Edge\\Application\\msedge.exe"}, {0, 12940, "C", "C:\\tools\\ffmpeg.exe"}}),
      s);
  // The WDDM GPU's processes were asked about, not GPU 1's.
  EXPECT_EQ(t.asked, (std::set<ProcessTypes::Key>{{0, 23988}, {0, 12940}}));
  apply_types(s, t);
  EXPECT_EQ(s.processes[0].type, "C+G");
  EXPECT_EQ(s.processes[1].type, "C");
  EXPECT_EQ(s.processes[2].type, "");
  EXPECT_FALSE(wants_types(s, t));
}

TEST(ProcessTypes, ANameShownWholeMustBeEqualAndABareEllipsisMatchesNothing) {
  auto s = csv_reading();
  apply_types(s, types_from_table(table_of({{0, 12940, "G", "ffmpeg.exe"}, {0, 23988, "C+G", "..."}}), s));
  EXPECT_EQ(s.processes[1].type, "");  // "ffmpeg.exe" shown whole is not "C:\tools\ffmpeg.exe"
  EXPECT_EQ(s.processes[0].type, "");
}

TEST(ProcessTypes, AProcessIsTypedPerGpu) {
  // A training script computes on GPU 0 (C) and shows a window on GPU 1 (G): GPU 0 stays occupied.
  GpuSnapshot s;
  s.gpus.push_back({0, "GPU-a", "RTX", "", 9000, 24564, 99, "WDDM", ""});
  s.gpus.push_back({1, "GPU-b", "RTX", "", 900, 24564, 3, "WDDM", ""});
  s.processes.push_back({std::nullopt, "GPU-a", 4242, "C:\\venv\\python.exe", std::nullopt, ""});
  s.processes.push_back({std::nullopt, "GPU-b", 4242, "C:\\venv\\python.exe", std::nullopt, ""});
  apply_types(s, types_from_table(
                     table_of({{0, 4242, "C", "C:\\venv\\python.exe"}, {1, 4242, "G", "C:\\venv\\python.exe"}}), s));
  EXPECT_EQ(s.processes[0].type, "C");
  EXPECT_EQ(s.processes[1].type, "G");
  const auto v = classify(probe_with(s), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(v.gpus[1].state, GpuState::idle);
}

TEST(ProcessTypes, AReusedPidUnderAnotherNameGetsNoTypeAndAsksAgain) {
  // The table ran while Edge had pid 23988; now a CUDA job has it: not an app that draws.
  auto s = csv_reading();
  const auto t = types_from_table(table_of({{0, 23988, "C+G", "...t\\Edge\\Application\\msedge.exe"}}), s);
  s.processes[0].name = "C:\\Users\\bob\\miniconda3\\python.exe";
  EXPECT_TRUE(wants_types(s, t));  // the table runs again for it
  apply_types(s, t);
  EXPECT_EQ(s.processes[0].type, "");
  const auto v = classify(probe_with(s), defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(pids_of(v.gpus[0]), (std::set<int64_t>{23988, 12940}));
}

TEST(ProcessTypes, AProcessWithoutANameIsNeverTypedNorAsksForTheTable) {
  // [Insufficient Permissions]: maybe another user's job. It counts, and costs no run per reading.
  auto s = csv_reading();
  s.processes = {{std::nullopt, "GPU-w", 23988, "", std::nullopt, ""}};
  const auto t = types_from_table(table_of({{0, 23988, "C+G", "...msedge.exe"}}), s);
  EXPECT_FALSE(wants_types(s, {}));
  apply_types(s, t);
  EXPECT_EQ(s.processes[0].type, "");
  EXPECT_EQ(classify(probe_with(s), defaults(), {}, nullptr).gpus[0].state, GpuState::occupied_by_others);
}

TEST(ProcessTypes, APidTheTableDidNotListIsNotAskedAgainButANewOneIs) {
  auto s = csv_reading();
  const auto t = types_from_table(table_of({{0, 23988, "C+G", "...msedge.exe"}}), s);  // 12940 ended meanwhile
  apply_types(s, t);
  EXPECT_EQ(s.processes[1].type, "");
  EXPECT_FALSE(wants_types(s, t));  // asked about once: no table run per reading for it
  s.processes.push_back({std::nullopt, "GPU-w", 31000, "C:\\Windows\\notepad.exe", std::nullopt, ""});
  EXPECT_TRUE(wants_types(s, t));
}

TEST(ClassifyDesktop, AppsThatDrawAboveTheDesktopBudgetOccupyTheGpu) {
  // A Vulkan llama.cpp or a game is G/C+G too: 6 GiB in use is not the desktop's.
  auto idle = result_from_text(idle_table_610(), "idle");
  auto v = classify(idle, defaults(), {}, nullptr);
  ASSERT_EQ(v.gpus[0].state, GpuState::idle);
  idle.snapshot.gpus[0].memory_used_mib = kDesktopBudgetMib + 1;
  v = classify(idle, defaults(), {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  EXPECT_EQ(pids_of(v.gpus[0]), kUserApps610);  // the apps that draw are the suspects, named
  EXPECT_TRUE(v.gpus[0].desktop_apps.empty());
  idle.snapshot.gpus[0].memory_used_mib = kDesktopBudgetMib;
  EXPECT_EQ(classify(idle, defaults(), {}, nullptr).gpus[0].state, GpuState::idle);
}
