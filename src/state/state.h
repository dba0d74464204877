#pragma once
// The state dir: one versioned JSON file listing our instances, one pidfile
// per instance, per-instance logs, and a lock file. Every read-modify-write
// happens under the exclusive lock; functions that write take the Lock as
// proof that the caller holds it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "platform/platform.h"
#include "util/result.h"

namespace llamactl::state {

inline constexpr int kSchemaVersion = 1;

struct Instance {
  std::string model;  // unique within a state dir
  std::string path;
  std::vector<int> gpus;  // empty: CPU
  int port = 0;
  int64_t pid = 0;
  uint64_t start_time = 0;  // OS process start time, to tell a reused pid apart
  int64_t started_at_ms = 0;
  int64_t last_used_at_ms = 0;
  int64_t keep_alive_ms = -1;  // -1: never reaped
  std::string log;
  std::vector<std::string> argv;
  std::string owner;               // user who started it
  std::string state = "starting";  // "starting" until healthy, then "running"; "dead" once found gone
  std::optional<int64_t> estimate_mib;
  std::string loaded_by = "cli";  // "cli" (llamactl load) or "serve" (loaded on demand)
  // A dead record holds no GPU and no port; it stays listed (status --check
  // exits 13) until the model runs again or is unloaded by name or --all.
  std::optional<int64_t> died_at_ms;
  std::optional<int> exit_code;  // when the OS told (our own child only)

  bool dead() const { return state == "dead"; }
};

struct StateFile {
  std::vector<Instance> instances;
  /// The live (not dead) record of `model`; nullptr when none.
  Instance* find(const std::string& model);
  /// The dead record of `model`; nullptr when none.
  Instance* find_dead(const std::string& model);
  /// Records that hold GPUs and ports (every one that is not dead).
  std::vector<Instance> live() const;
};

class Lock {
 public:
  explicit Lock(platform::FileLock l) : lock_(std::move(l)) {}

 private:
  platform::FileLock lock_;
};

class StateDir {
 public:
  explicit StateDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string state_path() const { return platform::join_path(dir_, "state.json"); }
  std::string lock_path() const { return platform::join_path(dir_, "state.lock"); }
  /// serve's: held for its lifetime, and who it is (pid, address) while it runs.
  std::string serve_lock_path() const { return platform::join_path(dir_, "serve.lock"); }
  std::string serve_info_path() const { return platform::join_path(dir_, "serve.json"); }
  std::string pid_path(const std::string& model) const;
  std::string log_path(const std::string& model) const;

  /// Creates the dir (owner-only) and its logs/ and pids/ folders.
  Status ensure() const;
  /// Exclusive lock for a read-modify-write. Error kind state on timeout.
  Result<Lock> lock(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  /// Reads the state file. Missing file: empty state. A damaged file is
  /// moved aside to state.json.damaged-<time> and reported in `warnings`.
  Result<StateFile> load(const Lock& proof, std::vector<std::string>& warnings) const;
  /// Reads without the lock (for display only); never moves anything.
  Result<StateFile> peek() const;
  /// Atomically replaces the state file.
  Status save(const Lock& proof, const StateFile& state) const;

  Status write_pidfile(const Lock& proof, const Instance& inst) const;
  Status remove_pidfile(const Lock& proof, const std::string& model) const;

 private:
  std::string dir_;
};

/// Directory to use: the flag, else LLAMACTL_STATE_DIR, else the platform's.
std::string resolve_dir(const std::string& flag_value);

/// JSON text of a state file and back; pure. Error kind state names the
/// problem ("instance 2: missing 'pid'").
std::string to_json(const StateFile& state);
Result<StateFile> from_json(const std::string& text);

/// "llama-7b" -> "llama-7b"; "a/b c" -> "a_b_c": safe as a file name.
std::string file_safe(const std::string& model);

}  // namespace llamactl::state
