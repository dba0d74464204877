#include "serve/gpu_history.h"

namespace llamactl::serve {

void GpuHistory::record(const gpu::ProbeResult& reading, int64_t at_ms) {
  if (reading.cpu_mode || reading.snapshot.gpus.empty()) return;
  GpuSample s;
  s.t_ms = at_ms;
  for (const auto& g : reading.snapshot.gpus)
    s.gpus.push_back({g.index, g.memory_used_mib, g.memory_total_mib, g.utilization_pct});
  std::lock_guard lock(mu_);
  if (!samples_.empty() && samples_.back().t_ms >= at_ms) return;
  samples_.push_back(std::move(s));
  while (!samples_.empty() && (samples_.size() > max_samples_ || samples_.front().t_ms < at_ms - span_ms_))
    samples_.pop_front();
}

std::vector<GpuSample> GpuHistory::since(int64_t after_ms) const {
  std::lock_guard lock(mu_);
  std::vector<GpuSample> out;
  for (const auto& s : samples_)
    if (s.t_ms > after_ms) out.push_back(s);
  return out;
}

}  // namespace llamactl::serve
