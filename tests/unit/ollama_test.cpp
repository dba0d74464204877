// Ollama <-> llama-server translation, by table: requests in, OpenAI bodies
// out; llama-server SSE in, NDJSON out. Shapes from
// shared/reference/ollama-api.md (sections 2-7 and 9).

#include "serve/ollama.h"

#include <gtest/gtest.h>

#include <cmath>

namespace llamactl::serve::ollama {
namespace {

json j(const char* text) {
  return json::parse(text);
}

std::vector<json> lines(const std::string& ndjson) {
  std::vector<json> out;
  size_t start = 0;
  while (start < ndjson.size()) {
    const size_t nl = ndjson.find('\n', start);
    EXPECT_NE(nl, std::string::npos) << "every NDJSON line ends with a newline";
    if (nl == std::string::npos) break;
    const std::string line = ndjson.substr(start, nl - start);
    EXPECT_FALSE(line.empty()) << "no blank lines (ollama-python json.loads every line)";
    out.push_back(json::parse(line));
    start = nl + 1;
  }
  return out;
}

// --- keep_alive ------------------------------------------------------------

TEST(OllamaKeepAlive, AllOfOllamasForms) {
  struct Case {
    const char* json_text;
    std::optional<int64_t> ms;
    bool error;
  };
  const Case cases[] = {
      {"null", std::nullopt, false},
      {"42", 42000, false},
      {"42.5", 42500, false},
      {"0", 0, false},
      {"-1", -1, false},            // forever
      {"-3.14", -1, false},         // any negative number: forever
      {"\"42m\"", 2520000, false},  // Go duration strings
      {"\"1h30m\"", 5400000, false},
      {"\"300ms\"", 300, false},
      {"\"0s\"", 0, false},
      {"\"0\"", 0, false},              // Go accepts a bare "0"
      {"\"-1m\"", -1, false},           // negative duration string: forever
      {"\"5m0s\"", 300000, false},      // what the Go client marshals
      {"\"300\"", std::nullopt, true},  // bare number string: 400, as Ollama
      {"\"-1\"", std::nullopt, true},
      {"\"1d\"", std::nullopt, true},  // no days in Go
      {"true", std::nullopt, true},
      {"{}", std::nullopt, true},
  };
  for (const auto& c : cases) {
    const json v = j(c.json_text);
    const auto k = parse_keep_alive(&v);
    EXPECT_EQ(k.error.has_value(), c.error) << c.json_text;
    EXPECT_EQ(k.ms, c.ms) << c.json_text;
    if (k.error) {
      EXPECT_EQ(k.error->status, 400);
    }
  }
  EXPECT_FALSE(parse_keep_alive(nullptr).ms);
}

TEST(OllamaKeepAlive, GoErrorMessages) {
  std::string err;
  EXPECT_FALSE(parse_go_duration_ms("300", &err));
  EXPECT_EQ(err, "time: missing unit in duration \"300\"");
  EXPECT_FALSE(parse_go_duration_ms("1d", &err));
  EXPECT_EQ(err, "time: unknown unit \"d\" in duration \"1d\"");
  EXPECT_FALSE(parse_go_duration_ms("abc", &err));
  EXPECT_EQ(err, "time: invalid duration \"abc\"");
  EXPECT_EQ(parse_go_duration_ms("1.5h", nullptr), 5400000);
  EXPECT_EQ(parse_go_duration_ms("2h45m30.5s", nullptr), (2 * 3600 + 45 * 60) * 1000 + 30500);
  EXPECT_EQ(parse_go_duration_ms("1500us", nullptr), 1);
}

// --- requests --------------------------------------------------------------

TEST(OllamaRequest, ChatDefaultsToStreamingAndAsksForUsage) {
  Request r;
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"Tiny","messages":[{"role":"User","content":"hi"}]})"), r));
  EXPECT_EQ(r.model, "Tiny");
  EXPECT_TRUE(r.stream);
  EXPECT_FALSE(r.load_only);
  EXPECT_EQ(r.upstream_path, "/v1/chat/completions");
  const json& up = r.upstream_body;
  EXPECT_EQ(up["messages"], j(R"([{"role":"user","content":"hi"}])")) << "roles are lower-cased";
  EXPECT_EQ(up["stream"], true) << "always streamed upstream; stream:false is collected by serve";
  EXPECT_EQ(up["stream_options"]["include_usage"], true) << "the usage chunk carries the timings";
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t","stream":false,"messages":[]})"), r));
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.load_only);
  EXPECT_FALSE(r.unload);
}

TEST(OllamaRequest, EachOptionMapsToLlamaServersField) {
  Request r;
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"options":{
      "temperature":0.2,"top_k":7,"top_p":0.5,"min_p":0.05,"typical_p":0.9,"num_predict":12,"stop":["a","b"],
      "seed":42,"repeat_penalty":1.1,"repeat_last_n":33,"presence_penalty":0.3,"frequency_penalty":0.4,
      "num_keep":5,"num_ctx":8192,"mirostat":1,"tfs_z":1.0,"num_gpu":99,"use_mmap":true,"numa":null}})"),
                         r));
  const json& up = r.upstream_body;
  EXPECT_DOUBLE_EQ(up["temperature"].get<double>(), 0.2);
  EXPECT_EQ(up["top_k"], 7);
  EXPECT_DOUBLE_EQ(up["top_p"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(up["min_p"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(up["typical_p"].get<double>(), 0.9);
  EXPECT_EQ(up["n_predict"], 12);
  EXPECT_EQ(up["stop"], j(R"(["a","b"])"));
  EXPECT_EQ(up["seed"], 42);
  EXPECT_DOUBLE_EQ(up["repeat_penalty"].get<double>(), 1.1);
  EXPECT_EQ(up["repeat_last_n"], 33);
  EXPECT_DOUBLE_EQ(up["presence_penalty"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(up["frequency_penalty"].get<double>(), 0.4);
  EXPECT_EQ(up["n_keep"], 5);
  EXPECT_FALSE(up.contains("num_ctx")) << "num_ctx is a load-time option, handled by serve";
  EXPECT_EQ(r.num_ctx, 8192);
  std::vector<std::string> ignored = r.ignored;
  std::sort(ignored.begin(), ignored.end());
  EXPECT_EQ(ignored, (std::vector<std::string>{"mirostat", "num_gpu", "tfs_z", "use_mmap"}))
      << "unknown and load-time keys are ignored, not errors (clients send mirostat, tfs_z)";
}

TEST(OllamaRequest, OptionTypesAreChecked) {
  Request r;
  auto f = translate(Kind::chat, j(R"({"model":"t","messages":[],"options":{"top_k":"many"}})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 400);
  EXPECT_EQ(f->message, "option \"top_k\" must be of type integer");
  f = translate(Kind::chat, j(R"({"model":"t","messages":[],"options":{"temperature":"hot"}})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message, "option \"temperature\" must be of type float");
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t","messages":[],"options":{"top_k":7.9,"stop":"x"}})"), r));
  EXPECT_EQ(r.upstream_body["top_k"], 7) << "Go truncates a float given for an integer option";
  EXPECT_EQ(r.upstream_body["stop"], j(R"(["x"])")) << "a single stop string is taken as a list";
}

TEST(OllamaRequest, FormatJsonAndSchema) {
  Request r;
  ASSERT_FALSE(
      translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"format":"json"})"), r));
  // JSON mode is a schema: llama-server builds no grammar for a bare json_object.
  EXPECT_EQ(r.upstream_body["response_format"],
            j(R"({"type":"json_schema","json_schema":{"name":"schema","schema":{"type":"object"}}})"));
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"x","format":"json"})"), r));
  EXPECT_EQ(r.upstream_path, "/v1/chat/completions");
  EXPECT_EQ(r.upstream_body["response_format"],
            j(R"({"type":"json_schema","json_schema":{"name":"schema","schema":{"type":"object"}}})"))
      << "non-raw generate is a chat upstream and is held to the same schema";
  ASSERT_FALSE(translate(Kind::chat,
                         j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"format":{"type":"object",
                           "properties":{"age":{"type":"integer"}}}})"),
                         r));
  EXPECT_EQ(r.upstream_body["response_format"],
            j(R"({"type":"json_schema","json_schema":{"name":"schema","schema":{"type":"object",
              "properties":{"age":{"type":"integer"}}}}})"));
  // Raw generate goes to /v1/completions, which takes json_schema.
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"x","raw":true,"format":"json"})"), r));
  EXPECT_EQ(r.upstream_body["json_schema"], j(R"({"type":"object"})"));
  const auto f = translate(Kind::chat, j(R"({"model":"t","messages":[],"format":"yaml"})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message, "invalid format: \"yaml\"; expected \"json\" or a valid JSON Schema object");
}

TEST(OllamaRequest, ThinkBecomesChatTemplateKwargs) {
  Request r;
  ASSERT_FALSE(
      translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"think":false})"), r));
  EXPECT_EQ(r.upstream_body["chat_template_kwargs"], j(R"({"enable_thinking":false})"));
  EXPECT_FALSE(r.wants_thinking);
  ASSERT_FALSE(
      translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"think":"high"})"), r));
  EXPECT_EQ(r.upstream_body["chat_template_kwargs"], j(R"({"enable_thinking":true,"reasoning_effort":"high"})"));
  EXPECT_TRUE(r.wants_thinking);
  const auto f = translate(Kind::chat, j(R"({"model":"t","messages":[],"think":"lots"})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 400);
  EXPECT_NE(f->message.find("invalid think value: \"lots\""), std::string::npos);
}

TEST(OllamaRequest, ImagesBecomeDataUriParts) {
  Request r;
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"what is this?",
                           "images":["iVBORw0KGgoAAAANSUhEUg==","/9j/4AAQSkZJRg=="]}]})"),
                         r));
  EXPECT_EQ(r.upstream_body["messages"][0]["content"], j(R"([{"type":"text","text":"what is this?"},
                  {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}},
                  {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}])"));
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"see","images":["R0lGODlhAQABAAAAACw="]})"), r));
  EXPECT_EQ(r.upstream_body["messages"][0]["content"][1]["image_url"]["url"],
            "data:image/gif;base64,R0lGODlhAQABAAAAACw=");
  const auto f = translate(
      Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x","images":["not base64!"]}]})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 400);
}

TEST(OllamaRequest, ToolsAndToolCallsRoundTrip) {
  Request r;
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t",
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
      "messages":[{"role":"user","content":"weather?"},
                  {"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},
                  {"role":"tool","content":"sunny","tool_name":"get_weather","tool_call_id":"call_1"}]})"),
                         r));
  const json& up = r.upstream_body;
  EXPECT_EQ(up["tools"][0]["function"]["name"], "get_weather");
  const json& call = up["messages"][1]["tool_calls"][0];
  EXPECT_EQ(call["id"], "call_1");
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["arguments"], R"({"city":"Tokyo"})") << "llama-server takes the arguments as JSON text";
  EXPECT_TRUE(up["messages"][1]["content"].is_null());
  EXPECT_EQ(up["messages"][2]["name"], "get_weather") << "tool_name becomes name";
  EXPECT_EQ(up["messages"][2]["tool_call_id"], "call_1");
}

TEST(OllamaRequest, GenerateRoutes) {
  Request r;
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"Why?","system":"Be brief."})"), r));
  EXPECT_EQ(r.upstream_path, "/v1/chat/completions") << "the GGUF's chat template stands in for Ollama's";
  EXPECT_EQ(r.upstream_body["messages"],
            j(R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Why?"}])"));
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"[INST] x","raw":true})"), r));
  EXPECT_EQ(r.upstream_path, "/v1/completions") << "raw: no template at all";
  EXPECT_EQ(r.upstream_body["prompt"], "[INST] x");
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"def f(","suffix":"    return x"})"), r));
  EXPECT_EQ(r.upstream_path, "/infill");
  EXPECT_EQ(r.upstream_body["input_prefix"], "def f(");
  EXPECT_EQ(r.upstream_body["input_suffix"], "    return x");
  EXPECT_FALSE(r.upstream_body.contains("stream_options")) << "/infill is llama-server's native route";
  auto f = translate(Kind::generate, j(R"({"model":"t","prompt":"x","raw":true,"system":"s"})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message, "raw mode does not support template, system, or context");
  f = translate(Kind::generate, j(R"({"prompt":"x"})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 404) << "Ollama answers generate without a model with 404";
  EXPECT_EQ(f->message, "model '' not found");
  f = translate(Kind::chat, j(R"({"messages":[]})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 400);
  EXPECT_EQ(f->message, "model is required");
}

TEST(OllamaRequest, EmptyPromptLoadsAndKeepAliveZeroUnloads) {
  Request r;
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t"})"), r));
  EXPECT_TRUE(r.load_only);
  EXPECT_FALSE(r.unload);
  ASSERT_FALSE(translate(Kind::generate, j(R"({"model":"t","prompt":"","keep_alive":"0s"})"), r));
  EXPECT_TRUE(r.unload);
  ASSERT_FALSE(translate(Kind::chat, j(R"({"model":"t","keep_alive":0})"), r));
  EXPECT_TRUE(r.unload);
  ASSERT_FALSE(
      translate(Kind::chat, j(R"({"model":"t","messages":[{"role":"user","content":"x"}],"keep_alive":0})"), r));
  EXPECT_FALSE(r.load_only) << "keep_alive 0 with a prompt runs it, then unloads when idle";
  EXPECT_EQ(r.keep_alive_ms, 0);
  const auto f = translate(Kind::chat, j(R"({"model":"t","keep_alive":"300"})"), r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message, "time: missing unit in duration \"300\"");
}

TEST(OllamaRequest, ContextIsWantedForTemplatedGenerateOnly) {
  // Ollama's GenerateHandler tokenizes prompt + reply unless the request is raw.
  struct Case {
    Kind kind;
    const char* body;
    bool wanted;
  };
  for (const auto& c : std::vector<Case>{
           {Kind::generate, R"({"model":"t","prompt":"x"})", true},
           {Kind::generate, R"({"model":"t","prompt":"x","suffix":"y"})", true},
           {Kind::generate, R"({"model":"t","prompt":"x","raw":null})", true},
           {Kind::generate, R"({"model":"t","prompt":"x","raw":true})", false},
           {Kind::generate, R"({"model":"t","prompt":"x","suffix":"y","raw":true})", false},
           {Kind::generate, R"({"model":"t"})", false},  // a load: no reply to tokenize
           {Kind::chat, R"({"model":"t","messages":[{"role":"user","content":"x"}]})", false},
       }) {
    Request r;
    ASSERT_FALSE(translate(c.kind, j(c.body), r)) << c.body;
    EXPECT_EQ(r.wants_context, c.wanted) << c.body;
  }
}

TEST(OllamaRequest, NameIsAnAliasOfModel) {
  EXPECT_EQ(requested_model(j(R"({"name":"tiny"})")), "tiny");
  EXPECT_EQ(requested_model(j(R"({"model":"a","name":"b"})")), "a");
  EXPECT_EQ(requested_model(j(R"({"model":7})")), "");
}

// --- responses -------------------------------------------------------------

constexpr int64_t kWall = 1'700'000'000'123'456'000;  // 2023-11-14T22:13:20.123456Z

std::string sse(const std::vector<std::string>& events) {
  std::string out;
  for (const auto& e : events) out += "data: " + e + "\n\n";
  return out;
}

// The events the fake llama-server (and the real one) sends for three tokens.
const std::vector<std::string> kChatStream = {
    R"({"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"})",
    R"({"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hello"}}],"object":"chat.completion.chunk"})",
    R"({"choices":[{"finish_reason":null,"index":0,"delta":{"content":" from"}}],"object":"chat.completion.chunk"})",
    R"({"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"})",
    R"({"choices":[],"usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11},"timings":{"cache_n":3,"prompt_n":6,"prompt_ms":1.5,"predicted_n":2,"predicted_ms":10.25}})",
    "[DONE]"};

TEST(OllamaTranslator, ChatStreamBecomesNdjsonWithNanosecondStats) {
  Translator t(Kind::chat, Upstream::chat, "tiny", true, {1000, 2'000'000});
  const std::string body = sse(kChatStream);
  std::string out;
  // Bytes arrive in arbitrary pieces: an event may be split anywhere.
  for (size_t i = 0; i < body.size(); i += 7) out += t.feed(std::string_view(body).substr(i, 7), kWall);
  out += t.finish(kWall, 1000 + 50'000'000);
  const auto v = lines(out);
  ASSERT_EQ(v.size(), 3u) << out;
  EXPECT_EQ(v[0], j(R"({"model":"tiny","created_at":"2023-11-14T22:13:20.123456Z",
                       "message":{"role":"assistant","content":"Hello"},"done":false})"));
  EXPECT_EQ(v[1]["message"]["content"], " from");
  const json& last = v[2];
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["done_reason"], "stop");
  EXPECT_EQ(last["message"], j(R"({"role":"assistant","content":""})"));
  EXPECT_EQ(last["total_duration"], 50'000'000);
  EXPECT_EQ(last["load_duration"], 2'000'000);
  EXPECT_EQ(last["prompt_eval_count"], 9) << "cache_n + prompt_n, as Ollama counts";
  EXPECT_EQ(last["prompt_eval_duration"], 1'500'000) << "ms -> ns";
  EXPECT_EQ(last["eval_count"], 2);
  EXPECT_EQ(last["eval_duration"], 10'250'000);
  EXPECT_EQ(t.error_status(), 0);
  // Ollama's field order (its Go struct): model, created_at, message, done_reason, done, metrics.
  EXPECT_NE(
      out.find(
          R"({"model":"tiny","created_at":"2023-11-14T22:13:20.123456Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":50000000,"load_duration":2000000,"prompt_eval_count":9,)"),
      std::string::npos);
}

// Found by fuzz_translate: an event that is not JSON and not UTF-8 went into
// the error message as it came, and dump() threw (type_error 316) instead of
// answering. The message is valid UTF-8 now (U+FFFD for the bad bytes).
TEST(OllamaTranslator, AnEventThatIsNeitherJsonNorUtf8EndsInAValidErrorLine) {
  for (const bool stream : {true, false}) {
    Translator t(Kind::chat, Upstream::chat, "tiny", stream, {0, 0});
    (void)t.feed("data: {\"error\":{\"message\":\"\xff\xfe cut\xe6\x97\n\n", 1);
    std::string last;
    ASSERT_NO_THROW(last = t.finish(2, 3));
    const auto j = nlohmann::json::parse(last, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << last;
    EXPECT_NE(j["error"].get<std::string>().find("not JSON"), std::string::npos) << last;
    EXPECT_NE(j["error"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos) << last;  // U+FFFD
    EXPECT_EQ(t.error_status(), 500);
  }
}

TEST(OllamaTranslator, StreamFalseCollectsOneObject) {
  Translator t(Kind::generate, Upstream::chat, "tiny", false, {0, 0});
  EXPECT_EQ(t.feed(sse(kChatStream), kWall), "") << "nothing is written before the end";
  const json o = json::parse(t.finish(kWall, 7));
  EXPECT_EQ(o["response"], "Hello from");
  EXPECT_EQ(o["done"], true);
  EXPECT_EQ(o["done_reason"], "stop");
  EXPECT_EQ(o["eval_count"], 2);
  EXPECT_FALSE(o.contains("load_duration")) << "zero metrics are omitted, as Ollama's omitempty";
}

TEST(OllamaTranslator, LengthAndThinking) {
  Translator t(Kind::chat, Upstream::chat, "q", true, {0, 0});
  std::string out = t.feed(sse({R"({"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]})",
                                R"({"choices":[{"index":0,"delta":{"content":"ok"}}]})",
                                R"({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})", "[DONE]"}),
                           kWall);
  out += t.finish(kWall, 1);
  const auto v = lines(out);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0]["message"], j(R"({"role":"assistant","content":"","thinking":"hmm"})"));
  EXPECT_EQ(v[2]["done_reason"], "length");
}

TEST(OllamaTranslator, StreamedToolCallsAreAccumulatedAndParsed) {
  Translator t(Kind::chat, Upstream::chat, "t", true, {0, 0});
  std::string out = t.feed(
      sse({R"({"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]})",
           R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"abc123","type":"function","function":{"name":"get_weather","arguments":""}}]}}]})",
           R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]})",
           R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]})",
           R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})", "[DONE]"}),
      kWall);
  out += t.finish(kWall, 1);
  const auto v = lines(out);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0]["done"], false);
  EXPECT_EQ(v[0]["message"]["tool_calls"],
            j(R"([{"id":"abc123","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}])"))
      << "arguments are a JSON object on /api/chat";
  EXPECT_EQ(v[1]["done"], true);
  EXPECT_EQ(v[1]["done_reason"], "stop");

  Translator n(Kind::chat, Upstream::chat, "t", false, {0, 0});
  (void)n.feed(
      sse({R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}}]})",
           R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})"}),
      kWall);
  const json o = json::parse(n.finish(kWall, 1));
  const std::string id = o["message"]["tool_calls"][0]["id"];
  EXPECT_EQ(id.rfind("call_", 0), 0u) << "a made-up id as Ollama makes them: " << id;
  EXPECT_EQ(id.size(), 13u);
}

TEST(OllamaTranslator, ErrorsEndTheStreamWithAnErrorLine) {
  Translator cut(Kind::chat, Upstream::chat, "t", true, {0, 0});
  std::string out = cut.feed(sse({kChatStream[0], kChatStream[1]}), kWall);
  out += cut.finish(kWall, 1, "connection reset");
  auto v = lines(out);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[1], j(R"({"error":"connection reset"})"));

  Translator silent(Kind::chat, Upstream::chat, "t", true, {0, 0});
  out = silent.feed(sse({kChatStream[1]}), kWall);
  out += silent.finish(kWall, 1);
  v = lines(out);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_TRUE(v[1].contains("error")) << "a stream without a finish never ends with done:true";

  Translator ev(Kind::generate, Upstream::chat, "t", false, {0, 0});
  (void)ev.feed("error: {\"code\":500,\"message\":\"out of memory\",\"type\":\"server_error\"}\n\n", kWall);
  EXPECT_EQ(json::parse(ev.finish(kWall, 1)), j(R"({"error":"out of memory"})"));
  EXPECT_EQ(ev.error_status(), 500);
}

TEST(OllamaTranslator, CompletionAndInfillStreams) {
  Translator c(Kind::generate, Upstream::completion, "t", true, {0, 0});
  std::string out = c.feed(sse({R"({"choices":[{"text":"Hi","index":0,"finish_reason":null}]})",
                                R"({"choices":[{"text":"","index":0,"finish_reason":"stop"}]})",
                                R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1}})", "[DONE]"}),
                           kWall);
  out += c.finish(kWall, 1);
  auto v = lines(out);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0]["response"], "Hi");
  EXPECT_EQ(v[1]["prompt_eval_count"], 4) << "usage stands in when there are no timings";

  Translator i(Kind::generate, Upstream::infill, "t", true, {0, 0});
  out = i.feed(
      sse({R"({"content":"x = 1","stop":false})",
           R"({"content":"","stop":true,"stop_type":"limit","tokens_evaluated":5,"tokens_predicted":3,"timings":{"prompt_n":5,"prompt_ms":2,"predicted_n":3,"predicted_ms":3}})"}),
      kWall);
  out += i.finish(kWall, 1);
  v = lines(out);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0]["response"], "x = 1");
  EXPECT_EQ(v[1]["done_reason"], "length") << "stop_type limit is Ollama's length";
  EXPECT_EQ(v[1]["eval_duration"], 3'000'000);
}

TEST(OllamaTranslator, ContextGoesOnTheFinalObjectAfterDoneReason) {
  // stream:false: context after done_reason and before the metrics, as Go's
  // GenerateResponse fields are ordered.
  Translator t(Kind::generate, Upstream::chat, "tiny", false, {0, 0});
  t.feed(sse(kChatStream), kWall);
  EXPECT_EQ(t.reply_text(), "Hello from");
  EXPECT_TRUE(t.succeeded());
  t.set_context({5, 6, 7});
  const std::string text = t.finish(kWall, 7);
  EXPECT_NE(text.find(R"("done":true,"done_reason":"stop","context":[5,6,7],"total_duration")"), std::string::npos)
      << text;

  // Streaming: only the last line has it; the text is still kept for it.
  Translator s(Kind::generate, Upstream::chat, "tiny", true, {0, 0});
  std::string out = s.feed(sse(kChatStream), kWall);
  EXPECT_EQ(s.reply_text(), "Hello from");
  s.set_context({1});
  out += s.finish(kWall, 7);
  auto v = lines(out);
  ASSERT_EQ(v.size(), 3u) << out;
  EXPECT_FALSE(v[0].contains("context"));
  EXPECT_EQ(v.back()["context"], j("[1]"));

  // Never set (raw, or llama-server could not tokenize): left out.
  Translator n(Kind::generate, Upstream::chat, "tiny", false, {0, 0});
  n.feed(sse(kChatStream), kWall);
  EXPECT_FALSE(json::parse(n.finish(kWall, 7)).contains("context"));

  // /infill names its rendered prompt in the last event.
  Translator i(Kind::generate, Upstream::infill, "t", false, {0, 0});
  i.feed(sse({R"({"content":"x","stop":false})",
              R"({"content":"","stop":true,"prompt":"<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>","timings":{}})"}),
         kWall);
  EXPECT_EQ(i.prompt_text(), "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>");
  EXPECT_EQ(i.reply_text(), "x");
}

TEST(OllamaTranslator, ContextRepliesOfLlamaServer) {
  EXPECT_EQ(applied_prompt(R"({"prompt":"<|im_start|>user\nhi"})"), "<|im_start|>user\nhi");
  EXPECT_EQ(applied_prompt(R"({"error":{"message":"x"}})"), std::nullopt);
  EXPECT_EQ(applied_prompt("not json"), std::nullopt);
  EXPECT_EQ(token_ids(R"({"tokens":[1,22,333]})"), (std::vector<int64_t>{1, 22, 333}));
  EXPECT_EQ(token_ids(R"({"tokens":[]})"), std::vector<int64_t>{});
  EXPECT_EQ(token_ids(R"({"tokens":[{"id":1,"piece":"a"}]})"), std::nullopt) << "pieces were not asked for";
  EXPECT_EQ(token_ids(R"({"tokens":"x"})"), std::nullopt);
  EXPECT_EQ(json::parse(tokenize_body("a\"b")), j(R"({"content":"a\"b"})"));
}

TEST(OllamaTranslator, CreatedAtIsRfc3339LikeGo) {
  EXPECT_EQ(created_at(kWall), "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(created_at(1'700'000'000'000'000'000), "2023-11-14T22:13:20Z");
  EXPECT_EQ(rfc3339_ms(1'700'000'000'500), "2023-11-14T22:13:20.5Z");
}

// --- embeddings ------------------------------------------------------------

TEST(OllamaEmbed, InputFormsAndLoadOnly) {
  EmbedRequest e;
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","input":"hello"})"), false, e));
  EXPECT_EQ(e.upstream_body, j(R"({"input":["hello"],"encoding_format":"float"})"));
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","input":["a","b"],"dimensions":2})"), false, e));
  EXPECT_EQ(e.input.size(), 2u);
  EXPECT_EQ(e.dimensions, 2);
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","input":[]})"), false, e));
  EXPECT_TRUE(e.load_only);
  auto f = translate_embed(j(R"({"model":"m","input":[1,2]})"), false, e);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->message, "invalid input type");
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","prompt":"hi"})"), true, e));
  EXPECT_EQ(e.upstream_body["embd_normalize"], -1) << "the legacy route returns raw vectors";
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","prompt":""})"), true, e));
  EXPECT_TRUE(e.load_only);
}

TEST(OllamaEmbed, RepliesAreNormalisedAndTruncated) {
  EmbedRequest e;
  ASSERT_FALSE(translate_embed(j(R"({"model":"M","input":["a","b"],"dimensions":2})"), false, e));
  ojson out;
  ASSERT_FALSE(embed_reply(e, j(R"({"data":[{"index":1,"embedding":[0,3,4]},{"index":0,"embedding":[3,4,12]}],
                                 "usage":{"prompt_tokens":6}})"),
                           900, 100, out));
  EXPECT_EQ(out["model"], "M");
  const auto& v0 = out["embeddings"][0];
  EXPECT_NEAR(v0[0].get<double>(), 0.6, 1e-12) << "[3,4] re-normalised after truncation";
  EXPECT_NEAR(v0[1].get<double>(), 0.8, 1e-12);
  EXPECT_NEAR(out["embeddings"][1][1].get<double>(), 1.0, 1e-12) << "ordered by index";
  EXPECT_EQ(out["prompt_eval_count"], 6);
  EXPECT_EQ(out["total_duration"], 900);
  EXPECT_EQ(out["load_duration"], 100);
  const auto f = embed_reply(e, j(R"({"data":[{"embedding":[1]}]})"), 1, 1, out);
  ASSERT_TRUE(f) << "one vector for two inputs";

  ASSERT_FALSE(translate_embed(j(R"({"model":"M","prompt":"a"})"), true, e));
  ASSERT_FALSE(embed_reply(e, j(R"({"data":[{"index":0,"embedding":[3,4]}]})"), 1, 1, out));
  EXPECT_EQ(out, ojson::parse(R"({"embedding":[3.0,4.0]})"));
}

TEST(OllamaEmbed, OpenAiDimensionsCutAndNormaliseAgain) {
  std::optional<int64_t> d;
  EXPECT_FALSE(openai_dimensions(j(R"({"input":"x"})"), d));
  EXPECT_EQ(d, std::nullopt);
  EXPECT_FALSE(openai_dimensions(j(R"({"dimensions":0})"), d));
  EXPECT_EQ(d, std::nullopt) << "0 is Ollama's unset";
  EXPECT_FALSE(openai_dimensions(j(R"({"dimensions":2,"encoding_format":"float"})"), d));
  EXPECT_EQ(d, 2);
  for (const char* bad : {R"({"dimensions":-1})", R"({"dimensions":"2"})", R"({"dimensions":1.5})"})
    EXPECT_TRUE(openai_dimensions(j(bad), d)) << bad;

  // The reply keeps llama-server's fields and their order; only the vectors change.
  std::string out;
  ASSERT_FALSE(cut_openai_embeddings(
      R"({"model":"m","object":"list","usage":{"prompt_tokens":2},"data":[{"index":0,"embedding":[3,4,12],"object":"embedding"}]})",
      2, out));
  const ojson o = ojson::parse(out);
  EXPECT_EQ(o.begin().key(), "model");
  EXPECT_EQ(o["usage"]["prompt_tokens"], 2);
  const auto& v = o["data"][0]["embedding"];
  ASSERT_EQ(v.size(), 2u);
  EXPECT_NEAR(v[0].get<double>(), 0.6, 1e-12);
  EXPECT_NEAR(v[1].get<double>(), 0.8, 1e-12);
  EXPECT_EQ(o["data"][0]["object"], "embedding");
  // More dimensions than the vector has: the vector whole, normalised.
  ASSERT_FALSE(cut_openai_embeddings(R"({"data":[{"embedding":[0,2]}]})", 8, out));
  EXPECT_EQ(ojson::parse(out)["data"][0]["embedding"], ojson::parse("[0.0,1.0]"));
  // base64 (float32 little-endian): [3, 4, 12] -> [0.6, 0.8], encoded again.
  // 3.0f = 00 00 40 40, 4.0f = 00 00 80 40, 12.0f = 00 00 40 41.
  ASSERT_FALSE(cut_openai_embeddings(R"({"data":[{"embedding":"AABAQAAAgEAAAEBB"}]})", 2, out));
  // 0.6f = 9a 99 19 3f, 0.8f = cd cc 4c 3f.
  EXPECT_EQ(ojson::parse(out)["data"][0]["embedding"], "mpkZP83MTD8=");
  EXPECT_TRUE(cut_openai_embeddings(R"({"data":[{"embedding":"AAB"}]})", 2, out)) << "not whole floats";
  EXPECT_TRUE(cut_openai_embeddings("[]", 2, out));

  std::vector<double> zero = {0, 0, 0};
  truncate_normalise(zero, 2);
  EXPECT_EQ(zero, (std::vector<double>{0, 0})) << "a zero vector stays zero";
}

TEST(OllamaEmbed, TruncateAndTheLimitOfAnOverflow) {
  EmbedRequest e;
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","input":"x"})"), false, e));
  EXPECT_TRUE(e.truncate) << "Ollama's default";
  ASSERT_FALSE(translate_embed(j(R"({"model":"m","input":"x","truncate":false})"), false, e));
  EXPECT_FALSE(e.truncate);
  EXPECT_TRUE(translate_embed(j(R"({"model":"m","input":"x","truncate":"no"})"), false, e));

  // llama-server's two refusals of a long embedding input (server-context.cpp).
  const std::string batch =
      R"({"error":{"code":500,"message":"input is too large to process. increase the physical batch size","type":"server_error"}})";
  const std::string ctx =
      R"({"error":{"code":400,"message":"input is larger than the max context size. skipping","type":"exceed_context_size_error","n_prompt_tokens":900,"n_ctx":800}})";
  EXPECT_EQ(embed_overflow_limit(500, batch, 4096, 512), 510) << "the physical batch, less BOS and EOS";
  EXPECT_EQ(embed_overflow_limit(400, ctx, 4096, 4096), 798) << "the error's n_ctx beats ours";
  EXPECT_EQ(embed_overflow_limit(400, ctx, 4096, 0), 798);
  EXPECT_EQ(embed_overflow_limit(500, batch, 0, 0), 0) << "nothing says: cannot cut";
  EXPECT_EQ(embed_overflow_limit(500, batch, 1024, 0), 1022);
  // Other errors are not overflows.
  EXPECT_FALSE(
      embed_overflow_limit(500, R"({"error":{"code":500,"message":"boom","type":"server_error"}})", 4096, 512));
  EXPECT_FALSE(
      embed_overflow_limit(400, R"({"error":{"code":400,"message":"bad","type":"invalid_request_error"}})", 4096, 512));
  EXPECT_FALSE(embed_overflow_limit(400, "not json", 4096, 512));

  set_embed_inputs(e, {"a", "b"});
  EXPECT_EQ(e.upstream_body["input"], j(R"(["a","b"])"));
}

TEST(OllamaErrors, UpstreamMessages) {
  EXPECT_EQ(
      upstream_error_message(
          R"({"error":{"code":501,"message":"This server does not support embeddings.","type":"not_supported_error"}})"),
      "This server does not support embeddings.");
  EXPECT_EQ(upstream_error_message("  plain text  "), "plain text");
  const ojson l = load_reply(Kind::chat, "tiny", "unload", kWall);
  EXPECT_EQ(
      l.dump(),
      R"({"model":"tiny","created_at":"2023-11-14T22:13:20.123456Z","message":{"role":"assistant","content":""},"done_reason":"unload","done":true})");
}

}  // namespace
}  // namespace llamactl::serve::ollama
