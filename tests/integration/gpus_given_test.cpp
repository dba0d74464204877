// The GPUs we were given, end to end: CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES
// as Slurm and Kubernetes set them, `--gpus` and config `gpus`, with the mock
// nvidia-smi (four GPUs) and the fake llama-server.

#include <gtest/gtest.h>

#include "integration/harness.h"

using namespace llamactl::testing;
using nlohmann::json;

namespace {

// The mock's UUID of GPU 2 (tests/fake/fake_nvidia_smi.cpp).
const std::string kUuid2 = "GPU-00000002-0000-4000-8000-000000000002";

// Four idle GPUs; GPU 0 has the most memory, then 3: auto placement would pick 0.
void four_gpus(const Sandbox& sb) {
  sb.set_gpus({"0 0 163000 0 NVIDIA H200", "1 0 81559 0 NVIDIA H100 80GB HBM3", "2 0 81559 0 NVIDIA H100 80GB HBM3",
               "3 0 120000 0 NVIDIA H100 NVL"});
}

RunResult load(const Sandbox& sb, const std::string& model, const std::vector<std::string>& extra = {},
               const std::vector<std::string>& env = {}) {
  std::vector<std::string> args = {"load", sb.model(model), "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  return sb.run(args, env);
}

// Unloads everything and checks that the instances' processes are gone.
void unload_all(const Sandbox& sb, const std::vector<int64_t>& pids) {
  auto u = sb.run({"unload", "--all"});
  EXPECT_EQ(u.exit_code, 0) << u.err;
  for (int64_t pid : pids) EXPECT_TRUE(eventually([&] { return !pid_alive(pid); })) << pid;
}

}  // namespace

TEST(GpusGiven, CudaVisibleDevicesUuidPlacesOnThatGpuOnly) {
  Sandbox sb;
  four_gpus(sb);
  const std::vector<std::string> env = {"CUDA_VISIBLE_DEVICES=" + kUuid2};
  auto r = load(sb, "tiny", {}, env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = r.json();
  EXPECT_EQ(j["gpus"], json::array({2}));
  const int64_t pid = j["pid"];
  // The child gets nvidia-smi's index in PCI bus order, not the parent's UUID list renumbered.
  const std::string log = read_text(j["log"].get<std::string>());
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=2 CUDA_DEVICE_ORDER=PCI_BUS_ID"), std::string::npos) << log;

  auto g = sb.run({"gpus", "--json"}, env);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const auto gj = g.json();
  EXPECT_EQ(gj["restricted_by"], "CUDA_VISIBLE_DEVICES=" + kUuid2);
  ASSERT_EQ(gj["gpu_status"].size(), 4u);
  for (int i : {0, 1, 3}) {
    EXPECT_EQ(gj["gpu_status"][i]["state"], "not_ours_to_use") << i;
    EXPECT_EQ(gj["gpu_status"][i]["ours_to_use"], false) << i;
    EXPECT_EQ(gj["gpu_status"][i]["loadable"], false) << i;
  }
  EXPECT_EQ(gj["gpu_status"][2]["state"], "model_loaded");
  EXPECT_EQ(gj["gpu_status"][2]["ours_to_use"], true);
  auto human = sb.run({"gpus"}, env);
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("not ours to use"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("only the GPUs we were given (CUDA_VISIBLE_DEVICES=" + kUuid2 + ")"), std::string::npos)
      << human.out;
  // Without the restriction every GPU is ours to use again.
  EXPECT_EQ(sb.run({"gpus", "--json"}).json()["gpu_status"][0]["state"], "idle");

  // The one GPU we were given is taken: a second model finds no room, and never wanders onto another GPU.
  auto second = load(sb, "other", {}, env);
  EXPECT_EQ(second.exit_code, 4) << second.out << second.err;
  EXPECT_NE(second.err.find("GPU 2 already runs 'tiny'"), std::string::npos) << second.err;
  // An explicit --gpu outside the set is refused and says why.
  auto outside = load(sb, "other", {"--gpu", "1"}, env);
  EXPECT_EQ(outside.exit_code, 4);
  EXPECT_NE(outside.err.find("GPU 1 is not ours to use: CUDA_VISIBLE_DEVICES=" + kUuid2 + " gives us GPU 2"),
            std::string::npos)
      << outside.err;
  unload_all(sb, {pid});
}

TEST(GpusGiven, NvidiaVisibleDevicesAndItsWords) {
  Sandbox sb;
  four_gpus(sb);
  auto r = load(sb, "tiny", {}, {"NVIDIA_VISIBLE_DEVICES=1,3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.json()["gpus"], json::array({3}));  // the given GPU with most free memory, not GPU 0
  const int64_t pid = r.json()["pid"];
  // CUDA_VISIBLE_DEVICES wins over NVIDIA_VISIBLE_DEVICES; `all` lifts the restriction.
  auto both = sb.run({"gpus", "--json"}, {"NVIDIA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES=0"}).json();
  EXPECT_EQ(both["restricted_by"], "CUDA_VISIBLE_DEVICES=0");
  auto all = sb.run({"gpus", "--json"}, {"NVIDIA_VISIBLE_DEVICES=all"}).json();
  EXPECT_EQ(all["restricted_by"], nullptr);
  EXPECT_EQ(all["gpu_status"][0]["state"], "idle");
  // `none`: no GPU is ours, so auto placement runs on the CPU and says why.
  auto cpu = load(sb, "cpu-model", {}, {"NVIDIA_VISIBLE_DEVICES=none"});
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_EQ(cpu.json()["gpus"], json::array());
  EXPECT_NE(cpu.err.find("NVIDIA_VISIBLE_DEVICES=none gives us no GPU; running on CPU"), std::string::npos) << cpu.err;
  unload_all(sb, {pid, cpu.json()["pid"].get<int64_t>()});
}

TEST(GpusGiven, GpusFlagOnLoadWinsOverConfigAndEnvironment) {
  Sandbox sb;
  four_gpus(sb);
  sb.write_config("gpus = [1]\n");
  auto r = load(sb, "tiny", {"--gpus", "2,1"}, {"CUDA_VISIBLE_DEVICES=0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto gpus = r.json()["gpus"];
  ASSERT_EQ(gpus.size(), 1u);
  EXPECT_TRUE(gpus[0] == 1 || gpus[0] == 2) << gpus;  // equal free memory: either given one
  const int64_t pid = r.json()["pid"];
  auto bad = load(sb, "other", {"--gpus", "0,x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--gpus '0,x': 'x' is neither a GPU index nor a GPU-... UUID"), std::string::npos) << bad.err;
  unload_all(sb, {pid});
}

TEST(GpusGiven, ConfigGpusWinsOverEnvironment) {
  Sandbox sb;
  four_gpus(sb);
  sb.write_config("gpus = [1]\n");
  auto r = load(sb, "tiny", {}, {"CUDA_VISIBLE_DEVICES=0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.json()["gpus"], json::array({1}));
  const int64_t pid = r.json()["pid"];
  auto g = sb.run({"gpus", "--json"}).json();
  EXPECT_EQ(g["restricted_by"], "config gpus (" + sb.path("llamactl.toml") + ":3) = [1]");
  EXPECT_EQ(g["gpu_status"][0]["state"], "not_ours_to_use");
  sb.write_config("gpus = [\"GPU-nope\"]\n");
  auto bad = sb.run({"gpus"});
  EXPECT_EQ(bad.exit_code, 3);
  EXPECT_NE(bad.err.find(":3: key 'gpus': 'GPU-nope' is neither"), std::string::npos) << bad.err;
  sb.write_config("");
  unload_all(sb, {pid});
}

TEST(GpusGiven, AGpuThatIsNotThereIsAnErrorNotIgnored) {
  Sandbox sb;
  four_gpus(sb);
  const std::vector<std::string> env = {"CUDA_VISIBLE_DEVICES=GPU-abcd"};
  auto r = load(sb, "tiny", {}, env);
  EXPECT_EQ(r.exit_code, 4) << r.out;
  EXPECT_NE(r.err.find("CUDA_VISIBLE_DEVICES=GPU-abcd names GPU-abcd, which nvidia-smi does not list"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(sb.run({"status", "--json"}).json()["instances"].size(), 0u);
  // gpus still shows the GPUs, none ours, and warns why.
  auto g = sb.run({"gpus", "--json"}, env);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_EQ(g.json()["gpu_status"][2]["state"], "not_ours_to_use");
  EXPECT_NE(g.err.find("which nvidia-smi does not list"), std::string::npos) << g.err;
  // serve refuses to start rather than wander.
  auto s = sb.run({"serve", "--listen", "127.0.0.1:" + std::to_string(sb.base_port() + 110), "--gpus", "7"}, {},
                  std::chrono::seconds(20));
  EXPECT_EQ(s.exit_code, 4) << s.out << s.err;
  EXPECT_NE(s.err.find("--gpus 7 names GPU 7, which nvidia-smi does not list"), std::string::npos) << s.err;
  // Garbage in the environment is a clear error too.
  auto garbage = sb.run({"gpus"}, {"CUDA_VISIBLE_DEVICES=first"});
  EXPECT_EQ(garbage.exit_code, 3);
  EXPECT_NE(garbage.err.find("CUDA_VISIBLE_DEVICES 'first': 'first' is neither"), std::string::npos) << garbage.err;
}
