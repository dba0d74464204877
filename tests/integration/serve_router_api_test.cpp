// llama-server's router API on serve, end to end: GET /models, POST
// /models/load and /models/unload, and the GET /models/sse status stream,
// against the real binary, the fake llama-server and the mock nvidia-smi.
// Loads and unloads by the API and by the CLI go through one Runtime, and
// the stream reports both.

#include <gtest/gtest.h>
#include <signal.h>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "integration/harness.h"
#include "integration/serve_harness.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

void two_models(Sandbox& sb) {
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\naliases = [\"small\"]\n" +
                  "[models.other]\npath = \"" + sb.model("other") + "\"\n");
}

HttpReply post(const ServeProcess& s, const std::string& path, const std::string& body,
               const std::vector<std::string>& headers = {"Content-Type: application/json"}) {
  return http_request(s.port(), "POST", path, body, headers, 60s);
}

std::string model_body(const std::string& model) {
  return json{{"model", model}}.dump();
}

json model_entry(const ServeProcess& s, const std::string& id) {
  const json j = http_request(s.port(), "GET", "/models").json();
  if (!j.contains("data")) return json::object();
  for (const auto& m : j["data"])
    if (m["id"] == id) return m;
  return json::object();
}

bool live(const Sandbox& sb, const std::string& model) {
  const auto st = sb.state_file();
  if (!st.contains("instances")) return false;
  for (const auto& i : st["instances"])
    if (i["model"] == model && i["state"] != "dead") return true;
  return false;
}

/// The (model, status) of every model_status event in an SSE body, in order.
std::vector<std::pair<std::string, std::string>> status_events(const std::string& body) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const json e = json::parse(line.substr(6), nullptr, false);
    if (e.is_discarded() || e.value("event", "") != "model_status") continue;
    out.emplace_back(e["model"], e["data"]["status"]);
  }
  return out;
}

/// True when `model`'s events include `want` in this order (others may come between).
bool saw_in_order(const std::string& body, const std::string& model, const std::vector<std::string>& want) {
  size_t next = 0;
  for (const auto& [m, status] : status_events(body))
    if (m == model && next < want.size() && status == want[next]) ++next;
  return next == want.size();
}

class RouterApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sb_ = new Sandbox();
    two_models(*sb_);
    serve_ = new ServeProcess(*sb_);
    ASSERT_TRUE(serve_->ready()) << serve_->output();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(serve_->terminate(), 0) << serve_->output();
    delete serve_;
    delete sb_;
  }
  void TearDown() override {
    // Each test starts with nothing loaded.
    sb_->run({"unload", "--all"});
    eventually([] { return model_entry(*serve_, "tiny")["status"]["value"] == "unloaded"; }, 10s);
  }
  static Sandbox* sb_;
  static ServeProcess* serve_;
};
Sandbox* RouterApi::sb_ = nullptr;
ServeProcess* RouterApi::serve_ = nullptr;

}  // namespace

TEST_F(RouterApi, ModelsListsEveryConfiguredModelUnloaded) {
  const auto r = http_request(serve_->port(), "GET", "/models");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.headers.at("content-type"), "application/json; charset=utf-8");
  const json j = r.json();
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 2U) << j.dump();
  for (const auto& m : j["data"]) {
    EXPECT_EQ(m["object"], "model");
    EXPECT_EQ(m["status"]["value"], "unloaded") << m.dump();
    EXPECT_EQ(m["status"]["args"], json::array());
    EXPECT_FALSE(m["status"].contains("failed"));
    EXPECT_TRUE(m["created"].is_number());
  }
  const json tiny = model_entry(*serve_, "tiny");
  EXPECT_EQ(tiny["path"], sb_->model("tiny"));
  EXPECT_EQ(tiny["aliases"], json::array({"small"}));
}

TEST_F(RouterApi, LoadByAliasWaitsForTheLoadAndShowsItsArgs) {
  const auto r = post(*serve_, "/models/load", model_body("small"));
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  EXPECT_EQ(r.json(), json({{"success", true}}));
  // Answered once loaded: the instance runs and is recorded as serve's.
  EXPECT_TRUE(live(*sb_, "tiny"));
  const json tiny = model_entry(*serve_, "tiny");
  EXPECT_EQ(tiny["status"]["value"], "loaded") << tiny.dump();
  const auto& args = tiny["status"]["args"];
  ASSERT_TRUE(args.is_array());
  EXPECT_NE(std::find(args.begin(), args.end(), json("--port")), args.end()) << args.dump();
  EXPECT_NE(std::find(args.begin(), args.end(), json(sb_->model("tiny"))), args.end()) << args.dump();
  EXPECT_EQ(model_entry(*serve_, "other")["status"]["value"], "unloaded");
  // The CLI sees the same instance.
  const auto st = sb_->run({"status", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_EQ(st.json()["instances"][0]["model"], "tiny");

  const auto again = post(*serve_, "/models/load", model_body("tiny"));
  EXPECT_EQ(again.status, 400) << again.body;
  EXPECT_EQ(again.json()["error"]["message"], "model is already loaded");
}

TEST_F(RouterApi, UnloadStopsTheInstanceAndSaysWhenNothingIsLoaded) {
  ASSERT_EQ(post(*serve_, "/models/load", model_body("tiny")).status, 200);
  const auto r = post(*serve_, "/models/unload", model_body("tiny"));
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  EXPECT_EQ(r.json(), json({{"success", true}}));
  EXPECT_FALSE(live(*sb_, "tiny"));  // answered once stopped
  EXPECT_EQ(model_entry(*serve_, "tiny")["status"]["value"], "unloaded");

  const auto again = post(*serve_, "/models/unload", model_body("tiny"));
  EXPECT_EQ(again.status, 400) << again.body;
  EXPECT_EQ(again.json()["error"]["message"], "model is not loaded");
}

TEST_F(RouterApi, AModelLoadedByTheCliIsUnloadedByTheApi) {
  const auto cli = sb_->run({"load", "other", "--gpu", "0"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  ASSERT_TRUE(eventually([] { return model_entry(*serve_, "other")["status"]["value"] == "loaded"; }, 10s));
  const auto r = post(*serve_, "/models/unload", model_body("other"));
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  EXPECT_FALSE(live(*sb_, "other"));
}

TEST_F(RouterApi, AStatusStreamWhoseClientLeavesEndsAtOnceNotAtTheNextHeartbeat) {
  const std::string done = R"(llamactl_requests_total{route="/models/sse",status="200"})";
  const double before = std::max(0.0, metric(*serve_, done));
  HttpStream sse(serve_->port(), "GET", "/models/sse", "");
  ASSERT_TRUE(sse.read_until("\"model\":\"tiny\"", 10s)) << sse.raw();
  sse.close();
  // The stream's heartbeat is 15 s; the watch on the socket ends it within a moment.
  EXPECT_TRUE(eventually([&] { return metric(*serve_, done) == before + 1; }, 3s))
      << http_request(serve_->port(), "GET", "/metrics").body;
}

TEST_F(RouterApi, BadRequestsGetLlamaServerShapedErrors) {
  const auto unknown = post(*serve_, "/models/load", model_body("nope"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.json()["error"]["type"], "not_found_error");
  EXPECT_EQ(unknown.json()["error"]["message"], "model 'nope' is not found");
  EXPECT_EQ(post(*serve_, "/models/unload", model_body("nope")).status, 404);

  const auto missing = post(*serve_, "/models/load", "{}");
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(missing.json()["error"]["message"], "model name is missing from the request");
  EXPECT_EQ(post(*serve_, "/models/unload", "[1]").status, 400);
  EXPECT_EQ(post(*serve_, "/models/load", "not json").status, 400);

  // Hostile nesting is refused before anything is parsed into a tree.
  const std::string deep = "{\"model\":\"tiny\",\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  const auto d = post(*serve_, "/models/load", deep);
  EXPECT_EQ(d.status, 400);
  EXPECT_NE(d.json()["error"]["message"].get<std::string>().find("nested deeper"), std::string::npos);
  EXPECT_FALSE(live(*sb_, "tiny"));

  const auto get_load = http_request(serve_->port(), "GET", "/models/load");
  EXPECT_EQ(get_load.status, 405);
}

TEST_F(RouterApi, APageOnAnotherSiteCanNeitherLoadNorWatch) {
  // A form post or a no-preflight fetch from a web page: refused before the handler runs.
  const auto r =
      post(*serve_, "/models/load", model_body("tiny"), {"Content-Type: text/plain", "Origin: http://evil.example"});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_FALSE(live(*sb_, "tiny"));
  EXPECT_EQ(http_request(serve_->port(), "GET", "/models/sse", "", {"Origin: http://evil.example"}).status, 403);
  // DNS rebinding: a page whose name now points at this machine.
  const std::string rebound =
      raw_exchange(serve_->port(), "GET /models HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(rebound.rfind("HTTP/1.1 403", 0), 0U) << rebound;
  // A local page (an allowed origin) may, and gets CORS fields.
  const auto ok = http_request(serve_->port(), "GET", "/models", "", {"Origin: http://localhost:3000"});
  EXPECT_EQ(ok.status, 200);
  ASSERT_TRUE(ok.headers.count("access-control-allow-origin"));
  EXPECT_EQ(ok.headers.at("access-control-allow-origin"), "http://localhost:3000");
}

TEST_F(RouterApi, TheStreamSeesApiLoadsCliUnloadsAndApiUnloads) {
  HttpStream sse(serve_->port(), "GET", "/models/sse", "");
  // Where things stand first: every configured model.
  ASSERT_TRUE(sse.read_until("\"model\":\"other\"", 10s)) << sse.raw();
  EXPECT_NE(sse.raw().find("Content-Type: text/event-stream"), std::string::npos) << sse.raw();
  EXPECT_NE(sse.raw().find("Cache-Control: no-cache"), std::string::npos) << sse.raw();
  EXPECT_TRUE(saw_in_order(sse.body(), "tiny", {"unloaded"}));

  ASSERT_EQ(post(*serve_, "/models/load", model_body("tiny")).status, 200);
  ASSERT_TRUE(sse.read_until("\"status\":\"loaded\"", 10s)) << sse.body();
  EXPECT_TRUE(saw_in_order(sse.body(), "tiny", {"unloaded", "loading", "loaded"})) << sse.body();

  // An unload by the CLI, outside serve: seen at serve's next sync.
  const auto cli = sb_->run({"unload", "tiny"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  ASSERT_TRUE(eventually(
      [&] {
        sse.read_until("(nothing: read what came)", 200ms);
        return saw_in_order(sse.body(), "tiny", {"loading", "loaded", "unloaded"});
      },
      15s))
      << sse.body();

  // A load by the CLI, and an unload by the API.
  ASSERT_EQ(sb_->run({"load", "tiny", "--gpu", "0"}).exit_code, 0);
  ASSERT_EQ(post(*serve_, "/models/unload", model_body("tiny")).status, 200);
  ASSERT_TRUE(eventually(
      [&] {
        sse.read_until("(nothing: read what came)", 200ms);
        return saw_in_order(sse.body(), "tiny", {"loading", "loaded", "unloaded", "loaded", "unloading", "unloaded"});
      },
      15s))
      << sse.body();
  // The other model only had its place in the first snapshot.
  int others = 0;
  for (const auto& [model, status] : status_events(sse.body())) others += model == "other" ? 1 : 0;
  EXPECT_EQ(others, 1) << sse.body();
}

TEST_F(RouterApi, ADeathIsUnloadedAndFailed) {
  ASSERT_EQ(post(*serve_, "/models/load", model_body("tiny")).status, 200);
  const auto st = sb_->state_file();
  int64_t pid = 0;
  for (const auto& i : st["instances"])
    if (i["model"] == "tiny" && i["state"] != "dead") pid = i["pid"];
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGKILL), 0);
  json tiny;
  ASSERT_TRUE(eventually(
      [&] {
        tiny = model_entry(*serve_, "tiny");
        return tiny["status"].value("failed", false);
      },
      15s))
      << tiny.dump();
  EXPECT_EQ(tiny["status"]["value"], "unloaded");
  EXPECT_EQ(tiny["status"]["args"], json::array());
}

TEST_F(RouterApi, TheStreamEndsWhenServeStops) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  HttpStream sse(s.port(), "GET", "/models/sse", "");
  ASSERT_TRUE(sse.read_until("\"model\":\"other\"", 10s)) << sse.raw();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(s.terminate(), 0) << s.output();
  // Closed by serve, with its last chunk, not cut at the end of the grace.
  EXPECT_TRUE(sse.read_to_end(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(sse.raw().find("0\r\n\r\n"), std::string::npos);
  EXPECT_EQ(s.output().find("still open: cut"), std::string::npos) << s.output();
}

TEST(RouterApiRefusal, AFailedLoadAnswersWithTheRefusalAndIsFailed) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {}, {"FAKE_FAIL=refuse"});
  ASSERT_TRUE(s.ready()) << s.output();
  const auto r = http_request(s.port(), "POST", "/models/load", model_body("tiny"), {}, 60s);
  EXPECT_GE(r.status, 500) << r.body;
  EXPECT_EQ(r.json()["error"]["message"].get<std::string>().find("tiny") != std::string::npos, true) << r.body;
  const json tiny = model_entry(s, "tiny");
  EXPECT_EQ(tiny["status"]["value"], "unloaded");
  EXPECT_EQ(tiny["status"]["failed"], true) << tiny.dump();
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(RouterApiAuth, TheRouterApiNeedsTheKey) {
  Sandbox sb;
  two_models(sb);
  ServeProcess s(sb, {"--api-key", "sekrit"});
  ASSERT_TRUE(s.ready()) << s.output();
  EXPECT_EQ(http_request(s.port(), "GET", "/models").status, 401);
  EXPECT_EQ(http_request(s.port(), "GET", "/models/sse").status, 401);
  EXPECT_EQ(http_request(s.port(), "POST", "/models/load", model_body("tiny")).status, 401);
  EXPECT_FALSE(live(sb, "tiny"));
  EXPECT_EQ(http_request(s.port(), "GET", "/models", "", {"Authorization: Bearer sekrit"}).status, 200);
  EXPECT_EQ(s.terminate(), 0) << s.output();
}
