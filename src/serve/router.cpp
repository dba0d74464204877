#include "serve/router.h"

#include <algorithm>
#include <set>

#include "serve/options.h"
#include "state/replica.h"
#include "util/duration.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::serve {
namespace {

using Clock = std::chrono::steady_clock;

// A full queue's Retry-After: by then some of the queued requests are served.
constexpr int kRetryAfterFullS = 5;
// After a scale-out found no idle GPU: the GPUs are read again no sooner.
constexpr int64_t kScalePauseMs = 30'000;

// Loads that failed for want of room may succeed after an eviction.
bool no_room(ErrorKind k) {
  return k == ErrorKind::gpu_unavailable || k == ErrorKind::insufficient_memory;
}

int status_for(ErrorKind k) {
  switch (k) {
    case ErrorKind::gpu_unavailable:
    case ErrorKind::insufficient_memory:
    case ErrorKind::port_in_use:
    case ErrorKind::state:
      return 503;
    case ErrorKind::model_not_found:
      return 404;
    case ErrorKind::timeout:
      return 504;
    default:
      return 500;
  }
}

std::string strip_latest(const std::string& name) {
  const auto colon = name.rfind(':');
  if (colon != std::string::npos && name.substr(colon + 1) == "latest") return name.substr(0, colon);
  return name;
}

}  // namespace

Router::Router(runtime::Runtime& rt, Metrics& metrics, RouterOptions opts)
    : rt_(rt), metrics_(metrics), opts_(std::move(opts)), sched_(opts_.max_queue) {
  apply_scaling(*rt_.config());
  sync_now();  // adopt what already runs (a restarted serve, `llamactl load`)
}

void Router::apply_scaling(const config::Config& cfg) {
  std::lock_guard lock(mu_);
  for (const auto& [name, mc] : cfg.models) {
    // A replica needs a GPU of its own: only a model that auto placement puts
    // on one. scale_after "never" turns scaling off.
    const bool placeable = !mc.gpu || *mc.gpu == "auto";
    if (mc.replicas > 1 && !placeable)
      log::warn("{}: replicas = {} ignored: it is pinned to gpu = \"{}\" (replicas need auto placement)", name,
                mc.replicas, *mc.gpu);
    const int replicas = placeable && mc.scale_after_ms >= 0 ? mc.replicas : 1;
    if (replicas > 1 || sched_.find(name)) sched_.set_scaling(name, replicas, mc.scale_after_ms);
  }
}

Router::~Router() {
  try {
    stop(false);
  } catch (const std::exception& e) {  // a thread that cannot be joined: nothing else to do at exit
    log::error("stopping the router: {}", e.what());
  }
}

std::optional<std::string> Router::resolve(const std::string& requested) {
  if (requested.empty()) return std::nullopt;
  const auto cfg = rt_.config();
  if (const auto* m = cfg->find_model(requested)) return m->name;
  const std::string bare = strip_latest(requested);
  std::lock_guard lock(mu_);
  // A model removed from the config takes no new requests while it winds down.
  // A replica's name is not a model.
  for (const auto& [name, m] : sched_.models())
    if ((name == requested || name == bare) && m.replica_of.empty() && m.phase != Phase::stopped && !m.removed)
      return name;
  return std::nullopt;
}

config::ConfigChanges Router::reload(std::shared_ptr<const config::Config> next, gpu::ClassifyOptions opts) {
  auto changes = config::compare(*rt_.config(), *next);
  apply_scaling(*next);
  rt_.set_config(std::move(next), std::move(opts));
  Actions actions;
  std::vector<std::string> by_hand;
  {
    std::lock_guard lock(mu_);
    for (const auto* names : {&changes.changed, &changes.removed})
      for (const auto& name : *names)
        if (const auto* m = sched_.find(name); m && m->by_hand && m->phase == Phase::ready) by_hand.push_back(name);
    actions = sched_.reconfigure(changes.changed, changes.removed, now_ms());
    wake_loop_ = true;
    cv_.notify_all();
  }
  for (const auto& name : by_hand)
    log::info("reload: {} was loaded by hand and keeps running as it is; `llamactl unload {}` ends it", name, name);
  execute(actions);
  publish();
  return changes;
}

Ticket Router::admit(const std::string& model, Launch needs, std::function<void()> wake) {
  std::unique_lock lock(mu_);
  if (stopping_) return {Ticket::Kind::failed, 0, 0, 503, "llamactl serve is shutting down"};
  const uint64_t id = ++next_waiter_;
  auto adm = sched_.admit(model, id, now_ms(), needs);
  if (adm.kind == Admission::Kind::serve) return {Ticket::Kind::ready, adm.port, 0, 0, {}};
  if (adm.kind == Admission::Kind::refuse) {
    const std::string what = needs.reranking ? "reranking" : "embeddings";
    return {Ticket::Kind::failed, 0, 0, 400,
            "'" + model + "' is running without " + what + " (it was started for chat) and is busy; set `" + what +
                " = true` for it in the config so that it always starts with them, or retry when it is idle"};
  }
  if (adm.kind == Admission::Kind::full) {
    lock.unlock();
    metrics_.queue_rejected("full");
    log::warn("request for {} refused: its queue holds {} requests (max_queue)", model, opts_.max_queue);
    return {
        Ticket::Kind::failed,
        0,
        0,
        503,
        "'" + model + "' has " + std::to_string(opts_.max_queue) + " requests waiting already (max_queue); retry later",
        kRetryAfterFullS};
  }
  waiters_[id] = Waiter{std::move(wake), std::nullopt, model};
  if (adm.kind == Admission::Kind::start) {
    log::info("load {}: first request, starting it", model);
    lock.unlock();
    publish();
    start_load(model);
  } else if (adm.kind == Admission::Kind::restart) {
    log::info("reload {}: idle, and the request needs {}", model,
              needs.reranking    ? std::string("reranking")
              : needs.embeddings ? std::string("embeddings")
                                 : "a context of " + std::to_string(needs.context));
    lock.unlock();
    publish();
    start_stop(model, "reload");
  } else {
    lock.unlock();
    execute(adm.actions);
    publish();
  }
  return {Ticket::Kind::pending, 0, id, 0, {}};
}

std::optional<int> Router::admit_ready(const std::string& model, Launch needs) {
  std::lock_guard lock(mu_);
  if (stopping_) return std::nullopt;
  return sched_.try_serve(model, now_ms(), needs);
}

std::string Router::waiting_for(const std::string& model) {
  std::lock_guard lock(mu_);
  const auto* m = sched_.find(model);
  if (m && m->phase != Phase::ready) {
    for (const auto& name : sched_.instances_of(model))
      if (name != model && sched_.find(name)->phase == Phase::ready) return "waiting for a free slot of " + model;
  }
  switch (m ? m->phase : Phase::stopped) {
    case Phase::queued:
      return model + " is queued for room on the GPUs";
    case Phase::ready:
      return m->stale ? "waiting for " + model + " to restart with its changed config"
                      : "waiting for a free slot of " + model;
    case Phase::stopping:
      return "waiting for " + model + " to restart";
    default:
      return "loading " + model;
  }
}

Ticket Router::result(uint64_t waiter) {
  std::lock_guard lock(mu_);
  auto it = waiters_.find(waiter);
  if (it == waiters_.end() || !it->second.outcome) return {Ticket::Kind::pending, 0, waiter, 0, {}};
  Ticket t = *it->second.outcome;
  waiters_.erase(it);
  return t;
}

void Router::cancel(const std::string& model, uint64_t waiter) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    auto it = waiters_.find(waiter);
    if (it == waiters_.end()) return;
    // Granted but never used: hand the in-flight count back.
    if (it->second.outcome && it->second.outcome->kind == Ticket::Kind::ready)
      actions = sched_.finish(model, now_ms());
    else
      actions = sched_.cancel(model, waiter, now_ms());
    waiters_.erase(it);
    wake_loop_ = true;
    cv_.notify_all();
  }
  execute(actions);
  publish();
}

void Router::finish(const std::string& model, int port) {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    actions = sched_.finish(model, now_ms(), port);
    // keep_alive 0 reaps as soon as nothing is in flight: let the loop look now.
    // Otherwise the loop's 250 ms tick is soon enough, and waking it on every
    // request costs a context switch each.
    if (const auto* m = sched_.find(model); m && m->keep_alive_ms == 0) {
      wake_loop_ = true;
      cv_.notify_one();
    }
  }
  if (actions.empty()) return;  // the common case: nobody waited for this slot
  execute(actions);
  publish();
}

void Router::set_keep_alive(const std::string& model, int64_t keep_alive_ms) {
  std::vector<std::pair<std::string, int64_t>> targets;  // every ready instance of the model, and its pid
  {
    std::lock_guard lock(mu_);
    for (const auto& name : sched_.instances_of(model))
      if (const auto* m = sched_.find(name); m->phase == Phase::ready && m->keep_alive_ms != keep_alive_ms)
        targets.emplace_back(name, m->pid);
  }
  for (const auto& [name, pid] : targets) {
    // The state file first, then the scheduler: a sync that read the file
    // before this write took its mark before the scheduler's change below, so
    // it cannot undo it (Scheduler::sync skips models changed after the mark).
    if (auto s = rt_.set_keep_alive(name, pid, keep_alive_ms); !s)
      log::warn("keep_alive of {}: {}", name, s.error().message);
    std::lock_guard lock(mu_);
    const auto* m = sched_.find(name);
    if (!m || m->pid != pid) continue;
    sched_.set_keep_alive(name, keep_alive_ms);
    log::info("keep_alive of {} is now {}", name, format_duration_ms(keep_alive_ms));
    if (keep_alive_ms == 0) {
      wake_loop_ = true;
      cv_.notify_one();
    }
  }
}

bool Router::unload_when_idle(const std::string& model) {
  {
    std::lock_guard lock(mu_);
    const auto names = sched_.instances_of(model);
    if (std::none_of(names.begin(), names.end(),
                     [&](const std::string& n) { return sched_.find(n)->phase == Phase::ready; }))
      return false;
  }
  set_keep_alive(model, 0);
  return true;
}

void Router::upstream_failed(const std::string& model) {
  log::warn("upstream of {} failed; reconciling", model);
  sync_now();
}

void Router::execute(const Actions& actions) {
  std::vector<std::function<void()>> wakes;
  for (const auto& a : actions) {
    switch (a.kind) {
      case Action::Kind::load:
        if (a.reason == "scale_out")
          spawn_job([this, instance = a.model] { run_scale_out(instance); });
        else
          start_load(a.model);
        break;
      case Action::Kind::stop:
        if (a.reason == "evicted") metrics_.swap();
        spawn_job([this, a] { run_stop(a.model, a.pid, a.reason); });
        break;
      case Action::Kind::grant:
      case Action::Kind::fail: {
        std::lock_guard lock(mu_);
        for (uint64_t id : a.waiters) {
          auto it = waiters_.find(id);
          if (it == waiters_.end()) continue;
          it->second.outcome = a.kind == Action::Kind::grant ? Ticket{Ticket::Kind::ready, a.port, id, 0, {}}
                                                             : Ticket{Ticket::Kind::failed, 0, id, a.status, a.reason};
          wakes.push_back(it->second.wake);
        }
        if (a.kind == Action::Kind::fail && a.status == 503 && a.reason.find("queue_timeout") != std::string::npos) {
          log::warn("{} request(s) for {}: {}", a.waiters.size(), a.model, a.reason);
          for (size_t i = 0; i < a.waiters.size(); ++i) metrics_.queue_rejected("timeout");
        }
        break;
      }
    }
  }
  for (auto& w : wakes) w();
}

void Router::start_load(const std::string& model) {
  spawn_job([this, model] { run_load(model); });
}

void Router::learn_slots(const std::string& model, int port, Launch running) {
  int slots = running.slots;
  if (slots <= 0) {
    const auto read = rt_.slots(port);
    if (!read) {
      log::info("load {}: llama-server's /props gave no total_slots; requests are not limited per slot", model);
      return;
    }
    slots = *read;
  }
  log::info("load {}: {} slot(s)", model, slots);
  Actions actions;
  {
    std::lock_guard lock(mu_);
    actions = sched_.set_slots(model, slots, now_ms());
  }
  execute(actions);
}

Result<runtime::LoadRequest> Router::load_request(const std::string& instance) {
  const std::string model = state::replica_base(instance);
  auto keep_alive = keep_alive_for(*rt_.config(), model, opts_.keep_alive_flag, opts_.keep_alive_env);
  if (!keep_alive) return keep_alive.error();
  runtime::LoadRequest req;
  req.model = model;
  if (instance != model) req.instance = instance;
  req.loaded_by = "serve";
  req.keep_alive_ms = *keep_alive;
  req.timeout = opts_.load_timeout;
  Launch want;
  {
    std::lock_guard lock(mu_);
    if (const auto* m = sched_.find(instance)) want = m->want;
  }
  if (want.embeddings) req.extra_args.emplace_back("--embeddings");
  if (want.reranking) req.extra_args.emplace_back("--reranking");
  if (want.context > 0) req.context = want.context;
  return req;
}

void Router::run_load(const std::string& model) {
  const auto t0 = Clock::now();
  auto fail = [&](int status, const std::string& message) {
    log::warn("load {} failed: {}", model, message);
    metrics_.load(model, false, 0);
    Actions actions;
    {
      std::lock_guard lock(mu_);
      actions = sched_.load_failed(model, status, message);
      failed_[model] = std::nullopt;
    }
    execute(actions);
    publish();
  };
  auto made = load_request(model);
  if (!made) return fail(500, made.error().message);
  const runtime::LoadRequest req = std::move(*made);
  // The room can change between a failed load and the reading that says
  // who holds it (a stop finished): a few tries, then give up.
  for (int attempt = 0;; ++attempt) {
    auto r = rt_.load(req);
    if (r) return on_loaded(model, *r, std::chrono::duration<double>(Clock::now() - t0).count());
    const auto& err = r.error();
    if (!no_room(err.kind) || attempt >= 3) return fail(status_for(err.kind), err.message);
    std::vector<std::string> candidates;
    {
      std::lock_guard lock(mu_);
      candidates = sched_.eviction_candidates(model);
    }
    if (candidates.empty()) return fail(status_for(err.kind), err.message);
    // Would it fit once some of ours stop? Then wait for them; else waiting cannot help.
    auto room = rt_.room_for(req, candidates);
    if (!room) return fail(status_for(room.error().kind), room.error().message);
    if (room->empty()) continue;  // room appeared meanwhile
    log::info("load {}: no room now ({}); queued until serve's {} {} it", model, err.message, join(*room, ", "),
              room->size() == 1 ? "instance frees" : "instances free");
    Actions actions;
    {
      std::lock_guard lock(mu_);
      actions = sched_.no_room(model, *room, now_ms());
    }
    execute(actions);
    publish();
    return;
  }
}

void Router::on_loaded(const std::string& instance, const runtime::LoadOutcome& outcome, double seconds) {
  const auto& rec = outcome.instance.rec;
  log::info("load {}: ready on port {} (pid {}, GPU {}) in {:.2f} s", instance, rec.port, rec.pid,
            placement::gpus_text(rec.gpus), seconds);
  for (const auto& n : outcome.notes) log::info("load {}: {}", instance, n);
  metrics_.load(state::replica_base(instance), true, seconds);
  remember(rec);
  const Launch running = launch_of(rec.argv);
  Actions actions;
  {
    std::lock_guard lock(mu_);
    actions = sched_.loaded(instance, rec.port, rec.pid, rec.keep_alive_ms, rec.loaded_by != "serve", now_ms(), running,
                            running.slots);
    failed_.erase(instance);
    args_[instance] = rec.argv;
    gpus_[instance] = rec.gpus;
  }
  execute(actions);
  publish();
  if (running.slots <= 0) learn_slots(instance, rec.port, running);
}

void Router::run_scale_out(const std::string& instance) {
  const auto t0 = Clock::now();
  const std::string model = state::replica_base(instance);
  const auto give_up = [&](const std::string& why) {
    log::info("scale-out of {}: {}; its requests wait for the instances that run", model, why);
    Actions actions;
    {
      std::lock_guard lock(mu_);
      actions = sched_.scale_failed(instance, now_ms(), kScalePauseMs);
    }
    execute(actions);
    publish();
  };
  auto req = load_request(instance);
  if (!req) return give_up(req.error().message);
  req->gpu_only = true;
  log::info("scale-out of {}: every slot is busy and requests wait; starting {} on an idle GPU", model, instance);
  // Auto placement takes only a GPU that is idle: never one of ours, never another user's.
  auto r = rt_.load(*req);
  if (!r) return give_up(r.error().message);
  metrics_.scale_out(model);
  on_loaded(instance, *r, std::chrono::duration<double>(Clock::now() - t0).count());
}

void Router::start_stop(const std::string& model, const std::string& reason) {
  int64_t pid = 0;
  {
    std::lock_guard lock(mu_);
    if (const auto* m = sched_.find(model)) pid = m->pid;
  }
  spawn_job([this, model, pid, reason] { run_stop(model, pid, reason); });
}

void Router::run_stop(const std::string& model, int64_t pid, const std::string& reason) {
  log::info("unload {} ({}): pid {}", model, reason, pid);
  runtime::UnloadRequest req;
  req.model = model;
  req.only_pid = pid;
  req.timeout = opts_.stop_timeout;
  if (auto r = rt_.unload(req); !r && r.error().kind != ErrorKind::model_not_found)
    log::warn("unload {}: {}", model, r.error().message);
  metrics_.unload(state::replica_base(model), reason);
  Actions actions;
  {
    std::lock_guard lock(mu_);
    actions = sched_.stopped(model, now_ms());
  }
  // A load that follows (requests arrived meanwhile, or the model this one
  // made room for) runs as its own job, never on this thread.
  execute(actions);
  publish();
}

void Router::remember(const state::Instance& rec) {
  std::lock_guard one(sync_mu_);
  std::erase_if(known_, [&](const state::Instance& i) { return i.model == rec.model; });
  known_.push_back(rec);
}

void Router::set_state_guard(std::function<bool()> guard) {
  std::lock_guard one(sync_mu_);
  state_guard_ = std::move(guard);
}

void Router::sync_now() {
  std::lock_guard one(sync_mu_);
  if (state_guard_ && state_guard_()) {
    // The state dir went away under us: what runs must not go untracked, nor
    // get a second instance because its record is gone.
    if (auto s = rt_.restore_records(known_); !s)
      log::error("cannot put back the records of the running instances: {}", s.error().message);
    else
      log::warn("state dir {} recreated with the {} instance(s) serve knows", rt_.state_dir().dir(), known_.size());
  }
  uint64_t mark = 0;
  {
    std::lock_guard lock(mu_);
    mark = sched_.begin_sync();
  }
  std::vector<std::string> notes;
  auto st = rt_.reconcile_state(notes);
  if (!st) {
    log::warn("cannot read the state: {}", st.error().message);
    return;
  }
  for (const auto& n : notes) log::warn("{}", n);
  known_.clear();
  for (const auto& i : st->instances)
    if (!i.dead()) known_.push_back(i);
  std::vector<Record> live;
  std::map<std::string, int64_t> dead_pids;
  std::map<std::string, std::optional<int>> dead_exits;
  std::map<std::string, std::vector<std::string>> args;
  std::map<std::string, std::vector<int>> gpus;
  size_t dead = 0;
  for (const auto& i : st->instances) {
    if (i.dead()) {
      ++dead;
      dead_pids[i.model] = i.pid;
      dead_exits[i.model] = i.exit_code;
      continue;
    }
    args[i.model] = i.argv;
    gpus[i.model] = i.gpus;
    live.push_back({i.model, i.port, i.pid, i.state == "running", i.last_used_at_ms, i.keep_alive_ms,
                    i.loaded_by != "serve", launch_of(i.argv)});
  }
  SyncResult res;
  std::vector<std::tuple<std::string, int64_t, int64_t>> uses;
  {
    std::lock_guard lock(mu_);
    std::map<std::string, int64_t> vanished_pids;
    for (const auto& [name, m] : sched_.models())
      if (m.phase == Phase::ready) vanished_pids[name] = m.pid;
    res = sched_.sync(mark, live, now_ms());
    dead_records_ = dead;
    for (auto& [name, code] : dead_exits) failed_[name] = code;
    args_ = std::move(args);
    gpus_ = std::move(gpus);
    for (const auto& name : res.vanished) {
      const auto d = dead_pids.find(name);
      const bool died = d != dead_pids.end() && d->second == vanished_pids[name];
      metrics_.unload(state::replica_base(name), died ? "failed" : "manual");
      log::info("{} {} (pid {})", name, died ? "died" : "was unloaded outside serve", vanished_pids[name]);
    }
    // Last use goes to the state file so `status` shows it and the expiry.
    for (const auto& rec : live)
      if (const auto* m = sched_.find(rec.model);
          m && m->phase == Phase::ready && m->pid == rec.pid && m->last_used_ms > rec.last_used_ms)
        uses.emplace_back(rec.model, rec.pid, m->last_used_ms);
  }
  for (const auto& name : res.adopted) log::info("adopted running instance {}", name);
  execute(res.actions);
  publish();
  if (auto s = rt_.record_use(uses); !s) log::warn("{}", s.error().message);
}

void Router::reap() {
  Actions actions;
  {
    std::lock_guard lock(mu_);
    const int64_t now = now_ms();
    actions = sched_.expired(now);
    auto late = sched_.timeouts(now, opts_.queue_timeout.count());
    actions.insert(actions.end(), late.begin(), late.end());
    auto more = sched_.scale(now);
    actions.insert(actions.end(), more.begin(), more.end());
  }
  if (actions.empty()) return;
  execute(actions);
  publish();
}

void Router::run() {
  auto last_sync = Clock::now();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Reaping happens within a second of expiry: look at least every 250 ms.
    cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping_ || wake_loop_; });
    wake_loop_ = false;
    if (stopping_) break;
    lock.unlock();
    // Children of ours that someone else stopped (`llamactl unload`): collected, never left as zombies.
    rt_.reap_exited_children();
    reap();
    if (Clock::now() - last_sync >= opts_.sync_interval) {
      sync_now();
      last_sync = Clock::now();
    }
    join_finished_jobs();
    lock.lock();
  }
}

void Router::stop(bool unload_ours) {
  close_feed();
  std::vector<Job> jobs;
  {
    std::lock_guard lock(mu_);
    if (stopping_ && jobs_.empty()) return;
    stopping_ = true;
    cv_.notify_all();
    jobs.swap(jobs_);
  }
  for (auto& j : jobs)
    if (j.thread.joinable()) j.thread.join();
  // Whoever still waits gets an answer.
  std::vector<std::function<void()>> wakes;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : waiters_)
      if (!w.outcome) {
        w.outcome = Ticket{Ticket::Kind::failed, 0, id, 503, "llamactl serve is shutting down"};
        wakes.push_back(w.wake);
      }
  }
  for (auto& w : wakes) w();
  if (!unload_ours) return;
  std::vector<std::string> notes;
  auto st = rt_.reconcile_state(notes);
  if (!st) return;
  for (const auto& i : st->live())
    if (i.loaded_by == "serve") run_stop(i.model, i.pid, "manual");
}

Launch Router::running(const std::string& model) {
  std::lock_guard lock(mu_);
  const auto* m = sched_.find(model);
  return m && m->phase == Phase::ready ? m->running : Launch{};
}

std::vector<ModelInfo> Router::models() {
  std::vector<ModelInfo> out;
  std::lock_guard lock(mu_);
  const auto info_of = [&](const std::string& name, const ModelState* m, bool configured) {
    ModelInfo info{name, name, {}, "stopped", 0, configured};
    if (m) {
      info.model = Scheduler::model_of(name, *m);
      if (const auto g = gpus_.find(name); g != gpus_.end()) info.gpus = g->second;
      info.state = to_string(m->phase);
      info.port = m->port;
      info.pid = m->pid;
      info.keep_alive_ms = m->keep_alive_ms;
      info.last_used_ms = m->last_used_ms;
      info.in_flight = m->in_flight;
      info.queued = static_cast<int>(m->waiters.size());
    }
    return info;
  };
  const auto cfg = rt_.config();
  for (const auto& [name, mc] : cfg->models) out.push_back(info_of(name, sched_.find(name), true));
  for (const auto& [name, m] : sched_.models())
    if (!cfg->models.count(name) && m.phase != Phase::stopped) out.push_back(info_of(name, &m, false));
  return out;
}

void Router::fill(MetricsSnapshot& m) {
  std::lock_guard lock(mu_);
  for (const auto& [name, s] : sched_.models()) {
    if (s.phase != Phase::stopped && s.phase != Phase::queued) ++m.instances[to_string(s.phase)];
    // A model's figures add up its instances (its own and its replicas).
    auto& mm = m.models[Scheduler::model_of(name, s)];
    mm.queue_depth += static_cast<int64_t>(s.waiters.size());
    mm.in_flight += s.in_flight;
    mm.slots += s.phase == Phase::ready ? s.slots : 0;
    mm.replicas += s.phase == Phase::ready ? 1 : 0;
    if (s.phase == Phase::ready || s.phase == Phase::stopping) {
      const auto g = gpus_.find(name);
      m.instance_rows.push_back(
          {name, Scheduler::model_of(name, s), s.port, g == gpus_.end() ? std::vector<int>{} : g->second, s.in_flight});
    }
  }
  const auto cfg = rt_.config();
  for (const auto& [name, mc] : cfg->models) m.models.try_emplace(name);
  m.instances["dead"] = static_cast<int64_t>(dead_records_);
  m.in_flight = sched_.in_flight();
}

bool Router::spawn_job(std::function<void()> fn) {
  auto done = std::make_shared<bool>(false);
  std::lock_guard lock(mu_);
  if (stopping_) return false;
  jobs_.push_back({std::thread([this, fn = std::move(fn), done] {
                     fn();
                     std::lock_guard l(mu_);
                     *done = true;
                   }),
                   done});
  return true;
}

void Router::join_finished_jobs() {
  std::vector<Job> finished;
  {
    std::lock_guard lock(mu_);
    auto mid = std::partition(jobs_.begin(), jobs_.end(), [](const Job& j) { return !*j.done; });
    std::move(mid, jobs_.end(), std::back_inserter(finished));
    jobs_.erase(mid, jobs_.end());
  }
  for (auto& j : finished) j.thread.join();
}

}  // namespace llamactl::serve

namespace llamactl::serve {

ModelStatus Router::status_locked(const std::string& model) const {
  ModelStatus s;
  const auto* m = sched_.find(model);
  Phase phase = m ? m->phase : Phase::stopped;
  // With replicas, the model is loaded while any of its instances is.
  for (const auto& name : sched_.instances_of(model)) {
    const auto& r = *sched_.find(name);
    if (r.phase == Phase::ready && phase != Phase::ready) phase = Phase::ready;
    if (r.phase != Phase::ready && r.phase != Phase::stopping) continue;
    ModelStatus::Instance i{name, r.port, r.pid, {}};
    if (const auto g = gpus_.find(name); g != gpus_.end()) i.gpus = g->second;
    s.instances.push_back(std::move(i));
  }
  if (s.instances.size() == 1 && s.instances[0].name == model) s.instances.clear();  // one: nothing to add
  switch (phase) {
    case Phase::queued:  // waiting for room: it loads next
    case Phase::starting:
      s.value = "loading";
      break;
    case Phase::ready:
      s.value = "loaded";
      break;
    case Phase::stopping:
      s.value = "unloading";
      break;
    case Phase::stopped:
      break;
  }
  if (phase == Phase::ready || phase == Phase::stopping) {
    const std::string& first = s.instances.empty() ? model : s.instances.front().name;
    if (const auto a = args_.find(args_.count(model) ? model : first); a != args_.end()) s.args = a->second;
  }
  if (phase == Phase::stopped)
    if (const auto f = failed_.find(model); f != failed_.end()) {
      s.failed = true;
      s.exit_code = f->second;
    }
  return s;
}

std::vector<std::pair<std::string, ModelStatus>> Router::statuses(uint64_t* cursor) {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, ModelStatus>> out;
  const auto cfg = rt_.config();
  for (const auto& [name, mc] : cfg->models) out.emplace_back(name, status_locked(name));
  for (const auto& [name, m] : sched_.models())
    if (!cfg->models.count(name) && m.replica_of.empty() && m.phase != Phase::stopped)
      out.emplace_back(name, status_locked(name));
  if (cursor) *cursor = last_seq_;
  return out;
}

void Router::publish() {
  // Enough for a subscriber that is a few seconds behind a burst of loads.
  constexpr size_t kKeptEvents = 1024;
  std::vector<std::function<void()>> wakes;
  {
    std::lock_guard lock(mu_);
    std::set<std::string> names;
    const auto cfg = rt_.config();
    for (const auto& [name, mc] : cfg->models) names.insert(name);
    for (const auto& [name, m] : sched_.models())
      if (m.replica_of.empty()) names.insert(name);
    for (const auto& [name, st] : published_) names.insert(name);
    bool changed = false;
    for (const auto& name : names) {
      ModelStatus now = status_locked(name);
      const auto it = published_.find(name);
      // A model first seen unloaded has nothing to announce.
      const ModelStatus before = it == published_.end() ? ModelStatus{} : it->second;
      if (before == now) {
        published_.emplace(name, std::move(now));
        continue;
      }
      published_[name] = now;
      events_.push_back({++last_seq_, name, std::move(now)});
      if (events_.size() > kKeptEvents) events_.pop_front();
      changed = true;
    }
    if (changed)
      for (const auto& [id, wake] : subscribers_) wakes.push_back(wake);
  }
  for (auto& w : wakes) w();
}

uint64_t Router::subscribe(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  const uint64_t id = ++next_subscriber_;
  subscribers_.emplace(id, std::move(wake));
  return id;
}

void Router::unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

StatusFeed Router::events_since(uint64_t& cursor) {
  std::lock_guard lock(mu_);
  StatusFeed feed;
  feed.closed = feed_closed_;
  feed.missed = !events_.empty() && events_.front().seq > cursor + 1 && cursor < last_seq_;
  for (const auto& e : events_)
    if (e.seq > cursor) feed.events.push_back(e);
  cursor = last_seq_;
  return feed;
}

void Router::close_feed() {
  std::vector<std::function<void()>> wakes;
  {
    std::lock_guard lock(mu_);
    if (feed_closed_) return;
    feed_closed_ = true;
    for (const auto& [id, wake] : subscribers_) wakes.push_back(wake);
  }
  for (auto& w : wakes) w();
}

}  // namespace llamactl::serve
