// bench_serve's driver (see driver.h): a sandbox, serve and the proxies to
// compare it with, then throughput, SSE and idle, in that order.

#include "serve/driver.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "serve/common.h"
#include "serve/load_client.h"
#include "serve/procs.h"
#include "serve/report.h"
#include "support/net_posix.h"
#include "support/ports.h"
#include "support/wait.h"

namespace bench_serve {
namespace {

namespace fs = std::filesystem;
using llamactl::testing::free_port;
using llamactl::testing::read_text;

std::atomic<pid_t> g_serve{-1}, g_nginx{-1}, g_fake{-1}, g_instance{-1};
char g_tmp[64] = "";  // the temp dir, for the message of an interrupted run

void emergency(int sig) {
  const char msg[] = "\nbench_serve: stopped (watchdog or signal); killing what it started\n";
  (void)!::write(2, msg, sizeof msg - 1);
  for (auto* p : {&g_serve, &g_nginx, &g_fake, &g_instance}) {
    const pid_t pid = p->load();
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  const char left[] = "temp dir left behind: ";
  (void)!::write(2, left, sizeof left - 1);
  (void)!::write(2, g_tmp, std::strlen(g_tmp));
  (void)!::write(2, "\n", 1);
  ::_exit(sig == SIGALRM ? 3 : 130);
}

void install_watchdog(int max_seconds) {
  struct sigaction sa {};
  sa.sa_handler = emergency;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(static_cast<unsigned>(max_seconds));
}

/// One run: its files, what it started, and where those listen.
struct Bench {
  explicit Bench(const Options& options) : o(options) {}
  const Options& o;
  std::string tmp, gguf, cfg, state, gpus, serve_log;
  std::vector<std::string> env, global;
  cpu_set_t proxy_cpus{}, other_cpus{};
  bool pinning = false;
  pid_t serve = -1, instance = -1, nginx = -1, fake = -1;
  int serve_port = 0, direct_port = 0, nginx_port = 0, fake_port = 0;
  long rss_after_load = -1;
};

// A GGUF header with no tensors and no metadata: enough for serve to accept the model.
void write_tiny_gguf(const std::string& path) {
  std::string g = "GGUF";
  const uint32_t version = 3;
  const uint64_t zero = 0;
  g.append(reinterpret_cast<const char*>(&version), 4);
  g.append(reinterpret_cast<const char*>(&zero), 8);
  g.append(reinterpret_cast<const char*>(&zero), 8);
  write_file(path, g);
}

// The temp dir with the model, the mock GPU and a config whose llama-server is this program.
bool make_sandbox(Bench& b) {
  char tmpl[] = "/tmp/bench-serve-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return false;
  }
  b.tmp = tmpl;
  std::snprintf(g_tmp, sizeof g_tmp, "%s", tmpl);
  b.gguf = b.tmp + "/tiny.gguf";
  b.cfg = b.tmp + "/llamactl.toml";
  b.state = b.tmp + "/state";
  b.gpus = b.tmp + "/gpus";
  b.serve_log = b.tmp + "/serve.log";
  fs::create_directories(b.gpus + "/procs");
  write_tiny_gguf(b.gguf);
  write_file(b.gpus + "/gpus", "0 0 81559 0 NVIDIA H100 80GB HBM3\n");
  const std::string self = self_path();
  write_file(b.cfg, "llama_server = \"" + self +
                        "\"\nbase_port = " + std::to_string(llamactl::testing::pick_base_port(20, 300, 200)) +
                        "\n\n[models.tiny]\npath = \"" + b.gguf + "\"\nkeep_alive = \"-1\"\n");

  char gap[32];
  std::snprintf(gap, sizeof gap, "%g", b.o.sse_gap_ms);
  b.env = child_env({"LLAMACTL_NVIDIA_SMI=" FAKE_NVIDIA_SMI, "FAKE_GPU_DIR=" + b.gpus,
                     std::string("BENCH_SSE_GAP_MS=") + gap, "NO_COLOR=1"});
  b.global = {"--config", b.cfg, "--state-dir", b.state};
  return true;
}

// --pin: this program (the load generator) and what it starts run on all
// CPUs but the last; the proxy under test (serve, nginx) gets the last to
// itself. On a small machine the proxies otherwise compete with the load
// they serve, and the scheduler's choices weigh as much as their work.
// The CPUs this process may use (taskset, cpusets), not all the machine's.
bool set_up_pinning(Bench& b) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  CPU_ZERO(&b.proxy_cpus);
  CPU_ZERO(&b.other_cpus);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) std::perror("sched_getaffinity");
  const int ncpu = CPU_COUNT(&allowed);
  if (b.o.pin && ncpu >= 2) {
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) last = c;
    b.other_cpus = allowed;
    CPU_CLR(last, &b.other_cpus);
    CPU_SET(last, &b.proxy_cpus);
    if (::sched_setaffinity(0, sizeof b.other_cpus, &b.other_cpus) != 0) {
      std::perror("sched_setaffinity");
      std::error_code ignored;
      fs::remove_all(b.tmp, ignored);
      return false;
    }
    std::printf(
        "pinned: serve and nginx (their default threads and workers) on CPU %d; the load generator, the upstream and "
        "the rest on the other %d CPU(s)\n",
        last, ncpu - 1);
  } else if (b.o.pin) {
    std::printf("pinned: no (one CPU)\n");
  }
  b.pinning = b.o.pin && ncpu >= 2;
  return true;
}

// Stops all it started (the instance through `llamactl unload --all`), shows serve's log, removes the temp dir.
void cleanup(Bench& b) {
  std::fprintf(stderr, "cleaning up\n");
  if (b.nginx > 0) stop_child(b.nginx, std::chrono::seconds(5));
  g_nginx = -1;
  if (b.fake > 0) stop_child(b.fake, std::chrono::seconds(5));
  g_fake = -1;
  if (b.serve > 0) {
    const int code = stop_child(b.serve, std::chrono::seconds(15));
    if (code != 0) std::printf("serve exited with %d on SIGTERM\n", code);
  }
  g_serve = -1;
  std::vector<std::string> unload = {LLAMACTL_BIN, "unload", "--all"};
  unload.insert(unload.end(), b.global.begin(), b.global.end());
  const int urc = run_wait(unload, b.env, b.tmp + "/unload.log", std::chrono::seconds(30));
  if (urc != 0) std::printf("unload --all exited %d: %s\n", urc, read_text(b.tmp + "/unload.log").c_str());
  g_instance = -1;
  const std::string log = read_text(b.serve_log);
  if (!log.empty()) {
    std::printf("\nserve's log (-q: warnings and errors only):\n%s\n",
                log.size() > 3000 ? ("..." + log.substr(log.size() - 3000)).c_str() : log.c_str());
  } else {
    std::printf("\nserve's log: empty (no warnings or errors)\n");
  }
  if (!b.o.keep) {
    std::error_code ec;
    fs::remove_all(b.tmp, ec);
  } else {
    std::printf("kept %s\n", b.tmp.c_str());
  }
}

bool start_serve(Bench& b) {
  b.serve_port = free_port();
  std::vector<std::string> serve_argv = {LLAMACTL_BIN, "serve", "-q", "--listen",
                                         "127.0.0.1:" + std::to_string(b.serve_port)};
  serve_argv.insert(serve_argv.end(), b.global.begin(), b.global.end());
  b.serve = spawn(serve_argv, b.env, b.serve_log);
  g_serve = b.serve;
  if (b.serve < 0 || !wait_status(b.serve_port, get_request(b.serve_port, "/health"), 200, std::chrono::seconds(10))) {
    std::printf("serve did not come up; log:\n%s\n", read_text(b.serve_log).c_str());
    return false;
  }
  return true;
}

// The first request through serve starts the instance; its port and pid come from serve's state.
bool load_model(Bench& b) {
  const auto t0 = Clock::now();
  std::string body;
  const int st =
      http_once(b.serve_port,
                post_request(b.serve_port, "/v1/chat/completions",
                             R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1})"),
                &body);
  if (st != 200) {
    std::printf("loading the model through serve failed: status %d %s\nserve log:\n%s\n", st, body.c_str(),
                read_text(b.serve_log).c_str());
    return false;
  }
  std::printf("first request through serve (starts the instance): %.1f ms\n", ms_between(t0, Clock::now()));
  const auto j = nlohmann::json::parse(read_text(b.state + "/state.json"), nullptr, false);
  if (j.is_object() && j.contains("instances") && !j["instances"].empty()) {
    b.direct_port = j["instances"][0].value("port", 0);
    b.instance = static_cast<pid_t>(j["instances"][0].value("pid", int64_t{-1}));
    g_instance = b.instance;
  }
  if (b.direct_port <= 0) {
    std::printf("no instance port in %s/state.json\n", b.state.c_str());
    return false;
  }
  return true;
}

// After the load: the instance had serve's CPUs.
bool pin_serve(Bench& b) {
  if (b.pinning && !(pin_threads(b.serve, b.proxy_cpus) && pin_threads(b.instance, b.other_cpus))) {
    std::printf("--pin: could not pin serve or its instance\n");
    return false;
  }
  b.rss_after_load = status_kb(b.serve, "VmRSS");
  std::printf("upstream: this program as an epoll responder (instance pid %d, port %d); serve pid %d, port %d\n",
              b.instance, b.direct_port, b.serve, b.serve_port);
  return true;
}

std::string nginx_config(const std::string& dir, const std::string& workers, int listen, int upstream) {
  std::string c;
  c += "worker_processes " + workers + ";\n";
  c += "pid " + dir + "/nginx.pid;\n";
  c += "error_log " + dir + "/error.log warn;\n";
  c += "events { worker_connections 4096; }\n";
  c += "http {\n";
  c += "  access_log off;\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    c += std::string("  ") + t + "_temp_path " + dir + "/" + t + ";\n";
  c += "  keepalive_requests 1000000;\n";
  c += "  upstream u {\n    server 127.0.0.1:" + std::to_string(upstream) +
       ";\n    keepalive 64;\n    keepalive_requests 1000000;\n  }\n";
  c += "  server {\n    listen 127.0.0.1:" + std::to_string(listen) + ";\n";
  c += "    location / {\n      proxy_pass http://u;\n      proxy_http_version 1.1;\n";
  c += "      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }\n  }\n}\n";
  return c;
}

void start_nginx(Bench& b) {
  if (!b.o.nginx) {
    std::printf("nginx: skipped (--no-nginx)\n");
    return;
  }
  if (::access("/usr/sbin/nginx", X_OK) != 0) {
    std::printf("nginx: not installed (apt-get install nginx-light or nginx)\n");
    return;
  }
  const std::string dir = b.tmp + "/nginx";
  fs::create_directories(dir);
  b.nginx_port = free_port();
  write_file(dir + "/nginx.conf", nginx_config(dir, b.o.nginx_workers, b.nginx_port, b.direct_port));
  b.nginx = spawn(
      {"/usr/sbin/nginx", "-p", dir + "/", "-e", dir + "/error.log", "-c", dir + "/nginx.conf", "-g", "daemon off;"},
      b.env, dir + "/stdout.log");
  g_nginx = b.nginx;
  if (b.nginx < 0 || !wait_status(b.nginx_port, get_request(b.nginx_port, "/health"), 200, std::chrono::seconds(5))) {
    std::printf("nginx did not come up: %s\n", read_text(dir + "/error.log").c_str());
    if (b.nginx > 0) stop_child(b.nginx, std::chrono::seconds(5));
    b.nginx = -1;
    g_nginx = -1;
    return;
  }
  bool pinned = !b.pinning || pin_threads(b.nginx, b.proxy_cpus);
  for (pid_t w : b.pinning ? descendants(b.nginx) : std::vector<pid_t>{})
    pinned = pin_threads(w, b.proxy_cpus) && pinned;
  if (!pinned) std::printf("--pin: could not pin nginx; its figures are not pinned\n");
  std::printf(
      "nginx: /usr/sbin/nginx, worker_processes %s (%zu workers), upstream keepalive 64, "
      "proxy_buffering off, HTTP/1.1 upstream, access_log off\n",
      b.o.nginx_workers.c_str(), descendants(b.nginx).size());
}

// The repo's fake llama-server on its own, for reference.
void start_fake(Bench& b) {
  if (!b.o.fake) return;
  b.fake_port = free_port();
  b.fake = spawn({FAKE_LLAMA_SERVER, "-m", b.gguf, "--host", "127.0.0.1", "--port", std::to_string(b.fake_port),
                  "--alias", "tiny"},
                 child_env({"FAKE_TOKEN_DELAY_MS=0", "FAKE_LOAD_DELAY_MS=0"}), b.tmp + "/fake.log");
  g_fake = b.fake;
  if (b.fake < 0 || !wait_status(b.fake_port, get_request(b.fake_port, "/health"), 200, std::chrono::seconds(5))) {
    std::printf("fake llama-server did not come up\n");
    if (b.fake > 0) stop_child(b.fake, std::chrono::seconds(5));
    b.fake = -1;
    g_fake = -1;
  }
}

void stop_fake(Bench& b) {
  if (b.fake > 0) stop_child(b.fake, std::chrono::seconds(5));
  b.fake = -1;
  g_fake = -1;
}

struct Path {
  std::string name;
  int port;
  pid_t proxy;  // -1: none
  bool proxy_tree;
  pid_t upstream;
};

// One load run on one path, with the CPU the proxy, the upstream and this program spent on it.
LoadResult measure(const Path& p, int conns, const Options& o) {
  const uint64_t cs0 = ctx_switches(p.proxy, p.proxy_tree);
  const uint64_t px0 = cpu_ns_of(p.proxy, p.proxy_tree), up0 = cpu_ns_of(p.upstream, false), cl0 = self_cpu_ns();
  const MachineCpu m0 = machine_cpu();
  LoadResult r = run_load(p.name, p.port, conns, o.warmup, o.duration);
  const MachineCpu m1 = machine_cpu();
  const uint64_t px1 = cpu_ns_of(p.proxy, p.proxy_tree), up1 = cpu_ns_of(p.upstream, false), cl1 = self_cpu_ns();
  const uint64_t cs1 = ctx_switches(p.proxy, p.proxy_tree);
  if (m1.total > m0.total) {
    const auto total = static_cast<double>(m1.total - m0.total);
    r.idle_pct = 100.0 * static_cast<double>(m1.idle - m0.idle) / total;
    r.steal_pct = 100.0 * static_cast<double>(m1.steal - m0.steal) / total;
  }
  if (r.total_ok > 0) {
    const double n = static_cast<double>(r.total_ok) * 1000.0;
    if (p.proxy > 0) r.proxy_us = static_cast<double>(px1 - px0) / n;
    if (p.proxy > 0) r.proxy_cs = static_cast<double>(cs1 - cs0) / static_cast<double>(r.total_ok);
    r.upstream_us = static_cast<double>(up1 - up0) / n;
    r.client_us = static_cast<double>(cl1 - cl0) / n;
  }
  return r;
}

// 1. throughput, interleaving the paths at each concurrency.
void run_throughput(Bench& b) {
  std::vector<LoadResult> results;
  for (int c : b.o.conns) {
    std::vector<Path> paths = {{"direct", b.direct_port, -1, false, b.instance},
                               {"serve", b.serve_port, b.serve, false, b.instance}};
    if (b.nginx > 0) paths.push_back({"nginx", b.nginx_port, b.nginx, true, b.instance});
    if (b.fake > 0) paths.push_back({"fake", b.fake_port, -1, false, b.fake});
    // Rounds of all paths one after the other: what the machine's neighbours
    // do to one run shows in the others' runs of the same round.
    for (int round = 0; round < b.o.rounds; ++round)
      for (const auto& p : paths) {
        std::fprintf(stderr, "load: %s, %d connections, round %d...\n", p.name.c_str(), c, round + 1);
        LoadResult r = measure(p, c, b.o);
        r.round = round;
        results.push_back(r);
      }
  }
  stop_fake(b);
  print_load_table(results, b.o);
  std::fflush(stdout);
}

// 2. SSE, alternating the paths run by run.
void run_sse(const Bench& b) {
  // "ollama": /api/chat through serve, NDJSON translated from the same upstream SSE.
  std::vector<std::pair<std::string, int>> paths = {{"direct", b.direct_port}, {"serve", b.serve_port}};
  if (b.nginx > 0) paths.emplace_back("nginx", b.nginx_port);
  paths.emplace_back("ollama", b.serve_port);
  std::map<std::string, std::vector<SseRun>> runs;
  for (const auto& [name, port] : paths)
    (void)sse_once(port, 16, b.o.sse_gap_ms, name == "ollama");  // warm-up, not counted
  for (int i = 0; i < b.o.sse_runs; ++i)
    for (const auto& [name, port] : paths) {
      std::fprintf(stderr, "sse: %s, run %d...\n", name.c_str(), i + 1);
      runs[name].push_back(sse_once(port, b.o.sse_tokens, b.o.sse_gap_ms, name == "ollama"));
    }
  std::vector<std::string> names;
  for (const auto& path : paths) names.push_back(path.first);
  print_sse_table(names, runs, b.o);
  std::fflush(stdout);
}

// CPU (ticks, ns) of serve's children but the instance: the mock nvidia-smi streams of the GPU monitor.
std::map<pid_t, std::pair<uint64_t, uint64_t>> children_cpu(const Bench& b) {
  std::map<pid_t, std::pair<uint64_t, uint64_t>> m;  // pid -> ticks, ns
  for (pid_t p : descendants(b.serve)) {
    if (p == b.instance) continue;
    if (auto st = proc_stat(p)) m[p] = {st->ticks, proc_cpu_ns(p)};
  }
  return m;
}

// 3. idle: serve's memory, and its CPU and its children's over a quiet period.
void run_idle(const Bench& b) {
  const Options& o = b.o;
  std::fprintf(stderr, "idle: waiting %.0f s, then measuring %.0f s...\n", o.idle_wait, o.idle_measure);
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(o.idle_wait * 1e6)));
  const long rss = status_kb(b.serve, "VmRSS"), hwm = status_kb(b.serve, "VmHWM");
  const auto s0 = proc_stat(b.serve);
  const uint64_t n0 = proc_cpu_ns(b.serve);
  const auto k0 = children_cpu(b);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(o.idle_measure * 1e6)));
  const auto s1 = proc_stat(b.serve);
  const uint64_t n1 = proc_cpu_ns(b.serve);
  const auto k1 = children_cpu(b);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double serve_ticks_pct = s0 && s1 ? 100.0 * static_cast<double>(s1->ticks - s0->ticks) / hz / secs : -1;
  const double serve_ns_pct = 100.0 * static_cast<double>(n1 - n0) / 1e9 / secs;
  double kid_ticks = 0, kid_ns = 0;
  std::map<std::string, int> names;
  for (const auto& [pid, v] : k1) {
    const auto it = k0.find(pid);
    const auto before = it == k0.end() ? std::pair<uint64_t, uint64_t>{0, 0} : it->second;
    kid_ticks += static_cast<double>(v.first - before.first);
    kid_ns += static_cast<double>(v.second - before.second);
    ++names[proc_comm(pid)];
  }
  std::string kids;
  for (const auto& [n, c] : names) kids += (kids.empty() ? "" : ", ") + std::to_string(c) + " x " + n;
  std::printf("\n== idle serve (after the runs, %.0f s quiet, 1 instance, GPU monitor running) ==\n", o.idle_wait);
  std::printf("VmRSS %.1f MB (%ld kB; %ld kB right after the first load), VmHWM %.1f MB (%ld kB)\n",
              static_cast<double>(rss) / 1024, rss, b.rss_after_load, static_cast<double>(hwm) / 1024, hwm);
  std::printf("CPU over %.1f s: serve %.3f%% of a core (schedstat; %.2f%% by utime+stime ticks)\n", secs, serve_ns_pct,
              serve_ticks_pct);
  std::printf("                 its children (%s): %.3f%% (schedstat; %.2f%% by ticks); together %.3f%%\n",
              kids.empty() ? "none" : kids.c_str(), 100.0 * kid_ns / 1e9 / secs, 100.0 * kid_ticks / hz / secs,
              serve_ns_pct + 100.0 * kid_ns / 1e9 / secs);
}

// serve's request, load and unload counters (those not 0), and whether the GPU monitor read.
void print_metrics(int serve_port) {
  std::string text;
  if (http_once(serve_port, get_request(serve_port, "/metrics"), &text) != 200) return;
  std::printf("serve's /metrics at the end:");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("llamactl_requests_total{", 0) == 0 || line.rfind("llamactl_loads_total{", 0) == 0 ||
        line.rfind("llamactl_unloads_total{", 0) == 0 || line.rfind("llamactl_gpu_reading_ok", 0) == 0)
      if (line.size() < 2 || line.substr(line.size() - 2) != " 0") std::printf("\n  %s", line.c_str());
  std::printf("\n");
}

}  // namespace

int run_bench(const Options& o) {
  install_watchdog(o.max_seconds);
  const auto t_begin = Clock::now();
  Bench b(o);
  if (!make_sandbox(b)) return 1;
  std::printf("bench_serve: %u CPUs, load average at start %s; temp dir %s\n", std::thread::hardware_concurrency(),
              loadavg().c_str(), b.tmp.c_str());
  if (!set_up_pinning(b)) return 1;
  std::printf("llamactl: %s\n", LLAMACTL_BIN);
  if (!start_serve(b) || !load_model(b) || !pin_serve(b)) {
    cleanup(b);
    return 1;
  }
  start_nginx(b);
  start_fake(b);
  run_throughput(b);
  run_sse(b);
  run_idle(b);
  print_metrics(b.serve_port);
  std::printf("\nload average at the end %s; whole run %.1f s\n", loadavg().c_str(),
              std::chrono::duration<double>(Clock::now() - t_begin).count());
  std::fflush(stdout);
  cleanup(b);
  return 0;
}

}  // namespace bench_serve
