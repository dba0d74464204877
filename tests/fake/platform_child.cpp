// A child process for the platform tests (tests/unit/platform_test.cpp), on
// POSIX and Windows alike. It prints "started PID" and then waits, at most
// 60 s, so that a failed test leaves nothing running for long:
//   platform_child graceful   stops on SIGTERM (POSIX) or Ctrl-C (Windows),
//                             as llama-server does, printing "graceful stop"
//   platform_child stubborn   ignores both (only a kill ends it)
//   platform_child parent     starts "platform_child stubborn", prints
//                             "child PID" and is stubborn itself
//   platform_child ctrl-break PID   (Windows) sends a Ctrl-Break to the
//                             console of process PID, as the Break key does;
//                             exits 0 when it was sent, 5 when the console
//                             cannot send one (Wine)
// Output is flushed line by line: the tests read it from the log file.

#ifdef _WIN32
#include <windows.h>
#else
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
extern char** environ;
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

std::atomic<bool> g_stop{false};

long own_pid() {
#ifdef _WIN32
  return static_cast<long>(::GetCurrentProcessId());
#else
  return static_cast<long>(::getpid());
#endif
}

void on_stop_request(bool graceful) {
#ifdef _WIN32
  if (graceful)
    ::SetConsoleCtrlHandler(
        [](DWORD type) -> BOOL {
          if (type != CTRL_C_EVENT) return FALSE;
          g_stop = true;
          return TRUE;
        },
        TRUE);
  else
    ::SetConsoleCtrlHandler([](DWORD type) -> BOOL { return type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT; }, TRUE);
#else
  struct sigaction sa {};
  sa.sa_handler = graceful ? [](int) { g_stop = true; } : SIG_IGN;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
#endif
}

long start_stubborn_child(const char* self) {
#ifdef _WIN32
  std::string cmd = std::string("\"") + self + "\" stubborn";
  STARTUPINFOA si{};
  si.cb = sizeof si;
  PROCESS_INFORMATION pi{};
  if (!::CreateProcessA(self, cmd.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr, &si, &pi)) return -1;
  ::CloseHandle(pi.hThread);
  ::CloseHandle(pi.hProcess);
  return static_cast<long>(pi.dwProcessId);
#else
  char mode[] = "stubborn";
  char* argv[] = {const_cast<char*>(self), mode, nullptr};
  pid_t pid = 0;
  return ::posix_spawn(&pid, self, nullptr, nullptr, argv, environ) == 0 ? static_cast<long>(pid) : -1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
#ifdef _WIN32
  if (mode == "ctrl-break" && argc == 3) {
    // Only a process on that console can send it; every process there gets
    // it, this one too, and a Ctrl-Break cannot be ignored with
    // SetConsoleCtrlHandler(nullptr, TRUE): a handler takes it instead.
    ::FreeConsole();
    if (!::AttachConsole(static_cast<DWORD>(std::atol(argv[2])))) return 3;
    ::SetConsoleCtrlHandler([](DWORD type) -> BOOL { return type == CTRL_BREAK_EVENT; }, TRUE);
    // Wine 8 sends only Ctrl-C events (its console answers others with an
    // error): exit 5 tells the test that it cannot be done here.
    if (!::GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, 0)) return 5;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // ours arrives on its own thread
    ::FreeConsole();
    return 0;
  }
#endif
  if (mode != "graceful" && mode != "stubborn" && mode != "parent") {
    std::fprintf(stderr, "usage: platform_child graceful|stubborn|parent\n");
    return 2;
  }
  on_stop_request(mode == "graceful");
  std::printf("started %ld\n", own_pid());
  std::fflush(stdout);
  if (mode == "parent") {
    std::printf("child %ld\n", start_stubborn_child(argv[0]));
    std::fflush(stdout);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!g_stop && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (g_stop) std::printf("graceful stop\n");
  std::fflush(stdout);
  return g_stop ? 0 : 3;
}
