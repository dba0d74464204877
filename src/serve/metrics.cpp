#include "serve/metrics.h"

#include <fmt/format.h>

namespace llamactl::serve {
namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

std::string number(double v) {
  return fmt::format("{}", v);
}

void histogram(std::string& out, const char* name, const char* help, const Histogram& h) {
  family(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, number(h.bounds[i]), cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, h.count, name, number(h.sum), name,
                     h.count);
}

}  // namespace

void Histogram::observe(double v) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (v <= bounds[i]) {
      ++counts[i];
      break;
    }
  sum += v;
  ++count;
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < counts.size() && i < other.counts.size(); ++i) counts[i] += other.counts[i];
  sum += other.sum;
  count += other.count;
}

std::string render(const MetricsSnapshot& m) {
  std::string out;
  family(out, "llamactl_requests_total", "counter", "HTTP requests answered, by route and status.");
  for (const auto& [key, n] : m.requests)
    out += fmt::format("llamactl_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", escape_label(key.first),
                       key.second, n);
  family(out, "llamactl_requests_in_flight", "gauge", "Requests admitted to a model and not yet finished.");
  out += fmt::format("llamactl_requests_in_flight {}\n", m.in_flight);
  family(out, "llamactl_loads_total", "counter", "Model loads started by serve, by result.");
  for (const char* r : {"ok", "failed"}) {
    const auto it = m.loads.find(r);
    out += fmt::format("llamactl_loads_total{{result=\"{}\"}} {}\n", r, it == m.loads.end() ? 0 : it->second);
  }
  histogram(out, "llamactl_load_seconds", "Seconds from the start of a load until the model answered /health.",
            m.load_seconds);
  family(out, "llamactl_unloads_total", "counter",
         "Instances that stopped, by reason (idle, evicted, keep_alive_0, failed, manual).");
  for (const char* r : {"idle", "evicted", "keep_alive_0", "failed", "manual"}) {
    const auto it = m.unloads.find(r);
    out += fmt::format("llamactl_unloads_total{{reason=\"{}\"}} {}\n", r, it == m.unloads.end() ? 0 : it->second);
  }
  family(out, "llamactl_instances", "gauge", "Instances by state (starting, ready, stopping, dead).");
  for (const char* s : {"starting", "ready", "stopping", "dead"}) {
    const auto it = m.instances.find(s);
    out += fmt::format("llamactl_instances{{state=\"{}\"}} {}\n", s, it == m.instances.end() ? 0 : it->second);
  }
  histogram(out, "llamactl_queue_wait_seconds", "Seconds a request waited for its model to load before it was served.",
            m.queue_wait_seconds);
  family(out, "llamactl_gpu_reading_ok", "gauge", "1 when the last GPU reading succeeded, 0 in CPU mode.");
  out += fmt::format("llamactl_gpu_reading_ok {}\n", m.gpu_reading_ok ? 1 : 0);
  // Unknown values ([N/A]) are left out rather than reported as 0.
  const auto gpu_family = [&](const char* name, const char* help, auto value) {
    family(out, name, "gauge", help);
    for (const auto& g : m.gpus)
      if (const auto v = value(g))
        out += fmt::format("{}{{gpu=\"{}\",uuid=\"{}\",name=\"{}\"}} {}\n", name, g.index, escape_label(g.uuid),
                           escape_label(g.name), *v);
  };
  constexpr int64_t kMiB = 1024 * 1024;
  gpu_family("llamactl_gpu_memory_used_bytes", "GPU memory in use (all processes).", [](const gpu::GpuReading& g) {
    return g.memory_used_mib ? std::optional(*g.memory_used_mib * kMiB) : std::nullopt;
  });
  gpu_family("llamactl_gpu_memory_total_bytes", "GPU memory in total.", [](const gpu::GpuReading& g) {
    return g.memory_total_mib ? std::optional(*g.memory_total_mib * kMiB) : std::nullopt;
  });
  gpu_family("llamactl_gpu_utilization_percent", "GPU utilisation.", [](const gpu::GpuReading& g) {
    return g.utilization_pct ? std::optional<int64_t>(*g.utilization_pct) : std::nullopt;
  });
  return out;
}

Metrics::Shard& Metrics::shard() {
  // Per Metrics object and thread (tests make several Metrics in one thread).
  thread_local const Metrics* owner = nullptr;
  thread_local size_t index = 0;
  if (owner != this) {
    owner = this;
    index = next_shard_.fetch_add(1, std::memory_order_relaxed) % kShards;
  }
  return shards_[index];
}

void Metrics::request(std::string_view route, int status) {
  // The key is built in a string kept per thread: no allocation per request.
  thread_local std::pair<std::string, int> key;
  key.first.assign(route);
  key.second = status;
  Shard& s = shard();
  std::lock_guard lock(s.mu);
  ++s.requests[key];
}

void Metrics::load(bool ok, double seconds) {
  std::lock_guard lock(mu_);
  ++totals_.loads[ok ? "ok" : "failed"];
  if (ok) totals_.load_seconds.observe(seconds);
}

void Metrics::unload(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++totals_.unloads[reason];
}

void Metrics::queue_wait(double seconds) {
  Shard& s = shard();
  std::lock_guard lock(s.mu);
  s.queue_wait_seconds.observe(seconds);
}

MetricsSnapshot Metrics::snapshot() const {
  MetricsSnapshot out;
  {
    std::lock_guard lock(mu_);
    out.loads = totals_.loads;
    out.unloads = totals_.unloads;
    out.load_seconds = totals_.load_seconds;
  }
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [key, n] : s.requests) out.requests[key] += n;
    out.queue_wait_seconds.merge(s.queue_wait_seconds);
  }
  return out;
}

}  // namespace llamactl::serve
