#pragma once
// Where GPU readings come from: nvidia-smi (real or a mock named by
// LLAMACTL_NVIDIA_SMI) or a saved output (LLAMACTL_GPU_FIXTURE). Both go
// through the same parsers.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "util/result.h"

#include "gpu/process_types.h"
#include "gpu/snapshot.h"

namespace llamactl::platform {
struct CaptureResult;
}  // namespace llamactl::platform

namespace llamactl::gpu {

struct ProbeResult {
  GpuSnapshot snapshot;
  bool cpu_mode = false;  // no usable GPU reading
  std::string reason;     // why CPU mode (one line), empty otherwise
  std::string source;     // "nvidia-smi", "fixture <path>"
  double elapsed_ms = 0;
};

class GpuProbe {
 public:
  virtual ~GpuProbe() = default;
  /// Never throws, never blocks past its timeout: failures become CPU mode with a reason.
  virtual ProbeResult read() = 0;
};

/// The two queries llamactl runs, at the same time. driver_model.current
/// ("WDDM" on a Windows desktop GPU, "[N/A]" on Linux) picks the rule that
/// classify.h describes for display GPUs.
inline constexpr const char* kQueryGpuArg =
    "--query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu,driver_model.current";
inline constexpr const char* kQueryAppsArg = "--query-compute-apps=gpu_uuid,pid,process_name,used_gpu_memory";
inline constexpr const char* kCsvFormatArg = "--format=csv,noheader,nounits";

class NvidiaSmiProbe final : public GpuProbe {
 public:
  NvidiaSmiProbe(std::string program, std::chrono::milliseconds timeout)
      : program_(std::move(program)), timeout_(timeout) {}
  ProbeResult read() override;

 private:
  std::string program_;
  std::chrono::milliseconds timeout_;
};

class FixtureProbe final : public GpuProbe {
 public:
  explicit FixtureProbe(std::string path) : path_(std::move(path)) {}
  ProbeResult read() override;

 private:
  std::string path_;
};

/// Reads text that nvidia-smi printed (any form) into a result; shared by
/// both probes and the tests.
ProbeResult result_from_text(const std::string& text, const std::string& source);

/// The reading from one run of each of the two queries above (GPUs,
/// processes), as NvidiaSmiProbe::read() makes it: a GPU query that did not
/// start, timed out or failed is CPU mode with a reason; a failed process
/// query leaves processes_known false with a warning. Shared with
/// GpuMonitor's one-shot fallback, which runs the queries itself.
ProbeResult result_from_runs(const platform::CaptureResult& gpus, const platform::CaptureResult& procs,
                             const std::string& program, std::chrono::milliseconds timeout);

/// What one run of the plain `nvidia-smi` table (no arguments) says about
/// the types of `reading`'s processes (gpu/process_types.h). A run that
/// failed, or a table that does not parse, is an error with one line that
/// says why; its processes then stay untyped.
Result<ProcessTypes> types_from_run(const platform::CaptureResult& table, const GpuSnapshot& reading,
                                    const std::string& program, std::chrono::milliseconds timeout);

/// The reading's warning when a run of the table failed: why, and that the
/// desktop's apps count as occupants for now.
std::string untyped_warning(const Error& why);

/// The probe the environment asks for: LLAMACTL_GPU_FIXTURE, else
/// LLAMACTL_NVIDIA_SMI, else platform::default_nvidia_smi().
std::unique_ptr<GpuProbe> make_probe(std::chrono::milliseconds timeout);

}  // namespace llamactl::gpu
