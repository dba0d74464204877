#include "context.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "ui/json.h"
#include "util/log.h"

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

Result<runtime::Runtime*> Context::runtime(std::optional<int64_t> threshold_flag) {
  if (!runtime_) {
    auto cfg = config();
    if (!cfg) return cfg.error();
    ops_ = runtime::real_process_ops();
    health_ = runtime::real_health_probe();
    runtime_ = std::make_unique<runtime::Runtime>(**cfg, state::StateDir(state::resolve_dir(global.state_dir)), probe(),
                                                  *ops_, *health_, runtime::classify_options(**cfg, threshold_flag));
  }
  return runtime_.get();
}

int fail(const Context& ctx, const Error& e) {
  const int rc = code(exit_for(e.kind));
  std::fprintf(stderr, "llamactl: error: %s\n", e.message.c_str());
  if (ctx.global.json) print(ui::json_text(nlohmann::json{{"error", e.message}, {"exit_code", rc}}, -1) + "\n");
  return rc;
}

void print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace llamactl::cmd
