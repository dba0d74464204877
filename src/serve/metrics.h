#pragma once
// serve's counters and their Prometheus text form. Updating is thread-safe
// and cheap (per-request counters in a shard per thread, each with its own
// mutex; no allocation on the hot path after the first use of a label set);
// render() is a pure function of a snapshot.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/snapshot.h"

namespace llamactl::serve {

/// Cumulative histogram with fixed upper bounds (seconds).
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bound, not cumulative; +Inf is `count`
  double sum = 0;
  uint64_t count = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size(), 0) {}
  void observe(double v);
  /// Adds another histogram's observations (same bounds).
  void merge(const Histogram& other);
};

/// One model's figures: its queue and instance (filled in by the router) and
/// its counters.
struct ModelMetrics {
  int64_t queue_depth = 0;
  int64_t in_flight = 0;
  int64_t slots = 0;                        // 0: unknown (not limited)
  int64_t replicas = 0;                     // instances that serve it now
  std::map<std::string, uint64_t> loads;    // result -> count
  std::map<std::string, uint64_t> unloads;  // reason -> count
  uint64_t scale_outs = 0;                  // replicas started because every slot was busy
  Histogram queue_wait_seconds{{0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
};

struct MetricsSnapshot {
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (route, status) -> count
  int64_t in_flight = 0;
  std::map<std::string, uint64_t> loads;     // result ("ok", "failed") -> count
  std::map<std::string, uint64_t> unloads;   // reason -> count
  std::map<std::string, int64_t> instances;  // state -> count
  Histogram load_seconds{{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}};
  Histogram queue_wait_seconds{{0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  std::vector<gpu::GpuReading> gpus;
  bool gpu_reading_ok = false;
  uint64_t swaps = 0;                                // instances stopped to make room for another model
  std::map<std::string, uint64_t> queue_rejections;  // reason ("full", "timeout") -> count
  std::map<std::string, ModelMetrics> models;        // by model name
  /// Each instance that serves (a model's own and its replicas).
  struct InstanceRow {
    std::string instance, model;
    int port = 0;
    std::vector<int> gpus;  // empty: CPU
    int64_t in_flight = 0;
  };
  std::vector<InstanceRow> instance_rows;
};

/// Prometheus text exposition format 0.0.4, every family with HELP and TYPE.
std::string render(const MetricsSnapshot& m);

class Metrics {
 public:
  void request(std::string_view route, int status);
  void load(const std::string& model, bool ok, double seconds);
  void unload(const std::string& model, const std::string& reason);
  /// A request waited `seconds` for its model (a load, a slot, its turn).
  void queue_wait(const std::string& model, double seconds);
  void swap();
  /// One more instance of `model` started for its waiting requests.
  void scale_out(const std::string& model);
  void queue_rejected(const std::string& reason);
  /// A copy to render (instances, in-flight and GPUs are filled in by the caller).
  MetricsSnapshot snapshot() const;

 private:
  /// The counters every request updates, one set per thread (a thread takes
  /// a shard on its first request): serve's I/O threads then share no mutex
  /// and no cache line per request. snapshot() adds them up.
  struct alignas(64) Shard {
    std::mutex mu;
    std::map<std::pair<std::string, int>, uint64_t> requests;
    Histogram queue_wait_seconds = MetricsSnapshot{}.queue_wait_seconds;
    std::map<std::string, Histogram, std::less<>> model_wait;  // by model
  };
  static constexpr size_t kShards = 16;
  Shard& shard();

  /// The counters of loads and unloads: a few per minute, one mutex.
  struct Totals {
    std::map<std::string, uint64_t> loads;
    std::map<std::string, uint64_t> unloads;
    Histogram load_seconds = MetricsSnapshot{}.load_seconds;
    uint64_t swaps = 0;
    std::map<std::string, uint64_t> rejections;
    std::map<std::string, std::map<std::string, uint64_t>> model_loads, model_unloads;  // model -> key -> count
    std::map<std::string, uint64_t> model_scale_outs;
  };

  mutable std::mutex mu_;
  Totals totals_;
  mutable std::array<Shard, kShards> shards_;
  std::atomic<size_t> next_shard_{0};
};

}  // namespace llamactl::serve
