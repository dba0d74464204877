// The pure part of GpuMonitor: `nvidia-smi ... -lms N` lines cut into one
// block per interval. Time is passed in, so there is no sleep here. Lines
// are in the format measured on a real H100 (driver 580).

#include <gtest/gtest.h>

#include "gpu/monitor.h"
#include "gpu/parse.h"

using namespace llamactl::gpu;
using namespace std::chrono_literals;
using Clock = BlockAssembler::Clock;

namespace {

const Clock::time_point t0{};  // the stream's start
// Past the start-up allowance (NVML init), so that silence counts.
const Clock::time_point t1 = t0 + 1s;

const char* kGpu0 = "2026/11/23 02:00:32.807, 0, GPU-aaaa, NVIDIA H100 80GB HBM3, 0, 81559, 0";
const char* kGpu1 = "2026/11/23 02:00:32.808, 1, GPU-bbbb, NVIDIA H100 80GB HBM3, 4111, 81559, 3";
const char* kGpu0b = "2026/11/23 02:00:32.907, 0, GPU-aaaa, NVIDIA H100 80GB HBM3, 0, 81559, 0";
const char* kGpu1b = "2026/11/23 02:00:32.908, 1, GPU-bbbb, NVIDIA H100 80GB HBM3, 4111, 81559, 3";
const char* kLost = "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system";

std::string app(const char* stamp, int pid) {
  return std::string(stamp) + ", GPU-bbbb, " + std::to_string(pid) + ", python3, 4102";
}

// All blocks the lines complete (each line 1 ms after the last), then what
// ticks complete until `until`.
std::vector<std::string> feed(BlockAssembler& a, const std::vector<std::string>& lines, Clock::time_point at,
                              Clock::time_point until) {
  std::vector<std::string> out;
  for (const auto& l : lines) {
    for (auto& b : a.add(l, at)) out.push_back(b);
    at += 1ms;
  }
  for (; at <= until; at += 5ms)
    for (auto& b : a.tick(at)) out.push_back(b);
  return out;
}

}  // namespace

TEST(SplitTimestamp, StripsTheStampAndKeepsWhatTheOneShotQueryPrints) {
  const auto l = split_timestamp(kGpu0);
  EXPECT_EQ(l.timestamp, "2026/11/23 02:00:32.807");
  EXPECT_EQ(l.rest, "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 0, 81559, 0");
  // The rest parses with the one-shot CSV parser, as its own query's output.
  const auto snap = parse_csv(l.rest);
  ASSERT_TRUE(snap);
  ASSERT_EQ(snap->gpus.size(), 1u);
  EXPECT_EQ(snap->gpus[0].memory_total_mib, 81559);
}

TEST(SplitTimestamp, LinesWithoutAStampComeBackWhole) {
  for (const char* line : {kLost, "No devices were found", "2026/11/23, 0", "2026/11/23 02:00:32.8070, 0", ""}) {
    const auto l = split_timestamp(line);
    EXPECT_EQ(l.timestamp, "") << line;
    EXPECT_EQ(l.rest, line);
  }
}

TEST(BlockAssembler, FirstGpuBlockCompletesAfterAQuietGap) {
  BlockAssembler a(StreamKind::gpus, 100ms, t0);
  // No previous block to count against: the gap after the burst ends it.
  const auto blocks = feed(a, {kGpu0, kGpu1}, t1, t1 + 50ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0], std::string(split_timestamp(kGpu0).rest) + "\n" + split_timestamp(kGpu1).rest + "\n");
  EXPECT_EQ(a.rounds(), 1);
}

TEST(BlockAssembler, LaterGpuBlocksCompleteByCountWithoutWaiting) {
  BlockAssembler a(StreamKind::gpus, 100ms, t0);
  feed(a, {kGpu0, kGpu1}, t1, t1 + 50ms);
  EXPECT_TRUE(a.add(kGpu0b, t1 + 100ms).empty());
  const auto blocks = a.add(kGpu1b, t1 + 100ms);
  ASSERT_EQ(blocks.size(), 1u);  // the second row completes it: same count as before
  EXPECT_NE(blocks[0].find("4111"), std::string::npos);
  EXPECT_EQ(a.rounds(), 2);
  EXPECT_EQ(a.next_deadline(), Clock::time_point::max());  // nothing open
}

// Each GPU row may carry its own timestamp, so the stamps do not delimit a
// round; the index going back to 0 does.
TEST(BlockAssembler, GpuIndexGoingBackStartsTheNextRound) {
  BlockAssembler a(StreamKind::gpus, 1000ms, t0);
  EXPECT_TRUE(a.add(kGpu0, t1).empty());
  EXPECT_TRUE(a.add(kGpu1, t1).empty());
  const auto blocks = a.add(kGpu0b, t1 + 1ms);  // before the quiet gap ran out
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(parse_csv(blocks[0])->gpus.size(), 2u);
}

TEST(BlockAssembler, AGpuThatAppearsReopensTheBlockCompletedByCount) {
  BlockAssembler a(StreamKind::gpus, 100ms, t0);
  feed(a, {kGpu0}, t1, t1 + 50ms);  // one GPU last time
  const auto first = a.add(kGpu0b, t1 + 100ms);
  ASSERT_EQ(first.size(), 1u);
  const auto again = a.add(kGpu1b, t1 + 100ms);
  ASSERT_EQ(again.size(), 1u);  // the same round again, now with both GPUs
  EXPECT_EQ(parse_csv(again[0])->gpus.size(), 2u);
  EXPECT_EQ(a.rounds(), 2);  // a reopened block is not a new round
  // From now on two rows make a block.
  EXPECT_TRUE(a.add(kGpu0, t1 + 200ms).empty());
  EXPECT_EQ(a.add(kGpu1, t1 + 200ms).size(), 1u);
}

TEST(BlockAssembler, LostGpuLinesStayInTheirBlock) {
  BlockAssembler a(StreamKind::gpus, 100ms, t0);
  const auto first = feed(a, {kGpu0, kLost}, t1, t1 + 50ms);
  ASSERT_EQ(first.size(), 1u);
  const auto blocks = feed(a, {kGpu0b, kLost}, t1 + 100ms, t1 + 100ms);
  ASSERT_EQ(blocks.size(), 1u);  // two lines, as last time
  const auto snap = parse_csv(blocks[0]);
  ASSERT_TRUE(snap);
  ASSERT_EQ(snap->gpus.size(), 2u);
  EXPECT_FALSE(snap->gpus[1].error.empty());
}

TEST(BlockAssembler, AppsBlockCompletesOnANewTimestampOrAQuietGap) {
  BlockAssembler a(StreamKind::apps, 1000ms, t0);
  EXPECT_TRUE(a.add(app("2026/11/23 02:00:45.210", 413), t1).empty());
  EXPECT_TRUE(a.add(app("2026/11/23 02:00:45.210", 414), t1).empty());
  auto blocks = a.add(app("2026/11/23 02:00:46.211", 413), t1 + 1001ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(parse_csv(blocks[0])->processes.size(), 2u);
  EXPECT_EQ(a.next_deadline(), t1 + 1001ms + 100ms);  // quiet gap: a quarter interval, at most 100 ms
  blocks = a.tick(t1 + 1101ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(parse_csv(blocks[0])->processes.size(), 1u);
  EXPECT_EQ(a.rounds(), 2);
}

// An interval with no process prints nothing at all: two silent intervals
// make an empty block, once.
TEST(BlockAssembler, SilenceAfterTheLastProcessMeansAnEmptyList) {
  BlockAssembler a(StreamKind::apps, 100ms, t0);
  auto blocks = feed(a, {app("2026/11/23 02:00:45.210", 413)}, t1, t1 + 30ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_TRUE(a.tick(t1 + 150ms).empty());  // one interval late is not yet silence
  blocks = a.tick(t1 + 200ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0], "");
  EXPECT_TRUE(a.tick(t1 + 900ms).empty());  // said once
  EXPECT_EQ(a.next_deadline(), Clock::time_point::max());
  // A process again: a block again.
  blocks = feed(a, {app("2026/11/23 02:00:46.310", 415)}, t1 + 1s, t1 + 1030ms);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(parse_csv(blocks[0])->processes.at(0).pid, 415);
}

TEST(BlockAssembler, AnAppsStreamThatNeverPrintsIsEmptyAfterStartUp) {
  BlockAssembler a(StreamKind::apps, 100ms, t0);
  EXPECT_TRUE(a.tick(t0 + 200ms).empty());  // NVML may still be starting
  const auto blocks = a.tick(t0 + 500ms);   // start-up allowance (250 ms) + two intervals
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0], "");
  EXPECT_EQ(a.rounds(), 0);  // silence proves nothing about looping
}

TEST(BlockAssembler, ALateAppsLineReopensItsBlock) {
  BlockAssembler a(StreamKind::apps, 1000ms, t0);
  auto blocks = feed(a, {app("2026/11/23 02:00:45.210", 413)}, t1, t1 + 120ms);
  ASSERT_EQ(blocks.size(), 1u);
  blocks = feed(a, {app("2026/11/23 02:00:45.210", 414)}, t1 + 130ms, t1 + 300ms);
  ASSERT_EQ(blocks.size(), 1u);  // the whole interval again
  EXPECT_EQ(parse_csv(blocks[0])->processes.size(), 2u);
  EXPECT_EQ(a.rounds(), 1);
}

TEST(BlockAssembler, FinishReturnsTheOpenBlockOfAProgramThatPrintedOnce) {
  // A mock or script that ignores -lms prints the one-shot form once and exits.
  BlockAssembler a(StreamKind::gpus, 1000ms, t0);
  EXPECT_TRUE(a.add("0, GPU-aaaa, NVIDIA H100 80GB HBM3, 0, 81559, 0", t0 + 1ms).empty());
  const auto last = a.finish();
  ASSERT_TRUE(last);
  EXPECT_EQ(parse_csv(*last)->gpus.size(), 1u);
  EXPECT_EQ(a.rounds(), 1);  // under two: not a stream
  EXPECT_FALSE(a.finish());
}

TEST(BlockAssembler, BlankLinesAreIgnored) {
  BlockAssembler a(StreamKind::gpus, 100ms, t0);
  EXPECT_TRUE(a.add("", t1).empty());
  EXPECT_TRUE(a.add("  ", t1).empty());
  EXPECT_FALSE(a.finish());
}
