#pragma once
// The processes bench_serve starts and what it reads about them from /proc
// (Linux only), and the files it writes.

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bench_serve {

/// This environment without the variables that would steer llamactl (config,
/// state dir, API key, Ollama's), plus `extra` (NAME=value, replacing).
std::vector<std::string> child_env(const std::vector<std::string>& extra);

/// argv[0] (a path) started with stdin from /dev/null and stdout and stderr
/// appended to `log`; -1 when it could not be started.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log);

/// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (128+sig), or -1.
int stop_child(pid_t pid, std::chrono::milliseconds timeout);

/// Runs a command to completion (bounded); its exit code or -1.
int run_wait(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log,
             std::chrono::milliseconds timeout);

void write_file(const std::string& path, const std::string& text);

struct ProcStat {
  pid_t ppid = 0;
  uint64_t ticks = 0;  // utime + stime
};

std::optional<ProcStat> proc_stat(pid_t pid);
/// CPU time of all threads in ns (schedstat), 0 where unavailable.
uint64_t proc_cpu_ns(pid_t pid);
std::string proc_comm(pid_t pid);
std::vector<pid_t> descendants(pid_t root);
/// CPU time (ns) of a process and, with `tree`, of all its descendants.
uint64_t cpu_ns_of(pid_t pid, bool tree);
/// Context switches (voluntary and not) of all threads of a process (and its descendants).
uint64_t ctx_switches(pid_t pid, bool tree);

/// The machine's CPU time from /proc/stat's first line, in ticks: idle
/// (idle + iowait), stolen by the hypervisor, and all of it.
struct MachineCpu {
  uint64_t idle = 0, steal = 0, total = 0;
};

MachineCpu machine_cpu();
uint64_t self_cpu_ns();
/// A field of /proc/PID/status in kB (VmRSS, VmHWM); -1 when missing.
long status_kb(pid_t pid, const std::string& field);
/// /proc/loadavg's three averages.
std::string loadavg();

/// Every thread of a process (not its children) onto `cpus`; false if one could not be pinned.
bool pin_threads(pid_t pid, const cpu_set_t& cpus);
/// This program's path (/proc/self/exe); "" when unknown.
std::string self_path();

}  // namespace bench_serve
