#pragma once
// One file per subcommand: an options struct, setup_<name> that declares
// its flags on CLI11, and run_<name> that returns the exit code and can be
// called without CLI11.

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "context.h"

namespace llamactl::cmd {

struct GpusOptions {
  std::optional<int64_t> threshold;
  std::optional<std::string> gpus;  // the GPUs we were given (gpu/visible.h)
  bool strict = false;
};
CLI::App* setup_gpus(CLI::App& app, GpusOptions& o);
int run_gpus(const GpusOptions& o, Context& ctx);

struct LoadOptions {
  std::string model;
  std::optional<std::string> gpu;
  std::optional<int> port;
  double timeout_s = 600;
  bool force = false;
  std::optional<std::string> keep_alive;
  std::optional<int64_t> threshold;
  std::optional<std::string> gpus;      // the GPUs we were given (gpu/visible.h)
  std::vector<std::string> extra_args;  // after "--"
};
CLI::App* setup_load(CLI::App& app, LoadOptions& o);
int run_load(const LoadOptions& o, Context& ctx);

struct UnloadOptions {
  std::optional<std::string> model;
  std::optional<std::string> gpu;
  bool all = false;
  double timeout_s = 10;
};
CLI::App* setup_unload(CLI::App& app, UnloadOptions& o);
int run_unload(const UnloadOptions& o, Context& ctx);

struct StatusOptions {
  bool check = false;
  std::optional<int64_t> threshold;
};
CLI::App* setup_status(CLI::App& app, StatusOptions& o);
int run_status(const StatusOptions& o, Context& ctx);

struct ServeOptions {
  std::string listen, api_key;
  std::optional<std::string> keep_alive;
  bool unload_on_exit = false;
  std::string max_body = "64MiB";
  std::vector<std::string> allow_hosts;
  double load_timeout_s = 600;
  double grace_s = 10;
  std::optional<std::string> queue_timeout;  // else the config's queue_timeout
  std::optional<int64_t> max_queue;          // else the config's max_queue
  bool watch_config = false;                 // reload the config when its file changes (as on SIGHUP)
  std::optional<std::string> gpus;           // the GPUs we were given (gpu/visible.h)
};
CLI::App* setup_serve(CLI::App& app, ServeOptions& o);
int run_serve(const ServeOptions& o, Context& ctx);

CLI::App* setup_mcp(CLI::App& app);
int run_mcp(Context& ctx);

struct WatchOptions {
  bool once = false;
  std::string interval = "2s";
};
CLI::App* setup_watch(CLI::App& app, WatchOptions& o);
int run_watch(const WatchOptions& o, Context& ctx);

struct CompleteOptions {
  std::string what;  // models, loaded, gpus
};
CLI::App* setup_complete(CLI::App& app, CompleteOptions& o);
int run_complete(const CompleteOptions& o, Context& ctx);

CLI::App* setup_man(CLI::App& app);
/// The manual page llamactl(1), roff, from `app`'s commands and options (what --help shows).
std::string man_page(const CLI::App& app);
int run_man(const CLI::App& app);

/// The message for a command line CLI11 rejected ("llamactl: error: unknown
/// command 'lod'; did you mean 'load'?" and where to find usage), from what
/// `app` could not place after the failed parse.
std::string usage_error(const CLI::App& app, const CLI::ParseError& e);

}  // namespace llamactl::cmd
