#include "serve/scheduler.h"

#include <algorithm>
#include <optional>
#include <tuple>

#include "state/replica.h"
#include "util/strings.h"

namespace llamactl::serve {

const char* to_string(Phase p) {
  switch (p) {
    case Phase::stopped:
      return "stopped";
    case Phase::queued:
      return "queued";
    case Phase::starting:
      return "starting";
    case Phase::ready:
      return "ready";
    case Phase::stopping:
      return "stopping";
  }
  return "?";
}

Launch launch_of(const std::vector<std::string>& argv) {
  Launch l;
  int64_t ubatch = 512, batch = 2048;
  const auto number = [](const std::string& text, int64_t fallback) -> int64_t {
    try {
      return std::stoll(text);
    } catch (const std::exception&) {
      return fallback;
    }
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    // "--flag VALUE" or "--flag=VALUE".
    std::string a = argv[i];
    std::optional<std::string> value;
    if (const auto eq = a.find('='); eq != std::string::npos && starts_with(a, "-")) {
      value = a.substr(eq + 1);
      a.resize(eq);
    } else if (i + 1 < argv.size()) {
      value = argv[i + 1];
    }
    if (a == "--embeddings" || a == "--embedding") l.embeddings = true;
    if (a == "--reranking" || a == "--rerank") l.reranking = true;
    if (!value) continue;
    if (a == "-c" || a == "--ctx-size") l.context = number(*value, 0);
    if (a == "-ub" || a == "--ubatch-size") ubatch = number(*value, ubatch);
    if (a == "-b" || a == "--batch-size") batch = number(*value, batch);
    if (a == "-np" || a == "--parallel") l.slots = static_cast<int>(std::clamp<int64_t>(number(*value, 0), 0, 1 << 20));
  }
  l.ubatch = std::min(ubatch, batch);
  return l;
}

namespace {

Launch merged(Launch a, Launch b) {
  return {a.embeddings || b.embeddings, std::max(a.context, b.context), 0, a.reranking || b.reranking, 0};
}

std::string seconds_text(int64_t ms) {
  const int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + " s";
  return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
}

}  // namespace

bool Scheduler::satisfies(const ModelState& m, Launch needs) {
  return (!needs.embeddings || m.running.embeddings) && (!needs.reranking || m.running.reranking) &&
         (needs.context == 0 || m.running.context == 0 || m.running.context >= needs.context);
}

ModelState& Scheduler::touch(const std::string& model) {
  auto& m = models_[model];
  m.epoch = ++epoch_;
  return m;
}

std::vector<std::string> Scheduler::instances_of(const std::string& model) const {
  std::vector<std::string> out;
  if (models_.count(model)) out.push_back(model);
  const std::string prefix = model + "#";
  for (auto it = models_.lower_bound(prefix); it != models_.end() && starts_with(it->first, prefix); ++it)
    if (it->second.replica_of == model) out.push_back(it->first);
  return out;
}

std::pair<const std::string, ModelState>* Scheduler::pick(const std::string& model, int64_t since, Launch needs) {
  std::pair<const std::string, ModelState>* best = nullptr;
  const auto consider = [&](std::pair<const std::string, ModelState>& e) {
    const auto& m = e.second;
    if (m.phase != Phase::ready || (needs.embeddings && !m.running.embeddings) ||
        (needs.reranking && !m.running.reranking) || !may_admit(e.first, m, since))
      return;
    if (!best || m.in_flight < best->second.in_flight) best = &e;  // the fewest in flight; the model's own on a tie
  };
  if (auto it = models_.find(model); it != models_.end()) consider(*it);
  const std::string prefix = model + "#";
  for (auto it = models_.lower_bound(prefix); it != models_.end() && starts_with(it->first, prefix); ++it)
    if (it->second.replica_of == model) consider(*it);
  return best;
}

bool Scheduler::other_instance_up(const std::string& model, const std::string& except) const {
  for (const auto& name : instances_of(model)) {
    if (name == except) continue;
    const Phase p = models_.at(name).phase;
    if (p == Phase::ready || p == Phase::starting) return true;
  }
  return false;
}

const std::string* Scheduler::head() const {
  const std::string* best = nullptr;
  int64_t oldest = 0;
  for (const auto& [name, m] : models_) {
    if (m.phase != Phase::queued || m.waiters.empty()) continue;
    if (!best || m.waiters.front().since_ms < oldest) {
      best = &name;
      oldest = m.waiters.front().since_ms;
    }
  }
  return best;
}

bool Scheduler::may_admit(const std::string& name, const ModelState& m, int64_t since) const {
  if (m.phase != Phase::ready) return false;
  if (m.slots > 0 && m.in_flight >= m.slots) return false;
  if (since <= m.owed_until_ms) return true;  // it was loaded for this request
  if (m.stale) return false;                  // it drains for a restart with its new config
  const std::string* h = head();
  if (!h) return true;
  const auto& hm = models_.at(*h);
  if (std::find(hm.blockers.begin(), hm.blockers.end(), name) == hm.blockers.end()) return true;
  // The head waits for this instance's room: it drains, serving only what came before the head.
  return since < hm.waiters.front().since_ms;
}

Admission Scheduler::admit(const std::string& model, uint64_t waiter, int64_t now, Launch needs) {
  auto& m = models_[model];
  const auto enqueue = [&](Admission::Kind kind) -> Admission {
    if (m.waiters.size() >= max_queue_) return {Admission::Kind::full, 0, {}};
    m.waiters.push_back({waiter, now});
    return {kind, 0, {}};
  };
  if (other_instance_up(model, model)) {
    // Several instances: the least busy one that can take it, else wait for
    // a slot (or for the one starting). No restart for a need: the others serve.
    if (m.waiters.empty())
      if (auto* e = pick(model, now, needs)) {
        ++e->second.in_flight;
        e->second.last_used_ms = std::max(e->second.last_used_ms, now);
        return {Admission::Kind::serve, e->second.port, {}};
      }
    bool capable = false;
    for (const auto& name : instances_of(model)) {
      const auto& r = models_.at(name);
      if (r.phase == Phase::ready && (!needs.embeddings || r.running.embeddings) &&
          (!needs.reranking || r.running.reranking))
        capable = true;
    }
    if ((needs.embeddings || needs.reranking) && !capable) return {Admission::Kind::refuse, 0, {}};
    return enqueue(Admission::Kind::wait);
  }
  switch (m.phase) {
    case Phase::ready: {
      const bool busy = m.in_flight > 0 || !m.waiters.empty();
      if (!satisfies(m, needs)) {
        if (!busy) {
          // Idle: restart it with what it has plus what this request needs.
          auto& s = touch(model);
          s.phase = Phase::stopping;
          s.want = merged(s.running, needs);
          return enqueue(Admission::Kind::restart);
        }
        if ((needs.embeddings && !m.running.embeddings) || (needs.reranking && !m.running.reranking))
          return {Admission::Kind::refuse, 0, {}};
        // Busy and only short of context: serve as it is rather than reload under load.
      }
      if (m.waiters.empty() && may_admit(model, m, now)) {
        ++m.in_flight;
        m.last_used_ms = std::max(m.last_used_ms, now);
        return {Admission::Kind::serve, m.port, {}};
      }
      return enqueue(Admission::Kind::wait);  // every slot busy, or its turn is over
    }
    case Phase::starting:
    case Phase::stopping:
    case Phase::queued: {
      // Never join a dying instance: wait for the stop, then start anew.
      // A load in progress is too late for `needs`: kept for the next one.
      auto a = enqueue(Admission::Kind::wait);
      if (a.kind == Admission::Kind::wait) m.want = merged(m.want, needs);
      return a;
    }
    case Phase::stopped:
      break;
  }
  auto& s = touch(model);
  s.want = needs;
  s.waiters.push_back({waiter, now});
  if (head() || !queue_load_.empty()) {
    // Others wait for room: take a place in line rather than race them for it.
    s.phase = Phase::queued;
    s.blockers.clear();
    Admission a{Admission::Kind::wait, 0, {}};
    step(now, a.actions);
    return a;
  }
  s.phase = Phase::starting;
  return {Admission::Kind::start, 0, {}};
}

std::optional<int> Scheduler::try_serve(const std::string& model, int64_t now, Launch needs) {
  auto it = models_.find(model);
  if (it == models_.end() || !it->second.waiters.empty()) return std::nullopt;
  auto* e = pick(model, now, needs);
  if (!e || !satisfies(e->second, needs)) return std::nullopt;
  auto& m = e->second;
  ++m.in_flight;
  m.last_used_ms = std::max(m.last_used_ms, now);
  return m.port;
}

Actions Scheduler::cancel(const std::string& model, uint64_t waiter, int64_t now) {
  Actions out;
  auto it = models_.find(model);
  if (it == models_.end()) return out;
  auto& w = it->second.waiters;
  const auto before = w.size();
  std::erase_if(w, [&](const Waiting& x) { return x.id == waiter; });
  if (w.size() != before) step(now, out);
  return out;
}

Actions Scheduler::finish(const std::string& model, int64_t now, int port) {
  Actions out;
  auto it = models_.find(model);
  if (port != 0)
    for (const auto& name : instances_of(model))
      if (models_.at(name).port == port) it = models_.find(name);
  if (it == models_.end()) return out;
  auto& m = it->second;
  if (m.in_flight > 0) --m.in_flight;
  // Idle time counts from the end of the last request, not its start.
  m.last_used_ms = std::max(m.last_used_ms, now);
  step(now, out);
  return out;
}

Actions Scheduler::loaded(const std::string& model, int port, int64_t pid, int64_t keep_alive_ms, bool by_hand,
                          int64_t now, Launch running, int slots) {
  auto& m = touch(model);
  m.phase = Phase::ready;
  m.running = running;
  m.port = port;
  m.pid = pid;
  m.keep_alive_ms = keep_alive_ms;
  m.by_hand = by_hand;
  m.last_used_ms = now;
  m.owed_until_ms = now;
  m.slots = slots;
  m.blockers.clear();
  if (queue_load_ == model) queue_load_.clear();
  Actions out;
  step(now, out);
  return out;
}

void Scheduler::fail_all(const std::string& name, ModelState& m, int status, const std::string& message, Actions& out) {
  if (m.waiters.empty()) return;
  Action a{Action::Kind::fail, name, {}, 0, 0, status, message};
  for (const auto& w : m.waiters) a.waiters.push_back(w.id);
  m.waiters.clear();
  out.push_back(std::move(a));
}

Actions Scheduler::load_failed(const std::string& model, int status, const std::string& message) {
  auto& m = touch(model);
  m.phase = Phase::stopped;
  m.port = 0;
  m.pid = 0;
  m.blockers.clear();
  m.stale = m.removed = false;
  if (queue_load_ == model) queue_load_.clear();
  Actions out;
  fail_all(model, m, status, message, out);
  step(0, out);
  return out;
}

std::vector<std::string> Scheduler::eviction_candidates(const std::string& model) const {
  struct Candidate {
    int rank;  // 0: stopping already, 1: idle, 2: busy or starting
    int last;  // 0: another instance of its model stays up; 1: its model's last
    int in_flight;
    int64_t last_used;
    std::string name;
  };
  std::vector<Candidate> c;
  for (const auto& [name, m] : models_) {
    if (model_of(name, m) == model || m.phase == Phase::stopped || m.phase == Phase::queued) continue;
    if (m.by_hand && m.keep_alive_ms < 0) continue;  // loaded by hand with no keep-alive: the user's to stop
    const bool idle = m.phase == Phase::ready && m.in_flight == 0 && m.waiters.empty();
    const int rank = m.phase == Phase::stopping ? 0 : idle ? 1 : 2;
    c.push_back({rank, other_instance_up(model_of(name, m), name) ? 0 : 1, m.in_flight, m.last_used_ms, name});
  }
  std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.rank, a.last, a.in_flight, a.last_used, a.name) <
           std::tie(b.rank, b.last, b.in_flight, b.last_used, b.name);
  });
  std::vector<std::string> out;
  for (auto& x : c) out.push_back(std::move(x.name));
  return out;
}

Actions Scheduler::no_room(const std::string& model, const std::vector<std::string>& blockers, int64_t now) {
  auto& m = touch(model);
  m.phase = m.waiters.empty() ? Phase::stopped : Phase::queued;
  m.blockers = m.waiters.empty() ? std::vector<std::string>{} : blockers;
  if (queue_load_ == model) queue_load_.clear();
  Actions out;
  step(now, out);
  return out;
}

void Scheduler::restart_for_waiters(const std::string& name, Actions& out) {
  auto it = models_.find(name);
  if (it == models_.end()) return;
  auto& m = it->second;
  if (m.waiters.empty() || m.phase != Phase::stopped || other_instance_up(name, name)) return;
  m.epoch = ++epoch_;
  m.blockers.clear();
  if (head() || !queue_load_.empty()) {
    m.phase = Phase::queued;  // in line behind those who waited longer
    return;
  }
  m.phase = Phase::starting;
  out.push_back({Action::Kind::load, name, {}, 0, 0, 0, {}});
}

Actions Scheduler::stopped(const std::string& model, int64_t now) {
  auto& m = touch(model);
  m.port = 0;
  m.pid = 0;
  m.phase = Phase::stopped;
  // A model whose config changed comes back with it, waited for or not (a
  // replica only if requests want it: scale() decides).
  const bool restart = m.stale && !m.removed && m.replica_of.empty();
  m.stale = m.removed = false;
  Actions out;
  restart_for_waiters(model_of(model, m), out);
  if (restart && m.phase == Phase::stopped && !head() && queue_load_.empty()) {
    m.phase = Phase::starting;
    // What requests made it start with (embeddings, reranking), but the context the config says now.
    m.want = {m.running.embeddings, 0, 0, m.running.reranking, 0};
    out.push_back({Action::Kind::load, model, {}, 0, 0, 0, {}});
  }
  step(now, out);
  return out;
}

Actions Scheduler::reconfigure(const std::vector<std::string>& changed, const std::vector<std::string>& removed,
                               int64_t now) {
  const auto mark = [&](const std::string& model, bool gone) {
    for (const auto& name : instances_of(model)) {
      auto& m = models_.at(name);
      // Stopped, queued or stopping: its next load reads the new config anyway.
      if (m.by_hand || (m.phase != Phase::ready && m.phase != Phase::starting)) continue;
      (gone ? m.removed : m.stale) = true;
      m.epoch = ++epoch_;
    }
  };
  for (const auto& name : changed) mark(name, false);
  for (const auto& name : removed) mark(name, true);
  Actions out;
  step(now, out);
  return out;
}

void Scheduler::step(int64_t now, Actions& out) {
  // Free slots go to waiters, oldest first, each to the least busy instance
  // of its model, unless the instance drains for the head.
  for (auto& [name, m] : models_) {
    if (!m.replica_of.empty() || m.waiters.empty()) continue;
    std::map<int, Action> grants;  // by port
    while (!m.waiters.empty()) {
      auto* e = pick(name, m.waiters.front().since_ms, {});
      if (!e) break;
      auto& inst = e->second;
      auto& g = grants.try_emplace(inst.port, Action{Action::Kind::grant, name, {}, inst.port, 0, 0, {}}).first->second;
      g.waiters.push_back(m.waiters.front().id);
      m.waiters.pop_front();
      ++inst.in_flight;
      inst.last_used_ms = std::max(inst.last_used_ms, now);
    }
    for (auto& [port, g] : grants) out.push_back(std::move(g));
  }
  // A changed model's instance stops once nothing is in flight (what waits
  // for it waits for the restart); a removed one once idle.
  for (auto& [name, m] : models_) {
    if (m.phase != Phase::ready || m.in_flight > 0 || !(m.stale || m.removed)) continue;
    if (!m.stale && !m.waiters.empty()) continue;  // removed: serves what still waits first
    m.phase = Phase::stopping;
    m.epoch = ++epoch_;
    out.push_back({Action::Kind::stop, name, {}, 0, m.pid, 0, m.removed ? "removed" : "config_changed"});
  }
  // Queued models whose requests all left have nothing to wait for.
  for (auto& [name, m] : models_)
    if (m.phase == Phase::queued && m.waiters.empty()) {
      m.phase = Phase::stopped;
      m.blockers.clear();
      m.epoch = ++epoch_;
    }
  std::vector<std::pair<int64_t, std::string>> order;
  for (const auto& [name, m] : models_)
    if (m.phase == Phase::queued) order.emplace_back(m.waiters.front().since_ms, name);
  if (order.empty()) return;
  std::sort(order.begin(), order.end());
  const auto gone = [&](const ModelState& q) {
    for (const auto& b : q.blockers)
      if (const auto* bm = find(b); bm && bm->phase != Phase::stopped && bm->phase != Phase::queued) return false;
    return true;
  };
  // Only the head evicts, and only instances with nothing to do for anyone older.
  const std::string& head_name = order.front().second;
  for (const auto& b : models_.at(head_name).blockers) {
    auto it = models_.find(b);
    if (it == models_.end()) continue;
    auto& bm = it->second;
    if (bm.phase != Phase::ready || bm.in_flight > 0 || (bm.by_hand && bm.keep_alive_ms < 0)) continue;
    if (!bm.waiters.empty() && may_admit(b, bm, bm.waiters.front().since_ms)) continue;
    bm.phase = Phase::stopping;
    bm.epoch = ++epoch_;
    ++swaps_;
    out.push_back({Action::Kind::stop, b, {}, 0, bm.pid, 0, "evicted"});
  }
  if (!queue_load_.empty()) return;  // one load from the queue at a time
  for (const auto& [since, name] : order) {
    auto& q = models_.at(name);
    if (!q.blockers.empty() && !gone(q)) continue;
    q.phase = Phase::starting;
    q.blockers.clear();
    q.epoch = ++epoch_;
    queue_load_ = name;
    out.push_back({Action::Kind::load, name, {}, 0, 0, 0, {}});
    return;
  }
}

Actions Scheduler::expired(int64_t now) {
  Actions out;
  for (auto& [name, m] : models_) {
    if (m.phase != Phase::ready || m.keep_alive_ms < 0 || m.in_flight > 0 || !m.waiters.empty()) continue;
    if (now < m.last_used_ms + m.keep_alive_ms) continue;
    m.phase = Phase::stopping;
    m.epoch = ++epoch_;
    out.push_back({Action::Kind::stop, name, {}, 0, m.pid, 0, m.keep_alive_ms == 0 ? "keep_alive_0" : "idle"});
  }
  return out;
}

Actions Scheduler::timeouts(int64_t now, int64_t timeout_ms) {
  Actions out;
  for (auto& [name, m] : models_) {
    if (m.phase == Phase::starting || m.waiters.empty() || now - m.waiters.front().since_ms < timeout_ms) continue;
    std::string why;
    int up = 0;
    for (const auto& n : instances_of(name)) up += models_.at(n).phase == Phase::ready ? 1 : 0;
    if (up > 1 || (up == 1 && m.phase != Phase::ready)) {
      why = "every slot of its " + std::to_string(up) + " instances was busy";
    } else
      switch (m.phase) {
        case Phase::queued:
          why = m.blockers.empty()
                    ? "it was in line behind other models waiting for room on the GPUs"
                    : "the GPUs it needs were held by serve's busy instances of " + join(m.blockers, ", ");
          break;
        case Phase::ready:
          if (m.stale) {
            why = "its instance was finishing its requests to restart with its changed config";
            break;
          }
          why = m.slots > 0 ? "all " + std::to_string(m.slots) + " slots of its instance were busy"
                            : "its instance was busy";
          break;
        default:
          why = "its instance was stopping";
      }
    Action a{Action::Kind::fail, name, {}, 0, 0, 503, {}};
    while (!m.waiters.empty() && now - m.waiters.front().since_ms >= timeout_ms) {
      a.reason = "waited " + seconds_text(now - m.waiters.front().since_ms) + " in the queue for '" + name +
                 "' (queue_timeout): " + why;
      a.waiters.push_back(m.waiters.front().id);
      m.waiters.pop_front();
    }
    out.push_back(std::move(a));
  }
  if (!out.empty()) step(now, out);
  return out;
}

void Scheduler::set_scaling(const std::string& model, int replicas, int64_t scale_after_ms) {
  auto& m = models_[model];
  m.replicas = std::max(1, replicas);
  m.scale_after_ms = std::max<int64_t>(0, scale_after_ms);
}

Actions Scheduler::scale(int64_t now) {
  Actions out;
  if (head() || !queue_load_.empty()) return out;  // the idle GPUs are for the model that waits for room
  for (auto& [name, m] : models_) {
    if (!m.replica_of.empty() || m.replicas <= 1 || m.waiters.empty() || m.stale || m.removed) continue;
    if (now < m.no_scale_until_ms || now - m.waiters.front().since_ms < m.scale_after_ms) continue;
    bool ready = false, starting = false;
    std::string free;
    Launch running;
    for (int k = 1; k <= m.replicas; ++k) {
      const std::string key = state::replica_name(name, k);
      const auto it = models_.find(key);
      const Phase p = it == models_.end() ? Phase::stopped : it->second.phase;
      if (p == Phase::stopped) {
        if (free.empty()) free = key;
      } else if (p == Phase::ready) {
        ready = true;
        running = it->second.running;
      } else if (p != Phase::stopping) {
        starting = true;
      }
    }
    // Only a loaded model scales out (a cold one loads as usual), one instance at a time.
    if (!ready || starting || free.empty()) continue;
    auto& r = touch(free);
    r.phase = Phase::starting;
    r.replica_of = free == name ? std::string() : name;
    r.want = merged(running, {});
    r.blockers.clear();
    r.stale = r.removed = false;
    out.push_back({Action::Kind::load, free, {}, 0, 0, 0, "scale_out"});
  }
  return out;
}

Actions Scheduler::scale_failed(const std::string& instance, int64_t now, int64_t pause_ms) {
  auto& r = touch(instance);
  r.phase = Phase::stopped;
  r.port = 0;
  r.pid = 0;
  const std::string model = model_of(instance, r);
  models_[model].no_scale_until_ms = now + pause_ms;
  Actions out;
  restart_for_waiters(model, out);  // nothing else may be up any more
  step(now, out);
  return out;
}

Actions Scheduler::set_slots(const std::string& model, int slots, int64_t now) {
  Actions out;
  auto it = models_.find(model);
  if (it == models_.end() || it->second.phase != Phase::ready) return out;
  it->second.slots = slots;
  step(now, out);
  return out;
}

SyncResult Scheduler::sync(uint64_t mark, const std::vector<Record>& live, int64_t now) {
  SyncResult r;
  const auto record_of = [&](const std::string& model) -> const Record* {
    for (const auto& rec : live)
      if (rec.model == model) return &rec;
    return nullptr;
  };
  for (auto& [name, m] : models_) {
    if (m.phase != Phase::ready || m.epoch > mark) continue;
    const Record* rec = record_of(name);
    if (!rec || rec->pid != m.pid) {
      // Unloaded behind our back, or died: never send another request to that port.
      m.phase = Phase::stopped;
      m.port = 0;
      m.pid = 0;
      m.stale = m.removed = false;
      m.epoch = ++epoch_;
      r.vanished.push_back(name);
      continue;
    }
    m.keep_alive_ms = rec->keep_alive_ms;  // `load --keep-alive` on a running model changes it
    m.last_used_ms = std::max(m.last_used_ms, rec->last_used_ms);
  }
  for (const auto& rec : live) {
    auto it = models_.find(rec.model);
    const bool just_vanished = std::find(r.vanished.begin(), r.vanished.end(), rec.model) != r.vanished.end();
    if (!rec.running ||
        (it != models_.end() && ((it->second.phase != Phase::stopped && it->second.phase != Phase::queued) ||
                                 (it->second.epoch > mark && !just_vanished))))
      continue;
    auto& m = models_[rec.model];
    m.replica_of = state::is_replica(rec.model) ? state::replica_base(rec.model) : std::string();
    m.phase = Phase::ready;
    m.owed_until_ms = now;  // whoever queued for it is served first
    m.slots = 0;
    m.blockers.clear();
    m.port = rec.port;
    m.pid = rec.pid;
    m.keep_alive_ms = rec.keep_alive_ms;
    m.by_hand = rec.by_hand;
    m.running = rec.launch;
    m.last_used_ms = rec.last_used_ms > 0 ? rec.last_used_ms : now;
    m.epoch = ++epoch_;
    r.adopted.push_back(rec.model);
  }
  // Requests that waited on an instance that vanished get a fresh one.
  for (const auto& name : r.vanished)
    if (const auto& m = models_.at(name); m.phase == Phase::stopped) restart_for_waiters(model_of(name, m), r.actions);
  step(now, r.actions);
  return r;
}

void Scheduler::set_keep_alive(const std::string& model, int64_t keep_alive_ms) {
  auto it = models_.find(model);
  if (it == models_.end()) return;
  it->second.keep_alive_ms = keep_alive_ms;
  it->second.epoch = ++epoch_;  // a state reading taken before this must not undo it
}

std::optional<int64_t> Scheduler::next_expiry() const {
  std::optional<int64_t> next;
  for (const auto& [name, m] : models_) {
    if (m.phase != Phase::ready || m.keep_alive_ms < 0) continue;
    const int64_t at = m.last_used_ms + m.keep_alive_ms;
    if (!next || at < *next) next = at;
  }
  return next;
}

const ModelState* Scheduler::find(const std::string& model) const {
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : &it->second;
}

size_t Scheduler::queued() const {
  size_t n = 0;
  for (const auto& [name, m] : models_) n += m.waiters.size();
  return n;
}

int Scheduler::in_flight() const {
  int n = 0;
  for (const auto& [name, m] : models_) n += m.in_flight;
  return n;
}

}  // namespace llamactl::serve
