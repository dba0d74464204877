#include <gtest/gtest.h>

#include "gpu/parse.h"
#include "runtime/runtime.h"

using namespace llamactl;
using namespace llamactl::runtime;

namespace {

state::Instance inst(const std::string& model, int64_t pid, uint64_t start, std::vector<int> gpus) {
  state::Instance i;
  i.model = model;
  i.pid = pid;
  i.start_time = start;
  i.gpus = std::move(gpus);
  i.port = 8081 + static_cast<int>(pid % 10);
  i.started_at_ms = 1000000;
  i.last_used_at_ms = 1000000;
  i.state = "running";
  return i;
}

}  // namespace

TEST(Reconcile, DropsDeadAndReusedPids) {
  // pid 11 is alive but started at another time: a reused pid, not ours.
  const std::vector<state::Instance> recorded = {inst("a", 10, 100, {0}), inst("b", 11, 200, {1}),
                                                 inst("c", 12, 300, {})};
  const auto r = reconcile(recorded, [](const state::Instance& i) {
    return (i.pid == 10 && i.start_time == 100) || (i.pid == 11 && i.start_time == 999);
  });
  ASSERT_EQ(r.live.size(), 1u);
  EXPECT_EQ(r.live[0].model, "a");
  ASSERT_EQ(r.dead.size(), 2u);
}

TEST(Reconcile, ViewAttributesMemoryByPidAndFreesDeadGpus) {
  const auto probe = gpu::result_from_text(
      "0, GPU-a, H100, 5200, 81559, 10\n1, GPU-b, H100, 0, 81559, 0\nGPU-a, 10, /usr/bin/llama-server, 5120\n", "t");
  Reconciled rec;
  rec.live = {inst("a", 10, 100, {0})};
  rec.dead = {inst("b", 11, 200, {1})};
  const auto v = build_view(probe, gpu::ClassifyOptions{}, rec, {{"a", 200}}, 1075000, nullptr);
  ASSERT_EQ(v.instances.size(), 2u);
  EXPECT_EQ(v.instances[0].state, "running");
  EXPECT_TRUE(v.instances[0].healthy);
  EXPECT_EQ(v.instances[0].memory_used_mib, 5120);
  EXPECT_EQ(v.instances[0].memory_total_mib, 81559);
  EXPECT_EQ(v.instances[0].uptime_s, 75);
  EXPECT_EQ(v.instances[1].state, "dead");
  EXPECT_EQ(v.gpus.gpus[0].state, gpu::GpuState::model_loaded);
  EXPECT_EQ(v.gpus.gpus[1].state, gpu::GpuState::idle);  // the dead instance's GPU is free again
}

TEST(Reconcile, HealthDecidesRunningUnhealthyStarting) {
  const auto probe = gpu::result_from_text("0, GPU-a, H100, 0, 81559, 0\n", "t");
  Reconciled rec;
  rec.live = {inst("up", 10, 1, {0}), inst("down", 11, 1, {}), inst("boot", 12, 1, {})};
  rec.live[2].state = "starting";
  const auto v =
      build_view(probe, gpu::ClassifyOptions{}, rec, {{"up", 200}, {"down", 0}, {"boot", 503}}, 1000000, nullptr);
  EXPECT_EQ(v.instances[0].state, "running");
  EXPECT_EQ(v.instances[1].state, "unhealthy");
  EXPECT_EQ(v.instances[2].state, "starting");
  // Unknown memory is null, never 0: the pid is not in compute-apps.
  EXPECT_FALSE(v.instances[0].memory_used_mib.has_value());
  EXPECT_FALSE(v.instances[1].memory_total_mib.has_value());  // CPU instance
}

TEST(Reconcile, KeepAliveGivesExpiry) {
  const auto probe = gpu::result_from_text("0, GPU-a, H100, 0, 81559, 0\n", "t");
  Reconciled rec;
  rec.live = {inst("a", 10, 1, {0}), inst("b", 11, 1, {})};
  rec.live[0].keep_alive_ms = 300000;
  rec.live[0].last_used_at_ms = 2000000;
  const auto v = build_view(probe, gpu::ClassifyOptions{}, rec, {}, 2000000, nullptr);
  EXPECT_EQ(v.instances[0].expires_at_ms, 2300000);
  EXPECT_FALSE(v.instances[1].expires_at_ms.has_value());
}
