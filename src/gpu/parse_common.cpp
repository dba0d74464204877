#include <algorithm>
#include <set>

#include "gpu/parse.h"
#include "gpu/parse_detail.h"
#include "util/strings.h"

namespace llamactl::gpu {

std::optional<int> GpuSnapshot::gpu_of(const GpuProcess& p) const {
  if (p.gpu_index) return p.gpu_index;
  if (p.gpu_uuid.empty()) return std::nullopt;
  for (const auto& g : gpus)
    if (g.uuid == p.gpu_uuid) return g.index;  // under MIG this is the parent GPU's uuid
  return std::nullopt;
}

const GpuReading* GpuSnapshot::find(int index) const {
  for (const auto& g : gpus)
    if (g.index == index) return &g;
  return nullptr;
}

std::optional<LostGpu> parse_lost_gpu_line(std::string_view line) {
  static constexpr std::string_view kPrefix = "Unable to determine the device handle for GPU";
  const size_t at = line.find(kPrefix);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(at + kPrefix.size());
  LostGpu lost;
  // Newer drivers: "GPU0: 0000:24:00.0: GPU is lost..." (no space after "GPU");
  // older ones: "GPU 0000:02:00.0: GPU is lost...".
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits > 0 && digits < rest.size() && rest[digits] == ':') {
    lost.index = static_cast<int>(*parse_int(rest.substr(0, digits)));
    rest = rest.substr(digits + 1);
  }
  rest = trim(rest);
  // Bus id "0000:02:00.0" ends at the ": " before the reason.
  const size_t sep = rest.find(": ");
  if (sep != std::string_view::npos) {
    lost.bus_id = std::string(rest.substr(0, sep));
    rest = trim(rest.substr(sep + 2));
  }
  const size_t dot = rest.find('.');
  lost.reason = std::string(trim(dot == std::string_view::npos ? rest : rest.substr(0, dot)));
  if (lost.reason.empty()) lost.reason = "GPU not reachable";
  return lost;
}

void add_lost_gpus(GpuSnapshot& snap, const std::vector<LostGpu>& lost) {
  std::set<int> used;
  for (const auto& g : snap.gpus) used.insert(g.index);
  for (const auto& l : lost)
    if (l.index) used.insert(*l.index);
  for (const auto& l : lost) {
    GpuReading g;
    if (l.index) {
      g.index = *l.index;
    } else {
      int i = 0;
      while (used.count(i)) ++i;
      g.index = i;
      used.insert(i);
    }
    g.bus_id = l.bus_id;
    g.error = l.reason;
    snap.warnings.push_back("GPU " + std::to_string(g.index) + (l.bus_id.empty() ? "" : " (" + l.bus_id + ")") + ": " +
                            l.reason);
    snap.gpus.push_back(std::move(g));
  }
}

void dedupe_gpus(GpuSnapshot& snap) {
  std::stable_sort(snap.gpus.begin(), snap.gpus.end(),
                   [](const GpuReading& a, const GpuReading& b) { return a.index < b.index; });
  std::vector<GpuReading> unique;
  for (auto& g : snap.gpus) {
    if (!unique.empty() && unique.back().index == g.index) {
      snap.warnings.push_back("nvidia-smi listed GPU " + std::to_string(g.index) + " twice; kept the first");
      continue;
    }
    unique.push_back(std::move(g));
  }
  snap.gpus = std::move(unique);
}

std::string known_failure(std::string_view text) {
  struct Known {
    std::string_view needle, reason;
  };
  static constexpr Known kKnown[] = {
      {"No devices were found", "no NVIDIA GPU found (\"No devices were found\")"},
      {"Driver/library version mismatch", "NVIDIA driver/library version mismatch (reboot after a driver upgrade)"},
      {"couldn't communicate with the NVIDIA driver", "nvidia-smi could not communicate with the NVIDIA driver"},
      {"NVML Shared Library Not Found", "NVML library not found"},
      {"Failed to initialize NVML", "NVML failed to initialise"},
  };
  for (const auto& k : kKnown)
    if (text.find(k.needle) != std::string_view::npos) return std::string(k.reason);
  return {};
}

Result<GpuSnapshot> parse_any(std::string_view text) {
  // The table always has "+---" borders and a "|" GPU header; CSV never does.
  for (std::string_view line : split_lines(text)) {
    const auto t = trim(line);
    if (starts_with(t, "+--") || starts_with(t, "| NVIDIA-SMI") || starts_with(t, "|=")) return parse_table(text);
  }
  return parse_csv(text);
}

}  // namespace llamactl::gpu
