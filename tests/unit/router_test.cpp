// serve's Router over a Runtime with fake effects (no processes, no
// sockets): admission through a load job, and the status feed that GET
// /models and GET /models/sse read (what changed, in order, whoever changed
// it; who is woken; a death and a failed load shown as failed).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "serve/router.h"
#include "support/runtime_fakes.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "unit/gguf_writer.h"

using namespace llamactl;
using namespace llamactl::serve;
using llamactl::testing::eventually;

namespace {

struct Fixture {
  llamactl::testing::TempDir tmp;
  llamactl::testing::FakeProbe probe;
  llamactl::testing::FakeOps ops;
  llamactl::testing::FakeHealth health;
  Metrics metrics;
  std::unique_ptr<runtime::Runtime> rt;
  std::unique_ptr<Router> router;

  Fixture() {
    config::Config cfg;
    cfg.llama_server = "/opt/llama/llama-server";
    for (const std::string name : {"tiny", "other"}) {
      config::ModelConfig m;
      m.name = name;
      m.path = tmp / (name + ".gguf");
      llamactl::testing::write_gguf(m.path, {});
      cfg.models[name] = m;
    }
    rt = std::make_unique<runtime::Runtime>(cfg, state::StateDir(tmp / "state"), probe, ops, health,
                                            runtime::classify_options(cfg, std::nullopt));
    RouterOptions opts;
    opts.load_timeout = std::chrono::milliseconds(300);
    router = std::make_unique<Router>(*rt, metrics, opts);
  }
  ~Fixture() { router->stop(false); }

  ModelStatus status(const std::string& model) const {
    for (auto& [name, s] : router->statuses())
      if (name == model) return s;
    return {};
  }
  /// Admits a request for `model` and waits for its load; the port, or 0.
  int request(const std::string& model) {
    auto woken = std::make_shared<std::atomic<bool>>(false);
    Ticket t = router->admit(model, Launch{}, [woken] { *woken = true; });
    if (t.kind == Ticket::Kind::pending) {
      if (!eventually([&] { return woken->load(); })) return 0;
      t = router->result(t.waiter);
    }
    if (t.kind != Ticket::Kind::ready) return 0;
    router->finish(model);
    return t.port;
  }
  runtime::LoadRequest cli_load(const std::string& model) const {
    runtime::LoadRequest r;
    r.model = model;
    r.timeout = std::chrono::milliseconds(300);
    return r;
  }
};

/// The statuses `events` give `model`, in order.
std::vector<std::string> values(const std::vector<StatusEvent>& events, const std::string& model) {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (e.model == model) out.push_back(e.status.value);
  return out;
}

}  // namespace

TEST(Router, EveryConfiguredModelStartsUnloadedWithNothingToAnnounce) {
  Fixture f;
  uint64_t cursor = 99;
  const auto all = f.router->statuses(&cursor);
  ASSERT_EQ(all.size(), 2U);
  for (const auto& [name, s] : all) {
    EXPECT_EQ(s.value, "unloaded") << name;
    EXPECT_FALSE(s.failed);
    EXPECT_TRUE(s.args.empty());
  }
  EXPECT_EQ(cursor, 0U);
  EXPECT_TRUE(f.router->events_since(cursor).events.empty());
}

TEST(Router, AFirstRequestLoadsAndTheFeedSaysLoadingThenLoadedWithArgs) {
  Fixture f;
  uint64_t cursor = 0;
  f.router->statuses(&cursor);
  std::atomic<int> wakes{0};
  const uint64_t id = f.router->subscribe([&] { ++wakes; });
  const int port = f.request("tiny");
  ASSERT_GT(port, 0);
  const StatusFeed feed = f.router->events_since(cursor);
  EXPECT_FALSE(feed.missed);
  EXPECT_FALSE(feed.closed);
  EXPECT_EQ(values(feed.events, "tiny"), (std::vector<std::string>{"loading", "loaded"}));
  EXPECT_TRUE(values(feed.events, "other").empty());
  EXPECT_GE(wakes.load(), 2);
  const auto& loaded = feed.events.back().status;
  EXPECT_EQ(loaded.args.front(), "/opt/llama/llama-server");
  EXPECT_NE(std::find(loaded.args.begin(), loaded.args.end(), std::to_string(port)), loaded.args.end());
  EXPECT_EQ(f.status("tiny").value, "loaded");
  // Seqs count up from 1, and the cursor moved past them: nothing is read twice.
  EXPECT_EQ(feed.events.front().seq, 1U);
  EXPECT_EQ(cursor, feed.events.back().seq);
  EXPECT_TRUE(f.router->events_since(cursor).events.empty());
  f.router->unsubscribe(id);
}

TEST(Router, ACliLoadAndUnloadAreAnnouncedAtTheNextRefresh) {
  Fixture f;
  uint64_t cursor = 0;
  f.router->statuses(&cursor);
  ASSERT_TRUE(f.rt->load(f.cli_load("other")).ok());
  EXPECT_EQ(f.status("other").value, "unloaded");  // not read yet
  f.router->refresh();
  EXPECT_EQ(f.status("other").value, "loaded");
  runtime::UnloadRequest u;
  u.model = "other";
  ASSERT_TRUE(f.rt->unload(u).ok());
  f.router->refresh();
  const StatusFeed feed = f.router->events_since(cursor);
  EXPECT_EQ(values(feed.events, "other"), (std::vector<std::string>{"loaded", "unloaded"}));
  EXPECT_FALSE(feed.events.back().status.failed);  // unloaded on purpose
}

TEST(Router, ADeathIsUnloadedAndFailedWithItsExitCode) {
  Fixture f;
  ASSERT_GT(f.request("tiny"), 0);
  ASSERT_EQ(f.ops.spawned.size(), 1U);
  const int64_t pid = f.ops.next_pid - 1;
  f.ops.exited[pid] = 9;
  f.router->refresh();
  const ModelStatus s = f.status("tiny");
  EXPECT_EQ(s.value, "unloaded");
  EXPECT_TRUE(s.failed);
  ASSERT_TRUE(s.exit_code.has_value());
  EXPECT_EQ(*s.exit_code, 9);
  EXPECT_TRUE(s.args.empty());
  // Loaded again, it is no longer failed.
  ASSERT_GT(f.request("tiny"), 0);
  EXPECT_FALSE(f.status("tiny").failed);
}

TEST(Router, AFailedLoadIsUnloadedAndFailedWithoutAnExitCode) {
  Fixture f;
  f.health.status[8081] = 503;  // never healthy: the load times out
  EXPECT_EQ(f.request("tiny"), 0);
  const ModelStatus s = f.status("tiny");
  EXPECT_EQ(s.value, "unloaded");
  EXPECT_TRUE(s.failed);
  EXPECT_FALSE(s.exit_code.has_value());
}

TEST(Router, AnIdleInstanceRestartedForEmbeddingsIsUnloadingThenLoadingAgain) {
  Fixture f;
  ASSERT_GT(f.request("tiny"), 0);
  uint64_t cursor = 0;
  f.router->statuses(&cursor);
  auto woken = std::make_shared<std::atomic<bool>>(false);
  Ticket t = f.router->admit("tiny", Launch{true, 0, 0}, [woken] { *woken = true; });
  ASSERT_EQ(t.kind, Ticket::Kind::pending);
  ASSERT_TRUE(eventually([&] { return woken->load(); }));
  ASSERT_EQ(f.router->result(t.waiter).kind, Ticket::Kind::ready);
  f.router->finish("tiny");
  const StatusFeed feed = f.router->events_since(cursor);
  // The scheduler goes from stopping straight to starting (requests wait for
  // it), so there is no "unloaded" in between.
  EXPECT_EQ(values(feed.events, "tiny"), (std::vector<std::string>{"unloading", "loading", "loaded"}));
  const auto& args = feed.events.back().status.args;
  EXPECT_NE(std::find(args.begin(), args.end(), "--embeddings"), args.end());
}

TEST(Router, ClosingTheFeedWakesOnlyWhoStillListens) {
  Fixture f;
  std::atomic<int> a{0}, b{0};
  f.router->subscribe([&] { ++a; });
  const uint64_t gone = f.router->subscribe([&] { ++b; });
  f.router->unsubscribe(gone);
  f.router->close_feed();
  EXPECT_EQ(a.load(), 1);
  EXPECT_EQ(b.load(), 0);
  uint64_t cursor = 0;
  EXPECT_TRUE(f.router->events_since(cursor).closed);
  f.router->close_feed();  // once is enough
  EXPECT_EQ(a.load(), 1);
}
