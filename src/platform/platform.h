#pragma once
// The only place that knows the OS. platform_posix.cpp and
// platform_win32.cpp implement this header; CMake picks one.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace llamactl::platform {

// ---- short-lived child processes (nvidia-smi) ----

struct CaptureResult {
  bool started = false;    // false: could not run it at all (see error)
  bool timed_out = false;  // killed at the deadline; output is what came before
  int exit_code = -1;      // -1 when killed or unknown
  std::string out, err;
  std::string error;  // why it did not start
};

/// Runs argv[0] (looked up on PATH) with stdin from the null device, in its
/// own process group, capturing stdout and stderr. At the deadline the whole
/// group is killed and reading stops even if a grandchild holds the pipe.
CaptureResult run_capture(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

// ---- long-running children read line by line (nvidia-smi -lms) ----

/// A signal from one thread that ends the read_lines() waits that watch it,
/// so that a reader can wait long without polling a stop flag. Once set it
/// stays set. set() is thread-safe.
class Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  void set();

 private:
  friend class LineStream;
  intptr_t read_ = -1, write_ = -1;  // a pipe on POSIX; an event (read_) on Windows
};

/// A child whose stdout is read line by line while it runs, in its own
/// process group (a job object on Windows) so that kill() ends it and any
/// helper it started. Stdin and stderr are the null device. One owner; not
/// thread-safe. The destructor kills.
class LineStream {
 public:
  LineStream();
  ~LineStream();
  LineStream(const LineStream&) = delete;
  LineStream& operator=(const LineStream&) = delete;

  /// Starts argv (argv[0] looked up on PATH). Error kind start_failed when it
  /// cannot be run (or was already started).
  Status start(const std::vector<std::string>& argv);

  struct Lines {
    std::vector<std::string> lines;  // complete lines, without "\n" or "\r\n"
    bool eof = false;                // the pipe closed; an unterminated last line is in `lines`
  };
  /// The lines that have arrived, waiting at most `wait` for the first one,
  /// or until `waker` is set. Never blocks longer, even when a wedged child
  /// keeps the pipe open.
  Lines read_lines(std::chrono::milliseconds wait, const Waker* waker = nullptr);

  /// The exit code once the child has exited (reaped here); -1 when a signal
  /// ended it; nullopt while it runs or before start.
  std::optional<int> exit_code();

  /// Kills the whole group, closes the pipe and reaps the child if it dies
  /// within ~100 ms (one stuck in the driver may not; it is not waited for).
  /// Idempotent.
  void kill();

  /// The child's pid (its process group), 0 before start.
  int64_t pid() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- long-lived detached children (llama-server) ----

struct SpawnSpec {
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> set_env;
  std::vector<std::string> drop_env_prefixes;  // e.g. "LLAMA_ARG_": inherited values would override our flags
  std::string log_path;                        // stdout and stderr go here (appended)
};

struct Spawned {
  int64_t pid = 0;
  uint64_t start_time = 0;  // OS start time: tells a reused pid apart
};

/// Starts a process in a new session (own process group; survives our
/// exit). Error kind start_failed when the program cannot be executed.
Result<Spawned> spawn_detached(const SpawnSpec& spec);

/// For a child this process spawned: its exit status if it has exited
/// (reaps it), nullopt while it runs or when it is not our child.
std::optional<int> try_reap(int64_t pid);

/// OS start time of a live process; nullopt when no such process (or a zombie).
std::optional<uint64_t> process_start_time(int64_t pid);

/// True when pid runs and, if given, started at `start_time` (not a reused pid).
bool process_alive(int64_t pid, std::optional<uint64_t> start_time);

/// Login name of the process's owner (from the OS's process table and the
/// user database, without NSS); nullopt when the OS does not tell.
std::optional<std::string> process_user(int64_t pid);
std::string current_user();
int64_t current_pid();

enum class Signal { terminate, kill };
/// Signals a process group (pgid == leader pid). False when none exists or,
/// for terminate, when it cannot be reached. POSIX: SIGTERM / SIGKILL to the
/// group. Windows: terminate is a console Ctrl-C to the process's own
/// (hidden) console, which llama-server handles as SIGINT, delivered by a
/// helper run of this same executable (see run_helper); kill ends the process
/// and every process it started.
bool signal_group(int64_t pgid, Signal sig);

/// The entry point of the helper runs that signal_group needs on Windows:
/// every program that can call signal_group calls this first in main() and
/// returns its value when there is one. nullopt: argv is not a helper run
/// (always, on POSIX).
std::optional<int> run_helper(int argc, char** argv);

// ---- files and locks ----

class FileLock {
 public:
  /// Exclusive lock on `path` (created if needed). Waits up to `timeout`;
  /// error kind state when it cannot be had.
  static Result<FileLock> acquire(const std::string& path, std::chrono::milliseconds timeout);
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();
  /// The identity (device, inode) of the file this lock holds; nullopt where
  /// the platform cannot tell (Windows). Compared with file_identity() of its
  /// path, it says whether the path still names the locked file.
  std::optional<std::pair<uint64_t, uint64_t>> identity() const;

 private:
  explicit FileLock(intptr_t handle) : handle_(handle) {}
  intptr_t handle_ = -1;
};

/// Writes to a temp file beside `path`, flushes it to disk, renames it over
/// `path`. A crash at any point leaves the old or the new file, never a mix.
/// The temp's name is unpredictable and it is created exclusively (O_EXCL,
/// O_NOFOLLOW, 0600): a link planted beside `path` is never written through.
Status write_file_atomic(const std::string& path, const std::string& content);
/// Creates or truncates `path` (0600 whatever the umask) and writes `content`.
/// A symbolic link at `path` is an error; its target is left untouched.
Status write_private_file(const std::string& path, const std::string& content);
/// The identity (device, inode) of the file at `path`; nullopt when there is
/// none (or on Windows).
std::optional<std::pair<uint64_t, uint64_t>> file_identity(const std::string& path);
/// Whether `path` (itself, not a link's target) belongs to the user llamactl
/// runs as; nullopt when that cannot be told (missing, or Windows).
std::optional<bool> owned_by_me(const std::string& path);
Result<std::string> read_file(const std::string& path);
bool file_exists(const std::string& path);
Status remove_file(const std::string& path);
/// A file's last write time, in nanoseconds since the Unix epoch, at the
/// file system's precision (std::filesystem in MinGW's libstdc++ rounds it
/// to seconds on Windows).
Result<int64_t> file_mtime_ns(const std::string& path);
Status rename_file(const std::string& from, const std::string& to);
/// Creates dir (and parents) with owner-only permissions, and checks the dir
/// itself as ssh's StrictModes would: it must be a directory of the user
/// llamactl runs as that no group or other user can write to. With
/// `may_be_link` false a symbolic link there is refused too (a state dir's
/// logs/ and pids/). Error kind state, saying what is wrong and how to fix it.
Status make_private_dir(const std::string& path, bool may_be_link = true);
/// A path in llamactl's encoding (UTF-8, as every string here) as
/// std::filesystem takes it, and back. Never std::filesystem::path(string) or
/// .string(): on Windows those read and write the bytes in the C runtime's
/// locale, not as UTF-8, and mangle any name beyond ASCII.
std::filesystem::path fs_path(const std::string& utf8);
/// `dir`/`name` with the OS's separator throughout `name` ("logs/a.log" is
/// logs\a.log on Windows, where paths are pasted into Explorer and cmd).
std::string join_path(const std::string& dir, std::string name);
std::string utf8_path(const std::filesystem::path& p);

std::string default_state_dir();
std::string default_config_path();
/// How --help names where the state dir and the config are looked for, in
/// the OS's own notation (~/.config/... and $VAR; %APPDATA%\... and %VAR%).
std::string state_dir_help();
std::string config_path_help();
std::optional<std::string> env(const char* name);
/// Absolute path of a program: as given when it contains a separator, else
/// searched on PATH; nullopt when not found or not executable.
std::optional<std::string> find_program(const std::string& name);
/// The nvidia-smi to run when LLAMACTL_NVIDIA_SMI names none: on PATH; on
/// Windows, else %SystemRoot%\System32 (where the driver puts it), else
/// %ProgramFiles%\NVIDIA Corporation\NVSMI (older drivers). "nvidia-smi"
/// when none is found, so the error names the program.
std::string default_nvidia_smi();

// ---- terminal and network ----

bool stdout_is_tty();
bool stderr_is_tty();
int terminal_columns();  // 80 when unknown

/// The terminal of a full-screen view (watch): stdin without line buffering
/// and echo, the alternate screen, the cursor hidden. The destructor
/// restores all of it; SIGINT and SIGTERM end waits (interrupted()), so every
/// way out passes through the destructor.
class TerminalSession {
 public:
  /// nullptr when stdin or stdout is not a terminal.
  static std::unique_ptr<TerminalSession> open();
  ~TerminalSession();
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;

  struct Size {
    int cols = 80, rows = 24;
  };
  Size size() const;
  enum class Event { timeout, key, resize, interrupted };
  /// Waits up to `timeout` for a key (returned in `key`), a resize or SIGINT/SIGTERM.
  Event wait(std::chrono::milliseconds timeout, char& key);
  /// Writes all of `s` to the terminal in one go.
  void write(std::string_view s);

  struct Impl;

 private:
  explicit TerminalSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// True when nothing listens on (and nothing has bound) 127.0.0.1:port.
bool port_available(int port);

/// Raises the soft limit on open files to the hard limit (as Go's runtime
/// does): at the usual 1024 a busy serve stops accepting long before its
/// clients stop coming. Returns the limit now in force (0 when unknown;
/// Windows has no such limit on sockets).
uint64_t raise_open_file_limit();

/// SIGINT/SIGTERM set a flag that long waits poll; SIGPIPE is ignored.
void install_signal_handlers();
bool interrupted();
/// True once the console window llamactl runs in is being closed: Windows
/// ends the process about 5 s after telling it, so whatever is left to do
/// must be quick. Always false on POSIX.
bool console_closing();
/// serve: from now on SIGHUP asks for a config reload instead of ending the
/// process (as nginx and sshd take it). Nothing on Windows, which has no SIGHUP.
void catch_hangup();
/// True once per SIGHUP since the last call (always false on Windows).
bool take_hangup();

void sleep_for(std::chrono::milliseconds d);

}  // namespace llamactl::platform
