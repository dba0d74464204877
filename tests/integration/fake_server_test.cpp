// The fake llama-server on its own: the HTTP behaviour that a proxy in front
// of llama-server depends on (keep-alive, chunked SSE, the JSON shapes of
// chat, completions, embeddings, Responses, Messages, token counts and
// rerank, errors, API key, cancellation, SIGTERM).
// A raw-socket client, so that chunk boundaries and timings are visible.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/net_posix.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "util/strings.h"

extern char** environ;

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using llamactl::testing::eventually;

using llamactl::to_lower;
using llamactl::testing::free_port;

struct Head {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool chunked() const { return to_lower(header("transfer-encoding")) == "chunked"; }
};

struct Reply {
  Head head;
  std::string body;                         // de-chunked
  std::vector<std::string> chunks;          // chunk payloads, in order
  std::vector<Clock::time_point> arrivals;  // when each chunk had arrived
  bool complete = false;                    // Content-Length reached or the last chunk seen
  int status() const { return head.status; }
  json body_json() const { return json::parse(body, nullptr, false); }
};

// One HTTP/1.1 connection to the fake.
class Client {
 public:
  explicit Client(int port) : fd_(llamactl::testing::connect_loopback(port)) {}
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& s) {
    size_t done = 0;
    while (fd_ >= 0 && done < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  std::optional<Head> read_head(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (fill(until) <= 0) return std::nullopt;
    std::istringstream in(buf_.substr(0, end));
    buf_.erase(0, end + 4);
    Head h;
    std::string line;
    std::getline(in, line);
    if (line.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    h.status = std::atoi(line.c_str() + 9);
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      h.headers[to_lower(line.substr(0, colon))] = value;
    }
    return h;
  }

  // The next chunk of a chunked body: its payload ("" for the last chunk), or
  // nothing when the connection ends or the time runs out first.
  std::optional<std::string> read_chunk(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    size_t eol;
    while ((eol = buf_.find("\r\n")) == std::string::npos)
      if (fill(until) <= 0) return std::nullopt;
    const size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
    while (buf_.size() < eol + 2 + size + 2)
      if (fill(until) <= 0) return std::nullopt;
    std::string data = buf_.substr(eol + 2, size);
    buf_.erase(0, eol + 2 + size + 2);
    return data;
  }

  Reply read(std::chrono::milliseconds timeout = 10s) {
    const auto until = Clock::now() + timeout;
    Reply r;
    const auto h = read_head(timeout);
    if (!h) return r;
    r.head = *h;
    if (r.head.chunked()) {
      for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
        const auto c = read_chunk(std::max(left, 0ms));
        if (!c) break;
        r.arrivals.push_back(Clock::now());
        if (c->empty()) {
          r.complete = true;
          break;
        }
        r.chunks.push_back(*c);
        r.body += *c;
      }
    } else {
      const size_t n = std::stoul(r.head.header("content-length").empty() ? "0" : r.head.header("content-length"));
      while (buf_.size() < n)
        if (fill(until) <= 0) return r;
      r.body = buf_.substr(0, n);
      buf_.erase(0, n);
      r.complete = true;
    }
    return r;
  }

  // Whether the server closes the connection (EOF, no more bytes) within the time.
  bool closed_by_peer(std::chrono::milliseconds timeout = 5s) {
    const auto until = Clock::now() + timeout;
    for (;;) {
      const int rc = fill(until);
      if (rc < 0) return true;
      if (rc == 0) return false;
    }
  }

 private:
  // 1: bytes read, 0: time ran out, -1: the connection ended.
  int fill(Clock::time_point until) {
    if (fd_ < 0) return -1;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return 0;
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc == 0) return 0;
    if (rc < 0) return -1;
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return -1;
    buf_.append(tmp, static_cast<size_t>(n));
    return 1;
  }

  int fd_ = -1;
  std::string buf_;
};

std::string get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
}

std::string post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

std::string chat_body(const json& extra = json::object()) {
  json b{{"model", "whatever"}, {"messages", json::array({{{"role", "user"}, {"content", "Say hello"}}})}};
  b.update(extra);
  return b.dump();
}

// The `data:` payloads of an SSE body; "[DONE]" comes back as the string "[DONE]".
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data, nullptr, false));
  }
  return out;
}

// k from the fake's "client disconnected, cancelled task <id> after <k> of <n> tokens".
std::optional<int> cancelled_after(const std::string& log, int n) {
  const std::regex line("client disconnected, cancelled task [0-9]+ after ([0-9]+) of " + std::to_string(n) +
                        " tokens");
  std::smatch m;
  if (!std::regex_search(log, m, line)) return std::nullopt;
  return std::stoi(m[1].str());
}

double l2(const json& v) {
  double s = 0;
  for (const auto& x : v) s += x.get<double>() * x.get<double>();
  return std::sqrt(s);
}

// The keys of a JSON object in the order they were sent.
std::vector<std::string> keys_in_order(const nlohmann::ordered_json& j) {
  std::vector<std::string> out;
  if (j.is_object())
    for (const auto& [k, v] : j.items()) out.push_back(k);
  return out;
}

// The `data:` payloads of an SSE body, parsed keeping the key order.
std::vector<nlohmann::ordered_json> sse_events_ordered(const std::string& body) {
  std::vector<nlohmann::ordered_json> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("data: ", 0) == 0 && line != "data: [DONE]")
      out.push_back(nlohmann::ordered_json::parse(line.substr(6), nullptr, false));
  return out;
}

bool is_alnum32(const std::string& s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c) != 0; });
}

json user_says(const std::string& text) {
  return json::array({{{"role", "user"}, {"content", text}}});
}

const json kWeatherTool = {{"type", "function"},
                           {"function",
                            {{"name", "get_weather"},
                             {"description", "Weather now"},
                             {"parameters",
                              {{"type", "object"},
                               {"properties", {{"days", {{"type", "integer"}}}, {"city", {{"type", "string"}}}}},
                               {"required", json::array({"city"})}}}}}};
const json kTimeTool = {{"type", "function"}, {"function", {{"name", "get_time"}}}};

// A tiny valid PNG (1x1), base64.
const char* kPngDataUrl =
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
    "rkJggg==";

const std::vector<std::string> kTimingKeys = {"cache_n",
                                              "prompt_n",
                                              "prompt_ms",
                                              "prompt_per_token_ms",
                                              "prompt_per_second",
                                              "predicted_n",
                                              "predicted_ms",
                                              "predicted_per_token_ms",
                                              "predicted_per_second"};

class FakeServer : public ::testing::Test {
 protected:
  void TearDown() override { stop(); }

  // Starts the fake on a free port with a tiny model and waits for /health 200
  // (or only for the port, when `wait_ready` is false).
  void start(const std::vector<std::string>& args = {}, const std::vector<std::string>& env = {},
             bool wait_ready = true) {
    stop();
    model_ = dir_ / "tiny.gguf";
    std::ofstream(model_, std::ios::binary) << "GGUF";
    log_ = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    port_ = free_port();
    ASSERT_GT(port_, 0);

    std::vector<std::string> argv = {FAKE_LLAMA_SERVER,     "-m",      model_, "--host", "127.0.0.1", "--port",
                                     std::to_string(port_), "--alias", "tiny"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> envv;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "FAKE_", 5) != 0 && std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0) envv.push_back(*e);
    envv.insert(envv.end(), env.begin(), env.end());
    if (std::none_of(env.begin(), env.end(),
                     [](const std::string& v) { return v.rfind("FAKE_LOAD_DELAY_MS=", 0) == 0; }))
      envv.push_back("FAKE_LOAD_DELAY_MS=0");

    std::vector<char*> a, e;
    for (auto& s : argv) a.push_back(s.data());
    a.push_back(nullptr);
    for (auto& s : envv) e.push_back(s.data());
    e.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = ::posix_spawn(&pid_, a[0], &fa, nullptr, a.data(), e.data());
    posix_spawn_file_actions_destroy(&fa);
    ASSERT_EQ(rc, 0) << "cannot start " << FAKE_LLAMA_SERVER;

    if (!wait_ready) {
      ASSERT_TRUE(eventually([&] { return Client(port_).connected(); })) << log();
      return;
    }
    ASSERT_TRUE(eventually([&] {
      Client c(port_);
      if (!c.connected() || !c.send(get("/health"))) return false;
      return c.read(2s).status() == 200;
    })) << log();
    // The SIGTERM handler is in place once "listening" is logged.
    ASSERT_TRUE(eventually([&] { return log().find("server is listening") != std::string::npos; })) << log();
  }

  void stop() {
    if (pid_ <= 0) return;
    if (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }

  // Waits for the fake to exit; its wait status, or nothing on time-out.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    std::optional<int> result;
    eventually(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
          result = status;
          return true;
        },
        timeout);
    if (result) pid_ = -1;
    return result;
  }

  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // One request on a fresh connection.
  Reply ask(const std::string& raw) {
    Client c(port_);
    EXPECT_TRUE(c.connected());
    EXPECT_TRUE(c.send(raw));
    return c.read();
  }

  llamactl::testing::TempDir dir_;
  std::string model_, log_;
  int port_ = 0;
  int starts_ = 0;
  pid_t pid_ = -1;
};

TEST_F(FakeServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(get("/health", "Origin: http://example.test\r\n")));
  auto health = c.read();
  EXPECT_EQ(health.status(), 200);
  EXPECT_EQ(health.body, R"({"status":"ok"})");
  EXPECT_EQ(health.head.header("content-length"), std::to_string(health.body.size()));
  EXPECT_EQ(health.head.header("content-type"), "application/json; charset=utf-8");
  EXPECT_EQ(health.head.header("server"), "llama.cpp");
  EXPECT_EQ(health.head.header("access-control-allow-origin"), "http://example.test");
  EXPECT_EQ(health.head.header("keep-alive"), "timeout=5, max=100");
  EXPECT_EQ(health.head.header("connection"), "");

  ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body())));
  auto chat = c.read();
  EXPECT_EQ(chat.status(), 200);
  EXPECT_EQ(chat.body_json()["choices"][0]["message"]["content"], "Hello from fake");

  ASSERT_TRUE(c.send(get("/v1/models")));
  auto models = c.read();
  EXPECT_EQ(models.status(), 200);
  EXPECT_EQ(models.body_json()["data"][0]["id"], "tiny");
  EXPECT_EQ(models.body_json()["data"][0]["owned_by"], "llamacpp");
  EXPECT_FALSE(c.closed_by_peer(200ms));  // still open for more
}

TEST_F(FakeServer, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send(get("/health") + post("/v1/chat/completions", chat_body({{"max_tokens", 1}})) + get("/nope")));
  EXPECT_EQ(c.read().status(), 200);
  auto chat = c.read();
  EXPECT_EQ(chat.status(), 200);
  EXPECT_EQ(chat.body_json()["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(c.read().status(), 404);
}

TEST_F(FakeServer, ConnectionCloseAndHttp10EndTheConnection) {
  start();
  {
    Client c(port_);
    ASSERT_TRUE(c.send(get("/health", "Connection: close\r\n")));
    auto r = c.read();
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.head.header("connection"), "close");
    EXPECT_EQ(r.head.header("keep-alive"), "");
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    Client c(port_);
    ASSERT_TRUE(c.send("GET /health HTTP/1.0\r\n\r\n"));
    EXPECT_EQ(c.read().status(), 200);
    EXPECT_TRUE(c.closed_by_peer());
  }
}

TEST_F(FakeServer, UnparsableRequestGets400AndClose) {
  start();
  for (const std::string raw :
       {"THIS IS NOT HTTP AT ALL\r\n\r\n", "GET /health HTTP/1.1\r\nNoColonHere\r\n\r\n", "GET /health SPDY/3\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n"}) {
    Client c(port_);
    ASSERT_TRUE(c.send(raw));
    auto r = c.read();
    EXPECT_EQ(r.status(), 400) << raw;
    EXPECT_EQ(r.head.header("connection"), "close") << raw;
    EXPECT_TRUE(c.closed_by_peer()) << raw;
  }
}

TEST_F(FakeServer, ChunkedRequestBodyIsRead) {
  start();
  const std::string body = chat_body({{"max_tokens", 2}});
  const std::string a = body.substr(0, 10), b = body.substr(10);
  char sa[16], sb[16];
  std::snprintf(sa, sizeof sa, "%zx", a.size());
  std::snprintf(sb, sizeof sb, "%zx", b.size());
  auto r = ask("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(sa) +
               "\r\n" + a + "\r\n" + sb + ";ext=1\r\n" + b + "\r\n0\r\n\r\n");
  EXPECT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(r.body_json()["choices"][0]["message"]["content"], "Hello from");
}

TEST_F(FakeServer, ChatCompletionFields) {
  start();
  const auto before = std::time(nullptr);
  auto r = ask(post("/v1/chat/completions", chat_body()));
  ASSERT_EQ(r.status(), 200);
  const json j = r.body_json();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny");  // the alias, whatever the request names
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_FALSE(j["system_fingerprint"].get<std::string>().empty());
  EXPECT_GE(j["created"].get<int64_t>(), before);
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hello from fake"}}));
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["completion_tokens"].get<int>() + j["usage"]["prompt_tokens"].get<int>());
  for (const auto& k : kTimingKeys) EXPECT_TRUE(j["timings"].contains(k)) << k;
  EXPECT_EQ(j["timings"]["predicted_n"], 3);
  EXPECT_EQ(j["timings"]["prompt_n"], j["usage"]["prompt_tokens"]);

  auto five = ask(post("/chat/completions", chat_body({{"max_tokens", 5}}))).body_json();
  EXPECT_EQ(five["choices"][0]["message"]["content"], "Hello from fake token token");
  EXPECT_EQ(five["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(five["usage"]["completion_tokens"], 5);
  // n_predict wins over max_tokens, as in llama.cpp.
  auto two = ask(post("/v1/chat/completions", chat_body({{"max_tokens", 5}, {"n_predict", 2}}))).body_json();
  EXPECT_EQ(two["choices"][0]["message"]["content"], "Hello from");

  auto missing = ask(post("/v1/chat/completions", R"({"prompt":"x"})"));
  EXPECT_EQ(missing.status(), 400);
  EXPECT_EQ(missing.body_json()["error"]["type"], "invalid_request_error");
}

TEST_F(FakeServer, ChatStreamSequenceWithoutUsage) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body({{"stream", true}}))));
  auto r = c.read();
  ASSERT_EQ(r.status(), 200);
  EXPECT_TRUE(r.head.chunked());
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.head.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.head.header("content-length"), "");
  EXPECT_EQ(r.head.header("server"), "llama.cpp");
  EXPECT_EQ(r.head.header("x-accel-buffering"), "no");

  const auto ev = sse_events(r.body);
  ASSERT_EQ(ev.size(), 6u) << r.body;  // role, 3 tokens, finish, [DONE]
  const std::string id = ev[0]["id"];
  EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    EXPECT_EQ(ev[i]["object"], "chat.completion.chunk");
    EXPECT_EQ(ev[i]["id"], id);
    EXPECT_EQ(ev[i]["model"], "tiny");
    EXPECT_TRUE(ev[i].contains("created"));
    EXPECT_TRUE(ev[i].contains("system_fingerprint"));
    EXPECT_FALSE(ev[i].contains("usage")) << ev[i];
  }
  EXPECT_EQ(ev[0]["choices"][0]["delta"], json({{"role", "assistant"}, {"content", nullptr}}));
  EXPECT_TRUE(ev[0]["choices"][0]["finish_reason"].is_null());
  const char* words[] = {"Hello", " from", " fake"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ev[1 + i]["choices"][0]["delta"], json({{"content", words[i]}}));
    EXPECT_TRUE(ev[1 + i]["choices"][0]["finish_reason"].is_null());
    EXPECT_FALSE(ev[1 + i].contains("timings"));
  }
  EXPECT_EQ(ev[4]["choices"][0]["delta"], json::object());
  EXPECT_EQ(ev[4]["choices"][0]["finish_reason"], "stop");
  for (const auto& k : kTimingKeys) EXPECT_TRUE(ev[4]["timings"].contains(k)) << k;
  EXPECT_EQ(ev[5], "[DONE]");
  // The role chunk goes out with the first token; then one HTTP chunk per token.
  ASSERT_EQ(r.chunks.size(), 4u);
  EXPECT_EQ(sse_events(r.chunks[0]).size(), 2u);
  EXPECT_EQ(sse_events(r.chunks[3]).back(), "[DONE]");

  // The connection serves the next request after the stream.
  ASSERT_TRUE(c.send(get("/health")));
  EXPECT_EQ(c.read().status(), 200);
}

TEST_F(FakeServer, ChatStreamWithIncludeUsage) {
  start();
  auto r = ask(post("/v1/chat/completions",
                    chat_body({{"stream", true}, {"max_tokens", 4}, {"stream_options", {{"include_usage", true}}}})));
  ASSERT_EQ(r.status(), 200);
  const auto ev = sse_events(r.body);
  ASSERT_EQ(ev.size(), 8u) << r.body;  // role, 4 tokens, finish, usage, [DONE]
  EXPECT_EQ(ev[4]["choices"][0]["delta"]["content"], " token");
  EXPECT_EQ(ev[5]["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(ev[5].contains("usage"));
  EXPECT_FALSE(ev[5].contains("timings"));  // timings ride on the very last chunk
  EXPECT_EQ(ev[6]["choices"], json::array());
  EXPECT_EQ(ev[6]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[6]["id"], ev[0]["id"]);
  EXPECT_EQ(ev[6]["usage"]["completion_tokens"], 4);
  EXPECT_EQ(ev[6]["usage"]["total_tokens"].get<int>(), 4 + ev[6]["usage"]["prompt_tokens"].get<int>());
  EXPECT_EQ(ev[6]["timings"]["predicted_n"], 4);
  EXPECT_EQ(ev[7], "[DONE]");

  auto no_usage =
      ask(post("/v1/chat/completions", chat_body({{"stream", true}, {"stream_options", {{"include_usage", false}}}})));
  EXPECT_EQ(sse_events(no_usage.body).size(), 6u);
}

TEST_F(FakeServer, StreamChunksAreSpacedByTheTokenDelay) {
  start({}, {"FAKE_TOKEN_DELAY_MS=60"});
  Client c(port_);
  const auto t0 = Clock::now();
  ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body({{"stream", true}, {"max_tokens", 4}}))));
  auto r = c.read();
  ASSERT_EQ(r.status(), 200);
  ASSERT_EQ(r.chunks.size(), 5u);  // 4 tokens, then the final events
  EXPECT_GE(r.arrivals[0] - t0, 50ms);
  // One HTTP chunk per token, ~60 ms apart (the median, so that one late read of ours cannot fail it).
  std::vector<Clock::duration> gaps;
  for (size_t i = 1; i < 4; ++i) gaps.push_back(r.arrivals[i] - r.arrivals[i - 1]);
  std::sort(gaps.begin(), gaps.end());
  EXPECT_GE(gaps[1], 45ms);
  EXPECT_GE(r.arrivals[3] - r.arrivals[0], 165ms);

  // Non-streaming generation takes the same time.
  const auto t1 = Clock::now();
  auto whole = ask(post("/v1/chat/completions", chat_body({{"max_tokens", 4}})));
  EXPECT_EQ(whole.status(), 200);
  EXPECT_GE(Clock::now() - t1, 220ms);
  EXPECT_GE(whole.body_json()["timings"]["predicted_ms"].get<double>(), 220.0);
}

TEST_F(FakeServer, TextCompletions) {
  start();
  auto r = ask(post("/v1/completions", R"({"prompt":"Once upon a time"})"));
  ASSERT_EQ(r.status(), 200);
  json j = r.body_json();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["choices"][0]["text"], "Hello from fake");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_TRUE(j.contains("timings"));

  auto s = ask(post("/v1/completions", R"({"prompt":"Once","stream":true,"max_tokens":2})"));
  ASSERT_EQ(s.status(), 200);
  EXPECT_TRUE(s.head.chunked());
  auto ev = sse_events(s.body);
  ASSERT_EQ(ev.size(), 4u) << s.body;  // 2 tokens, final, [DONE]
  EXPECT_EQ(ev[0]["choices"][0]["text"], "Hello");
  EXPECT_TRUE(ev[0]["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(ev[1]["choices"][0]["text"], " from");
  EXPECT_EQ(ev[2]["choices"][0]["text"], "");
  EXPECT_EQ(ev[2]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(ev[2]["usage"]["completion_tokens"], 2);
  EXPECT_TRUE(ev[2].contains("timings"));
  EXPECT_EQ(ev[3], "[DONE]");

  EXPECT_EQ(ask(post("/v1/completions", R"({"max_tokens":2})")).status(), 500);  // "prompt" is required

  // Native /completion: no [DONE]; the last event has stop:true.
  auto n = ask(post("/completion", R"({"prompt":"Once","stream":true})"));
  ASSERT_EQ(n.status(), 200);
  ev = sse_events(n.body);
  ASSERT_EQ(ev.size(), 4u) << n.body;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ev[i]["stop"], false);
  EXPECT_EQ(ev[0]["content"], "Hello");
  EXPECT_EQ(ev[3]["stop"], true);
  EXPECT_TRUE(ev[3].contains("timings"));
  EXPECT_EQ(n.body.find("[DONE]"), std::string::npos);
  auto whole = ask(post("/completion", R"({"prompt":"Once","n_predict":1})")).body_json();
  EXPECT_EQ(whole["content"], "Hello");
  EXPECT_EQ(whole["stop"], true);
  EXPECT_EQ(whole["stop_type"], "limit");
}

TEST_F(FakeServer, EmbeddingsNeedTheFlag) {
  start();
  auto r = ask(post("/v1/embeddings", R"({"input":"hi"})"));
  EXPECT_EQ(r.status(), 501);
  EXPECT_EQ(r.body_json(), json::parse(R"({"error":{"code":501,"message":"This server does not support embeddings. )"
                                       R"(Start it with `--embeddings`","type":"not_supported_error"}})"));
  EXPECT_EQ(ask(post("/embeddings", R"({"input":"hi"})")).status(), 501);
}

TEST_F(FakeServer, EmbeddingsWithPoolingNoneAreNotOaiCompatible) {
  start({"--embeddings"});
  auto r = ask(post("/v1/embeddings", R"({"input":"hi"})"));
  EXPECT_EQ(r.status(), 400);
  EXPECT_EQ(r.body_json()["error"]["message"],
            "Pooling type 'none' is not OAI compatible. Please use a different pooling type");
  EXPECT_EQ(r.body_json()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(r.body_json()["error"]["code"], 400);
  // The older route answers, one unnormalised vector per token.
  auto old = ask(post("/embeddings", R"({"input":"hi"})"));
  ASSERT_EQ(old.status(), 200);
  const json j = old.body_json();
  ASSERT_TRUE(j.is_array()) << old.body;
  EXPECT_EQ(j[0]["index"], 0);
  ASSERT_GE(j[0]["embedding"].size(), 1u);
  EXPECT_EQ(j[0]["embedding"][0].size(), 128u);
  // Chat still works on an embeddings server.
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body())).status(), 200);
}

TEST_F(FakeServer, EmbeddingsWithPoolingAreNormalisedVectors) {
  start({"--embeddings", "--pooling", "mean"});
  auto r = ask(post("/v1/embeddings", R"({"input":["hello","world"],"model":"x"})"));
  ASSERT_EQ(r.status(), 200) << r.body;
  json j = r.body_json();
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "x");  // echoed, as llama.cpp does for embeddings
  ASSERT_EQ(j["data"].size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    EXPECT_EQ(j["data"][i]["index"], i);
    EXPECT_EQ(j["data"][i]["embedding"].size(), 128u);
    EXPECT_NEAR(l2(j["data"][i]["embedding"]), 1.0, 1e-4);
  }
  EXPECT_NE(j["data"][0]["embedding"], j["data"][1]["embedding"]);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"]);
  // Deterministic from the text.
  auto again = ask(post("/v1/embeddings", R"({"input":"hello"})")).body_json();
  EXPECT_EQ(again["data"][0]["embedding"], j["data"][0]["embedding"]);
  EXPECT_EQ(again["model"], "tiny");

  // The model's own pooling type and the length come from the environment.
  start({"--embeddings"}, {"FAKE_MODEL_POOLING=mean", "FAKE_EMBED_DIM=16"});
  auto small = ask(post("/v1/embeddings", R"({"input":"hello"})"));
  ASSERT_EQ(small.status(), 200) << small.body;
  EXPECT_EQ(small.body_json()["data"][0]["embedding"].size(), 16u);
  EXPECT_NEAR(l2(small.body_json()["data"][0]["embedding"]), 1.0, 1e-4);
  // --pooling none overrides the model.
  start({"--embeddings", "--pooling", "none"}, {"FAKE_MODEL_POOLING=mean"});
  EXPECT_EQ(ask(post("/v1/embeddings", R"({"input":"hello"})")).status(), 400);
}

TEST_F(FakeServer, EmbeddingInputsMustFitTheBatchAndTheContext) {
  // As llama-server (server-context.cpp): a pooled input is never split, so
  // over the physical batch it is a 500, and over the context a 400.
  start({"--embeddings", "--pooling", "mean", "-c", "1024"});
  const json long_input = {{"input", std::string(3000, 'a')}};  // 1 + 750 tokens
  auto r = ask(post("/v1/embeddings", long_input.dump()));
  EXPECT_EQ(r.status(), 500);
  EXPECT_EQ(r.body_json()["error"]["message"], "input is too large to process. increase the physical batch size");
  EXPECT_EQ(r.body_json()["error"]["type"], "server_error");
  start({"--embeddings", "--pooling", "mean", "-c", "512", "-ub", "4096", "-b", "4096"});
  r = ask(post("/v1/embeddings", long_input.dump()));
  EXPECT_EQ(r.status(), 400);
  const json e = r.body_json()["error"];
  EXPECT_EQ(e["type"], "exceed_context_size_error");
  EXPECT_EQ(e["message"], "input is larger than the max context size. skipping");
  EXPECT_EQ(e["n_ctx"], 512);
  EXPECT_EQ(e["n_prompt_tokens"], 751);
  EXPECT_EQ(ask(post("/v1/embeddings", json{{"input", std::string(2000, 'a')}}.dump())).status(), 200);
}

TEST_F(FakeServer, TokenizeAndDetokenizeRoundTrip) {
  start({});
  auto r = ask(post("/tokenize", R"({"content":"hello world"})"));
  ASSERT_EQ(r.status(), 200) << r.body;
  const json tokens = r.body_json()["tokens"];
  ASSERT_EQ(tokens.size(), 3u) << "4 bytes a token: hell, o wo, rld";
  auto with_bos = ask(post("/tokenize", R"({"content":"hello world","add_special":true})")).body_json()["tokens"];
  EXPECT_EQ(with_bos.size(), 4u);
  EXPECT_EQ(with_bos[0], 1);
  auto pieces = ask(post("/tokenize", R"({"content":"hello","with_pieces":true})")).body_json()["tokens"];
  EXPECT_EQ(pieces[0]["piece"], "hell");
  EXPECT_EQ(pieces[0]["id"], tokens[0]);
  auto d = ask(post("/detokenize", json{{"tokens", tokens}}.dump()));
  ASSERT_EQ(d.status(), 200);
  EXPECT_EQ(d.body_json()["content"], "hello world");
  EXPECT_EQ(ask(post("/detokenize", json{{"tokens", {tokens[0], tokens[1]}}}.dump())).body_json()["content"],
            "hello wo");
  // UTF-8 characters are never split across tokens.
  auto utf = ask(post("/tokenize", json{{"content", "h\u00e9llo\u20ac"}, {"with_pieces", true}}.dump())).body_json();
  EXPECT_EQ(utf["tokens"][0]["piece"], "h\u00e9l");
  EXPECT_EQ(ask(post("/tokenize", "{}")).body_json()["tokens"], json::array());
}

TEST_F(FakeServer, ApplyTemplateRendersChatMlAsTheFallback) {
  start({});
  const json body = {{"messages",
                      {{{"role", "system"}, {"content", "be brief"}},
                       {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}}}};
  auto r = ask(post("/apply-template", body.dump()));
  ASSERT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(r.body_json(), json({{"prompt",
                                  "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                  "<|im_start|>assistant\n"}}));
  // The chat route's checks, with its errors.
  EXPECT_EQ(ask(post("/apply-template", "{}")).status(), 400);
}

TEST_F(FakeServer, InvalidJsonIs500AndKeepsTheConnection) {
  start();
  Client c(port_);
  ASSERT_TRUE(c.send(post("/v1/chat/completions", "{not json")));
  auto r = c.read();
  EXPECT_EQ(r.status(), 500);
  const json j = r.body_json();
  EXPECT_EQ(j["error"]["code"], 500);
  EXPECT_EQ(j["error"]["type"], "server_error");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("parse error"), std::string::npos) << r.body;
  ASSERT_TRUE(c.send(get("/health")));
  EXPECT_EQ(c.read().status(), 200);
}

TEST_F(FakeServer, UnknownRouteIs404) {
  start();
  auto r = ask(get("/api/tags"));
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.body_json(),
            json::parse(R"({"error":{"message":"File Not Found","type":"not_found_error","code":404}})"));
}

TEST_F(FakeServer, ApiKeyGuardsAllButHealthAndModels) {
  start({"--api-key", "s3cret"});
  EXPECT_EQ(ask(get("/health")).status(), 200);
  EXPECT_EQ(ask(get("/v1/models")).status(), 200);
  auto denied = ask(post("/v1/chat/completions", chat_body()));
  EXPECT_EQ(denied.status(), 401);
  EXPECT_EQ(denied.body_json(),
            json::parse(R"({"error":{"message":"Invalid API Key","type":"authentication_error","code":401}})"));
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body(), "Authorization: Bearer wrong\r\n")).status(), 401);
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body(), "Authorization: Bearer s3cret\r\n")).status(), 200);
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body(), "X-Api-Key: s3cret\r\n")).status(), 200);
}

TEST_F(FakeServer, LoadingAnswers503ThenHealthy) {
  start({}, {"FAKE_LOAD_DELAY_MS=400"}, false);
  auto r = ask(get("/health"));
  EXPECT_EQ(r.status(), 503);
  EXPECT_EQ(r.body_json()["error"]["message"], "Loading model");
  EXPECT_EQ(r.body_json()["error"]["type"], "unavailable_error");
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body())).status(), 503);
  EXPECT_TRUE(eventually([&] { return ask(get("/health")).status() == 200; }));
}

TEST_F(FakeServer, ClientClosingMidStreamCancelsTheTask) {
  start({}, {"FAKE_TOKEN_DELAY_MS=20"});
  {
    Client c(port_);
    ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body({{"stream", true}, {"max_tokens", 500}}))));
    ASSERT_TRUE(c.read_head());
    ASSERT_TRUE(c.read_chunk());
    ASSERT_TRUE(c.read_chunk());
  }  // closed here
  std::optional<int> k;
  ASSERT_TRUE(eventually([&] { return (k = cancelled_after(log(), 500)).has_value(); }, 5s)) << log();
  EXPECT_GE(*k, 2);
  EXPECT_LT(*k, 100);
  // The server goes on serving.
  EXPECT_EQ(ask(get("/health")).status(), 200);
}

TEST_F(FakeServer, ClientClosingDuringNonStreamingGenerationCancelsTheTask) {
  start({}, {"FAKE_TOKEN_DELAY_MS=20"});
  {
    Client c(port_);
    ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body({{"max_tokens", 500}}))));
    EXPECT_FALSE(c.read_head(100ms));  // still generating
  }
  std::optional<int> k;
  ASSERT_TRUE(eventually([&] { return (k = cancelled_after(log(), 500)).has_value(); }, 5s)) << log();
  EXPECT_LT(*k, 100);
}

TEST_F(FakeServer, SigtermDuringStreamExitsZeroAndEndsTheStream) {
  start({}, {"FAKE_TOKEN_DELAY_MS=20"});
  Client c(port_);
  ASSERT_TRUE(c.send(post("/v1/chat/completions", chat_body({{"stream", true}, {"max_tokens", 1000}}))));
  ASSERT_TRUE(c.read_head());
  ASSERT_TRUE(c.read_chunk());
  const auto t0 = Clock::now();
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  const auto status = wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << "no exit after SIGTERM";
  EXPECT_LT(Clock::now() - t0, 1s);
  EXPECT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  // The stream just ends: no finish chunk, no [DONE], no last empty chunk.
  std::string rest;
  for (;;) {
    const auto chunk = c.read_chunk(2s);
    if (!chunk) break;
    EXPECT_FALSE(chunk->empty()) << "terminating chunk after SIGTERM";
    if (chunk->empty()) break;
    rest += *chunk;
  }
  EXPECT_EQ(rest.find("[DONE]"), std::string::npos);
  EXPECT_EQ(rest.find("finish_reason\":\"length"), std::string::npos);
}

// --- Tool calls (oaicompat_chat_params_parse, common_chat_msg::to_json_oaicompat,
// server_chat_msg_diff_to_json_oaicompat) ---

TEST_F(FakeServer, ToolCallNonStreaming) {
  start();
  auto r = ask(post("/v1/chat/completions", json{{"messages", user_says("What is the weather? Use a Tool.")},
                                                 {"tools", json::array({kWeatherTool, kTimeTool})}}
                                                .dump()));
  ASSERT_EQ(r.status(), 200) << r.body;
  const json j = r.body_json();
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  const auto message = nlohmann::ordered_json::parse(r.body)["choices"][0]["message"];
  EXPECT_EQ(keys_in_order(message), (std::vector<std::string>{"role", "content", "tool_calls"}));
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_EQ(message["content"], "");  // a string, not null
  ASSERT_EQ(message["tool_calls"].size(), 1u);
  const auto& call = message["tool_calls"][0];
  EXPECT_EQ(keys_in_order(call), (std::vector<std::string>{"type", "function", "id"}));
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(keys_in_order(call["function"]), (std::vector<std::string>{"name", "arguments"}));
  EXPECT_EQ(call["function"]["name"], "get_weather");  // the first tool
  ASSERT_TRUE(call["function"]["arguments"].is_string());
  // The first string property of the schema gets "Paris".
  EXPECT_EQ(json::parse(call["function"]["arguments"].get<std::string>()), json({{"city", "Paris"}}));
  EXPECT_TRUE(is_alnum32(call["id"].get<std::string>())) << call["id"];
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);  // the call's head + 3 argument pieces
  EXPECT_EQ(j["timings"]["predicted_n"], 4);

  // A tool without parameters: {"location":"Paris"}.
  auto plain = ask(post("/v1/chat/completions",
                        json{{"messages", user_says("tool please")}, {"tools", json::array({kTimeTool})}}.dump()))
                   .body_json();
  const auto& plain_call = plain["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(plain_call["function"]["name"], "get_time");
  EXPECT_EQ(json::parse(plain_call["function"]["arguments"].get<std::string>()), json({{"location", "Paris"}}));

  // No "tool" in the last user message: an ordinary answer, tools or not.
  auto answer =
      ask(post("/v1/chat/completions", json{{"messages", json::array({{{"role", "user"}, {"content", "a tool?"}},
                                                                      {{"role", "assistant"}, {"content", "yes"}},
                                                                      {{"role", "user"}, {"content", "Say hello"}}})},
                                            {"tools", json::array({kWeatherTool})}}
                                           .dump()))
          .body_json();
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(answer["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hello from fake"}}));
  // tool_choice "required" calls anyway; "none" never does.
  auto required = ask(post("/v1/chat/completions", json{{"messages", user_says("Say hello")},
                                                        {"tools", json::array({kWeatherTool})},
                                                        {"tool_choice", "required"}}
                                                       .dump()))
                      .body_json();
  EXPECT_EQ(required["choices"][0]["finish_reason"], "tool_calls");
  auto none = ask(post("/v1/chat/completions", json{{"messages", user_says("use a tool")},
                                                    {"tools", json::array({kWeatherTool})},
                                                    {"tool_choice", "none"}}
                                                   .dump()))
                  .body_json();
  EXPECT_EQ(none["choices"][0]["message"]["content"], "Hello from fake");
  EXPECT_FALSE(none["choices"][0]["message"].contains("tool_calls"));
  // The text parts of an array count as the message's text.
  auto parts =
      ask(post("/v1/chat/completions",
               json{{"messages", json::array({{{"role", "user"},
                                               {"content", json::array({{{"type", "text"}, {"text", "a "}},
                                                                        {{"type", "text"}, {"text", "TOOL"}}})}}})},
                    {"tools", json::array({kWeatherTool})}}
                   .dump()))
          .body_json();
  EXPECT_EQ(parts["choices"][0]["finish_reason"], "tool_calls");
  // A limit shorter than the call cuts it: "length", arguments so far.
  auto cut =
      ask(post("/v1/chat/completions",
               json{{"messages", user_says("tool")}, {"tools", json::array({kTimeTool})}, {"max_tokens", 2}}.dump()))
          .body_json();
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(cut["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"locat");
  // A generous limit changes nothing: the call ends the generation.
  auto roomy =
      ask(post("/v1/chat/completions",
               json{{"messages", user_says("tool")}, {"tools", json::array({kTimeTool})}, {"max_tokens", 50}}.dump()))
          .body_json();
  EXPECT_EQ(roomy["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(roomy["usage"]["completion_tokens"], 4);
}

TEST_F(FakeServer, ToolCallStreaming) {
  start();
  auto r = ask(post("/v1/chat/completions", json{{"messages", user_says("use the tool")},
                                                 {"tools", json::array({kTimeTool})},
                                                 {"stream", true},
                                                 {"stream_options", {{"include_usage", true}}}}
                                                .dump()));
  ASSERT_EQ(r.status(), 200) << r.body;
  const auto ev = sse_events_ordered(r.body);
  // role, call head, 3 argument pieces, finish, usage; then [DONE]
  ASSERT_EQ(ev.size(), 7u) << r.body;
  EXPECT_EQ(sse_events(r.body).back(), "[DONE]");
  EXPECT_EQ(ev[0]["choices"][0]["delta"], nlohmann::ordered_json({{"role", "assistant"}, {"content", nullptr}}));

  const auto& head_call = ev[1]["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(keys_in_order(ev[1]["choices"][0]["delta"]), (std::vector<std::string>{"tool_calls"}));
  EXPECT_EQ(keys_in_order(head_call), (std::vector<std::string>{"index", "id", "type", "function"}));
  EXPECT_EQ(head_call["index"], 0);
  EXPECT_TRUE(is_alnum32(head_call["id"].get<std::string>())) << head_call;
  EXPECT_EQ(head_call["type"], "function");
  // Empty arguments are left out of the head (server_chat_msg_diff_to_json_oaicompat).
  EXPECT_EQ(head_call["function"], nlohmann::ordered_json({{"name", "get_time"}}));

  std::string arguments;
  for (size_t i = 2; i < 5; ++i) {
    EXPECT_TRUE(ev[i]["choices"][0]["finish_reason"].is_null());
    const auto& call = ev[i]["choices"][0]["delta"]["tool_calls"][0];
    EXPECT_EQ(keys_in_order(call), (std::vector<std::string>{"index", "function"})) << call;
    EXPECT_EQ(keys_in_order(call["function"]), (std::vector<std::string>{"arguments"}));
    const std::string piece = call["function"]["arguments"];
    EXPECT_FALSE(piece.empty());
    arguments += piece;
  }
  EXPECT_EQ(json::parse(arguments), json({{"location", "Paris"}}));
  EXPECT_EQ(ev[5]["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(ev[5]["choices"][0]["delta"], nlohmann::ordered_json::object());
  EXPECT_EQ(ev[6]["choices"], nlohmann::ordered_json::array());
  EXPECT_EQ(ev[6]["usage"]["completion_tokens"], 4);
  EXPECT_EQ(ev[6]["timings"]["predicted_n"], 4);
  // The role chunk and the call's head share the first HTTP chunk; then one per token.
  ASSERT_EQ(r.chunks.size(), 5u);
  EXPECT_EQ(sse_events(r.chunks[0]).size(), 2u);
}

TEST_F(FakeServer, ToolRequestErrorsAreTheRealOnes) {
  start();
  const json tools = json::array({kTimeTool});
  auto choice = ask(post("/v1/chat/completions",
                         json{{"messages", user_says("tool")}, {"tools", tools}, {"tool_choice", "sometimes"}}.dump()));
  EXPECT_EQ(choice.status(), 400);
  EXPECT_EQ(choice.body_json()["error"]["message"], "Invalid tool_choice: sometimes");
  EXPECT_EQ(choice.body_json()["error"]["type"], "invalid_request_error");
  auto bad = ask(
      post("/v1/chat/completions",
           json{{"messages", user_says("tool")}, {"tools", json::array({{{"function", {{"name", "x"}}}}})}}.dump()));
  EXPECT_EQ(bad.status(), 500);
  EXPECT_EQ(
      bad.body_json()["error"]["message"].get<std::string>().rfind("Failed to parse tools: Missing tool type: ", 0), 0u)
      << bad.body;

  start({"--no-jinja"});
  auto no_jinja = ask(post("/v1/chat/completions", json{{"messages", user_says("tool")}, {"tools", tools}}.dump()));
  EXPECT_EQ(no_jinja.status(), 500);
  EXPECT_EQ(no_jinja.body_json(), json::parse(R"({"error":{"code":500,"message":"tools param requires --jinja flag",)"
                                              R"("type":"server_error"}})"));
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body())).status(), 200);
}

// --- Reasoning (FAKE_THINKING) ---

TEST_F(FakeServer, ThinkingModelSendsReasoningContent) {
  start({}, {"FAKE_THINKING=1"});
  auto r = ask(post("/v1/chat/completions", chat_body()));
  ASSERT_EQ(r.status(), 200) << r.body;
  const auto message = nlohmann::ordered_json::parse(r.body)["choices"][0]["message"];
  EXPECT_EQ(message,
            nlohmann::ordered_json(
                {{"role", "assistant"}, {"content", "Hello from fake"}, {"reasoning_content", "Let me think"}}));
  const json j = r.body_json();
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);  // reasoning tokens count
  EXPECT_EQ(j["timings"]["predicted_n"], 6);

  auto s = ask(post("/v1/chat/completions", chat_body({{"stream", true}})));
  const auto ev = sse_events(s.body);
  ASSERT_EQ(ev.size(), 9u) << s.body;  // role, 3 reasoning, 3 content, finish, [DONE]
  EXPECT_EQ(ev[0]["choices"][0]["delta"], json({{"role", "assistant"}, {"content", nullptr}}));
  const char* thoughts[] = {"Let", " me", " think"};
  const char* words[] = {"Hello", " from", " fake"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ev[1 + i]["choices"][0]["delta"], json({{"reasoning_content", thoughts[i]}}));
    EXPECT_EQ(ev[4 + i]["choices"][0]["delta"], json({{"content", words[i]}}));
  }
  EXPECT_EQ(ev[7]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(ev[7]["timings"]["predicted_n"], 6);
  EXPECT_EQ(s.chunks.size(), 7u);  // one HTTP chunk per token, then the final events

  // The limit counts reasoning tokens too.
  auto cut = ask(post("/v1/chat/completions", chat_body({{"max_tokens", 2}}))).body_json();
  EXPECT_EQ(cut["choices"][0]["message"],
            json({{"role", "assistant"}, {"content", ""}, {"reasoning_content", "Let me"}}));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "length");

  // enable_thinking false: no reasoning at all.
  auto off = ask(post("/v1/chat/completions", chat_body({{"chat_template_kwargs", {{"enable_thinking", false}}}})))
                 .body_json();
  EXPECT_EQ(off["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hello from fake"}}));
  EXPECT_EQ(off["usage"]["completion_tokens"], 3);
  auto as_string =
      ask(post("/v1/chat/completions", chat_body({{"chat_template_kwargs", {{"enable_thinking", "false"}}}})));
  EXPECT_EQ(as_string.status(), 400);
  EXPECT_EQ(as_string.body_json()["error"]["message"],
            "invalid type for \"enable_thinking\" (expected boolean, got string)");

  // reasoning_format none: the thinking stays in content, between <think> tags.
  auto none = ask(post("/v1/chat/completions", chat_body({{"reasoning_format", "none"}}))).body_json();
  EXPECT_EQ(none["choices"][0]["message"],
            json({{"role", "assistant"}, {"content", "<think>Let me think</think>Hello from fake"}}));
  auto none_stream =
      sse_events(ask(post("/v1/chat/completions", chat_body({{"reasoning_format", "none"}, {"stream", true}}))).body);
  ASSERT_GE(none_stream.size(), 4u);
  EXPECT_EQ(none_stream[1]["choices"][0]["delta"], json({{"content", "<think>Let"}}));
  EXPECT_EQ(none_stream[3]["choices"][0]["delta"], json({{"content", " think</think>"}}));
  auto deepseek = ask(post("/v1/chat/completions", chat_body({{"reasoning_format", "deepseek"}}))).body_json();
  EXPECT_EQ(deepseek["choices"][0]["message"]["reasoning_content"], "Let me think");
  auto unknown = ask(post("/v1/chat/completions", chat_body({{"reasoning_format", "deep_think"}})));
  EXPECT_EQ(unknown.status(), 500);
  EXPECT_EQ(unknown.body_json()["error"]["message"], "Unknown reasoning format: deep_think");

  // Without FAKE_THINKING the model does not think, whatever the request says.
  start();
  auto plain =
      ask(post("/v1/chat/completions", chat_body({{"chat_template_kwargs", {{"enable_thinking", true}}}}))).body_json();
  EXPECT_EQ(plain["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Hello from fake"}}));
  // --reasoning-format none sets the default.
  start({"--reasoning-format", "none"}, {"FAKE_THINKING=1"});
  EXPECT_EQ(ask(post("/v1/chat/completions", chat_body())).body_json()["choices"][0]["message"]["content"],
            "<think>Let me think</think>Hello from fake");
}

// --- response_format ---

TEST_F(FakeServer, ResponseFormatGivesJson) {
  start();
  const json object_schema = {{"type", "json_object"}, {"schema", {{"type", "object"}}}};
  auto r = ask(post("/v1/chat/completions", chat_body({{"response_format", object_schema}})));
  ASSERT_EQ(r.status(), 200) << r.body;
  const json j = r.body_json();
  EXPECT_EQ(json::parse(j["choices"][0]["message"]["content"].get<std::string>()), json({{"fake", true}}));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);

  const json schema = {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", {{"type", "object"}}}}}};
  auto s = ask(post("/v1/chat/completions", chat_body({{"response_format", schema}, {"stream", true}})));
  const auto ev = sse_events(s.body);
  ASSERT_EQ(ev.size(), 8u) << s.body;  // role, 5 pieces, finish, [DONE]
  std::string text;
  for (size_t i = 1; i < 6; ++i) text += ev[i]["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(json::parse(text), json({{"fake", true}}));
  EXPECT_EQ(ev[6]["choices"][0]["finish_reason"], "stop");

  // The top-level json_schema (a llama.cpp extension) too; "text" is plain.
  auto top = ask(post("/v1/chat/completions", chat_body({{"json_schema", {{"type", "object"}}}}))).body_json();
  EXPECT_EQ(top["choices"][0]["message"]["content"], "{\"fake\":true}");
  auto text_format = ask(post("/v1/chat/completions", chat_body({{"response_format", {{"type", "text"}}}})));
  EXPECT_EQ(text_format.body_json()["choices"][0]["message"]["content"], "Hello from fake");
  // json_object without a schema: llama.cpp builds no grammar from the empty schema.
  auto bare = ask(post("/v1/chat/completions", chat_body({{"response_format", {{"type", "json_object"}}}})));
  EXPECT_EQ(bare.body_json()["choices"][0]["message"]["content"], "Hello from fake");

  auto bad = ask(post("/v1/chat/completions", chat_body({{"response_format", {{"type", "yaml"}}}})));
  EXPECT_EQ(bad.status(), 400);
  EXPECT_EQ(bad.body_json(),
            json::parse(R"({"error":{"code":400,"message":"response_format type must be one of \"text\" or )"
                        R"(\"json_object\", but got: yaml","type":"invalid_request_error"}})"));
}

// --- Content arrays and images ---

TEST_F(FakeServer, ImagesNeedAProjector) {
  start();
  const json image_msg =
      json::array({{{"role", "user"},
                    {"content", json::array({{{"type", "text"}, {"text", "What is this?"}},
                                             {{"type", "image_url"}, {"image_url", {{"url", kPngDataUrl}}}}})}}});
  auto r = ask(post("/v1/chat/completions", json{{"messages", image_msg}}.dump()));
  EXPECT_EQ(r.status(), 500);
  EXPECT_EQ(r.body_json(),
            json::parse(R"({"error":{"code":500,"message":"image input is not supported - hint: if this )"
                        R"(is unexpected, you may need to provide the mmproj","type":"server_error"}})"));
  // The same as a stream: an ordinary HTTP error, no SSE.
  auto s = ask(post("/v1/chat/completions", json{{"messages", image_msg}, {"stream", true}}.dump()));
  EXPECT_EQ(s.status(), 500);
  EXPECT_FALSE(s.head.chunked());

  const json audio_msg = json::array(
      {{{"role", "user"},
        {"content",
         json::array({{{"type", "input_audio"}, {"input_audio", {{"data", "AAAA"}, {"format", "wav"}}}}})}}});
  auto audio = ask(post("/v1/chat/completions", json{{"messages", audio_msg}}.dump()));
  EXPECT_EQ(audio.status(), 500);
  EXPECT_EQ(audio.body_json()["error"]["message"],
            "audio input is not supported - hint: if this is unexpected, you may need to provide the mmproj");

  // Text-only arrays work, and count as text.
  const json text_msg = json::array(
      {{{"role", "user"},
        {"content", json::array({{{"type", "text"}, {"text", "hi"}}, {{"type", "text"}, {"text", "there"}}})}}});
  auto text = ask(post("/v1/chat/completions", json{{"messages", text_msg}}.dump()));
  ASSERT_EQ(text.status(), 200) << text.body;
  EXPECT_EQ(text.body_json()["choices"][0]["message"]["content"], "Hello from fake");

  const json odd_msg =
      json::array({{{"role", "user"}, {"content", json::array({{{"type", "video"}, {"video", "x"}}})}}});
  auto odd = ask(post("/v1/chat/completions", json{{"messages", odd_msg}}.dump()));
  EXPECT_EQ(odd.status(), 400);
  EXPECT_EQ(odd.body_json()["error"]["message"], "unsupported content[].type");
  auto no_content = ask(post("/v1/chat/completions", R"({"messages":[{"role":"user"}]})"));
  EXPECT_EQ(no_content.status(), 400);
  EXPECT_EQ(no_content.body_json()["error"]["message"], "All non-assistant messages must contain 'content'");
  auto no_role = ask(post("/v1/chat/completions", R"({"messages":[{"content":"hi"}]})"));
  EXPECT_EQ(no_role.status(), 500);
  EXPECT_EQ(no_role.body_json()["error"]["message"],
            R"(Failed to parse messages: Missing 'role' in message: {"content":"hi"})");
}

TEST_F(FakeServer, ImagesWithAProjector) {
  start({"--mmproj", "mmproj.gguf"});
  auto models = ask(get("/v1/models")).body_json();
  EXPECT_EQ(models["models"][0]["capabilities"], json::array({"completion", "multimodal"}));
  auto with_image = [](const std::string& url) {
    return json{{"messages",
                 json::array({{{"role", "user"},
                               {"content", json::array({{{"type", "text"}, {"text", "What is this?"}},
                                                        {{"type", "image_url"}, {"image_url", {{"url", url}}}}})}}})}}
        .dump();
  };
  auto r = ask(post("/v1/chat/completions", with_image(kPngDataUrl)));
  ASSERT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(r.body_json()["choices"][0]["message"]["content"], "Hello from fake");
  EXPECT_GT(r.body_json()["usage"]["prompt_tokens"].get<int>(), 256);  // the image's tokens

  auto garbage = ask(post("/v1/chat/completions", with_image("data:image/png;base64,bm90IGFuIGltYWdl")));
  EXPECT_EQ(garbage.status(), 400);
  EXPECT_EQ(garbage.body_json()["error"]["message"], "Failed to load image or audio file");
  auto not_image = ask(post("/v1/chat/completions", with_image("data:text/plain;base64,aGk=")));
  EXPECT_EQ(not_image.status(), 500);
  EXPECT_EQ(not_image.body_json()["error"]["message"], "Invalid url format: data:text/plain;base64");
  auto not_base64 = ask(post("/v1/chat/completions", with_image("data:image/png;utf8,xx")));
  EXPECT_EQ(not_base64.body_json()["error"]["message"], "url must be base64 encoded");
  auto no_comma = ask(post("/v1/chat/completions", with_image("iVBORw0KGgo")));
  EXPECT_EQ(no_comma.body_json()["error"]["message"], "Invalid url value");
}

// --- /infill ---

TEST_F(FakeServer, InfillNeedsFimTokens) {
  start();
  const std::string expected =
      R"({"error":{"code":501,"message":"Infill is not supported by this model: prefix token is missing. )"
      R"(suffix token is missing. middle token is missing. ","type":"not_supported_error"}})";
  auto r = ask(post("/infill", R"({"input_prefix":"def f(","input_suffix":"\n"})"));
  EXPECT_EQ(r.status(), 501);
  EXPECT_EQ(r.body, expected);
  // The check comes before the body is read.
  EXPECT_EQ(ask(post("/infill", "{not json")).body, expected);
}

TEST_F(FakeServer, InfillAnswersLikeCompletion) {
  start({}, {"FAKE_FIM=1"});
  auto r = ask(post("/infill", R"({"input_prefix":"def add(a, b):\n    return ","input_suffix":"\n","n_predict":2})"));
  ASSERT_EQ(r.status(), 200) << r.body;
  const json j = r.body_json();
  EXPECT_EQ(j["content"], "Hello from");
  EXPECT_EQ(j["stop"], true);
  EXPECT_EQ(j["stop_type"], "limit");
  EXPECT_EQ(j["tokens_predicted"], 2);
  EXPECT_EQ(j["prompt"], "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n<|fim_middle|>");
  EXPECT_EQ(j["timings"]["prompt_n"], j["tokens_evaluated"]);
  for (const auto& k : kTimingKeys) EXPECT_TRUE(j["timings"].contains(k)) << k;
  EXPECT_FALSE(j.contains("choices"));  // not OAI-compatible

  auto longer = ask(post("/infill", R"({"input_prefix":"def add(a, b):\n    return ","input_suffix":"\n",)"
                                    R"("prompt":"a +","input_extra":[{"filename":"m.py","text":"import os\n"}]})"))
                    .body_json();
  EXPECT_GT(longer["tokens_evaluated"].get<int>(), j["tokens_evaluated"].get<int>());
  EXPECT_EQ(
      longer["prompt"],
      "\n\n--- snippet ---\n\nimport os\n<|fim_prefix|>def add(a, b):\n    return a +<|fim_suffix|>\n<|fim_middle|>");

  auto s = ask(post("/infill", R"({"input_prefix":"x = ","input_suffix":"","stream":true})"));
  ASSERT_EQ(s.status(), 200);
  EXPECT_TRUE(s.head.chunked());
  const auto ev = sse_events(s.body);
  ASSERT_EQ(ev.size(), 4u) << s.body;
  EXPECT_EQ(ev[0]["content"], "Hello");
  EXPECT_EQ(ev[2]["stop"], false);
  EXPECT_EQ(ev[3]["stop"], true);
  EXPECT_EQ(s.body.find("[DONE]"), std::string::npos);

  auto missing = ask(post("/infill", R"({"input_suffix":"\n"})"));
  EXPECT_EQ(missing.status(), 500);
  EXPECT_EQ(missing.body_json()["error"]["message"], "[json.exception.out_of_range.403] key 'input_prefix' not found");
  auto extra = ask(post("/infill", R"({"input_prefix":"a","input_suffix":"b","input_extra":"c"})"));
  EXPECT_EQ(extra.status(), 400);
  EXPECT_EQ(extra.body_json()["error"]["message"],
            R"("input_extra" must be an array of {"filename": string, "text": string})");
  auto chunk = ask(post("/infill", R"({"input_prefix":"a","input_suffix":"b","input_extra":[{"filename":"f"}]})"));
  EXPECT_EQ(chunk.status(), 400);
  EXPECT_EQ(chunk.body_json()["error"]["message"],
            R"(extra_context chunk must contain a "text" field with a string value)");
}

// --- usage and timings ---

TEST_F(FakeServer, UsageAndTimingsAreShapedAsReal) {
  start();
  const std::vector<std::string> usage_keys = {"completion_tokens", "prompt_tokens", "total_tokens",
                                               "prompt_tokens_details"};
  auto r = ask(post("/v1/chat/completions", chat_body()));
  const auto j = nlohmann::ordered_json::parse(r.body);
  EXPECT_EQ(keys_in_order(j), (std::vector<std::string>{"choices", "created", "model", "system_fingerprint", "object",
                                                        "usage", "id", "timings"}));
  EXPECT_EQ(keys_in_order(j["usage"]), usage_keys);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"], nlohmann::ordered_json({{"cached_tokens", 0}}));
  EXPECT_EQ(keys_in_order(j["timings"]), kTimingKeys);
  EXPECT_EQ(j["timings"]["cache_n"], 0);
  EXPECT_EQ(j["timings"]["prompt_n"], j["usage"]["prompt_tokens"]);
  EXPECT_EQ(j["timings"]["predicted_n"], j["usage"]["completion_tokens"]);
  for (const char* k : {"prompt_ms", "prompt_per_token_ms", "prompt_per_second", "predicted_ms",
                        "predicted_per_token_ms", "predicted_per_second"})
    EXPECT_TRUE(j["timings"][k].is_number()) << k;
  EXPECT_GT(j["timings"]["predicted_per_second"].get<double>(), 0.0);

  // The last streamed chunk: usage (with include_usage) and the same timings.
  auto s =
      ask(post("/v1/chat/completions", chat_body({{"stream", true}, {"stream_options", {{"include_usage", true}}}})));
  const auto ev = sse_events_ordered(s.body);
  ASSERT_FALSE(ev.empty());
  const auto& last = ev.back();
  EXPECT_EQ(keys_in_order(last), (std::vector<std::string>{"choices", "created", "id", "model", "system_fingerprint",
                                                           "object", "usage", "timings"}));
  EXPECT_EQ(keys_in_order(last["usage"]), usage_keys);
  EXPECT_EQ(keys_in_order(last["timings"]), kTimingKeys);
  EXPECT_EQ(last["timings"]["predicted_n"], 3);

  // /v1/completions uses the same usage object.
  auto text = nlohmann::ordered_json::parse(ask(post("/v1/completions", R"({"prompt":"Once"})")).body);
  EXPECT_EQ(keys_in_order(text["usage"]), usage_keys);

  // Prompt tokens follow the prompt's length.
  auto short_prompt = ask(post("/v1/chat/completions", json{{"messages", user_says("hi")}}.dump())).body_json();
  auto long_prompt =
      ask(post("/v1/chat/completions", json{{"messages", user_says(std::string(400, 'x'))}}.dump())).body_json();
  EXPECT_EQ(long_prompt["usage"]["prompt_tokens"].get<int>() - short_prompt["usage"]["prompt_tokens"].get<int>(), 99);
  auto two_messages =
      ask(post("/v1/chat/completions", json{{"messages", json::array({{{"role", "system"}, {"content", "hi"}},
                                                                      {{"role", "user"}, {"content", "hi"}}})}}
                                           .dump()))
          .body_json();
  EXPECT_GT(two_messages["usage"]["prompt_tokens"].get<int>(), short_prompt["usage"]["prompt_tokens"].get<int>());
}

// ---------------------------------------------------------------------------
// Agent APIs, shaped as shared/reference/llama-server-agent-api-transcripts.txt

// Each SSE event's "event:" name, in order.
std::vector<std::string> sse_names(const std::string& body) {
  std::vector<std::string> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("event: ", 0) == 0) out.push_back(line.substr(7));
  return out;
}

std::vector<std::string> keys_of(const json& j) {
  std::vector<std::string> out;
  for (const auto& [k, v] : j.items()) out.push_back(k);
  return out;
}

// The field order of the raw body's top-level object (nlohmann::json sorts keys).
std::vector<std::string> raw_keys(const std::string& body) {
  std::vector<std::string> out;
  auto cb = [&out](int d, nlohmann::json::parse_event_t e, json& parsed) {
    if (e == nlohmann::json::parse_event_t::key && d == 1) out.push_back(parsed.get<std::string>());
    return true;
  };
  const json parsed = json::parse(body, cb, false);
  return parsed.is_discarded() ? std::vector<std::string>{} : out;
}

TEST_F(FakeServer, ResponsesNonStreamingIsShapedAsReal) {
  start();
  auto r = ask(post("/v1/responses", R"({"model":"x","input":"Say hi","max_output_tokens":4})"));
  ASSERT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(r.head.header("content-type"), "application/json; charset=utf-8");
  EXPECT_EQ(raw_keys(r.body), (std::vector<std::string>{"completed_at", "created_at", "id", "model", "object", "output",
                                                        "status", "usage"}));
  const json j = r.body_json();
  EXPECT_EQ(j["id"].get<std::string>().rfind("resp_", 0), 0u);
  EXPECT_EQ(j["id"].get<std::string>().size(), 5u + 32u);
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  ASSERT_EQ(j["output"].size(), 1u);
  const json& item = j["output"][0];
  EXPECT_EQ(item["id"].get<std::string>().rfind("msg_", 0), 0u);
  EXPECT_EQ(item["type"], "message");
  EXPECT_EQ(item["role"], "assistant");
  EXPECT_EQ(item["content"][0], json({{"type", "output_text"},
                                      {"annotations", json::array()},
                                      {"logprobs", json::array()},
                                      {"text", "Hello from fake token"}}));
  EXPECT_EQ(j["usage"]["output_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(), 4 + j["usage"]["input_tokens"].get<int>());
  EXPECT_EQ(j["usage"]["input_tokens_details"]["cached_tokens"], 0);
  EXPECT_FALSE(j.contains("timings"));
  // /responses is the same route; an input that is neither string nor array is 400.
  EXPECT_EQ(ask(post("/responses", R"({"input":[{"role":"user","content":"hi"}]})")).status(), 200);
  auto bad = ask(post("/v1/responses", R"({"input":7})"));
  EXPECT_EQ(bad.status(), 400);
  EXPECT_EQ(bad.body_json()["error"]["message"], "'input' must be a string or array of objects");
}

TEST_F(FakeServer, ResponsesStreamIsShapedAsReal) {
  start();
  auto r = ask(post("/v1/responses", R"({"input":"Say hi","stream":true})"));
  ASSERT_EQ(r.status(), 200);
  EXPECT_TRUE(r.head.chunked());
  EXPECT_EQ(r.head.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.head.header("x-accel-buffering"), "no");
  EXPECT_EQ(
      sse_names(r.body),
      (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                "response.content_part.added", "response.output_text.delta",
                                "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
                                "response.content_part.done", "response.output_item.done", "response.completed"}));
  const auto ev = sse_events(r.body);
  ASSERT_EQ(ev.size(), 11u);
  for (const auto& e : ev) EXPECT_NE(e, "[DONE]");
  const std::string resp_id = ev[0]["response"]["id"];
  const std::string msg_id = ev[2]["item"]["id"];
  EXPECT_EQ(ev[0]["response"], json({{"id", resp_id}, {"object", "response"}, {"status", "in_progress"}}));
  EXPECT_EQ(ev[4]["item_id"], msg_id);
  EXPECT_EQ(ev[4]["delta"], "Hello");
  EXPECT_EQ(ev[7]["text"], "Hello from fake");
  const json& done = ev[10];
  EXPECT_EQ(keys_of(done), (std::vector<std::string>{"response", "timings", "type"}));
  EXPECT_EQ(done["response"]["id"], resp_id);
  EXPECT_EQ(done["response"]["status"], "completed");
  EXPECT_EQ(done["response"]["model"], "tiny");
  EXPECT_EQ(done["response"]["output"][0]["content"][0]["text"], "Hello from fake");
  EXPECT_EQ(done["response"]["usage"]["output_tokens"], 3);
  EXPECT_EQ(done["timings"]["predicted_n"], 3);
  // The opening events go out with the first token, then one HTTP chunk per token.
  ASSERT_EQ(r.chunks.size(), 4u);
  EXPECT_EQ(sse_names(r.chunks[0]).size(), 5u);
}

TEST_F(FakeServer, MessagesNonStreamingIsShapedAsReal) {
  start();
  auto r = ask(post("/v1/messages",
                    R"({"model":"x","max_tokens":4,"system":"be brief","messages":[{"role":"user","content":"hi"}]})"));
  ASSERT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(raw_keys(r.body), (std::vector<std::string>{"id", "type", "role", "content", "model", "stop_reason",
                                                        "stop_sequence", "usage"}));
  const json j = r.body_json();
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["type"], "message");
  EXPECT_EQ(j["content"], json::parse(R"([{"type":"text","text":"Hello from fake token"}])"));
  EXPECT_EQ(j["model"], "tiny");
  EXPECT_EQ(j["stop_reason"], "max_tokens");
  EXPECT_TRUE(j["stop_sequence"].is_null());
  EXPECT_EQ(j["usage"]["output_tokens"], 4);
  EXPECT_EQ(j["usage"]["cache_read_input_tokens"], 0);
  EXPECT_GT(j["usage"]["input_tokens"].get<int>(), 0);
  // Without max_tokens the fake model ends on its own.
  auto natural = ask(post("/v1/messages", R"({"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]})"));
  EXPECT_EQ(natural.body_json()["stop_reason"], "end_turn");
  auto missing = ask(post("/v1/messages", R"({"max_tokens":4})"));
  EXPECT_EQ(missing.status(), 500);
  EXPECT_EQ(missing.body_json()["error"]["message"], "'messages' is required");
}

TEST_F(FakeServer, MessagesStreamIsShapedAsReal) {
  start();
  auto r = ask(post("/v1/messages", R"({"max_tokens":3,"stream":true,"messages":[{"role":"user","content":"hi"}]})"));
  ASSERT_EQ(r.status(), 200);
  EXPECT_EQ(r.head.header("content-type"), "text/event-stream");
  EXPECT_EQ(sse_names(r.body), (std::vector<std::string>{"message_start", "content_block_start", "content_block_delta",
                                                         "content_block_delta", "content_block_delta",
                                                         "content_block_stop", "message_delta", "message_stop"}));
  const auto ev = sse_events(r.body);
  ASSERT_EQ(ev.size(), 8u);
  EXPECT_EQ(ev[0]["message"]["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(ev[0]["message"]["content"], json::array());
  EXPECT_TRUE(ev[0]["message"]["stop_reason"].is_null());
  EXPECT_EQ(ev[0]["message"]["usage"]["output_tokens"], 0);
  EXPECT_EQ(ev[1],
            json::parse(R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"));
  EXPECT_EQ(ev[2],
            json::parse(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"));
  EXPECT_EQ(ev[5], json::parse(R"({"type":"content_block_stop","index":0})"));
  EXPECT_EQ(ev[6], json::parse(R"({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},)"
                               R"("usage":{"output_tokens":3}})"));
  EXPECT_EQ(ev[7], json::parse(R"({"type":"message_stop"})"));
  ASSERT_EQ(r.chunks.size(), 4u);
}

TEST_F(FakeServer, MessagesStreamWithNoTokensStillOpensAndCloses) {
  start();
  auto r = ask(post("/v1/messages", R"({"max_tokens":0,"stream":true,"messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(sse_names(r.body), (std::vector<std::string>{"message_start", "content_block_start", "content_block_stop",
                                                         "message_delta", "message_stop"}));
}

TEST_F(FakeServer, TokenCountRoutes) {
  start();
  const std::string chat = R"({"messages":[{"role":"user","content":"hello there"}]})";
  auto count = ask(post("/v1/messages/count_tokens", chat));
  ASSERT_EQ(count.status(), 200);
  EXPECT_EQ(keys_of(count.body_json()), std::vector<std::string>{"input_tokens"});
  const int n = count.body_json()["input_tokens"];
  // The same prompt counts the same on every route, and as chat's prompt_tokens.
  auto chat_in = ask(post("/v1/chat/completions/input_tokens", chat)).body_json();
  EXPECT_EQ(chat_in, json({{"input_tokens", n}, {"object", "response.input_tokens"}}));
  auto resp_in = ask(post("/v1/responses/input_tokens", R"({"input":"hello there"})")).body_json();
  EXPECT_EQ(resp_in, json({{"input_tokens", n}, {"object", "response.input_tokens"}}));
  EXPECT_EQ(ask(post("/responses/input_tokens", R"({"input":"hello there"})")).body_json(), resp_in);
  EXPECT_EQ(ask(post("/v1/chat/completions", chat)).body_json()["usage"]["prompt_tokens"], n);
}

TEST_F(FakeServer, RerankWithoutTheFlagIsTheReal501) {
  start();
  for (const char* path : {"/v1/rerank", "/v1/reranking", "/rerank", "/reranking"}) {
    auto r = ask(post(path, R"({"query":"q","documents":["a"]})"));
    EXPECT_EQ(r.status(), 501) << path;
    EXPECT_EQ(r.body, R"({"error":{"code":501,"message":"This server does not support reranking. Start it with )"
                      R"(`--reranking`","type":"not_supported_error"}})");
    EXPECT_EQ(r.head.header("connection"), "close");
  }
}

TEST_F(FakeServer, RerankWithTheFlagSortsByScore) {
  start({"--reranking"});
  const std::string body =
      R"({"model":"rr","query":"red apple","documents":["a blue car","a red apple pie","an apple tree"]})";
  auto r = ask(post("/v1/rerank", body));
  ASSERT_EQ(r.status(), 200) << r.body;
  EXPECT_EQ(raw_keys(r.body), (std::vector<std::string>{"model", "object", "usage", "results"}));
  const json j = r.body_json();
  EXPECT_EQ(j["model"], "rr");  // the request's model, as real
  EXPECT_EQ(j["object"], "list");
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"]);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_EQ(j["results"][0]["index"], 1);
  EXPECT_EQ(j["results"][1]["index"], 2);
  EXPECT_EQ(j["results"][2]["index"], 0);
  EXPECT_EQ(raw_keys(j["results"][0].dump()), (std::vector<std::string>{"index", "relevance_score"}));
  for (size_t i = 1; i < 3; ++i)
    EXPECT_GE(j["results"][i - 1]["relevance_score"].get<double>(), j["results"][i]["relevance_score"].get<double>());

  auto top = ask(post("/rerank", R"({"query":"red apple","documents":["x","red apple"],"top_n":1})")).body_json();
  ASSERT_EQ(top["results"].size(), 1u);
  EXPECT_EQ(top["results"][0]["index"], 1);
  EXPECT_EQ(top["model"], "tiny");  // no model in the body: the alias

  auto tei = ask(post("/reranking", R"({"query":"q","texts":["q","z"]})")).body_json();
  ASSERT_TRUE(tei.is_array()) << tei;
  EXPECT_TRUE(tei[0].contains("score"));

  EXPECT_EQ(ask(post("/v1/rerank", R"({"documents":["a"]})")).body_json()["error"]["message"],
            "\"query\" must be provided");
  auto empty = ask(post("/v1/rerank", R"({"query":"q","documents":[]})"));
  EXPECT_EQ(empty.status(), 400);
  EXPECT_EQ(empty.body_json()["error"]["message"], "\"documents\" must be a non-empty string array");
}

TEST_F(FakeServer, ModelByIdIsNotARealRoute) {
  start();
  auto r = ask(get("/v1/models/tiny"));
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.body_json()["error"]["type"], "not_found_error");
}

TEST_F(FakeServer, ClientClosingMidMessagesStreamCancelsTheTask) {
  start({}, {"FAKE_TOKEN_DELAY_MS=20"});
  {
    Client c(port_);
    ASSERT_TRUE(c.send(post("/v1/messages", R"({"max_tokens":500,"stream":true,"messages":[]})")));
    ASSERT_TRUE(c.read_head());
    ASSERT_TRUE(c.read_chunk());
    ASSERT_TRUE(c.read_chunk());
  }
  std::optional<int> k;
  ASSERT_TRUE(eventually([&] { return (k = cancelled_after(log(), 500)).has_value(); }, 5s)) << log();
  EXPECT_LT(*k, 100);
}

}  // namespace
