#pragma once
// The router: the scheduler behind one mutex, plus the effects it decides.
// Loads and stops run on job threads (they take seconds to minutes and block
// on files, processes and health probes); the HTTP side only asks and waits.
// Uses the same Runtime load/unload/reconcile as the CLI.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "serve/metrics.h"
#include "serve/scheduler.h"

namespace llamactl::serve {

struct RouterOptions {
  std::optional<std::string> keep_alive_flag;  // --keep-alive
  std::optional<std::string> keep_alive_env;   // OLLAMA_KEEP_ALIVE
  std::chrono::milliseconds load_timeout{std::chrono::minutes(10)};
  std::chrono::milliseconds stop_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds sync_interval{std::chrono::seconds(2)};
  size_t max_queue = 512;                                             // per model; then 503 with Retry-After
  std::chrono::milliseconds queue_timeout{std::chrono::minutes(10)};  // then 503
};

/// What a request gets: an upstream port, a wait, or a failure to answer.
struct Ticket {
  enum class Kind { ready, pending, failed } kind = Kind::failed;
  int port = 0;
  uint64_t waiter = 0;
  int status = 0;  // failed: HTTP status for the client (503, 404, 500)
  std::string error;
  int retry_after_s = 0;  // failed: a Retry-After for the client (queue full); 0: none
};

struct ModelInfo {
  std::string name;       // the instance: the model, or a replica ("tiny#2")
  std::string model;      // the model it serves
  std::vector<int> gpus;  // from its record; empty: CPU or not known yet
  std::string state;      // stopped, starting, ready, stopping
  int port = 0;
  bool configured = false;
  int64_t pid = 0;
  int64_t keep_alive_ms = -1;  // negative: never reaped
  int64_t last_used_ms = 0;
  int in_flight = 0;
  int queued = 0;  // requests waiting for the model (kept on its own instance's entry)
};

/// A model's status as llama-server's router API shows it (GET /models,
/// GET /models/sse).
struct ModelStatus {
  std::string value = "unloaded";  // unloaded, loading, loaded, unloading
  bool failed = false;             // unloaded after its process died or its load failed
  std::optional<int> exit_code;    // failed, when the OS told
  std::vector<std::string> args;   // the running instance's command line
  /// Every instance that runs now: the model's own and its replicas.
  struct Instance {
    std::string name;
    int port = 0;
    int64_t pid = 0;
    std::vector<int> gpus;
    bool operator==(const Instance&) const = default;
  };
  std::vector<Instance> instances;
  bool operator==(const ModelStatus&) const = default;
};

/// One change of a model's status; seq counts from 1.
struct StatusEvent {
  uint64_t seq = 0;
  std::string model;
  ModelStatus status;
};

/// What a status subscriber reads next.
struct StatusFeed {
  std::vector<StatusEvent> events;
  bool missed = false;  // it fell behind: older events were dropped (re-read statuses())
  bool closed = false;  // serve is stopping: end the stream
};

class Router {
 public:
  Router(runtime::Runtime& rt, Metrics& metrics, RouterOptions opts);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  /// The model a request names: a config name or alias (any ":tag"), or the
  /// name of a running instance (loaded by path). nullopt: unknown.
  std::optional<std::string> resolve(const std::string& requested);

  /// Admits a request for a resolved model. pending: `wake` is called, from
  /// any thread, once result(waiter) is known. ready: counted in flight, the
  /// caller must call finish(). `needs`: embeddings and a minimum context; an
  /// idle instance without them is restarted with them, a busy one without
  /// embeddings refuses (400).
  Ticket admit(const std::string& model, Launch needs, std::function<void()> wake);
  /// The fast path: the model is ready and has what `needs` asks, so the
  /// request is counted in flight and gets its port (the caller must call
  /// finish()); nullopt otherwise.
  std::optional<int> admit_ready(const std::string& model, Launch needs = {});
  /// What a waiting request for `model` waits for, in words: "loading tiny",
  /// "tiny is queued for room on the GPUs", "waiting for a free slot of tiny".
  std::string waiting_for(const std::string& model);
  /// The outcome of a pending admission, once woken (ready: now counted in flight).
  Ticket result(uint64_t waiter);
  /// A pending request gave up (client gone). If it was already granted, the
  /// grant is handed back (finish()).
  void cancel(const std::string& model, uint64_t waiter);
  /// The request's last byte went out (or it failed). `port`: the instance
  /// it was admitted on (a model with replicas has several).
  void finish(const std::string& model, int port = 0);
  /// The upstream refused a connection or broke mid-response: reconcile now
  /// (blocking, a few ms), so the dead instance is recorded and never used again.
  void upstream_failed(const std::string& model);

  /// Runs reaping and the periodic sync until stop(); returns when stopped.
  void run();
  /// Ends run(), waits for the load/stop jobs, and with `unload_ours` stops
  /// the instances this serve loaded.
  void stop(bool unload_ours);

  std::vector<ModelInfo> models();
  /// Every configured model (and any other that runs) with its status, and
  /// the seq of the last event they include (a subscriber's first cursor).
  std::vector<std::pair<std::string, ModelStatus>> statuses(uint64_t* cursor = nullptr);
  /// `wake` is called, from any thread, after new status events (and once
  /// when the feed closes). Returns the id for unsubscribe().
  uint64_t subscribe(std::function<void()> wake);
  void unsubscribe(uint64_t id);
  /// The events after `cursor`, which is advanced past them.
  StatusFeed events_since(uint64_t& cursor);
  /// Ends every subscriber's stream (serve is stopping).
  void close_feed();
  /// Reads the state file now (a few ms), instead of at the next sync: for a
  /// decision that must see what the CLI just did.
  void refresh() { sync_now(); }
  /// Stops `model` as soon as nothing is in flight, whoever loaded it
  /// (POST /models/unload). False when it is not loaded.
  bool unload_now(const std::string& model) { return unload_when_idle(model); }
  /// What the model's instance runs with (read from its command line); empty when not running.
  Launch running(const std::string& model);
  /// A new config (SIGHUP, --watch-config). New models can be asked for at
  /// once; the instances serve started of changed models admit no new
  /// requests, stop when those in flight are done, and start again with the
  /// new settings; those of removed models stop once idle. Instances loaded
  /// by hand keep running as they are. Returns what changed.
  config::ConfigChanges reload(std::shared_ptr<const config::Config> next, gpu::ClassifyOptions opts);
  /// The config now (a snapshot: a reload does not change it under the caller).
  std::shared_ptr<const config::Config> config() const { return rt_.config(); }
  /// The Runtime that the CLI's load and unload use (the web page's loads on a chosen GPU).
  runtime::Runtime& runtime() { return rt_; }
  /// Runs `fn` on a job thread of the router (joined when serve stops):
  /// for blocking work a handler must not do on an I/O thread. False when
  /// serve is stopping (then it does not run).
  bool run_job(std::function<void()> fn) { return spawn_job(std::move(fn)); }

  /// A request's keep_alive (Ollama): it sticks to the running instance
  /// until another request changes it, and goes to the state file so
  /// `status` shows the new expiry. No-op when the model is not running.
  void set_keep_alive(const std::string& model, int64_t keep_alive_ms);
  /// Ollama's unload (empty request, keep_alive 0): the instance stops as
  /// soon as nothing is in flight. False when it was not running.
  bool unload_when_idle(const std::string& model);
  /// Instances by scheduler phase plus dead records, and requests in flight.
  void fill(MetricsSnapshot& m);
  /// serve's check, run before every sync, that the state dir is still the
  /// one it claimed. It returns true when the dir was removed or replaced and
  /// serve has claimed it again: then the records of the instances serve
  /// knows are put back before the sync reads the state.
  void set_state_guard(std::function<bool()> guard);

 private:
  struct Waiter {
    std::function<void()> wake;
    std::optional<Ticket> outcome;
    std::string model;
  };
  void start_load(const std::string& model);
  /// One more instance of a loaded model on an idle GPU (never evicts or queues).
  void run_scale_out(const std::string& instance);
  /// The scheduler's replicas and scale_after for every configured model.
  void apply_scaling(const config::Config& cfg);
  void start_stop(const std::string& model, const std::string& reason);
  void run_load(const std::string& model);
  /// What a load of `instance` (a model, or one of its replicas) asks the
  /// Runtime for: serve's keep-alive for the model, and the launch its
  /// requests want (embeddings, reranking, context). Error: the keep-alive
  /// does not parse.
  Result<runtime::LoadRequest> load_request(const std::string& instance);
  /// A load job succeeded: the scheduler serves what waited, and the slot
  /// count is learnt.
  void on_loaded(const std::string& instance, const runtime::LoadOutcome& outcome, double seconds);
  void run_stop(const std::string& model, int64_t pid, const std::string& reason);
  /// Carries out the scheduler's decisions: jobs, grants, failures. Call without mu_.
  void execute(const Actions& actions);
  /// After a load: the slot count from the command line, else from llama-server's /props.
  void learn_slots(const std::string& model, int port, Launch running);
  void sync_now();
  void reap();
  /// False when serve is stopping (nothing new starts then).
  bool spawn_job(std::function<void()> fn);
  void join_finished_jobs();
  /// A record of an instance that runs now (a load just finished): known
  /// before the next sync, for set_state_guard's restore.
  void remember(const state::Instance& rec);
  /// Compares every model's status with the last published one and queues
  /// an event for each change; wakes the subscribers. Takes mu_.
  void publish();
  ModelStatus status_locked(const std::string& model) const;

  runtime::Runtime& rt_;
  Metrics& metrics_;
  RouterOptions opts_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  Scheduler sched_;
  std::map<uint64_t, Waiter> waiters_;
  uint64_t next_waiter_ = 0;
  bool stopping_ = false;
  bool wake_loop_ = false;
  size_t dead_records_ = 0;
  std::map<std::string, int64_t> persisted_use_;  // model -> last_used written to the state file
  // The status feed: what was last published per model, the recent events,
  // the subscribers, and why a stopped model stopped (a dead record's exit
  // code, a failed load) and what a running one runs with.
  std::map<std::string, ModelStatus> published_;
  std::deque<StatusEvent> events_;
  uint64_t last_seq_ = 0;
  std::map<uint64_t, std::function<void()>> subscribers_;
  uint64_t next_subscriber_ = 0;
  bool feed_closed_ = false;
  std::map<std::string, std::optional<int>> failed_;      // model -> exit code, when its last run failed
  std::map<std::string, std::vector<std::string>> args_;  // instance -> argv of its live record
  std::map<std::string, std::vector<int>> gpus_;          // instance -> GPUs of its live record
  struct Job {
    std::thread thread;
    std::shared_ptr<bool> done;
  };
  std::vector<Job> jobs_;
  std::mutex sync_mu_;                  // one sync at a time; guards the two below
  std::function<bool()> state_guard_;   // see set_state_guard
  std::vector<state::Instance> known_;  // the live records of the last sync
};

}  // namespace llamactl::serve
