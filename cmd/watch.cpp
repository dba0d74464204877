// watch: a live view of the GPUs and our instances. Readings come from one
// long-running nvidia-smi (the GpuMonitor) through the same collect code as
// `status`; ui::render_watch draws a frame; this file only runs the loop: the
// terminal (alternate screen, keys, resize), the interval, and plain frames
// when stdout is not a terminal.

#include <algorithm>

#include "commands.h"
#include "gpu/monitor.h"
#include "platform/platform.h"
#include "ui/watch.h"
#include "util/duration.h"
#include "util/log.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::cmd {
namespace {
using Clock = std::chrono::steady_clock;
// Plain frames are not cut to a screen's height.
constexpr int kPlainRows = 10000;
}  // namespace

CLI::App* setup_watch(CLI::App& app, WatchOptions& o) {
  auto* sub = app.add_subcommand("watch", "Live view of the GPUs and our instances (q quits, r refreshes)");
  sub->add_option("--interval", o.interval, "Time between readings: 2s (default), 500ms, 1m, or seconds");
  sub->add_flag("--once", o.once, "Print one frame and exit");
  return sub;
}

int run_watch(const WatchOptions& o, Context& ctx) {
  auto interval_ms = parse_duration_ms(o.interval);
  if (!interval_ms || *interval_ms < 100)
    return fail(ctx, make_error(ErrorKind::usage, "--interval: '" + o.interval +
                                                      "' is not a duration of at least 100ms (e.g. 2s, 500ms)"));
  const auto interval = std::chrono::milliseconds(*interval_ms);
  const auto smi_timeout = std::chrono::milliseconds(static_cast<int64_t>(ctx.global.smi_timeout_s * 1000));
  auto monitor_owned = std::make_unique<gpu::GpuMonitor>(gpu::monitor_options_from_env(interval, smi_timeout));
  gpu::GpuMonitor& monitor = *monitor_owned;
  ctx.set_probe(std::move(monitor_owned));
  auto rt = ctx.runtime(std::nullopt);
  if (!rt) return fail(ctx, rt.error());

  // Full screen only on a terminal and not for --once; otherwise plain frames.
  std::unique_ptr<platform::TerminalSession> term = o.once ? nullptr : platform::TerminalSession::open();
  const bool color = term && ctx.term.color();
  ui::WatchHistory history;
  uint64_t seen_readings = 0;
  std::optional<ui::WatchFrame> last;

  const auto take_reading = [&]() -> ui::WatchFrame {
    ui::WatchFrame f;
    f.interval_ms = *interval_ms;
    auto view = (*rt)->collect(false);
    if (view) mark_reaper(*view, (*rt)->state_dir());
    gpu::GpuView sample;  // what this reading said: a failed one is a gap in the history
    sample.cpu_mode = true;
    if (view) {
      const bool lost = view->gpus.cpu_mode && last && !last->view.gpus.gpus.empty();
      sample = view->gpus;
      f.view = std::move(*view);
      if (lost) {
        // GPUs were read before: this reading failed (nvidia-smi hung or
        // died). Keep the GPUs on screen, marked n/a, and keep going.
        f.reading_ok = false;
        f.reading_error = f.view.gpus.cpu_reason;
        f.view.gpus = last->view.gpus;
      }
    } else {
      f.reading_ok = false;
      f.reading_error = view.error().message;
      if (last) f.view = last->view;  // keep showing what we knew, marked n/a
    }
    const uint64_t n = monitor.readings();
    if (n != seen_readings) {  // one history sample per new reading, not per redraw
      seen_readings = n;
      history.add(sample);
    }
    const auto at = monitor.read_at();
    f.now_ms = now_ms();
    f.read_at_ms = at == Clock::time_point{}
                       ? f.now_ms
                       : f.now_ms - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - at).count();
    return f;
  };

  if (!term) {
    // A pipe, a log, or --once: plain frames, no escape codes.
    for (;;) {
      last = take_reading();
      const ui::WatchSize size{platform::terminal_columns(), kPlainRows};
      print(ui::render_watch(*last, history, size, false));
      if (o.once || platform::interrupted()) break;
      print("\n");
      const auto until = Clock::now() + interval;
      while (Clock::now() < until && !platform::interrupted()) platform::sleep_for(std::chrono::milliseconds(50));
      if (platform::interrupted()) break;
    }
    return code(Exit::ok);
  }

  auto next = Clock::now();
  for (;;) {
    if (Clock::now() >= next) {
      last = take_reading();
      next = Clock::now() + interval;
    }
    const auto sz = term->size();
    const ui::WatchSize size{sz.cols, sz.rows};
    term->write(ui::screen_update(ui::render_watch(*last, history, size, color), size));
    char key = 0;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    const auto ev = term->wait(std::max(left, std::chrono::milliseconds(0)), key);
    if (ev == platform::TerminalSession::Event::interrupted) break;
    if (ev == platform::TerminalSession::Event::key) {
      if (key == 'q' || key == 'Q') break;
      if (key == 'r' || key == 'R') next = Clock::now();  // a fresh frame now (the monitor keeps its own pace)
    }
    // resize: redrawn at the top of the loop with the new size, no new reading
  }
  term.reset();  // the terminal is restored before anything else is printed
  monitor.stop();
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
