#include "ui/render.h"

#include <algorithm>

#include "placement/placement.h"
#include "ui/table.h"
#include "util/duration.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::ui {
namespace {

std::string state_text(const gpu::GpuStatus& g, const Terminal& term) {
  switch (g.state) {
    case gpu::GpuState::idle:
      return term.paint("idle", Color::green);
    case gpu::GpuState::model_loaded:
      return term.paint("ours: " + printable(g.model_name.value_or("?")), Color::blue);
    case gpu::GpuState::occupied_by_others:
      return term.paint("occupied by others", Color::yellow);
    case gpu::GpuState::unavailable:
      return term.paint(
          "unavailable" + (g.reading.error.empty() ? std::string() : " (" + printable(g.reading.error) + ")"),
          Color::red);
    case gpu::GpuState::not_ours:
      return term.paint("not ours to use", Color::dim);
  }
  return "?";
}

std::string process_line(const gpu::ProcessInfo& p) {
  std::string s = p.pid ? "pid " + std::to_string(*p.pid) : "pid ?";
  // Names and users come from other users' processes: never raw to the terminal.
  s += "  " + (p.name.empty() ? std::string("(no name)") : printable(p.name));
  s += "  " + (p.used_memory_mib ? std::to_string(*p.used_memory_mib) + " MiB" : std::string("n/a"));
  if (p.user) s += "  user " + printable(*p.user);
  if (p.ours) s += "  (ours)";
  return s;
}

}  // namespace

std::string memory_text(std::optional<int64_t> used, std::optional<int64_t> total) {
  if (!used) return total ? "n/a / " + std::to_string(*total) + " MiB" : "n/a";
  if (!total || *total <= 0) return std::to_string(*used) + " MiB";
  return std::to_string(*used) + " / " + std::to_string(*total) + " MiB (" +
         std::to_string((*used * 100 + *total / 2) / *total) + "%)";
}

std::string render_gpus(const gpu::GpuView& view, const Terminal& term) {
  if (view.cpu_mode || view.gpus.empty()) {
    std::string out = "CPU Mode (No GPU Detected)\n";
    if (!view.cpu_reason.empty()) out += "  reason: " + view.cpu_reason + "\n";
    return out;
  }
  std::string out = "Total GPUs: " + std::to_string(view.gpus.size()) + "\n";
  TextTable t({"GPU", "NAME", "MEMORY", "UTIL", "STATE"});
  for (const auto& g : view.gpus) {
    t.add({std::to_string(g.reading.index), g.reading.name.empty() ? "?" : printable(g.reading.name),
           memory_text(g.reading.memory_used_mib, g.reading.memory_total_mib),
           g.reading.utilization_pct ? std::to_string(*g.reading.utilization_pct) + "%" : "n/a", state_text(g, term)});
  }
  // Processes under the table, per GPU, so long names do not widen it.
  out += t.render();
  // Why some GPUs are not ours to use: where the restriction came from.
  if (!view.restriction_error.empty())
    out += "Placement: " + view.restriction_error + "\n";
  else if (!view.restricted_by.empty())
    out += "Placement: only the GPUs we were given (" + view.restricted_by + ")\n";
  for (const auto& g : view.gpus) {
    if (g.state != gpu::GpuState::occupied_by_others && g.state != gpu::GpuState::model_loaded) continue;
    if (g.processes.empty()) continue;
    out += "GPU " + std::to_string(g.reading.index) + " processes:\n";
    for (const auto& p : g.processes) out += "  " + process_line(p) + "\n";
  }
  // Why a Windows desktop GPU with apps open reads idle: they only draw.
  for (const auto& g : view.gpus) {
    if (g.desktop_apps.empty()) continue;
    std::vector<std::string> names;
    for (const auto& p : g.desktop_apps) {
      const std::string_view b = basename_any(p.name);
      const std::string base = b.empty() ? std::string(1, '?') : printable(b);
      if (std::find(names.begin(), names.end(), base) == names.end()) names.push_back(base);
    }
    out += "GPU " + std::to_string(g.reading.index) +
           " desktop apps (they draw, type G/C+G; not occupants): " + join(names, ", ") + "\n";
  }
  return out;
}

std::string render_status(const runtime::View& view, int64_t now, const Terminal& term) {
  std::string out = render_gpus(view.gpus, term);
  out += "\n";
  if (view.instances.empty()) return out + "No instances.\n";
  TextTable t({"MODEL", "GPUS", "URL", "PID", "STATE", "UPTIME", "MEMORY", "LAST USE", "REAPED"});
  for (const auto& i : view.instances) {
    Color c = Color::none;
    if (i.state == "running")
      c = Color::green;
    else if (i.state == "starting")
      c = Color::yellow;
    else
      c = Color::red;
    const std::string last =
        i.rec.last_used_at_ms > 0 ? human_duration_s((now - i.rec.last_used_at_ms) / 1000) + " ago" : "-";
    std::string reap = "never";
    if (i.expires_at_ms && i.no_reaper)
      reap = "no serve runs";  // its keep-alive is for serve, and none runs to act on it
    else if (i.expires_at_ms)
      reap = *i.expires_at_ms <= now ? "due" : "in " + human_duration_s((*i.expires_at_ms - now) / 1000);
    if (i.state == "dead") {
      // A dead record holds no port and no memory; say since when it is dead instead.
      const std::string since =
          i.rec.died_at_ms ? "dead " + human_duration_s((now - *i.rec.died_at_ms) / 1000) + " ago" : "dead";
      t.add({i.rec.model, placement::gpus_text(i.rec.gpus), "-", std::to_string(i.rec.pid), term.paint(since, c), "-",
             "-", i.rec.exit_code ? "exit code " + std::to_string(*i.rec.exit_code) : "-", "-"});
      continue;
    }
    t.add({i.rec.model, placement::gpus_text(i.rec.gpus), "http://127.0.0.1:" + std::to_string(i.rec.port),
           std::to_string(i.rec.pid), term.paint(i.state, c), human_duration_s(i.uptime_s),
           i.rec.gpus.empty() ? "cpu" : memory_text(i.memory_used_mib, i.memory_total_mib), last, reap});
  }
  out += t.render();
  return out;
}

std::string render_loaded(const runtime::LoadOutcome& out, const Terminal& term) {
  const auto& i = out.instance;
  std::string s = out.already_running ? "'" + i.rec.model + "' already runs"
                                      : term.paint("loaded", Color::green) + " '" + i.rec.model + "'";
  s += " on " + placement::where_text(i.rec.gpus) + "\n";
  if (out.keep_alive_was)
    s += "keep-alive changed from " + format_duration_ms(*out.keep_alive_was) + " to " +
         format_duration_ms(i.rec.keep_alive_ms) + "\n";
  TextTable t({"", ""});  // two columns, no header line
  t.add({"url:", "http://127.0.0.1:" + std::to_string(i.rec.port)});
  t.add({"pid:", std::to_string(i.rec.pid)});
  t.add({"memory:", i.rec.gpus.empty() ? "cpu (no GPU memory)" : memory_text(i.memory_used_mib, i.memory_total_mib)});
  const auto& e = out.estimate;
  const std::string parts = "weights " + std::to_string(e.weights_mib) + ", KV cache " +
                            std::to_string(e.kv_cache_mib) + " at -c " + std::to_string(e.context);
  // On the CPU there is no CUDA context per GPU: the model, its cache and compute buffers take RAM.
  t.add({"estimate:", i.rec.gpus.empty() ? std::to_string(e.ram_mib()) + " MiB of RAM (" + parts +
                                               ", compute buffers " + std::to_string(placement::kComputeBufferMib) + ")"
                                         : std::to_string(e.total_mib(i.rec.gpus.size())) + " MiB (" + parts +
                                               ", overhead " + std::to_string(e.overhead_per_gpu_mib) + "/GPU)"});
  t.add({"log:", i.rec.log});
  s += t.render(2);
  return s;
}

std::string render_unloaded(const runtime::UnloadOutcome& out, const Terminal& term) {
  std::string s;
  if (out.stopped.empty()) return "Nothing to unload.\n";
  for (const auto& st : out.stopped) {
    if (st.was_dead) {
      s += "cleared the dead record of '" + st.rec.model + "' (pid " + std::to_string(st.rec.pid) +
           (st.rec.exit_code ? ", exit code " + std::to_string(*st.rec.exit_code) : std::string()) + ")\n";
      continue;
    }
    if (st.still_running) {
      s += term.paint("could not stop", Color::red) + " '" + st.rec.model + "' (pid " + std::to_string(st.rec.pid) +
           ")\n";
      continue;
    }
    s += "unloaded '" + st.rec.model + "' from " + placement::where_text(st.rec.gpus) + " (pid " +
         std::to_string(st.rec.pid) + (st.killed ? ", killed after the graceful stop timed out" : "") + ")";
    if (st.freed_mib) s += ", freed " + std::to_string(*st.freed_mib) + " MiB";
    s += "\n";
  }
  for (const auto& st : out.stopped) {
    if (st.was_dead) continue;
    for (int g : st.rec.gpus) {
      const auto* after = out.after.find(g);
      if (!after) continue;
      s += "  GPU " + std::to_string(g) + " now " +
           memory_text(after->reading.memory_used_mib, after->reading.memory_total_mib) + ", " +
           std::string(gpu::to_string(after->state)) + "\n";
    }
  }
  return s;
}

}  // namespace llamactl::ui
