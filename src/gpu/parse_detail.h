#pragma once
// Helpers shared by the CSV and table parsers (not part of the public API).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/snapshot.h"

namespace llamactl::gpu {

struct LostGpu {
  std::optional<int> index;  // newer drivers print "GPU0: 0000:..."
  std::string bus_id;
  std::string reason;  // "GPU is lost", "Unknown Error"
};

/// "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot ..."
std::optional<LostGpu> parse_lost_gpu_line(std::string_view line);

/// Adds lost GPUs as readings with an error and no values. A lost GPU
/// without an index takes the lowest index that no reported GPU has.
void add_lost_gpus(GpuSnapshot& snap, const std::vector<LostGpu>& lost);

/// Keeps the first reading of each index (warns about repeats) and sorts by index.
void dedupe_gpus(GpuSnapshot& snap);

}  // namespace llamactl::gpu
