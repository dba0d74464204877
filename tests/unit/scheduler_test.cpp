// The scheduler as a pure state machine: events in, decisions out, no
// threads and no sleeps (as llama-swap tests its scheduler).

#include "serve/scheduler.h"

#include <gtest/gtest.h>

#include <functional>
#include <iostream>
#include <map>
#include <queue>
#include <set>
#include <tuple>

using namespace llamactl::serve;

namespace {

constexpr int64_t kMin = 60 * 1000;

Record running(const std::string& model, int port, int64_t pid, int64_t keep_alive = -1, bool by_hand = true) {
  return {model, port, pid, true, 1000, keep_alive, by_hand, {}};
}

/// The waiters that `actions` admit, in order.
std::vector<uint64_t> granted(const Actions& actions) {
  std::vector<uint64_t> out;
  for (const auto& a : actions)
    if (a.kind == Action::Kind::grant) out.insert(out.end(), a.waiters.begin(), a.waiters.end());
  return out;
}

std::vector<uint64_t> failed(const Actions& actions) {
  std::vector<uint64_t> out;
  for (const auto& a : actions)
    if (a.kind == Action::Kind::fail) out.insert(out.end(), a.waiters.begin(), a.waiters.end());
  return out;
}

/// "load a", "stop b (evicted)" for each job action, in order.
std::vector<std::string> jobs(const Actions& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    if (a.kind == Action::Kind::load) out.push_back("load " + a.model);
    if (a.kind == Action::Kind::stop) out.push_back("stop " + a.model + " (" + a.reason + ")");
  }
  return out;
}

}  // namespace

TEST(Scheduler, FirstRequestStartsLaterOnesJoinTheSameLoad) {
  Scheduler s;
  EXPECT_EQ(s.admit("a", 1, 0).kind, Admission::Kind::start);
  for (uint64_t w = 2; w <= 20; ++w) EXPECT_EQ(s.admit("a", w, 0).kind, Admission::Kind::wait);
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  const auto g = s.loaded("a", 8081, 42, 5 * kMin, false, 100);
  EXPECT_EQ(granted(g).size(), 20u);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].port, 8081);
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
  s.cancel("a", 2, 0);
  const auto g = s.loaded("a", 8081, 42, 0, false, 0);
  EXPECT_EQ(granted(g), std::vector<uint64_t>{1});
  EXPECT_EQ(s.find("a")->in_flight, 1);
}

TEST(Scheduler, FailedLoadFailsEveryWaiterAndNextRequestStartsAgain) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.admit("a", 2, 0);
  const auto f = s.load_failed("a", 503, "no room");
  EXPECT_EQ(failed(f), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(f[0].status, 503);
  EXPECT_EQ(f[0].reason, "no room");
  EXPECT_EQ(s.find("a")->phase, Phase::stopped);
  EXPECT_EQ(s.admit("a", 3, 0).kind, Admission::Kind::start);
}

TEST(Scheduler, EvictionCandidatesAreIdleOnesLeastRecentlyUsedFirstThenTheLeastBusy) {
  Scheduler s;
  for (const auto* m : {"old", "new", "busy", "busier"}) {
    s.admit(m, 1, 0);
    s.loaded(m, 8081, 1, 5 * kMin, false, 0);
  }
  s.admit("busier", 2, 0);
  s.finish("old", 100);
  s.finish("new", 200);
  EXPECT_EQ(s.eviction_candidates("x"), (std::vector<std::string>{"old", "new", "busy", "busier"}));
  EXPECT_EQ(s.eviction_candidates("old"), (std::vector<std::string>{"new", "busy", "busier"})) << "never itself";
}

TEST(Scheduler, NeverEvictsHandLoadedWithoutKeepAlive) {
  Scheduler s;
  const auto mark = s.begin_sync();
  s.sync(mark, {running("manual", 8081, 10), running("manual-ka", 8082, 11, kMin)}, 0);
  EXPECT_EQ(s.eviction_candidates("x"), std::vector<std::string>{"manual-ka"});
}

TEST(Scheduler, NoRoomEvictsTheIdleBlockerAndLoadsOnceItStopped) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0);
  s.finish("a", 10);
  EXPECT_EQ(s.admit("b", 2, 20).kind, Admission::Kind::start);
  // b's load found no room; a holds it and is idle: stopped for b, at once.
  auto acts = s.no_room("b", {"a"}, 30);
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"stop a (evicted)"});
  EXPECT_EQ(acts[0].pid, 7);
  EXPECT_EQ(s.find("b")->phase, Phase::queued);
  EXPECT_EQ(s.swaps(), 1u);
  // A request for a while it stops waits, behind b.
  EXPECT_EQ(s.admit("a", 3, 40).kind, Admission::Kind::wait);
  acts = s.stopped("a", 50);
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load b"}) << "the stop job never runs the load itself";
  EXPECT_EQ(s.find("a")->phase, Phase::queued) << "a's request waits its turn";
  acts = s.loaded("b", 8082, 8, 5 * kMin, false, 60);
  EXPECT_EQ(granted(acts), std::vector<uint64_t>{2});
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load a"}) << "then a tries";
}

TEST(Scheduler, ABusyBlockerDrainsAndIsEvictedOnlyWhenIdle) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0, Launch{}, 1);  // one slot, request 1 in flight
  EXPECT_EQ(s.admit("a", 2, 5).kind, Admission::Kind::wait) << "its one slot is busy";
  s.admit("b", 10, 10);
  auto acts = s.no_room("b", {"a"}, 12);
  EXPECT_TRUE(jobs(acts).empty()) << "never evicted with a request in flight";
  // a still serves request 2 (it came before b's), but not 3 (after b's).
  EXPECT_EQ(s.admit("a", 3, 15).kind, Admission::Kind::wait);
  EXPECT_FALSE(s.try_serve("a", 15).has_value());
  acts = s.finish("a", 20);
  EXPECT_EQ(granted(acts), std::vector<uint64_t>{2});
  EXPECT_TRUE(jobs(acts).empty());
  acts = s.finish("a", 30);
  EXPECT_TRUE(granted(acts).empty()) << "request 3 came after b's: it waits";
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"stop a (evicted)"});
  acts = s.stopped("a", 40);
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load b"});
  acts = s.loaded("b", 8082, 8, 5 * kMin, false, 50);
  EXPECT_EQ(granted(acts), std::vector<uint64_t>{10});
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load a"}) << "a's request 3 is next in line";
}

TEST(Scheduler, AModelLoadedForWaitingRequestsServesThemBeforeItCanBeEvicted) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.admit("a", 2, 1);
  s.admit("a", 3, 2);
  s.admit("b", 10, 5);  // b's request comes while a loads
  s.no_room("b", {"a"}, 6);
  const auto acts = s.loaded("a", 8081, 7, 5 * kMin, false, 8, Launch{}, 1);
  EXPECT_EQ(granted(acts), std::vector<uint64_t>{1});
  s.finish("a", 9);  // request 2 arrived before b's anyway; 3 after: owed, since a was loaded for it
  EXPECT_EQ(s.find("a")->in_flight, 1);
  EXPECT_EQ(jobs(s.finish("a", 10)), std::vector<std::string>{}) << "request 3 is served first";
  EXPECT_EQ(s.find("a")->in_flight, 1);
  EXPECT_EQ(jobs(s.finish("a", 11)), std::vector<std::string>{"stop a (evicted)"});
}

TEST(Scheduler, WaitingCannotHelpIsTheCallersCallAndFailsAtOnce) {
  Scheduler s;
  s.admit("a", 1, 0);
  const auto f = s.load_failed("a", 503, "GPU 0 is occupied by others: python (pid 9, bob)");
  EXPECT_EQ(failed(f), std::vector<uint64_t>{1});
  EXPECT_EQ(s.queued(), 0u);
}

TEST(Scheduler, TheOldestRequestGoesFirstBetweenModels) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0);  // request 1 in flight
  s.admit("b", 2, 10);
  s.no_room("b", {"a"}, 10);
  // c comes later: in line, it may try a load of its own (another GPU may be free)...
  auto adm = s.admit("c", 3, 20);
  EXPECT_EQ(adm.kind, Admission::Kind::wait);
  EXPECT_EQ(jobs(adm.actions), std::vector<std::string>{"load c"});
  // ...but it needs a's GPU too: behind b, which waited longer.
  EXPECT_TRUE(jobs(s.no_room("c", {"a"}, 25)).empty());
  auto acts = s.finish("a", 30);
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"stop a (evicted)"}) << "evicted once, for b";
  acts = s.stopped("a", 40);
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load b"}) << "b waited longest";
  acts = s.loaded("b", 8082, 8, 5 * kMin, false, 50);
  EXPECT_EQ(granted(acts), std::vector<uint64_t>{2});
  EXPECT_EQ(jobs(acts), std::vector<std::string>{"load c"}) << "then c";
  EXPECT_EQ(s.swaps(), 1u);
}

TEST(Scheduler, ParallelSlotsAdmitThatManyAndQueueTheRest) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0, launch_of({"llama-server", "-np", "2"}), 2);
  EXPECT_EQ(s.admit("a", 2, 1).kind, Admission::Kind::serve);
  EXPECT_EQ(s.admit("a", 3, 2).kind, Admission::Kind::wait);
  EXPECT_EQ(s.admit("a", 4, 3).kind, Admission::Kind::wait);
  EXPECT_FALSE(s.try_serve("a", 4).has_value()) << "never ahead of those who wait";
  EXPECT_EQ(granted(s.finish("a", 5)), std::vector<uint64_t>{3});
  EXPECT_EQ(granted(s.finish("a", 6)), std::vector<uint64_t>{4});
  EXPECT_EQ(s.find("a")->in_flight, 2);
  EXPECT_EQ(launch_of({"llama-server", "--parallel", "4"}).slots, 4);
  EXPECT_EQ(launch_of({"llama-server", "-np", "-1"}).slots, 0) << "auto: ask llama-server";
}

TEST(Scheduler, SlotsLearntAfterTheLoadLimitFromThen) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.admit("a", 2, 0);
  s.admit("a", 3, 0);
  EXPECT_EQ(granted(s.loaded("a", 8081, 7, 5 * kMin, false, 0)).size(), 3u) << "no limit known yet";
  s.set_slots("a", 1, 1);
  EXPECT_EQ(s.admit("a", 4, 2).kind, Admission::Kind::wait);
  s.finish("a", 3);
  s.finish("a", 3);
  EXPECT_EQ(granted(s.finish("a", 3)), std::vector<uint64_t>{4});
}

TEST(Scheduler, AFullQueueRefusesAndChangesNothing) {
  Scheduler s(2);
  s.admit("a", 1, 0);
  EXPECT_EQ(s.admit("a", 2, 0).kind, Admission::Kind::wait);
  EXPECT_EQ(s.admit("a", 3, 0).kind, Admission::Kind::full);
  EXPECT_EQ(s.find("a")->waiters.size(), 2u);
  EXPECT_EQ(s.admit("b", 4, 0).kind, Admission::Kind::start) << "per model";
}

TEST(Scheduler, QueueTimeoutFailsWhatWaitedTooLongSayingWhy) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0, Launch{}, 1);
  s.admit("a", 2, 100);
  s.admit("a", 3, 5000);
  s.admit("b", 4, 200);
  s.no_room("b", {"a"}, 200);
  EXPECT_TRUE(s.timeouts(10099, 10000).empty());
  auto acts = s.timeouts(10200, 10000);
  EXPECT_EQ(failed(acts), (std::vector<uint64_t>{2, 4}));
  for (const auto& a : acts) {
    if (a.kind == Action::Kind::fail) {
      EXPECT_EQ(a.status, 503);
    }
  }
  EXPECT_NE(
      acts[0].reason.find("waited 10 s in the queue for 'a' (queue_timeout): all 1 slots of its instance were busy"),
      std::string::npos)
      << acts[0].reason;
  EXPECT_NE(acts[1].reason.find("the GPUs it needs were held by serve's busy instances of a"), std::string::npos)
      << acts[1].reason;
  EXPECT_EQ(s.find("b")->phase, Phase::stopped) << "nobody waits for b any more";
  EXPECT_EQ(s.find("a")->waiters.size(), 1u);
  // Not while the load runs: the load has its own timeout.
  s.admit("c", 5, 0);
  EXPECT_TRUE(failed(s.timeouts(100000, 10000)).size() == 1u) << "only a's request 3";
}

TEST(Scheduler, ACancelledHeadStopsTheDrain) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0);
  s.admit("b", 2, 10);
  s.no_room("b", {"a"}, 10);
  EXPECT_FALSE(s.try_serve("a", 20).has_value()) << "a drains for b";
  s.cancel("b", 2, 25);
  EXPECT_EQ(s.find("b")->phase, Phase::stopped);
  EXPECT_TRUE(s.try_serve("a", 30).has_value()) << "nobody waits: a serves again";
}

TEST(Scheduler, ReapsAtExpiryCountedFromTheEndOfTheLastRequest) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, 1000, false, 0);
  EXPECT_TRUE(s.expired(5000).empty());  // in flight: never reaped
  s.finish("a", 5000);
  EXPECT_EQ(s.next_expiry(), 6000);
  EXPECT_TRUE(s.expired(5999).empty());
  EXPECT_EQ(jobs(s.expired(6000)), std::vector<std::string>{"stop a (idle)"});
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
  EXPECT_EQ(jobs(s.expired(10)), std::vector<std::string>{"stop zero (keep_alive_0)"});
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
  EXPECT_EQ(jobs(s.stopped("a", 1)), std::vector<std::string>{"load a"});  // the caller starts a load for the waiter
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  EXPECT_EQ(granted(s.loaded("a", 8081, 3, 0, false, 2)), std::vector<uint64_t>{2});
}

TEST(Scheduler, StopWithNobodyWaitingEndsStopped) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 1, 0, false, 0);
  s.finish("a", 0);
  s.expired(0);
  EXPECT_TRUE(s.stopped("a", 0).empty());
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
  EXPECT_EQ(jobs(s.expired(50)), std::vector<std::string>{"stop a (keep_alive_0)"});
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
  EXPECT_EQ(jobs(s.stopped("a", 25)), std::vector<std::string>{"load a"}) << "the stop job then starts the load";
  const auto g = s.loaded("a", 8082, 8, kMin, false, 30, Launch{true, 4096, 0});
  EXPECT_EQ(granted(g), (std::vector<uint64_t>{2, 3}));
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
  EXPECT_EQ(jobs(s.stopped("a", 15)), std::vector<std::string>{"load a"});
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

TEST(Scheduler, AChangedModelDrainsThenRestartsWithItsNewSettings) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 10, 5 * kMin, false, 0);        // request 1 in flight
  EXPECT_TRUE(s.reconfigure({"a"}, {}, 10).empty());  // busy: no stop under load
  EXPECT_TRUE(s.find("a")->stale);
  // A new request is not served by the old settings: it waits for the restart.
  EXPECT_FALSE(s.try_serve("a", 20));
  EXPECT_EQ(s.admit("a", 2, 20).kind, Admission::Kind::wait);
  EXPECT_EQ(jobs(s.finish("a", 30)), std::vector<std::string>{"stop a (config_changed)"});
  EXPECT_EQ(jobs(s.stopped("a", 40)), std::vector<std::string>{"load a"});
  EXPECT_FALSE(s.find("a")->stale);
  EXPECT_EQ(granted(s.loaded("a", 8081, 11, 5 * kMin, false, 50)), std::vector<uint64_t>{2});
}

TEST(Scheduler, AChangedIdleModelRestartsAtOnceAndAStoppedOneJustLoadsAnew) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 10, 5 * kMin, false, 0);
  s.finish("a", 5);
  s.admit("b", 2, 6);
  s.load_failed("b", 500, "broken");  // b: stopped
  EXPECT_EQ(jobs(s.reconfigure({"a", "b"}, {}, 10)), std::vector<std::string>{"stop a (config_changed)"});
  EXPECT_FALSE(s.find("b")->stale);
  // Restarted although nobody waits: it ran, so it runs again, with the new settings.
  EXPECT_EQ(jobs(s.stopped("a", 20)), std::vector<std::string>{"load a"});
  EXPECT_EQ(s.find("a")->phase, Phase::starting);
  EXPECT_TRUE(granted(s.loaded("a", 8081, 11, 5 * kMin, false, 30)).empty());
  EXPECT_EQ(s.try_serve("a", 40), 8081);
}

TEST(Scheduler, AModelChangedWhileItLoadsServesWhatWaitedThenRestarts) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.reconfigure({"a"}, {}, 5);  // the load may have read the old config
  EXPECT_EQ(granted(s.loaded("a", 8081, 10, 5 * kMin, false, 10)), std::vector<uint64_t>{1});
  EXPECT_EQ(jobs(s.finish("a", 20)), std::vector<std::string>{"stop a (config_changed)"});
}

TEST(Scheduler, ARemovedModelServesWhatItHasThenStopsForGood) {
  Scheduler s;
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 10, -1, false, 0, {}, 1);  // one slot, request 1 in it
  EXPECT_EQ(s.admit("a", 2, 1).kind, Admission::Kind::wait);
  EXPECT_TRUE(s.reconfigure({}, {"a"}, 2).empty());
  EXPECT_TRUE(s.find("a")->removed);
  const auto next = s.finish("a", 3);  // request 2 still gets its answer
  EXPECT_EQ(granted(next), std::vector<uint64_t>{2});
  EXPECT_TRUE(jobs(next).empty());
  EXPECT_EQ(jobs(s.finish("a", 4)), std::vector<std::string>{"stop a (removed)"});
  EXPECT_TRUE(jobs(s.stopped("a", 5)).empty());
  EXPECT_EQ(s.find("a")->phase, Phase::stopped);
}

TEST(Scheduler, AReloadLeavesInstancesLoadedByHandAlone) {
  Scheduler s;
  const auto mark = s.begin_sync();
  s.sync(mark, {running("cli", 8081, 10, -1, true)}, 0);
  EXPECT_TRUE(s.reconfigure({"cli"}, {}, 1).empty());
  EXPECT_TRUE(s.reconfigure({}, {"cli"}, 2).empty());
  EXPECT_FALSE(s.find("cli")->stale);
  EXPECT_FALSE(s.find("cli")->removed);
  EXPECT_EQ(s.try_serve("cli", 3), 8081);
}

/// The ports that `actions` grant on, one per waiter, in order.
std::vector<int> granted_ports(const Actions& actions) {
  std::vector<int> out;
  for (const auto& a : actions)
    if (a.kind == Action::Kind::grant) out.insert(out.end(), a.waiters.size(), a.port);
  return out;
}

/// "a" loaded on port 8081 (pid 7) with one slot, serving request 1; replicas 2, scale_after 2 s.
Scheduler one_slot_with_replicas(int replicas = 2) {
  Scheduler s;
  s.set_scaling("a", replicas, 2000);
  s.admit("a", 1, 0);
  s.loaded("a", 8081, 7, 5 * kMin, false, 0, {}, 1);
  return s;
}

TEST(SchedulerReplicas, OneMoreInstanceStartsWhenEverySlotIsBusyAndARequestWaitedScaleAfter) {
  auto s = one_slot_with_replicas();
  EXPECT_EQ(s.admit("a", 2, 1000).kind, Admission::Kind::wait) << "its one slot is busy";
  EXPECT_TRUE(s.scale(2999).empty()) << "waited 1999 ms of 2000";
  auto acts = s.scale(3000);
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].kind, Action::Kind::load);
  EXPECT_EQ(acts[0].model, "a#2");
  EXPECT_EQ(acts[0].reason, "scale_out");
  EXPECT_EQ(s.find("a#2")->replica_of, "a");
  EXPECT_TRUE(s.scale(10000).empty()) << "one load at a time";
  // The replica comes up and takes the waiting request; the next ones go to whichever is free.
  EXPECT_EQ(granted_ports(s.loaded("a#2", 8082, 8, 5 * kMin, false, 10500, {}, 1)), std::vector<int>{8082});
  EXPECT_EQ(s.admit("a", 3, 11000).kind, Admission::Kind::wait);
  EXPECT_EQ(granted_ports(s.finish("a", 12000, 8081)), std::vector<int>{8081});
  EXPECT_EQ(s.find("a")->in_flight, 1);
  EXPECT_EQ(s.find("a#2")->in_flight, 1);
  EXPECT_TRUE(s.scale(60000).empty()) << "replicas = 2: no third";
  EXPECT_EQ(s.instances_of("a"), (std::vector<std::string>{"a", "a#2"}));
}

TEST(SchedulerReplicas, EachRequestGoesToTheInstanceWithTheFewestInFlight) {
  Scheduler s;
  s.set_scaling("a", 2, 2000);
  s.sync(s.begin_sync(), {running("a", 8081, 7), running("a#2", 8082, 8)}, 0);
  s.set_slots("a", 4, 0);
  s.set_slots("a#2", 4, 0);
  std::vector<int> ports;
  for (int i = 0; i < 6; ++i) ports.push_back(*s.try_serve("a", 10));
  EXPECT_EQ(ports, (std::vector<int>{8081, 8082, 8081, 8082, 8081, 8082}));
  s.finish("a", 20, 8082);
  s.finish("a", 20, 8082);
  EXPECT_EQ(s.admit("a", 1, 30).port, 8082) << "a#2 has 1 in flight, a has 3";
  EXPECT_EQ(s.find("a#2")->replica_of, "a") << "adopted from the state file by its name";
}

TEST(SchedulerReplicas, NoScaleOutForAColdModelWithoutReplicasOrWhileAnotherModelWaitsForRoom) {
  auto s = one_slot_with_replicas();
  s.admit("a", 2, 1000);
  // b waits for room that a holds: the idle GPUs are b's to wait for, not a's to take.
  EXPECT_EQ(s.admit("b", 3, 1500).kind, Admission::Kind::start);
  s.no_room("b", {"a"}, 1600);
  EXPECT_TRUE(s.scale(10000).empty());
  Scheduler one = one_slot_with_replicas(1);
  one.admit("a", 2, 1000);
  EXPECT_TRUE(one.scale(60000).empty()) << "replicas = 1";
  Scheduler cold;
  cold.set_scaling("c", 3, 0);
  EXPECT_EQ(cold.admit("c", 1, 0).kind, Admission::Kind::start);
  cold.admit("c", 2, 0);
  EXPECT_TRUE(cold.scale(60000).empty()) << "a cold model loads once, as usual";
}

TEST(SchedulerReplicas, AScaleOutWithoutAnIdleGpuLeavesTheRequestsWaitingAndPauses) {
  auto s = one_slot_with_replicas();
  s.admit("a", 2, 1000);
  ASSERT_EQ(jobs(s.scale(3000)), std::vector<std::string>{"load a#2"});
  auto acts = s.scale_failed("a#2", 3100, 30000);
  EXPECT_TRUE(failed(acts).empty()) << "the request still waits for a's slot";
  EXPECT_TRUE(jobs(acts).empty()) << "no eviction, no queued load";
  EXPECT_EQ(s.find("a#2")->phase, Phase::stopped);
  EXPECT_TRUE(s.scale(20000).empty()) << "paused";
  EXPECT_EQ(jobs(s.scale(33100)), std::vector<std::string>{"load a#2"});
  EXPECT_EQ(granted(s.finish("a", 33200, 8081)), std::vector<uint64_t>{2});
}

TEST(SchedulerReplicas, AReplicaIsEvictedBeforeAnotherModelsLastInstance) {
  Scheduler s;
  s.set_scaling("a", 2, 2000);
  // b is the least recently used, but it is b's only instance; a has two.
  s.sync(s.begin_sync(),
         {running("b", 8083, 9, 5 * kMin, false), running("a", 8081, 7, 5 * kMin, false),
          running("a#2", 8082, 8, 5 * kMin, false)},
         0);
  s.finish("b", 100);
  s.finish("a", 200);
  s.finish("a#2", 300);
  const auto c = s.eviction_candidates("c");
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.back(), "b");
  EXPECT_TRUE(s.eviction_candidates("a").size() == 1 && s.eviction_candidates("a")[0] == "b")
      << "a model never evicts its own instances";
}

TEST(SchedulerReplicas, EachInstanceReapsOnItsOwnKeepAliveAndTheOthersServeOn) {
  auto s = one_slot_with_replicas();
  s.admit("a", 2, 1000);
  s.scale(3000);
  s.loaded("a#2", 8082, 8, 1000, false, 3500, {}, 1);  // a#2 with a 1 s keep-alive
  s.finish("a", 4000, 8081);
  s.finish("a", 4000, 8082);
  EXPECT_EQ(jobs(s.expired(5000)), std::vector<std::string>{"stop a#2 (idle)"});
  EXPECT_TRUE(jobs(s.stopped("a#2", 5100)).empty());
  // Now a's own instance goes (its keep-alive ran out) while a replica serves: requests go to the replica, no load.
  EXPECT_EQ(s.admit("a", 3, 6000).port, 8081);
  EXPECT_EQ(s.admit("a", 4, 6100).kind, Admission::Kind::wait);
  ASSERT_EQ(jobs(s.scale(8100)), std::vector<std::string>{"load a#2"});
  EXPECT_EQ(granted_ports(s.loaded("a#2", 8082, 10, 5 * kMin, false, 8200, {}, 1)), std::vector<int>{8082});
  s.finish("a", 8300, 8081);
  s.set_keep_alive("a", 0);
  EXPECT_EQ(jobs(s.expired(8400)), std::vector<std::string>{"stop a (keep_alive_0)"});
  EXPECT_TRUE(jobs(s.stopped("a", 8500)).empty()) << "a#2 still serves a";
  EXPECT_EQ(s.admit("a", 5, 8600).kind, Admission::Kind::wait) << "a#2's one slot is busy";
  EXPECT_EQ(granted_ports(s.finish("a", 8700, 8082)), std::vector<int>{8082});
  // With a#2 gone too, the next request loads a again.
  s.finish("a", 8800, 8082);
  s.set_keep_alive("a#2", 0);
  EXPECT_EQ(jobs(s.expired(8900)), std::vector<std::string>{"stop a#2 (keep_alive_0)"});
  EXPECT_EQ(s.admit("a", 6, 9000).kind, Admission::Kind::start) << "its last instance is stopping: a starts anew";
  EXPECT_TRUE(jobs(s.stopped("a#2", 9100)).empty());
  EXPECT_EQ(granted_ports(s.loaded("a", 8081, 11, 5 * kMin, false, 9200, {}, 1)), std::vector<int>{8081});
}

TEST(SchedulerReplicas, AReloadDrainsEveryInstanceAndOnlyTheModelsOwnComesBack) {
  Scheduler s;
  s.set_scaling("a", 2, 2000);
  s.sync(s.begin_sync(), {running("a", 8081, 7, 5 * kMin, false), running("a#2", 8082, 8, 5 * kMin, false)}, 0);
  const auto acts = s.reconfigure({"a"}, {}, 100);
  EXPECT_EQ(jobs(acts), (std::vector<std::string>{"stop a (config_changed)", "stop a#2 (config_changed)"}));
  EXPECT_TRUE(jobs(s.stopped("a#2", 200)).empty()) << "a replica starts again only when requests want it";
  EXPECT_EQ(jobs(s.stopped("a", 300)), std::vector<std::string>{"load a"});
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

// ---- The scheduler against fake effects: a discrete-event world with
// simulated time (no threads, no sleeps). Each model needs one GPU of its
// own; loads, stops and requests take fixed times; clients send their next
// request as soon as the last one ends. The world checks the invariants at
// every step: never more instances than GPUs, never a stop with a request in
// flight, every request answered.
namespace {

struct Sim {
  struct Client {
    std::string model;
    int left = 0;
  };
  struct Event {
    int64_t at;
    int seq;
    std::function<void()> fn;
    bool operator<(const Event& o) const { return std::tie(at, seq) > std::tie(o.at, o.seq); }
  };

  Scheduler s;
  int gpus = 1;
  int64_t load_ms = 100, stop_ms = 20, request_ms = 50;
  std::map<std::string, int64_t> request_ms_of;  // a model's own request time
  int64_t now = 0;
  int seq = 0;
  std::priority_queue<Event> events;
  std::set<std::string> holding;  // models whose instance holds a GPU (loading, ready, stopping)
  std::map<uint64_t, size_t> client_of;
  std::vector<Client> clients;
  uint64_t next_id = 0;
  int served = 0, errors = 0, loads = 0, stops_with_requests = 0, over_capacity = 0;
  std::vector<std::string> log;

  explicit Sim(size_t max_queue = 512) : s(max_queue) {}

  void at(int64_t delay, std::function<void()> fn) { events.push({now + delay, seq++, std::move(fn)}); }

  void send(size_t c) {
    const uint64_t id = ++next_id;
    client_of[id] = c;
    const auto& model = clients[c].model;
    const auto adm = s.admit(model, id, now);
    switch (adm.kind) {
      case Admission::Kind::serve:
        run_request(id, model);
        break;
      case Admission::Kind::start:
        apply({{Action::Kind::load, model, {}, 0, 0, 0, {}}});
        break;
      case Admission::Kind::full:
      case Admission::Kind::refuse:
        ++errors;
        break;
      default:
        apply(adm.actions);
    }
  }

  void run_request(uint64_t id, const std::string& model) {
    const auto it = request_ms_of.find(model);
    at(it == request_ms_of.end() ? request_ms : it->second, [this, id, model] {
      ++served;
      apply(s.finish(model, now));
      const size_t c = client_of[id];
      if (--clients[c].left > 0) send(c);
    });
  }

  void apply(const Actions& actions) {
    for (const auto& a : actions) {
      switch (a.kind) {
        case Action::Kind::load:
          ++loads;
          log.push_back("load " + a.model);
          if (static_cast<int>(holding.size()) < gpus) {
            holding.insert(a.model);
            at(load_ms, [this, m = a.model] { apply(s.loaded(m, 9000, 1, 5 * kMin, false, now, Launch{}, 1)); });
          } else {
            // What Runtime::room_for would say: the first candidate that holds a GPU.
            std::vector<std::string> blockers;
            for (const auto& c : s.eviction_candidates(a.model))
              if (holding.count(c)) {
                blockers.push_back(c);
                break;
              }
            at(1, [this, m = a.model, blockers] {
              apply(blockers.empty() ? s.load_failed(m, 503, "no room") : s.no_room(m, blockers, now));
            });
          }
          break;
        case Action::Kind::stop:
          log.push_back("stop " + a.model);
          if (s.find(a.model)->in_flight > 0) ++stops_with_requests;
          at(stop_ms, [this, m = a.model] {
            holding.erase(m);
            apply(s.stopped(m, now));
          });
          break;
        case Action::Kind::grant:
          for (uint64_t id : a.waiters) run_request(id, a.model);
          break;
        case Action::Kind::fail:
          errors += static_cast<int>(a.waiters.size());
          break;
      }
    }
    if (static_cast<int>(holding.size()) > gpus) ++over_capacity;
  }

  void run(int64_t until = 10 * kMin) {
    while (!events.empty() && events.top().at <= until) {
      auto e = events.top();
      events.pop();
      now = e.at;
      e.fn();
    }
  }
};

}  // namespace

TEST(SchedulerSim, TwoModelsAlternatingOnOneGpuWithFourClientsEachServeAllWithoutThrashing) {
  Sim sim;
  for (int i = 0; i < 8; ++i) sim.clients.push_back({i % 2 ? "b" : "a", 5});
  for (size_t c = 0; c < sim.clients.size(); ++c) sim.send(c);
  sim.run();
  EXPECT_EQ(sim.served, 40);
  EXPECT_EQ(sim.errors, 0);
  EXPECT_EQ(sim.stops_with_requests, 0);
  EXPECT_EQ(sim.over_capacity, 0);
  // Each turn serves every request that came before the other model's
  // oldest: with clients that send again at once, one swap per round of
  // requests, never one per request.
  EXPECT_LE(sim.s.swaps(), 10u);
  EXPECT_GE(sim.s.swaps(), 1u);
  std::cout << "swaps: " << sim.s.swaps() << ", loads tried: " << sim.loads << "\n";
  EXPECT_EQ(sim.s.queued(), 0u);
}

TEST(SchedulerSim, ThreeModelsOnTwoGpus) {
  Sim sim;
  sim.gpus = 2;
  for (int i = 0; i < 9; ++i) sim.clients.push_back({std::string(1, static_cast<char>('a' + i % 3)), 4});
  for (size_t c = 0; c < sim.clients.size(); ++c) sim.send(c);
  sim.run();
  EXPECT_EQ(sim.served, 36);
  EXPECT_EQ(sim.errors, 0);
  EXPECT_EQ(sim.stops_with_requests, 0);
  EXPECT_EQ(sim.over_capacity, 0);
  EXPECT_LE(sim.s.swaps(), 12u);
}

TEST(SchedulerSim, ALongStreamPinsItsGpuWhileOthersQueueAndNobodyIsRefused) {
  Sim sim;
  sim.request_ms_of["long"] = 60 * 1000;  // a one-minute stream
  sim.clients = {{"long", 1}, {"b", 3}, {"c", 3}};
  sim.send(0);
  sim.run(200);  // long is loaded and streaming
  sim.send(1);
  sim.send(2);
  sim.run(30 * 1000);
  EXPECT_EQ(sim.served, 0) << "b and c wait: the stream is never cut";
  EXPECT_EQ(sim.errors, 0);
  sim.run();
  EXPECT_EQ(sim.served, 7);
  EXPECT_EQ(sim.errors, 0);
  EXPECT_EQ(sim.stops_with_requests, 0);
}

TEST(SchedulerSim, ABurstForAColdModelWhileAnotherLoadsIsOneLoad) {
  Sim sim;
  sim.gpus = 2;
  for (int i = 0; i < 20; ++i) sim.clients.push_back({i == 0 ? "a" : "b", 1});
  for (size_t c = 0; c < sim.clients.size(); ++c) sim.send(c);
  sim.run();
  EXPECT_EQ(sim.served, 20);
  EXPECT_EQ(sim.loads, 2) << "one load each, the burst joins b's";
  EXPECT_EQ(sim.s.swaps(), 0u);
}

TEST(SchedulerSim, AFullQueueRefusesTheOverflowOnly) {
  Sim sim(4);
  for (int i = 0; i < 8; ++i) sim.clients.push_back({"a", 1});
  for (size_t c = 0; c < sim.clients.size(); ++c) sim.send(c);
  sim.run();
  EXPECT_EQ(sim.served, 4);
  EXPECT_EQ(sim.errors, 4);
}
