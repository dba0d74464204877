// load / unload / status end to end: real binary, fake llama-server, stateful mock nvidia-smi.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <future>
#include <set>
#include <sstream>

#include "integration/harness.h"
#include "net/http_client.h"
#include "platform/platform.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// "m7": built with snprintf because GCC 12 warns falsely (-Wrestrict, PR 105329) on "m" + to_string.
std::string numbered(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%d", prefix, i);
  return buf;
}

RunResult load(const Sandbox& sb, const std::string& model, const std::vector<std::string>& extra = {},
               const std::vector<std::string>& env = {}) {
  std::vector<std::string> args = {"load", sb.model(model), "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  return sb.run(args, env);
}

int instances(const Sandbox& sb) {
  const auto st = sb.state_file();
  return st.contains("instances") ? static_cast<int>(st["instances"].size()) : 0;
}

}  // namespace

TEST(Lifecycle, LoadOnGpu0StatusUnloadFrees) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = r.json();
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["gpus"], json::array({0}));
  EXPECT_EQ(j["port"], sb.base_port());
  EXPECT_EQ(j["url"], "http://127.0.0.1:" + std::to_string(sb.base_port()));
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["memory_used_mib"], 700);  // the mock reports the fake server's pid on GPU 0
  EXPECT_EQ(j["memory_total_mib"], 81559);
  EXPECT_GT(j["estimate"]["total_mib"].get<int>(), 0);
  const int64_t pid = j["pid"];
  EXPECT_TRUE(pid_alive(pid));
  const std::string log = read_text(j["log"].get<std::string>());
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=0 CUDA_DEVICE_ORDER=PCI_BUS_ID"), std::string::npos) << log;
  EXPECT_NE(log.find("--host 127.0.0.1 --port " + std::to_string(sb.base_port()) + " -c 4096"), std::string::npos)
      << log;

  auto st = sb.run({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto sj = st.json();
  ASSERT_EQ(sj["instances"].size(), 1u);
  EXPECT_EQ(sj["instances"][0]["state"], "running");
  EXPECT_EQ(sj["instances"][0]["healthy"], true);
  EXPECT_EQ(sj["instances"][0]["memory_used_mib"], 700);
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["state"], "model_loaded");
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["model_name"], "tiny");
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["select_enabled"], true);
  EXPECT_EQ(sj["gpus"]["gpu_status"][0]["loadable"], false);
  EXPECT_EQ(sj["gpus"]["gpu_status"][1]["state"], "idle");
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
  auto human = sb.run({"status"});
  EXPECT_NE(human.out.find("tiny"), std::string::npos);
  EXPECT_NE(human.out.find("700 / 81559 MiB (1%)"), std::string::npos) << human.out;

  auto u = sb.run({"unload", "tiny", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  auto uj = u.json();
  EXPECT_EQ(uj["unloaded"][0]["stopped"], true);
  EXPECT_EQ(uj["unloaded"][0]["killed"], false);
  EXPECT_EQ(uj["unloaded"][0]["freed_mib"], 700);
  EXPECT_EQ(uj["gpus"]["gpu_status"][0]["state"], "idle");
  EXPECT_TRUE(eventually([&] { return !pid_alive(pid); }));
  EXPECT_EQ(instances(sb), 0);
  EXPECT_FALSE(llamactl::platform::file_exists(sb.state_dir() + "/pids/tiny.pid"));
}

TEST(Lifecycle, GpuOneBothAndCpuPlacement) {
  Sandbox sb;
  auto one = load(sb, "one", {"--gpu", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.json()["gpus"], json::array({1}));
  EXPECT_EQ(one.json()["port"], sb.base_port() + 1);
  ASSERT_EQ(sb.run({"unload", "--all"}).exit_code, 0);

  auto both = load(sb, "big", {"--gpu", "both"});
  ASSERT_EQ(both.exit_code, 0) << both.err;
  EXPECT_EQ(both.json()["gpus"], json::array({0, 1}));
  EXPECT_EQ(both.json()["memory_used_mib"], 1400);  // 700 on each GPU
  EXPECT_EQ(both.json()["memory_total_mib"], 2 * 81559);
  const std::string log = read_text(both.json()["log"].get<std::string>());
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=0,1"), std::string::npos);
  EXPECT_NE(log.find("--tensor-split 1,1"), std::string::npos);

  auto cpu = load(sb, "small", {"--gpu", "cpu"});
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_EQ(cpu.json()["gpus"], json::array());
  EXPECT_TRUE(cpu.json()["memory_used_mib"].is_null());
  EXPECT_NE(read_text(cpu.json()["log"].get<std::string>()).find("CUDA_VISIBLE_DEVICES= CUDA"), std::string::npos);
  EXPECT_EQ(instances(sb), 2);
}

TEST(Lifecycle, RefusesBusyGpuAndOverlap) {
  Sandbox sb;
  ASSERT_EQ(load(sb, "a", {"--gpu", "0"}).exit_code, 0);
  auto busy = load(sb, "b", {"--gpu", "0"});
  EXPECT_EQ(busy.exit_code, 4);
  EXPECT_NE(busy.err.find("GPU 0 already runs 'a'"), std::string::npos) << busy.err;
  auto overlap = load(sb, "c", {"--gpu", "0,1"});
  EXPECT_EQ(overlap.exit_code, 4);
  EXPECT_EQ(instances(sb), 1);
  ASSERT_EQ(sb.run({"unload", "a"}).exit_code, 0);
  ASSERT_EQ(load(sb, "d", {"--gpu", "0,1"}).exit_code, 0);
  auto inside = load(sb, "e", {"--gpu", "1"});
  EXPECT_EQ(inside.exit_code, 4);
  EXPECT_NE(inside.err.find("multi-GPU instance 'd'"), std::string::npos) << inside.err;
}

TEST(Lifecycle, AutoPicksMostFreeAndRefusesOthers) {
  Sandbox sb;
  sb.set_gpus({"0 0 24576 0 NVIDIA L4", "1 0 81559 0 NVIDIA H100 80GB HBM3", "2 0 46068 0 NVIDIA L40S"});
  const auto other = sb.start_other("1", 2566, "/opt/torch/.venv/bin/python3");
  auto taken = load(sb, "x", {"--gpu", "1"});
  EXPECT_EQ(taken.exit_code, 4);
  EXPECT_NE(taken.err.find("GPU 1 is occupied by others"), std::string::npos) << taken.err;
  EXPECT_NE(taken.err.find("pid " + std::to_string(other) + " /opt/torch/.venv/bin/python3 (2566 MiB, user " +
                           llamactl::platform::current_user() + ")"),
            std::string::npos)
      << taken.err;
  auto a = load(sb, "x");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.json()["gpus"], json::array({2}));  // GPU 1 is someone else's; L40S has more free than L4
}

TEST(Lifecycle, IdempotentLoadForCron) {
  Sandbox sb;
  auto first = load(sb, "tiny", {"--gpu", "1"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto again = load(sb, "tiny");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.json()["already_running"], true);
  EXPECT_EQ(again.json()["pid"], first.json()["pid"]);
  auto human = sb.run({"load", sb.model("tiny")});
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.out.find("already runs on GPU 1"), std::string::npos) << human.out;
  auto elsewhere = load(sb, "tiny", {"--gpu", "0"});
  EXPECT_EQ(elsewhere.exit_code, 4);
  EXPECT_NE(elsewhere.err.find("already runs on GPU 1"), std::string::npos);
  EXPECT_EQ(instances(sb), 1);
}

TEST(Lifecycle, KilledServerIsReportedDeadUntilActedOn) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t pid = r.json()["pid"];
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  ASSERT_TRUE(eventually([&] { return !pid_alive(pid); }));
  auto check = sb.run({"status", "--check", "--json"});
  EXPECT_EQ(check.exit_code, 13);
  auto j = check.json();
  ASSERT_EQ(j["instances"].size(), 1u);
  EXPECT_EQ(j["instances"][0]["state"], "dead");
  EXPECT_FALSE(j["instances"][0]["died_at"].is_null());
  EXPECT_EQ(j["gpus"]["gpu_status"][0]["state"], "idle");  // a dead record holds no GPU
  EXPECT_NE(check.err.find("died"), std::string::npos) << check.err;
  // Whoever noticed it first, later checks still report it (the cron alert).
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13);
  EXPECT_EQ(sb.state_file()["instances"][0]["state"], "dead");
  auto verbose = sb.run({"status", "-v"});
  EXPECT_NE(verbose.out.find("last lines of"), std::string::npos) << verbose.out;
  // The GPU and port are free at once.
  EXPECT_EQ(load(sb, "other", {"--gpu", "0"}).exit_code, 0);
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13);
  // Unloading it by name clears it and says so.
  auto cleared = sb.run({"unload", "tiny"});
  EXPECT_EQ(cleared.exit_code, 0) << cleared.err;
  EXPECT_NE(cleared.out.find("cleared the dead record of 'tiny'"), std::string::npos) << cleared.out;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
  EXPECT_EQ(sb.run({"unload", "--all"}).exit_code, 0);
}

TEST(Lifecycle, DeadRecordClearedWhenTheModelRunsAgain) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t pid = r.json()["pid"];
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  ASSERT_TRUE(eventually([&] { return !pid_alive(pid); }));
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13);
  auto again = load(sb, "tiny", {"--gpu", "0"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(instances(sb), 1);
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
  EXPECT_EQ(sb.run({"unload", "--all"}).exit_code, 0);
}

TEST(Lifecycle, ReusedPidIsNotTakenForOurs) {
  Sandbox sb;
  ASSERT_EQ(load(sb, "tiny", {"--gpu", "0"}).exit_code, 0);
  // Rewrite the record so its pid is a live unrelated process with another start time.
  const int64_t stranger = sb.start_sleeper();
  auto st = sb.state_file();
  const int64_t real_pid = st["instances"][0]["pid"];
  st["instances"][0]["pid"] = stranger;
  st["instances"][0]["process_start_time"] = 1;
  { std::ofstream(sb.state_dir() + "/state.json") << st.dump(); }
  auto s = sb.run({"status", "--json"});
  EXPECT_EQ(s.json()["instances"][0]["state"], "dead");
  EXPECT_EQ(sb.run({"unload", "--all"}).exit_code, 0);
  EXPECT_TRUE(pid_alive(stranger));  // never signalled
  ::kill(static_cast<pid_t>(-real_pid), SIGKILL);
}

TEST(Lifecycle, HealthTimeoutCleansUp) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0", "--timeout", "1"}, {"FAKE_FAIL=never-healthy"});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find("did not become healthy within 1 s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fake-llama-server: argv:"), std::string::npos) << "log tail missing: " << r.err;
  EXPECT_EQ(instances(sb), 0);
  EXPECT_EQ(sb.run({"gpus", "--json"}).json()["gpu_status"][0]["state"], "idle");
}

TEST(Lifecycle, CrashDuringLoadCleansUpAndShowsLog) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0"}, {"FAKE_FAIL=crash", "FAKE_LOAD_DELAY_MS=200"});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("exited with code 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fake crash"), std::string::npos) << r.err;
  EXPECT_EQ(instances(sb), 0);
}

TEST(Lifecycle, RefusedStartIsReportedWithTheServersReason) {
  Sandbox sb;
  auto r = load(sb, "tiny", {"--gpu", "0"}, {"FAKE_FAIL=refuse"});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("couldn't bind HTTP server socket"), std::string::npos) << r.err;
  EXPECT_EQ(instances(sb), 0);
}

TEST(FakeServer, BehavesLikeTheObservedLlamaServer) {
  // The fake must keep matching shared/reference/llama-server-observed.md, or every end-to-end test lies.
  Sandbox sb;
  const int port = sb.base_port() + 50;
  ::setenv("FAKE_LOAD_DELAY_MS", "1000", 1);  // long enough to see the loading phase
  const auto pid = spawn_logged({FAKE_LLAMA_SERVER, "-m", sb.model("tiny"), "--host", "127.0.0.1", "--port",
                                 std::to_string(port), "--alias", "tiny", "-c", "512"});
  ::unsetenv("FAKE_LOAD_DELAY_MS");
  ASSERT_GT(pid, 0);
  // Port bound before loading: 503 with the loading error on every path.
  ASSERT_TRUE(eventually([&] { return llamactl::net::http_get("127.0.0.1", port, "/health", 200ms).ok(); }));
  auto loading = llamactl::net::http_get("127.0.0.1", port, "/v1/models", 200ms);
  ASSERT_TRUE(loading.ok());
  EXPECT_EQ(loading->status, 503);
  EXPECT_EQ(json::parse(loading->body)["error"]["message"], "Loading model");
  ASSERT_TRUE(eventually([&] {
    auto h = llamactl::net::http_get("127.0.0.1", port, "/health", 200ms);
    return h.ok() && h->status == 200;
  }));
  auto models = llamactl::net::http_get("127.0.0.1", port, "/v1/models", 200ms);
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "tiny");
  EXPECT_EQ(llamactl::net::http_get("127.0.0.1", port, "/api/tags", 200ms)->status, 404);  // no Ollama routes
  // SIGTERM when ready: clean exit 0.
  ::kill(static_cast<pid_t>(pid), SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(static_cast<pid_t>(pid), &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Lifecycle, ModelErrors) {
  Sandbox sb;
  EXPECT_EQ(sb.run({"load", "nonexistent-model"}).exit_code, 5);
  EXPECT_EQ(sb.run({"load", sb.path("missing.gguf")}).exit_code, 5);
  { std::ofstream(sb.path("bad.gguf")) << "not a gguf"; }
  auto bad = sb.run({"load", sb.path("bad.gguf")});
  EXPECT_EQ(bad.exit_code, 5);
  EXPECT_NE(bad.err.find("bad magic"), std::string::npos) << bad.err;
  EXPECT_EQ(sb.run({"unload", "nothing-loaded"}).exit_code, 5);
  EXPECT_EQ(sb.run({"unload"}).exit_code, 2);
  EXPECT_EQ(sb.run({"unload", "--gpu", "auto"}).exit_code, 2);
  EXPECT_EQ(sb.run({"load", sb.model("x"), "--gpu", "seven"}).exit_code, 2);
}

TEST(Lifecycle, ConfigModelsAliasesTensorSplitStyleAndExtraArgs) {
  Sandbox sb;
  sb.write_config("placement = \"tensor-split\"\n[models.llama-7b]\npath = \"" + sb.model("weights") +
                  "\"\ngpu = \"1\"\ncontext = 1024\nargs = [\"--flash-attn\", \"on\"]\naliases = [\"llama\"]\n");
  auto r = sb.run({"load", "llama:latest", "--json", "--", "-np", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = r.json();
  EXPECT_EQ(j["model"], "llama-7b");
  EXPECT_EQ(j["gpus"], json::array({1}));
  const std::string log = read_text(j["log"].get<std::string>());
  // Every GPU visible, named explicitly so an inherited CUDA_VISIBLE_DEVICES cannot renumber them.
  EXPECT_NE(log.find("CUDA_VISIBLE_DEVICES=0,1 "), std::string::npos) << log;
  EXPECT_NE(log.find("-c 1024"), std::string::npos);  // under the 2048 the test GGUF was trained with
  EXPECT_NE(log.find("--tensor-split 0,1 --flash-attn on -np 2"), std::string::npos) << log;
  EXPECT_EQ(sb.run({"unload", "llama"}).exit_code, 0);
}

TEST(Lifecycle, PortTakenBySomeoneElse) {
  Sandbox sb;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;  // a TIME_WAIT left by an earlier run must not fail the test
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(sb.base_port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  auto moved = load(sb, "tiny", {"--gpu", "0"});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_EQ(moved.json()["port"], sb.base_port() + 1);
  EXPECT_NE(moved.err.find("is taken"), std::string::npos);
  auto fixed = load(sb, "tiny2", {"--gpu", "1", "--port", std::to_string(sb.base_port())});
  EXPECT_EQ(fixed.exit_code, 12);
  ::close(fd);
}

TEST(Lifecycle, InsufficientMemoryUnlessForce) {
  Sandbox sb;
  sb.set_gpus({"0 0 600 0 Tiny GPU"});
  auto r = load(sb, "tiny", {"--gpu", "0"});
  EXPECT_EQ(r.exit_code, 11);
  EXPECT_NE(r.err.find("GPU 0 has 600 MiB free"), std::string::npos) << r.err;
  EXPECT_EQ(load(sb, "tiny", {"--gpu", "0", "--force"}).exit_code, 0);
}

TEST(Lifecycle, UnloadEscalatesToKill) {
  Sandbox sb;
  auto r = load(sb, "stubborn", {"--gpu", "0"}, {"FAKE_IGNORE_SIGTERM=1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t pid = r.json()["pid"];
  auto u = sb.run({"unload", "--gpu", "0", "--timeout", "0.3", "--json"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(u.json()["unloaded"][0]["killed"], true);
  EXPECT_TRUE(eventually([&] { return !pid_alive(pid); }));
}

TEST(Lifecycle, DamagedStateIsMovedAsideWithWarning) {
  Sandbox sb;
  ASSERT_TRUE(llamactl::platform::make_private_dir(sb.state_dir()).ok());
  { std::ofstream(sb.state_dir() + "/state.json") << "{\"schema_version\": 1, \"instances\": [ {"; }
  auto r = sb.run({"status"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.err.find("damaged"), std::string::npos) << r.err;
}

TEST(Concurrency, SixteenLoadsOnFourGpus) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 H100", "1 0 81559 0 H100", "2 0 81559 0 H100", "3 0 81559 0 H100"});
  std::vector<std::future<RunResult>> runs;
  for (int i = 0; i < 16; ++i) {
    const std::string m = sb.model(numbered("m", i));
    runs.push_back(std::async(std::launch::async, [&sb, m] {
      return sb.run({"load", m, "--json"}, {"FAKE_LOAD_DELAY_MS=300"});
    }));
  }
  int ok = 0, refused = 0;
  std::set<int> gpus, ports;
  for (auto& f : runs) {
    const auto r = f.get();
    if (r.exit_code == 0) {
      ++ok;
      auto j = r.json();
      ASSERT_EQ(j["gpus"].size(), 1u);
      EXPECT_TRUE(gpus.insert(j["gpus"][0].get<int>()).second) << "two instances on one GPU";
      EXPECT_TRUE(ports.insert(j["port"].get<int>()).second);
    } else {
      EXPECT_EQ(r.exit_code, 4) << r.err;
      EXPECT_NE(r.err.find("no idle GPU"), std::string::npos) << r.err;
      ++refused;
    }
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(refused, 12);
  const auto st = sb.state_file();
  ASSERT_EQ(st["instances"].size(), 4u);
  for (const auto& i : st["instances"]) {
    EXPECT_EQ(i["state"], "running");
    EXPECT_TRUE(pid_alive(i["pid"].get<int64_t>()));
  }
}

TEST(Concurrency, ParallelStatusDuringLoadsNeverSeesATornFile) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 H100", "1 0 81559 0 H100", "2 0 81559 0 H100", "3 0 81559 0 H100"});
  std::vector<std::future<RunResult>> loads, statuses;
  for (int i = 0; i < 4; ++i) {
    const std::string m = sb.model(numbered("p", i));
    loads.push_back(std::async(std::launch::async, [&sb, m] {
      return sb.run({"load", m}, {"FAKE_LOAD_DELAY_MS=400"});
    }));
  }
  for (int i = 0; i < 50; ++i)
    statuses.push_back(std::async(std::launch::async, [&sb] { return sb.run({"status", "--json"}); }));
  for (auto& f : statuses) {
    const auto r = f.get();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(r.json().contains("__parse_error")) << r.out;
    EXPECT_EQ(r.err.find("damaged"), std::string::npos) << r.err;
  }
  for (auto& f : loads) EXPECT_EQ(f.get().exit_code, 0);
  EXPECT_EQ(sb.state_file()["instances"].size(), 4u);
}

TEST(Lifecycle, AnotherStateDirsInstanceIsOccupiedByOthers) {
  Sandbox sb;
  auto r = load(sb, "mine", {"--gpu", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t pid = r.json()["pid"];
  const std::string other_state = sb.path("other-state");
  auto j = sb.run_in(other_state, {"gpus", "--json"}).json();
  EXPECT_EQ(j["gpu_status"][0]["state"], "occupied_by_others");
  EXPECT_EQ(j["gpu_status"][0]["process_info"][0]["pid"], pid);
  EXPECT_EQ(j["gpu_status"][0]["process_info"][0]["process_name"], "llama-server");
  auto refused = sb.run_in(other_state, {"load", sb.model("theirs"), "--gpu", "0"});
  EXPECT_EQ(refused.exit_code, 4);
  // Their unload --all touches nothing of ours.
  EXPECT_EQ(sb.run_in(other_state, {"unload", "--all"}).exit_code, 0);
  EXPECT_TRUE(pid_alive(pid));
}

TEST(Lifecycle, MissingLlamaServerIsAStartFailure) {
  Sandbox sb;
  const std::string m = sb.model("tiny");
  { std::ofstream(sb.path("llamactl.toml")) << "llama_server = \"/nonexistent/llama-server\"\n"; }
  auto r = sb.run({"load", m, "--gpu", "0"});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("/nonexistent/llama-server"), std::string::npos) << r.err;
  EXPECT_EQ(instances(sb), 0);
}

TEST(Lifecycle, CtrlCDuringLoadStopsTheServerAndExits130) {
  Sandbox sb;
  const auto argv = sb.command(sb.state_dir(), {"load", sb.model("tiny"), "--gpu", "0"}, {"FAKE_FAIL=never-healthy"});
  const auto pid = static_cast<pid_t>(spawn_logged(argv));
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(eventually([&] { return instances(sb) == 1; }));
  const int64_t server = sb.state_file()["instances"][0]["pid"];
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_EQ(instances(sb), 0);
  EXPECT_TRUE(eventually([&] { return !pid_alive(server); }));
}
