// serve's Ollama API end to end: the real binary, the mock nvidia-smi and
// the fake llama-server. Shapes from shared/reference/ollama-api.md; what
// the official clients do with them is in tests/clients/ollama*.test.mjs.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "integration/harness.h"
#include "integration/serve_harness.h"
#include "unit/gguf_writer.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

void models(Sandbox& sb) {
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n[models.emb]\npath = \"" + sb.model("emb") +
                  "\"\n");
}

HttpReply post(const ServeProcess& s, const std::string& path, const json& body) {
  return http_request(s.port(), "POST", path, body.dump());  // no Content-Type: parsed as JSON anyway
}

std::vector<json> ndjson(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "no blank lines in NDJSON: " << body;
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

json live_instance(const Sandbox& sb, const std::string& model) {
  const auto st = sb.state_file();
  if (st.contains("instances"))
    for (const auto& i : st["instances"])
      if (i["model"] == model && i["state"] != "dead") return i;
  return json();
}

}  // namespace

TEST(ServeOllama, ChatStreamsNdjsonEndingWithStatsAndLoadTime) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb, {}, {"FAKE_LOAD_DELAY_MS=300"});
  ASSERT_TRUE(s.ready()) << s.output();
  const json body = {{"model", "Tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto r = post(s, "/api/chat", body);
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.headers["content-type"], "application/x-ndjson") << "stream defaults to true on /api/*";
  auto v = ndjson(r.body);
  ASSERT_EQ(v.size(), 4u) << r.body;
  std::string text;
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    EXPECT_EQ(v[i]["done"], false);
    EXPECT_EQ(v[i]["model"], "Tiny") << "the name is echoed as sent";
    text += v[i]["message"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, "Hello from fake");
  const json& last = v.back();
  EXPECT_EQ(last["done"], true);
  EXPECT_EQ(last["done_reason"], "stop");
  EXPECT_EQ(last["eval_count"], 3);
  EXPECT_GT(last["prompt_eval_count"].get<int>(), 0);
  EXPECT_GT(last["eval_duration"].get<int64_t>(), 0);
  // This request waited for the load (300 ms in the fake): load_duration says so.
  EXPECT_GT(last["load_duration"].get<int64_t>(), 250'000'000) << last.dump();
  EXPECT_GE(last["total_duration"].get<int64_t>(), last["load_duration"].get<int64_t>());
  // Warm: no load to wait for.
  r = post(s, "/api/chat", body);
  v = ndjson(r.body);
  ASSERT_FALSE(v.empty());
  EXPECT_LT(v.back().value("load_duration", int64_t{0}), 50'000'000) << v.back().dump();
  EXPECT_EQ(s.terminate(), 0) << s.output();
}

TEST(ServeOllama, GenerateStreamFalseIsOneObject) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = post(s, "/api/generate",
                {{"model", "tiny:latest"},
                 {"prompt", "Why?"},
                 {"stream", false},
                 {"options", {{"num_predict", 5}, {"mirostat", 1}}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.headers["content-type"], "application/json; charset=utf-8");
  const json o = r.json();
  EXPECT_EQ(o["response"], "Hello from fake token token");
  EXPECT_EQ(o["done"], true);
  EXPECT_EQ(o["done_reason"], "length") << "num_predict reached";
  EXPECT_EQ(o["eval_count"], 5);
  // context: llama-server's /tokenize of the prompt as its template rendered
  // it (/apply-template: the fake's ChatML) and the reply, 4 bytes a token in
  // the fake.
  const std::string text = "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\nHello from fake token token";
  ASSERT_TRUE(o.contains("context") && o["context"].is_array()) << o.dump();
  EXPECT_EQ(o["context"].size(), (text.size() + 3) / 4) << o.dump();
  for (const auto& id : o["context"]) EXPECT_TRUE(id.is_number_integer());
  // Streaming: the same ids on the last line only (the fake's vocabulary is stable).
  r = post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "Why?"}, {"options", {{"num_predict", 5}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto v = ndjson(r.body);
  ASSERT_GE(v.size(), 2u);
  EXPECT_FALSE(v.front().contains("context"));
  EXPECT_EQ(v.back()["context"], o["context"]) << r.body;
  // Raw prompts have none, as in Ollama.
  r = post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "Why?"}, {"raw", true}, {"stream", false}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json().contains("context")) << r.body;
}

TEST(ServeOllama, FormatJsonHoldsTheReplyToJson) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  // The fake, as llama-server, answers JSON only when given a non-empty
  // schema: a bare json_object would come back as prose (LangChain's JSON mode).
  auto r = post(s, "/api/chat",
                {{"model", "tiny"},
                 {"stream", false},
                 {"format", "json"},
                 {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(json::parse(r.json()["message"]["content"].get<std::string>()), json({{"fake", true}})) << r.body;
  r = post(s, "/api/generate", {{"model", "tiny"}, {"stream", false}, {"format", "json"}, {"prompt", "hi"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.json()["response"].get<std::string>()), json({{"fake", true}})) << r.body;
}

TEST(ServeOllama, EmptyRequestLoadsAndKeepAliveZeroUnloads) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = post(s, "/api/generate", {{"model", "tiny"}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.json()["done_reason"], "load");
  EXPECT_EQ(r.json()["response"], "");
  ASSERT_FALSE(live_instance(sb, "tiny").is_null()) << "loaded by the empty request";
  auto ps = http_request(s.port(), "GET", "/api/ps").json();
  ASSERT_EQ(ps["models"].size(), 1u) << ps.dump();
  EXPECT_EQ(ps["models"][0]["name"], "tiny:latest");
  r = post(s, "/api/chat", {{"model", "tiny"}, {"keep_alive", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["done_reason"], "unload");
  EXPECT_EQ(r.json()["message"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(eventually([&] { return live_instance(sb, "tiny").is_null(); }, 3s)) << s.output();
  EXPECT_TRUE(
      eventually([&] { return http_request(s.port(), "GET", "/api/ps").json()["models"] == json::array(); }, 3s));
  // Unloading what is not loaded is a no-op that still answers 200.
  r = post(s, "/api/generate", {{"model", "tiny"}, {"keep_alive", "0s"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["done_reason"], "unload");
}

TEST(ServeOllama, RequestKeepAliveSticksAndReachesTheStateFile) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"keep_alive", "10m"}}).status, 200);
  EXPECT_EQ(live_instance(sb, "tiny")["keep_alive_ms"], 600000);
  // A request without keep_alive leaves it alone; a number is seconds.
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}}).status, 200);
  EXPECT_EQ(live_instance(sb, "tiny")["keep_alive_ms"], 600000);
  ASSERT_EQ(post(s, "/api/embed", {{"model", "emb"}, {"input", "x"}, {"keep_alive", -1}}).status, 200);
  EXPECT_EQ(live_instance(sb, "emb")["keep_alive_ms"], -1) << "negative: forever";
  auto ps = http_request(s.port(), "GET", "/api/ps").json();
  ASSERT_EQ(ps["models"].size(), 2u);
  EXPECT_EQ(ps["models"][0]["name"], "emb:latest") << "furthest expiry first: " << ps.dump();
  EXPECT_EQ(ps["models"][0]["expires_at"].get<std::string>().substr(0, 2), "23") << "forever is ~292 years ahead";
  // keep_alive 0 with a prompt: answered, then unloaded once idle.
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"keep_alive", 0}}).status, 200);
  EXPECT_TRUE(eventually([&] { return live_instance(sb, "tiny").is_null(); }, 3s)) << s.output();
  // A bare numeric string is a 400, as in Ollama.
  auto r = post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"keep_alive", "300"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "time: missing unit in duration \"300\"");
}

TEST(ServeOllama, PsReportsGpuMemoryOfTheProcess) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb, {}, {"FAKE_SERVER_MEM_MIB=1234"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}}).status, 200);
  // The GPU monitor reads the mock nvidia-smi about once a second.
  json m;
  EXPECT_TRUE(eventually(
      [&] {
        const auto ps = http_request(s.port(), "GET", "/api/ps").json();
        if (ps["models"].size() != 1) return false;
        m = ps["models"][0];
        return m["size_vram"] == 1234LL * 1024 * 1024;
      },
      5s))
      << m.dump();
  EXPECT_EQ(m["size"], m["size_vram"]) << "all of it on the GPU";
  EXPECT_EQ(m["context_length"], 4096);
  EXPECT_GE(m["digest"].get<std::string>().size(), 12u);
}

TEST(ServeOllama, TagsAndShowDescribeTheGguf) {
  Sandbox sb;
  // tiny and emb, and 12 more of different context lengths and sizes: serve
  // reads their cards in the background from its start, and the first
  // /api/tags, asked at once, must list every one as its own file says.
  std::string config =
      "[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n[models.emb]\npath = \"" + sb.model("emb") + "\"\n";
  constexpr int kMore = 12;
  for (int i = 0; i < kMore; ++i) {
    GgufSpec spec;
    spec.context_length = 1024 * (i + 1);
    spec.data_bytes = static_cast<size_t>(i) * 4096;
    write_gguf(sb.path(fmt::format("more{}.gguf", i)), spec);
    config += fmt::format("[models.more{}]\npath = \"{}\"\n", i, sb.path(fmt::format("more{}.gguf", i)));
  }
  sb.write_config(config);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto tags = http_request(s.port(), "GET", "/api/tags").json();
  ASSERT_EQ(tags["models"].size(), 2u + kMore) << tags.dump();
  for (const auto& m : tags["models"]) {
    EXPECT_EQ(m["name"], m["model"]);
    EXPECT_NE(m["name"].get<std::string>().find(":latest"), std::string::npos);
    EXPECT_GE(m["digest"].get<std::string>().size(), 12u) << "`ollama list` slices digest[:12]";
    EXPECT_EQ(m["details"]["format"], "gguf");
    EXPECT_EQ(m["details"]["family"], "llama");
    EXPECT_GT(m["size"].get<int64_t>(), 0);
  }
  for (int i = 0; i < kMore; ++i) {
    const std::string name = fmt::format("more{}:latest", i);
    const auto it =
        std::find_if(tags["models"].begin(), tags["models"].end(), [&](const json& m) { return m["name"] == name; });
    ASSERT_NE(it, tags["models"].end()) << name << " in " << tags.dump();
    EXPECT_EQ((*it)["details"]["context_length"], 1024 * (i + 1)) << name;
    EXPECT_EQ((*it)["size"], std::filesystem::file_size(sb.path(fmt::format("more{}.gguf", i)))) << name;
  }
  EXPECT_EQ(http_request(s.port(), "GET", "/api/tags").json(), tags) << "the same once every card is read";
  auto r = post(s, "/api/show", {{"name", "TINY"}});  // Continue sends name; case-insensitive
  ASSERT_EQ(r.status, 200) << r.body;
  const json show = r.json();
  EXPECT_EQ(show["model_info"]["general.architecture"], "llama");
  EXPECT_TRUE(show["model_info"].contains("llama.context_length"));
  EXPECT_NE(std::find(show["capabilities"].begin(), show["capabilities"].end(), "completion"),
            show["capabilities"].end());
  EXPECT_FALSE(show.contains("template"))
      << "the test GGUF has no chat template; empty fields are left out (omitempty)";
  EXPECT_NE(show["parameters"].get<std::string>().find("num_ctx"), std::string::npos);
  // As Ollama: show's model_info drops general.name (and the template, which
  // has its own field); tags' details add the GGUF's context length.
  EXPECT_FALSE(show["model_info"].contains("general.name")) << r.body;
  EXPECT_FALSE(show["details"].contains("context_length")) << "show's details have none in Ollama";
  for (const auto& m : tags["models"]) {
    if (m["name"] == "tiny:latest") {
      EXPECT_EQ(m["details"]["context_length"], show["model_info"]["llama.context_length"]);
    }
  }
}

TEST(ServeOllama, OpenAiModelsAreCreatedWhenTheirFileWas) {
  Sandbox sb;
  models(sb);
  // An hour old: `created` is the file's mtime (as Ollama's), not the time of asking.
  const auto an_hour_ago = std::filesystem::file_time_type::clock::now() - std::chrono::hours(1);
  std::filesystem::last_write_time(sb.model("tiny"), an_hour_ago);
  const int64_t expected = std::time(nullptr) - 3600;
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  const json list = http_request(s.port(), "GET", "/v1/models").json();
  bool seen = false;
  for (const auto& m : list["data"])
    if (m["id"] == "tiny") {
      seen = true;
      EXPECT_NEAR(m["created"].get<int64_t>(), expected, 5) << list.dump();
    }
  EXPECT_TRUE(seen) << list.dump();
  const json one = http_request(s.port(), "GET", "/v1/models/tiny").json();
  EXPECT_NEAR(one["created"].get<int64_t>(), expected, 5) << one.dump();
}

TEST(ServeOllama, ConfiguredEmbeddingsShowInCapabilities) {
  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\nembeddings = true\n");
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  // A chat GGUF started with --embeddings: embedding first, as Ollama lists a
  // model's config capabilities, and completion, since it still chats.
  const json expected = {"embedding", "completion"};
  auto tags = http_request(s.port(), "GET", "/api/tags").json();
  ASSERT_EQ(tags["models"].size(), 1u) << tags.dump();
  EXPECT_EQ(tags["models"][0]["capabilities"], expected) << tags.dump();
  auto r = post(s, "/api/show", {{"model", "tiny"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["capabilities"], expected) << r.body;
}

TEST(ServeOllama, EmbedStartsWithEmbeddingsAndNormalises) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = post(s, "/api/embed", {{"model", "emb"}, {"input", {"one", "two"}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  const json o = r.json();
  ASSERT_EQ(o["embeddings"].size(), 2u);
  double norm = 0;
  for (const auto& x : o["embeddings"][0]) norm += x.get<double>() * x.get<double>();
  EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-6);
  EXPECT_GT(o["prompt_eval_count"].get<int>(), 0);
  const auto argv = live_instance(sb, "emb")["argv"].dump();
  EXPECT_NE(argv.find("--embeddings"), std::string::npos) << argv;
  EXPECT_NE(argv.find("--pooling"), std::string::npos) << "the GGUF declares no pooling: " << argv;
  r = post(s, "/api/embeddings", {{"model", "emb"}, {"prompt", "one"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json()["embedding"].empty());
}

TEST(ServeOllama, OpenAiEmbeddingsHonourDimensions) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto full = post(s, "/v1/embeddings", {{"model", "emb"}, {"input", {"one", "two"}}});
  ASSERT_EQ(full.status, 200) << full.body << s.output();
  const json whole_list = full.json();
  ASSERT_EQ(whole_list["data"][0]["embedding"].size(), 128u) << "the fake's length, relayed as it came";
  // llama-server ignores dimensions: serve cuts each vector and normalises it again.
  auto cut = post(s, "/v1/embeddings", {{"model", "emb"}, {"input", {"one", "two"}}, {"dimensions", 16}});
  ASSERT_EQ(cut.status, 200) << cut.body;
  const json o = cut.json();
  EXPECT_EQ(o["object"], "list");
  EXPECT_EQ(o["usage"], whole_list["usage"]);
  ASSERT_EQ(o["data"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& v = o["data"][i]["embedding"];
    const json& whole = whole_list["data"][i]["embedding"];
    ASSERT_EQ(v.size(), 16u) << cut.body;
    double norm = 0, whole_norm = 0;
    for (size_t k = 0; k < 16; ++k) {
      norm += v[k].get<double>() * v[k].get<double>();
      whole_norm += whole[k].get<double>() * whole[k].get<double>();
    }
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-6);
    // The first 16 values of the whole vector, scaled back to length 1.
    for (size_t k = 0; k < 16; ++k)
      EXPECT_NEAR(v[k].get<double>(), whole[k].get<double>() / std::sqrt(whole_norm), 1e-5) << k;
  }
  auto bad = post(s, "/v1/embeddings", {{"model", "emb"}, {"input", "one"}, {"dimensions", -3}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(bad.json()["error"]["message"], "dimensions must be a positive integer") << bad.body;
}

TEST(ServeOllama, EmbedTruncatesAnInputTooLongForTheInstance) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  // 750 tokens for the fake (4 bytes a token): over llama-server's default physical batch of 512.
  std::string long_text;
  for (int i = 0; long_text.size() < 3000; ++i)
    long_text += fmt::format("w{} ", i);  // not "w" + ...: GCC 12 -Wrestrict
  long_text.resize(3000);

  auto r = post(s, "/api/embed", {{"model", "emb"}, {"input", {"short", long_text}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  const json cut = r.json();
  ASSERT_EQ(cut["embeddings"].size(), 2u);
  // Cut to 512 - 2 tokens (room for BOS and EOS): the first 2040 bytes, the same vector as sending those.
  r = post(s, "/api/embed", {{"model", "emb"}, {"input", long_text.substr(0, 2040)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["embeddings"][0], cut["embeddings"][1]);
  EXPECT_EQ(cut["prompt_eval_count"], 3 + 511) << "BOS + 2 pieces, BOS + 510 pieces";

  // truncate:false: Ollama's 400.
  r = post(s, "/api/embed", {{"model", "emb"}, {"input", long_text}, {"truncate", false}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "the input length exceeds the context length");
  EXPECT_EQ(post(s, "/api/embed", {{"model", "emb"}, {"input", "x"}, {"truncate", "no"}}).status, 400);
  // The legacy route never truncates: llama-server's own error.
  r = post(s, "/api/embeddings", {{"model", "emb"}, {"prompt", long_text}});
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("physical batch size"), std::string::npos) << r.body;
}

TEST(ServeOllama, EmbeddingModelGetsABatchAsLargeAsItsContext) {
  Sandbox sb;
  GgufSpec spec;
  spec.architecture = "bert";
  spec.context_length = 2048;
  spec.extra = {kv_u32("bert.pooling_type", 1)};
  write_gguf(sb.path("bge.gguf"), spec);
  sb.write_config("[models.bge]\npath = \"" + sb.path("bge.gguf") + "\"\ncontext = 1024\n");
  ServeProcess s(sb, {}, {"FAKE_MODEL_POOLING=mean"});
  ASSERT_TRUE(s.ready()) << s.output();
  const std::string text(3000, 'a');  // 750 tokens: more than 512, less than 1024
  auto r = post(s, "/api/embed", {{"model", "bge"}, {"input", text}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.json()["prompt_eval_count"], 751) << "not cut";
  const auto argv = live_instance(sb, "bge")["argv"].dump();
  EXPECT_NE(argv.find(R"("--ubatch-size","1024","--batch-size","1024")"), std::string::npos) << argv;
  EXPECT_EQ(argv.find("--pooling"), std::string::npos) << "the GGUF declares its pooling: " << argv;
  // Over the batch (= the context) now: llama-server's 500, cut to 1024 - 2 tokens.
  r = post(s, "/api/embed", {{"model", "bge"}, {"input", std::string(5000, 'b')}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["prompt_eval_count"], 1 + 1022);
}

TEST(ServeOllama, EmbedCutsToTheContextNamedByLlamaServersRefusal) {
  Sandbox sb;
  // A batch larger than the context: the input passes the batch check and is
  // refused by the context one (400 exceed_context_size_error with n_ctx).
  sb.write_config("[models.emb]\npath = \"" + sb.model("emb") +
                  "\"\ncontext = 512\nargs = [\"--ubatch-size=4096\", \"-b\", \"4096\"]\n");
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = post(s, "/api/embed", {{"model", "emb"}, {"input", std::string(3000, 'c')}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.json()["prompt_eval_count"], 1 + 510);
  r = post(s, "/api/embed", {{"model", "emb"}, {"input", std::string(3000, 'c')}, {"truncate", false}});
  EXPECT_EQ(r.status, 400);
}

TEST(ServeOllama, ChatInstanceRestartsForEmbeddingsOnlyWhenIdle) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb, {}, {"FAKE_TOKEN_DELAY_MS=20"});
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}}).status, 200);
  const int64_t chat_pid = live_instance(sb, "tiny")["pid"];
  EXPECT_EQ(live_instance(sb, "tiny")["argv"].dump().find("--embeddings"), std::string::npos);
  {
    // Busy (a 100-token stream, 2 s): a clear 400, not llama-server's 501, and no restart.
    HttpStream busy(s.port(), "POST", "/api/generate",
                    json{{"model", "tiny"}, {"prompt", "x"}, {"options", {{"num_predict", 100}}}}.dump());
    ASSERT_TRUE(busy.read_until("\"response\"")) << busy.raw();
    auto r = post(s, "/api/embed", {{"model", "tiny"}, {"input", "x"}});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("embeddings = true"), std::string::npos) << r.body;
    EXPECT_EQ(live_instance(sb, "tiny")["pid"], chat_pid);
    EXPECT_TRUE(busy.read_to_end());
    EXPECT_NE(busy.body().find("\"done\":true"), std::string::npos) << "the stream was not disturbed";
  }
  // Idle: restarted with embeddings, then answered.
  auto r = post(s, "/api/embed", {{"model", "tiny"}, {"input", "x"}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  EXPECT_EQ(r.json()["embeddings"].size(), 1u);
  const auto inst = live_instance(sb, "tiny");
  EXPECT_NE(inst["pid"], chat_pid);
  EXPECT_NE(inst["argv"].dump().find("--embeddings"), std::string::npos);
  // Chat still works on it.
  EXPECT_EQ(post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"stream", false}}).status, 200);
}

TEST(ServeOllama, LargerNumCtxReloadsWithItClampedToTraining) {
  Sandbox sb;
  // The test GGUF was trained for 2048 tokens; the config runs it at 1024.
  sb.write_config("context = 1024\n[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  ASSERT_EQ(post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"stream", false}}).status, 200);
  const int64_t pid = live_instance(sb, "tiny")["pid"];
  EXPECT_NE(live_instance(sb, "tiny")["argv"].dump().find("\"-c\",\"1024\""), std::string::npos);
  // Smaller than what runs: no reload.
  ASSERT_EQ(
      post(s, "/api/generate", {{"model", "tiny"}, {"prompt", "x"}, {"stream", false}, {"options", {{"num_ctx", 512}}}})
          .status,
      200);
  EXPECT_EQ(live_instance(sb, "tiny")["pid"], pid);
  auto r = post(s, "/api/generate",
                {{"model", "tiny"}, {"prompt", "x"}, {"stream", false}, {"options", {{"num_ctx", 100000}}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  const auto inst = live_instance(sb, "tiny");
  EXPECT_NE(inst["pid"], pid) << "reloaded";
  EXPECT_NE(inst["argv"].dump().find("\"-c\",\"2048\""), std::string::npos) << inst["argv"].dump();
}

TEST(ServeOllama, ErrorsAsOllamaGivesThem) {
  Sandbox sb;
  models(sb);
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  auto r = post(s, "/api/chat", {{"model", "nope"}, {"messages", json::array()}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["error"], "model 'nope' not found");
  r = http_request(s.port(), "POST", "/api/generate", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(r.json().contains("error"));
  r = post(s, "/api/chat", {{"messages", json::array()}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "model is required");
  for (const std::string route : {"/api/create", "/api/copy", "/api/push", "/api/blobs/sha256:00"}) {
    r = post(s, route, {{"model", "tiny"}});
    EXPECT_EQ(r.status, 501) << route << s.output();
    if (r.status != 501) continue;
    EXPECT_NE(r.json()["error"].get<std::string>().find("serves the models of its config"), std::string::npos);
  }
  r = http_request(s.port(), "DELETE", "/api/delete", R"({"name":"tiny"})");
  EXPECT_EQ(r.status, 501) << "a 2xx would make clients report a deletion that never happened";
  r = post(s, "/api/pull", {{"name", "tiny"}, {"stream", false}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["status"], "success");
  r = post(s, "/api/pull", {{"model", "nope"}});
  EXPECT_EQ(r.status, 404);
  r = http_request(s.port(), "GET", "/api/chat");
  EXPECT_EQ(r.status, 405);
  r = http_request(s.port(), "GET", "/api/version");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.json()["version"].is_string());
  EXPECT_EQ(r.json()["version"].get<std::string>().find_first_not_of("0123456789."), std::string::npos);
}

TEST(ServeOllama, ToolCallsThinkingAndInfillThroughServe) {
  Sandbox sb;
  models(sb);
  // The fake "thinks" three tokens first (FAKE_THINKING), calls a tool when the
  // last user message mentions one, and has FIM tokens for /infill (FAKE_FIM).
  ServeProcess s(sb, {}, {"FAKE_THINKING=1", "FAKE_FIM=1"});
  ASSERT_TRUE(s.ready()) << s.output();
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":
      {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])");
  // Streaming: the calls come in a done:false chunk, then done:true.
  auto r = post(s, "/api/chat",
                {{"model", "tiny"}, {"tools", tools}, {"messages", {{{"role", "user"}, {"content", "use the tool"}}}}});
  ASSERT_EQ(r.status, 200) << r.body << s.output();
  auto v = ndjson(r.body);
  ASSERT_GE(v.size(), 2u) << r.body;
  json call;
  std::string thinking;
  for (const auto& chunk : v) {
    if (chunk["message"].contains("tool_calls")) call = chunk["message"]["tool_calls"][0];
    thinking += chunk["message"].value("thinking", "");
  }
  ASSERT_FALSE(call.is_null()) << r.body;
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(call["function"]["arguments"], json({{"city", "Paris"}})) << "an object, not llama-server's string";
  EXPECT_FALSE(call["id"].get<std::string>().empty());
  EXPECT_EQ(thinking, "Let me think") << "reasoning_content becomes message.thinking";
  EXPECT_EQ(v.back()["done"], true);
  // stream:false: one object with the calls and the thinking.
  r = post(s, "/api/chat",
           {{"model", "tiny"},
            {"stream", false},
            {"tools", tools},
            {"messages", {{{"role", "user"}, {"content", "use the tool"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["message"]["tool_calls"][0]["function"]["arguments"], json({{"city", "Paris"}})) << r.body;
  EXPECT_EQ(r.json()["message"]["thinking"], "Let me think");
  // think:false turns the reasoning off upstream (chat_template_kwargs).
  r = post(
      s, "/api/chat",
      {{"model", "tiny"}, {"stream", false}, {"think", false}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json()["message"].contains("thinking")) << r.body;
  EXPECT_EQ(r.json()["message"]["content"], "Hello from fake");
  // A tool message and an assistant tool call go back upstream as llama-server takes them.
  r = post(s, "/api/chat",
           {{"model", "tiny"},
            {"stream", false},
            {"think", false},
            {"messages",
             {{{"role", "user"}, {"content", "weather?"}},
              {{"role", "assistant"},
               {"content", ""},
               {"tool_calls", {{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}}}},
              {{"role", "tool"}, {"content", "sunny"}, {"tool_name", "get_weather"}}}}});
  EXPECT_EQ(r.status, 200) << r.body;
  // suffix: llama-server's /infill.
  r = post(s, "/api/generate",
           {{"model", "tiny"}, {"prompt", "def f(x):"}, {"suffix", "    return y"}, {"stream", false}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json()["response"].get<std::string>().empty()) << r.body;
  EXPECT_EQ(r.json()["done"], true);
  // Images on a model without a projector: llama-server's own error, passed through.
  r = post(
      s, "/api/generate",
      {{"model", "tiny"}, {"prompt", "what is this?"}, {"images", {"iVBORw0KGgoAAAANSUhEUg=="}}, {"stream", false}});
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_NE(r.json()["error"].get<std::string>().find("image input is not supported"), std::string::npos) << r.body;
}
