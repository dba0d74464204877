#pragma once
// End-to-end sandbox: the real llamactl binary, the mock nvidia-smi and the
// fake llama-server, in a temporary dir with free ports. Every process a
// test starts is stopped by pid when the sandbox goes away.

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/process_posix.h"  // spawn_logged()
#include "support/temp_dir.h"
#include "support/wait.h"  // eventually(), read_text()

namespace llamactl::testing {

struct RunResult {
  int exit_code = -1;
  bool timed_out = false;
  std::string out, err;
  double seconds = 0;
  nlohmann::json json() const;
};

class Sandbox {
 public:
  Sandbox();
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  /// Runs `llamactl ARGS` with --state-dir/--config of this sandbox, the
  /// mock nvidia-smi, and `env` added (NAME=VALUE).
  RunResult run(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  /// The same with another state dir (another user's or another team's llamactl).
  RunResult run_in(const std::string& state_dir, const std::vector<std::string>& args,
                   const std::vector<std::string>& env = {},
                   std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  /// The full argv that run() executes (for tests that start it themselves).
  std::vector<std::string> command(const std::string& state_dir, const std::vector<std::string>& args,
                                   const std::vector<std::string>& env = {}) const;

  /// One line per GPU for the mock: "INDEX BASE_USED TOTAL UTIL NAME".
  void set_gpus(const std::vector<std::string>& lines) const;
  /// Writes the config file (llama_server and base_port are prepended).
  void write_config(const std::string& body) const;
  /// A small valid GGUF model file; returns its path.
  std::string model(const std::string& name) const;
  /// Starts a stand-in for another user's GPU process and registers its
  /// memory with the mock nvidia-smi. Returns its pid.
  /// `type`: "C", "G" or "C+G" for the mock's table (empty: its default, C).
  int64_t start_other(const std::string& gpus, int mib, const std::string& name, const std::string& type = "");
  /// Starts a plain process that is not on any GPU (for pid-reuse tests).
  int64_t start_sleeper();

  nlohmann::json state_file() const;
  std::string state_dir() const { return dir_ / "state"; }
  std::string gpu_dir() const { return dir_ / "gpus"; }
  std::string path(const std::string& name) const { return dir_ / name; }
  int base_port() const { return base_port_; }

 private:
  TempDir dir_;
  int base_port_ = 0;
  std::vector<int64_t> children_;
};

/// A detached tmux session running argv in a window of cols x rows, on a
/// tmux server of its own (-L with a random name), which is killed, by that
/// name, when this goes away. argv is passed as separate words, never as text
/// for a shell to parse.
class TmuxSession {
 public:
  TmuxSession(int cols, int rows, const std::vector<std::string>& argv);
  ~TmuxSession();
  TmuxSession(const TmuxSession&) = delete;
  TmuxSession& operator=(const TmuxSession&) = delete;

  bool started() const { return started_; }
  const std::string& error() const { return error_; }
  /// `tmux -L SOCKET ARGS`; its stdout.
  std::string tmux(std::vector<std::string> args) const;
  std::string screen() const { return tmux({"capture-pane", "-p", "-t", "0"}); }
  std::string format(const std::string& f) const { return tmux({"display-message", "-p", "-t", "0", f}); }
  /// Key names as tmux knows them ("Tab", "Enter", "C-c", "q").
  void keys(const std::vector<std::string>& names) const;
  /// Text typed as is (send-keys -l).
  void type(const std::string& text) const { tmux({"send-keys", "-t", "0", "-l", text}); }

 private:
  std::string socket_;
  bool started_ = false;
  std::string error_;
};

bool pid_alive(int64_t pid);
/// The state letter of /proc/PID/stat ('Z' for a zombie); 0 when the process is gone.
char proc_state(int64_t pid);

}  // namespace llamactl::testing
