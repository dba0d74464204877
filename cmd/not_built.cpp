// serve and watch: their flags are declared (so --help documents them) but
// the commands are not built yet and say so with their own exit code.

#include "commands.h"

namespace llamactl::cmd {

CLI::App* setup_serve(CLI::App& app, NotBuiltOptions& o) {
  auto* sub = app.add_subcommand("serve", "Ollama/OpenAI routing HTTP listener (not built yet)");
  sub->add_option("--listen", o.listen, "HOST:PORT (default 127.0.0.1:11434, or OLLAMA_HOST)");
  sub->add_option("--api-key", o.api_key, "Require this Bearer key on every route");
  sub->add_option("--keep-alive", o.keep_alive, "Idle time before an instance is unloaded (default 5m)");
  sub->add_flag("--unload-on-exit", o.unload_on_exit, "Unload serve's instances when it stops");
  return sub;
}

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
