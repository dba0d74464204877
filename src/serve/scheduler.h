#pragma once
// serve's one decision-maker: a pure state machine per model (stopped ->
// starting -> ready -> stopping) fed events, with no I/O, no clock and no
// threads of its own. Every start/stop decision is made here from the
// current state, never from a stale copy (llama-swap's TTL-vs-request races
// came from deciding elsewhere). The router holds one mutex around it and
// carries out the decisions: load and unload jobs, waking waiters.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llamactl::serve {

// queued: waiting for room that our own instances hold (or behind a model that is).
enum class Phase { stopped, queued, starting, ready, stopping };
const char* to_string(Phase p);

/// llama-server settings that only a restart changes: what an instance runs
/// with, and what a request needs of it.
struct Launch {
  bool embeddings = false;  // --embeddings
  int64_t context = 0;      // -c; 0: unknown (then any context need counts as met)
  int64_t ubatch = 0;       // physical batch, the longest embedding input; 0: not read from a command line
  bool reranking = false;   // --reranking (/v1/rerank answers)
  int slots = 0;            // -np/--parallel when given and positive; 0: ask llama-server (/props)
};

/// Reads --embeddings, --reranking, -c/--ctx-size, -np/--parallel and the physical batch (the smaller of
/// -ub/--ubatch-size and -b/--batch-size, llama-server's defaults 512 and
/// 2048) from a llama-server command line.
Launch launch_of(const std::vector<std::string>& argv);

/// A request waiting in a model's queue, and since when (ms).
struct Waiting {
  uint64_t id = 0;
  int64_t since_ms = 0;
  bool operator==(const Waiting&) const = default;
};

struct ModelState {
  Phase phase = Phase::stopped;
  int port = 0;
  int64_t pid = 0;
  int in_flight = 0;            // admitted requests, from admission to their last byte
  std::deque<Waiting> waiters;  // FIFO: waiting for a load, a stop, a free slot or room on the GPUs
  int slots = 0;                // the most requests admitted at once (llama-server's slots); 0: no limit known
  int64_t last_used_ms = 0;     // end of the last request (or when it became ready)
  int64_t keep_alive_ms = -1;   // negative: never reaped
  bool by_hand = false;         // loaded with `llamactl load`: evicted only when it has a keep-alive
  /// Waiters that arrived up to this time were waiting when the instance
  /// came up: it serves them before it can be evicted.
  int64_t owed_until_ms = -1;
  /// queued: our models whose stop makes room for it (found by the caller,
  /// see no_room); empty: not tried yet (it queued behind others).
  std::vector<std::string> blockers;
  uint64_t epoch = 0;  // when this scheduler last changed it
  Launch running;      // what the instance runs with (ready)
  Launch want;         // what the next load starts it with
  /// Its config changed (a reload): it admits only what it owes, stops once
  /// nothing is in flight, and starts again with the new settings.
  bool stale = false;
  /// No longer in the config: it stops once idle and is not started again.
  bool removed = false;
  /// A replica ("tiny#2") names the model it serves ("tiny"); empty for the
  /// model's own entry, which holds the queue for all its instances.
  std::string replica_of;
  // The model's scaling (its own entry): the most instances at once, how long
  // the oldest request waits before one more starts, and a pause after a
  // scale-out found no idle GPU.
  int replicas = 1;
  int64_t scale_after_ms = 2000;
  int64_t no_scale_until_ms = 0;
};

/// What a state-file reading says about one live instance.
struct Record {
  std::string model;
  int port = 0;
  int64_t pid = 0;
  bool running = false;  // false: still starting (someone else's load)
  int64_t last_used_ms = 0;
  int64_t keep_alive_ms = -1;
  bool by_hand = false;
  Launch launch;
};

/// A decision for the caller to carry out.
struct Action {
  enum class Kind {
    load,   // run a load job for `model`
    stop,   // run a stop job for `model` (pid), for `reason`
    grant,  // `waiters` are admitted on `port` (each counted in flight)
    fail,   // `waiters` get `status` and `reason` as the error
  } kind = Kind::load;
  std::string model;
  std::vector<uint64_t> waiters;
  int port = 0;
  int64_t pid = 0;
  int status = 0;
  // stop: evicted, idle, keep_alive_0, reload, config_changed, removed; fail: the message;
  // load: "scale_out" for one more instance of a loaded model (on an idle GPU
  // only: it never evicts or queues; scale_failed() when there is none).
  std::string reason;
};
using Actions = std::vector<Action>;

struct Admission {
  // serve: counted in flight now (port given). wait: queued; a later action
  // grants or fails it. start: queued, and the caller runs one load job.
  // restart: the idle instance lacks what the request needs (embeddings,
  // reranking, a larger context): it is marked stopping, the request
  // queued, and the caller runs a stop job (a load follows as an action).
  // refuse: it lacks embeddings or reranking and is busy; nothing changed.
  // full: the model's queue holds max_queue requests; nothing changed.
  enum class Kind { serve, wait, start, restart, refuse, full } kind = Kind::wait;
  int port = 0;
  Actions actions;  // wait: what queueing it set off
};

struct SyncResult {
  std::vector<std::string> adopted;   // running instances this serve did not start (CLI, an earlier serve)
  std::vector<std::string> vanished;  // instances whose record went away or changed pid
  Actions actions;                    // for requests that waited on them
};

/// serve's scheduler. Requests for a model queue in its FIFO when it is
/// loading, stopping, out of free slots, or waiting for room that our own
/// busy instances hold. Between models, the one whose oldest request waited
/// longest (the head) goes first: only the head evicts, only idle instances
/// are evicted, and an instance the head needs stops admitting requests that
/// arrived after the head's oldest (it drains), except those it was loaded
/// for. Loads for queued models run one at a time, so two never race for
/// the room one stop made.
class Scheduler {
 public:
  explicit Scheduler(size_t max_queue = 512) : max_queue_(max_queue) {}

  /// A request for `model` arrives at `now`. `needs`: what the instance
  /// must run with. A busy instance that runs with a smaller context than
  /// needed still serves (no reload under load).
  Admission admit(const std::string& model, uint64_t waiter, int64_t now, Launch needs = {});
  /// admit() when it would serve at once (counted in flight: call finish());
  /// nullopt, and nothing changed, otherwise.
  std::optional<int> try_serve(const std::string& model, int64_t now, Launch needs = {});
  /// Whether a ready instance can take a request with `needs` as it is.
  static bool satisfies(const ModelState& m, Launch needs);
  /// A queued request gave up: it leaves the queue and is never counted.
  Actions cancel(const std::string& model, uint64_t waiter, int64_t now);
  /// A served request ended (its last byte went out, or it failed). `port`:
  /// the instance that served it (0: the model's own).
  Actions finish(const std::string& model, int64_t now, int port = 0);
  /// How many instances `model` may run (replicas) and how long its oldest
  /// request waits, every slot busy, before one more starts.
  void set_scaling(const std::string& model, int replicas, int64_t scale_after_ms);
  /// Scale-outs due now: a model whose every instance is busy, whose oldest
  /// request waited scale_after, with fewer than `replicas` instances, while
  /// no other model waits for room. At most one load at a time per model.
  Actions scale(int64_t now);
  /// A scale-out load found no idle GPU (or failed): the instance is
  /// forgotten, its requests keep waiting for the others, and the model is
  /// not scaled again for `pause_ms`.
  Actions scale_failed(const std::string& instance, int64_t now, int64_t pause_ms);
  /// The names of the model's instance entries: its own, then its replicas.
  std::vector<std::string> instances_of(const std::string& model) const;
  /// The model an entry serves (itself, or what a replica is of).
  static std::string model_of(const std::string& name, const ModelState& m) {
    return m.replica_of.empty() ? name : m.replica_of;
  }

  /// The load job succeeded: queued waiters are served, up to `slots` (0:
  /// all of them).
  Actions loaded(const std::string& model, int port, int64_t pid, int64_t keep_alive_ms, bool by_hand, int64_t now,
                 Launch running = {}, int slots = 0);
  /// The load job failed: every queued waiter fails with `status`, `message`.
  Actions load_failed(const std::string& model, int status, const std::string& message);
  /// Our models the load of `model` may wait for, in the order serve would
  /// rather stop them: idle ones least recently used first, then busy ones
  /// with the fewest requests. Never one loaded by hand without a keep-alive.
  std::vector<std::string> eviction_candidates(const std::string& model) const;
  /// The load job found no room, but there will be once `blockers` (some
  /// eviction_candidates, not empty) stop: the model queues for them.
  Actions no_room(const std::string& model, const std::vector<std::string>& blockers, int64_t now);
  /// The stop job ended.
  Actions stopped(const std::string& model, int64_t now);
  /// Ready instances whose keep-alive ran out (nothing in flight, nothing
  /// waiting): stop actions.
  Actions expired(int64_t now);
  /// Requests queued longer than `timeout_ms` (not counting a load in
  /// progress for them) fail with 503 saying how long and for what.
  Actions timeouts(int64_t now, int64_t timeout_ms);
  /// A config reload: the instances serve started of `changed` models drain
  /// and restart with the new settings, those of `removed` ones stop once
  /// idle. Instances loaded by hand are the user's and left alone.
  Actions reconfigure(const std::vector<std::string>& changed, const std::vector<std::string>& removed, int64_t now);
  /// llama-server's slot count, read after the load (0: unknown).
  Actions set_slots(const std::string& model, int slots, int64_t now);

  /// Before reading the state file: a mark that sync() compares with each
  /// model's epoch, so a reading taken before a change never undoes it.
  uint64_t begin_sync() { return ++epoch_; }
  /// Applies a state-file reading (live records only). Models this serve is
  /// starting or stopping are its own business and left alone.
  SyncResult sync(uint64_t mark, const std::vector<Record>& live, int64_t now);

  /// Sets the keep-alive of a known model (per-request keep_alive).
  void set_keep_alive(const std::string& model, int64_t keep_alive_ms);
  /// Earliest time a ready instance may expire; nullopt when none will.
  std::optional<int64_t> next_expiry() const;

  const ModelState* find(const std::string& model) const;
  const std::map<std::string, ModelState>& models() const { return models_; }
  int in_flight() const;
  /// Requests waiting in every queue.
  size_t queued() const;
  /// Instances stopped to make room for another model.
  uint64_t swaps() const { return swaps_; }

 private:
  ModelState& touch(const std::string& model);
  /// The queued model whose oldest request waited longest; nullptr when none.
  const std::string* head() const;
  /// Whether `m` may admit a request that arrived at `since` now.
  bool may_admit(const std::string& name, const ModelState& m, int64_t since) const;
  /// After a stop or a vanished instance: its model's waiters start a load or
  /// queue, unless another instance of the model is up to serve them.
  void restart_for_waiters(const std::string& model, Actions& out);
  /// The ready instance of `model` that may admit a request that arrived at
  /// `since` and has what `needs` asks (embeddings, reranking), with the
  /// fewest in flight; nullptr when none.
  std::pair<const std::string, ModelState>* pick(const std::string& model, int64_t since, Launch needs);
  /// Whether another instance of `model` than `except` is ready or starting.
  bool other_instance_up(const std::string& model, const std::string& except) const;
  /// Grants waiters where slots allow, evicts for the head, starts queued loads.
  void step(int64_t now, Actions& out);
  void fail_all(const std::string& name, ModelState& m, int status, const std::string& message, Actions& out);

  std::map<std::string, ModelState> models_;
  size_t max_queue_;
  uint64_t epoch_ = 0;
  uint64_t swaps_ = 0;
  std::string queue_load_;  // the queued model whose load runs now; empty: none
};

}  // namespace llamactl::serve
