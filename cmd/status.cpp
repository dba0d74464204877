#include "commands.h"
#include "ui/json.h"
#include "ui/render.h"
#include "util/log.h"
#include "util/time.h"

namespace llamactl::cmd {

CLI::App* setup_status(CLI::App& app, StatusOptions& o) {
  auto* sub = app.add_subcommand("status", "Reconcile state, processes and GPU readings; show every instance");
  sub->add_flag("--check", o.check, "Exit 13 when any instance is dead or unhealthy (for cron)");
  sub->add_option("--threshold", o.threshold, "MiB above which a GPU counts as in use")->check(CLI::NonNegativeNumber);
  return sub;
}

int run_status(const StatusOptions& o, Context& ctx) {
  auto rt = ctx.runtime(o.threshold);
  if (!rt) return fail(ctx, rt.error());
  auto view = (*rt)->collect(true);
  if (!view) return fail(ctx, view.error());
  mark_reaper(*view, (*rt)->state_dir());
  if (view->gpus.cpu_mode && !view->gpus.cpu_reason.empty()) log::info("no GPU reading: {}", view->gpus.cpu_reason);
  for (const auto& w : view->gpus.warnings) log::warn("{}", w);
  for (const auto& n : view->notices) log::warn("{}", n);
  print(ctx.global.json ? ui::json_text(ui::status_json(*view)) + "\n" : ui::render_status(*view, now_ms(), ctx.term));
  if (ctx.global.verbose > 0 && !ctx.global.json)
    for (const auto& i : view->instances)
      if (i.state == "dead")
        print("\n'" + i.rec.model + "' died" +
              (i.rec.died_at_ms ? " at " + iso8601(*i.rec.died_at_ms) : std::string()) + "; last lines of " +
              i.rec.log + ":\n" + runtime::log_tail(i.rec.log, 10));
  if (o.check) {
    for (const auto& i : view->instances)
      if (i.state == "dead" || i.state == "unhealthy") return code(Exit::unhealthy);
  }
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
