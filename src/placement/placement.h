#pragma once
// Pure placement decisions: which GPUs a load may use, which port, and the
// llama-server argv and environment. No I/O: everything comes in as values.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "gguf/gguf.h"
#include "gpu/classify.h"
#include "state/state.h"
#include "util/result.h"

namespace llamactl::placement {

struct GpuSpec {
  enum class Kind { auto_, cpu, list, all } kind = Kind::auto_;
  std::vector<int> indices;  // for list
  std::string text;
};

/// "0", "1", "0,1", "both"/"all", "auto", "cpu". Error kind usage otherwise.
Result<GpuSpec> parse_gpu_spec(const std::string& text);

/// Measured on an H100: a llama-server's CUDA context takes ~520 MiB on every
/// GPU it can see, and compute buffers ~160 MiB more for a small model.
inline constexpr int64_t kCudaContextMib = 520;
inline constexpr int64_t kComputeBufferMib = 160;

struct Estimate {
  int64_t weights_mib = 0;
  int64_t kv_cache_mib = 0;
  int64_t overhead_per_gpu_mib = kCudaContextMib + kComputeBufferMib;
  int64_t context = 0;
  bool from_header = false;  // false: file size only (header unreadable)
  /// MiB needed on each of n GPUs with an even split.
  int64_t per_gpu_mib(size_t n) const;
  int64_t total_mib(size_t n) const { return per_gpu_mib(n) * static_cast<int64_t>(n == 0 ? 1 : n); }
  /// MiB of RAM on the CPU: no CUDA context there, but the compute buffers still.
  int64_t ram_mib() const { return weights_mib + kv_cache_mib + kComputeBufferMib; }
};

Estimate estimate(uint64_t file_bytes, const gguf::Info* info, int64_t context);

struct Choice {
  std::vector<int> gpus;  // empty: CPU
  std::vector<std::string> notes;
};

/// Chooses the GPUs for a load, or says why not (kinds gpu_unavailable,
/// insufficient_memory). `ours` are our live instances (any model). With
/// `force`, the memory check is skipped but occupancy is still refused.
Result<Choice> choose_gpus(const GpuSpec& spec, const gpu::GpuView& view, const std::vector<state::Instance>& ours,
                           const Estimate& need, bool force);

/// Port to try first: [ports] gpuN / both / cpu, else base_port + first GPU
/// index (CPU: base_port + 100).
int preferred_port(const config::Config& cfg, const std::vector<int>& gpus, size_t total_gpus);

struct Launch {
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
};

/// llama-server argv and environment for a placement (SPEC section 3,
/// isolation): --host/--port/-c always explicit; CUDA_VISIBLE_DEVICES for
/// visible-devices placement, --tensor-split for several GPUs or for the
/// original tensor-split style. CUDA_VISIBLE_DEVICES is always set, so an
/// inherited one (the GPUs we were given) never renumbers the child's GPUs.
/// `visible`: the GPUs a tensor-split child sees (nvidia-smi indices,
/// sorted; the GPUs we were given), the split runs over them; empty: all
/// `total_gpus`.
Launch launch_for(const config::Config& cfg, const std::string& program, const std::string& model_name,
                  const std::string& model_path, const std::vector<int>& gpus, size_t total_gpus, int port,
                  int64_t context, const std::vector<std::string>& model_args,
                  const std::vector<std::string>& extra_args, const std::vector<int>& visible = {});

/// "0,1" / "cpu" for messages and JSON.
std::string gpus_text(const std::vector<int>& gpus);
/// Where an instance runs, for sentences: "GPU 0", "GPU 0,1", "the CPU" (no GPUs).
std::string where_text(const std::vector<int>& gpus);

}  // namespace llamactl::placement
