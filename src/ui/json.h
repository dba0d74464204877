#pragma once
// The --json documents. Field names are part of the interface (README).

#include <nlohmann/json.hpp>

#include "gpu/classify.h"
#include "runtime/runtime.h"
#include "util/json_depth.h"

namespace llamactl::ui {

/// `gpus --json`: {"total_gpus","mode","threshold_mib","gpu_status":[...]}.
nlohmann::ordered_json gpus_json(const gpu::GpuView& view);
/// One instance object of `status --json` / `load --json`.
nlohmann::ordered_json instance_json(const runtime::InstanceView& inst);
/// `status --json`: {"gpus": ..., "instances": [...]}.
nlohmann::ordered_json status_json(const runtime::View& view);
nlohmann::ordered_json load_json(const runtime::LoadOutcome& out);
nlohmann::ordered_json unload_json(const runtime::UnloadOutcome& out);

/// A document as text, always valid UTF-8: bytes that are not (from a state
/// file, a log, a process name) become U+FFFD instead of making dump() throw.
template <class J>
std::string json_text(const J& j, int indent = 2) {
  return dump_utf8(j, indent);
}

}  // namespace llamactl::ui
