#include "serve/scheduler.h"

#include <algorithm>
#include <optional>

#include "util/strings.h"

namespace llamactl::serve {

const char* to_string(Phase p) {
  switch (p) {
    case Phase::stopped:
      return "stopped";
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
  }
  l.ubatch = std::min(ubatch, batch);
  return l;
}

namespace {
Launch merged(Launch a, Launch b) {
  return {a.embeddings || b.embeddings, std::max(a.context, b.context), 0, a.reranking || b.reranking};
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

Admission Scheduler::admit(const std::string& model, uint64_t waiter, int64_t now, Launch needs) {
  auto& m = models_[model];
  switch (m.phase) {
    case Phase::ready: {
      const bool busy = m.in_flight > 0 || !m.waiters.empty();
      if (!satisfies(m, needs)) {
        if (!busy) {
          // Idle: restart it with what it has plus what this request needs.
          auto& s = touch(model);
          s.phase = Phase::stopping;
          s.restart = true;
          s.want = merged(s.running, needs);
          s.waiters.push_back(waiter);
          return {Admission::Kind::restart, 0};
        }
        if ((needs.embeddings && !m.running.embeddings) || (needs.reranking && !m.running.reranking))
          return {Admission::Kind::refuse, 0};
        // Busy and only short of context: serve as it is rather than reload under load.
      }
      ++m.in_flight;
      m.last_used_ms = std::max(m.last_used_ms, now);
      return {Admission::Kind::serve, m.port};
    }
    case Phase::starting:
      m.waiters.push_back(waiter);
      m.want = merged(m.want, needs);  // too late for the load in progress; kept for the next one
      return {Admission::Kind::wait, 0};
    case Phase::stopping:
      // Never join a dying instance: wait for the stop, then start anew.
      m.waiters.push_back(waiter);
      m.restart = true;
      m.want = merged(m.want, needs);
      return {Admission::Kind::wait, 0};
    case Phase::stopped:
      break;
  }
  auto& s = touch(model);
  s.phase = Phase::starting;
  s.want = needs;
  s.waiters.push_back(waiter);
  return {Admission::Kind::start, 0};
}

void Scheduler::cancel(const std::string& model, uint64_t waiter) {
  auto it = models_.find(model);
  if (it == models_.end()) return;
  auto& w = it->second.waiters;
  w.erase(std::remove(w.begin(), w.end(), waiter), w.end());
}

void Scheduler::finish(const std::string& model, int64_t now) {
  auto it = models_.find(model);
  if (it == models_.end()) return;
  auto& m = it->second;
  if (m.in_flight > 0) --m.in_flight;
  // Idle time counts from the end of the last request, not its start.
  m.last_used_ms = std::max(m.last_used_ms, now);
}

Grants Scheduler::loaded(const std::string& model, int port, int64_t pid, int64_t keep_alive_ms, bool by_hand,
                         int64_t now, Launch running) {
  auto& m = touch(model);
  m.phase = Phase::ready;
  m.running = running;
  m.port = port;
  m.pid = pid;
  m.keep_alive_ms = keep_alive_ms;
  m.by_hand = by_hand;
  m.restart = false;
  m.last_used_ms = now;
  Grants g;
  g.port = port;
  g.waiters.swap(m.waiters);
  m.in_flight += static_cast<int>(g.waiters.size());
  return g;
}

Grants Scheduler::load_failed(const std::string& model) {
  auto& m = touch(model);
  m.phase = Phase::stopped;
  m.port = 0;
  m.pid = 0;
  m.restart = false;
  Grants g;
  g.waiters.swap(m.waiters);
  return g;
}

std::optional<std::string> Scheduler::evict_for(const std::string& for_model) {
  const std::string* victim = nullptr;
  int64_t oldest = 0;
  for (const auto& [name, m] : models_) {
    if (name == for_model || m.phase != Phase::ready || m.in_flight > 0 || !m.waiters.empty()) continue;
    if (m.by_hand && m.keep_alive_ms < 0) continue;  // loaded by hand with no keep-alive: the user's to stop
    if (!victim || m.last_used_ms < oldest) {
      victim = &name;
      oldest = m.last_used_ms;
    }
  }
  if (!victim) return std::nullopt;
  const std::string name = *victim;
  touch(name).phase = Phase::stopping;
  return name;
}

std::vector<std::string> Scheduler::expired(int64_t now) {
  std::vector<std::string> out;
  for (auto& [name, m] : models_) {
    if (m.phase != Phase::ready || m.keep_alive_ms < 0 || m.in_flight > 0 || !m.waiters.empty()) continue;
    if (now < m.last_used_ms + m.keep_alive_ms) continue;
    m.phase = Phase::stopping;
    m.epoch = ++epoch_;
    out.push_back(name);
  }
  return out;
}

bool Scheduler::stopped(const std::string& model) {
  auto& m = touch(model);
  m.port = 0;
  m.pid = 0;
  if (m.restart && !m.waiters.empty()) {
    m.restart = false;
    m.phase = Phase::starting;
    return true;
  }
  m.restart = false;
  m.phase = Phase::stopped;
  return false;
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
        (it != models_.end() && (it->second.phase != Phase::stopped || (it->second.epoch > mark && !just_vanished))))
      continue;
    auto& m = models_[rec.model];
    m.phase = Phase::ready;
    m.port = rec.port;
    m.pid = rec.pid;
    m.keep_alive_ms = rec.keep_alive_ms;
    m.by_hand = rec.by_hand;
    m.running = rec.launch;
    m.last_used_ms = rec.last_used_ms > 0 ? rec.last_used_ms : now;
    m.epoch = ++epoch_;
    r.adopted.push_back(rec.model);
  }
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

int Scheduler::in_flight() const {
  int n = 0;
  for (const auto& [name, m] : models_) n += m.in_flight;
  return n;
}

}  // namespace llamactl::serve
