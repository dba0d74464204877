// serve: the long-running router. Reads its settings, makes sure it is the
// only serve on this state dir, then runs the HTTP server and the router's
// loop until SIGTERM/SIGINT, reloading the config on SIGHUP (and, with
// --watch-config, when its file changes), and stops cleanly.

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <optional>
#include <thread>

#include "commands.h"
#include "gpu/monitor.h"
#include "platform/platform.h"
#include "serve/http_server.h"
#include "serve/options.h"
#include "serve/router.h"
#include "util/duration.h"
#include "util/json_depth.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::cmd {

CLI::App* setup_serve(CLI::App& app, ServeOptions& o) {
  auto* sub = app.add_subcommand("serve",
                                 "Ollama/OpenAI routing HTTP listener with lazy loading and idle reaping; its web page "
                                 "of the GPUs is at http://HOST:PORT/ui (default http://127.0.0.1:11434/ui)");
  sub->add_option("--listen", o.listen, "HOST:PORT to listen on (default 127.0.0.1:11434, or OLLAMA_HOST)");
  sub->add_option("--api-key", o.api_key,
                  "Require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on every route but / and /health (or "
                  "LLAMACTL_API_KEY)");
  sub->add_option("--allow-host", o.allow_hosts,
                  "Also answer requests whose Host is NAME (or '*.DOMAIN'); repeatable, or LLAMACTL_ALLOWED_HOSTS "
                  "(comma-separated). On loopback only loopback names are answered otherwise (DNS rebinding)");
  sub->add_option("--keep-alive", o.keep_alive,
                  "Idle time before an instance serve loaded is unloaded (default 5m; negative: never)");
  sub->add_flag("--unload-on-exit", o.unload_on_exit, "Unload the instances serve loaded when it stops");
  sub->add_option("--max-body", o.max_body, "Largest request body accepted (default 64MiB)");
  sub->add_option("--load-timeout", o.load_timeout_s, "Seconds a model may take to become healthy (default 600)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--queue-timeout", o.queue_timeout,
                  "Longest a request waits for a busy model or for room on the GPUs, then 503 (default 10m, or the "
                  "config's queue_timeout; 'never': no bound)");
  sub->add_option("--max-queue", o.max_queue,
                  "Requests that may wait per model, then 503 with Retry-After (default 512, or the config's "
                  "max_queue)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  sub->add_flag("--watch-config", o.watch_config,
                "Reload the config when its file changes, as on SIGHUP: new models appear, changed ones restart "
                "once idle, removed ones unload once idle; a config with an error is refused and the old one kept");
  sub->add_option(
      "--gpus", o.gpus,
      "Only these GPUs may be used: indices (nvidia-smi's) or GPU-... UUIDs, comma-separated; 'all' or 'none'. "
      "Default: the config's gpus, else CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES");
  sub->add_option("--grace", o.grace_s, "Seconds requests in flight may take to finish on SIGTERM (default 10)")
      ->check(CLI::NonNegativeNumber);
  return sub;
}

namespace {

struct Settings {
  serve::ServerOptions server;
  serve::RouterOptions router;
};

Result<Settings> settings_of(const ServeOptions& o, const config::Config& cfg) {
  Settings s;
  if (!o.listen.empty()) {
    auto ep = serve::parse_listen(o.listen);
    if (!ep) return ep.error();
    s.server.listen = *ep;
  } else if (auto env = platform::env("OLLAMA_HOST"); env && !env->empty()) {
    auto ep = serve::parse_ollama_host(*env);
    if (!ep) return ep.error();
    s.server.listen = *ep;
  }
  s.server.api_key = !o.api_key.empty() ? o.api_key : platform::env("LLAMACTL_API_KEY").value_or("");
  auto limit = serve::parse_size(o.max_body);
  if (!limit) return make_error(ErrorKind::usage, "--max-body: " + limit.error().message);
  s.server.body_limit = *limit;
  s.server.origins = serve::allowed_origins(platform::env("OLLAMA_ORIGINS"));
  s.server.allowed_hosts = o.allow_hosts;
  if (const auto env = platform::env("LLAMACTL_ALLOWED_HOSTS"))
    for (const auto& h : split(*env, ','))
      if (!trim(h).empty()) s.server.allowed_hosts.emplace_back(trim(h));
  // I/O threads: one per core up to 4 (LLAMACTL_SERVE_THREADS overrides, for benchmarks).
  s.server.threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1U, 4U));
  if (const auto t = platform::env("LLAMACTL_SERVE_THREADS"); t && std::atoi(t->c_str()) > 0)
    s.server.threads = std::min(std::atoi(t->c_str()), 64);
  // Client read, idle and write timeouts (default 60 s); tests shorten them.
  if (const auto t = platform::env("LLAMACTL_SERVE_IO_TIMEOUT_MS"); t && std::atoi(t->c_str()) > 0)
    s.server.read_timeout = s.server.idle_timeout = s.server.write_timeout =
        std::chrono::milliseconds(std::atoi(t->c_str()));
  s.router.keep_alive_flag = o.keep_alive;
  s.router.keep_alive_env = platform::env("OLLAMA_KEEP_ALIVE");
  // Validate the keep-alive sources now: a typo is a usage error at start, not a failed load later.
  if (auto ka = serve::keep_alive_for(cfg, "", s.router.keep_alive_flag, s.router.keep_alive_env); !ka)
    return ka.error();
  s.router.load_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.load_timeout_s * 1000));
  int64_t queue_timeout = cfg.queue_timeout_ms;
  if (o.queue_timeout) {
    auto ms = parse_duration_ms(*o.queue_timeout);
    if (!ms) return make_error(ErrorKind::usage, "--queue-timeout: " + ms.error().message);
    queue_timeout = *ms;
  }
  // "never" is a bound too far to matter: a year.
  s.router.queue_timeout =
      std::chrono::milliseconds(queue_timeout < 0 ? int64_t{365} * 24 * 3600 * 1000 : queue_timeout);
  s.router.max_queue = static_cast<size_t>(o.max_queue.value_or(cfg.max_queue));
  // A waiting request's safety net: the queue and the load fail it first, and evictions take their stop timeouts.
  s.server.wait_timeout = s.router.queue_timeout + s.router.load_timeout + std::chrono::minutes(1);
  return s;
}

// What --watch-config compares: the located file (it may appear, or another
// may take precedence), its identity (an editor's rename), mtime and size.
struct ConfigStamp {
  std::string path;
  std::optional<std::pair<uint64_t, uint64_t>> identity;
  int64_t mtime_ns = -1;
  int64_t size = -1;
  bool operator==(const ConfigStamp&) const = default;
};

ConfigStamp stamp_of(const std::string& flag) {
  ConfigStamp s;
  s.path = config::locate(flag);
  if (s.path.empty()) return s;
  s.identity = platform::file_identity(s.path);
  if (const auto mtime = platform::file_mtime_ns(s.path)) s.mtime_ns = *mtime;
  std::error_code ec;
  const auto size = std::filesystem::file_size(platform::fs_path(s.path), ec);
  s.size = ec ? -1 : static_cast<int64_t>(size);
  return s;
}

std::string names_or_none(const std::vector<std::string>& names) {
  return names.empty() ? "none" : join(names, ", ");
}

// Reads the config again and hands it to the router. A config that does not
// parse, or whose settings are wrong, is refused: the one in use stays.
void reload_config(const ServeOptions& o, const Context& ctx, serve::Router& router, serve::HttpServer& server,
                   const char* why) {
  auto next = config::load(ctx.global.config);
  std::optional<Error> refused;
  if (!next)
    refused = next.error();
  else if (auto s = settings_of(o, *next); !s)
    refused = s.error();
  if (refused) {
    log::error("config reload ({}) refused, the config in use stays: {}", why, refused->message);
    return;
  }
  for (const auto& w : next->warnings) log::warn("{}", w);
  const auto before = router.config();
  if (next->max_queue != before->max_queue || next->queue_timeout_ms != before->queue_timeout_ms)
    log::warn("config reload: max_queue and queue_timeout take effect when serve restarts");
  // --gpus still wins; the config's gpus may have changed.
  auto opts = ctx.classify_options_for(*next, std::nullopt);
  if (!opts) {
    log::error("config reload ({}) refused, the config in use stays: {}", why, opts.error().message);
    return;
  }
  const std::string source = next->source.empty() ? "the defaults (no config file)" : next->source;
  const size_t count = next->models.size();
  const auto changes = router.reload(std::make_shared<const config::Config>(std::move(*next)), std::move(*opts));
  server.config_changed();
  log::info("config reloaded ({}) from {}: {} model(s); added: {}; changed: {}; removed: {}", why, source, count,
            names_or_none(changes.added), names_or_none(changes.changed), names_or_none(changes.removed));
}

// One serve per state dir: the lock is held for serve's lifetime; serve.json
// says who holds it, for the second one's message.
Result<platform::FileLock> claim_state_dir(const state::StateDir& dir) {
  if (auto s = dir.ensure(); !s) return s.error();
  auto lock = platform::FileLock::acquire(dir.serve_lock_path(), std::chrono::milliseconds(0));
  if (lock) return lock;
  // Only a lock another process holds means another serve (not a planted link, not a permission).
  if (lock.error().message.find("timed out waiting") == std::string::npos) return lock.error();
  std::string who = "another llamactl serve";
  if (auto text = platform::read_file(dir.serve_info_path())) {
    const auto j = parse_json_bounded<nlohmann::json>(*text);
    const auto field = [&](const char* key) {
      if (!j.is_object() || !j.contains(key)) return std::string("?");
      const auto& v = j[key];
      return v.is_string() ? v.get<std::string>() : v.is_number_integer() ? std::to_string(v.get<int64_t>()) : "?";
    };
    if (j.is_object())
      who += " (pid " + field("pid") + ", listening on " + field("address") + ", since " + field("started_at") + ")";
  }
  return make_error(ErrorKind::state,
                    who + " already serves state dir " + dir.dir() + "; stop it first, or use another --state-dir");
}

// The GPUs we were given, checked once at start: a list that names a GPU
// nvidia-smi does not list is an error now, not a failed load later.
Status check_given_gpus(Context& ctx) {
  auto opts = ctx.classify_options(std::nullopt);
  if (!opts) return opts.error();
  if (!opts->restriction) return ok_status();
  const auto view = gpu::classify(ctx.probe().read(), *opts, {}, nullptr);
  if (view.cpu_mode) return ok_status();
  if (!view.restriction_error.empty()) return make_error(ErrorKind::gpu_unavailable, view.restriction_error);
  std::vector<std::string> given;
  for (const auto& g : view.gpus)
    if (g.ours_to_use) given.push_back(std::to_string(g.reading.index));
  log::info("placing only on GPU {} ({})", given.empty() ? std::string("none") : join(given, ","), view.restricted_by);
  return ok_status();
}

}  // namespace

int run_serve(const ServeOptions& o, Context& ctx) {
  // From the start: a SIGHUP (systemd's ExecReload right after start, say)
  // is a reload, taken by the loop below, never the default end of serve.
  platform::catch_hangup();
  // --watch-config compares against the file as it was before serve read it:
  // a write between reading it and listening (a client may already see
  // serve ready) is seen as a change, not taken as the baseline. A write
  // before the read only costs one reload that changes nothing.
  const ConfigStamp read_stamp = o.watch_config ? stamp_of(ctx.global.config) : ConfigStamp{};
  ctx.gpus_flag = o.gpus;
  auto rt = ctx.runtime(std::nullopt);
  if (!rt) return fail(ctx, rt.error());
  if (auto s = check_given_gpus(ctx); !s) return fail(ctx, s.error());
  auto settings = settings_of(o, *(*rt)->config());
  if (!settings) return fail(ctx, settings.error());
  const auto& dir = (*rt)->state_dir();
  auto claim = claim_state_dir(dir);
  if (!claim) return fail(ctx, claim.error());

  // Before the first socket: every connection needs a descriptor.
  if (const uint64_t files = platform::raise_open_file_limit(); files > 0) log::debug("open files: up to {}", files);
  const auto smi_timeout = std::chrono::milliseconds(static_cast<int64_t>(ctx.global.smi_timeout_s * 1000));
  gpu::GpuMonitor monitor(gpu::monitor_options_from_env(std::chrono::seconds(1), smi_timeout));
  serve::Metrics metrics;
  serve::Router router(**rt, metrics, settings->router);
  // Never destroyed: once stop() has returned nothing runs in it, and the
  // process ends right after. On Windows an io_context's destructor waits for
  // every overlapped socket operation to report back, without a deadline;
  // one that never does (seen under Wine) would keep serve from exiting.
  // The static pointer keeps it reachable: LeakSanitizer does not count it.
  static serve::HttpServer* for_life = nullptr;
  for_life = new serve::HttpServer(settings->server, router, metrics, monitor);
  auto& server = *for_life;
  if (auto s = server.bind(); !s) return fail(ctx, s.error());
  const auto address = server.bound().text();
  const nlohmann::json info = {
      {"pid", platform::current_pid()}, {"address", address}, {"started_at", iso8601(now_ms())}};
  if (auto s = platform::write_file_atomic(dir.serve_info_path(), info.dump() + "\n"); !s)
    log::warn("{}", s.error().message);
  // serve.json is written before the first connection is accepted: whoever
  // sees this serve answer also finds who it is.
  if (auto s = server.start(); !s) return fail(ctx, s.error());
  if (!ctx.global.quiet) {
    print("llamactl serve: listening on http://" + address + " (state dir " + dir.dir() + "); the web page: http://" +
          address + "/ui\n");
    // Said once at start: every model it loads will run on the CPU.
    if (const auto first = monitor.read(); first.cpu_mode)
      print("llamactl serve: CPU mode (" + (first.reason.empty() ? std::string("no GPU detected") : first.reason) +
            "): models run on the CPU\n");
  }

  // The state dir removed (or replaced) under a running serve: the serve
  // lock's path no longer names the file serve holds. Claim the dir again
  // (one serve per state dir: if another serve got there first, this one
  // stops), write serve.json, and the router puts its records back.
  std::atomic<bool> lost_dir{false};
  router.set_state_guard([&]() -> bool {
    const auto held = claim->identity();
    const auto now = platform::file_identity(dir.serve_lock_path());
    if (!held || (now && *now == *held)) return false;
    log::warn("state dir {} was removed or replaced while serve ran; claiming it again", dir.dir());
    auto again = claim_state_dir(dir);
    if (!again) {
      log::error("{}; this serve stops", again.error().message);
      lost_dir = true;
      return false;
    }
    *claim = std::move(*again);
    if (auto s = platform::write_file_atomic(dir.serve_info_path(), info.dump() + "\n"); !s)
      log::warn("{}", s.error().message);
    return true;
  });

  std::thread loop([&router] { router.run(); });
  // --watch-config: a change is applied once the file has stayed the same
  // for one more look (an editor's write in several steps is read whole).
  ConfigStamp applied = read_stamp;
  std::optional<ConfigStamp> seen;
  auto next_look = std::chrono::steady_clock::now();
  uint64_t recorded = 0;
  while (!platform::interrupted() && !lost_dir) {
    platform::sleep_for(std::chrono::milliseconds(50));
    // The web page's history: each reading the monitor takes anyway.
    if (const uint64_t n = monitor.readings(); n != recorded) {
      recorded = n;
      server.record_reading(monitor.read(), now_ms(), monitor.streaming());
    }
    if (platform::take_hangup()) reload_config(o, ctx, router, server, "SIGHUP");
    if (!o.watch_config || std::chrono::steady_clock::now() < next_look) continue;
    next_look = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    const ConfigStamp now = stamp_of(ctx.global.config);
    if (now == applied) {
      seen.reset();
    } else if (seen && *seen == now) {
      applied = now;
      seen.reset();
      reload_config(o, ctx, router, server, "the file changed");
    } else {
      seen = now;
    }
  }
  // A console window being closed leaves about 5 s in all (Windows): keep
  // most of them for unloading (--unload-on-exit) and removing serve.json.
  const double grace_s = platform::console_closing() ? std::min(o.grace_s, 1.0) : o.grace_s;
  log::info("stopping: letting requests in flight finish (up to {} s)", grace_s);
  server.stop(std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000)));
  router.stop(o.unload_on_exit);
  loop.join();
  router.set_state_guard({});              // it refers to what goes out of scope first
  if (lost_dir) return code(Exit::state);  // serve.json is the other serve's now
  (void)platform::remove_file(dir.serve_info_path());
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
