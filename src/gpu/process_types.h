#pragma once
// Process types ("C", "G", "C+G") for the CSV readings, which have none.
//
// On a Windows desktop GPU (WDDM) compute-apps lists every app that draws on
// the GPU (Edge, Windows Terminal, 1Password) next to the CUDA jobs, and no
// per-process memory, so classify.h judges such a GPU by its process list.
// Only the plain `nvidia-smi` table says which is which: a CUDA job is "C",
// an app that draws is "G" or "C+G". Both probes run the table when a WDDM
// GPU has a process whose type they do not know (never on Linux, where
// memory decides), and copy the types onto the CSV's processes by GPU and
// pid: one process can be C on one GPU and G on another. The table's names
// are cut on the left ("...t\Edge\Application\msedge.exe"): a process whose
// CSV name does not end with the table's is another one (the pid was
// reused) and gets no type; neither does one without a readable name.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "gpu/snapshot.h"

namespace llamactl::gpu {

/// What one run of the table said: each listed (GPU, pid)'s type and name
/// as the table shows it, and every (GPU, pid) that was on a WDDM GPU at the
/// time (so one the table did not list is not asked about again).
struct ProcessTypes {
  using Key = std::pair<int, int64_t>;  // GPU index, pid
  struct Entry {
    std::string type;
    std::string name;
  };
  std::map<Key, Entry> by_process;
  std::set<Key> asked;
};

/// Whether the GPU runs under WDDM, where the process list decides.
bool is_wddm(const GpuReading& r);

/// The types a parsed table gives; `asked`: the processes of `reading` that
/// sit on a WDDM GPU (the ones the run was for).
ProcessTypes types_from_table(const GpuSnapshot& table, const GpuSnapshot& reading);

/// True when a process on a WDDM GPU of `s` has no type, has a readable
/// name, and `known` neither lists it under that name nor asked about it:
/// a run of the table would tell more. A process without a name is never
/// typed (it counts as an occupant) and never asks for a run.
bool wants_types(const GpuSnapshot& s, const ProcessTypes& known);

/// True when `s` has a process on a WDDM GPU (what a periodic run of the
/// table is for).
bool has_wddm_process(const GpuSnapshot& s);

/// Copies types from `known` onto the untyped processes of `s` whose GPU,
/// pid and name match. Processes it cannot match keep an empty type
/// (classify counts them as occupants).
void apply_types(GpuSnapshot& s, const ProcessTypes& known);

/// A graphics app: type "G" or "C+G".
bool draws(const GpuProcess& p);

}  // namespace llamactl::gpu
