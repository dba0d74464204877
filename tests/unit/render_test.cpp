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
