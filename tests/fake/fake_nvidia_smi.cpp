// A stateful mock nvidia-smi for tests (named by LLAMACTL_NVIDIA_SMI). It
// answers llamactl's two CSV queries from files under $FAKE_GPU_DIR:
//   gpus       one line per GPU: "INDEX BASE_USED_MIB TOTAL_MIB UTIL NAME..."
//              (default: two idle 81559 MiB H100s)
//   procs/PID  "GPUS MIB NAME": GPU memory of a live process; GPUS is a comma
//              list of indices or "all". The fake llama-server writes its own
//              from CUDA_VISIBLE_DEVICES; tests write other users' processes.
//              An optional second line "type T" gives its type (C, G, C+G;
//              default C). Files of dead (or zombie) pids are ignored.
// Without a query it prints the plain table (as driver 610 does on Windows),
// with the GPUs and the processes and their types.
// FAKE_SMI_DRIVER_MODEL=WDDM: a Windows desktop GPU: the GPU query's
//   driver_model.current says WDDM, compute-apps lists every process (the
//   desktop's apps that draw too, as on a real WDDM machine) with "[N/A]"
//   memory, and the table says "N/A" for each process's memory. Without
//   it, compute-apps leaves out type G, as on Linux, and the GPU query has
//   the six columns the older tests expect.
// Switches: FAKE_SMI_DELAY (seconds to sleep per call), FAKE_SMI_MODE =
//   hang | linger | nodev | mismatch | nodriver | garbage | lost1 | noloop.
//   linger: answers normally, but leaves a child behind that holds stdout open.
//   notable: answers the queries, but the plain table fails (exit 1).
//   tablehang: answers the queries, but the plain table hangs.
// Each run of the plain table appends a line to $FAKE_GPU_DIR/table_runs.
//   noloop: ignores -l/-lms and answers once, as a script mock would.
// Loop mode (-lms N, --loop-ms=N, -l S, --loop=S): prints a block every
// interval from the state files until killed, as nvidia-smi does; a query
// whose first field is "timestamp" gets "YYYY/MM/DD HH:MM:SS.mmm, " in front
// of each line, and compute-apps prints nothing for an interval with no
// process. FAKE_SMI_STREAM_DIE_AFTER=K exits (code 0) after K blocks.
// Written in C++ (not sh) so that its own cost does not hide llamactl's in
// the benchmarks: it starts in about a millisecond. It builds for Windows too
// (the Wine end-to-end tests), where "hang" leaves no child behind and
// "linger" is not available.

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Gpu {
  int index;
  long used, total, util;
  std::string name;
};

struct Proc {
  long pid;
  int gpu;
  long mib;
  std::string name;
  std::string type = "C";
};

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v ? v : def;
}

#ifdef _WIN32
bool alive(long pid) {
  HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (!h) return false;
  DWORD code = 0;
  const bool running = ::GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
  ::CloseHandle(h);
  return running;
}
#else
bool alive(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}
#endif

std::vector<Gpu> gpus(const std::string& dir) {
  std::vector<Gpu> out;
  std::ifstream in(dir + "/gpus");
  std::string line;
  while (in && std::getline(in, line)) {
    std::istringstream ss(line);
    Gpu g;
    if (!(ss >> g.index >> g.used >> g.total >> g.util)) continue;
    std::getline(ss >> std::ws, g.name);
    out.push_back(g);
  }
  if (dir.empty() || !fs::exists(dir + "/gpus"))
    out = {{0, 0, 81559, 0, "NVIDIA H100 80GB HBM3"}, {1, 0, 81559, 0, "NVIDIA H100 80GB HBM3"}};
  return out;
}

std::vector<Proc> procs(const std::string& dir, const std::vector<Gpu>& all) {
  std::vector<Proc> out;
  std::error_code ec;
  if (dir.empty()) return out;
  for (const auto& e : fs::directory_iterator(dir + "/procs", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::stol(name);
    if (!alive(pid)) continue;
    std::ifstream in(e.path());
    std::string list, pname, key, type = "C";
    long mib = 0;
    if (!(in >> list >> mib)) continue;
    std::getline(in >> std::ws, pname);
    if (in >> key >> type && key != "type") type.assign(1, 'C');
    if (list == "all") {
      for (const auto& g : all) out.push_back({pid, g.index, mib, pname, type});
      continue;
    }
    std::stringstream ls(list);
    std::string item;
    while (std::getline(ls, item, ',')) out.push_back({pid, std::atoi(item.c_str()), mib, pname, type});
  }
  return out;
}

std::string uuid(int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "GPU-%08d-0000-4000-8000-%012d", i, i);
  return buf;
}

// nvidia-smi's timestamp field: local time, milliseconds.
std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
#ifdef _WIN32
  ::localtime_s(&tm, &t);
#else
  ::localtime_r(&t, &tm);
#endif
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y/%m/%d %H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03d, ", static_cast<int>(ms));
  return buf;
}

struct Query {
  std::string kind;      // "gpu", "apps" or empty
  bool stamped = false;  // first field is "timestamp"
  long loop_ms = 0;      // 0: answer once
};

Query parse_args(int argc, char** argv) {
  Query q;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string next = i + 1 < argc ? argv[i + 1] : "";
    for (const auto& [prefix, kind] :
         {std::pair<std::string, std::string>{"--query-gpu=", "gpu"}, {"--query-compute-apps=", "apps"}}) {
      if (a.rfind(prefix, 0) != 0) continue;
      q.kind = kind;
      q.stamped = a.compare(prefix.size(), 10, "timestamp,") == 0;
    }
    if (a == "-lms") q.loop_ms = std::atol(next.c_str());
    if (a.rfind("--loop-ms=", 0) == 0) q.loop_ms = std::atol(a.c_str() + 10);
    if (a == "-l") q.loop_ms = std::atol(next.c_str()) * 1000;
    if (a.rfind("--loop=", 0) == 0) q.loop_ms = std::atol(a.c_str() + 7) * 1000;
  }
  return q;
}

// A GPU's memory.used: its own base plus what its live processes hold.
long used_mib(const Gpu& g, const std::vector<Proc>& running) {
  long used = g.used;
  for (const auto& p : running)
    if (p.gpu == g.index) used += p.mib;
  return used;
}

// The table's name cell keeps the last 32 characters, "..." in front, as
// nvidia-smi 610 does with long Windows paths.
std::string table_name(const std::string& name) {
  constexpr size_t kWidth = 32;
  if (name.size() <= kWidth) return name;
  std::string out(3, '.');
  out.append(name, name.size() - (kWidth - 3), std::string::npos);
  return out;
}

// The plain `nvidia-smi` table, in driver 610's layout (the Windows capture
// fixtures/nvidia-smi/win-rtx2080s-610.62-wddm-table-load.txt).
void print_table(const std::string& dir, const std::string& model) {
  const auto all = gpus(dir);
  const auto running = procs(dir, all);
  const bool wddm = model == "WDDM";
  const std::string rule(89, '-');
  std::printf("Wed Jun 24 10:17:56 2026       \n+%s+\n", rule.c_str());
  std::printf("| NVIDIA-SMI 610.62                 KMD Version: 610.62        CUDA UMD Version: 13.3     |\n");
  std::printf("+-----------------------------------------+------------------------+----------------------+\n");
  std::printf("| GPU  Name                  %s | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n",
              wddm ? "Driver-Model" : "Persistence-M");
  std::printf("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n");
  std::printf("|                                         |                        |               MIG M. |\n");
  std::printf("|=========================================+========================+======================|\n");
  for (const auto& g : all) {
    const long used = used_mib(g, running);
    std::string name = g.name;
    if (name.size() > 26) name.replace(23, std::string::npos, 3, '.');
    std::printf("| %3d  %-26s  %4s  |   00000000:%02X:00.0  On |                  N/A |\n", g.index, name.c_str(),
                wddm ? "WDDM" : "On", g.index + 1);
    std::printf("| 38%%   44C    P2             97W /  250W | %7ldMiB / %7ldMiB | %6ld%%      Default |\n", used,
                g.total, g.util);
    std::printf("|                                         |                        |                  N/A |\n");
    std::printf("+-----------------------------------------+------------------------+----------------------+\n");
  }
  std::printf("\n+%s+\n", rule.c_str());
  std::printf("| Processes:                                                                              |\n");
  std::printf("|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |\n");
  std::printf("|        ID   ID                                                               Usage      |\n");
  std::printf("|=========================================================================================|\n");
  if (running.empty())
    std::printf("|  No running processes found                                                             |\n");
  for (const auto& p : running) {
    std::string mem = wddm ? std::string("N/A") : std::to_string(p.mib);
    if (!wddm) mem.append("MiB");
    std::printf("|  %3d   N/A  N/A  %14ld  %5s   %-32s      %-8s |\n", p.gpu, p.pid, p.type.c_str(),
                table_name(p.name).c_str(), mem.c_str());
  }
  std::printf("+%s+\n", rule.c_str());
  std::fflush(stdout);
}

// One answer to the query from the current state files.
void print_block(const std::string& dir, const std::string& mode, const Query& q) {
  const auto all = gpus(dir);
  const auto running = procs(dir, all);
  const std::string model = env_or("FAKE_SMI_DRIVER_MODEL", "");
  if (q.kind == "gpu") {
    for (const auto& g : all) {
      if (mode == "lost1" && g.index == 1) {
        std::puts(
            "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system to recover "
            "this GPU");
        continue;
      }
      const long used = used_mib(g, running);
      std::printf("%s%d, %s, %s, %ld, %ld, %ld%s\n", q.stamped ? timestamp().c_str() : "", g.index,
                  uuid(g.index).c_str(), g.name.c_str(), used, g.total, g.util,
                  model.empty() ? "" : (", " + model).c_str());
    }
  } else {
    // All lines of one interval carry the same timestamp, as nvidia-smi's do.
    const std::string stamp = q.stamped ? timestamp() : "";
    const bool wddm = model == "WDDM";
    for (const auto& p : running) {
      if (p.type == "G" && !wddm) continue;  // compute-apps: compute processes, but WDDM lists the desktop's too
      const std::string mem = wddm ? "[N/A]" : std::to_string(p.mib);
      std::printf("%s%s, %ld, %s, %s\n", stamp.c_str(), uuid(p.gpu).c_str(), p.pid, p.name.c_str(), mem.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = env_or("FAKE_GPU_DIR", "");
  const std::string mode = env_or("FAKE_SMI_MODE", "");
  if (mode == "hang") {
#ifndef _WIN32
    // The child keeps stdout open, as a process stuck in a wedged driver does.
    if (::fork() == 0) ::sleep(1000);
#endif
    std::this_thread::sleep_for(std::chrono::seconds(1000));
    return 0;
  }
  if (mode == "nodev") {
    std::puts("No devices were found");
    return 6;
  }
  if (mode == "mismatch") {
    std::puts("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161");
    return 18;
  }
  if (mode == "nodriver") {
    std::puts(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA "
        "driver is installed and running.");
    return 9;
  }
  if (mode == "garbage") {
    std::puts("%%% this is not csv %%%");
    return 0;
  }
#ifndef _WIN32
  if (mode == "linger" && ::fork() == 0) {
    ::sleep(30);
    return 0;
  }
#endif
  const double delay = std::atof(env_or("FAKE_SMI_DELAY", "0").c_str());
  if (delay > 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay));

  Query q = parse_args(argc, argv);
  if (argc == 1 && !dir.empty()) std::ofstream(dir + "/table_runs", std::ios::app) << "table\n";
  if (argc == 1 && mode == "tablehang") {
    std::this_thread::sleep_for(std::chrono::seconds(1000));
    return 0;
  }
  if (argc == 1 && mode == "notable") {
    std::puts("mock nvidia-smi: the table is switched off (FAKE_SMI_MODE=notable)");
    return 1;
  }
  if (argc == 1) {
    print_table(dir, env_or("FAKE_SMI_DRIVER_MODEL", ""));
    return 0;
  }
  if (q.kind.empty()) {
    std::puts("mock nvidia-smi: only the plain table, --query-gpu and --query-compute-apps are supported");
    return 2;
  }
  if (mode == "noloop") q.loop_ms = 0;
  if (q.loop_ms <= 0) {
    print_block(dir, mode, q);
    return 0;
  }
  const long die_after = std::atol(env_or("FAKE_SMI_STREAM_DIE_AFTER", "0").c_str());
  for (long blocks = 1;; ++blocks) {
    print_block(dir, mode, q);
    if (die_after > 0 && blocks >= die_after) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(q.loop_ms));
  }
}
