// bench_serve's processes and /proc readings (see procs.h).

#include "serve/procs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "serve/common.h"
#include "support/process_posix.h"
#include "support/wait.h"  // read_text()

extern char** environ;

namespace bench_serve {

using llamactl::testing::read_text;
namespace fs = std::filesystem;

std::vector<std::string> child_env(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  auto overridden = [&](const std::string& kv) {
    const std::string name = kv.substr(0, kv.find('='));
    if (name == "LLAMACTL_GPU_FIXTURE" || name == "LLAMACTL_CONFIG" || name == "LLAMACTL_STATE_DIR" ||
        name == "LLAMACTL_API_KEY" || name == "OLLAMA_HOST" || name == "OLLAMA_KEEP_ALIVE")
      return true;
    for (const auto& e : extra)
      if (e.substr(0, e.find('=')) == name) return true;
    return false;
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) out.emplace_back(*e);
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log) {
  llamactl::testing::SpawnOptions o;
  o.log = log;
  o.append = true;
  o.env = &env;
  return static_cast<pid_t>(llamactl::testing::spawn_logged(argv, o));
}

int stop_child(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 0) return -1;
  ::kill(pid, SIGTERM);
  const auto until = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (w < 0) return -1;
    if (Clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "pid %d did not stop within %lld ms: SIGKILL\n", pid, static_cast<long long>(timeout.count()));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

int run_wait(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log,
             std::chrono::milliseconds timeout) {
  const pid_t pid = spawn(argv, env, log);
  if (pid < 0) return -1;
  const auto until = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < until) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::optional<ProcStat> proc_stat(pid_t pid) {
  const std::string s = read_text("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(s.substr(close + 2));
  std::vector<std::string> f;
  std::string x;
  while (in >> x) f.push_back(x);
  if (f.size() < 13) return std::nullopt;
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  ProcStat p;
  p.ppid = static_cast<pid_t>(std::atol(f[1].c_str()));
  p.ticks = std::strtoull(f[11].c_str(), nullptr, 10) + std::strtoull(f[12].c_str(), nullptr, 10);
  return p;
}

uint64_t proc_cpu_ns(pid_t pid) {
  uint64_t sum = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    sum += std::strtoull(read_text(dir + "/" + e->d_name + "/schedstat").c_str(), nullptr, 10);
  }
  ::closedir(d);
  return sum;
}

std::string proc_comm(pid_t pid) {
  std::string c = read_text("/proc/" + std::to_string(pid) + "/comm");
  while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
  return c;
}

std::vector<pid_t> descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  DIR* d = ::opendir("/proc");
  if (!d) return {};
  while (dirent* e = ::readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (auto st = proc_stat(pid)) kids[st->ppid].push_back(pid);
  }
  ::closedir(d);
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    for (pid_t k : kids[p]) {
      out.push_back(k);
      todo.push_back(k);
    }
  }
  return out;
}

uint64_t cpu_ns_of(pid_t pid, bool tree) {
  if (pid <= 0) return 0;
  uint64_t sum = proc_cpu_ns(pid);
  if (tree)
    for (pid_t k : descendants(pid)) sum += proc_cpu_ns(k);
  return sum;
}

uint64_t ctx_switches(pid_t pid, bool tree) {
  if (pid <= 0) return 0;
  std::vector<pid_t> pids = {pid};
  if (tree)
    for (pid_t k : descendants(pid)) pids.push_back(k);
  uint64_t sum = 0;
  for (pid_t p : pids) {
    const std::string dir = "/proc/" + std::to_string(p) + "/task";
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const pid_t tid = static_cast<pid_t>(std::atol(e->d_name));
      std::istringstream in(read_text(dir + "/" + std::to_string(tid) + "/status"));
      std::string line;
      while (std::getline(in, line))
        if (line.find("ctxt_switches:") != std::string::npos)
          sum += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    ::closedir(d);
  }
  return sum;
}

MachineCpu machine_cpu() {
  std::istringstream in(read_text("/proc/stat"));
  std::string cpu;
  in >> cpu;
  MachineCpu m;
  if (cpu != "cpu") return m;
  // user nice system idle iowait irq softirq steal (guest time is inside user)
  uint64_t v[8] = {};
  for (auto& x : v) in >> x;
  for (auto x : v) m.total += x;
  m.idle = v[3] + v[4];
  m.steal = v[7];
  return m;
}

uint64_t self_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

long status_kb(pid_t pid, const std::string& field) {
  std::istringstream in(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, field.size() + 1, field + ":") == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}

std::string loadavg() {
  std::string s = read_text("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

bool pin_threads(pid_t pid, const cpu_set_t& cpus) {
  std::error_code ec;
  bool ok = true;
  for (fs::directory_iterator t("/proc/" + std::to_string(pid) + "/task", ec), end; !ec && t != end; t.increment(ec)) {
    const pid_t tid = std::atoi(t->path().filename().c_str());
    if (tid > 0 && ::sched_setaffinity(tid, sizeof cpus, &cpus) != 0) {
      std::fprintf(stderr, "cannot pin thread %d of %d: %s\n", tid, pid, std::strerror(errno));
      ok = false;
    }
  }
  return ok && !ec;
}

std::string self_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

}  // namespace bench_serve
