// The `watch` screen: golden frames at a few sizes (tests/golden/watch/*.txt,
// rewritten with UPDATE_GOLDEN=1), and properties over many sizes.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ui/terminal.h"
#include "ui/watch.h"

using namespace llamactl;

namespace {

constexpr int64_t kNow = 1764064800000;  // 2025-11-25T10:00:00Z
constexpr int64_t kMin = 60 * 1000;

gpu::GpuStatus gpu_status(int index, const std::string& name, std::optional<int64_t> used, std::optional<int64_t> total,
                          std::optional<int> util, gpu::GpuState state) {
  gpu::GpuStatus g;
  g.reading.index = index;
  g.reading.uuid = "GPU-" + std::to_string(index);
  g.reading.name = name;
  g.reading.memory_used_mib = used;
  g.reading.memory_total_mib = total;
  g.reading.utilization_pct = util;
  g.state = state;
  return g;
}

runtime::InstanceView instance(const std::string& model, std::vector<int> gpus, int port, int64_t pid,
                               int64_t started_ago_ms, int64_t used_ago_ms, int64_t keep_alive_ms) {
  runtime::InstanceView i;
  i.rec.model = model;
  i.rec.gpus = std::move(gpus);
  i.rec.port = port;
  i.rec.pid = pid;
  i.rec.started_at_ms = kNow - started_ago_ms;
  i.rec.last_used_at_ms = kNow - used_ago_ms;
  i.rec.keep_alive_ms = keep_alive_ms;
  i.rec.state = "running";
  i.state = "running";
  i.healthy = true;
  i.uptime_s = started_ago_ms / 1000;
  // As runtime::build_view computes it.
  if (keep_alive_ms >= 0) i.expires_at_ms = std::max(i.rec.last_used_at_ms, i.rec.started_at_ms) + keep_alive_ms;
  return i;
}

// Two RTX 4090s: GPU 0 runs our qwen2.5-coder-14b (keep-alive 5m, used 75 s
// ago), GPU 1 is busy with two processes of other users; plus one of our
// instances on the CPU.
runtime::View two_gpus() {
  runtime::View v;
  v.gpus.source = "nvidia-smi";
  auto g0 = gpu_status(0, "NVIDIA GeForce RTX 4090", 11590, 24564, 35, gpu::GpuState::model_loaded);
  g0.model_name = "qwen2.5-coder-14b";
  g0.select_enabled = true;
  g0.loadable = false;
  g0.processes = {{4242, "/opt/llama.cpp/build/bin/llama-server", 11574, "bob", true, ""}};
  auto g1 = gpu_status(1, "NVIDIA GeForce RTX 4090", 20730, 24564, 97, gpu::GpuState::occupied_by_others);
  g1.select_enabled = false;
  g1.loadable = false;
  g1.processes = {{31337, "/opt/torch/.venv/bin/python3", 18432, "alice", false, ""},
                  {2211, "/home/carol/miniconda3/envs/sd/bin/python", 2280, "carol", false, ""}};
  v.gpus.gpus = {g0, g1};
  v.instances = {instance("qwen2.5-coder-14b", {0}, 8081, 4242, 75 * kMin, 75 * 1000, 5 * kMin),
                 instance("qwen2.5-0.5b-instruct", {}, 8082, 5151, 10 * kMin, 2 * kMin, 10 * kMin)};
  return v;
}

// Two minutes of readings every 2 s: GPU 0 idle until our model loads about
// 25 s ago (one reading of it failed since), GPU 1 busy all along.
ui::WatchHistory two_gpus_history() {
  ui::WatchHistory h;
  const auto base = two_gpus().gpus;
  for (int i = 0; i < 60; ++i) {
    auto v = base;
    int64_t used0 = 1;
    if (i >= 45) used0 = std::min<int64_t>(11590, 1 + (i - 44) * 2300);
    v.gpus[0].reading.memory_used_mib = used0;
    if (i == 56) v.gpus[0].reading.memory_used_mib = std::nullopt;
    v.gpus[1].reading.memory_used_mib = 15500 + (i * 977) % 6500;
    if (i == 59) v.gpus[1].reading.memory_used_mib = 20730;
    h.add(v);
  }
  return h;
}

ui::WatchFrame frame_of(runtime::View v) {
  ui::WatchFrame f;
  f.view = std::move(v);
  f.now_ms = kNow;
  f.read_at_ms = kNow - 180;
  f.interval_ms = 2000;
  return f;
}

ui::WatchFrame failed_frame() {
  auto f = frame_of(two_gpus());  // the last known GPUs
  f.reading_ok = false;
  f.reading_error = "nvidia-smi did not answer within 5s";
  return f;
}

ui::WatchFrame cpu_frame() {
  runtime::View v;
  v.gpus.cpu_mode = true;
  v.gpus.cpu_reason = "cannot run nvidia-smi (No such file or directory)";
  v.instances = {instance("qwen2.5-0.5b-instruct", {}, 8082, 5151, 10 * kMin, 2 * kMin, 10 * kMin)};
  return frame_of(std::move(v));
}

// Everything long and odd at once: for the width and escape properties.
ui::WatchFrame stress_frame() {
  runtime::View v;
  for (int i = 0; i < 8; ++i) {
    auto g = gpu_status(i, "NVIDIA RTX 6000 Ada Generation With An Unusually Long Marketing Name " + std::to_string(i),
                        123456 + i, 999999, 100, gpu::GpuState::occupied_by_others);
    g.processes = {{1000000 + i, "/home/someone-with-a-long-name/.cache/venvs/a-very-deep/tree/bin/python3.12-debug",
                    123456, "someone-with-a-long-name", false, ""},
                   {std::nullopt, "evil\x1b]0;pwned\x07\x1b[2J", std::nullopt, std::nullopt, false, ""}};
    v.gpus.gpus.push_back(g);
  }
  auto lost =
      gpu_status(8, "NVIDIA A100-SXM4-80GB", std::nullopt, std::nullopt, std::nullopt, gpu::GpuState::unavailable);
  lost.reading.error = "Unable to determine the device handle for GPU 0000:00:08.0: GPU is lost. Reboot the system";
  v.gpus.gpus.push_back(lost);
  v.gpus.gpus[0].state = gpu::GpuState::model_loaded;
  v.gpus.gpus[0].model_name = "a-very-long-model-name-that-goes-on-and-on-q4_k_m-with-a-suffix-\x1b[31m";
  v.instances = {instance(*v.gpus.gpus[0].model_name, {0}, 65535, 2147483647, 400 * 24 * 60 * kMin, 0, -1),
                 instance("cpu-model-with-a-name-as-long-as-the-others-or-longer-still", {}, 8082, 77, 1000, 0, 0),
                 instance("on-a-gpu-that-is-not-listed", {12, 13}, 8083, 78, 1000, 0, 5 * kMin)};
  v.instances[1].state = "starting";
  auto dead = instance("dead-one", {3}, 8084, 79, kMin, 0, kMin);
  dead.state = "dead";
  dead.rec.state = "dead";
  dead.rec.died_at_ms = kNow - 3 * kMin;
  dead.rec.exit_code = 139;
  v.instances.push_back(dead);
  return frame_of(std::move(v));
}

ui::WatchHistory stress_history() {
  ui::WatchHistory h(120);
  auto v = stress_frame().view.gpus;
  for (int i = 0; i < 150; ++i) {
    v.gpus[i % 8].reading.memory_used_mib = i % 3 ? std::optional<int64_t>(i * 6000) : std::nullopt;
    h.add(v);
  }
  return h;
}

std::vector<std::string> lines_of(const std::string& frame) {
  std::vector<std::string> out;
  std::istringstream in(frame);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string strip_escapes(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\x1b') {
      out += s[i];
      continue;
    }
    while (i < s.size() && s[i] != 'm') ++i;
  }
  return out;
}

void expect_golden(const std::string& name, const std::string& frame) {
  const std::filesystem::path path = std::filesystem::path(LLAMACTL_GOLDEN) / "watch" / (name + ".txt");
  if (const char* u = std::getenv("UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << frame;
    std::cout << "wrote " << path << "\n";
    return;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path << " is missing; UPDATE_GOLDEN=1 writes it";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(frame, want.str()) << "frame differs from " << path << "; if the new one is right: UPDATE_GOLDEN=1";
}

struct Case {
  std::string name;
  ui::WatchFrame frame;
  ui::WatchHistory history;
};

std::vector<Case> all_cases() {
  return {{"two_gpus", frame_of(two_gpus()), two_gpus_history()},
          {"failed", failed_frame(), two_gpus_history()},
          {"cpu", cpu_frame(), ui::WatchHistory()},
          {"stress", stress_frame(), stress_history()},
          {"empty", frame_of(runtime::View{}), ui::WatchHistory()}};
}

}  // namespace

// ---- golden frames ----

TEST(WatchGolden, TwoGpusAt80x24) {
  expect_golden("two_gpus_80x24", ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {80, 24}, false));
}

TEST(WatchGolden, TwoGpusAt120x40) {
  expect_golden("two_gpus_120x40", ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {120, 40}, false));
}

TEST(WatchGolden, TwoGpusAt60x24) {
  expect_golden("two_gpus_60x24", ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {60, 24}, false));
}

TEST(WatchGolden, TwoGpusIn8RowsDropsSpacersAndProcessesFirst) {
  expect_golden("two_gpus_80x8", ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {80, 8}, false));
}

TEST(WatchGolden, CpuModeAt80x24) {
  expect_golden("cpu_80x24", ui::render_watch(cpu_frame(), ui::WatchHistory(), {80, 24}, false));
}

TEST(WatchGolden, FailedReadingAt80x24) {
  auto h = two_gpus_history();
  h.add(gpu::GpuView{
      true, "nvidia-smi did not answer within 5s", "nvidia-smi", 30, {}, {}, {}, {}});  // what the loop adds
  expect_golden("failed_80x24", ui::render_watch(failed_frame(), h, {80, 24}, false));
}

// ---- properties ----

TEST(WatchRender, NoLineWiderThanTheTerminalAtAnySize) {
  for (auto& c : all_cases()) {
    for (int cols : {1, 2, 3, 4, 5, 7, 10, 13, 20, 30, 36, 40, 45, 50, 59, 60, 61, 79, 80, 81, 119, 120, 200, 400}) {
      for (int rows : {1, 2, 3, 4, 6, 10, 24, 40, 200}) {
        for (bool color : {false, true}) {
          const std::string out = ui::render_watch(c.frame, c.history, {cols, rows}, color);
          ASSERT_FALSE(out.empty()) << c.name;
          EXPECT_EQ(out.back(), '\n') << c.name;
          EXPECT_EQ(out.find_first_of("\r\t"), std::string::npos) << c.name;
          const auto lines = lines_of(out);
          EXPECT_LE(lines.size(), static_cast<size_t>(rows)) << c.name << " " << cols << "x" << rows;
          for (const auto& l : lines)
            ASSERT_LE(ui::display_width(l), static_cast<size_t>(cols))
                << c.name << " " << cols << "x" << rows << ": " << l;
        }
      }
    }
  }
}

TEST(WatchRender, NothingForAnEmptyTerminal) {
  const auto h = two_gpus_history();
  EXPECT_EQ(ui::render_watch(frame_of(two_gpus()), h, {0, 24}, false), "");
  EXPECT_EQ(ui::render_watch(frame_of(two_gpus()), h, {80, 0}, false), "");
}

TEST(WatchRender, LineCountIsRowsOrWhatTheContentNeeds) {
  for (auto& c : all_cases()) {
    for (int cols : {30, 60, 80, 120}) {
      const auto natural = lines_of(ui::render_watch(c.frame, c.history, {cols, 1000}, false));
      ASSERT_GE(natural.size(), 3u) << c.name;
      for (int rows = 1; rows <= static_cast<int>(natural.size()) + 3; ++rows) {
        const auto lines = lines_of(ui::render_watch(c.frame, c.history, {cols, rows}, false));
        ASSERT_EQ(lines.size(), std::min<size_t>(rows, natural.size())) << c.name << " " << cols << "x" << rows;
        EXPECT_EQ(lines.front(), natural.front()) << c.name << " " << cols << "x" << rows;
        if (rows >= 2) {
          EXPECT_EQ(lines.back(), natural.back()) << c.name << " " << cols << "x" << rows;
        }
      }
    }
  }
  // The 80x24 golden frame needs fewer lines than the terminal has: no padding.
  EXPECT_EQ(lines_of(ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {80, 24}, false)).size(), 14u);
}

TEST(WatchRender, RowsGoSpacersFirstThenProcessesThenDetailsThenBars) {
  const auto h = two_gpus_history();
  const auto f = frame_of(two_gpus());
  auto at = [&](int rows) { return ui::render_watch(f, h, {80, rows}, false); };
  const std::string all = at(100);
  // 14 lines, 4 of them blank.
  ASSERT_EQ(lines_of(all).size(), 14u);
  ASSERT_NE(all.find("\n\n"), std::string::npos);
  EXPECT_NE(at(11).find("\n\n"), std::string::npos);
  EXPECT_EQ(at(10).find("\n\n"), std::string::npos);
  EXPECT_NE(at(10).find("user alice"), std::string::npos);
  EXPECT_NE(at(10).find("user carol"), std::string::npos);
  // Process lines go from the bottom up.
  EXPECT_NE(at(9).find("user alice"), std::string::npos);
  EXPECT_EQ(at(9).find("user carol"), std::string::npos);
  EXPECT_EQ(at(8).find("user alice"), std::string::npos);
  EXPECT_NE(at(8).find("reaped in 3m45s"), std::string::npos);
  EXPECT_EQ(at(7).find("reaped in 3m45s"), std::string::npos);
  EXPECT_NE(at(7).find("(47%)"), std::string::npos);
  EXPECT_NE(at(7).find("(84%)"), std::string::npos);
  EXPECT_EQ(at(6).find("(84%)"), std::string::npos);
  EXPECT_NE(at(6).find("(47%)"), std::string::npos);
  // Titles, the CPU instance and the footer are kept to the end; then the body is cut with a count.
  const std::string footer = "reading at 09:59:59 UTC, every 2s   q quit  r refresh";
  const std::vector<std::string> five{
      "Total GPUs: 2", "GPU 0  NVIDIA GeForce RTX 4090  ours: qwen2.5-coder-14b",
      "GPU 1  NVIDIA GeForce RTX 4090  occupied by others",
      "CPU    qwen2.5-0.5b-instruct  running  port 8082  pid 5151  up 10m  reaped in 8m", footer};
  EXPECT_EQ(lines_of(at(5)), five);
  EXPECT_EQ(lines_of(at(4)), (std::vector<std::string>{five[0], five[1], "… 2 more lines", footer}));
  EXPECT_EQ(lines_of(at(3)), (std::vector<std::string>{five[0], "… 3 more lines", footer}));
  EXPECT_EQ(lines_of(at(2)), (std::vector<std::string>{five[0], footer}));
  EXPECT_EQ(lines_of(at(1)), (std::vector<std::string>{five[0]}));
}

TEST(WatchRender, ColumnsGoNamesFirstThenSparklineThenBar) {
  const auto h = two_gpus_history();
  const auto f = frame_of(two_gpus());
  auto mem_line = [&](int cols) {
    for (const auto& l : lines_of(ui::render_watch(f, h, {cols, 24}, false)))
      if (l.find("(47%)") != std::string::npos) return l;
    return std::string("(none)");
  };
  // GPU 0's sparkline ends in "▄▄▄" (the bar has only █ and ░).
  auto has_spark = [](const std::string& l) { return l.size() > 9 && l.substr(l.size() - 9) == "▄▄▄"; };
  EXPECT_TRUE(has_spark(mem_line(80)));
  EXPECT_TRUE(has_spark(mem_line(58)));
  EXPECT_FALSE(has_spark(mem_line(57)));
  EXPECT_NE(mem_line(57).find("[█"), std::string::npos);
  EXPECT_NE(mem_line(43).find("[█"), std::string::npos);
  EXPECT_EQ(mem_line(42).find("["), std::string::npos);
  EXPECT_EQ(mem_line(42), "  11590 / 24564 MiB (47%)  util  35%");
  // The title keeps "GPU 0" and the state; the name is cut with "…".
  const auto narrow = lines_of(ui::render_watch(f, h, {40, 24}, false));
  EXPECT_EQ(narrow[2], "GPU 0  NVIDIA…  ours: qwen2.5-coder-14b");
  // A process path loses its start, so the program name stays.
  EXPECT_NE(ui::render_watch(f, h, {50, 24}, false).find("  pid 2211  …s/sd/bin/python  2280 MiB  user carol\n"),
            std::string::npos);
}

TEST(WatchRender, NoEscapeCodesWithoutColour) {
  for (auto& c : all_cases()) {
    for (int cols : {20, 60, 80, 120}) {
      const std::string plain = ui::render_watch(c.frame, c.history, {cols, 40}, false);
      const std::string colored = ui::render_watch(c.frame, c.history, {cols, 40}, true);
      EXPECT_EQ(plain.find('\x1b'), std::string::npos) << c.name << " " << cols;
      // Control characters in names (the stress case has a process called "evil\x1b]0;pwned\x07\x1b[2J") are shown as
      // '?'.
      EXPECT_EQ(plain.find('\a'), std::string::npos) << c.name << " " << cols;
      EXPECT_NE(colored.find("\x1b["), std::string::npos) << c.name << " " << cols;
      EXPECT_EQ(strip_escapes(colored), plain) << c.name << " " << cols;
    }
  }
  EXPECT_NE(ui::render_watch(stress_frame(), stress_history(), {200, 200}, false).find("evil?]0;pwned??[2J"),
            std::string::npos);
}

TEST(WatchRender, ColoursFollowTheConventionsOfGpus) {
  const std::string out = ui::render_watch(frame_of(two_gpus()), two_gpus_history(), {80, 24}, true);
  EXPECT_NE(out.find("\x1b[34mours: qwen2.5-coder-14b\x1b[0m"), std::string::npos);
  EXPECT_NE(out.find("\x1b[33moccupied by others\x1b[0m"), std::string::npos);
  EXPECT_NE(out.find("\x1b[32mrunning\x1b[0m"), std::string::npos);
  EXPECT_NE(out.find("\x1b[1mTotal GPUs: 2\x1b[0m"), std::string::npos);
  // Memory bars by pressure: 47% green, 84% yellow.
  EXPECT_NE(out.find("[\x1b[32m█"), std::string::npos);
  EXPECT_NE(out.find("[\x1b[33m█"), std::string::npos);
}

TEST(WatchRender, HeaderAndFooter) {
  auto f = frame_of(two_gpus());
  const auto h = two_gpus_history();
  auto lines = lines_of(ui::render_watch(f, h, {80, 24}, false));
  EXPECT_EQ(lines.front(), "Total GPUs: 2");
  EXPECT_EQ(lines.back(), "reading at 09:59:59 UTC, every 2s   q quit  r refresh");
  f.read_at_ms = 0;
  f.interval_ms = 500;
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {80, 24}, false)).back(),
            "reading at --:--:-- UTC, every 500ms   q quit  r refresh");
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {45, 24}, false)).back(), "--:--:-- UTC, every 500ms   q quit  r refresh");
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {44, 24}, false)).back(), "--:--:-- UTC   q quit  r refresh");
  f.read_at_ms = kNow;
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {33, 24}, false)).back(), "10:00:00 UTC   q quit  r refresh");
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {20, 24}, false)).back(), "q quit  r refresh");
  EXPECT_EQ(lines_of(ui::render_watch(f, h, {10, 24}, false)).back(), "q quit  r…");
}

TEST(WatchRender, CpuModeUsesTheWordsOfGpus) {
  const auto lines = lines_of(ui::render_watch(cpu_frame(), ui::WatchHistory(), {80, 24}, false));
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[0], "CPU Mode (No GPU Detected)");
  EXPECT_EQ(lines[1], "  reason: cannot run nvidia-smi (No such file or directory)");
  // No memory bar on a CPU instance's line.
  EXPECT_EQ(lines[3], "CPU    qwen2.5-0.5b-instruct  running  port 8082  pid 5151  up 10m  reaped in 8m");
  const auto empty = ui::render_watch(frame_of(runtime::View{}), ui::WatchHistory(), {80, 24}, false);
  EXPECT_NE(empty.find("\n\nNo instances.\n\n"), std::string::npos);
}

TEST(WatchRender, FailedReadingShowsNaAndKeepsOurInstances) {
  const std::string out = ui::render_watch(failed_frame(), two_gpus_history(), {80, 24}, false);
  EXPECT_NE(out.find("reading failed: nvidia-smi did not answer within 5s"), std::string::npos);
  EXPECT_NE(out.find("GPU 0  NVIDIA GeForce RTX 4090  no reading"), std::string::npos);
  EXPECT_NE(out.find("[                       ]  n/a / 24564 MiB  util  n/a"), std::string::npos);
  EXPECT_EQ(out.find("(47%)"), std::string::npos);
  // The last known process list is stale: hidden. Our instances come from the state file: shown.
  EXPECT_EQ(out.find("alice"), std::string::npos);
  EXPECT_NE(out.find("  qwen2.5-coder-14b  running  port 8081  pid 4242  up 1h15m  reaped in 3m45s"),
            std::string::npos);
  // With no GPU list at all, the instance on GPU 0 gets a line of its own.
  auto f = failed_frame();
  f.view.gpus = gpu::GpuView{};
  f.view.gpus.cpu_mode = true;
  const auto lines = lines_of(ui::render_watch(f, two_gpus_history(), {80, 24}, false));
  EXPECT_EQ(lines[0], "Total GPUs: n/a");
  // 81 columns with the uptime: it goes first.
  EXPECT_EQ(lines[3], "GPU 0  qwen2.5-coder-14b  running  port 8081  pid 4242  reaped in 3m45s");
  EXPECT_EQ(lines[4], "CPU    qwen2.5-0.5b-instruct  running  port 8082  pid 5151  up 10m  reaped in 8m");
}

TEST(WatchRender, InstanceStatesAndReaping) {
  auto v = two_gpus();
  v.instances[0].state = "starting";
  v.instances[1].expires_at_ms = kNow - 1;
  auto never = instance("forever", {}, 8090, 90, kMin, 0, -1);
  auto dead = instance("crashed", {1}, 8091, 91, kMin, 0, kMin);
  dead.state = "dead";
  dead.rec.died_at_ms = kNow - 3 * kMin;
  dead.rec.exit_code = 139;
  v.instances.insert(v.instances.begin(), dead);  // dead ones are listed last whatever the order
  v.instances.push_back(never);
  const auto lines = lines_of(ui::render_watch(frame_of(v), two_gpus_history(), {80, 24}, false));
  const std::vector<std::string> tail(lines.end() - 5, lines.end() - 2);
  EXPECT_EQ(tail,
            (std::vector<std::string>{"CPU    qwen2.5-0.5b-instruct  running  port 8082  pid 5151  up 10m  reap due",
                                      "CPU    forever  running  port 8090  pid 90  up 1m  never reaped",
                                      "dead   crashed  pid 91  exit code 139  died 3m ago"}));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "  starting  port 8081  pid 4242  up 1h15m  reaped in 3m45s"),
            lines.end());
  // A dead record holds no GPU: not under GPU 1.
  const std::string out = ui::render_watch(frame_of(v), two_gpus_history(), {80, 24}, false);
  EXPECT_LT(out.find("user carol"), out.find("crashed"));
}

TEST(WatchRender, RisingMemoryRisesInTheSparkline) {
  ui::WatchHistory h;
  auto v = two_gpus();
  v.gpus.gpus[0].reading.memory_total_mib = 24576;
  for (int64_t used = 0; used <= 24576; used += 3072) {
    v.gpus.gpus[0].reading.memory_used_mib = used;
    h.add(v.gpus);
  }
  ASSERT_EQ(h.samples(), 9u);
  // Full scale is the GPU's total: 0 is the lowest block, the total the highest.
  EXPECT_EQ(ui::sparkline(*h.used(0), 20, 24576), "▁▂▃▄▅▆▇██");
  EXPECT_EQ(ui::sparkline(*h.used(0), 3, 24576), "▇██");
  EXPECT_EQ(ui::sparkline(*h.used(0), 0, 24576), "");
  const std::string out = ui::render_watch(frame_of(v), h, {80, 24}, false);
  EXPECT_NE(out.find("util  35%  ▁▂▃▄▅▆▇██\n"), std::string::npos) << out;
  // Without a total the largest sample shown is full scale.
  EXPECT_EQ(ui::sparkline({0, 1, 2, 3, 4, 5, 6, 7}, 8, std::nullopt), "▁▂▃▄▅▆▇█");
  EXPECT_EQ(ui::sparkline({7, 6, 5}, 8, std::nullopt), "█▇▆");
  EXPECT_EQ(ui::sparkline({0, 0}, 8, std::nullopt), "▁▁");
}

TEST(WatchHistory, GapsAreShown) {
  ui::WatchHistory h;
  auto v = two_gpus().gpus;
  v.gpus[0].reading.memory_total_mib = 1000;
  v.gpus[0].reading.memory_used_mib = 100;
  h.add(v);
  v.gpus[0].reading.memory_used_mib = std::nullopt;  // [N/A]
  h.add(v);
  h.add(gpu::GpuView{true, "nvidia-smi did not answer within 5s", "", 30, {}, {}, {}, {}});  // a failed reading
  v.gpus[0].reading.memory_used_mib = 500;
  v.gpus[0].reading.error = "GPU is lost";
  h.add(v);
  v.gpus[0].reading.error.clear();
  v.gpus[0].reading.memory_used_mib = 1000;
  h.add(v);
  const std::vector<std::optional<int64_t>> want{100, std::nullopt, std::nullopt, std::nullopt, 1000};
  EXPECT_EQ(*h.used(0), want);
  EXPECT_EQ(ui::sparkline(*h.used(0), 10, 1000), "▁···█");
  v.gpus[0].reading.memory_used_mib = std::nullopt;
  auto f = frame_of(two_gpus());
  f.view.gpus = v;
  EXPECT_NE(ui::render_watch(f, h, {80, 24}, false).find("util  35%  ▁···█\n"), std::string::npos);
}

TEST(WatchHistory, KeepsTheLastSamplesAndAlignsGpusThatComeAndGo) {
  ui::WatchHistory h(3);
  auto v = two_gpus().gpus;
  const auto gpu1 = v.gpus[1];
  v.gpus.pop_back();
  for (int64_t used = 1; used <= 5; ++used) {
    v.gpus[0].reading.memory_used_mib = used;
    if (used == 5) {
      v.gpus.push_back(gpu1);
      v.gpus[1].reading.memory_used_mib = 50;
    }
    h.add(v);
  }
  using Series = std::vector<std::optional<int64_t>>;
  EXPECT_EQ(h.samples(), 3u);
  EXPECT_EQ(h.max_samples(), 3u);
  EXPECT_EQ(*h.used(0), (Series{3, 4, 5}));
  EXPECT_EQ(*h.used(1), (Series{std::nullopt, std::nullopt, 50}));
  EXPECT_EQ(h.used(7), nullptr);
  v.gpus.erase(v.gpus.begin());  // GPU 0 vanishes from the reading
  h.add(v);
  EXPECT_EQ(*h.used(0), (Series{4, 5, std::nullopt}));
  EXPECT_EQ(*h.used(1), (Series{std::nullopt, 50, 50}));
}

TEST(WatchScreen, OneWriteThatNeitherScrollsNorEatsTheLastColumn) {
  // Three lines on a 10x5 screen; the second fills the row.
  const std::string frame = "abc\n0123456789\nxy\n";
  EXPECT_EQ(ui::screen_update(frame, {10, 5}), "\x1b[Habc\x1b[K\r\n0123456789\r\nxy\x1b[K\x1b[4;1H\x1b[J");
  // A frame as tall as the screen: no newline after the last line, nothing below to erase.
  EXPECT_EQ(ui::screen_update("a\nb\n", {10, 2}), "\x1b[Ha\x1b[K\r\nb\x1b[K");
  // Colour codes take no columns.
  EXPECT_EQ(ui::screen_update("\x1b[31mab\x1b[0m\n", {2, 1}), "\x1b[H\x1b[31mab\x1b[0m");
  const auto f = frame_of(two_gpus());
  const std::string out = ui::screen_update(ui::render_watch(f, two_gpus_history(), {80, 24}, true), {80, 24});
  size_t newlines = 0;
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] == '\n') {
      ++newlines;
      EXPECT_EQ(out[i - 1], '\r') << i;
    }
  EXPECT_EQ(newlines, 13u);  // 14 lines
  EXPECT_EQ(out.rfind("\x1b[15;1H\x1b[J"), out.size() - 10);
}
