#pragma once
// One reading of the machine's NVIDIA GPUs and their compute processes, as
// nvidia-smi reported it. Every value nvidia-smi could not give is nullopt,
// never 0: "[N/A]" on a WDDM desktop is not "no memory used".

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llamactl::gpu {

struct GpuReading {
  int index = -1;
  std::string uuid;    // "GPU-..."; empty in the plain table form
  std::string name;    // may be truncated with "..." in the table form
  std::string bus_id;  // "00000000:00:06.0"; empty in CSV form
  std::optional<int64_t> memory_used_mib;
  std::optional<int64_t> memory_total_mib;
  std::optional<int> utilization_pct;  // [N/A] under MIG
  std::string driver_model;            // Windows: "WDDM", "TCC", "MCDM"; empty where not reported (Linux)
  std::string error;                   // "GPU is lost" etc.; empty when the GPU reported
};

struct GpuProcess {
  std::optional<int> gpu_index;            // table form gives the index
  std::string gpu_uuid;                    // CSV form gives the uuid
  std::optional<int64_t> pid;              // [Insufficient Permissions] in some containers
  std::string name;                        // may contain spaces and commas; may be empty
  std::optional<int64_t> used_memory_mib;  // [N/A] on WDDM
  std::string type;                        // "C", "G", "C+G" (table only)
};

struct GpuSnapshot {
  std::vector<GpuReading> gpus;
  std::vector<GpuProcess> processes;
  bool processes_known = true;  // false when the process query failed
  std::vector<std::string> warnings;

  /// Index of the GPU a process runs on (by index, else by uuid); nullopt when unknown.
  std::optional<int> gpu_of(const GpuProcess& p) const;
  const GpuReading* find(int index) const;
};

}  // namespace llamactl::gpu
