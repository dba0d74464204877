#pragma once
// The GPUs we were given: `--gpus`, config `gpus`, or an inherited
// CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES (as Slurm, Kubernetes'
// device plugin and Docker set them) restrict placement to some GPUs. Pure:
// parsing a list and mapping it onto nvidia-smi's readings; reading the
// environment is the caller's job.
//
// Entries are indices or "GPU-..." UUIDs (or a unique prefix of one, as CUDA
// accepts). UUIDs are authoritative: nvidia-smi numbers GPUs in PCI bus
// order, CUDA's default order may differ. A plain index is taken as
// nvidia-smi's index.

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/snapshot.h"
#include "util/result.h"

namespace llamactl::gpu {

struct GpuSelector {
  std::optional<int> index;  // an index, or
  std::string uuid;          // "GPU-..." (full or a prefix), as given
  std::string text;          // the entry as written, for messages
};

/// A restriction to some GPUs. No entries: no GPU at all (CPU only).
struct Restriction {
  std::string source;  // "--gpus", "config gpus (c.toml:3)", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"
  std::string text;    // the list as given
  bool from_env = false;
  std::vector<GpuSelector> entries;
  /// "CUDA_VISIBLE_DEVICES=GPU-…" / "--gpus 0,1": where it came from, for messages.
  std::string describe() const;
};

enum class RestrictionSource { flag, config, cuda_env, nvidia_env };

/// Parses a comma-separated list from `source`. nullopt: no restriction
/// ("all"). "none", "void", "NoDevFiles" (Slurm) and, from the environment,
/// the empty string mean no GPU. In CUDA_VISIBLE_DEVICES a negative index
/// ends the list, as CUDA reads it ("-1" hides every GPU). Anything else
/// that is neither an index nor a GPU-... UUID is an error (kind usage for
/// the flag, config for the config, config for the environment too: it is
/// the setting llamactl runs under) naming the entry and where it came from.
Result<std::optional<Restriction>> parse_restriction(std::string_view text, RestrictionSource source,
                                                     const std::string& where = {});

/// The restriction that applies, by precedence: `--gpus` > config `gpus` >
/// CUDA_VISIBLE_DEVICES > NVIDIA_VISIBLE_DEVICES (each nullopt when not
/// given). `config_where` names the config file and line for messages.
Result<std::optional<Restriction>> choose_restriction(const std::optional<std::string>& flag,
                                                      const std::optional<std::vector<std::string>>& config,
                                                      const std::string& config_where,
                                                      const std::optional<std::string>& cuda_env,
                                                      const std::optional<std::string>& nvidia_env);

/// nvidia-smi indices of the GPUs the restriction names in `gpus` (the
/// readings). An entry that names no listed GPU, or a UUID prefix that fits
/// several, is an error (kind gpu_unavailable) saying which entry, from
/// where, and what nvidia-smi lists. One exception, for the environment only:
/// a list of indices as long as nvidia-smi's list, with some index it does not
/// list, was renumbered by a container runtime or cgroup that shows only the
/// given GPUs (Docker `--gpus '"device=2,3"'` shows them as 0 and 1): then
/// every listed GPU is ours.
Result<std::set<int>> resolve(const Restriction& r, const std::vector<GpuReading>& gpus);

}  // namespace llamactl::gpu
