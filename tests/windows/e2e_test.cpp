// llamactl.exe end to end on Windows (run under Wine in CI): gpus and status
// against a saved Windows nvidia-smi screen and against the mock nvidia-smi
// built for Windows, and a load/unload of the fake llama-server built for
// Windows. Each test has its own temporary state dir and free ports; every
// server a test starts is ended by pid when the test ends.

#include <winsock2.h>
// winsock2.h must come before windows.h.
#include <windows.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "platform/platform.h"
#include "support/ports.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "unit/gguf_writer.h"

using nlohmann::json;
using namespace std::chrono_literals;
namespace platform = llamactl::platform;
using llamactl::testing::eventually;
using llamactl::testing::pick_base_port;
using llamactl::testing::read_text;
using llamactl::testing::TempDir;

namespace {

json parse(const std::string& out) {
  try {
    return json::parse(out);
  } catch (const std::exception& e) {
    return json{{"__parse_error", e.what()}, {"__out", out}};
  }
}

// Ten instance ports from the base, and serve's at +50 (WinServe).
int free_base_port() {
  return pick_base_port(10, 400, 100, {50});
}

// A state dir, a config naming the fake llama-server, and the mock
// nvidia-smi's GPU files, as tests/integration/harness.h has them on Linux.
class WinSandbox {
 public:
  // `folder`: where in the temporary dir the sandbox lives (e.g. a name
  // beyond ASCII); the temporary dir itself when empty.
  explicit WinSandbox(const std::string& folder = "")
      : root_(folder.empty() ? dir_.path() : dir_ / folder), base_port_(free_base_port()) {
    std::filesystem::create_directories(fs_path(at("gpus/procs")));
    set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3", "1 0 81559 0 NVIDIA H100 80GB HBM3"});
    // A TOML literal string keeps a Windows path's backslashes as they are.
    std::ofstream(at("llamactl.toml")) << "llama_server = '" << FAKE_LLAMA_SERVER << "'\nbase_port = " << base_port_
                                       << "\n";
  }
  ~WinSandbox() {
    // End every server this sandbox's state knows, by pid, with what it started.
    const json st = parse(read_text(at("state/state.json")));
    if (st.contains("instances"))
      for (const auto& i : st["instances"])
        if (i.value("pid", int64_t{0}) > 0) platform::signal_group(i["pid"].get<int64_t>(), platform::Signal::kill);
  }
  WinSandbox(const WinSandbox&) = delete;
  WinSandbox& operator=(const WinSandbox&) = delete;

  void set_gpus(const std::vector<std::string>& lines) const {
    std::ofstream out(at("gpus/gpus"));
    for (const auto& l : lines) out << l << "\n";
  }
  // A model named in the config (serve answers for those only).
  void add_model(const std::string& name) const {
    std::ofstream(at("llamactl.toml"), std::ios::app) << "[models." << name << "]\npath = '" << model(name) << "'\n";
  }
  std::string model(const std::string& name) const {
    const std::string p = at(name + ".gguf");
    if (!std::filesystem::exists(fs_path(p))) llamactl::testing::write_gguf(p, llamactl::testing::GgufSpec{});
    return p;
  }

  struct Run {
    int exit_code = -1;
    std::string out, err;
    json j() const { return parse(out); }
  };
  // llamactl.exe ARGS with this sandbox's state dir and config, the mock
  // nvidia-smi (or `fixture`), and `env` (NAME=VALUE) for this run only.
  Run run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) const {
    std::vector<std::pair<std::string, std::string>> vars = {
        {"LLAMACTL_NVIDIA_SMI", FAKE_NVIDIA_SMI}, {"FAKE_GPU_DIR", at("gpus")}, {"LLAMACTL_GPU_FIXTURE", ""}};
    for (const auto& e : env) vars.emplace_back(e.substr(0, e.find('=')), e.substr(e.find('=') + 1));
    for (const auto& [k, v] : vars) ::SetEnvironmentVariableA(k.c_str(), v.empty() ? nullptr : v.c_str());
    std::vector<std::string> argv = {LLAMACTL_BIN, "--state-dir", at("state"), "--config", at("llamactl.toml")};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = platform::run_capture(argv, 60s);
    for (const auto& [k, v] : vars) ::SetEnvironmentVariableA(k.c_str(), nullptr);
    Run out;
    out.exit_code = r.timed_out ? -2 : r.exit_code;
    out.out = r.out;
    out.err = r.err + r.error;
    return out;
  }
  int base_port() const { return base_port_; }
  std::string at(const std::string& name) const { return root_ + "/" + name; }
  // A UTF-8 path as std::filesystem takes it (on Windows it asks the OS in UTF-16).
  static std::filesystem::path fs_path(const std::string& utf8) {
    return std::filesystem::path(std::u8string(utf8.begin(), utf8.end()));
  }

 private:
  TempDir dir_;
  std::string root_;
  int base_port_;
};

bool alive(int64_t pid) {
  return platform::process_alive(pid, std::nullopt);
}

struct HttpReply {
  int status = 0;  // 0: no answer
  std::string head, body;
  json j() const { return parse(body); }
};

// One HTTP/1.1 request to 127.0.0.1:port on Winsock (Connection: close),
// read to the end; every step has a deadline. A chunked body is left framed.
HttpReply http(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  HttpReply reply;
  WSADATA wsa;
  if (::WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return reply;
  SOCKET s = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  DWORD timeout_ms = 30000;
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&timeout_ms), sizeof timeout_ms);
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, reinterpret_cast<const char*>(&timeout_ms), sizeof timeout_ms);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<u_short>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.empty())
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    ::send(s, req.data(), static_cast<int>(req.size()), 0);
    std::string raw;
    char buf[16384];
    for (int n; (n = ::recv(s, buf, sizeof buf, 0)) > 0;) raw.append(buf, static_cast<size_t>(n));
    const size_t end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.1 ", 0) == 0 && end != std::string::npos) {
      reply.status = std::atoi(raw.c_str() + 9);
      reply.head = raw.substr(0, end);
      reply.body = raw.substr(end + 4);
    }
  }
  ::closesocket(s);
  ::WSACleanup();
  return reply;
}

// `llamactl.exe serve` of a sandbox, started as llamactl starts llama-server:
// on a hidden console of its own, which is where stop() sends the Ctrl-C.
// Killed (with what it started) by pid when the test ends.
class WinServe {
 public:
  WinServe(const WinSandbox& sb, const std::vector<std::string>& args)
      : port_(sb.base_port() + 50), log_(sb.at("serve.log")) {
    platform::SpawnSpec spec;
    spec.argv = {LLAMACTL_BIN,   "-v",       "--state-dir",
                 sb.at("state"), "--config", sb.at("llamactl.toml"),
                 "serve",        "--listen", "127.0.0.1:" + std::to_string(port_)};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.set_env = {{"LLAMACTL_NVIDIA_SMI", FAKE_NVIDIA_SMI}, {"FAKE_GPU_DIR", sb.at("gpus")}};
    spec.drop_env_prefixes = {"LLAMACTL_GPU_FIXTURE"};
    spec.log_path = log_;
    auto r = platform::spawn_detached(spec);
    if (!r) {
      ADD_FAILURE() << r.error().message;
      return;
    }
    pid_ = r->pid;
    // Held open so that the exit code can still be read once it has exited.
    process_ = ::OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid_));
  }
  ~WinServe() {
    if (pid_ > 0) platform::signal_group(pid_, platform::Signal::kill);
    if (process_) ::CloseHandle(process_);
  }
  WinServe(const WinServe&) = delete;
  WinServe& operator=(const WinServe&) = delete;

  bool ready() const {
    return eventually([&] { return http(port_, "GET", "/health").status == 200; }, 20s);
  }
  /// Ctrl-C on its console, then its exit code (-1 when it has not exited within `timeout`).
  int stop(std::chrono::milliseconds timeout = 20s) {
    if (!platform::signal_group(pid_, platform::Signal::terminate)) return -2;
    return wait_exit(timeout);
  }
  /// Sends a Ctrl-Break to its console (the Break key): the helper's exit
  /// code, 0 when sent, 5 when this console cannot send one (Wine).
  int ctrl_break() const {
    return platform::run_capture({PLATFORM_CHILD, "ctrl-break", std::to_string(pid_)}, 10s).exit_code;
  }
  /// Its exit code once it has exited within `timeout`; -1 when it has not.
  int wait_exit(std::chrono::milliseconds timeout) {
    if (!process_ || ::WaitForSingleObject(process_, static_cast<DWORD>(timeout.count())) != WAIT_OBJECT_0) return -1;
    DWORD code = 0;
    ::GetExitCodeProcess(process_, &code);
    return static_cast<int>(code);
  }
  int port() const { return port_; }
  std::string log() const { return read_text(log_); }

 private:
  int port_;
  std::string log_;
  int64_t pid_ = 0;
  HANDLE process_ = nullptr;
};

}  // namespace

TEST(WindowsE2e, GpusJsonFromASavedWindowsScreen) {
  WinSandbox sb;
  const std::string fixture = std::string(LLAMACTL_FIXTURES) + "/nvidia-smi/win-rtx2080s-610.62-wddm-table-load.txt";
  auto r = sb.run({"gpus", "--json"}, {"LLAMACTL_GPU_FIXTURE=" + fixture});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = r.j();
  ASSERT_EQ(j["gpu_status"].size(), 1u) << r.out;
  const json& g = j["gpu_status"][0];
  EXPECT_EQ(g["memory_used_mib"], 1366);
  EXPECT_EQ(g["memory_total_mib"], 8192);
  // Two ffmpeg.exe compute (type C) processes run beside the desktop: the GPU
  // is someone's, whatever the desktop rule makes of the rest.
  EXPECT_EQ(g["state"], "occupied_by_others") << g.dump();
  EXPECT_EQ(g["loadable"], false);
  bool ffmpeg = false;
  for (const auto& p : g["process_info"])
    ffmpeg = ffmpeg || p["process_name"].get<std::string>().find("ffmpeg.exe") != std::string::npos;
  EXPECT_TRUE(ffmpeg) << g.dump();
}

TEST(WindowsE2e, GpusAndStatusJsonFromTheMockNvidiaSmi) {
  WinSandbox sb;
  sb.set_gpus({"0 0 24564 0 NVIDIA GeForce RTX 4090", "1 2048 24564 35 NVIDIA GeForce RTX 4090"});
  auto r = sb.run({"gpus", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = r.j();
  EXPECT_EQ(j["mode"], "gpu") << r.out;
  ASSERT_EQ(j["gpu_status"].size(), 2u) << r.out;
  EXPECT_EQ(j["gpu_status"][0]["state"], "idle");
  EXPECT_EQ(j["gpu_status"][0]["loadable"], true);
  EXPECT_EQ(j["gpu_status"][1]["state"], "occupied_by_others");
  EXPECT_EQ(j["gpu_status"][1]["memory_used_mib"], 2048);

  auto s = sb.run({"status", "--json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.j()["instances"].size(), 0u) << s.out;
  EXPECT_EQ(s.j()["gpus"]["gpu_status"].size(), 2u) << s.out;
}

TEST(WindowsE2e, NoNvidiaSmiIsCpuMode) {
  WinSandbox sb;
  auto r = sb.run({"gpus", "--json"}, {"LLAMACTL_NVIDIA_SMI=C:\\no\\such\\nvidia-smi.exe"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.j()["mode"], "cpu") << r.out;
  EXPECT_NE(r.err.find("nvidia-smi"), std::string::npos) << r.err;
}

TEST(WindowsE2e, LoadStatusUnloadStopsTheServerGracefully) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json j = r.j();
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["gpus"], json::array({0}));
  EXPECT_EQ(j["port"], sb.base_port());
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["memory_used_mib"], 700) << "the mock sees the fake server's pid on GPU 0";
  const int64_t pid = j["pid"];
  EXPECT_TRUE(alive(pid));
  const std::string log_path = j["log"];
  EXPECT_EQ(log_path.find('/'), std::string::npos) << "a Windows path, as Explorer and cmd take it: " << log_path;
  const std::string log = read_text(log_path);
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=0 CUDA_DEVICE_ORDER=PCI_BUS_ID"), std::string::npos) << log;

  auto s = sb.run({"status", "--json"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const json sj = s.j();
  ASSERT_EQ(sj["instances"].size(), 1u) << s.out;
  EXPECT_EQ(sj["instances"][0]["healthy"], true);
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["state"], "model_loaded");
  EXPECT_EQ(sj["gpus"]["gpu_status"][1]["state"], "idle");
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);

  // Loading it again is a no-op that says so (the Task Scheduler job).
  auto again = sb.run({"-q", "load", sb.model("tiny"), "--gpu", "0"});
  EXPECT_EQ(again.exit_code, 0) << again.err;

  auto u = sb.run({"unload", "tiny", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(u.j()["unloaded"][0]["stopped"], true) << u.out;
  EXPECT_EQ(u.j()["unloaded"][0]["killed"], false) << "the console Ctrl-C stopped it" << u.out;
  EXPECT_TRUE(eventually([&] { return !alive(pid); }));
  EXPECT_NE(read_text(log_path).find("cleaning up before exit"), std::string::npos) << read_text(log_path);
  EXPECT_EQ(sb.run({"status", "--json"}).j()["instances"].size(), 0u);
}

TEST(WindowsE2e, UnloadKillsAServerThatIgnoresTheStop) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("stubborn"), "--gpu", "1", "--json"}, {"FAKE_IGNORE_SIGTERM=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const int64_t pid = r.j()["pid"];
  auto u = sb.run({"unload", "stubborn", "--timeout", "1", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(u.j()["unloaded"][0]["killed"], true) << u.out;
  EXPECT_TRUE(eventually([&] { return !alive(pid); }));
}

TEST(WindowsE2e, AServerThatDiesIsReportedByStatusCheck) {
  WinSandbox sb;
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const int64_t pid = r.j()["pid"];
  // Killed behind llamactl's back.
  ASSERT_TRUE(platform::signal_group(pid, platform::Signal::kill));
  ASSERT_TRUE(eventually([&] { return !alive(pid); }));
  auto check = sb.run({"status", "--check", "--json"});
  EXPECT_EQ(check.exit_code, 13) << check.err;
  EXPECT_EQ(check.j()["instances"][0]["state"], "dead") << check.out;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13) << "a later check still reports it";
  auto cleared = sb.run({"unload", "tiny"});
  EXPECT_EQ(cleared.exit_code, 0) << cleared.err;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
}

TEST(WindowsE2e, ServeAnswersOllamaAndOpenAiClientsAndStopsOnCtrlC) {
  WinSandbox sb;
  sb.add_model("tiny");
  const std::string model = "tiny";
  WinServe serve(sb, {"--unload-on-exit"});
  ASSERT_TRUE(serve.ready()) << serve.log();
  // The start line is written by serve's main thread once it accepts, while /health may already answer.
  const std::string listening = "listening on http://127.0.0.1:" + std::to_string(serve.port());
  EXPECT_TRUE(eventually([&] { return serve.log().find(listening) != std::string::npos; }, 5s)) << serve.log();

  // The first request loads the model (the fake llama-server built for Windows) and is relayed to it.
  const json gen = {{"model", model}, {"prompt", "Why is the sky blue?"}, {"stream", false}};
  auto g = http(serve.port(), "POST", "/api/generate", gen.dump());
  ASSERT_EQ(g.status, 200) << g.head << g.body << serve.log();
  EXPECT_EQ(g.j()["done"], true) << g.body;
  EXPECT_FALSE(g.j()["response"].get<std::string>().empty()) << g.body;

  auto st = sb.run({"status", "--json"});
  ASSERT_EQ(st.j()["instances"].size(), 1u) << st.out;
  const int64_t server_pid = st.j()["instances"][0]["pid"];
  EXPECT_TRUE(alive(server_pid));

  auto tags = http(serve.port(), "GET", "/api/tags");
  ASSERT_EQ(tags.status, 200) << tags.body;
  EXPECT_EQ(tags.j()["models"].size(), 1u) << tags.body;

  // A streamed OpenAI chat: server-sent events to the end.
  const json chat = {{"model", model}, {"stream", true}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto c = http(serve.port(), "POST", "/v1/chat/completions", chat.dump());
  ASSERT_EQ(c.status, 200) << c.head << c.body;
  EXPECT_NE(c.head.find("text/event-stream"), std::string::npos) << c.head;
  EXPECT_NE(c.body.find("data: [DONE]"), std::string::npos) << c.body;

  // Ctrl-C on serve's console: it stops, unloads what it loaded (--unload-on-exit) and exits 0.
  EXPECT_EQ(serve.stop(), 0) << serve.log() << read_text(sb.at("state/logs/tiny.log"))
                             << "server alive: " << alive(server_pid);
  EXPECT_NE(serve.log().find("stopping"), std::string::npos) << serve.log();
  EXPECT_TRUE(eventually([&] { return !alive(server_pid); })) << "serve unloaded the model it loaded";
  EXPECT_EQ(http(serve.port(), "GET", "/health").status, 0) << "nothing listens any more";
  EXPECT_FALSE(std::filesystem::exists(WinSandbox::fs_path(sb.at("state/serve.json"))));
  EXPECT_EQ(sb.run({"status", "--json"}).j()["instances"].size(), 0u);
}

// Folders and arguments beyond ASCII, as a user profile or a models folder
// named in another script has them: "é" is in Western code pages, "日本" and
// "ж" are not. They work because llamactl.exe declares UTF-8 as its code page.
TEST(WindowsE2e, LoadAndStatusWorkInFoldersNamedBeyondAscii) {
  WinSandbox sb("caf\u00e9-\u65e5\u672c-\u0436");
  const std::string model = sb.model("mod\u00e8le");
  auto r = sb.run({"load", model, "--gpu", "0", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json j = r.j();
  EXPECT_EQ(j["model"], "mod\u00e8le") << r.out;
  const std::string log_path = j["log"];
  EXPECT_TRUE(std::filesystem::exists(WinSandbox::fs_path(log_path))) << log_path;
  EXPECT_NE(read_text(log_path).find("caf\u00e9-\u65e5\u672c-\u0436"), std::string::npos)
      << "the server got the model's path as it is: " << read_text(log_path);
  auto s = sb.run({"status", "--json"});
  ASSERT_EQ(s.j()["instances"].size(), 1u) << s.out;
  // Recorded as an absolute, normalised path (backslashes), characters intact.
  EXPECT_EQ(s.j()["instances"][0]["path"], platform::utf8_path(platform::fs_path(model).lexically_normal())) << s.out;
  EXPECT_EQ(s.j()["instances"][0]["healthy"], true) << s.out;
  EXPECT_EQ(sb.run({"unload", "mod\u00e8le"}).exit_code, 0);
}

TEST(WindowsE2e, WatchPrintsPlainFramesWhenNotOnAConsole) {
  WinSandbox sb;
  auto r = sb.run({"watch", "--once"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "a pipe gets no escape codes: " << r.out;
  EXPECT_NE(r.out.find("GPU 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("H100"), std::string::npos) << r.out;
}

TEST(WindowsE2e, HelpNamesTheWindowsPlaces) {
  WinSandbox sb;
  auto r = sb.run({"--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("%LOCALAPPDATA%\\llamactl"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("%APPDATA%\\llamactl\\config.toml"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("~/"), std::string::npos) << r.out;
}

TEST(WindowsE2e, ServeStopsOnCtrlBreak) {
  WinSandbox sb;
  WinServe serve(sb, {});
  ASSERT_TRUE(serve.ready()) << serve.log();
  const int sent = serve.ctrl_break();
  // Wine 8's console sends Ctrl-C events only; on Windows this runs.
  if (sent == 5) GTEST_SKIP() << "this console cannot send a Ctrl-Break (Wine)";
  ASSERT_EQ(sent, 0);
  EXPECT_EQ(serve.wait_exit(20s), 0) << serve.log();
  EXPECT_NE(serve.log().find("stopping"), std::string::npos) << serve.log();
  EXPECT_EQ(http(serve.port(), "GET", "/health").status, 0) << "nothing listens any more";
}
