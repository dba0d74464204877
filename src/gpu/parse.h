#pragma once
// Pure parsers for nvidia-smi text. They never throw and never read files;
// feed them what nvidia-smi printed (real or saved) and get a snapshot.

#include <string_view>

#include "gpu/snapshot.h"
#include "util/result.h"

namespace llamactl::gpu {

/// CSV from `--query-gpu=...` and/or `--query-compute-apps=...`, with or
/// without header and units. Headers pick columns by name; without a header
/// the columns are llamactl's own queries (see probe.h). Both outputs may be
/// concatenated in one text. "GPU is lost" lines become GPUs with an error.
/// A headed GPU table with no compute-apps part leaves processes_known false.
/// Error (kind parse) when no line could be understood.
Result<GpuSnapshot> parse_csv(std::string_view text);

/// The plain `nvidia-smi` table, drivers 390 to 610, Linux and Windows:
/// the GPU blocks and the Processes section. Error when no GPU block is found
/// and the text is not the "No running processes"-only form.
Result<GpuSnapshot> parse_table(std::string_view text);

/// Picks the table or CSV parser by looking at the text.
Result<GpuSnapshot> parse_any(std::string_view text);

/// Known nvidia-smi failure texts ("No devices were found", driver/library
/// mismatch, no driver) mapped to one short reason; empty when not one.
std::string known_failure(std::string_view text);

}  // namespace llamactl::gpu
