#include "gpu/process_types.h"

#include "util/strings.h"

namespace llamactl::gpu {
namespace {

// The process's GPU when that GPU runs under WDDM.
std::optional<int> wddm_gpu(const GpuSnapshot& s, const GpuProcess& p) {
  const auto index = s.gpu_of(p);
  if (!index) return std::nullopt;
  const GpuReading* r = s.find(*index);
  if (!r || !is_wddm(*r)) return std::nullopt;
  return index;
}

// The table cuts long names on the left ("...t\Edge\Application\msedge.exe")
// and shows short ones whole. Without a name on either side nothing says it
// is the same process.
bool same_name(const std::string& full, const std::string& shown) {
  if (full.empty() || shown.empty()) return false;
  if (shown.compare(0, 3, "...") != 0) return full == shown;
  const std::string_view tail = std::string_view(shown).substr(3);
  return !tail.empty() && tail.size() <= full.size() && full.compare(full.size() - tail.size(), tail.size(), tail) == 0;
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
    if (p.pid && p.gpu_index && !p.type.empty()) t.by_process[{*p.gpu_index, *p.pid}] = {p.type, p.name};
  for (const auto& p : reading.processes)
    if (const auto g = wddm_gpu(reading, p); g && p.pid) t.asked.insert({*g, *p.pid});
  return t;
}

bool wants_types(const GpuSnapshot& s, const ProcessTypes& known) {
  for (const auto& p : s.processes) {
    if (!p.type.empty() || !p.pid || p.name.empty()) continue;
    const auto g = wddm_gpu(s, p);
    if (!g) continue;
    const ProcessTypes::Key key{*g, *p.pid};
    if (const auto it = known.by_process.find(key); it != known.by_process.end()) {
      if (!same_name(p.name, it->second.name)) return true;  // another process has the pid now
    } else if (!known.asked.count(key)) {
      return true;
    }
  }
  return false;
}

bool has_wddm_process(const GpuSnapshot& s) {
  for (const auto& p : s.processes)
    if (wddm_gpu(s, p)) return true;
  return false;
}

void apply_types(GpuSnapshot& s, const ProcessTypes& known) {
  for (auto& p : s.processes) {
    if (!p.type.empty() || !p.pid) continue;
    const auto g = s.gpu_of(p);
    if (!g) continue;
    const auto it = known.by_process.find({*g, *p.pid});
    if (it != known.by_process.end() && same_name(p.name, it->second.name)) p.type = it->second.type;
  }
}

}  // namespace llamactl::gpu
