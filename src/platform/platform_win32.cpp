// Win32 implementation of platform.h. Locks, atomic files, paths, process
// queries and termination use the Win32 API. Not done yet (honest errors,
// never silent success): running nvidia-smi with a timeout and starting a
// detached llama-server with its own console group. No Windows build is
// tested in CI; this file is compile-checked with MinGW-w64.

#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
// winsock2.h must come before windows.h.
#include <io.h>
#include <windows.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "platform/platform.h"
#include "util/strings.h"

namespace llamactl::platform {
namespace {

std::atomic<bool> g_interrupted{false};

BOOL WINAPI on_console_event(DWORD type) {
  if (type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT || type == CTRL_CLOSE_EVENT) {
    g_interrupted = true;
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

CaptureResult run_capture(const std::vector<std::string>& argv, std::chrono::milliseconds) {
  CaptureResult r;
  r.error = "running " + (argv.empty() ? std::string("a program") : argv[0]) +
            " is not implemented on Windows yet (set LLAMACTL_GPU_FIXTURE to read a saved output)";
  return r;
}

Result<Spawned> spawn_detached(const SpawnSpec& spec) {
  return make_error(ErrorKind::not_implemented, "starting '" + (spec.argv.empty() ? std::string() : spec.argv[0]) +
                                                    "' detached is not implemented on Windows yet");
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
  if (::OpenProcessToken(h, TOKEN_QUERY, &token)) {
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

bool signal_group(int64_t pgid, Signal sig) {
  if (pgid <= 0) return false;
  if (sig == Signal::terminate) {
    // A console break reaches a process group started with CREATE_NEW_PROCESS_GROUP.
    return ::GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, static_cast<DWORD>(pgid)) != 0;
  }
  HANDLE h = ::OpenProcess(PROCESS_TERMINATE, FALSE, static_cast<DWORD>(pgid));
  if (!h) return false;
  const bool ok = ::TerminateProcess(h, 1) != 0;
  ::CloseHandle(h);
  return ok;
}

Result<FileLock> FileLock::acquire(const std::string& path, std::chrono::milliseconds timeout) {
  HANDLE h = ::CreateFileA(path.c_str(), GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
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

FileLock::FileLock(FileLock&& other) noexcept : handle_(other.handle_) {
  other.handle_ = -1;
}
FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (handle_ != -1) ::CloseHandle(reinterpret_cast<HANDLE>(handle_));
    handle_ = other.handle_;
    other.handle_ = -1;
  }
  return *this;
}
FileLock::~FileLock() {
  if (handle_ != -1) ::CloseHandle(reinterpret_cast<HANDLE>(handle_));  // closing releases the lock
}

Status write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(current_pid());
  HANDLE h = ::CreateFileA(tmp.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return make_error(ErrorKind::state, "cannot create " + tmp + ": " + last_error_text());
  DWORD written = 0;
  const bool ok = ::WriteFile(h, content.data(), static_cast<DWORD>(content.size()), &written, nullptr) &&
                  written == content.size() && ::FlushFileBuffers(h);
  ::CloseHandle(h);
  if (!ok) {
    ::DeleteFileA(tmp.c_str());
    return make_error(ErrorKind::state, "cannot write " + tmp + ": " + last_error_text());
  }
  if (!::MoveFileExA(tmp.c_str(), path.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    const std::string why = last_error_text();
    ::DeleteFileA(tmp.c_str());
    return make_error(ErrorKind::state, "cannot rename " + tmp + " to " + path + ": " + why);
  }
  return ok_status();
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::io, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool file_exists(const std::string& path) {
  return ::GetFileAttributesA(path.c_str()) != INVALID_FILE_ATTRIBUTES;
}

Status remove_file(const std::string& path) {
  if (!::DeleteFileA(path.c_str()) && ::GetLastError() != ERROR_FILE_NOT_FOUND)
    return make_error(ErrorKind::io, "cannot remove " + path + ": " + last_error_text());
  return ok_status();
}

Status rename_file(const std::string& from, const std::string& to) {
  if (!::MoveFileExA(from.c_str(), to.c_str(), MOVEFILE_REPLACE_EXISTING))
    return make_error(ErrorKind::io, "cannot rename " + from + " to " + to + ": " + last_error_text());
  return ok_status();
}

Status make_private_dir(const std::string& path) {
  // %LOCALAPPDATA% is already private to the user; no ACL changes here.
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

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

std::string default_state_dir() {
  if (auto l = env("LOCALAPPDATA"); l && !l->empty()) return *l + "\\llamactl";
  return ".\\llamactl-state";
}

std::string default_config_path() {
  if (auto a = env("APPDATA"); a && !a->empty()) return *a + "\\llamactl\\config.toml";
  return {};
}

std::optional<std::string> find_program(const std::string& name) {
  char buf[MAX_PATH];
  const std::string exe = ends_with(to_lower(name), ".exe") ? name : name + ".exe";
  if (::SearchPathA(nullptr, exe.c_str(), nullptr, MAX_PATH, buf, nullptr) > 0) return std::string(buf);
  return std::nullopt;
}

bool stdout_is_tty() {
  return ::_isatty(1) != 0;
}
bool stderr_is_tty() {
  return ::_isatty(2) != 0;
}

int terminal_columns() {
  CONSOLE_SCREEN_BUFFER_INFO info;
  if (::GetConsoleScreenBufferInfo(::GetStdHandle(STD_OUTPUT_HANDLE), &info))
    return info.srWindow.Right - info.srWindow.Left + 1;
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

void install_signal_handlers() {
  ::SetConsoleCtrlHandler(on_console_event, TRUE);
}

bool interrupted() {
  return g_interrupted.load();
}

void sleep_for(std::chrono::milliseconds d) {
  std::this_thread::sleep_for(d);
}

}  // namespace llamactl::platform
