// POSIX (Linux first) implementation of platform.h.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "platform/platform.h"
#include "platform/platform_detail.h"
#include "util/strings.h"

extern char** environ;

namespace llamactl::platform {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int e) {
  return std::strerror(e);
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// Children start with default signal dispositions and an empty mask, even
// though we ignore SIGPIPE and block nothing ourselves.
void default_signals(posix_spawnattr_t& attr, short extra_flags) {
  sigset_t def, mask;
  sigemptyset(&def);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&def, s);
  sigemptyset(&mask);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | extra_flags));
}

std::atomic<bool> g_interrupted{false};
void on_signal(int) {
  g_interrupted = true;
}

// /etc/passwd lookup without NSS (a static binary cannot load NSS modules).
std::optional<std::string> user_name(uint32_t uid) {
  std::ifstream in("/etc/passwd");
  std::string line;
  while (std::getline(in, line)) {
    const auto f = split(line, ':');
    if (f.size() >= 3 && parse_int(f[2]) == static_cast<int64_t>(uid)) return std::string(f[0]);
  }
  return std::nullopt;
}

}  // namespace

CaptureResult run_capture(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CaptureResult r;
  const auto deadline = Clock::now() + timeout;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    r.error = "pipe: " + errno_text(errno);
    return r;
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    r.error = "pipe: " + errno_text(errno);
    return r;
  }
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // no inherited sockets (serve's are not close-on-exec)
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // own group: a timeout kills it and its children
  default_signals(attr, POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  auto args = c_argv(argv);
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  out_w.reset();
  err_w.reset();
  if (rc != 0) {
    r.error = argv[0] + ": " + errno_text(rc);
    return r;
  }
  r.started = true;

  constexpr size_t kMaxOutput = 16u << 20;
  pollfd fds[2] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  // Read until both pipes close. Once the child itself has exited, a
  // grandchild that inherited the pipe (a wedged driver helper) gets a short
  // grace period, not the whole timeout.
  std::optional<int> exit_status;
  auto stop_reading_at = deadline;
  while (open_fds > 0) {
    const auto now = Clock::now();
    if (now >= stop_reading_at) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(stop_reading_at - now).count();
    const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left + 1, 20)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; n > 0 && i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0 && sinks[i]->size() < kMaxOutput) sinks[i]->append(buf, static_cast<size_t>(got));
      if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
    if (!exit_status) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        stop_reading_at = std::min(deadline, Clock::now() + std::chrono::milliseconds(100));
      }
    }
  }
  // Output is complete (or reading stopped); wait for the exit status until
  // the deadline, then kill the whole group.
  for (;;) {
    if (exit_status) {
      r.exit_code = *exit_status;
      if (open_fds > 0) ::kill(-pid, SIGKILL);  // the helper that held the pipe
      return r;
    }
    int status = 0;
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      continue;
    }
    if (w < 0 && errno != EINTR) return r;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  r.timed_out = true;
  ::kill(-pid, SIGKILL);
  // A process stuck in the driver (D state) cannot die; do not wait for it.
  for (int i = 0; i < 20; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return r;
}

Waker::Waker() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    read_ = fds[0];
    write_ = fds[1];
  }
}

Waker::~Waker() {
  if (read_ >= 0) ::close(static_cast<int>(read_));
  if (write_ >= 0) ::close(static_cast<int>(write_));
}

// Not const: it changes the waker's state, which lives in the kernel, not in a member.
void Waker::set() {  // NOLINT(readability-make-member-function-const)
  // Never read back: the byte keeps the pipe readable, so the waker stays set.
  const char byte = 1;
  if (write_ >= 0) (void)!::write(static_cast<int>(write_), &byte, 1);
}

struct LineStream::Impl {
  pid_t pid = 0;
  Fd out;
  std::string partial;  // bytes after the last newline
  std::optional<int> exit;
  bool eof = false;

  // Moves the complete lines of `partial` into `lines`; at EOF the rest too.
  void take_lines(std::vector<std::string>& lines) {
    // A line this long is not nvidia-smi's; cut it rather than grow without bound.
    constexpr size_t kMaxLine = 1u << 20;
    const size_t first_new = lines.size();
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1)
      lines.push_back(partial.substr(start, nl - start));
    partial.erase(0, start);
    if ((eof && !partial.empty()) || partial.size() > kMaxLine) {
      lines.push_back(std::move(partial));
      partial.clear();
    }
    for (size_t i = first_new; i < lines.size(); ++i)
      if (!lines[i].empty() && lines[i].back() == '\r') lines[i].pop_back();
  }

  // Reads what the pipe holds now, without blocking.
  void drain() {
    char buf[65536];
    for (;;) {
      const ssize_t got = ::read(out.fd, buf, sizeof buf);
      if (got > 0) {
        partial.append(buf, static_cast<size_t>(got));
        continue;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got == 0 || errno != EAGAIN) {
        eof = true;
        out.reset();
      }
      return;
    }
  }
};

LineStream::LineStream() : impl_(std::make_unique<Impl>()) {}

LineStream::~LineStream() {
  kill();
}

Status LineStream::start(const std::vector<std::string>& argv) {
  if (argv.empty() || impl_->pid != 0) return make_error(ErrorKind::start_failed, "empty command or started twice");
  const auto program = find_program(argv[0]);
  if (!program) return make_error(ErrorKind::start_failed, argv[0] + ": not found or not executable");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return make_error(ErrorKind::start_failed, "pipe: " + errno_text(errno));
  Fd out_r(pipe_fds[0]), out_w(pipe_fds[1]);
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls.
  auto args = c_argv(argv);
  const pid_t parent = ::getpid();
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return make_error(ErrorKind::start_failed, "/dev/null: " + errno_text(errno));
  // fork, not posix_spawn: a streaming nvidia-smi must die with us. One whose
  // query has nothing to print (compute-apps with no process) never writes,
  // so it would never get the SIGPIPE that ends it once our end is gone.
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // we died before prctl took effect
    ::setpgid(0, 0);                          // own group: kill() ends it and its helpers
    ::dup2(null_fd, 0);
    ::dup2(out_w.fd, 1);
    ::dup2(null_fd, 2);
    ::close_range(3, ~0U, 0);  // a long-lived nvidia-smi must not hold serve's sockets
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) ::signal(sig, SIG_DFL);
    ::execve(program->c_str(), args.data(), environ);
    ::_exit(127);
  }
  ::close(null_fd);
  if (pid < 0) return make_error(ErrorKind::start_failed, argv[0] + ": fork: " + errno_text(errno));
  // Non-blocking, so that a read never waits past read_lines' deadline.
  ::fcntl(out_r.fd, F_SETFL, ::fcntl(out_r.fd, F_GETFL) | O_NONBLOCK);
  impl_->pid = pid;
  std::swap(impl_->out.fd, out_r.fd);
  return ok_status();
}

LineStream::Lines LineStream::read_lines(std::chrono::milliseconds wait, const Waker* waker) {
  Lines got;
  const auto deadline = Clock::now() + wait;
  for (;;) {
    if (impl_->out.fd >= 0) impl_->drain();
    impl_->take_lines(got.lines);
    got.eof = impl_->eof || impl_->pid == 0;
    if (!got.lines.empty() || got.eof) return got;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return got;
    pollfd fds[2] = {{impl_->out.fd, POLLIN, 0}, {waker ? static_cast<int>(waker->read_) : -1, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(left, INT32_MAX)));
    if ((n < 0 && errno != EINTR) || (n > 0 && fds[1].revents != 0)) return got;
  }
}

std::optional<int> LineStream::exit_code() {
  if (impl_->exit || impl_->pid == 0) return impl_->exit;
  int status = 0;
  if (::waitpid(impl_->pid, &status, WNOHANG) == impl_->pid) impl_->exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return impl_->exit;
}

void LineStream::kill() {
  if (impl_->pid == 0) return;
  // After the child is reaped, the group may still hold a helper that keeps
  // the pipe open; an unreaped child's pid cannot have been reused.
  if (!exit_code() || impl_->out.fd >= 0) ::kill(-impl_->pid, SIGKILL);
  impl_->out.reset();
  impl_->eof = true;
  for (int i = 0; i < 50 && !exit_code(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

int64_t LineStream::pid() const {
  return impl_->pid;
}

Result<Spawned> spawn_detached(const SpawnSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorKind::start_failed, "empty command");
  // Environment: ours, minus the dropped prefixes and the names we set.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string_view kv(*e);
    const std::string_view name = kv.substr(0, kv.find('='));
    bool drop = false;
    for (const auto& p : spec.drop_env_prefixes) drop = drop || starts_with(name, p);
    for (const auto& [k, v] : spec.set_env) drop = drop || name == k;
    if (!drop) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : spec.set_env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Nothing else of ours leaks into a server that outlives us: serve's
  // listening socket and client connections are not marked close-on-exec by Asio.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  default_signals(attr, POSIX_SPAWN_SETSID);  // new session: own group, no controlling terminal
  pid_t pid = 0;
  auto args = c_argv(spec.argv);
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return make_error(ErrorKind::start_failed, "cannot run '" + spec.argv[0] + "': " + errno_text(rc));
  Spawned s;
  s.pid = pid;
  s.start_time = process_start_time(pid).value_or(0);
  return s;
}

std::optional<int> try_reap(int64_t pid) {
  int status = 0;
  const pid_t w = ::waitpid(static_cast<pid_t>(pid), &status, WNOHANG);
  if (w != static_cast<pid_t>(pid)) return std::nullopt;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::optional<uint64_t> process_start_time(int64_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  // "pid (comm) S ppid ...": comm may hold spaces and ')', so start after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string state;
  fields >> state;
  if (state == "Z" || state == "X") return std::nullopt;
  std::string f;
  for (int i = 4; i <= 22; ++i) fields >> f;  // field 22: starttime
  return parse_int(f).has_value() ? std::optional<uint64_t>(static_cast<uint64_t>(*parse_int(f))) : std::nullopt;
}

bool process_alive(int64_t pid, std::optional<uint64_t> start_time) {
  const auto now = process_start_time(pid);
  if (!now) return false;
  return !start_time || *start_time == 0 || *now == *start_time;
}

std::optional<std::string> process_user(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (starts_with(line, "Uid:")) {
      const auto uid = parse_int(split(trim(std::string_view(line).substr(4)), '\t')[0]);
      if (!uid) return std::nullopt;
      if (auto name = user_name(static_cast<uint32_t>(*uid))) return name;
      return std::to_string(*uid);
    }
  }
  return std::nullopt;
}

std::string current_user() {
  if (auto n = user_name(static_cast<uint32_t>(::getuid()))) return *n;
  return std::to_string(::getuid());
}

int64_t current_pid() {
  return ::getpid();
}

bool signal_group(int64_t pgid, Signal sig) {
  if (pgid <= 1) return false;  // never signal init or "every process"
  return ::kill(static_cast<pid_t>(-pgid), sig == Signal::kill ? SIGKILL : SIGTERM) == 0;
}

Result<FileLock> FileLock::acquire(const std::string& path, std::chrono::milliseconds timeout) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ELOOP)
    return make_error(ErrorKind::state,
                      "lock file " + path + " is a symbolic link; llamactl never opens one (remove it)");
  if (fd < 0) return make_error(ErrorKind::state, "cannot open lock file " + path + ": " + errno_text(errno));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return FileLock(fd);
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int e = errno;
      ::close(fd);
      return make_error(ErrorKind::state, "cannot lock " + path + ": " + errno_text(e));
    }
    if (Clock::now() >= deadline) {
      ::close(fd);
      return make_error(ErrorKind::state,
                        "timed out waiting for the state lock " + path + " (another llamactl holds it)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::optional<int> run_helper(int, char**) {
  return std::nullopt;
}

void close_lock_handle(intptr_t handle) {
  ::close(static_cast<int>(handle));
}  // closing releases the flock

namespace {

/// 64 random bits as hex, for names nobody can plant a link at beforehand.
std::string random_suffix() {
  static thread_local std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

Status write_all_fd(int fd, const std::string& path, const std::string& content) {
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(ErrorKind::state, "cannot write " + path + ": " + errno_text(errno));
    done += static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace

Status write_private_file(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ELOOP)
    return make_error(ErrorKind::state, path + " is a symbolic link; llamactl never writes through one (remove it)");
  if (fd < 0) return make_error(ErrorKind::state, "cannot create " + path + ": " + errno_text(errno));
  // An existing file keeps its mode on O_TRUNC: make it private too.
  if (::fchmod(fd, 0600) != 0) {
    const int e = errno;
    ::close(fd);
    return make_error(ErrorKind::state, "cannot chmod " + path + ": " + errno_text(e));
  }
  auto s = write_all_fd(fd, path, content);
  ::close(fd);
  return s;
}

std::optional<std::pair<uint64_t, uint64_t>> FileLock::identity() const {
  struct stat st {};
  if (handle_ < 0 || ::fstat(static_cast<int>(handle_), &st) != 0) return std::nullopt;
  return std::pair<uint64_t, uint64_t>{st.st_dev, st.st_ino};
}

std::optional<std::pair<uint64_t, uint64_t>> file_identity(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return std::pair<uint64_t, uint64_t>{st.st_dev, st.st_ino};
}

std::optional<bool> owned_by_me(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return st.st_uid == ::geteuid();
}

Status write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + random_suffix();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(ErrorKind::state, "cannot create " + tmp + ": " + errno_text(errno));
  if (auto s = write_all_fd(fd, tmp, content); !s) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return make_error(ErrorKind::state, "cannot flush " + tmp + ": " + errno_text(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return make_error(ErrorKind::state, "cannot rename " + tmp + " to " + path + ": " + errno_text(e));
  }
  // Make the rename itself durable.
  const std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 1 : path.find_last_of('/'));
  const int dfd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok_status();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Status remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return make_error(ErrorKind::io, "cannot remove " + path + ": " + errno_text(errno));
  return ok_status();
}

Result<int64_t> file_mtime_ns(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return make_error(ErrorKind::io, "cannot read the mtime of " + path + ": " + errno_text(errno));
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

Status rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return make_error(ErrorKind::io, "cannot rename " + from + " to " + to + ": " + errno_text(errno));
  return ok_status();
}

Status make_private_dir(const std::string& path, bool may_be_link) {
  if (path.empty()) return make_error(ErrorKind::state, "empty directory path");
  size_t pos = 0;
  for (;;) {
    pos = path.find('/', pos + 1);
    const std::string part = path.substr(0, pos);
    if (!part.empty() && ::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
      return make_error(ErrorKind::state, "cannot create directory " + part + ": " + errno_text(errno));
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (!may_be_link && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
    return make_error(ErrorKind::state, path +
                                            " is a symbolic link; llamactl writes only into a real directory there "
                                            "(remove the link)");
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(ErrorKind::state, path + " is not a directory");
  // ssh's StrictModes: another user who can write here can plant records and links.
  if (st.st_uid != ::geteuid()) {
    const auto owner = user_name(static_cast<uint32_t>(st.st_uid));
    return make_error(ErrorKind::state, path + " belongs to " + owner.value_or("uid " + std::to_string(st.st_uid)) +
                                            ", not to you (" + current_user() +
                                            "); llamactl uses only a directory of your own (set --state-dir or "
                                            "LLAMACTL_STATE_DIR to one)");
  }
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return make_error(ErrorKind::state, path + " can be written by " +
                                            ((st.st_mode & 002) != 0 ? "every user" : "its group") + " (mode " + mode +
                                            "); fix it with: chmod 700 " + path);
  }
  return ok_status();
}

std::string default_state_dir() {
  if (auto x = env("XDG_STATE_HOME"); x && !x->empty()) return *x + "/llamactl";
  if (auto h = env("HOME"); h && !h->empty()) return *h + "/.local/state/llamactl";
  return "/tmp/llamactl-" + std::to_string(::getuid());
}

std::string state_dir_help() {
  return "$LLAMACTL_STATE_DIR, $XDG_STATE_HOME/llamactl, ~/.local/state/llamactl";
}

std::string config_path_help() {
  return "$LLAMACTL_CONFIG, ./llamactl.toml, $XDG_CONFIG_HOME/llamactl/config.toml, ~/.config/llamactl/config.toml";
}

std::string default_config_path() {
  if (auto x = env("XDG_CONFIG_HOME"); x && !x->empty()) return *x + "/llamactl/config.toml";
  if (auto h = env("HOME"); h && !h->empty()) return *h + "/.config/llamactl/config.toml";
  return {};
}

std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  const auto path = env("PATH").value_or("/usr/local/bin:/usr/bin:/bin");
  for (auto dir : split(path, ':')) {
    const std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return std::nullopt;
}

std::string default_nvidia_smi() {
  return "nvidia-smi";
}

bool stdout_is_tty() {
  return ::isatty(1) == 1;
}
bool stderr_is_tty() {
  return ::isatty(2) == 1;
}

int terminal_columns() {
  winsize ws{};
  if (::ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (auto c = env("COLUMNS"); c && parse_int(*c) && *parse_int(*c) > 0) return static_cast<int>(*parse_int(*c));
  return 80;
}

bool port_available(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  // SO_REUSEADDR as llama-server itself sets it: TIME_WAIT leftovers do not count as taken.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

uint64_t raise_open_file_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur == lim.rlim_max) return lim.rlim_cur;
  rlimit want = lim;
  want.rlim_cur = lim.rlim_max;
  // An unlimited hard limit is refused above fs.nr_open: then a generous number.
  if (::setrlimit(RLIMIT_NOFILE, &want) != 0) {
    want.rlim_cur = std::min<rlim_t>(lim.rlim_max, 1 << 20);
    if (::setrlimit(RLIMIT_NOFILE, &want) != 0) return lim.rlim_cur;
  }
  return want.rlim_cur;
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool interrupted() {
  return g_interrupted.load();
}

bool console_closing() {
  return false;
}

namespace {
std::atomic<bool> g_hangup{false};
void on_hangup(int) {
  g_hangup = true;
}
}  // namespace

void catch_hangup() {
  struct sigaction sa {};
  sa.sa_handler = on_hangup;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGHUP, &sa, nullptr);
}

bool take_hangup() {
  return g_hangup.exchange(false);
}

// ---------------------------------------------------------------------------
// TerminalSession

namespace {
int g_winch_pipe[2] = {-1, -1};  // SIGWINCH writes a byte; wait() polls the read end

void on_winch(int) {
  const int saved = errno;
  const char b = 1;
  (void)!::write(g_winch_pipe[1], &b, 1);
  errno = saved;
}
}  // namespace

struct TerminalSession::Impl {
  termios saved{};
  struct sigaction old_winch {};
};

TerminalSession::TerminalSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<TerminalSession> TerminalSession::open() {
  if (!::isatty(0) || !::isatty(1)) return nullptr;
  auto impl = std::make_unique<Impl>();
  if (::tcgetattr(0, &impl->saved) != 0) return nullptr;
  if (g_winch_pipe[0] < 0 && ::pipe2(g_winch_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return nullptr;
  termios raw = impl->saved;
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // keys at once, not echoed; ISIG stays: Ctrl-C is SIGINT
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  ::tcsetattr(0, TCSANOW, &raw);
  struct sigaction sa {};
  sa.sa_handler = on_winch;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGWINCH, &sa, &impl->old_winch);
  std::unique_ptr<TerminalSession> t(new TerminalSession(std::move(impl)));
  t->write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");  // alternate screen, cursor hidden, cleared
  return t;
}

TerminalSession::~TerminalSession() {
  write("\x1b[0m\x1b[?25h\x1b[?1049l");  // attributes reset, cursor shown, main screen back
  ::sigaction(SIGWINCH, &impl_->old_winch, nullptr);
  ::tcsetattr(0, TCSANOW, &impl_->saved);
}

TerminalSession::Size TerminalSession::size() const {
  winsize ws{};
  if (::ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) return {ws.ws_col, ws.ws_row};
  return {};
}

TerminalSession::Event TerminalSession::wait(std::chrono::milliseconds timeout, char& key) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (interrupted()) return Event::interrupted;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) return Event::timeout;
    pollfd fds[2] = {{0, POLLIN, 0}, {g_winch_pipe[0], POLLIN, 0}};
    // Bounded slices: a signal that lands between the check above and poll() is seen within 100 ms.
    const int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 100)));
    if (n < 0 && errno != EINTR) return Event::interrupted;
    if (n <= 0) continue;
    if (fds[1].revents & POLLIN) {
      char drain[64];
      while (::read(g_winch_pipe[0], drain, sizeof drain) > 0) {
      }
      return Event::resize;
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      const ssize_t r = ::read(0, &key, 1);
      if (r == 1) return Event::key;
      if (r == 0) return Event::interrupted;  // the terminal went away
    }
  }
}

void TerminalSession::write(std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(1, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace llamactl::platform
