#include <cstdio>

#include "commands.h"
#include "platform/platform.h"
#include "ui/json.h"
#include "ui/render.h"
#include "util/duration.h"
#include "util/log.h"

namespace llamactl::cmd {

CLI::App* setup_load(CLI::App& app, LoadOptions& o) {
  auto* sub = app.add_subcommand("load", "Check, place and start a llama-server; wait until it is healthy");
  sub->add_option("model", o.model, "Model name or alias from the config, or a path to a .gguf file")->required();
  sub->add_option("--gpu", o.gpu, "0, 1, 0,1, both, auto (most free memory) or cpu");
  sub->add_option("--port", o.port, "Port to use (default: [ports] map, else base_port + GPU index)")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--timeout", o.timeout_s, "Seconds to wait for /health (default 600)")->check(CLI::PositiveNumber);
  sub->add_flag("--force", o.force,
                "Load even when the memory estimate says it does not fit, or the configured context is above the "
                "model's trained one");
  sub->add_option("--keep-alive", o.keep_alive, "Idle time after which serve may unload it (default: never)");
  sub->add_option("--threshold", o.threshold, "MiB above which a GPU counts as in use")->check(CLI::NonNegativeNumber);
  sub->add_option(
      "--gpus", o.gpus,
      "Only these GPUs may be used: indices (nvidia-smi's) or GPU-... UUIDs, comma-separated; 'all' or 'none'. "
      "Default: the config's gpus, else CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES");
  sub->footer("Arguments after '--' go to llama-server: llamactl load llama-7b -- --flash-attn on");
  return sub;
}

int run_load(const LoadOptions& o, Context& ctx) {
  ctx.gpus_flag = o.gpus;
  auto rt = ctx.runtime(o.threshold);
  if (!rt) return fail(ctx, rt.error());
  runtime::LoadRequest req;
  req.model = o.model;
  req.gpu = o.gpu;
  req.port = o.port;
  req.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  req.force = o.force;
  req.extra_args = o.extra_args;
  if (o.keep_alive) {
    auto ka = parse_duration_ms(*o.keep_alive);
    if (!ka) return fail(ctx, make_error(ErrorKind::usage, "--keep-alive: " + ka.error().message));
    req.keep_alive_ms = *ka;
  }
  const bool show_progress = platform::stderr_is_tty() && !ctx.global.quiet && !ctx.global.json;
  bool progressed = false;
  double last_drawn = -1;
  if (show_progress) {
    req.progress = [&](const std::string& model, double s) {
      if (s - last_drawn < 0.1) return;  // ~10 redraws a second, not one per health probe
      last_drawn = s;
      static constexpr const char* kSpin[] = {"|", "/", "-", "\\"};
      std::fprintf(stderr, "\r%s loading %s ... %.1fs ", kSpin[static_cast<int>(s * 10) % 4], model.c_str(), s);
      std::fflush(stderr);
      progressed = true;
    };
  }
  auto out = (*rt)->load(req);
  if (progressed) std::fprintf(stderr, "\r\033[K");
  if (!out) return fail(ctx, out.error());
  for (const auto& n : out->notes) log::warn("{}", n);
  print(ctx.global.json ? ui::json_text(ui::load_json(*out)) + "\n" : ui::render_loaded(*out, ctx.term));
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
