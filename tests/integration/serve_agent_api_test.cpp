// serve's agent routes end to end (OpenAI Responses, Anthropic Messages, the
// token counts, rerank, GET /v1/models/{id}): the real binary, the mock
// nvidia-smi and the fake llama-server, whose replies are shaped as
// shared/reference/llama-server-agent-api-transcripts.txt. serve relays these
// as they come; what is tested here is that they arrive whole, SSE event by
// event, with errors in each API's own shape. One serve for the whole file
// (the suite's fixture) keeps the time down; each test uses its own model
// where load state matters.

#include <gtest/gtest.h>

#include <memory>
#include <sstream>

#include "integration/harness.h"
#include "integration/serve_harness.h"
#include "unit/gguf_writer.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

class AgentApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sb_ = std::make_unique<Sandbox>();
    // A reranker's GGUF: <arch>.pooling_type 4 (LLAMA_POOLING_TYPE_RANK).
    GgufSpec reranker;
    reranker.extra = {kv_u32("llama.pooling_type", 4)};
    write_gguf(sb_->path("jina.gguf"), reranker);
    sb_->write_config("[models.tiny]\npath = \"" + sb_->model("tiny") + "\"\naliases = [\"small\", \"org/tiny\"]\n" +
                      "[models.lazy]\npath = \"" + sb_->model("lazy") + "\"\n" + "[models.cut]\npath = \"" +
                      sb_->model("cut") + "\"\n" + "[models.ranker]\npath = \"" + sb_->model("ranker") +
                      "\"\nreranking = true\n" + "[models.jina]\npath = \"" + sb_->path("jina.gguf") + "\"\n" +
                      "[models.chat2]\npath = \"" + sb_->model("chat2") + "\"\n");
    serve_ = std::make_unique<ServeProcess>(*sb_);
    ASSERT_TRUE(serve_->ready()) << serve_->output();
  }
  static void TearDownTestSuite() {
    if (serve_) serve_->terminate();
    serve_.reset();
    sb_.reset();  // stops every llama-server the state knows, by pid
  }

  static HttpReply post(const std::string& path, const json& body) {
    return http_request(serve_->port(), "POST", path, body.dump(), {"Content-Type: application/json"});
  }
  static json live_instance(const std::string& model) {
    const auto st = sb_->state_file();
    if (st.contains("instances"))
      for (const auto& i : st["instances"])
        if (i["model"] == model && i["state"] != "dead") return i;
    return json();
  }

  static std::unique_ptr<Sandbox> sb_;
  static std::unique_ptr<ServeProcess> serve_;
};

std::unique_ptr<Sandbox> AgentApi::sb_;
std::unique_ptr<ServeProcess> AgentApi::serve_;

json messages_body(const std::string& model, bool stream, int max_tokens = 3) {
  return json{{"model", model},
              {"max_tokens", max_tokens},
              {"stream", stream},
              {"messages", json::array({json{{"role", "user"}, {"content", "hi"}}})}};
}

json responses_body(const std::string& model, bool stream) {
  return json{{"model", model}, {"input", "hi"}, {"stream", stream}};
}

// Each SSE event's name and data, in order.
std::vector<std::pair<std::string, json>> sse(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  std::istringstream in(body);
  std::string line, name;
  while (std::getline(in, line)) {
    if (line.rfind("event: ", 0) == 0) name = line.substr(7);
    if (line.rfind("data: ", 0) == 0) out.emplace_back(name, json::parse(line.substr(6), nullptr, false));
  }
  return out;
}

std::vector<std::string> names(const std::vector<std::pair<std::string, json>>& events) {
  std::vector<std::string> out;
  for (const auto& [n, d] : events) out.push_back(n);
  return out;
}

}  // namespace

TEST_F(AgentApi, MessagesNonStreaming) {
  auto r = post("/v1/messages", messages_body("tiny", false));
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.headers["content-type"], "application/json; charset=utf-8");
  const json j = r.json();
  EXPECT_EQ(j["type"], "message");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["content"], json::parse(R"([{"type":"text","text":"Hello from fake"}])"));
  EXPECT_EQ(j["stop_reason"], "max_tokens");
  EXPECT_EQ(j["usage"]["output_tokens"], 3);
}

TEST_F(AgentApi, MessagesStreamIsRelayedEventByEvent) {
  HttpStream stream(serve_->port(), "POST", "/v1/messages", messages_body("tiny", true, 100).dump(),
                    {"Content-Type: application/json"});
  // The first delta arrives while the fake still has ~0.5 s of tokens to go.
  ASSERT_TRUE(stream.read_until("content_block_delta")) << stream.raw();
  EXPECT_EQ(stream.body().find("message_stop"), std::string::npos) << "the stream was collected, not relayed";
  ASSERT_TRUE(stream.read_to_end());
  EXPECT_NE(stream.raw().find("text/event-stream"), std::string::npos) << stream.raw();
  const auto ev = sse(stream.body());
  ASSERT_GE(ev.size(), 5u) << stream.body();
  EXPECT_EQ(ev.front().first, "message_start");
  EXPECT_EQ(ev[1].first, "content_block_start");
  EXPECT_EQ(ev.back().first, "message_stop");
  EXPECT_EQ(ev.back().second, json::parse(R"({"type":"message_stop"})"));
  EXPECT_EQ(ev[ev.size() - 2].first, "message_delta");
  EXPECT_EQ(ev[ev.size() - 2].second["usage"]["output_tokens"], 100);
  EXPECT_EQ(ev.size(), 2u + 100u + 3u);
}

TEST_F(AgentApi, ResponsesNonStreaming) {
  for (const char* path : {"/v1/responses", "/responses"}) {
    auto r = post(path, responses_body("small", false));
    ASSERT_EQ(r.status, 200) << path << r.body << r.error;
    const json j = r.json();
    EXPECT_EQ(j["object"], "response");
    EXPECT_EQ(j["status"], "completed");
    EXPECT_EQ(j["id"].get<std::string>().rfind("resp_", 0), 0u);
    EXPECT_EQ(j["output"][0]["content"][0]["text"], "Hello from fake");
    EXPECT_EQ(j["usage"]["output_tokens"], 3);
  }
}

TEST_F(AgentApi, ResponsesStreamEndsWithCompleted) {
  HttpStream stream(serve_->port(), "POST", "/v1/responses", responses_body("tiny", true).dump(),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_to_end()) << stream.raw();
  const auto ev = sse(stream.body());
  EXPECT_EQ(names(ev), (std::vector<std::string>{
                           "response.created", "response.in_progress", "response.output_item.added",
                           "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                           "response.output_text.delta", "response.output_text.done", "response.content_part.done",
                           "response.output_item.done", "response.completed"}))
      << stream.body();
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().second["response"]["status"], "completed");
  EXPECT_EQ(ev.back().second["timings"]["predicted_n"], 3);
  EXPECT_EQ(stream.body().find("[DONE]"), std::string::npos);
}

TEST_F(AgentApi, FirstMessagesRequestLoadsTheModel) {
  EXPECT_TRUE(live_instance("lazy").is_null()) << "nothing loads before a request";
  auto r = post("/v1/messages", messages_body("lazy", false));
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  EXPECT_EQ(r.json()["content"][0]["text"], "Hello from fake");
  const json inst = live_instance("lazy");
  ASSERT_FALSE(inst.is_null()) << sb_->state_file().dump();
}

TEST_F(AgentApi, TokenCountRoutes) {
  const json chat = {{"model", "tiny"}, {"messages", json::array({json{{"role", "user"}, {"content", "hello"}}})}};
  auto count = post("/v1/messages/count_tokens", chat);
  ASSERT_EQ(count.status, 200) << count.body;
  const json n = count.json()["input_tokens"];
  ASSERT_TRUE(n.is_number_integer()) << count.body;
  EXPECT_GT(n.get<int>(), 0);
  auto chat_count = post("/v1/chat/completions/input_tokens", chat);
  ASSERT_EQ(chat_count.status, 200) << chat_count.body;
  EXPECT_EQ(chat_count.json()["input_tokens"], n);
  auto resp_count = post("/v1/responses/input_tokens", json{{"model", "tiny"}, {"input", "hello"}});
  ASSERT_EQ(resp_count.status, 200) << resp_count.body;
  EXPECT_EQ(resp_count.json(), json({{"input_tokens", n}, {"object", "response.input_tokens"}}));
}

TEST_F(AgentApi, UnknownModelIsAnErrorInEachApisShape) {
  auto anthropic = post("/v1/messages", messages_body("nope", false));
  EXPECT_EQ(anthropic.status, 404);
  const json a = anthropic.json();
  EXPECT_EQ(a["type"], "error") << anthropic.body;
  EXPECT_EQ(a["error"]["type"], "not_found_error");
  EXPECT_NE(a["error"]["message"].get<std::string>().find("nope"), std::string::npos);

  auto count = post("/v1/messages/count_tokens", messages_body("nope", false));
  EXPECT_EQ(count.status, 404);
  EXPECT_EQ(count.json()["type"], "error") << count.body;

  auto openai = post("/v1/responses", responses_body("nope", false));
  EXPECT_EQ(openai.status, 404);
  const json o = openai.json();
  EXPECT_FALSE(o.contains("type")) << openai.body;
  EXPECT_EQ(o["error"]["type"], "not_found_error");
  EXPECT_EQ(o["error"]["code"], 404);
  EXPECT_NE(o["error"]["message"].get<std::string>().find("nope"), std::string::npos);
}

TEST_F(AgentApi, RetrieveModelById) {
  for (const char* id : {"tiny", "small", "lazy", "org%2Ftiny"}) {
    auto r = http_request(serve_->port(), "GET", std::string("/v1/models/") + id);
    ASSERT_EQ(r.status, 200) << id << r.body;
    EXPECT_EQ(r.json()["object"], "model");
  }
  EXPECT_EQ(http_request(serve_->port(), "GET", "/v1/models/org%2Ftiny").json()["id"], "org/tiny");
  EXPECT_EQ(http_request(serve_->port(), "GET", "/v1/models/small").json()["id"], "small");

  auto missing = http_request(serve_->port(), "GET", "/v1/models/nope%20x");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json()["error"]["type"], "not_found_error") << missing.body;
  EXPECT_NE(missing.json()["error"]["message"].get<std::string>().find("nope x"), std::string::npos);
}

TEST_F(AgentApi, ClientLeavingMidMessagesStreamCancelsUpstream) {
  {
    HttpStream stream(serve_->port(), "POST", "/v1/messages", messages_body("cut", true, 2000).dump(),
                      {"Content-Type: application/json"});
    ASSERT_TRUE(stream.read_until("\"text\":\"Hello\"")) << stream.raw() << serve_->output();
  }  // hang up
  const std::string log = live_instance("cut")["log"];
  EXPECT_TRUE(
      eventually([&] { return read_text(log).find("client disconnected, cancelled") != std::string::npos; }, 5s))
      << read_text(log);
  // serve goes on: the same model answers the next request.
  EXPECT_EQ(post("/v1/messages", messages_body("cut", false)).status, 200);
}

TEST_F(AgentApi, RerankOnARerankingModel) {
  const json body = {{"model", "ranker"}, {"query", "red apple"}, {"documents", {"a blue car", "a red apple"}}};
  for (const char* path : {"/v1/rerank", "/v1/reranking", "/rerank", "/reranking"}) {
    auto r = post(path, body);
    ASSERT_EQ(r.status, 200) << path << r.body << serve_->output();
    const json j = r.json();
    EXPECT_EQ(j["object"], "list");
    ASSERT_EQ(j["results"].size(), 2u) << r.body;
    EXPECT_EQ(j["results"][0]["index"], 1) << "the better match first";
  }
  const std::string argv = live_instance("ranker")["argv"].dump();
  EXPECT_NE(argv.find("--reranking"), std::string::npos) << "`reranking = true`: " << argv;
  EXPECT_EQ(post("/v1/messages", messages_body("ranker", false)).status, 200) << "it still chats";
}

TEST_F(AgentApi, ARerankerGgufStartsWithRerankingUnasked) {
  // Started by a chat request, which asks for nothing: the GGUF's pooling decides.
  ASSERT_EQ(post("/v1/messages", messages_body("jina", false)).status, 200) << serve_->output();
  const json inst = live_instance("jina");
  const std::string argv = inst["argv"].dump();
  EXPECT_NE(argv.find("--reranking"), std::string::npos) << argv;
  EXPECT_EQ(argv.find("--pooling"), std::string::npos) << argv;
  auto r = post("/v1/rerank", json{{"model", "jina"}, {"query", "q"}, {"documents", {"a", "q"}}, {"top_n", 1}});
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  ASSERT_EQ(r.json()["results"].size(), 1u) << r.body;
  EXPECT_EQ(r.json()["results"][0]["index"], 1);
  EXPECT_EQ(live_instance("jina")["pid"], inst["pid"]) << "served as it runs, no restart";
}

TEST_F(AgentApi, RerankRestartsAModelRunningWithoutReranking) {
  ASSERT_EQ(post("/v1/messages", messages_body("chat2", false)).status, 200);
  const json before = live_instance("chat2");
  ASSERT_EQ(before["argv"].dump().find("--reranking"), std::string::npos) << before.dump();
  auto r = post("/rerank", json{{"model", "chat2"}, {"query", "q"}, {"documents", {"a", "q"}}});
  ASSERT_EQ(r.status, 200) << r.body << serve_->output();
  EXPECT_EQ(r.json()["results"].size(), 2u);
  const json after = live_instance("chat2");
  EXPECT_NE(after["pid"], before["pid"]) << "restarted";
  EXPECT_NE(after["argv"].dump().find("--reranking"), std::string::npos) << after.dump();
}

TEST_F(AgentApi, RerankOnABusyModelWithoutRerankingIsRefused) {
  HttpStream stream(serve_->port(), "POST", "/v1/messages", messages_body("lazy", true, 2000).dump(),
                    {"Content-Type: application/json"});
  ASSERT_TRUE(stream.read_until("\"text\":\"Hello\"")) << stream.raw() << serve_->output();
  // No restart under load: a 400 that says how to configure it.
  auto r = post("/v1/rerank", json{{"model", "lazy"}, {"query", "q"}, {"documents", {"a"}}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("reranking = true"), std::string::npos) << r.body;
  stream.close();
}

TEST_F(AgentApi, RepliesNameTheModelAsTheRequestDid) {
  // llama-server names its alias (the config name); serve echoes the
  // request's name, as Ollama's OpenAI routes do, streaming and not.
  const json chat = {{"model", "small:latest"}, {"messages", json::array({json{{"role", "user"}, {"content", "hi"}}})}};
  auto r = post("/v1/chat/completions", chat);
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.json()["model"], "small:latest");
  // Framed for the renamed body: its own length, or chunks when it had not all come yet.
  if (r.headers.count("content-length"))
    EXPECT_EQ(r.headers["content-length"], std::to_string(r.body.size()));
  else
    EXPECT_EQ(r.headers["transfer-encoding"], "chunked");

  json streamed = chat;
  streamed["stream"] = true;
  HttpStream s(serve_->port(), "POST", "/v1/chat/completions", streamed.dump(), {"Content-Type: application/json"});
  ASSERT_TRUE(s.read_to_end()) << s.raw();
  int chunks = 0;
  for (const auto& [name, data] : sse(s.body()))
    if (data.is_object() && data.contains("model")) {
      ++chunks;
      EXPECT_EQ(data["model"], "small:latest") << data.dump();
    }
  EXPECT_GT(chunks, 1) << s.body();

  auto m = post("/v1/messages", messages_body("org/tiny", false));
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(m.json()["model"], "org/tiny");
  HttpStream rs(serve_->port(), "POST", "/v1/responses", responses_body("small", true).dump(),
                {"Content-Type: application/json"});
  ASSERT_TRUE(rs.read_to_end()) << rs.raw();
  const auto ev = sse(rs.body());
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().second["response"]["model"], "small") << rs.body();
  // The config's own name passes through untouched.
  auto plain = post("/v1/messages", messages_body("tiny", false));
  EXPECT_EQ(plain.json()["model"], "tiny");
}
