#pragma once
// serve's one decision-maker: a pure state machine per model (stopped ->
// starting -> ready -> stopping) fed events, with no I/O, no clock and no
// threads of its own. Every start/stop decision is made here from the
// current state, never from a stale copy (llama-swap's TTL-vs-request races
// came from deciding elsewhere). The router holds one mutex around it and
// carries out the decisions: load and unload jobs, waking waiters.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace llamactl::serve {

enum class Phase { stopped, starting, ready, stopping };
const char* to_string(Phase p);

/// llama-server settings that only a restart changes: what an instance runs
/// with, and what a request needs of it.
struct Launch {
  bool embeddings = false;  // --embeddings
  int64_t context = 0;      // -c; 0: unknown (then any context need counts as met)
  int64_t ubatch = 0;       // physical batch, the longest embedding input; 0: not read from a command line
  bool reranking = false;   // --reranking (/v1/rerank answers)
};

/// Reads --embeddings, --reranking, -c/--ctx-size and the physical batch (the smaller of
/// -ub/--ubatch-size and -b/--batch-size, llama-server's defaults 512 and
/// 2048) from a llama-server command line.
Launch launch_of(const std::vector<std::string>& argv);

struct ModelState {
  Phase phase = Phase::stopped;
  int port = 0;
  int64_t pid = 0;
  int in_flight = 0;              // admitted requests, from admission to their last byte
  std::vector<uint64_t> waiters;  // requests waiting for a load (or a stop, then a load)
  int64_t last_used_ms = 0;       // end of the last request (or when it became ready)
  int64_t keep_alive_ms = -1;     // negative: never reaped
  bool by_hand = false;           // loaded with `llamactl load`: evicted only when it has a keep-alive
  bool restart = false;           // requests arrived while stopping: start again once stopped
  uint64_t epoch = 0;             // when this scheduler last changed it
  Launch running;                 // what the instance runs with (ready)
  Launch want;                    // what the next load starts it with
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

struct Admission {
  // restart: the idle instance lacks what the request needs (embeddings, reranking, a
  // larger context): it is marked stopping, the request queued, and the
  // caller runs a stop job (then a load, as after any stop with waiters).
  // refuse: it lacks embeddings or reranking and is busy; nothing changed.
  enum class Kind { serve, wait, start, restart, refuse } kind = Kind::wait;
  int port = 0;  // serve: the upstream port; the request is counted in flight
};

struct Grants {
  std::vector<uint64_t> waiters;  // each now counted in flight (served) or failed
  int port = 0;
};

struct SyncResult {
  std::vector<std::string> adopted;   // running instances this serve did not start (CLI, an earlier serve)
  std::vector<std::string> vanished;  // instances whose record went away or changed pid
};

class Scheduler {
 public:
  /// A request for `model` arrives. serve: counted in flight now, the caller
  /// must call finish(). wait: `waiter` queues until loaded()/load_failed().
  /// start: queued as well, and the caller must run one load job.
  /// `needs`: what the instance must run with. A busy instance that runs
  /// with a smaller context than needed still serves (no reload under load).
  Admission admit(const std::string& model, uint64_t waiter, int64_t now, Launch needs = {});
  /// Whether a ready instance can take a request with `needs` as it is.
  static bool satisfies(const ModelState& m, Launch needs);
  /// A queued request gave up: it leaves the queue and is never counted.
  void cancel(const std::string& model, uint64_t waiter);
  /// A served request ended (its last byte went out, or it failed).
  void finish(const std::string& model, int64_t now);

  /// The load job succeeded: every queued waiter is served (counted in flight).
  Grants loaded(const std::string& model, int port, int64_t pid, int64_t keep_alive_ms, bool by_hand, int64_t now,
                Launch running = {});
  /// The load job failed: every queued waiter fails; the model is stopped.
  Grants load_failed(const std::string& model);

  /// For a load that found no room: the least recently used ready instance
  /// other than `for_model` with nothing in flight and nothing waiting, that
  /// serve may evict (not loaded by hand, unless it has a keep-alive). It is
  /// marked stopping; the caller unloads it and calls stopped().
  std::optional<std::string> evict_for(const std::string& for_model);
  /// Ready instances whose keep-alive ran out (nothing in flight, nothing
  /// waiting); each is marked stopping.
  std::vector<std::string> expired(int64_t now);
  /// The stop job ended. True when requests queued meanwhile: the caller
  /// starts a load job for them (the model is then starting).
  bool stopped(const std::string& model);

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

 private:
  ModelState& touch(const std::string& model);
  std::map<std::string, ModelState> models_;
  uint64_t epoch_ = 0;
};

}  // namespace llamactl::serve
