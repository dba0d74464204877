#pragma once
// Decides, per GPU, whether it is idle, runs one of our instances, or is
// occupied by someone else. Pure: readings, thresholds and our instances in,
// a view out. Memory decides occupancy, not the process list (containers
// hide pids, graphics processes are absent from compute-apps): a GPU is in
// use when memory.used, less what ignore_processes are known to hold, is
// above its threshold.
//
// Windows desktop GPUs (driver model WDDM, as nvidia-smi reports it) are
// the exception: every per-process memory is [N/A] and the idle desktop
// holds ~1 GiB, so memory cannot tell the desktop from a job, but
// compute-apps lists the desktop's apps too. There the process list
// decides: occupied_by_others when a process that is neither ours, nor in
// ignore_processes (default: the Windows shell), nor an app that draws
// (type G or C+G, from the plain table: gpu/process_types.h) runs on the
// GPU, else idle. The apps that draw are listed apart (desktop_apps): Edge,
// Windows Terminal or 1Password open on the desktop do not make its GPU
// "occupied"; a CUDA job (type C) does. Vulkan, DirectML and OpenGL compute,
// and a CUDA app with a window, are G or C+G too: a desktop GPU whose
// memory.used is above kDesktopBudgetMib is occupied_by_others whatever
// draws there, with its apps listed as the occupants. A process whose type is unknown
// (the table did not run, or did not list it, or a process without a
// readable name) counts as an occupant. Memory decides again on a WDDM GPU
// with a per-GPU threshold (the user's override) or without a process
// list. TCC/MCDM and Linux display GPUs (Xorg's memory is known) keep the
// memory rule. free_mib() stays total - used: the desktop's memory is in use.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gpu/probe.h"
#include "gpu/visible.h"

namespace llamactl::gpu {

/// not_ours: outside the GPUs we were given (gpu/visible.h), whatever runs
/// there; a GPU that runs one of our instances stays model_loaded.
enum class GpuState { idle, model_loaded, occupied_by_others, unavailable, not_ours };
const char* to_string(GpuState s);

struct ClassifyOptions {
  int64_t threshold_mib = 30;
  std::map<int, int64_t> per_gpu_threshold_mib;
  std::vector<std::string> ignore_processes;  // basenames, case-insensitive ("Xorg", "dwm.exe")
  std::optional<Restriction> restriction;     // the GPUs we were given; nullopt: all
};

struct OurInstance {
  std::string model;
  std::vector<int> gpus;
  int64_t pid = 0;
};

struct ProcessInfo {
  std::optional<int64_t> pid;
  std::string name;  // "unknown" when memory is used but no process is visible
  std::optional<int64_t> used_memory_mib;
  std::optional<std::string> user;
  bool ours = false;
  std::string type;  // "C", "G", "C+G"; empty when unknown
};

struct GpuStatus {
  GpuReading reading;
  GpuState state = GpuState::idle;
  std::optional<std::string> model_name;  // ours only
  bool select_enabled = true;
  bool loadable = true;
  int64_t threshold_mib = 30;
  bool desktop = false;     // a WDDM GPU judged by its process list (see above)
  bool ours_to_use = true;  // inside the GPUs we were given
  std::vector<ProcessInfo> processes;
  std::vector<ProcessInfo> desktop_apps;  // a desktop GPU's apps that draw (G, C+G): not occupants
  std::optional<int64_t> free_mib() const;
};

struct GpuView {
  bool cpu_mode = false;
  std::string cpu_reason;
  std::string source;
  int64_t threshold_mib = 30;
  std::vector<GpuStatus> gpus;
  std::vector<std::string> warnings;
  std::string restricted_by;      // "CUDA_VISIBLE_DEVICES=GPU-…"; empty: every GPU is ours to use
  std::string restriction_error;  // the restriction names a GPU nvidia-smi does not list: none is ours
  const GpuStatus* find(int index) const;
};

using UserLookup = std::function<std::optional<std::string>(int64_t pid)>;

/// The default ignore list: the desktop's own processes, whose memory should
/// not make a display GPU "occupied": Linux compositors and the Windows shell
/// (processes every logged-in or locked Windows desktop runs, plus NVIDIA's
/// overlay), never apps a user starts.
std::vector<std::string> default_ignore_processes();

/// The most a Windows desktop with its apps open uses of a GPU (the real
/// captures: 797 MiB idle, 1366 MiB with two NVENC jobs); above it something
/// that draws holds the memory (a game, a Vulkan or DirectML model).
inline constexpr int64_t kDesktopBudgetMib = 2048;

GpuView classify(const ProbeResult& probe, const ClassifyOptions& opts, const std::vector<OurInstance>& ours,
                 const UserLookup& user_of);

}  // namespace llamactl::gpu
