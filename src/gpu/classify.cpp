#include "gpu/classify.h"

#include <algorithm>
#include <set>

#include "gpu/process_types.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

bool ignored(const std::string& name, const std::vector<std::string>& list) {
  const std::string_view base = basename_any(name);
  return std::any_of(list.begin(), list.end(), [&](const std::string& i) { return iequals(base, i); });
}

// WDDM hides per-process memory and puts the whole desktop on the GPU, so
// the process list decides (classify.h). Not when the user set this GPU's
// threshold, and not when the list is missing: then memory still tells.
bool judged_by_process_list(const GpuReading& r, const GpuSnapshot& snap, const ClassifyOptions& opts) {
  return is_wddm(r) && snap.processes_known && opts.per_gpu_threshold_mib.count(r.index) == 0;
}

bool anyone_else(const std::vector<ProcessInfo>& processes) {
  return std::any_of(processes.begin(), processes.end(), [](const ProcessInfo& p) { return !p.ours; });
}

// The GPU's processes that are not ignored, ours marked, into st.processes
// (a desktop GPU's apps that draw into st.desktop_apps); `ignored_mib` sums
// what the ignored ones are known to hold.
void list_processes(GpuStatus& st, const GpuSnapshot& snap, int index, const ClassifyOptions& opts,
                    const std::vector<int64_t>& our_pids, const UserLookup& user_of, int64_t& ignored_mib) {
  for (const auto& p : snap.processes) {
    if (snap.gpu_of(p) != index) continue;
    if (ignored(p.name, opts.ignore_processes)) {
      ignored_mib += p.used_memory_mib.value_or(0);
      continue;
    }
    ProcessInfo info;
    info.pid = p.pid;
    info.name = p.name;
    info.used_memory_mib = p.used_memory_mib;
    info.ours = p.pid && std::find(our_pids.begin(), our_pids.end(), *p.pid) != our_pids.end();
    info.type = p.type;
    if (p.pid && user_of) info.user = user_of(*p.pid);
    (st.desktop && !info.ours && draws(p) ? st.desktop_apps : st.processes).push_back(std::move(info));
  }
}

// Whose the GPU is when none of our instances runs on it.
GpuState occupancy(const GpuStatus& st, int64_t ignored_mib) {
  const GpuReading& r = st.reading;
  // A GPU whose memory we cannot read cannot be called idle.
  if (!r.error.empty() || !r.memory_used_mib) return GpuState::unavailable;
  const bool in_use = st.desktop ? anyone_else(st.processes) || *r.memory_used_mib > kDesktopBudgetMib
                                 : *r.memory_used_mib - ignored_mib > st.threshold_mib;
  return in_use ? GpuState::occupied_by_others : GpuState::idle;
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
    case GpuState::not_ours:
      return "not_ours_to_use";
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
  return {// Linux compositors and shells.
          "Xorg", "Xwayland", "gnome-shell", "kwin_wayland", "kwin_x11", "plasmashell",
          // The Windows desktop: compositor, shell, its hosts, the lock and
          // logon screens (a machine nobody is logged on to runs those).
          "dwm.exe", "explorer.exe", "ShellHost.exe", "ShellExperienceHost.exe", "StartMenuExperienceHost.exe",
          "SearchHost.exe", "SearchApp.exe", "SearchUI.exe", "TextInputHost.exe", "ApplicationFrameHost.exe",
          "SystemSettings.exe", "LockApp.exe", "LogonUI.exe", "Widgets.exe",
          // Windows' own background apps (both Windows captures have them).
          "CrossDeviceResume.exe", "PhoneExperienceHost.exe",
          // The overlay of NVIDIA's driver software (NVIDIA App, GeForce Experience).
          "NVIDIA Overlay.exe", "NVIDIA Share.exe"};
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

  std::optional<std::set<int>> allowed;
  if (opts.restriction) {
    view.restricted_by = opts.restriction->describe();
    auto r = resolve(*opts.restriction, probe.snapshot.gpus);
    if (!r) {
      view.restriction_error = r.error().message;
      view.warnings.push_back(r.error().message + "; no GPU is ours to use");
    }
    allowed = r ? *r : std::set<int>{};
  }
  for (const auto& reading : probe.snapshot.gpus) {
    GpuStatus st;
    st.reading = reading;
    const auto per = opts.per_gpu_threshold_mib.find(reading.index);
    st.threshold_mib = per != opts.per_gpu_threshold_mib.end() ? per->second : opts.threshold_mib;
    st.desktop = judged_by_process_list(reading, probe.snapshot, opts);

    std::vector<std::string> our_models;
    std::vector<int64_t> our_pids;
    for (const auto& inst : ours) {
      if (std::find(inst.gpus.begin(), inst.gpus.end(), reading.index) != inst.gpus.end()) {
        our_models.push_back(inst.model);
        our_pids.push_back(inst.pid);
      }
    }
    int64_t ignored_mib = 0;
    list_processes(st, probe.snapshot, reading.index, opts, our_pids, user_of, ignored_mib);

    if (!our_models.empty()) {
      st.state = GpuState::model_loaded;
      st.model_name = join(our_models, ",");
    } else {
      st.state = occupancy(st, ignored_mib);
    }
    if (allowed && !allowed->count(reading.index)) {
      st.ours_to_use = false;
      if (st.state != GpuState::model_loaded) st.state = GpuState::not_ours;
    }
    // A desktop GPU above its budget: what draws there holds the memory.
    if (st.state == GpuState::occupied_by_others && st.desktop && !anyone_else(st.processes)) {
      for (auto& p : st.desktop_apps) st.processes.push_back(std::move(p));
      st.desktop_apps.clear();
    }
    if (st.state == GpuState::occupied_by_others && !anyone_else(st.processes)) {
      ProcessInfo unknown;
      unknown.name = "unknown";  // memory in use, owner invisible (container pid namespace, graphics-only)
      st.processes.push_back(unknown);
    }
    st.select_enabled = st.state == GpuState::idle || st.state == GpuState::model_loaded;
    st.loadable = st.state == GpuState::idle;
    view.gpus.push_back(std::move(st));
  }
  return view;
}

}  // namespace llamactl::gpu
