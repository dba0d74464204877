// Readings -> one View of GPUs and instances. Pure functions first, then
// Runtime::collect, which gathers the readings.

#include <algorithm>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "net/http_client.h"
#include "runtime/runtime.h"
#include "util/json_depth.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::runtime {
namespace {

class RealProcessOps final : public ProcessOps {
 public:
  Result<platform::Spawned> spawn(const platform::SpawnSpec& spec) override {
    auto s = platform::spawn_detached(spec);
    if (s) {
      std::lock_guard lock(mu_);
      children_.insert(s->pid);
      exited_.erase(s->pid);  // a reused pid: an earlier child's status is not this one's
    }
    return s;
  }
  bool alive(int64_t pid, uint64_t start_time) override {
    return platform::process_alive(pid, start_time ? std::optional<uint64_t>(start_time) : std::nullopt);
  }
  std::optional<int> try_reap(int64_t pid) override {
    std::lock_guard lock(mu_);
    if (const auto e = exited_.find(pid); e != exited_.end()) {
      const int code = e->second;
      exited_.erase(e);
      return code;
    }
    auto code = platform::try_reap(pid);
    if (code) children_.erase(pid);
    return code;
  }
  size_t reap_exited_children() override {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (auto it = children_.begin(); it != children_.end();) {
      if (const auto code = platform::try_reap(*it)) {
        // Kept for a later try_reap (a dead record's exit code); bounded (the lowest pid goes first).
        if (exited_.size() >= kKeepExited) exited_.erase(exited_.begin());
        exited_[*it] = *code;
        it = children_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }
  bool signal_group(int64_t pgid, platform::Signal sig) override { return platform::signal_group(pgid, sig); }
  std::optional<std::string> user_of(int64_t pid) override { return platform::process_user(pid); }
  bool port_available(int port) override { return platform::port_available(port); }

 private:
  static constexpr size_t kKeepExited = 256;
  std::mutex mu_;
  std::set<int64_t> children_;     // started by spawn(), not yet collected
  std::map<int64_t, int> exited_;  // collected by reap_exited_children(), status not yet asked for
};

class RealHealthProbe final : public HealthProbe {
 public:
  int health(int port, std::chrono::milliseconds timeout) override {
    auto r = net::http_get("127.0.0.1", port, "/health", timeout);
    return r ? r->status : 0;
  }
  std::optional<int> slots(int port, std::chrono::milliseconds timeout) override {
    auto r = net::http_get("127.0.0.1", port, "/props", timeout);
    if (!r || r->status != 200) return std::nullopt;
    return total_slots(r->body);
  }
};

}  // namespace

std::unique_ptr<ProcessOps> real_process_ops() {
  return std::make_unique<RealProcessOps>();
}
std::unique_ptr<HealthProbe> real_health_probe() {
  return std::make_unique<RealHealthProbe>();
}

Reconciled reconcile(const std::vector<state::Instance>& recorded,
                     const std::function<bool(const state::Instance&)>& alive, int64_t now_ms) {
  Reconciled r;
  for (const auto& i : recorded) {
    if (i.dead()) {
      r.dead.push_back(i);
    } else if (alive(i)) {
      r.live.push_back(i);
    } else {
      state::Instance d = i;
      d.state = "dead";
      d.died_at_ms = now_ms;
      r.died.push_back(d);
      r.dead.push_back(d);
    }
  }
  return r;
}

std::optional<int> total_slots(std::string_view props) {
  // The reply of our own child, still read as untrusted: bounded depth, no exceptions out.
  if (json_too_deep(props)) return std::nullopt;
  const auto j = nlohmann::json::parse(props, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  const auto it = j.find("total_slots");
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  const auto n = it->get<int64_t>();
  if (n < 1 || n > (1 << 20)) return std::nullopt;
  return static_cast<int>(n);
}

gpu::ProbeResult probe_without(const gpu::ProbeResult& probe, const std::vector<state::Instance>& gone) {
  gpu::ProbeResult out = probe;
  auto& snap = out.snapshot;
  const auto subtract = [&](std::optional<int> index, int64_t mib) {
    if (!index) return;
    for (auto& g : snap.gpus)
      if (g.index == *index && g.memory_used_mib) g.memory_used_mib = std::max<int64_t>(0, *g.memory_used_mib - mib);
  };
  for (const auto& inst : gone) {
    bool seen = false;
    for (auto it = snap.processes.begin(); it != snap.processes.end();) {
      if (it->pid && *it->pid == inst.pid) {
        seen = true;
        if (it->used_memory_mib) subtract(snap.gpu_of(*it), *it->used_memory_mib);
        it = snap.processes.erase(it);
      } else {
        ++it;
      }
    }
    // Its processes are hidden (a container): what the load estimated for it.
    if (!seen && inst.estimate_mib && !inst.gpus.empty())
      for (int g : inst.gpus) subtract(g, *inst.estimate_mib / static_cast<int64_t>(inst.gpus.size()));
  }
  return out;
}

std::vector<gpu::OurInstance> ours_of(const std::vector<state::Instance>& live) {
  std::vector<gpu::OurInstance> out;
  for (const auto& i : live) out.push_back({i.model, i.gpus, i.pid});
  return out;
}

gpu::ClassifyOptions classify_options(const config::Config& cfg, std::optional<int64_t> threshold_flag) {
  gpu::ClassifyOptions o;
  o.threshold_mib = threshold_flag.value_or(cfg.memory_threshold_mib);
  for (const auto& [idx, g] : cfg.gpu)
    if (g.threshold_mib) o.per_gpu_threshold_mib[idx] = *g.threshold_mib;
  o.ignore_processes = cfg.ignore_processes;
  return o;
}

namespace {

InstanceView view_of(const state::Instance& i, const gpu::ProbeResult& probe, std::optional<int> health, int64_t now) {
  InstanceView v;
  v.rec = i;
  v.uptime_s = i.started_at_ms > 0 ? std::max<int64_t>(0, (now - i.started_at_ms) / 1000) : 0;
  v.healthy = health && *health == 200;
  if (!health)
    v.state = i.state == "starting" ? "starting" : "running";
  else if (v.healthy)
    v.state = "running";
  else
    v.state = i.state == "starting" ? "starting" : "unhealthy";
  if (i.keep_alive_ms >= 0) v.expires_at_ms = std::max(i.last_used_at_ms, i.started_at_ms) + i.keep_alive_ms;
  if (!probe.cpu_mode && !i.gpus.empty()) {
    int64_t total = 0;
    bool total_known = true;
    for (int g : i.gpus) {
      const auto* r = probe.snapshot.find(g);
      if (r && r->memory_total_mib)
        total += *r->memory_total_mib;
      else
        total_known = false;
    }
    if (total_known) v.memory_total_mib = total;
    int64_t used = 0;
    bool seen = false, unknown = false;
    for (const auto& p : probe.snapshot.processes) {
      if (p.pid != i.pid) continue;
      seen = true;
      if (p.used_memory_mib)
        used += *p.used_memory_mib;
      else
        unknown = true;  // WDDM: per-process memory is not reported
    }
    if (seen && !unknown) v.memory_used_mib = used;
  }
  return v;
}

}  // namespace

View build_view(const gpu::ProbeResult& probe, const gpu::ClassifyOptions& opts, const Reconciled& rec,
                const std::map<std::string, int>& health, int64_t now, const gpu::UserLookup& user_of) {
  View v;
  v.gpus = gpu::classify(probe, opts, ours_of(rec.live), user_of);
  for (const auto& i : rec.live) {
    const auto h = health.find(i.model);
    v.instances.push_back(view_of(i, probe, h == health.end() ? std::nullopt : std::optional<int>(h->second), now));
  }
  for (const auto& i : rec.dead) {
    InstanceView d;
    d.rec = i;
    d.state = "dead";
    d.uptime_s = 0;
    v.instances.push_back(std::move(d));
  }
  v.dead_count = rec.dead.size();
  return v;
}

Result<Reconciled> Runtime::lock_and_reconcile(const state::Lock& lock, state::StateFile& st,
                                               std::vector<std::string>& notes) {
  auto loaded = dir_.load(lock, notes);
  if (!loaded) return loaded.error();
  st = std::move(*loaded);
  // Alive, and ours: a process that runs as another user is never taken for
  // one of our instances, whatever a record says (it would never be stopped).
  const auto ours = [&](const state::Instance& i) {
    if (!ops_.alive(i.pid, i.start_time)) return false;
    const auto owner = ops_.user_of(i.pid);
    return !owner || *owner == ops_.me();
  };
  Reconciled rec = reconcile(st.instances, ours, now_ms());
  if (rec.died.empty()) return rec;
  for (auto& d : rec.died) {
    // Our own child (serve's instances) has an exit status to collect; this also reaps the zombie.
    d.exit_code = ops_.try_reap(d.pid);
    notes.push_back("instance '" + d.model + "' (pid " + std::to_string(d.pid) + ", GPUs " +
                    placement::gpus_text(d.gpus) + ") died" +
                    (d.exit_code ? " with exit code " + std::to_string(*d.exit_code) : std::string()) +
                    "; kept as a dead record until it is loaded again or unloaded");
    if (auto s = dir_.remove_pidfile(lock, d.model); !s) notes.push_back(s.error().message);
    for (auto& i : st.instances)
      if (i.model == d.model && i.pid == d.pid && !i.dead()) i = d;
  }
  for (auto& d : rec.dead)
    for (const auto& n : rec.died)
      if (d.model == n.model && d.pid == n.pid) d.exit_code = n.exit_code;
  if (auto s = dir_.save(lock, st); !s) return s.error();
  return rec;
}

Result<View> Runtime::collect(bool probe_health) {
  std::vector<std::string> notes;
  Reconciled rec;
  {
    auto lock = dir_.lock();
    if (!lock) return lock.error();
    state::StateFile st;
    auto r = lock_and_reconcile(*lock, st, notes);
    if (!r) return r.error();
    rec = std::move(*r);
  }
  // GPU reading and health probes run at the same time, outside the lock.
  auto gpu_future = std::async(std::launch::async, [this] { return probe_.read(); });
  std::map<std::string, int> health;
  if (probe_health) {
    std::vector<std::pair<std::string, std::future<int>>> probes;
    for (const auto& i : rec.live) {
      const int port = i.port;
      probes.emplace_back(i.model, std::async(std::launch::async, [this, port] {
                            return health_.health(port, std::chrono::milliseconds(1000));
                          }));
    }
    for (auto& [model, f] : probes) health[model] = f.get();
    promote_healthy_starting(rec, health);
  }
  const auto probe = gpu_future.get();
  View v = build_view(probe, classify_opts(), rec, health, now_ms(), [this](int64_t pid) { return ops_.user_of(pid); });
  v.notices = std::move(notes);
  return v;
}

Result<View> Runtime::collect_with(const gpu::ProbeResult& probe) {
  std::vector<std::string> notes;
  Reconciled rec;
  {
    auto lock = dir_.lock();
    if (!lock) return lock.error();
    state::StateFile st;
    auto r = lock_and_reconcile(*lock, st, notes);
    if (!r) return r.error();
    rec = std::move(*r);
  }
  View v = build_view(probe, classify_opts(), rec, {}, now_ms(), [this](int64_t pid) { return ops_.user_of(pid); });
  v.notices = std::move(notes);
  return v;
}

Result<state::StateFile> Runtime::reconcile_state(std::vector<std::string>& notes) {
  auto lock = dir_.lock();
  if (!lock) return lock.error();
  state::StateFile st;
  if (auto r = lock_and_reconcile(*lock, st, notes); !r) return r.error();
  return st;
}

void Runtime::promote_healthy_starting(Reconciled& rec, const std::map<std::string, int>& health) {
  // A loader that was killed during its health wait leaves a `starting`
  // record behind; once the server answers, the record says so.
  const auto healthy_starting = [&](const state::Instance& i) {
    const auto h = health.find(i.model);
    return i.state == "starting" && h != health.end() && h->second == 200;
  };
  if (std::none_of(rec.live.begin(), rec.live.end(), healthy_starting)) return;
  auto lock = dir_.lock();
  if (!lock) return;
  std::vector<std::string> ignored;
  auto st = dir_.load(*lock, ignored);
  if (!st) return;
  bool changed = false;
  for (auto& i : rec.live) {
    if (!healthy_starting(i)) continue;
    if (auto* r = st->find(i.model); r && r->pid == i.pid && r->state == "starting") {
      r->state = "running";
      changed = true;
    }
    i.state = "running";
  }
  if (changed && !dir_.save(*lock, *st)) log::warn("cannot update {}", dir_.state_path());
}

InstanceView Runtime::describe(const state::Instance& inst, const gpu::ProbeResult& probe, int health_status) {
  return view_of(inst, probe, health_status, now_ms());
}

std::string log_tail(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += "  | " + l + "\n";
  return out;
}

}  // namespace llamactl::runtime
