#pragma once
// What every subcommand gets: the global flags and, built on demand, the
// config, the GPU probe and the runtime with its real OS effects.

#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "gpu/probe.h"
#include "runtime/runtime.h"
#include "ui/terminal.h"
#include "util/exit.h"

namespace llamactl::cmd {

struct GlobalOptions {
  bool json = false;
  std::string config;
  std::string state_dir;
  int verbose = 0;
  bool quiet = false;
  double smi_timeout_s = 5.0;
};

class Context {
 public:
  explicit Context(GlobalOptions g) : global(std::move(g)), term(ui::Terminal::for_stdout()) {}

  GlobalOptions global;
  ui::Terminal term;
  /// `--gpus` of serve and load (before runtime()): the GPUs we were given.
  std::optional<std::string> gpus_flag;

  /// Loads the config once; prints its warnings. Error kind config.
  Result<const config::Config*> config();
  gpu::GpuProbe& probe();
  /// Use `p` for every GPU reading (watch: the GpuMonitor stream); before runtime().
  void set_probe(std::unique_ptr<gpu::GpuProbe> p) { probe_ = std::move(p); }
  /// Thresholds and ignore list from the config, and the GPUs we were given:
  /// --gpus, else config `gpus`, else CUDA_VISIBLE_DEVICES, else
  /// NVIDIA_VISIBLE_DEVICES. Error (usage/config) when that list is garbage.
  Result<gpu::ClassifyOptions> classify_options(std::optional<int64_t> threshold_flag);
  /// The same for `cfg` (serve's config reload): --gpus, then the config's
  /// gpus, then the environment.
  Result<gpu::ClassifyOptions> classify_options_for(const config::Config& cfg,
                                                    std::optional<int64_t> threshold_flag) const;
  /// The runtime over the state dir; error when the config is invalid.
  Result<runtime::Runtime*> runtime(std::optional<int64_t> threshold_flag);

 private:
  std::optional<config::Config> config_;
  std::unique_ptr<gpu::GpuProbe> probe_;
  std::unique_ptr<runtime::ProcessOps> ops_;
  std::unique_ptr<runtime::HealthProbe> health_;
  std::unique_ptr<runtime::Runtime> runtime_;
};

/// Prints the error ("llamactl: error: ..."; also a JSON object on stdout
/// under --json) and returns its exit code.
int fail(const Context& ctx, const Error& e);
/// Writes text to stdout in one go.
void print(const std::string& text);
/// Whether a `llamactl serve` runs on `dir` (its serve.json names a live
/// pid); when none does, the instances of `view` are marked: nothing reaps
/// them at their expiry.
void mark_reaper(runtime::View& view, const state::StateDir& dir);

}  // namespace llamactl::cmd
