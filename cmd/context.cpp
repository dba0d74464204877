#include "context.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "gpu/visible.h"
#include "platform/platform.h"
#include "ui/json.h"
#include "util/log.h"
#include "util/strings.h"

namespace llamactl::cmd {

Result<const config::Config*> Context::config() {
  if (!config_) {
    auto c = config::load(global.config);
    if (!c) return c.error();
    for (const auto& w : c->warnings) log::warn("{}", w);
    config_ = std::move(*c);
  }
  return &*config_;
}

gpu::GpuProbe& Context::probe() {
  if (!probe_) probe_ = gpu::make_probe(std::chrono::milliseconds(static_cast<int64_t>(global.smi_timeout_s * 1000)));
  return *probe_;
}

Result<gpu::ClassifyOptions> Context::classify_options(std::optional<int64_t> threshold_flag) {
  auto cfg = config();
  if (!cfg) return cfg.error();
  return classify_options_for(**cfg, threshold_flag);
}

Result<gpu::ClassifyOptions> Context::classify_options_for(const config::Config& cfg,
                                                           std::optional<int64_t> threshold_flag) const {
  auto opts = runtime::classify_options(cfg, threshold_flag);
  auto given = gpu::choose_restriction(gpus_flag, cfg.gpus, cfg.gpus_where, platform::env("CUDA_VISIBLE_DEVICES"),
                                       platform::env("NVIDIA_VISIBLE_DEVICES"));
  if (!given) return given.error();
  opts.restriction = *given;
  if (opts.restriction) log::debug("placement restricted to {}", opts.restriction->describe());
  return opts;
}

Result<runtime::Runtime*> Context::runtime(std::optional<int64_t> threshold_flag) {
  if (!runtime_) {
    auto cfg = config();
    if (!cfg) return cfg.error();
    auto opts = classify_options(threshold_flag);
    if (!opts) return opts.error();
    ops_ = runtime::real_process_ops();
    health_ = runtime::real_health_probe();
    runtime_ = std::make_unique<runtime::Runtime>(**cfg, state::StateDir(state::resolve_dir(global.state_dir)), probe(),
                                                  *ops_, *health_, std::move(*opts));
  }
  return runtime_.get();
}

int fail(const Context& ctx, const Error& e) {
  const int rc = code(exit_for(e.kind));
  // A message may name other users' processes: no control character reaches the terminal.
  std::fprintf(stderr, "llamactl: error: %s\n", printable(e.message, true).c_str());
  if (ctx.global.json) print(ui::json_text(nlohmann::json{{"error", e.message}, {"exit_code", rc}}, -1) + "\n");
  return rc;
}

void print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void mark_reaper(runtime::View& view, const state::StateDir& dir) {
  bool runs = false;
  if (const auto text = platform::read_file(dir.serve_info_path())) {
    const auto j = parse_json_bounded<nlohmann::json>(*text);
    if (j.is_object() && j.contains("pid") && j["pid"].is_number_integer())
      runs = platform::process_alive(j["pid"].get<int64_t>(), std::nullopt);
  }
  for (auto& i : view.instances) i.no_reaper = !runs;
}

}  // namespace llamactl::cmd
