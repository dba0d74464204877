#pragma once
// Reconcile and lifecycle, shared by the CLI and `serve`: readings (state
// file, processes, nvidia-smi) -> reconcile -> View -> decisions. Side
// effects go through the small interfaces below so tests can fake them.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "gpu/classify.h"
#include "gpu/probe.h"
#include "placement/placement.h"
#include "platform/platform.h"
#include "state/state.h"

namespace llamactl::runtime {

class ProcessOps {
 public:
  virtual ~ProcessOps() = default;
  virtual Result<platform::Spawned> spawn(const platform::SpawnSpec& spec) = 0;
  virtual bool alive(int64_t pid, uint64_t start_time) = 0;
  /// Exit status of our own child once it has exited; nullopt otherwise.
  virtual std::optional<int> try_reap(int64_t pid) = 0;
  virtual bool signal_group(int64_t pgid, platform::Signal sig) = 0;
  virtual std::optional<std::string> user_of(int64_t pid) = 0;
  /// The user llamactl runs as, as user_of names users.
  virtual std::string me() { return platform::current_user(); }
  virtual bool port_available(int port) = 0;
  /// Collects every child that spawn() started and that has exited since,
  /// whoever stopped it (a `llamactl unload` from another process leaves
  /// serve's child a zombie otherwise); their statuses stay for try_reap.
  /// Returns how many were collected.
  virtual size_t reap_exited_children() { return 0; }
};

class HealthProbe {
 public:
  virtual ~HealthProbe() = default;
  /// HTTP status of GET /health on 127.0.0.1:port; 0 when nothing answered.
  virtual int health(int port, std::chrono::milliseconds timeout) = 0;
  /// total_slots from GET /props: how many requests the instance serves at
  /// once. nullopt when it does not say.
  virtual std::optional<int> slots(int /*port*/, std::chrono::milliseconds /*timeout*/) { return std::nullopt; }
};

std::unique_ptr<ProcessOps> real_process_ops();
std::unique_ptr<HealthProbe> real_health_probe();

struct InstanceView {
  state::Instance rec;
  std::string state;  // starting, running, unhealthy, dead
  bool healthy = false;
  std::optional<int64_t> memory_used_mib;
  std::optional<int64_t> memory_total_mib;
  int64_t uptime_s = 0;
  std::optional<int64_t> expires_at_ms;
};

struct View {
  gpu::GpuView gpus;
  std::vector<InstanceView> instances;
  std::vector<std::string> notices;  // newly found deaths, moved-aside state files
  size_t dead_count = 0;
};

/// Splits recorded instances into live and dead (pid gone or reused, or
/// recorded dead before). `died` holds the ones found dead in this pass,
/// already turned into dead records (state "dead", died_at_ms = now). Pure.
struct Reconciled {
  std::vector<state::Instance> live, dead, died;
};
Reconciled reconcile(const std::vector<state::Instance>& recorded,
                     const std::function<bool(const state::Instance&)>& alive, int64_t now_ms = 0);

/// total_slots from a llama-server /props body; nullopt when it is not a
/// sane positive count. Pure.
std::optional<int> total_slots(std::string_view props);

/// The reading as it would be with the instances `gone` stopped: their
/// processes dropped and their memory subtracted from their GPUs' (the
/// recorded estimate when their processes are hidden). Pure.
gpu::ProbeResult probe_without(const gpu::ProbeResult& probe, const std::vector<state::Instance>& gone);

/// Our instances as the classifier needs them.
std::vector<gpu::OurInstance> ours_of(const std::vector<state::Instance>& live);

/// Builds the view from readings. Pure apart from `user_of`. `health` maps
/// model -> HTTP status of its /health (absent: not probed).
View build_view(const gpu::ProbeResult& probe, const gpu::ClassifyOptions& opts, const Reconciled& rec,
                const std::map<std::string, int>& health, int64_t now_ms, const gpu::UserLookup& user_of);

gpu::ClassifyOptions classify_options(const config::Config& cfg, std::optional<int64_t> threshold_flag);

struct LoadRequest {
  std::string model;
  std::string loaded_by = "cli";  // recorded: serve evicts only what it loaded (or what has a keep-alive)
  std::optional<std::string> gpu;
  std::optional<int> port;
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  bool force = false;
  std::vector<std::string> extra_args;
  std::optional<int64_t> context;  // instead of the configured one (serve: Ollama's num_ctx)
  std::optional<int64_t> keep_alive_ms;
  std::function<void(const std::string& what, double seconds)> progress;  // called while waiting
  /// The record's name when it is not the model's: serve's replicas ("tiny#2").
  std::optional<std::string> instance;
  /// Refuse rather than run on the CPU (a replica is only worth a GPU of its own).
  bool gpu_only = false;
};

struct LoadOutcome {
  InstanceView instance;
  bool already_running = false;
  std::optional<int64_t> keep_alive_was;  // already running and its keep-alive changed: the old one
  placement::Estimate estimate;
  std::vector<std::string> notes;
  double ready_s = 0;  // from the start of load() until /health answered 200
};

/// A model as resolved from the config or a path.
struct ModelChoice {
  std::string name, path;
  std::optional<std::string> gpu;
  int64_t context = 4096;
  std::vector<std::string> args;
  bool embeddings = false;      // config `embeddings = true`
  bool reranking = false;       // config `reranking = true`
  std::optional<int> parallel;  // config `parallel = N`: -np N
  std::string instance;         // the record's name: `name`, or a replica's ("tiny#2")
};

struct UnloadRequest {
  std::optional<std::string> model;
  std::optional<std::string> gpu;
  bool all = false;
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
  /// Only this pid (serve's reaper: never stop a newer instance of the model
  /// that someone else started meanwhile). 0: any.
  int64_t only_pid = 0;
};

struct Stopped {
  state::Instance rec;
  bool was_dead = false;  // a dead record, cleared (nothing to stop)
  bool killed = false;    // needed SIGKILL
  bool still_running = false;
  std::optional<int64_t> freed_mib;
};

struct UnloadOutcome {
  std::vector<Stopped> stopped;
  gpu::GpuView after;
};

class Runtime {
 public:
  Runtime(config::Config cfg, state::StateDir dir, gpu::GpuProbe& probe, ProcessOps& ops, HealthProbe& health,
          gpu::ClassifyOptions opts)
      : cfg_(std::make_shared<const config::Config>(std::move(cfg))),
        dir_(std::move(dir)),
        probe_(probe),
        ops_(ops),
        health_(health),
        opts_(std::move(opts)) {}

  /// Reconciles the state (turning vanished instances into dead records)
  /// and reads GPUs and health.
  Result<View> collect(bool probe_health);
  /// The same from a reading the caller already has (serve's GPU monitor),
  /// without health probes: what serve's web page shows every second.
  Result<View> collect_with(const gpu::ProbeResult& probe);
  /// Reconciles the state file only (no GPU reading, no probes): what serve
  /// runs every few seconds and after an upstream failure. Returns the records
  /// after reconciliation; `notes` gets one line per newly found death.
  Result<state::StateFile> reconcile_state(std::vector<std::string>& notes);
  Result<LoadOutcome> load(const LoadRequest& req);
  Result<UnloadOutcome> unload(const UnloadRequest& req);
  /// serve: when each instance was last used (model, pid, ms since the epoch),
  /// so `status` shows last use and expiry. Records of other pids are left alone.
  Status record_use(const std::vector<std::tuple<std::string, int64_t, int64_t>>& uses);
  /// serve, after its state dir was removed or replaced under it: puts back
  /// the records of `ours` (instances serve knows run) that the state lacks,
  /// with their pid files, so nothing that runs goes untracked and no model
  /// gets a second instance.
  Status restore_records(const std::vector<state::Instance>& ours);
  /// Sets the keep-alive of the live instance of `model` with `pid` in the
  /// state file (a later reap or `status` sees it). No-op when it is gone.
  Status set_keep_alive(const std::string& model, int64_t pid, int64_t keep_alive_ms);

  /// The config now: a snapshot that a reload does not change under the caller.
  std::shared_ptr<const config::Config> config() const {
    std::lock_guard lock(config_mu_);
    return cfg_;
  }
  /// serve's config reload: loads from now on resolve models, and read the
  /// GPUs, with these (a load in progress keeps what it started with).
  void set_config(std::shared_ptr<const config::Config> cfg, gpu::ClassifyOptions opts) {
    std::lock_guard lock(config_mu_);
    cfg_ = std::move(cfg);
    opts_ = std::move(opts);
  }
  const state::StateDir& state_dir() const { return dir_; }
  /// llama-server's slot count on `port` (GET /props, 2 s at most).
  std::optional<int> slots(int port) { return health_.slots(port, std::chrono::seconds(2)); }
  /// For a load that found no room: which of our instances `candidates`
  /// (model names, in the order serve would rather stop them) must stop for
  /// `req` to fit: the fewest, preferring earlier ones. Empty: it fits now.
  /// An error (gpu_unavailable, insufficient_memory) when it would not fit
  /// even with all of them stopped: other users' processes, or too little
  /// memory in all. Reads the GPUs once; starts and stops nothing.
  Result<std::vector<std::string>> room_for(const LoadRequest& req, const std::vector<std::string>& candidates);
  /// See ProcessOps::reap_exited_children.
  size_t reap_exited_children() { return ops_.reap_exited_children(); }

 private:
  Result<Reconciled> lock_and_reconcile(const state::Lock& lock, state::StateFile& st, std::vector<std::string>& notes);
  /// Decides GPUs and port for a new instance and starts it (not yet recorded).
  Result<state::Instance> place_and_start(const ModelChoice& model, const placement::GpuSpec& spec,
                                          const LoadRequest& req, const gpu::ProbeResult& probe,
                                          const std::vector<state::Instance>& live, LoadOutcome& out);
  Status mark_running(state::Instance& inst);
  Status wait_healthy(const state::Instance& inst, const LoadRequest& req);
  bool stop(const state::Instance& inst, std::chrono::milliseconds timeout, bool& killed);
  void forget(const state::Instance& inst);
  /// Loads the state under its lock (logging what the load warns of, such as
  /// a damaged file moved aside), lets `edit` change it, and saves it when
  /// `edit` says it changed something. An error from `edit` is returned and
  /// nothing is saved.
  Status edit_state(const std::function<Result<bool>(const state::Lock&, state::StateFile&)>& edit);
  void promote_healthy_starting(Reconciled& rec, const std::map<std::string, int>& health);
  InstanceView describe(const state::Instance& inst, const gpu::ProbeResult& probe, int health_status);
  gpu::ClassifyOptions classify_opts() const {
    std::lock_guard lock(config_mu_);
    return opts_;
  }

  mutable std::mutex config_mu_;  // guards cfg_ and opts_ (serve reloads them)
  std::shared_ptr<const config::Config> cfg_;
  state::StateDir dir_;
  gpu::GpuProbe& probe_;
  ProcessOps& ops_;
  HealthProbe& health_;
  gpu::ClassifyOptions opts_;
};

/// Last `n` lines of a log file (empty when unreadable).
std::string log_tail(const std::string& path, size_t n);

}  // namespace llamactl::runtime
