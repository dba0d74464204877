// serve against an attacker on the same machine or a web page in a browser
// next to it (issue: safe to leave running). One test per finding, each
// against the real binary, the mock nvidia-smi and the fake llama-server.
// Every one of them failed on the code before the fix.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "integration/harness.h"
#include "integration/serve_harness.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string deep(int levels) {
  return std::string(static_cast<size_t>(levels), '[') + std::string(static_cast<size_t>(levels), ']');
}

/// The status code of a raw HTTP reply ("HTTP/1.1 403 ..." -> 403); 0 for none.
int status_of(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) return 0;
  return std::atoi(raw.substr(9, 3).c_str());
}

/// How many responses a raw exchange holds.
size_t responses_in(const std::string& raw) {
  size_t n = 0;
  for (size_t at = raw.find("HTTP/1.1 "); at != std::string::npos; at = raw.find("HTTP/1.1 ", at + 1)) ++n;
  return n;
}

/// A GET with the Host (and more fields) given, on a connection serve may keep.
std::string get_with(const std::string& path, const std::string& fields) {
  return "GET " + path + " HTTP/1.1\r\n" + fields + "Connection: close\r\n\r\n";
}

/// One serve for the whole file: --allow-host names one more Host.
class ServeSecurity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sb_ = new Sandbox();
    sb_->write_config("[models.tiny]\npath = \"" + sb_->model("tiny") + "\"\n");
    // serve starts with a soft open-file limit below its hard one, as under
    // most login shells (1024), so that raising it shows.
    rlimit saved{};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit low = saved;
    if (low.rlim_max > 1024) low.rlim_cur = 1024;
    ::setrlimit(RLIMIT_NOFILE, &low);
    serve_ = new ServeProcess(*sb_, {"--allow-host", "gpu-box.lan"});
    ::setrlimit(RLIMIT_NOFILE, &saved);
    ASSERT_TRUE(serve_->ready()) << serve_->output();
  }
  static void TearDownTestSuite() {
    if (serve_) {
      EXPECT_EQ(serve_->terminate(), 0) << serve_->output();
    }
    delete serve_;
    delete sb_;
    serve_ = nullptr;
    sb_ = nullptr;
  }
  static int port() { return serve_->port(); }
  static json live() {
    json out = json::array();
    const auto st = sb_->state_file();
    if (st.is_object() && st.contains("instances"))
      for (const auto& i : st["instances"])
        if (i.value("state", "") != "dead") out.push_back(i);
    return out;
  }
  static void unload_all() { sb_->run({"unload", "--all"}); }
  static bool alive() { return http_request(port(), "GET", "/health").status == 200; }

  static Sandbox* sb_;
  static ServeProcess* serve_;
};
Sandbox* ServeSecurity::sb_ = nullptr;
ServeProcess* ServeSecurity::serve_ = nullptr;

}  // namespace

// 1. A body nested 100,000 deep in any field of any route: 400 naming the
// limit, serve lives on, nothing reaches llama-server (which a deep `tools`
// array kills).
TEST_F(ServeSecurity, DeepNestingIsRefusedOnEveryRouteAndField) {
  const std::string d = deep(100000);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/api/chat", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"think":)" + d + "}"},
      {"/api/chat", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"format":)" + d + "}"},
      {"/api/chat", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":)" + d + "}"},
      {"/api/chat",
       R"({"model":"tiny","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":)" +
           d + "}}}]}]}"},
      {"/api/chat", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"options":{"stop":)" + d + "}}"},
      {"/api/generate", R"({"model":"tiny","prompt":"hi","format":)" + d + "}"},
      {"/api/generate", R"({"model":"tiny","prompt":"hi","think":)" + d + "}"},
      {"/api/embed", R"({"model":"tiny","input":)" + d + "}"},
      {"/api/embeddings", R"({"model":"tiny","prompt":)" + d + "}"},
      {"/api/show", R"({"model":"tiny","x":)" + d + "}"},
      {"/api/pull", R"({"model":"tiny","x":)" + d + "}"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":)" + d + "}"},
      {"/v1/completions", R"({"model":"tiny","prompt":)" + d + "}"},
      {"/v1/embeddings", R"({"model":"tiny","input":)" + d + "}"},
  };
  for (const auto& [path, body] : cases) {
    const auto r = http_request(port(), "POST", path, body);
    EXPECT_EQ(r.status, 400) << path << ": " << r.body.substr(0, 300) << r.error;
    EXPECT_NE(r.body.find("256"), std::string::npos) << path << ": " << r.body.substr(0, 300);
    ASSERT_TRUE(alive()) << "serve died on " << path << "\n" << serve_->output();
  }
  EXPECT_TRUE(live().empty()) << "a refused body started llama-server: " << live().dump();
  // Just under the bound is an ordinary request.
  const auto ok =
      http_request(port(), "POST", "/api/chat",
                   R"({"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}],"format":{"a":)" +
                       deep(200) + "}}");
  EXPECT_EQ(ok.status, 200) << ok.body.substr(0, 300);
  unload_all();
}

// 2. DNS rebinding: a Host name that is not one of this loopback serve's
// gets 403, on every route; IP literals, localhost names and --allow-host
// names pass.
TEST_F(ServeSecurity, HostHeaderMatrix) {
  const std::string p = std::to_string(port());
  for (const std::string& host : std::vector<std::string>{
           "localhost", "localhost:" + p, "127.0.0.1:" + p, "127.9.9.9", "[::1]:" + p, "app.localhost:" + p,
           "gpu-box.lan:" + p, "GPU-BOX.LAN", "10.1.2.3:" + p, "0.0.0.0:" + p, "[::2]:" + p}) {
    const auto raw = raw_exchange(port(), get_with("/api/tags", "Host: " + host + "\r\n"));
    EXPECT_EQ(status_of(raw), 200) << host << "\n" << raw.substr(0, 200);
  }
  for (const std::string& host : std::vector<std::string>{"evil.example", "evil.example:" + p, "localhost.evil.example",
                                                          "gpu-box.lan.evil.example", "127.0.0.1.evil.example"}) {
    for (const std::string path : {"/api/tags", "/", "/v1/models", "/health"}) {
      const auto raw = raw_exchange(port(), get_with(path, "Host: " + host + "\r\n"));
      EXPECT_EQ(status_of(raw), 403) << host << " " << path << "\n" << raw.substr(0, 200);
      EXPECT_NE(raw.find("Content-Length: "), std::string::npos) << raw;  // framed
    }
  }
  // A rebinding page's generate request never starts a model.
  const std::string body = R"({"model":"tiny","prompt":"hi","stream":false})";
  const auto raw =
      raw_exchange(port(), "POST /api/generate HTTP/1.1\r\nHost: evil.example:" + p +
                               "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n\r\n" + body);
  EXPECT_EQ(status_of(raw), 403) << raw;
  EXPECT_TRUE(live().empty()) << live().dump();
}

// 2. A page on another origin: refused with 403 on every method (a
// text/plain POST needs no preflight), allowed origins and no Origin pass.
TEST_F(ServeSecurity, OriginMatrix) {
  const auto evil = http_request(port(), "GET", "/api/tags", "", {"Origin: https://evil.example"});
  EXPECT_EQ(evil.status, 403) << evil.body;
  EXPECT_EQ(http_request(port(), "GET", "/api/tags", "", {"Origin: null"}).status, 403);
  EXPECT_EQ(http_request(port(), "GET", "/", "", {"Origin: http://localhost:3000.evil.example"}).status, 403);
  const auto local = http_request(port(), "GET", "/api/tags", "", {"Origin: http://localhost:3000"});
  EXPECT_EQ(local.status, 200);
  EXPECT_EQ(local.headers.at("access-control-allow-origin"), "http://localhost:3000");
  EXPECT_EQ(http_request(port(), "GET", "/api/tags").status, 200);
  // The cross-site form post that loaded a model, and the one that unloaded it.
  for (const std::string body : {R"({"model":"tiny","prompt":"hi"})", R"({"model":"tiny","keep_alive":0})"}) {
    const auto r = http_request(port(), "POST", "/api/generate", body,
                                {"Origin: https://evil.example", "Content-Type: text/plain"});
    EXPECT_EQ(r.status, 403) << r.body;
  }
  EXPECT_TRUE(live().empty()) << live().dump();
  // A refused preflight is framed: the next request on the same connection
  // is answered at once, not after the 60 s idle cut.
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  const auto raw = raw_exchange(port(),
                                "OPTIONS /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
                                "Access-Control-Request-Method: POST\r\n\r\n"
                                "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                                10s, &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(status_of(raw), 403) << raw;
  EXPECT_EQ(responses_in(raw), 2u) << raw;
  EXPECT_NE(raw.find("{\"status\":\"ok\"}"), std::string::npos) << raw;
}

// 4. Framing a proxy in front could read differently (request smuggling):
// 400 and the connection closed, so the bytes after it are never a request.
TEST_F(ServeSecurity, AmbiguousFramingIsRefusedAndTheConnectionClosed) {
  const std::string smuggled = "GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (const std::string te : {"gzip", "identity", "xchunked", "chunked, identity", "chunked"}) {
    const std::string body = "{}";
    bool closed = false;
    const auto raw =
        raw_exchange(port(),
                     "POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: " + te +
                         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body + smuggled,
                     10s, &closed);
    EXPECT_EQ(status_of(raw), 400) << te << "\n" << raw;
    EXPECT_EQ(responses_in(raw), 1u) << te << "\n" << raw;
    EXPECT_NE(raw.find("Connection: close"), std::string::npos) << te << "\n" << raw;
    EXPECT_TRUE(closed) << te;
  }
  // Two Transfer-Encoding fields, no Content-Length: refused too.
  const auto two = raw_exchange(port(),
                                "POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
                                "chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
  EXPECT_EQ(status_of(two), 400) << two;
  ASSERT_TRUE(alive());
}

// 4. Header fields over the limit: 431; a request line that is not HTTP:
// 400; both framed, then the connection is closed.
TEST_F(ServeSecurity, OversizedHeadersAre431MalformedRequestsAre400) {
  bool closed = false;
  const auto big = raw_exchange(
      port(), "GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n", 10s,
      &closed);
  EXPECT_EQ(status_of(big), 431) << big.substr(0, 300);
  EXPECT_NE(big.find("Content-Length: "), std::string::npos);
  EXPECT_TRUE(closed);
  for (const std::string line :
       {"GET /api/tags HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", "BLAH\r\n\r\n",
        "GET /api/tags HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", "GET  HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"}) {
    closed = false;
    const auto raw = raw_exchange(port(), line, 10s, &closed);
    EXPECT_EQ(status_of(raw), 400) << line << "\n" << raw;
    EXPECT_TRUE(closed) << line;
  }
  ASSERT_TRUE(alive());
}

namespace {

int64_t live_pid(const json& instances) {
  return instances.empty() ? -1 : instances[0].value("pid", int64_t{-1});
}

}  // namespace

// 5. Every llama-server that serve started is reaped, whoever stopped it:
// `llamactl unload` from another process, or keep_alive:0.
TEST_F(ServeSecurity, NoZombieAfterACliUnloadOrKeepAliveZero) {
  const std::string chat = R"({"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}]})";
  ASSERT_EQ(http_request(port(), "POST", "/api/chat", chat).status, 200);
  int64_t pid = live_pid(live());
  ASSERT_GT(pid, 0);
  const auto u = sb_->run({"unload", "tiny"});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_TRUE(eventually([&] { return proc_state(pid) == 0; }, 5s))
      << "llama-server " << pid << " is in state " << proc_state(pid) << " after `llamactl unload`";
  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(http_request(port(), "POST", "/api/chat", chat).status, 200);
    pid = live_pid(live());
    ASSERT_GT(pid, 0);
    const auto r = http_request(port(), "POST", "/api/generate", R"({"model":"tiny","keep_alive":0})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(eventually([&] { return proc_state(pid) == 0; }, 5s))
        << "llama-server " << pid << " is in state " << proc_state(pid) << " after keep_alive:0";
  }
}

// 4. serve raises its soft limit on open files to the hard limit.
TEST_F(ServeSecurity, OpenFileLimitIsRaisedToTheHardLimit) {
  rlimit ours{};
  ::getrlimit(RLIMIT_NOFILE, &ours);
  if (ours.rlim_max <= 1024) GTEST_SKIP() << "the hard limit here is " << ours.rlim_max << ": nothing to raise";
  std::ifstream in("/proc/" + std::to_string(serve_->pid()) + "/limits");
  std::string line;
  bool seen = false;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    std::string soft, hard;
    fields >> soft >> hard;
    EXPECT_EQ(soft, hard) << line;
    EXPECT_NE(soft, "1024") << line;  // what it started with (where the hard limit is higher)
    seen = true;
  }
  EXPECT_TRUE(seen);
}
