// serve end to end: the real binary, the mock nvidia-smi and the fake
// llama-server, over real sockets.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

#include "integration/harness.h"
#include "integration/serve_harness.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

void two_models(Sandbox& sb, const std::string& extra = "") {
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\naliases = [\"small\"]\n" +
                  "[models.other]\npath = \"" + sb.model("other") + "\"\n" + extra);
}

std::string chat_body(const std::string& model, bool stream = false, int max_tokens = 3) {
  return json{{"model", model},
              {"messages", {{{"role", "user"}, {"content", "hi"}}}},
              {"stream", stream},
              {"max_tokens", max_tokens}}
      .dump();
}

HttpReply chat(const ServeProcess& s, const std::string& model, int max_tokens = 3) {
  return http_request(s.port(), "POST", "/v1/chat/completions", chat_body(model, false, max_tokens),
                      {"Content-Type: application/json"});
}

json instances(const Sandbox& sb) {
  const auto st = sb.state_file();
  return st.contains("instances") ? st["instances"] : json::array();
}

json live_instance(const Sandbox& sb, const std::string& model) {
  for (const auto& i : instances(sb))
    if (i["model"] == model && i["state"] != "dead") return i;
  return json();
}

}  // namespace

TEST(Serve, LazyLoadOnFirstRequestThenFastPath) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_TRUE(instances(sb).empty());
  auto r = chat(s, "tiny:latest");
  ASSERT_EQ(r.status, 200) << r.body << r.error << s.output();
  EXPECT_EQ(r.json()["choices"][0]["message"]["content"], "Hello from fake");
  const auto inst = live_instance(sb, "tiny");
  ASSERT_FALSE(inst.is_null());
  EXPECT_EQ(inst["loaded_by"], "serve");
  EXPECT_EQ(inst["keep_alive_ms"], 5 * 60 * 1000);
  // An alias routes to the same instance; no second load.
  EXPECT_EQ(chat(s, "small").status, 200);
  EXPECT_EQ(metric(s, "llamactl_loads_total{result=\"ok\"}"), 1);
  auto st = sb.run({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_FALSE(st.json()["instances"][0]["expires_at"].is_null());
  auto models = http_request(s.port(), "GET", "/v1/models").json();
  ASSERT_EQ(models["data"].size(), 2u);
  for (const auto& m : models["data"])
    EXPECT_EQ(m["status"]["value"], m["id"] == "tiny" ? "loaded" : "unloaded") << m.dump();
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(Serve, TwentyConcurrentFirstRequestsStartOneServer) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_LOAD_DELAY_MS=500"});
  ASSERT_TRUE(s.ready()) << s.output();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i)
    threads.emplace_back([&] {
      if (chat(s, "tiny").status == 200) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 20) << s.output();
  EXPECT_EQ(instances(sb).size(), 1u);
  EXPECT_EQ(metric(s, "llamactl_loads_total{result=\"ok\"}"), 1);
  EXPECT_EQ(metric(s, "llamactl_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"), 20);
  EXPECT_EQ(metric(s, "llamactl_requests_in_flight"), 0);
}

TEST(Serve, TwoModelsLoadInParallel) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_LOAD_DELAY_MS=3000"});
  ASSERT_TRUE(s.ready()) << s.output();
  const auto t0 = std::chrono::steady_clock::now();
  HttpReply a, b;
  std::thread ta([&] { a = chat(s, "tiny"); });
  std::thread tb([&] { b = chat(s, "other"); });
  ta.join();
  tb.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(b.status, 200) << b.body;
  EXPECT_LT(seconds, 5.0) << "one load waited for the other";  // sequential would be >= 6 s
  EXPECT_NE(live_instance(sb, "tiny")["gpus"], live_instance(sb, "other")["gpus"]);
}

TEST(Serve, EvictsIdleInstanceWhenGpusAreFull) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200);
  const int64_t first = live_instance(sb, "tiny")["pid"];
  auto r = chat(s, "other");
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_TRUE(eventually([&] { return !pid_alive(first); }));
  EXPECT_TRUE(live_instance(sb, "tiny").is_null());
  EXPECT_FALSE(live_instance(sb, "other").is_null());
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_unloads_total{reason=\"evicted\"}") == 1; }, 3s));
}

TEST(Serve, BusyInstanceIsNeverEvictedTheOtherModelWaitsForIt) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_TOKEN_DELAY_MS=50"});
  ASSERT_TRUE(s.ready()) << s.output();
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 40),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_until("data: ")) << stream.raw() << s.output();
  // "other" needs the GPU that tiny's stream holds: it queues instead of a 503.
  std::atomic<bool> answered{false};
  HttpReply r;
  std::thread t([&] {
    r = chat(s, "other");
    answered = true;
  });
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_model_queue_depth{model=\"other\"}") == 1; }, 3s))
      << s.output();
  EXPECT_TRUE(stream.read_to_end());
  EXPECT_NE(stream.body().find("[DONE]"), std::string::npos);  // the busy stream was never cut
  t.join();
  EXPECT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_TRUE(live_instance(sb, "tiny").is_null());
  EXPECT_FALSE(live_instance(sb, "other").is_null());
  EXPECT_EQ(metric(s, "llamactl_swaps_total"), 1);
}

TEST(Serve, TwoModelsAlternatingOnOneGpuServeEveryRequest) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_REQUEST_DELAY_MS=50", "FAKE_LOAD_DELAY_MS=50"});
  ASSERT_TRUE(s.ready()) << s.output();
  // Four clients per model, five requests each, one after another.
  std::atomic<int> ok{0}, errors{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; i < 5; ++i) {
        const auto r = chat(s, c % 2 ? "other" : "tiny");
        (r.status == 200 ? ok : errors)++;
        if (r.status != 200) ADD_FAILURE() << r.status << " " << r.body;
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 40);
  EXPECT_EQ(errors, 0) << s.output();
  const double swaps = metric(s, "llamactl_swaps_total");
  std::cout << "two models on one GPU, 4 clients x 5 requests each: " << swaps << " swaps\n";
  EXPECT_GE(swaps, 1);
  EXPECT_LE(swaps, 12) << "a swap per round of requests at most, never one per request";
}

TEST(Serve, AFullQueueIs503WithRetryAfterAndATimedOutWaitSaysWhy) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  two_models(sb);
  ServeProcess s(sb, {"--max-queue", "1", "--queue-timeout", "1s"}, {"FAKE_TOKEN_DELAY_MS=50"});
  ASSERT_TRUE(s.ready()) << s.output();
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 60),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_until("data: ")) << stream.raw() << s.output();
  HttpReply first;
  std::thread t([&] { first = chat(s, "other"); });
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_model_queue_depth{model=\"other\"}") == 1; }, 3s));
  const auto full = chat(s, "other");
  EXPECT_EQ(full.status, 503) << full.body;
  EXPECT_EQ(full.headers.count("retry-after"), 1u) << full.body;
  EXPECT_NE(full.body.find("max_queue"), std::string::npos) << full.body;
  t.join();
  EXPECT_EQ(first.status, 503) << first.body;
  const std::string message = first.json()["error"]["message"];
  EXPECT_NE(message.find("waited 1 s in the queue for 'other' (queue_timeout)"), std::string::npos) << message;
  EXPECT_NE(message.find("tiny"), std::string::npos) << message;
  EXPECT_EQ(metric(s, "llamactl_queue_rejections_total{reason=\"full\"}"), 1);
  EXPECT_EQ(metric(s, "llamactl_queue_rejections_total{reason=\"timeout\"}"), 1);
  EXPECT_TRUE(stream.read_to_end());
  EXPECT_NE(stream.body().find("[DONE]"), std::string::npos);
}

TEST(Serve, SlotsComeFromParallelOrFromPropsAndServeAdmitsNoMore) {
  Sandbox sb;
  two_models(sb, "parallel = 1\n");  // other: -np 1; tiny: llama-server's own 4
  ServeProcess s(sb, {}, {"FAKE_REQUEST_DELAY_MS=300"});
  ASSERT_TRUE(s.ready()) << s.output();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 3; ++c) clients.emplace_back([&] { ok += chat(s, "other").status == 200; });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 3);
  ASSERT_EQ(chat(s, "tiny").status, 200);
  EXPECT_EQ(metric(s, "llamactl_model_slots{model=\"other\"}"), 1);
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_model_slots{model=\"tiny\"}") == 4; }, 3s));
  const json other = live_instance(sb, "other");
  const auto argv = other["argv"].get<std::vector<std::string>>();
  const auto np = std::find(argv.begin(), argv.end(), "-np");
  ASSERT_NE(np, argv.end()) << other.dump();
  EXPECT_EQ(*(np + 1), "1");
  // No request waited in llama-server's own queue: serve admitted one at a time.
  std::ifstream log(other["log"].get<std::string>());
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("waited for a slot"), std::string::npos) << text;
  EXPECT_NE(text.find("request: POST /v1/chat/completions"), std::string::npos) << text;
}

std::string log_of(const json& instance) {
  std::ifstream in(instance["log"].get<std::string>());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(Serve, ABusyModelScalesOutToAnIdleGpuAndEachInstanceIsShown) {
  Sandbox sb;  // two idle GPUs
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") +
                  "\"\nparallel = 1\nreplicas = 2\nscale_after = \"300ms\"\n");
  ServeProcess s(sb, {"-v"}, {"FAKE_REQUEST_DELAY_MS=700"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200) << s.output();
  // Four clients, two requests each, for a model with one slot: requests wait, and a second instance starts.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      for (int i = 0; i < 2; ++i) ok += chat(s, "tiny").status == 200;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 8) << s.output();
  const json first = live_instance(sb, "tiny");
  const json second = live_instance(sb, "tiny#2");
  ASSERT_FALSE(first.is_null());
  ASSERT_FALSE(second.is_null()) << s.output();
  EXPECT_NE(first["gpus"], second["gpus"]) << "the replica runs on the other GPU";
  EXPECT_NE(first["port"], second["port"]);
  EXPECT_EQ(second["loaded_by"], "serve");
  // Both served, one request at a time each: nothing waited inside llama-server.
  // (The fake logs a request after answering it: the line may come a moment after the reply.)
  for (const auto& inst : {first, second}) {
    EXPECT_TRUE(
        eventually([&] { return log_of(inst).find("request: POST /v1/chat/completions") != std::string::npos; }, 5s))
        << log_of(inst);
    EXPECT_EQ(log_of(inst).find("waited for a slot"), std::string::npos) << log_of(inst);
  }
  EXPECT_NE(s.output().find("scale-out of tiny"), std::string::npos) << s.output();
  EXPECT_EQ(metric(s, "llamactl_model_replicas{model=\"tiny\"}"), 2);
  EXPECT_EQ(metric(s, "llamactl_model_slots{model=\"tiny\"}"), 2);
  EXPECT_EQ(metric(s, "llamactl_model_scale_outs_total{model=\"tiny\"}"), 1);
  const std::string row =
      fmt::format(R"(llamactl_instance_requests_in_flight{{model="tiny",instance="tiny#2",port="{}",gpus="{}"}})",
                  second["port"].get<int>(), second["gpus"][0].get<int>());
  EXPECT_EQ(metric(s, row), 0) << http_request(s.port(), "GET", "/metrics").body;
  // /models: one model with two instances; a replica is not a model of its own.
  const auto models = http_request(s.port(), "GET", "/models");
  ASSERT_EQ(models.status, 200);
  const json data = models.json()["data"];
  ASSERT_EQ(data.size(), 1u) << models.body;
  EXPECT_EQ(data[0]["id"], "tiny");
  EXPECT_EQ(data[0]["status"]["value"], "loaded");
  ASSERT_EQ(data[0]["status"]["instances"].size(), 2u) << models.body;
  EXPECT_EQ(data[0]["status"]["instances"][1]["name"], "tiny#2");
  EXPECT_EQ(data[0]["status"]["instances"][1]["port"], second["port"]);
  EXPECT_EQ(chat(s, "tiny#2").status, 404) << "a replica's name is not a model";
  // /api/ps: a row per instance.
  const json ps = http_request(s.port(), "GET", "/api/ps").json();
  ASSERT_EQ(ps["models"].size(), 2u) << ps.dump();
  EXPECT_EQ(ps["models"][0]["name"], "tiny:latest");
  EXPECT_EQ(ps["models"][1]["name"], "tiny:latest");
  // `status` shows each, with its GPU and port.
  const auto st = sb.run({"status"});
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("tiny#2"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find(std::to_string(second["port"].get<int>())), std::string::npos) << st.out;
  // `unload tiny` ends the model's every instance.
  const auto un = sb.run({"unload", "tiny"});
  EXPECT_EQ(un.exit_code, 0) << un.out << un.err;
  EXPECT_FALSE(pid_alive(second["pid"].get<int64_t>()));
  EXPECT_FALSE(pid_alive(first["pid"].get<int64_t>()));
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

// Whether serve's /api/tags lists `model`.
bool lists(const ServeProcess& s, const std::string& model) {
  const auto r = http_request(s.port(), "GET", "/api/tags");
  if (r.status != 200) return false;
  const json tags = r.json();
  for (const auto& m : tags["models"])
    if (m["name"] == model + ":latest") return true;
  return false;
}

TEST(Serve, SighupAddsChangesAndRemovesModelsAndRefusesABrokenConfig) {
  Sandbox sb;
  const std::string tiny = "[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n";
  sb.write_config(tiny + "[models.gone]\npath = \"" + sb.model("gone") + "\"\n");
  ServeProcess s(sb, {"-v"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200) << s.output();
  ASSERT_EQ(chat(s, "gone").status, 200) << s.output();
  const json before = live_instance(sb, "tiny");
  EXPECT_FALSE(lists(s, "other"));
  // tiny changes (two slots), other is new, gone is removed.
  sb.write_config(tiny + "parallel = 2\n[models.other]\npath = \"" + sb.model("other") + "\"\n");
  ASSERT_EQ(::kill(static_cast<pid_t>(s.pid()), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return lists(s, "other"); }, 5s)) << s.output();
  EXPECT_TRUE(eventually([&] { return live_instance(sb, "gone").is_null(); }, 5s)) << s.output();
  // Idle, so tiny restarted at once with its new settings.
  json after;
  EXPECT_TRUE(eventually(
      [&] {
        after = live_instance(sb, "tiny");
        return !after.is_null() && after["pid"] != before["pid"] && after["state"] == "running";
      },
      5s))
      << s.output();
  const auto argv = after["argv"].get<std::vector<std::string>>();
  const auto np = std::find(argv.begin(), argv.end(), "-np");
  ASSERT_NE(np, argv.end()) << after.dump();
  EXPECT_EQ(*(np + 1), "2");
  EXPECT_EQ(chat(s, "other").status, 200) << s.output();
  EXPECT_EQ(chat(s, "gone").status, 404);
  EXPECT_NE(s.output().find("added: other; changed: tiny; removed: gone"), std::string::npos) << s.output();

  // A config that does not parse is refused, and the one in use stays.
  sb.write_config("[models.tiny\n");
  ASSERT_EQ(::kill(static_cast<pid_t>(s.pid()), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return s.output().find("config reload (SIGHUP) refused") != std::string::npos; }, 5s))
      << s.output();
  EXPECT_EQ(chat(s, "other").status, 200);
  EXPECT_EQ(chat(s, "tiny").status, 200);
  EXPECT_EQ(live_instance(sb, "tiny")["pid"], after["pid"]);
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(Serve, WatchConfigReloadsWhenTheFileChanges) {
  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  ServeProcess s(sb, {"--watch-config", "-v"});
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_FALSE(lists(s, "other"));
  two_models(sb);
  EXPECT_TRUE(eventually([&] { return lists(s, "other"); }, 5s))
      << s.output() << http_request(s.port(), "GET", "/api/tags").body;
  EXPECT_EQ(chat(s, "other").status, 200) << s.output();
  EXPECT_NE(s.output().find("config reloaded (the file changed)"), std::string::npos) << s.output();
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

// A write while serve starts (after it read the config, before it watches)
// is a change like any other, not the baseline it compares against.
TEST(Serve, WatchConfigSeesAWriteMadeWhileServeStarts) {
  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  sb.model("other");
  ServeProcess s(sb, {"--watch-config", "-v"});
  two_models(sb);  // no wait for ready: the write lands somewhere in serve's start
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_TRUE(eventually([&] { return lists(s, "other"); }, 5s))
      << s.output() << http_request(s.port(), "GET", "/api/tags").body;
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(Serve, AStreamingRequestThatWaitsHearsFromServeEveryTwoSeconds) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_LOAD_DELAY_MS=4500"});
  ASSERT_TRUE(s.ready()) << s.output();
  const auto t0 = std::chrono::steady_clock::now();
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 3),
                    {"Content-Type: application/json"});
  HttpReply plain;  // the same wait without "stream": nothing early, a plain reply
  std::thread t([&] { plain = chat(s, "tiny"); });
  ASSERT_TRUE(stream.read_until(": loading tiny, 2 s\n\n", 5s)) << stream.raw() << s.output();
  const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(first, 1.9);
  EXPECT_LT(first, 3.5);
  EXPECT_EQ(stream.raw().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << stream.raw();
  EXPECT_NE(stream.raw().find("Content-Type: text/event-stream"), std::string::npos) << stream.raw();
  ASSERT_TRUE(stream.read_to_end());
  const std::string body = stream.body();
  EXPECT_NE(body.find(": loading tiny, 4 s\n\n"), std::string::npos) << body;
  EXPECT_LT(body.find(": loading tiny, 4 s"), body.find("data: ")) << body;
  EXPECT_NE(body.find("data: [DONE]"), std::string::npos) << body;
  t.join();
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.body.rfind("{", 0), 0u) << plain.body;
}

TEST(Serve, ALoadThatFailsAfterTheStreamStartedEndsItWithAnErrorEvent) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_LOAD_DELAY_MS=6000", "FAKE_FAIL=crash"});
  ASSERT_TRUE(s.ready()) << s.output();
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 3),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_to_end(20s)) << stream.raw();
  const std::string body = stream.body();
  EXPECT_EQ(stream.raw().rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << stream.raw();
  EXPECT_NE(body.find(": loading tiny, 2 s"), std::string::npos) << body;
  const auto at = body.find("event: error\ndata: ");
  ASSERT_NE(at, std::string::npos) << body;
  const auto line_end = body.find('\n', at + 19);
  const json error = json::parse(body.substr(at + 19, line_end - at - 19));
  EXPECT_GE(error["error"]["code"].get<int>(), 500) << body;
  EXPECT_NE(error["error"]["message"].get<std::string>().find("fake crash"), std::string::npos) << body;
  EXPECT_EQ(body.find("[DONE]"), std::string::npos) << body;
  EXPECT_TRUE(stream.raw().size() >= 5 && stream.raw().substr(stream.raw().size() - 5) == "0\r\n\r\n") << stream.raw();
}

TEST(Serve, NothingToFreeNamesTheOtherUsersProcess) {
  Sandbox sb;
  sb.set_gpus({"0 0 81559 0 NVIDIA H100 80GB HBM3"});
  two_models(sb);
  sb.start_other("0", 40000, "python3");
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = chat(s, "tiny");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("python3"), std::string::npos) << r.body;
  EXPECT_TRUE(instances(sb).empty());
}

TEST(Serve, ReapsAtKeepAliveAndNeverDuringARequest) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {"--keep-alive", "1s"}, {"FAKE_TOKEN_DELAY_MS=100"});
  ASSERT_TRUE(s.ready()) << s.output();
  // A 3 s stream outlives its 1 s keep-alive: it must not be reaped under it.
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 30),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_to_end(20s)) << s.output();
  EXPECT_NE(stream.body().find("[DONE]"), std::string::npos) << stream.raw();
  const auto ended = std::chrono::steady_clock::now();
  ASSERT_FALSE(live_instance(sb, "tiny").is_null());
  EXPECT_TRUE(eventually([&] { return live_instance(sb, "tiny").is_null(); }, 5s)) << s.output();
  const double after = std::chrono::duration<double>(std::chrono::steady_clock::now() - ended).count();
  EXPECT_GT(after, 0.9);  // idle measured from the end of the request
  EXPECT_LT(after, 3.0);  // reaped within about a second of expiry
  // Counted when the stop job ends, a moment after the record goes.
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_unloads_total{reason=\"idle\"}") == 1; }, 3s));
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);  // a reap is a stop, not a death
}

TEST(Serve, KeepAliveZeroUnloadsRightAfterTheRequest) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"OLLAMA_KEEP_ALIVE=0"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200);
  EXPECT_TRUE(eventually([&] { return instances(sb).empty(); }, 3s)) << s.output();
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_unloads_total{reason=\"keep_alive_0\"}") == 1; }, 3s));
}

namespace {

bool send_all(int fd, const std::string& text) {
  return ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
}

/// Appends what arrives on `fd` to `raw` until the peer closes (EOF or a
/// reset: true) or `within` passes (false).
bool read_until_closed(int fd, std::chrono::milliseconds within, std::string& raw) {
  pollfd p{fd, POLLIN, 0};
  const auto until = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < until) {
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
    raw.append(buf, static_cast<size_t>(n));
  }
  return false;
}

/// Connects and sends `text`; true when serve then closes the connection
/// within `within` (reads EOF or a reset), false if it is still open.
bool closed_by_serve(int port, const std::string& text, std::chrono::milliseconds within) {
  const int fd = connect_loopback(port);
  if (fd < 0) return false;
  std::string ignored;
  const bool closed = (text.empty() || send_all(fd, text)) && read_until_closed(fd, within, ignored);
  ::close(fd);
  return closed;
}

}  // namespace

// The client timeouts (read, idle, write) bound serve's own operations on a
// connection, not the time it waits for a load or for llama-server.
TEST(Serve, ClientTimeoutsBoundItsReadsNotTheWaits) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"LLAMACTL_SERVE_IO_TIMEOUT_MS=1000", "FAKE_LOAD_DELAY_MS=2500", "FAKE_TOKEN_DELAY_MS=1200"});
  ASSERT_TRUE(s.ready()) << s.output();
  // A 2.5 s load, then 2 tokens of 1.2 s, answered at the end.
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = chat(s, "tiny", 2);
  EXPECT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_GT(std::chrono::steady_clock::now() - t0, 4s);
  // A stream whose events are 1.2 s apart.
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 2),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_to_end(20s)) << s.output();
  EXPECT_NE(stream.body().find("[DONE]"), std::string::npos) << stream.raw();
  // A connection that sends nothing, and one that stops inside its body, are closed.
  EXPECT_TRUE(closed_by_serve(s.port(), "", 5s));
  EXPECT_TRUE(closed_by_serve(
      s.port(), "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"model\"", 5s));
  // An idle keep-alive connection waits at least its timeout.
  EXPECT_FALSE(closed_by_serve(s.port(), "", 800ms));
}

TEST(Serve, ClientDisconnectMidStreamCancelsUpstream) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_TOKEN_DELAY_MS=100"});
  ASSERT_TRUE(s.ready()) << s.output();
  {
    HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 100),
                      {"Content-Type: application/json"});
    ASSERT_TRUE(stream.read_until("\"content\":\"Hello\"")) << stream.raw() << s.output();
  }  // hang up
  const std::string log = live_instance(sb, "tiny")["log"];
  EXPECT_TRUE(
      eventually([&] { return read_text(log).find("client disconnected, cancelled") != std::string::npos; }, 5s))
      << read_text(log);
  EXPECT_TRUE(eventually([&] { return metric(s, "llamactl_requests_in_flight") == 0; }, 5s));
}

TEST(Serve, UpstreamKilledMidStreamEndsTheStreamAndIsReportedDead) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_TOKEN_DELAY_MS=100"});
  ASSERT_TRUE(s.ready()) << s.output();
  HttpStream stream(s.port(), "POST", "/v1/chat/completions", chat_body("tiny", true, 100),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_until("\"content\":\"Hello\"")) << stream.raw();
  const int64_t pid = live_instance(sb, "tiny")["pid"];
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  ASSERT_TRUE(stream.read_to_end(10s));
  EXPECT_NE(stream.body().find("event: error"), std::string::npos) << stream.raw();
  EXPECT_EQ(stream.body().find("[DONE]"), std::string::npos);
  auto check = sb.run({"status", "--check", "--json"});
  EXPECT_EQ(check.exit_code, 13) << check.out;
  // The next request loads it again, and that clears the death.
  auto again = chat(s, "tiny");
  EXPECT_EQ(again.status, 200) << again.body << s.output();
  EXPECT_NE(live_instance(sb, "tiny")["pid"], pid);
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
}

TEST(Serve, UnloadBehindServesBackIsNoticed) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200);
  const int64_t pid = live_instance(sb, "tiny")["pid"];
  auto u = sb.run({"unload", "tiny"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  // No request goes to the dead port: it is loaded anew, at once or after the next sync.
  auto r = chat(s, "tiny");
  EXPECT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_NE(live_instance(sb, "tiny")["pid"], pid);
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);  // an unload is not a death
}

TEST(Serve, HandLoadedInstanceIsRoutableAndKeptWhenIdle) {
  Sandbox sb;
  two_models(sb);
  auto l = sb.run({"load", "tiny", "--json"});
  ASSERT_EQ(l.exit_code, 0) << l.err;
  const int64_t pid = l.json()["pid"];
  ServeProcess s(sb, {"--keep-alive", "0"});
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_EQ(chat(s, "tiny").status, 200);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(live_instance(sb, "tiny")["pid"], pid);  // never reaped: loaded by hand, no keep-alive
  EXPECT_EQ(metric(s, "llamactl_loads_total{result=\"ok\"}"), 0);
}

TEST(Serve, RestartAdoptsRunningInstancesAndSigtermLeavesThemUp) {
  Sandbox sb;
  two_models(sb);
  int64_t pid = 0;
  {
    ServeProcess s(sb);
    ASSERT_TRUE(s.ready()) << s.output();
    ASSERT_EQ(chat(s, "tiny").status, 200);
    pid = live_instance(sb, "tiny")["pid"];
    EXPECT_EQ(s.terminate(), 0) << s.output();
  }
  EXPECT_TRUE(pid_alive(pid));
  ServeProcess s2(sb);
  ASSERT_TRUE(s2.ready()) << s2.output();
  EXPECT_EQ(chat(s2, "tiny").status, 200);
  EXPECT_EQ(live_instance(sb, "tiny")["pid"], pid);
  EXPECT_EQ(instances(sb).size(), 1u);
  EXPECT_EQ(metric(s2, "llamactl_loads_total{result=\"ok\"}"), 0);
}

TEST(Serve, UnloadOnExitStopsWhatServeLoaded) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {"--unload-on-exit"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200);
  const int64_t pid = live_instance(sb, "tiny")["pid"];
  EXPECT_EQ(s.terminate(), 0) << s.output();
  EXPECT_FALSE(pid_alive(pid));
  EXPECT_TRUE(instances(sb).empty());
}

TEST(Serve, ServerKilledWhileServeRunsIsReportedUntilActedOn) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200);
  const int64_t pid = live_instance(sb, "tiny")["pid"];
  ::kill(static_cast<pid_t>(pid), SIGKILL);
  // serve reconciles every few seconds and notices first; the death must still reach cron.
  EXPECT_TRUE(eventually(
      [&] {
        const auto i = instances(sb);
        return i.size() == 1 && i[0]["state"] == "dead";
      },
      6s))
      << s.output();
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13);
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 13);
  EXPECT_EQ(metric(s, "llamactl_instances{state=\"dead\"}"), 1);
  auto u = sb.run({"unload", "tiny"});
  EXPECT_NE(u.out.find("cleared the dead record"), std::string::npos) << u.out << u.err;
  EXPECT_EQ(sb.run({"status", "--check"}).exit_code, 0);
}

TEST(Serve, ApiKeyGuardsEveryRouteButRootAndHealth) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {"--api-key", "s3cret"});
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_EQ(http_request(s.port(), "GET", "/").status, 200);
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models").status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/metrics", "", {"Authorization: Bearer wrong"}).status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models", "", {"Authorization: Bearer s3cret"}).status, 200);
  // Anthropic's clients send the key as x-api-key.
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models", "", {"x-api-key: s3cret"}).status, 200);
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models", "", {"x-api-key: s3cre"}).status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models", "", {"x-api-key: s3cretX"}).status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/v1/models", "", {"Authorization: s3cret"}).status, 401);
  auto r = http_request(s.port(), "POST", "/v1/chat/completions", chat_body("tiny"), {"Authorization: Bearer s3cret"});
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(Serve, ErrorPaths) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {"--max-body", "2KiB"});
  ASSERT_TRUE(s.ready()) << s.output();
  auto unknown = http_request(s.port(), "POST", "/v1/chat/completions", chat_body("nope"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.json()["error"]["message"], "model 'nope' not found");
  EXPECT_EQ(unknown.json()["error"]["type"], "not_found_error");
  EXPECT_EQ(http_request(s.port(), "POST", "/v1/chat/completions", "{not json").status, 400);
  EXPECT_EQ(http_request(s.port(), "POST", "/v1/embeddings", R"({"input":"x"})").status, 400);
  auto big = http_request(s.port(), "POST", "/v1/chat/completions", chat_body("tiny") + std::string(4096, ' '));
  EXPECT_EQ(big.status, 413) << big.body;
  // A chunked body over the limit, which shows only part way through: 413 as well.
  const std::string chunk(1500, ' ');
  const std::string piece = fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
  const std::string reply = raw_exchange(
      s.port(), "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + piece +
                    piece + "0\r\n\r\n");
  EXPECT_EQ(reply.substr(0, 12), "HTTP/1.1 413") << reply;
  EXPECT_EQ(http_request(s.port(), "GET", "/no/such/route").status, 404);
  EXPECT_TRUE(instances(sb).empty());
  // CORS preflight for a local origin, refused for others.
  auto pre = http_request(s.port(), "OPTIONS", "/v1/chat/completions", "",
                          {"Origin: http://localhost:3000", "Access-Control-Request-Method: POST"});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.headers["access-control-allow-origin"], "http://localhost:3000");
  EXPECT_EQ(http_request(s.port(), "OPTIONS", "/v1/models", "", {"Origin: https://evil.example"}).status, 403);
}

// One keep-alive connection: a body that comes in two sends, then a request
// sent right behind another (pipelined), then a 1.2 MB reply to a client with
// a small receive buffer that does not read for a while (serve's sends stop
// part way and go on later), then a chunked body: every reply arrives whole
// and in order.
TEST(Serve, BodyInPiecesPipelinedRequestsAndASlowReader) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_TOKEN_DELAY_MS=0"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(chat(s, "tiny").status, 200) << s.output();  // loaded: what follows is relayed at once
  const auto request = [](const std::string& body, bool close) {
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body;
  };
  const std::string first = request(chat_body("tiny", false, 2), false);
  const std::string last = chat_body("tiny", false, 4);
  const std::string chunked =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: "
      "close\r\n\r\n" +
      fmt::format("{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", 5, last.substr(0, 5), last.size() - 5, last.substr(5));
  const std::string rest = request(chat_body("tiny", false, 200000), false) + chunked;

  ConnectOptions small_buffer;
  small_buffer.rcvbuf = 64 * 1024;
  const int fd = connect_loopback(s.port(), small_buffer);
  ASSERT_GE(fd, 0);
  const size_t cut = first.size() - 10;  // inside the body
  ASSERT_TRUE(send_all(fd, first.substr(0, cut)));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(send_all(fd, first.substr(cut) + rest));
  std::this_thread::sleep_for(1s);  // not reading: serve's send of the large reply stops part way

  std::string raw;
  const bool closed = read_until_closed(fd, 60s, raw);
  ::close(fd);
  ASSERT_TRUE(closed) << "no end after " << raw.size() << " bytes";

  // Three replies, each a JSON body of the length it announces, in the order asked.
  std::vector<int> tokens;
  for (size_t at = 0; at < raw.size();) {
    ASSERT_EQ(raw.compare(at, 15, "HTTP/1.1 200 OK"), 0) << raw.substr(at, 200);
    const size_t head_end = raw.find("\r\n\r\n", at);
    ASSERT_NE(head_end, std::string::npos);
    const std::string head = raw.substr(at, head_end - at);
    const size_t cl = head.find("Content-Length: ");
    ASSERT_NE(cl, std::string::npos) << head;
    const size_t length = std::stoul(head.substr(cl + 16));
    ASSERT_LE(head_end + 4 + length, raw.size()) << "a reply cut short";
    const auto body = json::parse(raw.substr(head_end + 4, length));
    tokens.push_back(body["usage"]["completion_tokens"].get<int>());
    at = head_end + 4 + length;
  }
  EXPECT_EQ(tokens, (std::vector<int>{2, 200000, 4})) << s.output();
}

TEST(Serve, SecondServeOnTheStateDirRefuses) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto second = sb.run({"serve", "--listen", "127.0.0.1:" + std::to_string(free_port())}, {}, 10s);
  EXPECT_EQ(second.exit_code, 8) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(s.pid())), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("127.0.0.1:" + std::to_string(s.port())), std::string::npos) << second.err;
}

TEST(Serve, OllamaHostIsHonouredWithoutAFlag) {
  Sandbox sb;
  two_models(sb);
  const int port = free_port();
  const auto argv = sb.command(sb.state_dir(), {"serve"}, {"OLLAMA_HOST=http://127.0.0.1:" + std::to_string(port)});
  const int64_t pid = spawn_logged(argv);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(eventually([&] { return http_request(port, "GET", "/").body == "Ollama is running"; }, 10s));
  ::kill(static_cast<pid_t>(pid), SIGTERM);
  int status = 0;
  ::waitpid(static_cast<pid_t>(pid), &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Serve, ListenAddressTakenIsExit12) {
  Sandbox sb;
  ServeProcess first(sb);
  ASSERT_TRUE(first.ready()) << first.output();
  auto other =
      sb.run_in(sb.path("other-state"), {"serve", "--listen", "127.0.0.1:" + std::to_string(first.port())}, {}, 10s);
  EXPECT_EQ(other.exit_code, 12) << other.err;
}
