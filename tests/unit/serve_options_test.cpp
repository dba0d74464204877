#include <gtest/gtest.h>

#include <thread>

#include "config/config.h"
#include "serve/body_model.h"
#include "serve/metrics.h"
#include "serve/options.h"

using namespace llamactl;
using namespace llamactl::serve;

TEST(ServeOptions, OllamaHostInAllItsForms) {
  struct Case {
    const char* value;
    const char* host;
    int port;
  };
  const Case cases[] = {
      {"", "127.0.0.1", 11434},
      {"0.0.0.0", "0.0.0.0", 11434},
      {"0.0.0.0:8080", "0.0.0.0", 8080},
      {":8080", "0.0.0.0", 8080},  // empty host: every interface, as in Ollama
      {"127.0.0.1:11435", "127.0.0.1", 11435},
      {"http://127.0.0.1:9000", "127.0.0.1", 9000},
      {"http://127.0.0.1", "127.0.0.1", 80},
      {"https://127.0.0.1", "127.0.0.1", 443},
      {"http://127.0.0.1:9000/some/path", "127.0.0.1", 9000},
      {"localhost:1234", "127.0.0.1", 1234},
      {"[::1]:8080", "::1", 8080},
      {"::1", "::1", 11434},
      {"  10.0.0.5:7000  ", "10.0.0.5", 7000},
  };
  for (const auto& c : cases) {
    auto e = parse_ollama_host(c.value);
    ASSERT_TRUE(e.ok()) << c.value << ": " << e.error().message;
    EXPECT_EQ(e->host, c.host) << c.value;
    EXPECT_EQ(e->port, c.port) << c.value;
  }
  EXPECT_FALSE(parse_ollama_host("myhost:8080").ok());  // no name lookups in a static binary
  EXPECT_FALSE(parse_ollama_host("127.0.0.1:99999").ok());
  EXPECT_FALSE(parse_ollama_host("127.0.0.1:abc").ok());
}

TEST(ServeOptions, ListenFlag) {
  EXPECT_EQ(parse_listen("127.0.0.1:8080")->text(), "127.0.0.1:8080");
  EXPECT_EQ(parse_listen("[::1]:8080")->text(), "[::1]:8080");
  EXPECT_EQ(parse_listen(":9000")->text(), "0.0.0.0:9000");
  EXPECT_EQ(parse_listen("127.0.0.1")->port, 11434);
  auto bad = parse_listen("example.org:80");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--listen"), std::string::npos);
}

TEST(ServeOptions, KeepAlivePrecedenceLastWins) {
  auto cfg = config::parse(R"(
keep_alive = "10m"
[models.a]
path = "/m/a.gguf"
keep_alive = "20m"
[models.b]
path = "/m/b.gguf"
)",
                           "c.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(*keep_alive_for(config::Config{}, "x", std::nullopt, std::nullopt), 5 * 60 * 1000);  // default
  EXPECT_EQ(*keep_alive_for(*cfg, "b", std::nullopt, std::nullopt), 10 * 60 * 1000);             // config
  EXPECT_EQ(*keep_alive_for(*cfg, "a", std::nullopt, std::nullopt), 20 * 60 * 1000);             // the model's
  EXPECT_EQ(*keep_alive_for(*cfg, "a", "30s", std::nullopt), 30 * 1000);                         // --keep-alive
  EXPECT_EQ(*keep_alive_for(*cfg, "a", "30s", "1h"), 60 * 60 * 1000);                            // OLLAMA_KEEP_ALIVE
  EXPECT_EQ(*keep_alive_for(*cfg, "a", std::nullopt, "-1"), -1);                                 // negative: never
  EXPECT_EQ(*keep_alive_for(*cfg, "a", "0", std::nullopt), 0);
  auto bad = keep_alive_for(*cfg, "a", std::nullopt, "soon");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("OLLAMA_KEEP_ALIVE"), std::string::npos);
}

TEST(ServeOptions, OriginsAndSizes) {
  const auto o = allowed_origins(std::string("https://webui.example, http://10.0.0.2:*"));
  EXPECT_TRUE(origin_allowed(o, "http://localhost:3000"));
  EXPECT_TRUE(origin_allowed(o, "http://127.0.0.1"));
  EXPECT_TRUE(origin_allowed(o, "https://webui.example"));
  EXPECT_TRUE(origin_allowed(o, "http://10.0.0.2:8080"));
  EXPECT_TRUE(origin_allowed(o, "vscode-webview://abc"));
  EXPECT_FALSE(origin_allowed(o, "https://evil.example"));
  EXPECT_FALSE(origin_allowed(o, "http://localhost.evil.example"));
  EXPECT_EQ(*parse_size("64MiB"), 64ULL << 20);
  EXPECT_EQ(*parse_size("1000"), 1000u);
  EXPECT_EQ(*parse_size("2 GB"), 2000000000u);
  EXPECT_FALSE(parse_size("lots").ok());
  EXPECT_FALSE(parse_size("5 parsecs").ok());
}

// The origin's port after "http://localhost:*" is a port, nothing else.
TEST(ServeOptions, PortWildcardIsDigitsOnly) {
  const auto o = allowed_origins(std::nullopt);
  EXPECT_TRUE(origin_allowed(o, "http://localhost:8080"));
  EXPECT_FALSE(origin_allowed(o, "http://localhost:8080.evil.example"));
  EXPECT_FALSE(origin_allowed(o, "http://localhost:"));
  EXPECT_FALSE(origin_allowed(o, "http://127.0.0.1:80@evil.example"));
  EXPECT_FALSE(origin_allowed(o, "null"));
  EXPECT_FALSE(origin_allowed(o, "http://localhost.evil.example"));
}

// DNS rebinding: over loopback only IP literals, localhost names and --allow-host ones.
TEST(ServeOptions, HostHeaderOverLoopback) {
  const std::vector<std::string> none;
  for (const char* ok : {"localhost",
                         "localhost:11434",
                         "LOCALHOST:1",
                         "localhost.",
                         "localhost.:80",
                         "app.localhost",
                         "a.b.localhost:8080",
                         "127.0.0.1",
                         "127.0.0.1:11434",
                         "127.1.2.3:80",
                         "[::1]",
                         "[::1]:11434",
                         "[0:0:0:0:0:0:0:1]:5",
                         "",
                         "  localhost  ",
                         "10.0.0.1:11434",
                         "0.0.0.0:11434",
                         "[::2]:1",
                         "[::ffff:127.0.0.1]",
                         "128.0.0.1"})
    EXPECT_TRUE(host_allowed(ok, true, none)) << ok;
  for (const char* bad :
       {"evil.example", "evil.example:11434", "localhost.evil.example", "evillocalhost", "127.0.0.1.evil.example",
        "::1", "127.0.0.1:", "127.0.0.1:abc", "127.0.0.1:123456", "[::1", "[::1]x", "[evil.example]", "localhost:80:80",
        "256.0.0.1", "127.0.0.01.5", ".localhost", "1.2.3", "0x7f.1"})
    EXPECT_FALSE(host_allowed(bad, true, none)) << bad;
  const std::vector<std::string> allowed = {"gpu-box.lan", "*.corp.example"};
  EXPECT_TRUE(host_allowed("gpu-box.lan:11434", true, allowed));
  EXPECT_TRUE(host_allowed("GPU-BOX.LAN", true, allowed));
  EXPECT_TRUE(host_allowed("a.corp.example", true, allowed));
  EXPECT_FALSE(host_allowed("corp.example", true, allowed));
  EXPECT_FALSE(host_allowed("evil.example", true, allowed));
  EXPECT_FALSE(host_allowed("gpu-box.lan.evil.example", true, allowed));
}

// From another machine (--listen 0.0.0.0:PORT, asked for): any Host, unless names are configured.
TEST(ServeOptions, HostHeaderFromAnotherMachine) {
  EXPECT_TRUE(host_allowed("gpu-box.lan:11434", false, {}));
  EXPECT_TRUE(host_allowed("10.0.0.5:11434", false, {}));
  const std::vector<std::string> allowed = {"gpu-box.lan"};
  EXPECT_TRUE(host_allowed("gpu-box.lan", false, allowed));
  EXPECT_TRUE(host_allowed("10.0.0.5:11434", false, allowed));
  EXPECT_TRUE(host_allowed("[fe80::1]:11434", false, allowed));
  EXPECT_TRUE(host_allowed("localhost", false, allowed));
  EXPECT_FALSE(host_allowed("evil.example", false, allowed));
  EXPECT_TRUE(is_loopback(Endpoint{"127.0.0.1", 1}));
  EXPECT_TRUE(is_loopback(Endpoint{"127.5.0.1", 1}));
  EXPECT_TRUE(is_loopback(Endpoint{"::1", 1}));
  EXPECT_FALSE(is_loopback(Endpoint{"0.0.0.0", 1}));
  EXPECT_FALSE(is_loopback(Endpoint{"::", 1}));
  EXPECT_FALSE(is_loopback(Endpoint{"10.0.0.5", 1}));
}

TEST(ServeOptions, ApiKeyAsBearerOrXApiKey) {
  EXPECT_TRUE(api_key_ok("", "", ""));  // no key configured
  EXPECT_TRUE(api_key_ok("Bearer s3cret", "", "s3cret"));
  EXPECT_TRUE(api_key_ok("bearer   s3cret ", "", "s3cret"));
  EXPECT_TRUE(api_key_ok("", "s3cret", "s3cret"));
  EXPECT_TRUE(api_key_ok("Bearer wrong", "s3cret", "s3cret"));
  EXPECT_FALSE(api_key_ok("", "", "s3cret"));
  EXPECT_FALSE(api_key_ok("Bearer s3cre", "", "s3cret"));
  EXPECT_FALSE(api_key_ok("Bearer s3cretX", "", "s3cret"));
  EXPECT_FALSE(api_key_ok("s3cret", "", "s3cret"));
  EXPECT_FALSE(api_key_ok("Basic s3cret", "", "s3cret"));
  EXPECT_FALSE(api_key_ok("", "S3CRET", "s3cret"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0", 2), "a"));
}

TEST(ServeMetrics, CountsFromManyThreadsAddUp) {
  // Each thread counts in a shard of its own; the snapshot adds them up.
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 20; ++t)  // more threads than shards: some share one
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 500; ++i) {
        m.request("/v1/chat/completions", t % 2 ? 200 : 404);
        m.queue_wait(t % 2 ? "a" : "b", 0.005);
      }
    });
  for (auto& t : threads) t.join();
  m.request("/api/tags", 200);
  const auto s = m.snapshot();
  EXPECT_EQ((s.requests.at({"/v1/chat/completions", 200})), 5000U);
  EXPECT_EQ((s.requests.at({"/v1/chat/completions", 404})), 5000U);
  EXPECT_EQ((s.requests.at({"/api/tags", 200})), 1U);
  EXPECT_EQ(s.queue_wait_seconds.count, 10000U);
  EXPECT_EQ(s.queue_wait_seconds.counts[1], 10000U);  // 0.005 s: in the 0.01 bucket
  EXPECT_NEAR(s.queue_wait_seconds.sum, 50.0, 1e-6);
  EXPECT_EQ(s.models.at("a").queue_wait_seconds.count, 5000U);
  EXPECT_EQ(s.models.at("b").queue_wait_seconds.count, 5000U);
  // A second Metrics in the same threads starts from zero.
  Metrics other;
  other.request("/health", 200);
  EXPECT_EQ(other.snapshot().requests.size(), 1U);
}

TEST(ServeMetrics, PrometheusTextHasHelpTypeAndLabels) {
  Metrics m;
  m.request("/v1/chat/completions", 200);
  m.request("/v1/chat/completions", 200);
  m.request("/v1/embeddings", 404);
  m.load("tiny", true, 0.3);
  m.load("tiny", false, 0);
  m.unload("tiny", "idle");
  m.queue_wait("tiny", 0.0005);
  m.swap();
  m.queue_rejected("full");
  auto snap = m.snapshot();
  snap.models["tiny"].queue_depth = 4;
  snap.models["tiny"].in_flight = 2;
  snap.models["tiny"].slots = 2;
  snap.models["tiny"].replicas = 1;
  snap.models["q\"x"];  // a label value is escaped
  snap.in_flight = 3;
  snap.instances["ready"] = 2;
  llamactl::gpu::GpuReading g;
  g.index = 0;
  g.uuid = "GPU-1";
  g.name = "NVIDIA H100";
  g.memory_used_mib = 1024;
  g.memory_total_mib = 81559;  // utilisation unknown: left out, never 0
  snap.gpus = {g};
  snap.gpu_reading_ok = true;
  const std::string t = render(snap);
  for (const char* want : {
           "# HELP llamactl_requests_total ",
           "# TYPE llamactl_requests_total counter\n",
           "llamactl_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n",
           "llamactl_requests_total{route=\"/v1/embeddings\",status=\"404\"} 1\n",
           "llamactl_requests_in_flight 3\n",
           "llamactl_loads_total{result=\"ok\"} 1\n",
           "llamactl_loads_total{result=\"failed\"} 1\n",
           "# TYPE llamactl_load_seconds histogram\n",
           "llamactl_load_seconds_bucket{le=\"0.25\"} 0\n",
           "llamactl_load_seconds_bucket{le=\"0.5\"} 1\n",
           "llamactl_load_seconds_bucket{le=\"+Inf\"} 1\n",
           "llamactl_load_seconds_count 1\n",
           "llamactl_unloads_total{reason=\"idle\"} 1\n",
           "llamactl_unloads_total{reason=\"evicted\"} 0\n",
           "llamactl_instances{state=\"ready\"} 2\n",
           "llamactl_queue_wait_seconds_bucket{le=\"0.001\"} 1\n",
           "llamactl_swaps_total 1\n",
           "llamactl_queue_rejections_total{reason=\"full\"} 1\n",
           "llamactl_queue_rejections_total{reason=\"timeout\"} 0\n",
           "# TYPE llamactl_model_queue_depth gauge\n",
           "llamactl_model_queue_depth{model=\"tiny\"} 4\n",
           "llamactl_model_queue_depth{model=\"q\\\"x\"} 0\n",
           "llamactl_model_requests_in_flight{model=\"tiny\"} 2\n",
           "llamactl_model_slots{model=\"tiny\"} 2\n",
           "llamactl_model_replicas{model=\"tiny\"} 1\n",
           "llamactl_model_loads_total{model=\"tiny\",result=\"ok\"} 1\n",
           "llamactl_model_loads_total{model=\"tiny\",result=\"failed\"} 1\n",
           "llamactl_model_unloads_total{model=\"tiny\",reason=\"idle\"} 1\n",
           "# TYPE llamactl_model_queue_wait_seconds histogram\n",
           "llamactl_model_queue_wait_seconds_bucket{model=\"tiny\",le=\"0.001\"} 1\n",
           "llamactl_model_queue_wait_seconds_bucket{model=\"tiny\",le=\"+Inf\"} 1\n",
           "llamactl_model_queue_wait_seconds_count{model=\"tiny\"} 1\n",
           "llamactl_gpu_memory_used_bytes{gpu=\"0\",uuid=\"GPU-1\",name=\"NVIDIA H100\"} 1073741824\n",
           "llamactl_gpu_memory_total_bytes{gpu=\"0\",uuid=\"GPU-1\",name=\"NVIDIA H100\"} 85520809984\n",
       })
    EXPECT_NE(t.find(want), std::string::npos) << want << "\n---\n" << t;
  EXPECT_EQ(t.find("llamactl_gpu_utilization_percent{"), std::string::npos);
}

TEST(ServeOpenAi, BodyModelReadsTheTopLevelModelOfAValidObject) {
  const auto m = serve::body_model(R"({"messages":[{"role":"user","content":"hi","model":"inner"}],"model":"tiny"})");
  EXPECT_TRUE(m.is_object);
  EXPECT_EQ(m.model, "tiny");  // not the nested "model"
  // Nested objects and every kind of value on the way.
  const auto n = serve::body_model(R"({"a":{"model":"x"},"b":[1,2.5,true,null,"s",{"model":"y"}],"model":"qwen:7b"})");
  EXPECT_TRUE(n.is_object);
  EXPECT_EQ(n.model, "qwen:7b");
  // The last of repeated keys counts, as in a parsed object.
  EXPECT_EQ(serve::body_model(R"({"model":"a","model":"b"})").model, "b");
  EXPECT_EQ(serve::body_model(R"({"model":"a","model":7})").model, "");
}

TEST(ServeOpenAi, BodyModelRefusesWhatIsNotOneJsonObject) {
  for (const char* bad : {"", "not json", "[]", R"(["model"])", "\"model\"", "5", "null", R"({"model":"a")",
                          R"({"model":"a"} {})", R"({"model":"a"} x)", R"({"model":"a",})", R"({"model":"a" "b":1})"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(serve::body_model(bad).is_object);
  }
  // A valid object without a usable model: is_object, empty model.
  for (const char* none : {"{}", R"({"model":""})", R"({"model":null})", R"({"model":{"name":"a"}})",
                           R"({"model":["a"]})", R"({"models":"a","x":{"model":"a"}})"}) {
    SCOPED_TRACE(none);
    const auto m = serve::body_model(none);
    EXPECT_TRUE(m.is_object);
    EXPECT_EQ(m.model, "");
  }
  // Whitespace around it is fine.
  EXPECT_EQ(serve::body_model(" \n{\"model\" : \"a\"}\n ").model, "a");
}
