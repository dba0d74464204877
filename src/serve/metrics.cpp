#include "serve/metrics.h"

#include <fmt/format.h>

#include "util/strings.h"

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

/// A histogram's samples; `labels` ("model=\"a\",") go before le.
void histogram_samples(std::string& out, const char* name, const std::string& labels, const Histogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, labels, number(h.bounds[i]), cumulative);
  }
  const std::string plain = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n{}_sum{} {}\n{}_count{} {}\n", name, labels, h.count, name, plain,
                     number(h.sum), name, plain, h.count);
}

void histogram(std::string& out, const char* name, const char* help, const Histogram& h) {
  family(out, name, "histogram", help);
  histogram_samples(out, name, "", h);
}

/// The per-model families.
void model_families(std::string& out, const std::map<std::string, ModelMetrics>& models) {
  const auto label = [](const std::string& model) { return "model=\"" + escape_label(model) + "\""; };
  const auto gauge = [&](const char* name, const char* help, auto value) {
    family(out, name, "gauge", help);
    for (const auto& [model, m] : models) out += fmt::format("{}{{{}}} {}\n", name, label(model), value(m));
  };
  gauge("llamactl_model_queue_depth", "Requests waiting for the model (a load, a free slot, room on the GPUs).",
        [](const ModelMetrics& m) { return m.queue_depth; });
  gauge("llamactl_model_requests_in_flight", "Requests admitted to the model's instances and not yet finished.",
        [](const ModelMetrics& m) { return m.in_flight; });
  gauge("llamactl_model_slots", "Requests the model's instance takes at once (llama-server's slots); 0: unknown.",
        [](const ModelMetrics& m) { return m.slots; });
  gauge("llamactl_model_replicas", "Instances of the model that serve requests now.",
        [](const ModelMetrics& m) { return m.replicas; });
  family(out, "llamactl_model_loads_total", "counter", "Loads of the model started by serve, by result.");
  for (const auto& [model, m] : models)
    for (const char* r : {"ok", "failed"}) {
      const auto it = m.loads.find(r);
      out += fmt::format("llamactl_model_loads_total{{{},result=\"{}\"}} {}\n", label(model), r,
                         it == m.loads.end() ? 0 : it->second);
    }
  family(out, "llamactl_model_unloads_total", "counter", "Instances of the model that stopped, by reason.");
  for (const auto& [model, m] : models)
    for (const auto& [reason, n] : m.unloads)
      out +=
          fmt::format("llamactl_model_unloads_total{{{},reason=\"{}\"}} {}\n", label(model), escape_label(reason), n);
  family(out, "llamactl_model_scale_outs_total", "counter",
         "Replicas of the model started because every slot was busy and requests waited (replicas, scale_after).");
  for (const auto& [model, m] : models)
    out += fmt::format("llamactl_model_scale_outs_total{{{}}} {}\n", label(model), m.scale_outs);
  family(out, "llamactl_model_queue_wait_seconds", "histogram",
         "Seconds a request waited for the model before it was admitted.");
  for (const auto& [model, m] : models)
    histogram_samples(out, "llamactl_model_queue_wait_seconds", label(model) + ",", m.queue_wait_seconds);
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
  histogram(out, "llamactl_queue_wait_seconds",
            "Seconds a request waited for its model (a load, a free slot, room on the GPUs) before it was served.",
            m.queue_wait_seconds);
  family(out, "llamactl_swaps_total", "counter", "Instances serve stopped to make room for another model's requests.");
  out += fmt::format("llamactl_swaps_total {}\n", m.swaps);
  family(out, "llamactl_queue_rejections_total", "counter",
         "Requests refused with 503 by the queue: full (max_queue) or timeout (queue_timeout).");
  for (const char* r : {"full", "timeout"}) {
    const auto it = m.queue_rejections.find(r);
    out += fmt::format("llamactl_queue_rejections_total{{reason=\"{}\"}} {}\n", r,
                       it == m.queue_rejections.end() ? 0 : it->second);
  }
  model_families(out, m.models);
  family(out, "llamactl_instance_requests_in_flight", "gauge",
         "Requests in flight on each instance that serves: a model's own and its replicas (model#2, ...), with its "
         "port and GPUs.");
  for (const auto& r : m.instance_rows) {
    std::vector<std::string> gpus;
    for (int g : r.gpus) gpus.push_back(std::to_string(g));
    out +=
        fmt::format("llamactl_instance_requests_in_flight{{model=\"{}\",instance=\"{}\",port=\"{}\",gpus=\"{}\"}} {}\n",
                    escape_label(r.model), escape_label(r.instance), r.port,
                    gpus.empty() ? std::string("cpu") : join(gpus, ","), r.in_flight);
  }
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

void Metrics::load(const std::string& model, bool ok, double seconds) {
  std::lock_guard lock(mu_);
  ++totals_.loads[ok ? "ok" : "failed"];
  ++totals_.model_loads[model][ok ? "ok" : "failed"];
  if (ok) totals_.load_seconds.observe(seconds);
}

void Metrics::unload(const std::string& model, const std::string& reason) {
  std::lock_guard lock(mu_);
  ++totals_.unloads[reason];
  ++totals_.model_unloads[model][reason];
}

void Metrics::scale_out(const std::string& model) {
  std::lock_guard lock(mu_);
  ++totals_.model_scale_outs[model];
}

void Metrics::swap() {
  std::lock_guard lock(mu_);
  ++totals_.swaps;
}

void Metrics::queue_rejected(const std::string& reason) {
  std::lock_guard lock(mu_);
  ++totals_.rejections[reason];
}

void Metrics::queue_wait(const std::string& model, double seconds) {
  Shard& s = shard();
  std::lock_guard lock(s.mu);
  s.queue_wait_seconds.observe(seconds);
  auto it = s.model_wait.find(model);
  if (it == s.model_wait.end()) it = s.model_wait.emplace(model, MetricsSnapshot{}.queue_wait_seconds).first;
  it->second.observe(seconds);
}

MetricsSnapshot Metrics::snapshot() const {
  MetricsSnapshot out;
  {
    std::lock_guard lock(mu_);
    out.loads = totals_.loads;
    out.unloads = totals_.unloads;
    out.load_seconds = totals_.load_seconds;
    out.swaps = totals_.swaps;
    out.queue_rejections = totals_.rejections;
    for (const auto& [model, loads] : totals_.model_loads) out.models[model].loads = loads;
    for (const auto& [model, unloads] : totals_.model_unloads) out.models[model].unloads = unloads;
    for (const auto& [model, n] : totals_.model_scale_outs) out.models[model].scale_outs = n;
  }
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [key, n] : s.requests) out.requests[key] += n;
    out.queue_wait_seconds.merge(s.queue_wait_seconds);
    for (const auto& [model, h] : s.model_wait) out.models[model].queue_wait_seconds.merge(h);
  }
  return out;
}

}  // namespace llamactl::serve
