#include "ui/json.h"

#include "util/time.h"

namespace llamactl::ui {

using json = nlohmann::ordered_json;

namespace {

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json gpus_json(const gpu::GpuView& view) {
  json j;
  const bool cpu = view.cpu_mode || view.gpus.empty();
  j["total_gpus"] = cpu ? 0 : view.gpus.size();
  j["mode"] = cpu ? "cpu" : "gpu";
  j["threshold_mib"] = view.threshold_mib;
  j["reason"] = cpu && !view.cpu_reason.empty() ? json(view.cpu_reason) : json(nullptr);
  j["gpu_status"] = json::array();
  for (const auto& g : view.gpus) {
    json procs = json::array();
    for (const auto& p : g.processes)
      procs.push_back({{"pid", opt(p.pid)},
                       {"process_name", p.name},
                       {"used_memory_mib", opt(p.used_memory_mib)},
                       {"user", opt(p.user)},
                       {"ours", p.ours},
                       {"type", p.type.empty() ? json(nullptr) : json(p.type)}});
    // A Windows desktop GPU's apps that draw (G, C+G): on it, not occupying it.
    json apps = json::array();
    for (const auto& p : g.desktop_apps)
      apps.push_back({{"pid", opt(p.pid)}, {"process_name", p.name}, {"type", p.type}});
    j["gpu_status"].push_back({{"index", g.reading.index},
                               {"uuid", g.reading.uuid.empty() ? json(nullptr) : json(g.reading.uuid)},
                               {"name", g.reading.name},
                               {"memory_used_mib", opt(g.reading.memory_used_mib)},
                               {"memory_total_mib", opt(g.reading.memory_total_mib)},
                               {"utilization_pct", opt(g.reading.utilization_pct)},
                               {"state", gpu::to_string(g.state)},
                               {"model_name", opt(g.model_name)},
                               {"select_enabled", g.select_enabled},
                               {"loadable", g.loadable},
                               {"ours_to_use", g.ours_to_use},
                               {"threshold_mib", g.threshold_mib},
                               {"error", g.reading.error.empty() ? json(nullptr) : json(g.reading.error)},
                               {"process_info", procs},
                               {"desktop_apps", apps}});
  }
  j["warnings"] = view.warnings;
  // The GPUs we were given: "CUDA_VISIBLE_DEVICES=GPU-…", or null when every GPU is ours to use.
  j["restricted_by"] = view.restricted_by.empty() ? json(nullptr) : json(view.restricted_by);
  return j;
}

json instance_json(const runtime::InstanceView& i) {
  return {{"model", i.rec.model},
          {"path", i.rec.path},
          {"gpus", i.rec.gpus},
          {"port", i.rec.port},
          {"url", "http://127.0.0.1:" + std::to_string(i.rec.port)},
          {"pid", i.rec.pid},
          {"state", i.state},
          {"healthy", i.healthy},
          {"started_at", i.rec.started_at_ms > 0 ? json(iso8601(i.rec.started_at_ms)) : json(nullptr)},
          {"uptime_s", i.uptime_s},
          {"memory_used_mib", opt(i.memory_used_mib)},
          {"memory_total_mib", opt(i.memory_total_mib)},
          {"last_used_at", i.rec.last_used_at_ms > 0 ? json(iso8601(i.rec.last_used_at_ms)) : json(nullptr)},
          {"keep_alive_ms", i.rec.keep_alive_ms},
          {"expires_at", i.expires_at_ms ? json(iso8601(*i.expires_at_ms)) : json(nullptr)},
          {"owner", i.rec.owner},
          {"loaded_by", i.rec.loaded_by},
          {"died_at", i.rec.died_at_ms ? json(iso8601(*i.rec.died_at_ms)) : json(nullptr)},
          {"exit_code", opt(i.rec.exit_code)},
          {"log", i.rec.log}};
}

json status_json(const runtime::View& view) {
  json j;
  j["gpus"] = gpus_json(view.gpus);
  j["instances"] = json::array();
  for (const auto& i : view.instances) j["instances"].push_back(instance_json(i));
  j["notices"] = view.notices;
  return j;
}

json load_json(const runtime::LoadOutcome& out) {
  json j = instance_json(out.instance);
  j["already_running"] = out.already_running;
  if (out.keep_alive_was) j["previous_keep_alive_ms"] = *out.keep_alive_was;
  const size_t n = std::max<size_t>(1, out.instance.rec.gpus.size());
  j["estimate"] = {{"total_mib", out.estimate.total_mib(n)},
                   {"per_gpu_mib", out.estimate.per_gpu_mib(n)},
                   {"weights_mib", out.estimate.weights_mib},
                   {"kv_cache_mib", out.estimate.kv_cache_mib},
                   {"overhead_per_gpu_mib", out.estimate.overhead_per_gpu_mib},
                   {"context", out.estimate.context}};
  j["ready_s"] = out.ready_s;
  j["notes"] = out.notes;
  return j;
}

json unload_json(const runtime::UnloadOutcome& out) {
  json j;
  j["unloaded"] = json::array();
  for (const auto& s : out.stopped)
    j["unloaded"].push_back({{"model", s.rec.model},
                             {"gpus", s.rec.gpus},
                             {"pid", s.rec.pid},
                             {"stopped", !s.still_running && !s.was_dead},
                             {"cleared_dead_record", s.was_dead},
                             {"killed", s.killed},
                             {"freed_mib", opt(s.freed_mib)}});
  j["gpus"] = gpus_json(out.after);
  return j;
}

}  // namespace llamactl::ui
