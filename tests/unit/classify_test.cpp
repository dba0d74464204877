#include <gtest/gtest.h>

#include "gpu/classify.h"
#include "gpu/parse.h"

using namespace llamactl::gpu;

namespace {

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
  auto text = std::string("0, GPU-w, NVIDIA GeForce RTX 2080 SUPER, 797, 8192, 2\n");
  auto o = defaults();
  auto v = classify(probe_of(text), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::occupied_by_others);
  o.per_gpu_threshold_mib[0] = 1024;
  v = classify(probe_of(text), o, {}, nullptr);
  EXPECT_EQ(v.gpus[0].state, GpuState::idle);
}

TEST(Classify, CpuModeHasNoGpus) {
  const auto v = classify(probe_of("No devices were found\n"), defaults(), {}, nullptr);
  EXPECT_TRUE(v.cpu_mode);
  EXPECT_TRUE(v.gpus.empty());
  EXPECT_FALSE(v.cpu_reason.empty());
}
