#include <gtest/gtest.h>

#include "gpu/parse.h"
#include "ui/json.h"
#include "ui/render.h"

using namespace llamactl;

namespace {

gpu::GpuView seed_view() {
  const auto probe = gpu::result_from_text(
      "0, GPU-a, NVIDIA GeForce RTX 4090, 1, 24564, 0\n1, GPU-b, NVIDIA GeForce RTX 4090, 363, 24564, 3\n", "t");
  return gpu::classify(probe, gpu::ClassifyOptions{}, {}, nullptr);
}

}  // namespace

TEST(Render, GpusStartsWithTotalAndHasNoColourWhenOff) {
  const std::string out = ui::render_gpus(seed_view(), ui::Terminal(false));
  EXPECT_EQ(out,
            "Total GPUs: 2\n"
            "GPU  NAME                     MEMORY                UTIL  STATE\n"
            "0    NVIDIA GeForce RTX 4090  1 / 24564 MiB (0%)    0%    idle\n"
            "1    NVIDIA GeForce RTX 4090  363 / 24564 MiB (1%)  3%    occupied by others\n"
            "GPU 1 processes:\n"
            "  pid ?  unknown  n/a\n");
  EXPECT_EQ(out.find('\033'), std::string::npos);
}

TEST(Render, CpuMode) {
  const auto v = gpu::classify(gpu::result_from_text("No devices were found\n", "t"), {}, {}, nullptr);
  EXPECT_EQ(ui::render_gpus(v, ui::Terminal(false)).rfind("CPU Mode (No GPU Detected)\n", 0), 0u);
  const auto j = ui::gpus_json(v);
  EXPECT_EQ(j["total_gpus"], 0);
  EXPECT_EQ(j["mode"], "cpu");
  EXPECT_TRUE(j["gpu_status"].empty());
}

TEST(Render, GpusJsonKeepsTheSeedFieldNames) {
  const auto j = ui::gpus_json(seed_view());
  EXPECT_EQ(j["total_gpus"], 2);
  EXPECT_EQ(j["mode"], "gpu");
  EXPECT_EQ(j["threshold_mib"], 30);
  const auto& g1 = j["gpu_status"][1];
  for (const char* k : {"index", "uuid", "name", "memory_used_mib", "memory_total_mib", "utilization_pct", "state",
                        "model_name", "select_enabled", "loadable", "process_info"})
    EXPECT_TRUE(g1.contains(k)) << k;
  EXPECT_EQ(g1["state"], "occupied_by_others");
  EXPECT_EQ(g1["select_enabled"], false);
  EXPECT_TRUE(g1["model_name"].is_null());
  EXPECT_TRUE(g1["process_info"][0]["pid"].is_null());
  EXPECT_TRUE(g1["process_info"][0]["used_memory_mib"].is_null());
}

TEST(Render, MemoryDegradesToNa) {
  EXPECT_EQ(ui::memory_text(std::nullopt, std::nullopt), "n/a");
  EXPECT_EQ(ui::memory_text(std::nullopt, 8192), "n/a / 8192 MiB");
  EXPECT_EQ(ui::memory_text(5120, 24576), "5120 / 24576 MiB (21%)");
}

TEST(Render, ColourOnlyWhenAsked) {
  EXPECT_EQ(ui::Terminal(false).paint("x", ui::Color::red), "x");
  EXPECT_EQ(ui::Terminal(true).paint("x", ui::Color::red), "\033[31mx\033[0m");
}

namespace {

runtime::InstanceView instance(const std::string& model, std::vector<int> gpus) {
  runtime::InstanceView i;
  i.rec.model = model;
  i.rec.gpus = std::move(gpus);
  i.rec.port = 8081;
  i.rec.pid = 4242;
  i.rec.log = "/state/logs/" + model + ".log";
  i.rec.started_at_ms = 1000000;
  i.rec.last_used_at_ms = 1060000;
  i.state = "running";
  i.healthy = true;
  i.uptime_s = 75;
  i.memory_used_mib = 5120;
  i.memory_total_mib = 24576;
  return i;
}

}  // namespace

TEST(Render, LoadedShowsUrlPidMemoryAndEstimate) {
  runtime::LoadOutcome out;
  out.instance = instance("llama-7b", {0});
  out.estimate.weights_mib = 3892;
  out.estimate.kv_cache_mib = 512;
  out.estimate.context = 4096;
  EXPECT_EQ(ui::render_loaded(out, ui::Terminal(false)),
            "loaded 'llama-7b' on GPU 0\n"
            "  url:       http://127.0.0.1:8081\n"
            "  pid:       4242\n"
            "  memory:    5120 / 24576 MiB (21%)\n"
            "  estimate:  5084 MiB (weights 3892, KV cache 512 at -c 4096, overhead 680/GPU)\n"
            "  log:       /state/logs/llama-7b.log\n");
  out.already_running = true;
  EXPECT_EQ(ui::render_loaded(out, ui::Terminal(false)).rfind("'llama-7b' already runs on GPU 0\n", 0), 0u);
}

TEST(Render, LoadedOnTheCpuShowsARamEstimate) {
  runtime::LoadOutcome out;
  out.instance = instance("tiny", {});
  out.estimate.weights_mib = 5;
  out.estimate.kv_cache_mib = 224;
  out.estimate.context = 4096;
  EXPECT_EQ(ui::render_loaded(out, ui::Terminal(false)),
            "loaded 'tiny' on the CPU\n"
            "  url:       http://127.0.0.1:8081\n"
            "  pid:       4242\n"
            "  memory:    cpu (no GPU memory)\n"
            "  estimate:  389 MiB of RAM (weights 5, KV cache 224 at -c 4096, compute buffers 160)\n"
            "  log:       /state/logs/tiny.log\n");
  out.already_running = true;
  EXPECT_EQ(ui::render_loaded(out, ui::Terminal(false)).rfind("'tiny' already runs on the CPU\n", 0), 0u);
}

TEST(Render, StatusTableAtAFixedTime) {
  runtime::View v;
  v.gpus = seed_view();
  v.instances = {instance("llama-7b", {0}), instance("cpu-model", {})};
  v.instances[1].rec.port = 8181;
  v.instances[1].rec.keep_alive_ms = 300000;
  v.instances[1].expires_at_ms = 1360000;
  v.instances[1].memory_used_mib.reset();
  const std::string out = ui::render_status(v, 1075000, ui::Terminal(false));
  const std::string table = out.substr(out.find("\n\n") + 2);
  EXPECT_EQ(
      table,
      "MODEL      GPUS  URL                    PID   STATE    UPTIME  MEMORY                  LAST USE  REAPED\n"
      "llama-7b   0     http://127.0.0.1:8081  4242  running  1m15s   5120 / 24576 MiB (21%)  15s ago   never\n"
      "cpu-model  cpu   http://127.0.0.1:8181  4242  running  1m15s   cpu                     15s ago   in 4m45s\n");
}

TEST(Render, UnloadedSaysWhatWasFreed) {
  runtime::UnloadOutcome out;
  runtime::Stopped s;
  s.rec = instance("llama-7b", {1}).rec;
  s.freed_mib = 5120;
  out.stopped = {s};
  out.after = seed_view();
  EXPECT_EQ(ui::render_unloaded(out, ui::Terminal(false)),
            "unloaded 'llama-7b' from GPU 1 (pid 4242), freed 5120 MiB\n"
            "  GPU 1 now 363 / 24564 MiB (1%), occupied_by_others\n");
}
