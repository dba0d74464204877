// The web page's server side, end to end: its data routes (GET /ui/api/state
// and the /ui/api/events stream) and its actions through POST /models/load
// with a chosen GPU and keep-alive (the CLI's Runtime: the same refusals),
// against the real binary, the fake llama-server and the mock nvidia-smi.
// The page itself is driven in a browser by tests/clients/ui.test.mjs.

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "integration/harness.h"
#include "integration/serve_harness.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

HttpReply post_json(const ServeProcess& s, const std::string& path, const json& body,
                    std::vector<std::string> headers = {}) {
  headers.emplace_back("Content-Type: application/json");
  return http_request(s.port(), "POST", path, body.dump(), headers, 60s);
}

json state(const ServeProcess& s, const std::vector<std::string>& headers = {}) {
  const auto r = http_request(s.port(), "GET", "/ui/api/state", "", headers);
  return r.status == 200 ? r.json() : json();
}

const json* instance_of(const json& doc, const std::string& model) {
  for (const auto& i : doc["status"]["instances"])
    if (i["model"] == model) return &i;
  return nullptr;
}

}  // namespace

TEST(ServeUi, StateEventsAndLoadsOnAChosenGpuWithTheClisRefusals) {
  Sandbox sb;
  sb.set_gpus(
      {"0 0 81559 0 NVIDIA H100 80GB HBM3", "1 0 81559 0 NVIDIA H100 80GB HBM3", "2 0 81559 0 NVIDIA H100 80GB HBM3"});
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") +
                  "\"\naliases = [\"small\"]\n[models.other]\npath = \"" + sb.model("other") + "\"\ngpu = \"2\"\n");
  const auto other_user = sb.start_other("2", 4000, "/opt/torch/.venv/bin/python3");
  ServeProcess s(sb, {"-v"});
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_NE(s.output().find("/ui"), std::string::npos) << "the start line names the page: " << s.output();

  // The document: `status --json` from the monitor's reading, the models, and a growing history.
  json doc;
  ASSERT_TRUE(eventually(
      [&] {
        doc = state(s);
        return !doc.is_null() && doc["history"]["samples"].size() >= 2;
      },
      5s))
      << doc.dump();
  EXPECT_EQ(doc["status"]["gpus"]["total_gpus"], 3);
  EXPECT_EQ(doc["status"]["gpus"]["gpu_status"][2]["state"], "occupied_by_others");
  EXPECT_EQ(doc["status"]["gpus"]["gpu_status"][2]["process_info"][0]["pid"], other_user);
  EXPECT_EQ(doc["models"].size(), 2u);
  EXPECT_EQ(doc["history"]["samples"][0]["gpus"].size(), 3u);
  EXPECT_TRUE(doc["reading_at_ms"].is_number());

  // The stream: the document at once, then again with each reading (only new samples).
  HttpStream events(s.port(), "GET", "/ui/api/events", "");
  ASSERT_TRUE(events.read_until("event: state\ndata: {", 5s)) << events.raw();
  EXPECT_NE(events.raw().find("Content-Type: text/event-stream"), std::string::npos);

  // Load on GPU 1, as `llamactl load tiny --gpu 1 --keep-alive 10m` would.
  auto r = post_json(s, "/models/load", {{"model", "small"}, {"gpu", "1"}, {"keep_alive", "10m"}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.json()["success"], true);
  EXPECT_EQ(r.json()["instance"]["gpus"], json::array({1}));
  EXPECT_EQ(r.json()["instance"]["loaded_by"], "web");
  EXPECT_EQ(r.json()["instance"]["keep_alive_ms"], 600000);
  doc = state(s);
  const json* tiny = instance_of(doc, "tiny");
  ASSERT_NE(tiny, nullptr) << doc.dump();
  EXPECT_EQ(tiny->at("state"), "running");
  EXPECT_EQ(doc["status"]["gpus"]["gpu_status"][1]["model_name"], "tiny");
  ASSERT_TRUE(events.read_until("\"model_name\":\"tiny\"", 5s)) << "the stream shows the load";
  // Routable at once: a chat goes to the instance the page loaded.
  const auto chat =
      post_json(s, "/v1/chat/completions", {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(sb.state_file()["instances"].size(), 1u) << "no second instance";
  // Its log's last lines, on demand; only instances the state knows, only from the state dir's logs/.
  // (The fake llama-server logs a request after answering it: on a loaded machine the line comes a moment later.)
  HttpReply log;
  EXPECT_TRUE(eventually(
      [&] {
        log = http_request(s.port(), "GET", "/ui/api/log/tiny");
        return log.status == 200 &&
               log.json()["tail"].get<std::string>().find("request: POST /v1/chat/completions") != std::string::npos;
      },
      5s))
      << log.status << " " << log.body;
  EXPECT_EQ(log.json()["log"], sb.state_dir() + "/logs/tiny.log");
  EXPECT_EQ(http_request(s.port(), "GET", "/ui/api/log/nope").status, 404);
  EXPECT_EQ(http_request(s.port(), "GET", "/ui/api/log/..%2F..%2Fconfig.toml").status, 404);

  // A keep-alive change of the running instance.
  r = post_json(s, "/models/load", {{"model", "tiny"}, {"keep_alive", "30m"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["instance"]["already_running"], true);
  EXPECT_EQ(r.json()["instance"]["keep_alive_ms"], 30 * 60000);
  // The CLI's refusals: another GPU for a running model, a GPU another user holds.
  r = post_json(s, "/models/load", {{"model", "tiny"}, {"gpu", "0"}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("already runs on GPU 1"), std::string::npos) << r.body;
  r = post_json(s, "/models/load", {{"model", "other"}, {"gpu", "2"}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("python3"), std::string::npos)
      << "names the other user's process: " << r.body;
  r = post_json(s, "/models/load", {{"model", "tiny"}, {"gpu", json::array({0})}});
  EXPECT_EQ(r.status, 400) << r.body;
  // Another site cannot drive it; the page's own origin can.
  r = post_json(s, "/models/load", {{"model", "other"}, {"gpu", "0"}}, {"Origin: http://evil.example"});
  EXPECT_EQ(r.status, 403) << r.body;
  r = post_json(s, "/models/unload", {{"model", "tiny"}}, {"Origin: http://127.0.0.1:" + std::to_string(s.port())});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(instance_of(state(s), "tiny"), nullptr);
  events.close();
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(ServeUi, WithAnApiKeyThePageLoadsAndItsDataNeedsTheKey) {
  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  ServeProcess s(sb, {"--api-key", "sekrit"});
  ASSERT_TRUE(s.ready()) << s.output();
  // The page's files need no key (it asks for one); its data does.
  EXPECT_NE(http_request(s.port(), "GET", "/ui").status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/ui/api/state").status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/ui/api/events").status, 401);
  EXPECT_EQ(http_request(s.port(), "POST", "/models/load", R"({"model":"tiny","gpu":"0"})").status, 401);
  const auto ok = http_request(s.port(), "GET", "/ui/api/state", "", {"Authorization: Bearer sekrit"});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.headers.at("cache-control"), "no-store");
  EXPECT_EQ(s.terminate(), 0) << s.output();
}
