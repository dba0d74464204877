#include <gtest/gtest.h>

#include <algorithm>

#include "gpu/parse.h"
#include "placement/placement.h"

using namespace llamactl;
using namespace llamactl::placement;

namespace {

gpu::GpuView view_of(const std::string& csv, const std::vector<state::Instance>& ours = {}) {
  gpu::ClassifyOptions o;
  std::vector<gpu::OurInstance> our;
  for (const auto& i : ours) our.push_back({i.model, i.gpus, i.pid});
  return gpu::classify(gpu::result_from_text(csv, "t"), o, our, [](int64_t pid) -> std::optional<std::string> {
    if (pid == 420) return "alice";
    return std::nullopt;
  });
}

state::Instance inst(const std::string& model, std::vector<int> gpus, int port = 8081) {
  state::Instance i;
  i.model = model;
  i.gpus = std::move(gpus);
  i.pid = 1234;
  i.port = port;
  return i;
}

Estimate small() {
  Estimate e;
  e.weights_mib = 4000;
  e.kv_cache_mib = 512;
  return e;
}

const std::string kTwoIdle =
    "0, GPU-a, H100, 0, 81559, 0\n"
    "1, GPU-b, H100, 10000, 81559, 0\n";  // GPU 1 busy unless threshold high

}  // namespace

TEST(Placement, ParsesGpuSpecs) {
  EXPECT_EQ(parse_gpu_spec("auto")->kind, GpuSpec::Kind::auto_);
  EXPECT_EQ(parse_gpu_spec("cpu")->kind, GpuSpec::Kind::cpu);
  EXPECT_EQ(parse_gpu_spec("both")->kind, GpuSpec::Kind::all);
  auto l = parse_gpu_spec("1,0");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->indices, (std::vector<int>{0, 1}));
  EXPECT_FALSE(parse_gpu_spec("0,0").ok());
  EXPECT_FALSE(parse_gpu_spec("x").ok());
  EXPECT_EQ(parse_gpu_spec("x").error().kind, ErrorKind::usage);
}

TEST(Placement, AutoPicksMostFreeIdleGpu) {
  const auto v = view_of("0, GPU-a, A, 20, 24576, 0\n1, GPU-b, B, 5, 81559, 0\n2, GPU-c, C, 0, 40960, 0\n");
  auto c = choose_gpus(*parse_gpu_spec("auto"), v, {}, small(), false);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->gpus, std::vector<int>{1});
}

TEST(Placement, AutoSpreadsWhenNoSingleGpuFits) {
  Estimate big;
  big.weights_mib = 30000;
  const auto v = view_of("0, GPU-a, A, 0, 24576, 0\n1, GPU-b, B, 0, 24576, 0\n");
  auto c = choose_gpus(*parse_gpu_spec("auto"), v, {}, big, false);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->gpus, (std::vector<int>{0, 1}));
  big.weights_mib = 60000;
  auto none = choose_gpus(*parse_gpu_spec("auto"), v, {}, big, false);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, ErrorKind::insufficient_memory);
  EXPECT_TRUE(choose_gpus(*parse_gpu_spec("auto"), v, {}, big, true).ok());
}

TEST(Placement, AutoOnCpuModeRunsOnCpu) {
  const auto v = view_of("No devices were found\n");
  auto c = choose_gpus(*parse_gpu_spec("auto"), v, {}, small(), false);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->gpus.empty());
  EXPECT_FALSE(c->notes.empty());
}

TEST(Placement, RefusesOccupiedNamingProcessAndUser) {
  const auto v = view_of("0, GPU-a, H100, 2570, 81559, 0\nGPU-a, 420, /opt/torch/.venv/bin/python3, 2566\n");
  auto c = choose_gpus(*parse_gpu_spec("0"), v, {}, small(), false);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::gpu_unavailable);
  EXPECT_EQ(c.error().message,
            "GPU 0 is occupied by others: 2570 MiB used: pid 420 /opt/torch/.venv/bin/python3 (2566 MiB, user alice)");
}

TEST(Placement, RefusesOurBusyGpuAndMultiGpuOverlap) {
  const std::vector<state::Instance> ours = {inst("big", {0, 1})};
  const auto v =
      view_of("0, GPU-a, H100, 0, 81559, 0\n1, GPU-b, H100, 0, 81559, 0\n2, GPU-c, H100, 0, 81559, 0\n", ours);
  auto c = choose_gpus(*parse_gpu_spec("0"), v, ours, small(), false);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("part of the multi-GPU instance 'big' on GPUs 0,1"), std::string::npos)
      << c.error().message;
  const std::vector<state::Instance> one = {inst("small", {2})};
  auto d = choose_gpus(
      *parse_gpu_spec("1,2"),
      view_of("0, GPU-a, H100, 0, 81559, 0\n1, GPU-b, H100, 0, 81559, 0\n2, GPU-c, H100, 0, 81559, 0\n", one), one,
      small(), false);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("GPU 2 already runs 'small'"), std::string::npos) << d.error().message;
}

TEST(Placement, RefusesMissingGpuAndInsufficientMemory) {
  const auto v = view_of("0, GPU-a, T4, 0, 15360, 0\n");
  auto missing = choose_gpus(*parse_gpu_spec("3"), v, {}, small(), false);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("GPU 3 does not exist"), std::string::npos);
  Estimate big;
  big.weights_mib = 20000;
  auto no_room = choose_gpus(*parse_gpu_spec("0"), v, {}, big, false);
  ASSERT_FALSE(no_room.ok());
  EXPECT_EQ(no_room.error().kind, ErrorKind::insufficient_memory);
  EXPECT_NE(no_room.error().message.find("GPU 0 has 15360 MiB free"), std::string::npos) << no_room.error().message;
  EXPECT_TRUE(choose_gpus(*parse_gpu_spec("0"), v, {}, big, true).ok());
}

TEST(Placement, EstimateSplitsEvenlyAndAddsContextPerGpu) {
  Estimate e;
  e.weights_mib = 1000;
  e.kv_cache_mib = 200;
  EXPECT_EQ(e.per_gpu_mib(1), 1200 + kCudaContextMib + kComputeBufferMib);
  EXPECT_EQ(e.per_gpu_mib(2), 600 + kCudaContextMib + kComputeBufferMib);
}

TEST(Placement, PortsFromMapThenBase) {
  config::Config cfg;
  EXPECT_EQ(preferred_port(cfg, {0}, 2), 8081);
  EXPECT_EQ(preferred_port(cfg, {1}, 2), 8082);
  EXPECT_EQ(preferred_port(cfg, {}, 2), 8181);
  cfg.ports = {{"gpu0", 8081}, {"gpu1", 8088}, {"both", 8081}};
  EXPECT_EQ(preferred_port(cfg, {1}, 2), 8088);
  EXPECT_EQ(preferred_port(cfg, {0, 1}, 2), 8081);
}

TEST(Placement, VisibleDevicesLaunch) {
  config::Config cfg;
  auto l = launch_for(cfg, "llama-server", "m", "/m.gguf", {1}, 2, 8082, 4096, {"--flash-attn", "on"}, {"-np", "2"});
  const std::vector<std::string> head = {"llama-server", "-m", "/m.gguf", "--host",  "127.0.0.1", "--port",
                                         "8082",         "-c", "4096",    "--alias", "m"};
  EXPECT_TRUE(std::equal(head.begin(), head.end(), l.argv.begin()));
  EXPECT_EQ(std::vector<std::string>(l.argv.end() - 4, l.argv.end()),
            (std::vector<std::string>{"--flash-attn", "on", "-np", "2"}));
  EXPECT_NE(std::find(l.env.begin(), l.env.end(), std::pair<std::string, std::string>{"CUDA_VISIBLE_DEVICES", "1"}),
            l.env.end());
  EXPECT_NE(
      std::find(l.env.begin(), l.env.end(), std::pair<std::string, std::string>{"CUDA_DEVICE_ORDER", "PCI_BUS_ID"}),
      l.env.end());
  EXPECT_EQ(std::find(l.argv.begin(), l.argv.end(), "--tensor-split"), l.argv.end());

  auto both = launch_for(cfg, "llama-server", "m", "/m.gguf", {0, 1}, 2, 8081, 4096, {}, {});
  auto ts = std::find(both.argv.begin(), both.argv.end(), "--tensor-split");
  ASSERT_NE(ts, both.argv.end());
  EXPECT_EQ(*(ts + 1), "1,1");

  auto cpu = launch_for(cfg, "llama-server", "m", "/m.gguf", {}, 2, 8181, 4096, {}, {});
  EXPECT_NE(std::find(cpu.env.begin(), cpu.env.end(), std::pair<std::string, std::string>{"CUDA_VISIBLE_DEVICES", ""}),
            cpu.env.end());
}

TEST(Placement, TensorSplitStyleReproducesTheOriginal) {
  config::Config cfg;
  cfg.placement = config::Placement::tensor_split;
  auto split_of = [&](std::vector<int> gpus) {
    auto l = launch_for(cfg, "llama-server", "m", "/m.gguf", gpus, 2, 8081, 4096, {}, {});
    // Every GPU visible, named explicitly: an inherited CUDA_VISIBLE_DEVICES must not renumber them.
    for (const auto& [k, v] : l.env) {
      if (k == "CUDA_VISIBLE_DEVICES") {
        EXPECT_EQ(v, "0,1");
      }
    }
    auto ts = std::find(l.argv.begin(), l.argv.end(), "--tensor-split");
    return ts == l.argv.end() ? std::string() : *(ts + 1);
  };
  EXPECT_EQ(split_of({0}), "1,0");
  EXPECT_EQ(split_of({1}), "0,1");
  EXPECT_EQ(split_of({0, 1}), "0.5,0.5");
}
