#pragma once
// Human output. Rendering takes values and returns text; it never reads
// GPUs, files or the clock itself.

#include <string>

#include "gpu/classify.h"
#include "runtime/runtime.h"
#include "ui/terminal.h"

namespace llamactl::ui {

/// "Total GPUs: N" (or "CPU Mode (No GPU Detected)") and one block per GPU.
std::string render_gpus(const gpu::GpuView& view, const Terminal& term);

/// The GPU summary and the instance table of `status`.
std::string render_status(const runtime::View& view, int64_t now_ms, const Terminal& term);

/// One instance after `load`: model, GPUs, URL, pid, memory.
std::string render_loaded(const runtime::LoadOutcome& out, const Terminal& term);

std::string render_unloaded(const runtime::UnloadOutcome& out, const Terminal& term);

/// "5120 / 24576 MiB (21%)", "n/a" when unknown.
std::string memory_text(std::optional<int64_t> used, std::optional<int64_t> total);

}  // namespace llamactl::ui
