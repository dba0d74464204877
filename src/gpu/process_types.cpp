#include "gpu/process_types.h"

#include "util/strings.h"

namespace llamactl::gpu {
namespace {

bool on_wddm(const GpuSnapshot& s, const GpuProcess& p) {
  const auto index = s.gpu_of(p);
  if (!index) return false;
  const GpuReading* r = s.find(*index);
  return r && is_wddm(*r);
}

// The table cuts long names on the left: "...t\Edge\Application\msedge.exe".
bool same_name(const std::string& full, const std::string& shown) {
  if (full.empty() || shown.empty()) return true;  // nothing to tell them apart by
  std::string_view tail = shown;
  if (tail.substr(0, 3) == "...") tail.remove_prefix(3);
  return tail.size() <= full.size() && full.compare(full.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool is_wddm(const GpuReading& r) {
  return iequals(r.driver_model, "WDDM");
}

bool draws(const GpuProcess& p) {
  return p.type == "G" || p.type == "C+G";
}

ProcessTypes types_from_table(const GpuSnapshot& table, const GpuSnapshot& reading) {
  ProcessTypes t;
  for (const auto& p : table.processes)
    if (p.pid && !p.type.empty()) t.by_pid[*p.pid] = {p.type, p.name};
  for (const auto& p : reading.processes)
    if (p.pid && on_wddm(reading, p)) t.asked.insert(*p.pid);
  return t;
}

bool wants_types(const GpuSnapshot& s, const ProcessTypes& known) {
  for (const auto& p : s.processes) {
    if (!p.type.empty() || !p.pid || !on_wddm(s, p)) continue;
    if (!known.by_pid.count(*p.pid) && !known.asked.count(*p.pid)) return true;
  }
  return false;
}

void apply_types(GpuSnapshot& s, const ProcessTypes& known) {
  for (auto& p : s.processes) {
    if (!p.type.empty() || !p.pid) continue;
    const auto it = known.by_pid.find(*p.pid);
    if (it != known.by_pid.end() && same_name(p.name, it->second.name)) p.type = it->second.type;
  }
}

}  // namespace llamactl::gpu
