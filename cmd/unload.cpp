#include "commands.h"
#include "ui/json.h"
#include "ui/render.h"

namespace llamactl::cmd {

CLI::App* setup_unload(CLI::App& app, UnloadOptions& o) {
  auto* sub = app.add_subcommand("unload", "Stop instances gracefully and free their GPUs");
  sub->add_option("model", o.model, "Model name or alias to unload");
  sub->add_option("--gpu", o.gpu, "Unload whatever of ours runs on these GPUs (0, 1, 0,1, both, cpu)");
  sub->add_flag("--all", o.all, "Unload every instance of this state dir");
  sub->add_option("--timeout", o.timeout_s,
                  "Seconds to wait for the graceful stop (SIGTERM; Ctrl-C on Windows) before the kill (default 10)")
      ->check(CLI::NonNegativeNumber);
  return sub;
}

int run_unload(const UnloadOptions& o, Context& ctx) {
  const int given = (o.model ? 1 : 0) + (o.gpu ? 1 : 0) + (o.all ? 1 : 0);
  if (given != 1)
    return fail(ctx, make_error(ErrorKind::usage, "unload needs exactly one of MODEL, --gpu SPEC or --all"));
  auto rt = ctx.runtime(std::nullopt);
  if (!rt) return fail(ctx, rt.error());
  runtime::UnloadRequest req;
  req.model = o.model;
  req.gpu = o.gpu;
  req.all = o.all;
  req.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  auto out = (*rt)->unload(req);
  if (!out) return fail(ctx, out.error());
  print(ctx.global.json ? ui::json_text(ui::unload_json(*out)) + "\n" : ui::render_unloaded(*out, ctx.term));
  for (const auto& s : out->stopped)
    if (s.still_running) return code(Exit::timeout);
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
