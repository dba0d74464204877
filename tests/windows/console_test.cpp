// llamactl.exe in a Windows console, under Wine: a Linux program that runs
// `wine64 llamactl.exe ...` on a pseudo-terminal, which Wine turns into a
// console for the Windows process, reads what it draws and types keys.
// It checks what only a console has: watch's full screen (VT mode, the
// alternate screen, keys), and Ctrl-C typed at the keyboard ending watch and
// serve. scripts/test.sh runs it after the Windows build, with
// LLAMACTL_WINDOWS_EXE (the llamactl.exe to run) and WINE (wine64) set;
// without them every test is skipped.

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "support/net_posix.h"
#include "support/temp_dir.h"

using namespace std::chrono_literals;
using llamactl::testing::connect_loopback;
using llamactl::testing::ConnectOptions;
using llamactl::testing::free_port;
using llamactl::testing::TempDir;

namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A process on a pseudo-terminal of its own; killed by pid (SIGKILL to it)
// when the test ends if it has not exited.
class PtyProcess {
 public:
  PtyProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    winsize ws{};
    ws.ws_col = 100;
    ws.ws_row = 30;
    pid_ = ::forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (fd_ >= 0) ::fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  bool started() const { return pid_ > 0 && fd_ >= 0; }

  /// Reads until `needle` has appeared `times` times in all the output so far.
  bool read_until(const std::string& needle, int times, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (count(needle) < times) {
      if (std::chrono::steady_clock::now() >= until || !pump(100ms)) return count(needle) >= times;
    }
    return true;
  }
  /// Reads what arrives for `d`.
  void read_for(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until && pump(50ms)) {
    }
  }
  void type(const std::string& keys) { (void)!::write(fd_, keys.data(), keys.size()); }

  /// The exit code once it has exited within `timeout` (reading its output
  /// meanwhile); -1 when it has not; 128+N when signal N ended it.
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        pump(200ms);  // what it wrote last
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      pump(50ms);
    }
    return -1;
  }
  const std::string& output() const { return out_; }

 private:
  int count(const std::string& needle) const {
    int n = 0;
    for (size_t at = out_.find(needle); at != std::string::npos; at = out_.find(needle, at + 1)) ++n;
    return n;
  }
  // False once the terminal has closed (the process and its children are gone).
  bool pump(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return true;
    char buf[65536];
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) out_.append(buf, static_cast<size_t>(n));
    return n > 0 || (n < 0 && errno == EAGAIN);
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  std::string out_;
};

class WindowsConsole : public ::testing::Test {
 protected:
  void SetUp() override {
    exe_ = env_or_empty("LLAMACTL_WINDOWS_EXE");
    wine_ = env_or_empty("WINE");
    if (exe_.empty() || wine_.empty()) GTEST_SKIP() << "LLAMACTL_WINDOWS_EXE and WINE are not set";
  }
  // wine64 llamactl.exe --state-dir DIR ARGS, on a terminal, reading GPUs
  // from a saved Windows nvidia-smi screen.
  std::unique_ptr<PtyProcess> run(const std::vector<std::string>& args) {
    // An empty config of the test's own: not a llamactl.toml of the working
    // directory, $LLAMACTL_CONFIG or one in the Wine prefix.
    std::ofstream(dir_ / "llamactl.toml").flush();
    std::vector<std::string> argv = {wine_, exe_, "--state-dir", dir_ / "state", "--config", dir_ / "llamactl.toml"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string fixture = std::string(LLAMACTL_FIXTURES) + "/nvidia-smi/win-rtx2080s-610.62-wddm-table-load.txt";
    return std::make_unique<PtyProcess>(
        argv, std::vector<std::string>{"LLAMACTL_GPU_FIXTURE=" + fixture, "WINEDEBUG=-all", "TERM=xterm-256color"});
  }

  std::string exe_, wine_;
  TempDir dir_;
};

// The status line of GET path on 127.0.0.1:port ("" when nothing answers within 5 s).
std::string http_status_line(int port, const std::string& path) {
  ConnectOptions o;
  o.io_timeout = std::chrono::seconds(5);
  const int s = connect_loopback(port, o);
  std::string got;
  if (s >= 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    (void)!::send(s, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    const ssize_t n = ::recv(s, buf, sizeof buf, 0);
    if (n > 0) got.assign(buf, static_cast<size_t>(n));
    ::close(s);
  }
  return got.substr(0, got.find("\r\n"));
}

}  // namespace

TEST_F(WindowsConsole, WatchIsFullScreenAndQuitsOnQ) {
  auto p = run({"watch", "--interval", "1"});
  ASSERT_TRUE(p->started());
  // Two frames drawn: the GPU of the saved screen, and the key help that only the full screen shows.
  ASSERT_TRUE(p->read_until("q quit", 2, 60s)) << p->output();
  EXPECT_NE(p->output().find("\x1b[?1049h"), std::string::npos) << "the alternate screen";
  EXPECT_NE(p->output().find("RTX 2080"), std::string::npos) << p->output();
  p->type("q");
  EXPECT_EQ(p->wait_exit(20s), 0) << p->output();
  EXPECT_NE(p->output().find("\x1b[?1049l"), std::string::npos) << "the main screen back";
}

TEST_F(WindowsConsole, CtrlCEndsWatch) {
  auto p = run({"watch", "--interval", "1"});
  ASSERT_TRUE(p->read_until("q quit", 1, 60s)) << p->output();
  p->type("\x03");  // Ctrl-C at the keyboard: a console Ctrl-C event
  EXPECT_EQ(p->wait_exit(20s), 0) << "watch ended as after q" << p->output();
  EXPECT_NE(p->output().find("\x1b[?1049l"), std::string::npos) << "the main screen back";
}

TEST_F(WindowsConsole, CtrlCStopsServe) {
  const int port = free_port();
  auto p = run({"serve", "--listen", "127.0.0.1:" + std::to_string(port)});
  // Wine's console draws the text a character at a time between cursor
  // moves: ask the port rather than read the banner.
  bool up = false;
  for (int i = 0; i < 120 && !up; ++i) {
    p->read_for(500ms);
    up = http_status_line(port, "/api/version") == "HTTP/1.1 200 OK";
  }
  ASSERT_TRUE(up) << p->output();
  p->type("\x03");
  EXPECT_EQ(p->wait_exit(20s), 0) << p->output();
  EXPECT_EQ(http_status_line(port, "/api/version"), "") << "nothing listens any more";
}
