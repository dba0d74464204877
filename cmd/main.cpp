// llamactl: builds the CLI11 app and dispatches to one run_<name> per
// subcommand. Everything else lives in llamactl_core.

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "platform/platform.h"
#include "util/log.h"

using namespace llamactl;

namespace {

int run(int argc, char** argv) {
  platform::install_signal_handlers();

  // Everything after the first "--" goes to llama-server untouched.
  std::vector<std::string> args(argv, argv + argc), extra;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") {
      extra.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      args.resize(i);
      break;
    }
  }

  CLI::App app{"llamactl: puts llama-server instances on the right NVIDIA GPUs, tracks them, and frees GPUs.",
               "llamactl"};
  app.set_version_flag("--version", "llamactl " LLAMACTL_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags work after the subcommand too
  app.footer(
      "Exit codes: 0 ok, 2 usage, 3 config, 4 GPU unavailable, 5 model not found, 6 start failed,\n"
      "7 timeout, 8 state/lock, 9 not built, 10 no GPU (--strict), 11 insufficient memory,\n"
      "12 port in use, 13 unhealthy (status --check), 130 interrupted. See README.");

  cmd::GlobalOptions g;
  app.add_flag("--json", g.json, "Machine-readable JSON on stdout");
  app.add_option("--config", g.config, "Config file (default: " + platform::config_path_help() + ")");
  app.add_option("--state-dir", g.state_dir, "State dir (default: " + platform::state_dir_help() + ")");
  app.add_flag("-v,--verbose", g.verbose, "More diagnostics on stderr (repeat for debug)");
  app.add_flag("-q,--quiet", g.quiet, "Only errors on stderr");
  app.add_option("--smi-timeout", g.smi_timeout_s, "Seconds to wait for nvidia-smi (default 5)")
      ->check(CLI::PositiveNumber);

  cmd::GpusOptions gpus_o;
  cmd::LoadOptions load_o;
  cmd::UnloadOptions unload_o;
  cmd::StatusOptions status_o;
  cmd::ServeOptions serve_o;
  cmd::WatchOptions watch_o;
  CLI::App* gpus = cmd::setup_gpus(app, gpus_o);
  CLI::App* load = cmd::setup_load(app, load_o);
  CLI::App* unload = cmd::setup_unload(app, unload_o);
  CLI::App* status = cmd::setup_status(app, status_o);
  CLI::App* serve = cmd::setup_serve(app, serve_o);
  CLI::App* watch = cmd::setup_watch(app, watch_o);
  CLI::App* mcp = cmd::setup_mcp(app);
  cmd::CompleteOptions complete_o;
  CLI::App* complete = cmd::setup_complete(app, complete_o);
  CLI::App* man = cmd::setup_man(app);

  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 uses 100+ codes for parse errors; ours is 2 for every usage error.
    std::fputs(cmd::usage_error(app, e).c_str(), stderr);
    return code(Exit::usage);
  }
  if (!extra.empty() && !load->parsed()) {
    std::fprintf(stderr, "llamactl: error: arguments after '--' are only for 'load'\n");
    return code(Exit::usage);
  }
  if (man->parsed()) return cmd::run_man(app);
  load_o.extra_args = extra;
  log::init(g.quiet ? -1 : g.verbose);

  cmd::Context ctx(g);
  int rc = 0;
  try {
    if (gpus->parsed())
      rc = cmd::run_gpus(gpus_o, ctx);
    else if (load->parsed())
      rc = cmd::run_load(load_o, ctx);
    else if (unload->parsed())
      rc = cmd::run_unload(unload_o, ctx);
    else if (status->parsed())
      rc = cmd::run_status(status_o, ctx);
    else if (serve->parsed())
      rc = cmd::run_serve(serve_o, ctx);
    else if (mcp->parsed())
      rc = cmd::run_mcp(ctx);
    else if (watch->parsed())
      rc = cmd::run_watch(watch_o, ctx);
    else if (complete->parsed())
      rc = cmd::run_complete(complete_o, ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llamactl: error: %s\n", e.what());
    return code(Exit::failure);
  }
  if (platform::interrupted() && rc != 0) return code(Exit::interrupted);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  // The one place that turns an escaped exception into a message and an exit code.
  try {
    if (const auto helper = llamactl::platform::run_helper(argc, argv)) return *helper;
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llamactl: error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "llamactl: error: unexpected failure\n");
  }
  return code(Exit::failure);
}
