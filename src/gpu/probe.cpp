#include "gpu/probe.h"

#include <algorithm>
#include <cstdio>
#include <future>

#include "gpu/parse.h"
#include "platform/platform.h"
#include "util/strings.h"

namespace llamactl::gpu {
namespace {

using Clock = std::chrono::steady_clock;

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

std::string first_line(const std::string& text) {
  for (auto line : split_lines(text))
    if (!trim(line).empty()) return std::string(trim(line)).substr(0, 160);
  return {};
}

// One line that says why a run of nvidia-smi gave no reading.
std::string failure_reason(const platform::CaptureResult& r, const std::string& program, double timeout_s) {
  if (!r.started) return "cannot run " + program + " (" + r.error + ")";
  if (r.timed_out) return program + " did not answer within " + fmt_seconds(timeout_s);
  const std::string both = r.out + "\n" + r.err;  // nvidia-smi prints its errors on stdout
  if (auto known = known_failure(both); !known.empty()) return known;
  const std::string line = first_line(r.out).empty() ? first_line(r.err) : first_line(r.out);
  return program + " exited with code " + std::to_string(r.exit_code) + (line.empty() ? "" : ": " + line);
}

}  // namespace

ProbeResult result_from_text(const std::string& text, const std::string& source) {
  ProbeResult res;
  res.source = source;
  if (auto known = known_failure(text); !known.empty()) {
    res.cpu_mode = true;
    res.reason = known;
    return res;
  }
  auto parsed = parse_any(text);
  if (!parsed) {
    res.cpu_mode = true;
    res.reason = parsed.error().message;
    return res;
  }
  res.snapshot = std::move(*parsed);
  if (res.snapshot.gpus.empty()) {
    res.cpu_mode = true;
    res.reason = "no GPU listed";
  }
  return res;
}

ProbeResult FixtureProbe::read() {
  const auto start = Clock::now();
  ProbeResult res;
  auto text = platform::read_file(path_);
  if (!text) {
    res.cpu_mode = true;
    res.reason = "cannot read GPU fixture: " + text.error().message;
    res.source = "fixture " + path_;
  } else {
    res = result_from_text(*text, "fixture " + path_);
  }
  res.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return res;
}

ProbeResult result_from_runs(const platform::CaptureResult& gpus, const platform::CaptureResult& procs,
                             const std::string& program, std::chrono::milliseconds timeout) {
  const double timeout_s = std::chrono::duration<double>(timeout).count();
  ProbeResult res;
  res.source = program;
  if (!gpus.started || gpus.timed_out || gpus.exit_code != 0) {
    res.cpu_mode = true;
    res.reason = failure_reason(gpus, program, timeout_s);
    return res;
  }
  res = result_from_text(gpus.out, program);
  // Only GPU rows count from this query; a stray process row would be a mock's bug.
  res.snapshot.processes.clear();
  res.snapshot.processes_known = true;  // unless the process query below fails
  if (res.cpu_mode) return res;
  if (!procs.started || procs.timed_out || procs.exit_code != 0) {
    res.snapshot.processes_known = false;
    res.snapshot.warnings.push_back("process query failed: " + failure_reason(procs, program, timeout_s));
  } else if (!trim(procs.out).empty()) {
    auto parsed = parse_csv(procs.out);
    if (parsed) {
      res.snapshot.processes = std::move(parsed->processes);
      for (auto& w : parsed->warnings) res.snapshot.warnings.push_back(std::move(w));
    } else {
      res.snapshot.processes_known = false;
      res.snapshot.warnings.push_back("process query: " + parsed.error().message);
    }
  }
  return res;
}

Result<ProcessTypes> types_from_run(const platform::CaptureResult& table, const GpuSnapshot& reading,
                                    const std::string& program, std::chrono::milliseconds timeout) {
  const double timeout_s = std::chrono::duration<double>(timeout).count();
  if (!table.started || table.timed_out || table.exit_code != 0)
    return make_error(ErrorKind::io, failure_reason(table, program, timeout_s));
  auto parsed = parse_table(table.out);
  if (!parsed) return make_error(ErrorKind::parse, program + "'s table: " + parsed.error().message);
  if (!parsed->processes_known) return make_error(ErrorKind::parse, program + "'s table has no Processes section");
  return types_from_table(*parsed, reading);
}

std::string untyped_warning(const Error& why) {
  return "process types unknown (" + why.message + "); a desktop GPU's apps count as occupants";
}

ProbeResult NvidiaSmiProbe::read() {
  const auto start = Clock::now();
  // Both queries at once: each costs ~25 ms of NVML start-up on a real H100.
  auto apps = std::async(std::launch::async, [this] {
    return platform::run_capture({program_, kQueryAppsArg, kCsvFormatArg}, timeout_);
  });
  const auto gpus = platform::run_capture({program_, kQueryGpuArg, kCsvFormatArg}, timeout_);
  ProbeResult res = result_from_runs(gpus, apps.get(), program_, timeout_);
  // A Windows desktop GPU: the plain table tells the apps that draw from CUDA
  // jobs, within what is left of the same deadline (at least a moment).
  if (!res.cpu_mode && wants_types(res.snapshot, {})) {
    const auto left = std::max<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(start + timeout_ - Clock::now()),
        std::chrono::milliseconds(250));
    const auto types = types_from_run(platform::run_capture({program_}, left), res.snapshot, program_, left);
    if (types)
      apply_types(res.snapshot, *types);
    else
      res.snapshot.warnings.push_back(untyped_warning(types.error()));
  }
  res.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return res;
}

std::unique_ptr<GpuProbe> make_probe(std::chrono::milliseconds timeout) {
  if (auto fixture = platform::env("LLAMACTL_GPU_FIXTURE"); fixture && !fixture->empty())
    return std::make_unique<FixtureProbe>(*fixture);
  std::string program = platform::env("LLAMACTL_NVIDIA_SMI").value_or("");
  if (program.empty()) program = platform::default_nvidia_smi();
  return std::make_unique<NvidiaSmiProbe>(program, timeout);
}

}  // namespace llamactl::gpu
