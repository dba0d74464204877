// watch: its flags are declared (so --help documents them) but
// the command is not built yet and says so with its own exit code.

#include "commands.h"

namespace llamactl::cmd {

CLI::App* setup_watch(CLI::App& app, NotBuiltOptions& o) {
  auto* sub = app.add_subcommand("watch", "Live terminal dashboard (not built yet)");
  sub->add_option("--interval", o.interval_s, "Seconds between refreshes (default 2)");
  sub->add_flag("--once", o.once, "Print one frame and exit");
  return sub;
}

int run_not_built(const std::string& name, Context& ctx) {
  return fail(ctx,
              make_error(ErrorKind::not_implemented, "'" + name + "' is not built yet in this version of llamactl"));
}

}  // namespace llamactl::cmd
