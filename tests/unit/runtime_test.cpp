// Runtime (load / unload / collect) against fake effects: no processes, no
// sockets. The end-to-end tests cover the same paths with the real binary.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "gpu/parse.h"
#include "runtime/runtime.h"
#include "support/runtime_fakes.h"
#include "support/temp_dir.h"
#include "unit/gguf_writer.h"

using namespace llamactl;
using namespace llamactl::runtime;

namespace {

using llamactl::testing::FakeHealth;
using llamactl::testing::FakeOps;
using llamactl::testing::FakeProbe;

struct Fixture {
  llamactl::testing::TempDir tmp;
  FakeProbe probe;
  FakeOps ops;
  FakeHealth health;
  std::string model = tmp / "tiny.gguf";
  std::unique_ptr<Runtime> rt;

  Fixture() {
    llamactl::testing::write_gguf(model, {});
    config::Config cfg;
    cfg.llama_server = "/opt/llama/llama-server";
    rt = std::make_unique<Runtime>(cfg, state::StateDir(tmp / "state"), probe, ops, health,
                                   classify_options(cfg, std::nullopt));
  }
  state::StateFile state() { return *state::StateDir(tmp / "state").peek(); }
  LoadRequest request(std::optional<std::string> gpu = std::nullopt) {
    LoadRequest r;
    r.model = model;
    r.gpu = std::move(gpu);
    r.timeout = std::chrono::milliseconds(300);
    return r;
  }
};

bool has_env(const platform::SpawnSpec& s, const std::string& k, const std::string& v) {
  return std::find(s.set_env.begin(), s.set_env.end(), std::pair{k, v}) != s.set_env.end();
}

}  // namespace

TEST(Runtime, LoadRecordsRunningInstanceWithIsolation) {
  Fixture f;
  auto out = f.rt->load(f.request("1"));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->instance.rec.gpus, std::vector<int>{1});
  EXPECT_EQ(out->instance.rec.port, 8082);
  ASSERT_EQ(f.ops.spawned.size(), 1u);
  const auto& spec = f.ops.spawned[0];
  EXPECT_TRUE(has_env(spec, "CUDA_VISIBLE_DEVICES", "1"));
  EXPECT_EQ(spec.argv[0], "/opt/llama/llama-server");
  EXPECT_EQ(spec.drop_env_prefixes, (std::vector<std::string>{"LLAMA_ARG_", "AIP_"}));
  const auto st = f.state();
  ASSERT_EQ(st.instances.size(), 1u);
  EXPECT_EQ(st.instances[0].state, "running");
  EXPECT_EQ(st.instances[0].start_time, 77u);
}

TEST(Runtime, PortMovesPastTakenAndReservedPorts) {
  Fixture f;
  f.ops.taken_ports = {8081};
  auto a = f.rt->load(f.request("0"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->instance.rec.port, 8082);
  EXPECT_NE(std::find(a->notes.begin(), a->notes.end(), "port 8081 is taken; using 8082"), a->notes.end());
  // GPU 1 prefers 8082, which our first instance holds.
  auto second = f.request("1");
  second.model = f.tmp / "other.gguf";
  llamactl::testing::write_gguf(second.model, {});
  auto b = f.rt->load(second);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->instance.rec.port, 8083);
}

TEST(Runtime, ServerExitDuringLoadIsStartFailureAndLeavesNoRecord) {
  Fixture f;
  f.health.status[8081] = 503;
  f.ops.exited[1000] = 1;
  auto out = f.rt->load(f.request("0"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, ErrorKind::start_failed);
  EXPECT_NE(out.error().message.find("exited with code 1"), std::string::npos);
  EXPECT_TRUE(f.state().instances.empty());
}

TEST(Runtime, HealthTimeoutStopsTheServer) {
  Fixture f;
  f.health.status[8081] = 503;
  auto out = f.rt->load(f.request("0"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, ErrorKind::timeout);
  ASSERT_FALSE(f.ops.signals.empty());
  EXPECT_EQ(f.ops.signals[0], (std::pair<int64_t, platform::Signal>{1000, platform::Signal::terminate}));
  EXPECT_TRUE(f.ops.alive_pids.empty());
  EXPECT_TRUE(f.state().instances.empty());
}

TEST(Runtime, UnloadEscalatesToKillAndForgets) {
  Fixture f;
  ASSERT_TRUE(f.rt->load(f.request("0")).ok());
  f.ops.ignores_term.insert(1000);
  UnloadRequest u;
  u.all = true;
  u.timeout = std::chrono::milliseconds(50);
  auto out = f.rt->unload(u);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->stopped.size(), 1u);
  EXPECT_TRUE(out->stopped[0].killed);
  EXPECT_FALSE(out->stopped[0].still_running);
  EXPECT_EQ(f.ops.signals.back().second, platform::Signal::kill);
  EXPECT_TRUE(f.state().instances.empty());
}

// A record whose pid now runs as another user (a forged record, or a pid
// reused by someone else with a matching start time) is not ours: it turns
// into a dead record, holds nothing, and nothing is ever signalled.
TEST(Runtime, ARecordOfAProcessOfAnotherUserIsNeverSignalled) {
  Fixture f;
  ASSERT_TRUE(f.rt->load(f.request("0")).ok());
  f.ops.owners[1000] = "mallory";
  f.ops.signals.clear();
  auto view = f.rt->collect(false);
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->instances.size(), 1u);
  EXPECT_EQ(view->instances[0].state, "dead");
  UnloadRequest u;
  u.all = true;
  u.timeout = std::chrono::milliseconds(50);
  ASSERT_TRUE(f.rt->unload(u).ok());
  EXPECT_TRUE(f.ops.signals.empty()) << "signalled pid " << f.ops.signals[0].first;
  EXPECT_TRUE(f.ops.alive_pids.count(1000));
}

TEST(Runtime, CollectKeepsDeadRecordsAndPromotesHealthyStarting) {
  Fixture f;
  ASSERT_TRUE(f.rt->load(f.request("0")).ok());
  // A loader killed mid-wait leaves "starting"; a dead server leaves a stale record.
  state::StateDir dir(f.tmp / "state");
  {
    auto lock = dir.lock();
    std::vector<std::string> w;
    auto st = *dir.load(*lock, w);
    st.instances[0].state = "starting";
    state::Instance dead = st.instances[0];
    dead.model = "gone";
    dead.pid = 4242;
    dead.gpus = {1};
    st.instances.push_back(dead);
    ASSERT_TRUE(dir.save(*lock, st).ok());
  }
  auto v = f.rt->collect(true);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->instances.size(), 2u);
  EXPECT_EQ(v->instances[0].state, "running");
  EXPECT_EQ(v->instances[1].state, "dead");
  EXPECT_EQ(v->gpus.gpus[1].state, gpu::GpuState::idle);
  ASSERT_EQ(v->notices.size(), 1u);
  const auto st = f.state();
  ASSERT_EQ(st.instances.size(), 2u);  // the dead one stays as a record
  EXPECT_EQ(st.instances[0].state, "running");
  EXPECT_EQ(st.instances[1].state, "dead");
  EXPECT_TRUE(st.instances[1].died_at_ms.has_value());
  // Seen again: still dead, no second notice.
  auto again = f.rt->collect(false);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->notices.empty());
  EXPECT_EQ(again->instances[1].state, "dead");
}

TEST(Runtime, UndeliverableGracefulStopKillsWithoutWaiting) {
  Fixture f;
  ASSERT_TRUE(f.rt->load(f.request("0")).ok());
  f.ops.term_undeliverable.insert(1000);
  UnloadRequest u;
  u.model = "tiny";
  u.timeout = std::chrono::seconds(30);
  const auto t0 = std::chrono::steady_clock::now();
  auto out = f.rt->unload(u);
  ASSERT_TRUE(out.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_TRUE(out->stopped[0].killed);
  EXPECT_TRUE(f.state().instances.empty());
}

namespace {

bool has_arg(const platform::SpawnSpec& s, const std::string& a) {
  return std::find(s.argv.begin(), s.argv.end(), a) != s.argv.end();
}

}  // namespace

TEST(Runtime, ARerankerGgufStartsWithReranking) {
  Fixture f;
  // <arch>.pooling_type 4 is llama.h's LLAMA_POOLING_TYPE_RANK.
  const std::string ranker = f.tmp / "ranker.gguf";
  llamactl::testing::GgufSpec spec;
  spec.extra = {llamactl::testing::kv_u32("llama.pooling_type", 4)};
  llamactl::testing::write_gguf(ranker, spec);
  LoadRequest r = f.request("0");
  r.model = ranker;
  ASSERT_TRUE(f.rt->load(r).ok());
  ASSERT_TRUE(f.rt->load(f.request("1")).ok());  // the plain model
  ASSERT_EQ(f.ops.spawned.size(), 2u);
  EXPECT_TRUE(has_arg(f.ops.spawned[0], "--reranking"));
  EXPECT_FALSE(has_arg(f.ops.spawned[0], "--pooling")) << "rank pooling is the model's own";
  EXPECT_FALSE(has_arg(f.ops.spawned[1], "--reranking"));
}

TEST(Runtime, RerankingIsForcedByConfigOrAskedForOnce) {
  llamactl::testing::TempDir tmp;
  FakeProbe probe;
  FakeOps ops;
  FakeHealth health;
  const std::string model = tmp / "plain.gguf";
  llamactl::testing::write_gguf(model, {});
  config::Config cfg;
  cfg.llama_server = "/opt/llama/llama-server";
  for (const char* name : {"forced", "both", "asked"}) {
    auto& m = cfg.models[name];
    m.name = name;
    m.path = model;
  }
  cfg.models["forced"].reranking = true;
  cfg.models["both"].embeddings = true;
  cfg.models["both"].reranking = true;
  Runtime rt(cfg, state::StateDir(tmp / "state"), probe, ops, health, classify_options(cfg, std::nullopt));
  for (const char* name : {"forced", "both", "asked"}) {
    LoadRequest r;
    r.model = name;
    r.timeout = std::chrono::milliseconds(300);
    r.gpu = "cpu";                                                     // three instances, two GPUs
    if (std::string(name) == "asked") r.extra_args = {"--reranking"};  // serve's rerank request
    const auto out = rt.load(r);
    ASSERT_TRUE(out.ok()) << name << ": " << out.error().message;
  }
  ASSERT_EQ(ops.spawned.size(), 3u);
  for (const auto& s : ops.spawned)
    EXPECT_EQ(std::count(s.argv.begin(), s.argv.end(), "--reranking"), 1) << "once, not twice";
  EXPECT_TRUE(has_arg(ops.spawned[1], "--embeddings"));
  EXPECT_FALSE(has_arg(ops.spawned[1], "--pooling")) << "--pooling mean would undo the rank pooling";
}
