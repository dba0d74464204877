#include "integration/harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "platform/platform.h"
#include "support/ports.h"
#include "unit/gguf_writer.h"

namespace llamactl::testing {

nlohmann::json RunResult::json() const {
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception& e) {
    return nlohmann::json{{"__parse_error", e.what()}, {"__out", out}};
  }
}

TmuxSession::TmuxSession(int cols, int rows, const std::vector<std::string>& argv) {
  socket_ = "llamactl-test-" + std::to_string(std::random_device{}());
  std::vector<std::string> cmd = {"tmux",
                                  "-L",
                                  socket_,
                                  "-f",
                                  "/dev/null",
                                  "new-session",
                                  "-d",
                                  "-x",
                                  std::to_string(cols),
                                  "-y",
                                  std::to_string(rows),
                                  "--"};
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  const auto r = platform::run_capture(cmd, std::chrono::seconds(10));
  started_ = r.exit_code == 0;
  error_ = r.err + r.error;
}

TmuxSession::~TmuxSession() {
  (void)platform::run_capture({"tmux", "-L", socket_, "kill-server"}, std::chrono::seconds(10));
}

std::string TmuxSession::tmux(std::vector<std::string> args) const {
  args.insert(args.begin(), {"tmux", "-L", socket_});
  return platform::run_capture(args, std::chrono::seconds(10)).out;
}

void TmuxSession::keys(const std::vector<std::string>& names) const {
  std::vector<std::string> args = {"send-keys", "-t", "0"};
  args.insert(args.end(), names.begin(), names.end());
  tmux(args);
}

char proc_state(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : 0;
}

bool pid_alive(int64_t pid) {
  return platform::process_start_time(pid).has_value();
}

Sandbox::Sandbox() {
  std::filesystem::create_directories(gpu_dir() + "/procs");
  base_port_ = pick_base_port(120, 400, 200);  // 120: the instances' ports and serve's
  set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3", "1 0 81559 0 NVIDIA H100 80GB HBM3"});
  write_config("");
}

Sandbox::~Sandbox() {
  // Stop every llama-server this sandbox's state knows, by pid (process group), then our helpers.
  try {
    const auto st = state_file();
    if (st.contains("instances"))
      for (const auto& i : st["instances"]) {
        const int64_t pid = i.value("pid", int64_t{0});
        if (pid > 1) ::kill(static_cast<pid_t>(-pid), SIGKILL);
      }
  } catch (...) {
  }
  // Fake servers register under procs/ even when the state lost them (a failed test).
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(gpu_dir() + "/procs", ec)) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const int64_t pid = std::stoll(name);
    std::ifstream in(e.path());
    std::string gpus, mib, proc;
    in >> gpus >> mib >> proc;
    if (proc == "llama-server" && pid > 1) ::kill(static_cast<pid_t>(-pid), SIGKILL);
  }
  for (int64_t pid : children_) {
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  }
}

std::vector<std::string> Sandbox::command(const std::string& state_dir, const std::vector<std::string>& args,
                                          const std::vector<std::string>& env) const {
  std::vector<std::string> argv = {"env", "-u", "LLAMACTL_GPU_FIXTURE", "-u", "LLAMACTL_CONFIG", "-u",
                                   "LLAMACTL_STATE_DIR", "-u", "NO_COLOR",
                                   // The GPUs a cluster scheduler gave the job running the tests are not the mock's.
                                   "-u", "CUDA_VISIBLE_DEVICES", "-u", "NVIDIA_VISIBLE_DEVICES",
                                   "LLAMACTL_NVIDIA_SMI=" FAKE_NVIDIA_SMI, "FAKE_GPU_DIR=" + gpu_dir()};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(LLAMACTL_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  // Global flags after the subcommand, as users type them. "--" args stay last.
  auto dashdash = std::find(argv.begin(), argv.end(), "--");
  argv.insert(dashdash, {"--state-dir", state_dir, "--config", dir_ / "llamactl.toml"});
  return argv;
}

RunResult Sandbox::run(const std::vector<std::string>& args, const std::vector<std::string>& env,
                       std::chrono::milliseconds timeout) const {
  return run_in(state_dir(), args, env, timeout);
}

RunResult Sandbox::run_in(const std::string& state_dir, const std::vector<std::string>& args,
                          const std::vector<std::string>& env, std::chrono::milliseconds timeout) const {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = platform::run_capture(command(state_dir, args, env), timeout);
  RunResult out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.exit_code = r.exit_code;
  out.timed_out = r.timed_out;
  out.out = r.out;
  out.err = r.err;
  return out;
}

void Sandbox::set_gpus(const std::vector<std::string>& lines) const {
  std::ofstream out(gpu_dir() + "/gpus");
  for (const auto& l : lines) out << l << "\n";
}

void Sandbox::write_config(const std::string& body) const {
  std::ofstream out(dir_ / "llamactl.toml");
  out << "llama_server = \"" << FAKE_LLAMA_SERVER << "\"\nbase_port = " << base_port_ << "\n" << body;
}

std::string Sandbox::model(const std::string& name) const {
  const std::string p = dir_ / (name + ".gguf");
  if (!std::filesystem::exists(p)) write_gguf(p, GgufSpec{});
  return p;
}

int64_t Sandbox::start_other(const std::string& gpus, int mib, const std::string& name, const std::string& type) {
  const int64_t pid = start_sleeper();
  std::ofstream(gpu_dir() + "/procs/" + std::to_string(pid)) << gpus << " " << mib << " " << name << "\n"
                                                             << (type.empty() ? "" : "type " + type + "\n");
  return pid;
}

int64_t Sandbox::start_sleeper() {
  const int64_t pid = spawn_logged({"sleep", "300"});
  if (pid > 0) children_.push_back(pid);
  return pid;
}

nlohmann::json Sandbox::state_file() const {
  std::ifstream in(state_dir() + "/state.json");
  if (!in) return nlohmann::json::object();
  return nlohmann::json::parse(in);
}

}  // namespace llamactl::testing
