// The scheduler as a pure state machine: events in, decisions out, no
// threads and no sleeps (as llama-swap tests its scheduler).

#include "serve/scheduler.h"

#include <gtest/gtest.h>

using namespace llamactl::serve;

namespace {

constexpr int64_t kMin = 60 * 1000;

Record running(const std::string& model, int port, int64_t pid, int64_t keep_alive = -1, bool by_hand = true) {
  return {model, port, pid, true, 1000, keep_alive, by_hand, {}};
}

}  // namespace

TEST(Scheduler, FirstRequestStartsLaterOnesJoinTheSameLoad) {
  Scheduler s;
  EXPECT_EQ(s.admit("a", 1, 0).kind, Admission::Kind::start);
  for (uint64_t w = 2; w <= 20; ++w) EXPECT_EQ(s.admit("a", w, 0).kind, Admission::Kind::wait);
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  const auto g = s.loaded("a", 8081, 42, 5 * kMin, false, 100);
  EXPECT_EQ(g.waiters.size(), 20u);
  EXPECT_EQ(g.port, 8081);
  EXPECT_EQ(s.find("a")->in_flight, 20);  // each grant counts from admission
}

TEST(Scheduler, ReadyModelTakesTheFastPath) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 42, 5 * kMin, false, 0);
  s.finish("a", 10);
  const auto a = s.admit("a", 2, 20);
  EXPECT_EQ(a.kind, Admission::Kind::serve);
  EXPECT_EQ(a.port, 8081);
  EXPECT_EQ(s.find("a")->in_flight, 1);
}

TEST(Scheduler, OtherModelsAreNotBlockedByALoad) {
  Scheduler s;
  EXPECT_EQ(s.admit("a", 1, 0).kind, Admission::Kind::start);
  EXPECT_EQ(s.admit("b", 2, 0).kind, Admission::Kind::start);  // its own load, in parallel
}

TEST(Scheduler, CancelledWaiterIsNotGranted) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.admit("a", 2, 0);
  s.cancel("a", 2);
  const auto g = s.loaded("a", 8081, 42, 0, false, 0);
  EXPECT_EQ(g.waiters, std::vector<uint64_t>{1});
  EXPECT_EQ(s.find("a")->in_flight, 1);
}

TEST(Scheduler, FailedLoadFailsEveryWaiterAndNextRequestStartsAgain) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.admit("a", 2, 0);
  EXPECT_EQ(s.load_failed("a").waiters.size(), 2u);
  EXPECT_EQ(s.find("a")->phase, Phase::stopped);
  EXPECT_EQ(s.admit("a", 3, 0).kind, Admission::Kind::start);
}

TEST(Scheduler, EvictsLeastRecentlyUsedIdleInstance) {
  Scheduler s;
  for (const auto* m : {"old", "new", "busy"}) {
    s.admit(m, 1, 0);
    s.loaded(m, 8081, 1, 5 * kMin, false, 0);
  }
  s.finish("old", 100);
  s.finish("new", 200);
  // "busy" keeps its request in flight: it is never evicted.
  const auto v = s.evict_for("x");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(*v, "old");
  EXPECT_EQ(s.find("old")->phase, Phase::stopping);
  EXPECT_EQ(*s.evict_for("x"), "new");
  EXPECT_FALSE(s.evict_for("x").has_value());  // only the busy one is left
}

TEST(Scheduler, NeverEvictsHandLoadedWithoutKeepAliveNorTheModelItself) {
  Scheduler s;
  const auto mark = s.begin_sync();
  s.sync(mark, {running("manual", 8081, 10), running("manual-ka", 8082, 11, kMin)}, 0);
  EXPECT_EQ(*s.evict_for("x"), "manual-ka");
  EXPECT_FALSE(s.evict_for("x").has_value());
  s.admit("me", 1, 0);
  s.loaded("me", 8083, 12, kMin, false, 0);
  s.finish("me", 0);
  EXPECT_FALSE(s.evict_for("me").has_value());
}

TEST(Scheduler, NothingToEvictWhenAllBusy) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, kMin, false, 0);
  EXPECT_FALSE(s.evict_for("b").has_value());
}

TEST(Scheduler, ReapsAtExpiryCountedFromTheEndOfTheLastRequest) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, 1000, false, 0);
  EXPECT_TRUE(s.expired(5000).empty());  // in flight: never reaped
  s.finish("a", 5000);
  EXPECT_EQ(s.next_expiry(), 6000);
  EXPECT_TRUE(s.expired(5999).empty());
  EXPECT_EQ(s.expired(6000), std::vector<std::string>{"a"});
  EXPECT_EQ(s.find("a")->phase, Phase::stopping);
  EXPECT_TRUE(s.expired(7000).empty());  // decided once
}

TEST(Scheduler, KeepAliveZeroReapsAssoonAsIdleAndNegativeNever) {
  Scheduler s;
  s.admit("zero", 1, 0);
  s.loaded("zero", 8081, 1, 0, false, 0);
  s.admit("never", 2, 0);
  s.loaded("never", 8082, 2, -1, false, 0);
  s.finish("zero", 10);
  s.finish("never", 10);
  EXPECT_EQ(s.expired(10), std::vector<std::string>{"zero"});
  EXPECT_TRUE(s.expired(1000 * kMin).empty());
}

TEST(Scheduler, RequestDuringStopWaitsThenRestarts) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, 0, false, 0);
  s.finish("a", 0);
  ASSERT_EQ(s.expired(0).size(), 1u);
  // The race that hung llama-swap (#946): a request arrives while stopping.
  EXPECT_EQ(s.admit("a", 2, 1).kind, Admission::Kind::wait);
  EXPECT_TRUE(s.stopped("a"));  // the caller starts a load for the waiter
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  EXPECT_EQ(s.loaded("a", 8081, 3, 0, false, 2).waiters, std::vector<uint64_t>{2});
}

TEST(Scheduler, StopWithNobodyWaitingEndsStopped) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, 0, false, 0);
  s.finish("a", 0);
  s.expired(0);
  EXPECT_FALSE(s.stopped("a"));
  EXPECT_EQ(s.find("a")->phase, Phase::stopped);
}

TEST(Scheduler, SyncAdoptsRunningInstancesAndDropsVanishedOnes) {
  Scheduler s;
  auto mark = s.begin_sync();
  auto r = s.sync(mark, {running("cli", 8081, 10, -1, true), {"booting", 8082, 11, false, 0, -1, true, {}}}, 0);
  EXPECT_EQ(r.adopted, std::vector<std::string>{"cli"});  // a starting record is not adopted
  EXPECT_EQ(s.admit("cli", 1, 0).port, 8081);
  s.finish("cli", 5);
  mark = s.begin_sync();
  r = s.sync(mark, {}, 10);  // `llamactl unload cli` behind our back
  EXPECT_EQ(r.vanished, std::vector<std::string>{"cli"});
  EXPECT_EQ(s.admit("cli", 2, 10).kind, Admission::Kind::start);  // never the dead port
}

TEST(Scheduler, SyncFromBeforeALoadDoesNotUndoIt) {
  Scheduler s;
  const auto mark = s.begin_sync();  // reading started...
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, kMin, false, 0);  // ...the load finished meanwhile...
  const auto r = s.sync(mark, {}, 0);      // ...and the reading does not know it yet
  EXPECT_TRUE(r.vanished.empty());
  EXPECT_EQ(s.find("a")->phase, Phase::ready);
}

TEST(Scheduler, SyncLeavesStartingAndStoppingAloneAndPicksUpKeepAliveChanges) {
  Scheduler s;
  s.admit("a", 1, 0);
  auto mark = s.begin_sync();
  s.sync(mark, {}, 0);
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  s.loaded("a", 8081, 7, -1, true, 0);
  s.finish("a", 0);
  mark = s.begin_sync();
  s.sync(mark, {running("a", 8081, 7, 2 * kMin)}, 0);  // `load a --keep-alive 2m`
  EXPECT_EQ(s.find("a")->keep_alive_ms, 2 * kMin);
  EXPECT_EQ(s.next_expiry(), 1000 + 2 * kMin);  // the record's last use is newer
}

TEST(Scheduler, SyncNoticesAReplacedPid) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, -1, false, 0);
  s.finish("a", 0);
  const auto mark = s.begin_sync();
  const auto r = s.sync(mark, {running("a", 8090, 8)}, 0);
  EXPECT_EQ(r.vanished, std::vector<std::string>{"a"});
  EXPECT_EQ(r.adopted, std::vector<std::string>{"a"});
  EXPECT_EQ(s.find("a")->port, 8090);
}

TEST(Scheduler, KeepAlivePerRequestSticks) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, kMin, false, 0);
  s.set_keep_alive("a", 0);
  s.finish("a", 50);
  EXPECT_EQ(s.expired(50), std::vector<std::string>{"a"});
}

TEST(Scheduler, IdleInstanceWithoutEmbeddingsRestartsWithThem) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, kMin, false, 0, Launch{false, 4096, 0});
  s.finish("a", 10);
  const Launch emb{true, 0};
  EXPECT_EQ(s.admit("a", 2, 20, emb).kind, Admission::Kind::restart);
  EXPECT_EQ(s.find("a")->phase, Phase::stopping);
  EXPECT_EQ(s.find("a")->in_flight, 0) << "queued, not served by the instance that lacks embeddings";
  EXPECT_TRUE(s.find("a")->want.embeddings);
  EXPECT_EQ(s.find("a")->want.context, 4096) << "keeps what it ran with";
  EXPECT_EQ(s.admit("a", 3, 20).kind, Admission::Kind::wait) << "others wait for the restart too";
  EXPECT_TRUE(s.stopped("a")) << "the stop job then starts the load";
  const auto g = s.loaded("a", 8082, 8, kMin, false, 30, Launch{true, 4096, 0});
  EXPECT_EQ(g.waiters, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(s.admit("a", 4, 40, emb).kind, Admission::Kind::serve) << "now it has them";
}

TEST(Scheduler, BusyInstanceWithoutEmbeddingsRefusesAndKeepsServing) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, kMin, false, 0, Launch{false, 4096, 0});  // request 1 in flight
  EXPECT_EQ(s.admit("a", 2, 5, Launch{true, 0, 0}).kind, Admission::Kind::refuse);
  EXPECT_EQ(s.find("a")->phase, Phase::ready);
  EXPECT_EQ(s.find("a")->in_flight, 1) << "the refused request is not counted";
  EXPECT_EQ(s.admit("a", 3, 5).kind, Admission::Kind::serve);
}

TEST(Scheduler, RerankRestartsAnIdleInstanceWithRerankingAndRefusesABusyOne) {
  Scheduler s;
  const Launch rerank{false, 0, 0, true};
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, kMin, false, 0, Launch{false, 4096, 0});  // request 1 in flight
  EXPECT_EQ(s.admit("a", 2, 5, rerank).kind, Admission::Kind::refuse);
  EXPECT_EQ(s.find("a")->in_flight, 1);
  s.finish("a", 6);
  EXPECT_EQ(s.admit("a", 3, 10, rerank).kind, Admission::Kind::restart);
  EXPECT_TRUE(s.find("a")->want.reranking);
  EXPECT_FALSE(s.find("a")->want.embeddings);
  EXPECT_EQ(s.find("a")->want.context, 4096) << "keeps what it ran with";
  EXPECT_TRUE(s.stopped("a"));
  s.loaded("a", 8082, 8, kMin, false, 20, launch_of({"llama-server", "-c", "4096", "--reranking"}));
  EXPECT_EQ(s.admit("a", 4, 30, rerank).kind, Admission::Kind::serve) << "now it has it";
  EXPECT_EQ(s.admit("a", 5, 30).kind, Admission::Kind::serve) << "and still serves the rest";
}

TEST(Scheduler, LargerContextReloadsOnlyWhenIdle) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, kMin, false, 0, Launch{false, 4096, 0});
  // Busy: served as it is (no reload under load).
  EXPECT_EQ(s.admit("a", 2, 5, Launch{false, 8192, 0}).kind, Admission::Kind::serve);
  s.finish("a", 6);
  s.finish("a", 7);
  EXPECT_EQ(s.admit("a", 3, 8, Launch{false, 2048, 0}).kind, Admission::Kind::serve) << "smaller: fits";
  s.finish("a", 9);
  EXPECT_EQ(s.admit("a", 4, 10, Launch{false, 8192, 0}).kind, Admission::Kind::restart);
  EXPECT_EQ(s.find("a")->want.context, 8192);
}

TEST(Scheduler, LaunchIsReadFromTheCommandLine) {
  const Launch l = launch_of({"llama-server", "-m", "x.gguf", "-c", "8192", "--embeddings", "--port", "1"});
  EXPECT_TRUE(l.embeddings);
  EXPECT_EQ(l.context, 8192);
  EXPECT_EQ(launch_of({"llama-server", "--ctx-size", "512"}).context, 512);
  EXPECT_FALSE(launch_of({"llama-server", "-c"}).embeddings);
  EXPECT_FALSE(l.reranking);
  EXPECT_TRUE(launch_of({"llama-server", "--reranking"}).reranking);
  EXPECT_TRUE(launch_of({"llama-server", "--rerank", "-c", "512"}).reranking);
  EXPECT_EQ(launch_of({"llama-server", "-c", "x"}).context, 0);
  // The physical batch: llama-server's defaults, then the smaller of -ub and -b.
  EXPECT_EQ(l.ubatch, 512);
  EXPECT_EQ(launch_of({"llama-server", "-ub", "4096", "-b", "4096"}).ubatch, 4096);
  EXPECT_EQ(launch_of({"llama-server", "--ubatch-size", "4096"}).ubatch, 2048) << "bounded by the default -b";
  EXPECT_EQ(launch_of({"llama-server", "--batch-size", "256"}).ubatch, 256);
  // The "--flag=VALUE" form too.
  EXPECT_EQ(launch_of({"llama-server", "--ubatch-size=1024", "--batch-size=1024", "--ctx-size=8192"}).ubatch, 1024);
  EXPECT_EQ(launch_of({"llama-server", "--ctx-size=8192"}).context, 8192);
}
