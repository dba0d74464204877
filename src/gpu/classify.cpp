#include "gpu/classify.h"

#include <algorithm>

#include "util/strings.h"

namespace llamactl::gpu {
namespace {

bool ignored(const std::string& name, const std::vector<std::string>& list) {
  const std::string_view base = basename_any(name);
  return std::any_of(list.begin(), list.end(), [&](const std::string& i) { return iequals(base, i); });
}

}  // namespace

const char* to_string(GpuState s) {
  switch (s) {
    case GpuState::idle:
      return "idle";
    case GpuState::model_loaded:
      return "model_loaded";
    case GpuState::occupied_by_others:
      return "occupied_by_others";
    case GpuState::unavailable:
      return "unavailable";
  }
  return "unknown";
}

std::optional<int64_t> GpuStatus::free_mib() const {
  if (!reading.memory_used_mib || !reading.memory_total_mib) return std::nullopt;
  return std::max<int64_t>(0, *reading.memory_total_mib - *reading.memory_used_mib);
}

const GpuStatus* GpuView::find(int index) const {
  for (const auto& g : gpus)
    if (g.reading.index == index) return &g;
  return nullptr;
}

std::vector<std::string> default_ignore_processes() {
  return {"Xorg", "Xwayland", "gnome-shell", "kwin_wayland", "kwin_x11", "plasmashell", "dwm.exe"};
}

GpuView classify(const ProbeResult& probe, const ClassifyOptions& opts, const std::vector<OurInstance>& ours,
                 const UserLookup& user_of) {
  GpuView view;
  view.cpu_mode = probe.cpu_mode;
  view.cpu_reason = probe.reason;
  view.source = probe.source;
  view.threshold_mib = opts.threshold_mib;
  view.warnings = probe.snapshot.warnings;
  if (probe.cpu_mode) return view;

  for (const auto& reading : probe.snapshot.gpus) {
    GpuStatus st;
    st.reading = reading;
    const auto per = opts.per_gpu_threshold_mib.find(reading.index);
    st.threshold_mib = per != opts.per_gpu_threshold_mib.end() ? per->second : opts.threshold_mib;

    std::vector<std::string> our_models;
    std::vector<int64_t> our_pids;
    for (const auto& inst : ours) {
      if (std::find(inst.gpus.begin(), inst.gpus.end(), reading.index) != inst.gpus.end()) {
        our_models.push_back(inst.model);
        our_pids.push_back(inst.pid);
      }
    }

    int64_t ignored_mib = 0;
    for (const auto& p : probe.snapshot.processes) {
      if (probe.snapshot.gpu_of(p) != reading.index) continue;
      if (ignored(p.name, opts.ignore_processes)) {
        ignored_mib += p.used_memory_mib.value_or(0);
        continue;
      }
      ProcessInfo info;
      info.pid = p.pid;
      info.name = p.name;
      info.used_memory_mib = p.used_memory_mib;
      info.ours = p.pid && std::find(our_pids.begin(), our_pids.end(), *p.pid) != our_pids.end();
      if (p.pid && user_of) info.user = user_of(*p.pid);
      st.processes.push_back(std::move(info));
    }

    if (!our_models.empty()) {
      st.state = GpuState::model_loaded;
      st.model_name = join(our_models, ",");
    } else if (!reading.error.empty() || !reading.memory_used_mib) {
      // A GPU whose memory we cannot read cannot be called idle.
      st.state = GpuState::unavailable;
    } else if (*reading.memory_used_mib - ignored_mib > st.threshold_mib) {
      st.state = GpuState::occupied_by_others;
      const bool any_visible =
          std::any_of(st.processes.begin(), st.processes.end(), [](const ProcessInfo& p) { return !p.ours; });
      if (!any_visible) {
        ProcessInfo unknown;
        unknown.name = "unknown";  // memory in use, owner invisible (container pid namespace, graphics-only)
        st.processes.push_back(unknown);
      }
    } else {
      st.state = GpuState::idle;
    }
    st.select_enabled = st.state == GpuState::idle || st.state == GpuState::model_loaded;
    st.loadable = st.state == GpuState::idle;
    view.gpus.push_back(std::move(st));
  }
  return view;
}

}  // namespace llamactl::gpu
