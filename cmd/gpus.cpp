#include "commands.h"
#include "platform/platform.h"
#include "ui/json.h"
#include "ui/render.h"
#include "util/log.h"

namespace llamactl::cmd {

CLI::App* setup_gpus(CLI::App& app, GpusOptions& o) {
  auto* sub = app.add_subcommand("gpus", "Detect GPUs with nvidia-smi and classify each one");
  sub->add_option("--threshold", o.threshold, "MiB above which a GPU counts as in use (default 30)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--gpus", o.gpus,
                  "Show as ours to use only these GPUs (as serve --gpus; default: the config's gpus, else "
                  "CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES); the others are 'not ours to use'");
  sub->add_flag("--strict", o.strict, "Exit 10 instead of falling back to CPU mode when no GPU can be read");
  return sub;
}

int run_gpus(const GpusOptions& o, Context& ctx) {
  ctx.gpus_flag = o.gpus;
  auto rt = ctx.runtime(o.threshold);
  if (!rt) return fail(ctx, rt.error());
  // Our instances decide model_loaded, so read the state like status does (no health probes).
  auto view = (*rt)->collect(false);
  if (!view) {
    if (view.error().kind != ErrorKind::state) return fail(ctx, view.error());
    // GPUs can still be shown without our state; they just cannot say "ours".
    log::warn("{}; showing GPUs without our instances", view.error().message);
    runtime::View bare;
    auto opts = ctx.classify_options(o.threshold);
    if (!opts) return fail(ctx, opts.error());
    bare.gpus = gpu::classify(ctx.probe().read(), *opts, {}, platform::process_user);
    view = std::move(bare);
  }
  const auto& gv = view->gpus;
  const bool cpu = gv.cpu_mode || gv.gpus.empty();
  // --strict refuses before anything is shown: no CPU banner, and under
  // --json the error object instead of the GPU object.
  if (o.strict && cpu)
    return fail(ctx, make_error(ErrorKind::no_gpu, "--strict: no usable GPU reading" +
                                                       (gv.cpu_reason.empty() ? "" : ": " + gv.cpu_reason)));
  // The human output says why it runs in CPU mode; say it once, not also on stderr.
  if (ctx.global.json && gv.cpu_mode && !gv.cpu_reason.empty())
    log::warn("no GPU reading: {}; CPU mode", gv.cpu_reason);
  for (const auto& w : gv.warnings) log::warn("{}", w);
  for (const auto& n : view->notices) log::warn("{}", n);
  print(ctx.global.json ? ui::json_text(ui::gpus_json(gv)) + "\n" : ui::render_gpus(gv, ctx.term));
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
