// GpuMonitor: two `nvidia-smi ... -lms N` streams (GPUs, processes), each
// read on its own thread, cut into blocks (monitor_blocks.cpp), parsed by the
// one-shot parsers and merged into one reading under a mutex. The one-shot
// fallback runs the queries through platform::LineStream as well, so that
// stop() can kill a hung nvidia-smi instead of waiting for its deadline.

#include "gpu/monitor.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "gpu/parse.h"
#include "platform/platform.h"
#include "util/log.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The longest a reader waits before it looks around again: stop() and the
// fallback wake it through a Waker, so this is only a backstop.
constexpr auto kLongestWait = 1s;
// A helper that inherited the pipe may keep it open after nvidia-smi exits.
constexpr auto kExitGrace = 100ms;
constexpr auto kFirstBackoff = 1s;
// How long process types learnt from the table are trusted on a WDDM GPU
// (a pid reused under the same name, a window closed): then it runs again.
constexpr auto kTypesRefresh = 30s;
constexpr auto kMaxBackoff = 30s;

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", std::chrono::duration<double>(d).count());
  return buf;
}

// "--query-gpu=index,..." -> "--query-gpu=timestamp,index,...": the stream
// asks for the one-shot columns, stamped, so the one-shot parsers read it.
std::string stamped(std::string_view query) {
  const size_t eq = query.find('=') + 1;
  return std::string(query.substr(0, eq)) + "timestamp," + std::string(query.substr(eq));
}

struct Apps {
  std::vector<GpuProcess> processes;
  bool known = true;
  std::vector<std::string> warnings;
};

// `-lms 0` would make nvidia-smi spin, and a zero timeout would give no reading at all.
MonitorOptions sane(MonitorOptions o) {
  o.interval = std::max<std::chrono::milliseconds>(o.interval, 10ms);
  o.timeout = std::max<std::chrono::milliseconds>(o.timeout, 100ms);
  return o;
}

Apps apps_from_block(const std::string& block) {
  Apps a;
  if (trim(block).empty()) return a;
  auto parsed = parse_csv(block);
  if (!parsed) {
    a.known = false;
    a.warnings.push_back("process stream: " + parsed.error().message);
    return a;
  }
  a.processes = std::move(parsed->processes);
  a.warnings = std::move(parsed->warnings);
  return a;
}

}  // namespace

class GpuMonitor::Impl {
 public:
  explicit Impl(MonitorOptions o) : opt_(sane(std::move(o))) {}
  void start() {
    main_ = std::thread([this] { run(); });
  }
  void stop();
  ProbeResult read();
  Clock::time_point read_at() const;
  bool streaming() const { return streaming_; }
  uint64_t readings() const { return readings_; }

 private:
  enum class End { stopped, fallback, restart };
  struct OneShot {
    ProbeResult result;
    bool started = false;
  };

  void run();
  void run_one_shots(bool read_first);
  End run_stream(StreamKind kind);
  End pump(StreamKind kind, platform::LineStream& stream, bool& looped);
  OneShot one_shot();
  platform::CaptureResult collect(platform::LineStream& s, const Status& started, Clock::time_point deadline);
  std::vector<std::string> stream_argv(StreamKind kind) const;
  void deliver(StreamKind kind, const std::string& block);
  void publish_gpus(ProbeResult r);
  bool should_type(const GpuSnapshot& reading) const;
  void learn_types(const GpuSnapshot& reading);
  void type_latest();
  void publish_whole(ProbeResult r);
  void compose();
  bool wait_or_halt(std::chrono::milliseconds d, bool on_fallback);
  void fall_back();
  bool halted() const { return stopping_ || fallback_; }

  const MonitorOptions opt_;
  std::thread main_;
  std::mutex join_mu_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> fallback_{false};  // a stream showed that streaming is not possible here
  std::atomic<bool> streaming_{false};
  std::atomic<uint64_t> readings_{0};
  platform::Waker stop_waker_;  // set by stop(): ends the one-shot reads' waits
  platform::Waker halt_waker_;  // set by stop() and fall_back(): ends the streams' waits

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  std::optional<ProbeResult> gpus_;  // the GPU half of the reading (no processes)
  Apps apps_;
  std::optional<ProbeResult> latest_;
  Clock::time_point read_at_{};
  ProcessTypes types_;                  // the last run of the table (WDDM GPUs only)
  Clock::time_point types_at_{};        // when it ran
  std::optional<std::string> untyped_;  // why that run told nothing, while it is the last
};

// ---- the threads ----

void GpuMonitor::Impl::run() {
  if (!opt_.fixture.empty()) return run_one_shots(true);
  // One one-shot query first: a reading at once (the streams need an
  // interval or two to show an empty process list), and it tells whether
  // the program runs at all.
  OneShot first = one_shot();
  if (stopping_) return;
  publish_whole(std::move(first.result));
  if (!first.started) return run_one_shots(false);
  streaming_ = true;
  std::thread apps([this] {
    if (run_stream(StreamKind::apps) == End::fallback) fall_back();
  });
  if (run_stream(StreamKind::gpus) == End::fallback) fall_back();
  apps.join();
  streaming_ = false;
  if (!stopping_) run_one_shots(false);
}

void GpuMonitor::Impl::run_one_shots(bool read_first) {
  log::debug("GPU monitor: one-shot queries every {}", seconds_text(opt_.interval));
  if (read_first || !wait_or_halt(opt_.interval, false)) {
    do {
      if (!opt_.fixture.empty()) {
        publish_whole(FixtureProbe(opt_.fixture).read());
      } else {
        OneShot r = one_shot();
        if (stopping_) return;
        publish_whole(std::move(r.result));
      }
    } while (!wait_or_halt(opt_.interval, false));
  }
}

// Runs one stream until stop, restarting it after it dies. A first run that
// ends like a one-shot program (under two rounds, within two intervals)
// means this program does not stream: fall back.
GpuMonitor::Impl::End GpuMonitor::Impl::run_stream(StreamKind kind) {
  auto backoff = std::chrono::milliseconds(kFirstBackoff);
  for (bool first = true; !halted(); first = false) {
    platform::LineStream stream;
    if (auto st = stream.start(stream_argv(kind)); !st) {
      if (first) return End::fallback;
      log::warn("GPU monitor: cannot restart the nvidia-smi stream: {}", st.error().message);
    } else {
      bool looped = false;
      if (pump(kind, stream, looped) == End::fallback && first) return End::fallback;
      if (looped) backoff = kFirstBackoff;  // it worked for a while: not a crash loop
    }
    stream.kill();
    if (halted()) break;
    // While the GPU stream is down, one one-shot reading keeps the reading
    // honest: fresh if only the stream broke, CPU mode with a reason if nvidia-smi did.
    if (kind == StreamKind::gpus) {
      OneShot r = one_shot();
      if (stopping_) break;
      publish_whole(std::move(r.result));
    }
    log::warn("GPU monitor: nvidia-smi stream ended; restarting it in {}", seconds_text(backoff));
    if (wait_or_halt(backoff, true)) break;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
  }
  return stopping_ ? End::stopped : End::fallback;
}

// Reads one run of a stream, delivering blocks as they complete. Returns at
// stop, at the end of the stream, or (GPU stream) when no block came for
// max(timeout, 3 intervals): a wedged nvidia-smi is killed and restarted.
// `looped`: the run showed two rounds or lived two intervals.
GpuMonitor::Impl::End GpuMonitor::Impl::pump(StreamKind kind, platform::LineStream& stream, bool& looped) {
  const auto started = Clock::now();
  BlockAssembler blocks(kind, opt_.interval, started);
  const auto hang_limit = std::max<std::chrono::milliseconds>(opt_.timeout, 3 * opt_.interval);
  auto last_block = started;
  while (!halted()) {
    auto now = Clock::now();
    auto wake_at = blocks.next_deadline();
    if (kind == StreamKind::gpus) wake_at = std::min(wake_at, last_block + hang_limit + 1ms);
    const auto wait = std::clamp<Clock::duration>(wake_at - now, 0ms, kLongestWait);
    const auto got = stream.read_lines(std::chrono::ceil<std::chrono::milliseconds>(wait), &halt_waker_);
    now = Clock::now();
    std::vector<std::string> done;
    for (const auto& line : got.lines)
      for (auto& b : blocks.add(line, now)) done.push_back(std::move(b));
    for (auto& b : blocks.tick(now)) done.push_back(std::move(b));
    if (got.eof)
      if (auto b = blocks.finish()) done.push_back(std::move(*b));
    for (const auto& b : done) deliver(kind, b);
    if (!done.empty()) last_block = now;
    // A one-shot program prints one round and exits at once; nvidia-smi
    // without a GPU or driver exits at once too. (An apps stream with no
    // process prints nothing: only its lifetime tells.)
    looped = blocks.rounds() >= 2 || now - started >= 2 * opt_.interval;
    if (got.eof) return looped ? End::restart : End::fallback;
    if (kind == StreamKind::gpus && now - last_block > hang_limit) {
      log::warn("GPU monitor: no reading from nvidia-smi for {}; restarting it", seconds_text(hang_limit));
      return End::restart;
    }
  }
  return stopping_ ? End::stopped : End::fallback;
}

std::vector<std::string> GpuMonitor::Impl::stream_argv(StreamKind kind) const {
  const char* query = kind == StreamKind::gpus ? kQueryGpuArg : kQueryAppsArg;
  return {opt_.program, stamped(query), kCsvFormatArg, "-lms", std::to_string(opt_.interval.count())};
}

// ---- one-shot queries, stoppable ----

GpuMonitor::Impl::OneShot GpuMonitor::Impl::one_shot() {
  platform::LineStream gpus, apps;
  // Both at once, as NvidiaSmiProbe does: each costs ~25 ms of NVML start-up.
  const Status gpus_started = gpus.start({opt_.program, kQueryGpuArg, kCsvFormatArg});
  const Status apps_started = apps.start({opt_.program, kQueryAppsArg, kCsvFormatArg});
  const auto deadline = Clock::now() + opt_.timeout;
  const auto g = collect(gpus, gpus_started, deadline);
  const auto a = collect(apps, apps_started, deadline);
  return {result_from_runs(g, a, opt_.program, opt_.timeout), g.started};
}

// The table runs for a process on a WDDM GPU that the last run did not
// cover, and again every kTypesRefresh while there is one.
bool GpuMonitor::Impl::should_type(const GpuSnapshot& reading) const {
  std::lock_guard lk(mu_);
  if (stopping_) return false;
  return wants_types(reading, types_) || (Clock::now() - types_at_ >= kTypesRefresh && has_wddm_process(reading));
}

// One run of the plain table (stoppable, as the one-shot queries), for the
// types of `reading`'s processes on WDDM GPUs; compose() puts them on. A run
// that fails keeps what earlier runs learnt and is tried again after
// kTypesRefresh, or for a new process.
void GpuMonitor::Impl::learn_types(const GpuSnapshot& reading) {
  platform::LineStream table;
  const Status started = table.start({opt_.program});
  const auto run = collect(table, started, Clock::now() + opt_.timeout);
  if (stopping_) return;  // killed by stop(): says nothing about the table
  auto types = types_from_run(run, reading, opt_.program, opt_.timeout);
  std::optional<std::string> warning;
  {
    std::lock_guard lk(mu_);
    types_at_ = Clock::now();
    if (types) {
      types_ = std::move(*types);
      untyped_.reset();
    } else {
      for (const auto& key : types_from_table({}, reading).asked) types_.asked.insert(key);
      untyped_ = untyped_warning(types.error());
      warning = untyped_;
    }
  }
  if (warning) log::warn("GPU monitor: {}", *warning);
}

// After a new reading is out (a CUDA job shows at once, untyped, as an
// occupant): the types it lacks, then the reading again with them.
void GpuMonitor::Impl::type_latest() {
  if (!opt_.fixture.empty()) return;  // a saved reading: no nvidia-smi to ask
  GpuSnapshot reading;
  {
    std::lock_guard lk(mu_);
    if (!latest_ || latest_->cpu_mode) return;
    reading = latest_->snapshot;
  }
  if (!should_type(reading)) return;
  learn_types(reading);
  std::lock_guard lk(mu_);
  compose();
}

// run_capture's contract on a LineStream: output until EOF, the exit code,
// timed_out at the deadline; and it gives up at stop() as at a deadline.
platform::CaptureResult GpuMonitor::Impl::collect(platform::LineStream& s, const Status& started,
                                                  Clock::time_point deadline) {
  platform::CaptureResult r;
  if (!started) {
    r.error = started.error().message;
    return r;
  }
  r.started = true;
  std::optional<Clock::time_point> exited_at;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    const auto got = s.read_lines(std::clamp<std::chrono::milliseconds>(left, 0ms, kLongestWait), &stop_waker_);
    for (const auto& line : got.lines) r.out += line + "\n";
    const auto now = Clock::now();
    if (!exited_at && s.exit_code()) exited_at = now;
    if (got.eof || (exited_at && now - *exited_at > kExitGrace)) break;
    if (now >= deadline || stopping_) {
      r.timed_out = true;
      break;
    }
  }
  // The pipe closes just before the exit: wait for the code until the deadline.
  while (!r.timed_out && !s.exit_code() && Clock::now() < deadline && !stopping_) std::this_thread::sleep_for(1ms);
  if (auto code = s.exit_code())
    r.exit_code = *code;
  else
    r.timed_out = true;
  s.kill();
  return r;
}

// ---- the reading ----

void GpuMonitor::Impl::deliver(StreamKind kind, const std::string& block) {
  if (kind == StreamKind::gpus) {
    ProbeResult r = result_from_text(block, opt_.program + " -lms " + std::to_string(opt_.interval.count()));
    r.snapshot.processes.clear();  // GPU rows only, as in the one-shot query
    return publish_gpus(std::move(r));
  }
  Apps a = apps_from_block(block);
  {
    std::lock_guard lk(mu_);
    apps_ = std::move(a);
    compose();
  }
  type_latest();
}

void GpuMonitor::Impl::publish_gpus(ProbeResult r) {
  std::lock_guard lk(mu_);
  gpus_ = std::move(r);
  read_at_ = Clock::now();
  ++readings_;
  compose();
}

// A reading that has both halves (one-shot or fixture): split it, so that
// each stream can later replace its own half.
void GpuMonitor::Impl::publish_whole(ProbeResult r) {
  Apps a;
  a.processes = std::move(r.snapshot.processes);
  a.known = r.snapshot.processes_known;
  r.snapshot.processes.clear();
  r.snapshot.processes_known = true;
  {
    std::lock_guard lk(mu_);
    apps_ = std::move(a);
  }
  publish_gpus(std::move(r));
  type_latest();
}

// Caller holds mu_. Processes count only when the GPUs do, as in result_from_runs().
void GpuMonitor::Impl::compose() {
  if (!gpus_) return;
  ProbeResult r = *gpus_;
  if (!r.cpu_mode) {
    r.snapshot.processes = apps_.processes;
    r.snapshot.processes_known = apps_.known;
    r.snapshot.warnings.insert(r.snapshot.warnings.end(), apps_.warnings.begin(), apps_.warnings.end());
    apply_types(r.snapshot, types_);
    if (untyped_ && wants_types(r.snapshot, {})) r.snapshot.warnings.push_back(*untyped_);
  }
  latest_ = std::move(r);
  cv_.notify_all();
}

ProbeResult GpuMonitor::Impl::read() {
  const auto start = Clock::now();
  std::unique_lock lk(mu_);
  cv_.wait_until(lk, start + opt_.timeout, [this] { return latest_.has_value() || stopping_; });
  ProbeResult r;
  if (latest_) {
    r = *latest_;
  } else {
    r.cpu_mode = true;
    r.source = opt_.fixture.empty() ? opt_.program : "fixture " + opt_.fixture;
    r.reason = stopping_ ? "GPU monitor stopped before its first reading"
                         : r.source + " gave no reading within " + seconds_text(opt_.timeout);
  }
  r.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return r;
}

Clock::time_point GpuMonitor::Impl::read_at() const {
  std::lock_guard lk(mu_);
  return read_at_;
}

// True when stopped (or, with on_fallback, when a stream asked for the
// fallback), at once or during the wait.
bool GpuMonitor::Impl::wait_or_halt(std::chrono::milliseconds d, bool on_fallback) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, d, [&] { return stopping_ || (on_fallback && fallback_); });
}

void GpuMonitor::Impl::fall_back() {
  {
    std::lock_guard lk(mu_);
    fallback_ = true;
  }
  cv_.notify_all();
  halt_waker_.set();
}

void GpuMonitor::Impl::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  stop_waker_.set();
  halt_waker_.set();
  std::lock_guard lk(join_mu_);
  if (main_.joinable()) main_.join();
}

// ---- the public face ----

GpuMonitor::GpuMonitor(MonitorOptions o) : impl_(std::make_unique<Impl>(std::move(o))) {
  impl_->start();
}

GpuMonitor::~GpuMonitor() {
  stop();
}

ProbeResult GpuMonitor::read() {
  return impl_->read();
}

std::chrono::steady_clock::time_point GpuMonitor::read_at() const {
  return impl_->read_at();
}

bool GpuMonitor::streaming() const {
  return impl_->streaming();
}

uint64_t GpuMonitor::readings() const {
  return impl_->readings();
}

void GpuMonitor::stop() {
  impl_->stop();
}

MonitorOptions monitor_options_from_env(std::chrono::milliseconds interval, std::chrono::milliseconds timeout) {
  MonitorOptions o;
  o.interval = interval;
  o.timeout = timeout;
  if (auto fixture = platform::env("LLAMACTL_GPU_FIXTURE"); fixture && !fixture->empty()) o.fixture = *fixture;
  o.program = platform::env("LLAMACTL_NVIDIA_SMI").value_or("");
  if (o.program.empty()) o.program = platform::default_nvidia_smi();
  return o;
}

}  // namespace llamactl::gpu
