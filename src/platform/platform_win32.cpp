// Win32 implementation of platform.h: processes (a job object bounds each
// nvidia-smi run; llama-server starts detached on a hidden console of its
// own with its output in the log file, and stops on that console's Ctrl-C),
// locks, atomic files, paths. Built with MinGW-w64 and tested under Wine.

#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
// winsock2.h must come before windows.h.
#include <io.h>
#include <windows.h>
// tlhelp32.h needs windows.h first.
#include <tlhelp32.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "platform/platform.h"
#include "platform/platform_detail.h"
#include "util/strings.h"

namespace llamactl::platform {
namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_closing{false};

BOOL WINAPI on_console_event(DWORD type) {
  if (type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT) {
    g_interrupted = true;
    return TRUE;
  }
  if (type == CTRL_CLOSE_EVENT) {
    // The console window is closing. Windows ends the process as soon as this
    // handler returns, and at the latest after about 5 s: wait here so that
    // the main thread can stop what it runs (serve's servers, watch's screen)
    // and exit, which ends this thread too.
    g_closing = true;
    g_interrupted = true;
    ::Sleep(10000);
    return TRUE;
  }
  return FALSE;
}

std::string last_error_text() {
  const DWORD code = ::GetLastError();
  char* buf = nullptr;
  ::FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr,
                   code, 0, reinterpret_cast<LPSTR>(&buf), 0, nullptr);
  std::string s = buf ? std::string(trim(buf)) : "error " + std::to_string(code);
  if (buf) ::LocalFree(buf);
  return s;
}

std::optional<uint64_t> creation_time(HANDLE h) {
  FILETIME created, exited, kernel, user;
  if (!::GetProcessTimes(h, &created, &exited, &kernel, &user)) return std::nullopt;
  return (static_cast<uint64_t>(created.dwHighDateTime) << 32) | created.dwLowDateTime;
}

}  // namespace

namespace {

// Quotes one argument so that CommandLineToArgvW (and the MSVC runtime) gives it back unchanged.
std::string quote_arg(const std::string& a) {
  if (!a.empty() && a.find_first_of(" \t\n\v\"") == std::string::npos) return a;
  std::string out = "\"";
  size_t backslashes = 0;
  for (char c : a) {
    if (c == '\\') {
      ++backslashes;
      continue;
    }
    if (c == '"')
      out.append(backslashes * 2 + 1, '\\');
    else
      out.append(backslashes, '\\');
    backslashes = 0;
    out += c;
  }
  out.append(backslashes * 2, '\\');
  return out + "\"";
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + quote_arg(a);
  return cmd;
}

HANDLE open_null(DWORD access) {
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  return ::CreateFileA("NUL", access, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa, OPEN_EXISTING, 0, nullptr);
}

struct Handle {
  HANDLE h = nullptr;
  Handle() = default;
  explicit Handle(HANDLE x) : h(x) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (h && h != INVALID_HANDLE_VALUE) ::CloseHandle(h);
    h = nullptr;
  }
};

// Reads a pipe to the end on its own Win32 thread (a HANDLE, so that the
// read can be cancelled when a helper that inherited the pipe keeps it open).
struct PipeReader {
  std::string data;
  HANDLE pipe = nullptr;
  HANDLE thread = nullptr;

  static DWORD WINAPI run(LPVOID self) {
    auto* r = static_cast<PipeReader*>(self);
    char buf[65536];
    DWORD got = 0;
    while (::ReadFile(r->pipe, buf, sizeof buf, &got, nullptr) && got > 0)
      if (r->data.size() < (16u << 20)) r->data.append(buf, got);
    return 0;
  }
  void start(HANDLE p) {
    pipe = p;
    thread = ::CreateThread(nullptr, 0, &PipeReader::run, this, 0, nullptr);
  }
  void finish(std::chrono::milliseconds grace) {
    if (!thread) return;
    if (::WaitForSingleObject(thread, static_cast<DWORD>(grace.count())) == WAIT_TIMEOUT) {
      // Cancel the blocked read (again if the thread started another one), for up to a second.
      for (int i = 0; i < 100 && ::WaitForSingleObject(thread, 10) == WAIT_TIMEOUT; ++i) ::CancelSynchronousIo(thread);
      // Last resort, never expected: a read that cannot be cancelled must not hang llamactl.
      if (::WaitForSingleObject(thread, 0) == WAIT_TIMEOUT) ::TerminateThread(thread, 1);
    }
    ::CloseHandle(thread);
    thread = nullptr;
  }
};

// Starts a child of run_capture or LineStream inside `job` (which ends it
// and whatever it starts). The process is in the job from its creation
// (PROC_THREAD_ATTRIBUTE_JOB_LIST), so that no instant exists in which
// llamactl could be killed and leave it outside; where the attribute is not
// honoured it is created suspended, assigned, then resumed. It inherits its
// standard handles only (PROC_THREAD_ATTRIBUTE_HANDLE_LIST), not the pipes of
// another run going on at the same time, which would keep those open.
bool create_in_job(const std::string& program, std::string& cmd, STARTUPINFOA& base, HANDLE job,
                   PROCESS_INFORMATION& pi) {
  std::vector<HANDLE> inherit;
  for (HANDLE h : {base.hStdInput, base.hStdOutput, base.hStdError})
    if (h && h != INVALID_HANDLE_VALUE && std::find(inherit.begin(), inherit.end(), h) == inherit.end())
      inherit.push_back(h);
  SIZE_T attr_size = 0;
  ::InitializeProcThreadAttributeList(nullptr, 2, 0, &attr_size);
  std::string attr_buf(attr_size, '\0');
  auto* attrs = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attr_buf.data());
  HANDLE jobs[] = {job};
  const bool have_list =
      ::InitializeProcThreadAttributeList(attrs, 2, 0, &attr_size) &&
      ::UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_JOB_LIST, jobs, sizeof jobs, nullptr, nullptr) &&
      ::UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit.data(),
                                  inherit.size() * sizeof(HANDLE), nullptr, nullptr);
  STARTUPINFOEXA si{};
  si.StartupInfo = base;
  si.StartupInfo.cb = sizeof si;
  si.lpAttributeList = attrs;
  const DWORD flags = CREATE_SUSPENDED | CREATE_NO_WINDOW;
  BOOL started =
      have_list && ::CreateProcessA(program.c_str(), cmd.data(), nullptr, nullptr, TRUE,
                                    flags | EXTENDED_STARTUPINFO_PRESENT, nullptr, nullptr, &si.StartupInfo, &pi);
  if (have_list) ::DeleteProcThreadAttributeList(attrs);
  if (!started)
    started =
        ::CreateProcessA(program.c_str(), cmd.data(), nullptr, nullptr, TRUE, flags, nullptr, nullptr, &base, &pi);
  if (!started) return false;
  BOOL in_job = FALSE;
  if (!::IsProcessInJob(pi.hProcess, job, &in_job) || !in_job) ::AssignProcessToJobObject(job, pi.hProcess);
  ::ResumeThread(pi.hThread);
  return true;
}

// Where llamactl looks for a program named without a folder (find_program).
constexpr const char* kNotFound = "not found (looked in llamactl's folder and on PATH)";

}  // namespace

CaptureResult run_capture(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CaptureResult r;
  if (argv.empty()) {
    r.error = "empty command";
    return r;
  }
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  HANDLE out_r = nullptr, out_w = nullptr, err_r = nullptr, err_w = nullptr;
  if (!::CreatePipe(&out_r, &out_w, &sa, 0) || !::CreatePipe(&err_r, &err_w, &sa, 0)) {
    r.error = "pipe: " + last_error_text();
    return r;
  }
  Handle hout_r(out_r), hout_w(out_w), herr_r(err_r), herr_w(err_w), null_in(open_null(GENERIC_READ));
  ::SetHandleInformation(out_r, HANDLE_FLAG_INHERIT, 0);
  ::SetHandleInformation(err_r, HANDLE_FLAG_INHERIT, 0);
  // A job holds the process and everything it starts, so a timeout ends them
  // all; only a process started to outlive it on purpose (breakaway, as
  // spawn_detached does: llamactl run by a test starting a server) leaves it.
  Handle job(::CreateJobObjectA(nullptr, nullptr));
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits{};
  limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_BREAKAWAY_OK;
  ::SetInformationJobObject(job.h, JobObjectExtendedLimitInformation, &limits, sizeof limits);

  STARTUPINFOA si{};
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = null_in.h;
  si.hStdOutput = out_w;
  si.hStdError = err_w;
  PROCESS_INFORMATION pi{};
  std::string cmd = command_line(argv);
  const auto program = find_program(argv[0]);
  if (!program) {
    r.error = argv[0] + ": " + kNotFound;
    return r;
  }
  if (!create_in_job(*program, cmd, si, job.h, pi)) {
    r.error = argv[0] + ": " + last_error_text();
    return r;
  }
  Handle process(pi.hProcess), thread(pi.hThread);
  r.started = true;
  hout_w.reset();  // only the child holds the write ends now
  herr_w.reset();

  PipeReader out, err;
  out.start(out_r);
  err.start(err_r);
  const DWORD wait = ::WaitForSingleObject(pi.hProcess, static_cast<DWORD>(timeout.count()));
  if (wait == WAIT_OBJECT_0) {
    DWORD code = 0;
    if (::GetExitCodeProcess(pi.hProcess, &code)) r.exit_code = static_cast<int>(code);
  } else {
    r.timed_out = true;
  }
  ::TerminateJobObject(job.h, 1);  // helpers that outlived it, or the whole tree on timeout
  out.finish(std::chrono::milliseconds(100));
  err.finish(std::chrono::milliseconds(100));
  r.out = std::move(out.data);
  r.err = std::move(err.data);
  return r;
}

Waker::Waker() {
  // Manual reset: once set, every wait on it ends at once.
  read_ = reinterpret_cast<intptr_t>(::CreateEventA(nullptr, TRUE, FALSE, nullptr));
}

Waker::~Waker() {
  if (read_) ::CloseHandle(reinterpret_cast<HANDLE>(read_));
}

void Waker::set() {
  if (read_) ::SetEvent(reinterpret_cast<HANDLE>(read_));
}

// Anonymous pipes have no overlapped reads on Windows, so read_lines polls
// PeekNamedPipe every few milliseconds until its deadline: it never blocks in
// ReadFile, which only ever asks for the bytes already there.
struct LineStream::Impl {
  Handle process, job, out;
  int64_t pid = 0;
  std::string partial;
  std::optional<int> exit;
  bool eof = false;

  void take_lines(std::vector<std::string>& lines) {
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

  void drain() {
    char buf[65536];
    for (;;) {
      DWORD avail = 0;
      if (!::PeekNamedPipe(out.h, nullptr, 0, nullptr, &avail, nullptr)) {
        eof = true;  // ERROR_BROKEN_PIPE: every writer closed it
        out.reset();
        return;
      }
      if (avail == 0) return;
      DWORD got = 0;
      if (!::ReadFile(out.h, buf, std::min<DWORD>(avail, sizeof buf), &got, nullptr) || got == 0) {
        eof = true;
        out.reset();
        return;
      }
      partial.append(buf, got);
    }
  }
};

LineStream::LineStream() : impl_(std::make_unique<Impl>()) {}

LineStream::~LineStream() {
  kill();
}

Status LineStream::start(const std::vector<std::string>& argv) {
  if (argv.empty() || impl_->pid != 0) return make_error(ErrorKind::start_failed, "empty command or started twice");
  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  HANDLE out_r = nullptr, out_w = nullptr;
  if (!::CreatePipe(&out_r, &out_w, &sa, 0)) return make_error(ErrorKind::start_failed, "pipe: " + last_error_text());
  Handle hout_r(out_r), hout_w(out_w), null_in(open_null(GENERIC_READ)), null_err(open_null(GENERIC_WRITE));
  ::SetHandleInformation(out_r, HANDLE_FLAG_INHERIT, 0);
  // The job holds the process and everything it starts, so kill() ends them all.
  Handle job(::CreateJobObjectA(nullptr, nullptr));
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits{};
  limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
  ::SetInformationJobObject(job.h, JobObjectExtendedLimitInformation, &limits, sizeof limits);

  STARTUPINFOA si{};
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = null_in.h;
  si.hStdOutput = out_w;
  si.hStdError = null_err.h;
  PROCESS_INFORMATION pi{};
  std::string cmd = command_line(argv);
  const auto program = find_program(argv[0]);
  if (!program) return make_error(ErrorKind::start_failed, argv[0] + ": " + kNotFound);
  if (!create_in_job(*program, cmd, si, job.h, pi))
    return make_error(ErrorKind::start_failed, argv[0] + ": " + last_error_text());
  Handle thread(pi.hThread);
  impl_->process.h = pi.hProcess;
  impl_->pid = static_cast<int64_t>(pi.dwProcessId);
  std::swap(impl_->job.h, job.h);
  std::swap(impl_->out.h, hout_r.h);
  return ok_status();  // hout_w closes here: only the child holds the write end
}

LineStream::Lines LineStream::read_lines(std::chrono::milliseconds wait, const Waker* waker) {
  Lines got;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    if (impl_->out.h) impl_->drain();
    impl_->take_lines(got.lines);
    got.eof = impl_->eof || impl_->pid == 0;
    if (!got.lines.empty() || got.eof || std::chrono::steady_clock::now() >= deadline) return got;
    // The 5 ms poll of the pipe doubles as the wait on the waker.
    if (waker && waker->read_) {
      if (::WaitForSingleObject(reinterpret_cast<HANDLE>(waker->read_), 5) == WAIT_OBJECT_0) return got;
    } else {
      ::Sleep(5);
    }
  }
}

std::optional<int> LineStream::exit_code() {
  if (impl_->exit || !impl_->process.h) return impl_->exit;
  DWORD code = 0;
  if (::WaitForSingleObject(impl_->process.h, 0) == WAIT_OBJECT_0 && ::GetExitCodeProcess(impl_->process.h, &code))
    impl_->exit = static_cast<int>(code);
  return impl_->exit;
}

void LineStream::kill() {
  if (impl_->pid == 0) return;
  if (impl_->job.h) ::TerminateJobObject(impl_->job.h, 1);
  impl_->job.reset();
  impl_->out.reset();
  impl_->eof = true;
  if (impl_->process.h) ::WaitForSingleObject(impl_->process.h, 100);
  exit_code();
}

int64_t LineStream::pid() const {
  return impl_->pid;
}

namespace {

/// A symbolic link or junction (what O_NOFOLLOW refuses on POSIX).
bool is_reparse_point(const std::string& path) {
  const DWORD attrs = ::GetFileAttributesA(path.c_str());
  return attrs != INVALID_FILE_ATTRIBUTES && (attrs & FILE_ATTRIBUTE_REPARSE_POINT) != 0;
}

}  // namespace

Result<Spawned> spawn_detached(const SpawnSpec& spec) {
  if (spec.argv.empty()) return make_error(ErrorKind::start_failed, "empty command");
  // Environment block: ours minus the dropped prefixes and the names we set, then ours.
  std::string block;
  if (char* env = ::GetEnvironmentStringsA()) {
    for (const char* e = env; *e; e += std::strlen(e) + 1) {
      const std::string_view kv(e);
      const std::string_view name = kv.substr(0, kv.find('=', 1));
      bool drop = false;
      for (const auto& p : spec.drop_env_prefixes) drop = drop || starts_with(name, p);
      for (const auto& [k, v] : spec.set_env) drop = drop || iequals(name, k);
      if (!drop) block.append(kv).push_back('\0');
    }
    ::FreeEnvironmentStringsA(env);
  }
  for (const auto& [k, v] : spec.set_env) block.append(k + "=" + v).push_back('\0');
  block.push_back('\0');

  SECURITY_ATTRIBUTES sa{sizeof sa, nullptr, TRUE};
  // Never through a link planted there since the header was written (O_NOFOLLOW on POSIX).
  if (is_reparse_point(spec.log_path))
    return make_error(ErrorKind::state, "log file " + spec.log_path +
                                            " is a symbolic link; llamactl never writes "
                                            "through one (remove it)");
  Handle log(::CreateFileA(spec.log_path.c_str(), FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, &sa,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr));
  if (log.h == INVALID_HANDLE_VALUE)
    return make_error(ErrorKind::state, "cannot open log file " + spec.log_path + ": " + last_error_text());
  Handle null_in(open_null(GENERIC_READ));
  // Only these two handles are inherited: not a pipe of whoever runs llamactl,
  // which the server would otherwise hold open for as long as it runs.
  HANDLE inherit[] = {null_in.h, log.h};
  SIZE_T attr_size = 0;
  ::InitializeProcThreadAttributeList(nullptr, 1, 0, &attr_size);
  std::string attr_buf(attr_size, '\0');
  auto* attrs = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attr_buf.data());
  const bool have_list = ::InitializeProcThreadAttributeList(attrs, 1, 0, &attr_size) &&
                         ::UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit,
                                                     sizeof inherit, nullptr, nullptr);
  STARTUPINFOEXA si{};
  si.StartupInfo.cb = sizeof si;
  si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  si.StartupInfo.hStdInput = null_in.h;
  si.StartupInfo.hStdOutput = log.h;
  si.StartupInfo.hStdError = log.h;
  si.lpAttributeList = have_list ? attrs : nullptr;
  PROCESS_INFORMATION pi{};
  std::string cmd = command_line(spec.argv);
  const auto found = find_program(spec.argv[0]);
  if (!found) return make_error(ErrorKind::start_failed, "cannot run '" + spec.argv[0] + "': " + kNotFound);
  const std::string& program = *found;
  // A hidden console of its own (CREATE_NO_WINDOW): the terminal that ran
  // llamactl can close, and a Ctrl-C there does not reach the server, but
  // signal_group() can send one to this console. Not a new process group,
  // which would turn Ctrl-C off in the server. Out of llamactl's job where the
  // job allows it (Task Scheduler ends a task's job).
  const DWORD flags = CREATE_NO_WINDOW | (have_list ? EXTENDED_STARTUPINFO_PRESENT : 0);
  BOOL started = ::CreateProcessA(program.c_str(), cmd.data(), nullptr, nullptr, TRUE,
                                  flags | CREATE_BREAKAWAY_FROM_JOB, block.data(), nullptr, &si.StartupInfo, &pi);
  if (!started && ::GetLastError() == ERROR_ACCESS_DENIED)  // a job without breakaway: stay in it
    started = ::CreateProcessA(program.c_str(), cmd.data(), nullptr, nullptr, TRUE, flags, block.data(), nullptr,
                               &si.StartupInfo, &pi);
  if (have_list) ::DeleteProcThreadAttributeList(attrs);
  if (!started) return make_error(ErrorKind::start_failed, "cannot run '" + spec.argv[0] + "': " + last_error_text());
  Handle process(pi.hProcess), thread(pi.hThread);
  Spawned s;
  s.pid = static_cast<int64_t>(pi.dwProcessId);
  s.start_time = creation_time(pi.hProcess).value_or(0);
  return s;
}

std::optional<int> try_reap(int64_t pid) {
  HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (!h) return std::nullopt;
  DWORD code = STILL_ACTIVE;
  const bool done = ::GetExitCodeProcess(h, &code) && code != STILL_ACTIVE;
  ::CloseHandle(h);
  if (!done) return std::nullopt;
  return static_cast<int>(code);
}

std::optional<uint64_t> process_start_time(int64_t pid) {
  HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (!h) return std::nullopt;
  DWORD code = 0;
  std::optional<uint64_t> t;
  if (::GetExitCodeProcess(h, &code) && code == STILL_ACTIVE) t = creation_time(h);
  ::CloseHandle(h);
  return t;
}

bool process_alive(int64_t pid, std::optional<uint64_t> start_time) {
  const auto now = process_start_time(pid);
  if (!now) return false;
  return !start_time || *start_time == 0 || *now == *start_time;
}

std::optional<std::string> process_user(int64_t pid) {
  HANDLE h = ::OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (!h) return std::nullopt;
  HANDLE token = nullptr;
  std::optional<std::string> name;
  DWORD code = 0;
  // A process that has exited can still be opened while a handle to it is open somewhere.
  const bool running = ::GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
  if (running && ::OpenProcessToken(h, TOKEN_QUERY, &token)) {
    DWORD len = 0;
    ::GetTokenInformation(token, TokenUser, nullptr, 0, &len);
    std::string buf(len, '\0');
    if (len && ::GetTokenInformation(token, TokenUser, buf.data(), len, &len)) {
      auto* user = reinterpret_cast<TOKEN_USER*>(buf.data());
      char account[256], domain[256];
      DWORD alen = sizeof account, dlen = sizeof domain;
      SID_NAME_USE use;
      if (::LookupAccountSidA(nullptr, user->User.Sid, account, &alen, domain, &dlen, &use)) name = account;
    }
    ::CloseHandle(token);
  }
  ::CloseHandle(h);
  return name;
}

std::string current_user() {
  char buf[256];
  DWORD len = sizeof buf;
  if (::GetUserNameA(buf, &len)) return buf;
  return env("USERNAME").value_or("unknown");
}

int64_t current_pid() {
  return static_cast<int64_t>(::GetCurrentProcessId());
}

namespace {

constexpr const char* kCtrlCHelper = "__console-ctrl-c";

// Read once: find_program asks on every nvidia-smi run.
const std::string& own_executable() {
  static const std::string self = [] {
    std::string buf(32768, '\0');  // UTF-8 bytes of a long path
    const DWORD n = ::GetModuleFileNameA(nullptr, buf.data(), static_cast<DWORD>(buf.size()));
    return n > 0 && n < buf.size() ? buf.substr(0, n) : std::string();
  }();
  return self;
}

// The process and every process it started, parents first: a process is a
// child when it names the parent's pid and was created after the parent (a
// pid that was reused is not a parent).
std::vector<DWORD> process_tree(DWORD root) {
  std::vector<DWORD> tree;
  HANDLE snap = ::CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
  if (snap == INVALID_HANDLE_VALUE) return {root};
  std::multimap<DWORD, DWORD> children;
  PROCESSENTRY32 e{};
  e.dwSize = sizeof e;
  for (BOOL more = ::Process32First(snap, &e); more; more = ::Process32Next(snap, &e))
    if (e.th32ProcessID != e.th32ParentProcessID) children.emplace(e.th32ParentProcessID, e.th32ProcessID);
  ::CloseHandle(snap);
  tree.push_back(root);
  for (size_t i = 0; i < tree.size() && tree.size() < 4096; ++i) {
    const auto parent_start = process_start_time(tree[i]);
    const auto [from, to] = children.equal_range(tree[i]);
    for (auto it = from; it != to; ++it) {
      const auto child_start = process_start_time(it->second);
      if (parent_start && child_start && *child_start >= *parent_start) tree.push_back(it->second);
    }
  }
  return tree;
}

}  // namespace

std::optional<int> run_helper(int argc, char** argv) {
  if (argc != 3 || std::strcmp(argv[1], kCtrlCHelper) != 0) return std::nullopt;
  const auto pid = parse_int(argv[2]);
  if (!pid || *pid <= 0) return 2;
  // Only a process on the same console can send it a Ctrl-C: leave ours (a
  // hidden one: this helper was started without a window), join the target's,
  // ignore the Ctrl-C that every process on it gets, including this one.
  ::FreeConsole();
  if (!::AttachConsole(static_cast<DWORD>(*pid))) return 3;
  ::SetConsoleCtrlHandler(nullptr, TRUE);
  const bool sent = ::GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0) != 0;
  ::FreeConsole();
  return sent ? 0 : 4;
}

bool signal_group(int64_t pgid, Signal sig) {
  if (pgid <= 0) return false;
  if (sig == Signal::terminate) {
    if (!process_start_time(pgid)) return false;
    // A helper run does it, so that this process keeps its own console.
    const std::string& self = own_executable();
    if (self.empty()) return false;
    const auto r = run_capture({self, kCtrlCHelper, std::to_string(pgid)}, std::chrono::seconds(5));
    return r.started && !r.timed_out && r.exit_code == 0;
  }
  bool any = false;
  for (const DWORD pid : process_tree(static_cast<DWORD>(pgid))) {
    HANDLE h = ::OpenProcess(PROCESS_TERMINATE, FALSE, pid);
    if (!h) continue;
    any = ::TerminateProcess(h, 1) != 0 || any;
    ::CloseHandle(h);
  }
  return any;
}

Result<FileLock> FileLock::acquire(const std::string& path, std::chrono::milliseconds timeout) {
  if (is_reparse_point(path))
    return make_error(ErrorKind::state,
                      "lock file " + path + " is a symbolic link; llamactl never opens one (remove it)");
  HANDLE h = ::CreateFileA(path.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (h == INVALID_HANDLE_VALUE)
    return make_error(ErrorKind::state, "cannot open lock file " + path + ": " + last_error_text());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    OVERLAPPED ov{};
    if (::LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov))
      return FileLock(reinterpret_cast<intptr_t>(h));
    if (std::chrono::steady_clock::now() >= deadline) {
      ::CloseHandle(h);
      return make_error(ErrorKind::state,
                        "timed out waiting for the state lock " + path + " (another llamactl holds it)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void close_lock_handle(intptr_t handle) {
  ::CloseHandle(reinterpret_cast<HANDLE>(handle));
}  // releases the lock

Status write_file_atomic(const std::string& path, const std::string& content) {
  // An unpredictable name, created new (never an existing file or a link planted there), as O_EXCL on POSIX.
  static thread_local std::random_device rd;
  const std::string tmp =
      path + ".tmp." + std::to_string(current_pid()) + "." + std::to_string(rd()) + std::to_string(rd());
  HANDLE h = ::CreateFileA(tmp.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW,
                           FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (h == INVALID_HANDLE_VALUE) return make_error(ErrorKind::state, "cannot create " + tmp + ": " + last_error_text());
  DWORD written = 0;
  const bool ok = ::WriteFile(h, content.data(), static_cast<DWORD>(content.size()), &written, nullptr) &&
                  written == content.size() && ::FlushFileBuffers(h);
  ::CloseHandle(h);
  if (!ok) {
    ::DeleteFileA(tmp.c_str());
    return make_error(ErrorKind::state, "cannot write " + tmp + ": " + last_error_text());
  }
  // A reader that opened the file without FILE_SHARE_DELETE (most programs,
  // the C runtime's fopen among them) makes the replace fail with a sharing
  // error until it closes it: retry for a while, as readers hold it briefly.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!::MoveFileExA(tmp.c_str(), path.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    const DWORD code = ::GetLastError();
    const bool held = code == ERROR_ACCESS_DENIED || code == ERROR_SHARING_VIOLATION || code == ERROR_LOCK_VIOLATION;
    if (!held || std::chrono::steady_clock::now() >= deadline) {
      ::SetLastError(code);
      const std::string why = last_error_text();
      ::DeleteFileA(tmp.c_str());
      return make_error(ErrorKind::state, "cannot rename " + tmp + " to " + path + ": " + why);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ok_status();
}

bool file_exists(const std::string& path) {
  return ::GetFileAttributesA(path.c_str()) != INVALID_FILE_ATTRIBUTES;
}

Status remove_file(const std::string& path) {
  if (!::DeleteFileA(path.c_str()) && ::GetLastError() != ERROR_FILE_NOT_FOUND)
    return make_error(ErrorKind::io, "cannot remove " + path + ": " + last_error_text());
  return ok_status();
}

Result<int64_t> file_mtime_ns(const std::string& path) {
  WIN32_FILE_ATTRIBUTE_DATA data{};
  if (!::GetFileAttributesExA(path.c_str(), GetFileExInfoStandard, &data))
    return make_error(ErrorKind::io, "cannot read the mtime of " + path + ": " + last_error_text());
  // FILETIME: 100 ns intervals since 1601-01-01.
  const int64_t ticks = (static_cast<int64_t>(data.ftLastWriteTime.dwHighDateTime) << 32) |
                        static_cast<int64_t>(data.ftLastWriteTime.dwLowDateTime);
  constexpr int64_t kUnixEpochTicks = 116444736000000000;
  return (ticks - kUnixEpochTicks) * 100;
}

Status rename_file(const std::string& from, const std::string& to) {
  if (!::MoveFileExA(from.c_str(), to.c_str(), MOVEFILE_REPLACE_EXISTING))
    return make_error(ErrorKind::io, "cannot rename " + from + " to " + to + ": " + last_error_text());
  return ok_status();
}

Status write_private_file(const std::string& path, const std::string& content) {
  // A reparse point (symbolic link, junction) there is refused, as O_NOFOLLOW does on POSIX.
  if (is_reparse_point(path))
    return make_error(ErrorKind::state, path + " is a symbolic link; llamactl never writes through one (remove it)");
  HANDLE h = ::CreateFileA(path.c_str(), GENERIC_WRITE, FILE_SHARE_READ, nullptr, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, nullptr);
  if (h == INVALID_HANDLE_VALUE)
    return make_error(ErrorKind::state, "cannot create " + path + ": " + last_error_text());
  DWORD written = 0;
  const bool ok = ::WriteFile(h, content.data(), static_cast<DWORD>(content.size()), &written, nullptr) &&
                  written == content.size();
  ::CloseHandle(h);
  if (!ok) return make_error(ErrorKind::state, "cannot write " + path + ": " + last_error_text());
  return ok_status();
}

std::optional<std::pair<uint64_t, uint64_t>> FileLock::identity() const {
  return std::nullopt;  // serve's state-dir watch is POSIX only (README)
}

std::optional<std::pair<uint64_t, uint64_t>> file_identity(const std::string&) {
  return std::nullopt;
}

std::optional<bool> owned_by_me(const std::string&) {
  return std::nullopt;  // %LOCALAPPDATA% is private to the user already
}

Status make_private_dir(const std::string& path, bool may_be_link) {
  // %LOCALAPPDATA% is already private to the user; no ACL changes here (nor
  // owner checks: README, Security model).
  if (!may_be_link && is_reparse_point(path))
    return make_error(ErrorKind::state, path +
                                            " is a symbolic link; llamactl writes only into a real directory there "
                                            "(remove the link)");
  size_t pos = 0;
  for (;;) {
    pos = path.find_first_of("/\\", pos + 1);
    const std::string part = path.substr(0, pos);
    if (!part.empty() && part.back() != ':' && !::CreateDirectoryA(part.c_str(), nullptr) &&
        ::GetLastError() != ERROR_ALREADY_EXISTS)
      return make_error(ErrorKind::state, "cannot create directory " + part + ": " + last_error_text());
    if (pos == std::string::npos) break;
  }
  return ok_status();
}

std::string default_state_dir() {
  if (auto l = env("LOCALAPPDATA"); l && !l->empty()) return *l + "\\llamactl";
  return ".\\llamactl-state";
}

std::string state_dir_help() {
  return "%LLAMACTL_STATE_DIR%, %LOCALAPPDATA%\\llamactl";
}

std::string config_path_help() {
  return "%LLAMACTL_CONFIG%, .\\llamactl.toml, %APPDATA%\\llamactl\\config.toml";
}

std::string default_config_path() {
  if (auto a = env("APPDATA"); a && !a->empty()) return *a + "\\llamactl\\config.toml";
  return {};
}

std::optional<std::string> find_program(const std::string& name) {
  if (name.empty()) return std::nullopt;
  const std::string exe = ends_with(to_lower(name), ".exe") ? name : name + ".exe";
  const auto is_file = [](const std::string& p) {
    const DWORD a = ::GetFileAttributesA(p.c_str());
    return a != INVALID_FILE_ATTRIBUTES && !(a & FILE_ATTRIBUTE_DIRECTORY);
  };
  if (name.find_first_of("/\\:") != std::string::npos) {
    if (is_file(name)) return name;
    if (is_file(exe)) return exe;
    return std::nullopt;
  }
  // llamactl.exe's own folder (llama-server.exe unzipped beside it needs no
  // config), then PATH. Not the current directory, nor the system folders
  // before PATH, where SearchPath looks: a llama-server.exe or nvidia-smi.exe
  // lying in the working directory is never picked up.
  std::vector<std::string> dirs;
  const std::string& self = own_executable();
  if (const size_t slash = self.find_last_of("/\\"); slash != std::string::npos) dirs.push_back(self.substr(0, slash));
  const std::string path = env("PATH").value_or("");  // split() gives views into it: it must outlive the loop
  for (const auto& dir : split(path, ';')) {
    std::string d(trim(dir));
    if (d.size() >= 2 && d.front() == '"' && d.back() == '"') d = d.substr(1, d.size() - 2);
    // Only absolute folders ("C:\\..." or "\\\\server\\..."): a relative one is the working directory again.
    const bool absolute = (d.size() >= 3 && d[1] == ':' && (d[2] == '\\' || d[2] == '/')) || starts_with(d, "\\\\");
    if (absolute) dirs.push_back(d);
  }
  for (const auto& d : dirs) {
    const std::string candidate = d + (d.back() == '\\' || d.back() == '/' ? "" : "\\") + exe;
    if (is_file(candidate)) return candidate;
  }
  return std::nullopt;
}

std::string default_nvidia_smi() {
  if (auto p = find_program("nvidia-smi")) return *p;
  std::vector<std::string> places;
  if (auto root = env("SystemRoot"); root && !root->empty()) places.push_back(*root + "\\System32\\nvidia-smi.exe");
  if (auto pf = env("ProgramFiles"); pf && !pf->empty())
    places.push_back(*pf + "\\NVIDIA Corporation\\NVSMI\\nvidia-smi.exe");
  for (const auto& p : places)
    if (file_exists(p)) return p;
  return "nvidia-smi";
}

namespace {

// The console as llamactl found it, put back at exit: its output code page
// and the modes of standard output and error.
struct ConsoleState {
  UINT output_cp = 0;
  HANDLE handles[2] = {nullptr, nullptr};
  DWORD modes[2] = {0, 0};
  bool vt[2] = {false, false};  // escape codes work on standard output / error
};
ConsoleState g_console;

void restore_console() {
  for (int i = 1; i >= 0; --i)  // standard output's mode, read first, is put back last
    if (g_console.handles[i]) ::SetConsoleMode(g_console.handles[i], g_console.modes[i]);
  if (g_console.output_cp) ::SetConsoleOutputCP(g_console.output_cp);
}

// Where standard output or error is a console: UTF-8 output (bars, sparklines,
// box lines) and VT processing (colour, the progress line, watch's screen),
// both for the life of this process only. A console too old for VT mode
// (before Windows 10 1511) does not count as a terminal: plain text, no colour.
void setup_console() {
  static bool done = false;
  if (done) return;
  done = true;
  const DWORD ids[2] = {STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  bool any = false;
  // Both modes are read before either is changed: standard output and error
  // are often the same console, whose mode is one.
  for (int i = 0; i < 2; ++i) {
    HANDLE h = ::GetStdHandle(ids[i]);
    DWORD mode = 0;
    if (h == nullptr || h == INVALID_HANDLE_VALUE || !::GetConsoleMode(h, &mode)) continue;
    any = true;
    g_console.handles[i] = h;
    g_console.modes[i] = mode;
  }
  if (!any) return;
  for (int i = 0; i < 2; ++i) {
    if (!g_console.handles[i]) continue;
    const DWORD mode = g_console.modes[i];
    g_console.vt[i] =
        (mode & ENABLE_VIRTUAL_TERMINAL_PROCESSING) ||
        ::SetConsoleMode(g_console.handles[i], mode | ENABLE_PROCESSED_OUTPUT | ENABLE_VIRTUAL_TERMINAL_PROCESSING);
  }
  g_console.output_cp = ::GetConsoleOutputCP();
  if (g_console.output_cp != CP_UTF8) ::SetConsoleOutputCP(CP_UTF8);
  std::atexit(restore_console);
}

}  // namespace

bool stdout_is_tty() {
  setup_console();
  return g_console.vt[0];
}
bool stderr_is_tty() {
  setup_console();
  return g_console.vt[1];
}

namespace {

// The visible window of a console screen buffer; nullopt when `out` is not one.
std::optional<TerminalSession::Size> console_window(HANDLE out) {
  CONSOLE_SCREEN_BUFFER_INFO info;
  if (!::GetConsoleScreenBufferInfo(out, &info)) return std::nullopt;
  const int cols = info.srWindow.Right - info.srWindow.Left + 1, rows = info.srWindow.Bottom - info.srWindow.Top + 1;
  if (cols <= 0 || rows <= 0) return std::nullopt;
  return TerminalSession::Size{cols, rows};
}

}  // namespace

int terminal_columns() {
  if (const auto w = console_window(::GetStdHandle(STD_OUTPUT_HANDLE))) return w->cols;
  return 80;
}

bool port_available(int port) {
  WSADATA wsa;
  if (::WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return false;
  SOCKET s = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  bool ok = false;
  if (s != INVALID_SOCKET) {
    BOOL exclusive = TRUE;  // without it Windows lets a second socket share the port
    ::setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&exclusive), sizeof exclusive);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<u_short>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::closesocket(s);
  }
  ::WSACleanup();
  return ok;
}

uint64_t raise_open_file_limit() {
  return 0;
}

void install_signal_handlers() {
  ::SetConsoleCtrlHandler(on_console_event, TRUE);
  setup_console();
}

bool interrupted() {
  return g_interrupted.load();
}

bool console_closing() {
  return g_closing.load();
}

void catch_hangup() {}

bool take_hangup() {
  return false;
}

// ---------------------------------------------------------------------------
// TerminalSession: the console in VT mode (set up by setup_console) with its
// input read as key and window events. A console without VT mode, or output
// that is not a console, gets no session: watch prints plain frames.

struct TerminalSession::Impl {
  HANDLE in = nullptr, out = nullptr;
  DWORD in_mode = 0, out_mode = 0;
  Size last{};
};

TerminalSession::TerminalSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<TerminalSession> TerminalSession::open() {
  setup_console();
  auto impl = std::make_unique<Impl>();
  impl->in = ::GetStdHandle(STD_INPUT_HANDLE);
  impl->out = ::GetStdHandle(STD_OUTPUT_HANDLE);
  if (!g_console.vt[0] || !::GetConsoleMode(impl->in, &impl->in_mode)) return nullptr;
  // Keys at once and not echoed; Ctrl-C stays a console event (interrupted());
  // window size changes arrive as input events. No mouse: a click must not
  // start a selection that freezes the screen's output.
  DWORD raw = impl->in_mode;
  raw &= ~static_cast<DWORD>(ENABLE_LINE_INPUT | ENABLE_ECHO_INPUT | ENABLE_MOUSE_INPUT | ENABLE_QUICK_EDIT_MODE);
  raw |= ENABLE_PROCESSED_INPUT | ENABLE_WINDOW_INPUT | ENABLE_EXTENDED_FLAGS;
  if (!::SetConsoleMode(impl->in, raw)) return nullptr;
  // A full-width row leaves the cursor on its last column until the next
  // character, as on a VT terminal, so the "\r\n" after it does not add a
  // blank line (screen_update draws rows as wide as the window).
  if (::GetConsoleMode(impl->out, &impl->out_mode))
    ::SetConsoleMode(impl->out, impl->out_mode | DISABLE_NEWLINE_AUTO_RETURN);
  std::unique_ptr<TerminalSession> t(new TerminalSession(std::move(impl)));
  t->impl_->last = t->size();
  t->write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");  // alternate screen, cursor hidden, cleared
  return t;
}

TerminalSession::~TerminalSession() {
  write("\x1b[0m\x1b[?25h\x1b[?1049l");  // attributes reset, cursor shown, main screen back
  ::SetConsoleMode(impl_->in, impl_->in_mode);
  if (impl_->out_mode) ::SetConsoleMode(impl_->out, impl_->out_mode);
}

TerminalSession::Size TerminalSession::size() const {
  return console_window(impl_->out).value_or(Size{});
}

TerminalSession::Event TerminalSession::wait(std::chrono::milliseconds timeout, char& key) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (interrupted()) return Event::interrupted;
    // The console reports a change of its buffer, not always of the visible
    // window (conhost with a tall buffer): the window is compared too.
    const Size now = size();
    if (now.cols != impl_->last.cols || now.rows != impl_->last.rows) {
      impl_->last = now;
      return Event::resize;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) return Event::timeout;
    // Bounded slices, as on POSIX: a Ctrl-C is seen within 100 ms.
    const DWORD w = ::WaitForSingleObject(impl_->in, static_cast<DWORD>(std::min<int64_t>(left, 100)));
    if (w == WAIT_FAILED) return Event::interrupted;  // the console went away
    if (w != WAIT_OBJECT_0) continue;
    INPUT_RECORD rec;
    DWORD n = 0;
    if (!::ReadConsoleInputW(impl_->in, &rec, 1, &n)) return Event::interrupted;
    if (n != 1) continue;
    if (rec.EventType == WINDOW_BUFFER_SIZE_EVENT) {
      impl_->last = size();
      return Event::resize;
    }
    if (rec.EventType != KEY_EVENT || !rec.Event.KeyEvent.bKeyDown) continue;
    const wchar_t c = rec.Event.KeyEvent.uChar.UnicodeChar;
    if (c > 0 && c < 0x80) {  // the view's keys are ASCII; arrows and the like carry none
      key = static_cast<char>(c);
      return Event::key;
    }
  }
}

void TerminalSession::write(std::string_view s) {
  // WriteConsoleW: the text is UTF-8 whatever code page the console has.
  const int n = ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  if (n <= 0) return;
  std::wstring w(static_cast<size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), w.data(), n);
  const wchar_t* p = w.data();
  DWORD left = static_cast<DWORD>(w.size());
  while (left > 0) {
    DWORD written = 0;
    if (!::WriteConsoleW(impl_->out, p, left, &written, nullptr) || written == 0) return;
    p += written;
    left -= written;
  }
}

}  // namespace llamactl::platform
