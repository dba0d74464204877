#pragma once
// GpuMonitor: readings for the long-running modes (serve, watch) from two
// `nvidia-smi ... -lms N` processes that stay up and stream CSV, instead of a
// new nvidia-smi per reading (~25 ms and a process each on an H100; a loop
// reading costs ~0.2 ms of CPU). The pure part that cuts a stream into one
// block per interval is declared here too, for its tests.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/probe.h"

namespace llamactl::gpu {

struct MonitorOptions {
  std::string program;  // nvidia-smi or the mock named by LLAMACTL_NVIDIA_SMI
  std::string fixture;  // non-empty: read this saved output each interval (LLAMACTL_GPU_FIXTURE)
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{5000};  // one-shot fallback deadline
};

/// A GpuProbe whose read() returns the latest complete reading at once
/// (never blocks on nvidia-smi). The first reading comes from one one-shot
/// query, so that read() need not wait for the streams to settle; then the
/// streams take over. A stream that dies is restarted (backoff from 1 s);
/// where streaming is not possible (a fixture, a program that answers once
/// and exits, or exits at once) it falls back to one one-shot query per
/// interval. Failures are CPU-mode readings with a reason, as NvidiaSmiProbe's.
/// On a Windows desktop GPU (WDDM) it also runs the plain table once per
/// process it has not seen, for the process types (gpu/process_types.h).
class GpuMonitor final : public GpuProbe {
 public:
  /// Starts the streams (or the fallback) on its own threads; does not wait.
  explicit GpuMonitor(MonitorOptions o);
  /// stop().
  ~GpuMonitor() override;
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  /// The latest reading. Before the first one it waits up to `timeout` for
  /// it, then answers CPU mode with a reason; it never waits on nvidia-smi
  /// otherwise. elapsed_ms is the time this call took.
  ProbeResult read() override;
  /// When the latest GPU reading was completed (time_point{} before the first).
  std::chrono::steady_clock::time_point read_at() const;
  /// True while the -lms streams are in use, false in the one-shot fallback
  /// (and before the first stream starts).
  bool streaming() const;
  /// GPU readings completed so far, one-shot ones and failures included.
  uint64_t readings() const;
  /// Stops the threads and kills the nvidia-smi process groups without
  /// waiting for their output; returns promptly even when nvidia-smi hangs.
  /// Idempotent; read() keeps answering the last reading afterwards.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// Options from the environment, as make_probe() does: LLAMACTL_GPU_FIXTURE,
/// else LLAMACTL_NVIDIA_SMI, else nvidia-smi.
MonitorOptions monitor_options_from_env(std::chrono::milliseconds interval, std::chrono::milliseconds timeout);

// ---- pure part: stream lines -> blocks ----

/// One stream line cut into its timestamp and the rest, which is what the
/// one-shot query prints, so the existing CSV parser reads it.
struct StampedLine {
  std::string timestamp;  // "2026/11/23 02:00:32.807"; empty when the line has none
  std::string rest;
};
/// Splits "YYYY/MM/DD HH:MM:SS.mmm, rest". A line without that prefix (an
/// error, or "Unable to determine the device handle ... GPU is lost") comes
/// back whole with an empty timestamp.
StampedLine split_timestamp(std::string_view line);

enum class StreamKind { gpus, apps };

/// Cuts one stream's lines into blocks, one per nvidia-smi interval. Pure:
/// the caller passes the time each line arrived and calls tick() while no
/// line comes. A block is the lines without timestamps, "\n"-terminated,
/// ready for parse_csv(); an apps block may be empty (no process). A block
/// may come again with more lines when a late line turns out to belong to
/// it; the newest copy wins.
class BlockAssembler {
 public:
  using Clock = std::chrono::steady_clock;
  /// `started`: when the stream's process started.
  BlockAssembler(StreamKind kind, std::chrono::milliseconds interval, Clock::time_point started);

  /// Adds one line that arrived at `now`; returns the blocks it completed, oldest first.
  std::vector<std::string> add(std::string_view line, Clock::time_point now);
  /// The blocks that time alone completes: the open block after a quiet gap,
  /// and (apps) an empty block after two intervals without a line.
  std::vector<std::string> tick(Clock::time_point now);
  /// At the end of the stream: the open block, if any.
  std::optional<std::string> finish();
  /// When tick() could next complete something; Clock::time_point::max() when nothing waits.
  Clock::time_point next_deadline() const;
  /// Rounds seen: GPU blocks completed, or distinct apps timestamps. Two
  /// show that the program loops (a one-shot program prints one round).
  int rounds() const { return rounds_; }

 private:
  std::vector<std::string> add_gpu_row(std::string rest, std::optional<int64_t> index);
  std::vector<std::string> add_app_row(std::string rest, const std::string& stamp);
  void reopen_last();
  std::string complete();

  StreamKind kind_;
  std::chrono::milliseconds quiet_, empty_after_;
  std::vector<std::string> open_;      // lines (without timestamps) of the block being filled
  std::optional<int64_t> open_index_;  // gpus: index of its last row
  std::string open_stamp_;             // apps: its timestamp
  std::vector<std::string> last_;      // the last completed block, while it may still grow
  std::optional<int64_t> last_index_;
  std::string last_stamp_;
  bool amending_ = false;  // open_ started as a copy of last_
  size_t expected_ = 0;    // gpus: lines in the last completed block
  Clock::time_point last_line_at_;
  bool empty_sent_ = false;
  int rounds_ = 0;
};

}  // namespace llamactl::gpu
