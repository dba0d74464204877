#pragma once
// The last minutes of GPU readings for the web page's memory trend charts:
// serve records each reading the GPU monitor already takes (no extra
// nvidia-smi run), in a bounded ring. Thread-safe.

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "gpu/probe.h"

namespace llamactl::serve {

struct GpuSample {
  struct Gpu {
    int index = 0;
    std::optional<int64_t> used_mib, total_mib;
    std::optional<int> util_pct;
  };
  int64_t t_ms = 0;  // wall clock
  std::vector<Gpu> gpus;
};

class GpuHistory {
 public:
  /// Keeps samples of the last `span_ms`, and at most `max_samples`.
  explicit GpuHistory(int64_t span_ms = 10 * 60 * 1000, size_t max_samples = 1200)
      : span_ms_(span_ms), max_samples_(max_samples) {}

  /// A reading taken at `at_ms`. CPU-mode readings (no GPU) add nothing;
  /// a reading not newer than the last sample replaces nothing either.
  void record(const gpu::ProbeResult& reading, int64_t at_ms);
  /// The samples taken after `after_ms` (0: all), oldest first.
  std::vector<GpuSample> since(int64_t after_ms) const;
  int64_t span_ms() const { return span_ms_; }

 private:
  const int64_t span_ms_;
  const size_t max_samples_;
  mutable std::mutex mu_;
  std::deque<GpuSample> samples_;
};

}  // namespace llamactl::serve
