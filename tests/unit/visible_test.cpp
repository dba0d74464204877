// The GPUs we were given: parsing --gpus / config gpus / CUDA_VISIBLE_DEVICES /
// NVIDIA_VISIBLE_DEVICES, mapping them to nvidia-smi's indices by UUID, and
// placement never leaving them.

#include "gpu/visible.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "gpu/classify.h"
#include "gpu/parse.h"
#include "placement/placement.h"

using namespace llamactl;
using namespace llamactl::gpu;
using Src = RestrictionSource;

namespace {

// Four idle GPUs; nvidia-smi's order (PCI bus) is 0-3, the UUIDs tell them apart.
const std::string kFour =
    "0, GPU-0aaaaaaa-1111-2222-3333-444444444444, H100, 0, 81559, 0\n"
    "1, GPU-1bbbbbbb-1111-2222-3333-444444444444, H100, 0, 81559, 0\n"
    "2, GPU-2ccccccc-1111-2222-3333-444444444444, H100, 0, 81559, 0\n"
    "3, GPU-2cdddddd-1111-2222-3333-444444444444, H100, 0, 81559, 0\n";

std::vector<GpuReading> readings() {
  return result_from_text(kFour, "t").snapshot.gpus;
}

Restriction parsed(const std::string& text, Src src) {
  auto r = parse_restriction(text, src);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  EXPECT_TRUE(r.ok() && r->has_value()) << text << " should restrict";
  return r.ok() && *r ? **r : Restriction{};
}

std::set<int> given(const std::string& text, Src src) {
  auto r = resolve(parsed(text, src), readings());
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : std::set<int>{};
}

std::string resolve_error(const std::string& text, Src src) {
  auto r = resolve(parsed(text, src), readings());
  EXPECT_FALSE(r.ok()) << text;
  return r.ok() ? "" : r.error().message;
}

}  // namespace

TEST(Visible, ParsesAndMapsByTable) {
  struct Row {
    const char* text;
    Src src;
    std::set<int> want;
    const char* why;
  };
  const Row rows[] = {
      {"0,1", Src::flag, {0, 1}, "indices are nvidia-smi's"},
      {" 2 , 0 ", Src::cuda_env, {0, 2}, "spaces around entries are fine"},
      {"GPU-1bbbbbbb-1111-2222-3333-444444444444", Src::cuda_env, {1}, "a full UUID"},
      {"gpu-1BBBBBBB-1111-2222-3333-444444444444", Src::nvidia_env, {1}, "UUIDs compare without case"},
      {"GPU-0a", Src::cuda_env, {0}, "a unique UUID prefix, as CUDA accepts"},
      {"GPU-2cc,3", Src::nvidia_env, {2, 3}, "UUIDs and indices mixed"},
      {"1,1", Src::cuda_env, {1}, "a repeated GPU once"},
      {"3,-1,0", Src::cuda_env, {3}, "CUDA stops at a negative index"},
      {"-1", Src::cuda_env, {}, "the idiom that hides every GPU"},
      {"none", Src::nvidia_env, {}, "NVIDIA's runtime: no GPU"},
      {"void", Src::nvidia_env, {}, "NVIDIA's runtime: no GPU"},
      {"", Src::cuda_env, {}, "an empty CUDA_VISIBLE_DEVICES hides every GPU"},
      {"", Src::nvidia_env, {}, "an empty NVIDIA_VISIBLE_DEVICES exposes no GPU"},
      {"NoDevFiles", Src::cuda_env, {}, "Slurm's word for a job without GPU files"},
      {"none", Src::flag, {}, "--gpus none: CPU only"},
  };
  for (const auto& row : rows) EXPECT_EQ(given(row.text, row.src), row.want) << row.text << ": " << row.why;
}

TEST(Visible, AllMeansNoRestriction) {
  for (auto src : {Src::flag, Src::config, Src::cuda_env, Src::nvidia_env}) {
    auto r = parse_restriction("all", src);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value());
  }
  auto r = parse_restriction(" ALL ", Src::nvidia_env);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
}

TEST(Visible, GarbageIsAClearErrorNamingTheSource) {
  struct Row {
    const char* text;
    Src src;
    ErrorKind kind;
    const char* says;
  };
  const Row rows[] = {
      {"0,x", Src::flag, ErrorKind::usage, "--gpus '0,x': 'x' is neither a GPU index nor a GPU-... UUID"},
      {"cuda0", Src::cuda_env, ErrorKind::config, "CUDA_VISIBLE_DEVICES 'cuda0': 'cuda0' is neither"},
      {"0,,1", Src::nvidia_env, ErrorKind::config, "NVIDIA_VISIBLE_DEVICES '0,,1': an empty entry"},
      {"64", Src::flag, ErrorKind::usage, "index 64 is out of range"},
      {"-1", Src::flag, ErrorKind::usage, "index -1 is out of range"},
      {"-1", Src::nvidia_env, ErrorKind::config, "index -1 is out of range"},
      {"GPU-", Src::cuda_env, ErrorKind::config, "'GPU-' is neither"},
      {"GPU-xyz", Src::cuda_env, ErrorKind::config, "'GPU-xyz' is neither"},
      {"MIG-0aaaaaaa-1111", Src::cuda_env, ErrorKind::config, "is a MIG device"},
      {"", Src::flag, ErrorKind::usage, "--gpus '': empty; use 'none'"},
      {"0;1", Src::flag, ErrorKind::usage, "'0;1' is neither"},
  };
  for (const auto& row : rows) {
    auto r = parse_restriction(row.text, row.src);
    ASSERT_FALSE(r.ok()) << row.text;
    EXPECT_EQ(r.error().kind, row.kind) << row.text;
    EXPECT_NE(r.error().message.find(row.says), std::string::npos) << r.error().message;
  }
}

TEST(Visible, UnknownUuidOrIndexNamesWhatAndWhere) {
  const auto uuid = resolve_error("GPU-abcd", Src::cuda_env);
  EXPECT_NE(uuid.find("CUDA_VISIBLE_DEVICES=GPU-abcd names GPU-abcd, which nvidia-smi does not list"),
            std::string::npos)
      << uuid;
  EXPECT_NE(uuid.find("2 GPU-2ccccccc"), std::string::npos) << "it says what nvidia-smi lists: " << uuid;
  const auto index = resolve_error("1,7", Src::flag);
  EXPECT_NE(index.find("--gpus 1,7 names GPU 7, which nvidia-smi does not list"), std::string::npos) << index;
  // A prefix of two UUIDs (GPU-2ccc… and GPU-2cdd…) picks neither.
  const auto ambiguous = resolve_error("GPU-2c", Src::nvidia_env);
  EXPECT_NE(ambiguous.find("a prefix of several GPUs' UUIDs"), std::string::npos) << ambiguous;
  auto r = resolve(parsed("GPU-abcd", Src::cuda_env), readings());
  EXPECT_EQ(r.error().kind, ErrorKind::gpu_unavailable);
}

TEST(Visible, EnvironmentIndicesRenumberedByAContainerAreAllOurs) {
  // Docker --gpus '"device=2,3"' sets NVIDIA_VISIBLE_DEVICES=2,3 and shows those two GPUs as 0 and 1.
  const auto two = result_from_text("0, GPU-a1, H100, 0, 81559, 0\n1, GPU-b2, H100, 0, 81559, 0\n", "t").snapshot.gpus;
  auto r = resolve(parsed("2,3", Src::nvidia_env), two);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, (std::set<int>{0, 1}));
  // Not for the flag: the user named nvidia-smi's indices.
  EXPECT_FALSE(resolve(parsed("2,3", Src::flag), two).ok());
  // Nor when the lengths differ: then an index nvidia-smi lacks is a mistake.
  EXPECT_FALSE(resolve(parsed("2", Src::nvidia_env), two).ok());
}

TEST(Visible, PrecedenceFlagConfigCudaNvidia) {
  const std::optional<std::vector<std::string>> cfg = std::vector<std::string>{"1"};
  auto pick = [&](std::optional<std::string> flag, std::optional<std::vector<std::string>> config,
                  std::optional<std::string> cuda, std::optional<std::string> nvidia) {
    auto r = choose_restriction(flag, config, "c.toml:3", cuda, nvidia);
    EXPECT_TRUE(r.ok());
    return r.ok() && *r ? (*r)->describe() : std::string("no restriction");
  };
  EXPECT_EQ(pick("0", cfg, "2", "3"), "--gpus 0");
  EXPECT_EQ(pick(std::nullopt, cfg, "2", "3"), "config gpus (c.toml:3) = [1]");
  EXPECT_EQ(pick(std::nullopt, std::nullopt, "2", "3"), "CUDA_VISIBLE_DEVICES=2");
  EXPECT_EQ(pick(std::nullopt, std::nullopt, std::nullopt, "3"), "NVIDIA_VISIBLE_DEVICES=3");
  EXPECT_EQ(pick(std::nullopt, std::nullopt, std::nullopt, std::nullopt), "no restriction");
  // `--gpus all` lifts an inherited restriction.
  EXPECT_EQ(pick("all", std::nullopt, "2", std::nullopt), "no restriction");
  // An empty config list: no GPU.
  auto none = choose_restriction(std::nullopt, std::vector<std::string>{}, "c.toml:3", std::nullopt, std::nullopt);
  ASSERT_TRUE(none.ok() && none->has_value());
  EXPECT_TRUE((*none)->entries.empty());
}

namespace {

GpuView classified(const std::string& csv, std::optional<Restriction> r, const std::vector<OurInstance>& ours = {}) {
  ClassifyOptions o;
  o.restriction = std::move(r);
  return classify(result_from_text(csv, "t"), o, ours, nullptr);
}

placement::Estimate small() {
  placement::Estimate e;
  e.weights_mib = 4000;
  e.kv_cache_mib = 512;
  return e;
}

}  // namespace

TEST(Visible, ClassifyMarksTheOthersNotOursToUse) {
  const auto v = classified(kFour, parsed("GPU-2cc", Src::cuda_env));
  ASSERT_EQ(v.gpus.size(), 4u);
  for (const auto& g : v.gpus) {
    const bool ours = g.reading.index == 2;
    EXPECT_EQ(g.ours_to_use, ours) << g.reading.index;
    EXPECT_EQ(g.state, ours ? GpuState::idle : GpuState::not_ours) << g.reading.index;
    EXPECT_EQ(g.loadable, ours);
    EXPECT_EQ(g.select_enabled, ours);
  }
  EXPECT_STREQ(to_string(GpuState::not_ours), "not_ours_to_use");
  EXPECT_EQ(v.restricted_by, "CUDA_VISIBLE_DEVICES=GPU-2cc");
  // One of our instances outside the set stays ours: it can be seen and unloaded.
  const auto w = classified(kFour, parsed("2", Src::flag), {{"m", {0}, 77}});
  EXPECT_EQ(w.gpus[0].state, GpuState::model_loaded);
  EXPECT_FALSE(w.gpus[0].ours_to_use);
}

TEST(Visible, UnresolvableRestrictionLeavesNoGpuOursAndPlacementSaysWhy) {
  const auto v = classified(kFour, parsed("GPU-abcd", Src::cuda_env));
  EXPECT_NE(v.restriction_error.find("names GPU-abcd, which nvidia-smi does not list"), std::string::npos);
  for (const auto& g : v.gpus) EXPECT_EQ(g.state, GpuState::not_ours);
  auto c = placement::choose_gpus(*placement::parse_gpu_spec("auto"), v, {}, small(), false);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::gpu_unavailable);
  EXPECT_NE(c.error().message.find("CUDA_VISIBLE_DEVICES=GPU-abcd names GPU-abcd"), std::string::npos);
}

TEST(Visible, PlacementNeverChoosesOutsideTheSet) {
  // GPU 1 and 3 are given; 0 and 2 have more free memory and would win auto placement otherwise.
  const std::string csv =
      "0, GPU-a, H100, 0, 81559, 0\n"
      "1, GPU-b, H100, 0, 40960, 0\n"
      "2, GPU-c, H100, 0, 81559, 0\n"
      "3, GPU-d, H100, 0, 49152, 0\n";
  const auto v = classified(csv, parsed("GPU-b,3", Src::nvidia_env));
  const auto spec = [](const char* s) { return *placement::parse_gpu_spec(s); };
  auto a = placement::choose_gpus(spec("auto"), v, {}, small(), false);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->gpus, std::vector<int>{3});  // the given GPU with most free memory
  // A model too big for one given GPU spans given GPUs only.
  placement::Estimate big;
  big.weights_mib = 60000;
  auto b = placement::choose_gpus(spec("auto"), v, {}, big, false);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->gpus, (std::vector<int>{1, 3}));
  // `both`/`all`: every GPU we were given.
  auto all = placement::choose_gpus(spec("all"), v, {}, small(), false);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->gpus, (std::vector<int>{1, 3}));
  // An explicit --gpu outside the set is refused with the reason, even with --force.
  for (bool force : {false, true}) {
    auto x = placement::choose_gpus(spec("0"), v, {}, small(), force);
    ASSERT_FALSE(x.ok());
    EXPECT_EQ(x.error().kind, ErrorKind::gpu_unavailable);
    EXPECT_NE(x.error().message.find("GPU 0 is not ours to use: NVIDIA_VISIBLE_DEVICES=GPU-b,3 gives us GPU 1,3"),
              std::string::npos)
        << x.error().message;
  }
  // With both given GPUs taken by our instances, auto says why about them, not about the others.
  std::vector<llamactl::state::Instance> ours(2);
  ours[0].model = "x";
  ours[0].gpus = {1};
  ours[0].pid = 10;
  ours[1].model = "y";
  ours[1].gpus = {3};
  ours[1].pid = 11;
  const auto busy = classify(
      result_from_text(csv, "t"),
      [&] {
        ClassifyOptions o;
        o.restriction = parsed("1,3", Src::flag);
        return o;
      }(),
      {{"x", {1}, 10}, {"y", {3}, 11}}, nullptr);
  auto full = placement::choose_gpus(spec("auto"), busy, ours, small(), true);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().message.find("GPU 0"), std::string::npos) << full.error().message;
  EXPECT_NE(full.error().message.find("GPU 1 already runs 'x'"), std::string::npos) << full.error().message;
}

TEST(Visible, NoGivenGpuMeansCpuForAutoAndRefusalForAList) {
  const auto v = classified(kFour, parsed("none", Src::nvidia_env));
  auto a = placement::choose_gpus(*placement::parse_gpu_spec("auto"), v, {}, small(), false);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->gpus.empty());
  ASSERT_EQ(a->notes.size(), 1u);
  EXPECT_NE(a->notes[0].find("NVIDIA_VISIBLE_DEVICES=none gives us no GPU; running on CPU"), std::string::npos);
  EXPECT_FALSE(placement::choose_gpus(*placement::parse_gpu_spec("both"), v, {}, small(), false).ok());
  EXPECT_FALSE(placement::choose_gpus(*placement::parse_gpu_spec("1"), v, {}, small(), false).ok());
}

TEST(Visible, TensorSplitChildSeesOnlyTheGivenGpus) {
  config::Config cfg;
  cfg.placement = config::Placement::tensor_split;
  // Given GPUs 1 and 3, placed on 3: the child sees "1,3" and numbers them 0 and 1.
  auto l = placement::launch_for(cfg, "llama-server", "m", "/m.gguf", {3}, 4, 8081, 4096, {}, {}, {1, 3});
  const auto env =
      std::find_if(l.env.begin(), l.env.end(), [](const auto& kv) { return kv.first == "CUDA_VISIBLE_DEVICES"; });
  ASSERT_NE(env, l.env.end());
  EXPECT_EQ(env->second, "1,3");
  const auto ts = std::find(l.argv.begin(), l.argv.end(), "--tensor-split");
  ASSERT_NE(ts, l.argv.end());
  EXPECT_EQ(*(ts + 1), "0,1");
  // Unrestricted: every GPU, set explicitly so an inherited CUDA_VISIBLE_DEVICES cannot renumber them.
  auto all = placement::launch_for(cfg, "llama-server", "m", "/m.gguf", {1}, 2, 8081, 4096, {}, {});
  const auto env2 =
      std::find_if(all.env.begin(), all.env.end(), [](const auto& kv) { return kv.first == "CUDA_VISIBLE_DEVICES"; });
  ASSERT_NE(env2, all.env.end());
  EXPECT_EQ(env2->second, "0,1");
}
