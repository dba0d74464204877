// A fake llama-server for end-to-end tests and proxy benchmarks. It accepts
// llama-server's flags and imitates what was observed on real runs
// (shared/reference/llama-server-observed.md) and what llama.cpp's
// tools/server code sends (cpp-httplib underneath):
//   - the port is bound before the model "loads"; every path answers 503
//     "Loading model" while loading, /health then answers 200; a bad model
//     file or a taken port exits 1; SIGTERM during loading kills it, SIGTERM
//     when ready exits 0 at once, even with a stream open (the client's
//     stream just ends: no finish chunk, no [DONE], no last empty chunk);
//   - HTTP/1.1 keep-alive (at most 100 requests a connection, 5 s idle, like
//     cpp-httplib); "Connection: close" or HTTP/1.0 end the connection after
//     the answer; request bodies by Content-Length or chunked; a request
//     line or header that does not parse gets 400 and the connection closes;
//   - normal answers carry Content-Length; SSE streams are
//     "Transfer-Encoding: chunked", "Content-Type: text/event-stream",
//     "X-Accel-Buffering: no", one HTTP chunk per token, sent at once
//     (TCP_NODELAY), so a proxy test can measure the gaps between chunks;
//   - every answer carries "Server: llama.cpp" and
//     "Access-Control-Allow-Origin: <the request's Origin>".
//
// Routes (POST bodies are JSON; invalid JSON -> 500 server_error, as real):
//   GET  /health /v1/health      {"status":"ok"}
//   GET  /models /v1/models      the model (id = --alias, else the -m path);
//                                capabilities ["completion","multimodal"] with --mmproj
//   POST /v1/chat/completions /chat/completions
//        N tokens: "Hello", " from", " fake", then " token" again and again.
//        N = n_predict, else max_completion_tokens, else max_tokens
//        (finish_reason "length"), else 3 (finish_reason "stop").
//        Non-streaming: one chat.completion with usage and timings; message
//        {role, content (always a string, "" when empty), reasoning_content
//        (only when non-empty), tool_calls (only when any)}, as llama.cpp's
//        common_chat_msg::to_json_oaicompat().
//        "stream":true: a chunk with delta {role:"assistant",content:null}
//        and the first token's delta (one HTTP chunk, as real), one chunk per
//        later token, a chunk with an empty delta and finish_reason, only with
//        stream_options.include_usage a chunk with choices:[] and usage,
//        `timings` on the last of these, then "data: [DONE]".
//        usage is {completion_tokens, prompt_tokens, total_tokens,
//        prompt_tokens_details:{cached_tokens:0}}; completion_tokens and
//        timings.predicted_n count every generated token, reasoning included.
//        Prompt tokens: 1 + per message 4 + (content bytes + 3) / 4, plus the
//        tools' JSON the same way, plus 256 per image (with --mmproj).
//      Tool calls: when "tools" is a non-empty array, tool_choice is not
//        "none", and tool_choice is "required" or the last user message's
//        text contains "tool" (any case), the reply is a call of the FIRST
//        tool: arguments {"location":"Paris"}, or, when its
//        parameters.properties is a non-empty object, {"<first property of
//        type string (or untyped)>":"Paris"} ({} when there is none). 1 + 3
//        tokens: the call's head, then the compact arguments text in three
//        pieces of about equal length; finish_reason "tool_calls" (or
//        "length" when the limit cuts it). Message: content "", tool_calls
//        [{type:"function", function:{name, arguments:"<JSON text>"}, id}],
//        id = 32 random alphanumerics (gen_tool_call_id). Stream deltas:
//        {tool_calls:[{index:0, id, type:"function", function:{name}}]}, then
//        {tool_calls:[{index:0, function:{arguments:"<piece>"}}]} per piece
//        (server_chat_msg_diff_to_json_oaicompat: empty fields left out).
//        Real errors: tools with --no-jinja -> 500 "tools param requires
//        --jinja flag" (tool_choice other than "auto" likewise); a tool
//        without type "function"/function/name -> 500 "Failed to parse tools:
//        ..."; an unknown tool_choice -> 400 "Invalid tool_choice: X".
//      Reasoning (FAKE_THINKING=1): the reply first "thinks" 3 tokens "Let",
//        " me", " think" (counted in N and in completion_tokens), sent as
//        reasoning_content (message.reasoning_content / delta.reasoning_content)
//        for reasoning_format auto (default) and deepseek; with "none" (and
//        "deepseek-legacy" when streaming) they stay in content as
//        "<think>Let", " me", " think</think>". None at all with
//        chat_template_kwargs {"enable_thinking":false}. The request's
//        reasoning_format overrides --reasoning-format; an unknown one ->
//        500 "Unknown reasoning format: X"; enable_thinking given as a
//        string -> 400 'invalid type for "enable_thinking" (expected
//        boolean, got string)'.
//      response_format {"type":"json_object","schema":{...}} /
//        {"type":"json_schema","json_schema":{"schema":{...}}} (or a
//        top-level json_schema) with a non-empty schema object: the answer
//        is {"fake":true} in 5 tokens '{"' 'fake' '":' 'true' '}', finish
//        "stop" (it wins over a tool call). An empty or missing schema (a
//        bare {"type":"json_object"}) builds no grammar in llama.cpp
//        (chat.cpp tests is_object() && !empty()): the answer is plain, as
//        with type "text"; any other type -> 400 'response_format type must
//        be one of "text" or "json_object", but got: X'.
//      Content arrays: "text" parts count as text. "image_url" parts without
//        --mmproj -> 500 "image input is not supported - hint: if this is
//        unexpected, you may need to provide the mmproj" ("input_audio" ->
//        the same with "audio"); with --mmproj a data URL must be
//        "data:image/...;base64,<data>" (else 500 "Invalid url value" /
//        "Invalid url format: X" / "url must be base64 encoded"), its bytes a
//        PNG, JPEG, GIF or BMP (else 400 "Failed to load image or audio
//        file"); http(s) URLs -> 500 "Failed to download image" (no network);
//        file:// URLs -> 400 (no --media-path here).
//        Other part types -> 400 "unsupported content[].type". A non-assistant
//        message without content -> 400 "All non-assistant messages must
//        contain 'content'"; one without role -> 500 "Failed to parse
//        messages: Missing 'role' in message: ...".
//   POST /v1/completions         the same as text_completion (choices[].text);
//                                streams end with usage+timings, then [DONE]
//   POST /completion /completions  native: {content,...,stop:true}; streams
//                                have no [DONE], the last event has stop:true
//   POST /infill                 without FAKE_FIM=1 (the model has no FIM
//                                tokens): 501 not_supported_error "Infill is
//                                not supported by this model: prefix token is
//                                missing. suffix token is missing. middle
//                                token is missing. " (before the body is read).
//                                With it: answered like /completion; prompt
//                                "<|fim_prefix|>" prefix prompt "<|fim_suffix|>"
//                                suffix "<|fim_middle|>" (input_extra texts
//                                first, each after "\n\n--- snippet ---\n\n"),
//                                3 + the parts' tokens. Missing input_prefix
//                                or input_suffix -> 500 (json out_of_range, as
//                                real); bad input_extra -> 400.
//   POST /v1/embeddings          without --embeddings: 501; model pooling
//                                "none" (and no --pooling X): 400; else an
//                                OpenAI list, one L2-normalised vector per input
//   POST /embeddings /embedding  native: [{index, embedding:[[...]]}] (one row
//                                per token with pooling none, unnormalised)
//                                Both: an input over the physical batch (-ub,
//                                -b; default 512) is 500 server_error "input
//                                is too large to process. increase the
//                                physical batch size"; over -c, 400
//                                exceed_context_size_error "input is larger
//                                than the max context size. skipping" with
//                                n_prompt_tokens and n_ctx.
//   POST /tokenize               {content, add_special (false), with_pieces}
//                                -> {tokens:[id...]} (or [{id,piece}]); pieces
//                                of up to 4 bytes, BOS is 1
//   POST /detokenize             {tokens} -> {content}
//   POST /v1/responses /responses  OpenAI Responses: the same tokens as chat
//                                (max_output_tokens the limit); SSE with
//                                "event:" lines, response.created ...
//                                response.completed (usage, timings)
//   POST /v1/messages            Anthropic Messages: the same tokens; SSE
//                                message_start ... message_stop; stop_reason
//                                "max_tokens" or "end_turn"
//   POST /v1/responses/input_tokens /responses/input_tokens
//        /v1/chat/completions/input_tokens
//                                {"input_tokens":N,"object":"response.input_tokens"}
//   POST /v1/messages/count_tokens {"input_tokens":N}
//                                (N counted as for chat's prompt_tokens)
//   POST /v1/rerank /v1/reranking /rerank /reranking
//                                without --reranking: 501 not_supported_error
//                                (Connection: close, as captured); with it,
//                                llama.cpp's Jina-style list sorted by score
//   POST /apply-template         a chat body -> {prompt}: checked as the chat
//                                route checks it (same errors), rendered with
//                                llama.cpp's fallback for a GGUF without a
//                                template, ChatML with the generation prompt:
//                                "<|im_start|>ROLE\nTEXT<|im_end|>\n"... then
//                                "<|im_start|>assistant\n" (TEXT: the string
//                                content, or the text parts joined)
//   anything else                404 {"error":{...,"type":"not_found_error"}},
//                                GET /v1/models/{id} included (as real)
// With --api-key K (or K1,K2): /health, /v1/health, /models, /v1/models stay
// open; the rest need "Authorization: Bearer K" or "X-Api-Key: K", else 401.
// Other flags: --no-jinja (see tool calls), --mmproj F (images accepted),
// --reranking (or --rerank; rerank answers),
// --reasoning-format none|auto|deepseek|deepseek-legacy (default auto).
//
// Token generation takes FAKE_TOKEN_DELAY_MS per token (streaming or not).
// While generating it watches the socket; when the client goes away it stops
// and writes to stderr (the instance log):
//   fake-llama-server: client disconnected, cancelled task <id> after <k> of <n> tokens
//
// Behaviour switches (environment, one behaviour each):
//   FAKE_LOAD_DELAY_MS   loading time (default 100)
//   FAKE_FAIL            refuse (exit 1 at once, as on a taken port) |
//                        crash (exit 1 halfway through loading) | never-healthy
//   FAKE_IGNORE_SIGTERM  1: ignore SIGTERM (tests the SIGKILL escalation)
//   FAKE_GPU_DIR         where to register this process for the mock nvidia-smi
//   FAKE_SERVER_MEM_MIB  GPU memory to report per visible GPU (default 700)
//   FAKE_TOKEN_DELAY_MS  time per generated token (default 5)
//   FAKE_MODEL_POOLING   the model's own pooling type (default none; e.g. mean)
//   FAKE_EMBED_DIM       embedding length (default 128)
//   FAKE_THINKING        1: the chat template thinks (reasoning tokens first)
//   FAKE_FIM             1: the vocabulary has FIM tokens (/infill works)
//   FAKE_REQUEST_DELAY_MS  time each inference request holds its slot before
//                        its answer starts (default 0), so contention is real
//
// Slots: -np/--parallel N (llama-server's default -1, auto, gives 4). At most
// N inference requests run at once; the rest wait for a slot, as in
// llama-server's own queue, and each that waited writes
//   fake-llama-server: request waited for a slot (<N> busy)
// GET /props answers total_slots (and the fields llama-server puts around it).
//
// It builds for Windows too (Winsock), for the Wine end-to-end tests. There,
// as llama-server on Windows does, it stops gracefully on CTRL_C_EVENT once
// loaded and leaves the rest (CTRL_BREAK_EVENT, a closed console) to the
// default handler, which ends the process at once.

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
// winsock2.h must come before windows.h.
#include <process.h>
#include <windows.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// The few socket calls that differ between POSIX and Winsock.
#ifdef _WIN32
using Socket = SOCKET;
constexpr Socket kNoSocket = INVALID_SOCKET;
void close_socket(Socket s) {
  ::closesocket(s);
}
int poll_one(Socket s, short events, int timeout_ms, short& revents) {
  WSAPOLLFD p{s, events, 0};
  const int rc = ::WSAPoll(&p, 1, timeout_ms);
  revents = p.revents;
  return rc;
}
bool interrupted_call() {
  return false;
}
long current_pid() {
  return static_cast<long>(::GetCurrentProcessId());
}
constexpr int kSendFlags = 0;
#else
using Socket = int;
constexpr Socket kNoSocket = -1;
void close_socket(Socket s) {
  ::close(s);
}
int poll_one(Socket s, short events, int timeout_ms, short& revents) {
  pollfd p{s, events, 0};
  const int rc = ::poll(&p, 1, timeout_ms);
  revents = p.revents;
  return rc;
}
bool interrupted_call() {
  return errno == EINTR;
}
long current_pid() {
  return static_cast<long>(::getpid());
}
constexpr int kSendFlags = MSG_NOSIGNAL;
#endif

// The build the observations were made with (llama-server-observed.md).
constexpr const char* kFingerprint = "b10587-3f545bec";
constexpr int kKeepAliveMax = 100;         // cpp-httplib's CPPHTTPLIB_KEEPALIVE_MAX_COUNT
constexpr int kKeepAliveTimeoutMs = 5000;  // cpp-httplib's CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND
constexpr int kReadTimeoutMs = 60000;      // for the rest of a request once it has begun
constexpr size_t kMaxHeaderBytes = 65536;
constexpr size_t kMaxBodyBytes = size_t{1} << 30;

std::atomic<bool> g_ready{false};
std::atomic<bool> g_stop{false};
std::atomic<int> g_next_task{0};
std::string g_reg_file;

// Fixed after the arguments are read, before the accept thread starts.
struct Settings {
  std::string alias = "model";
  bool embeddings = false;
  bool reranking = false;        // --reranking / --rerank: /v1/rerank answers
  std::string pooling = "none";  // effective: --pooling, else the model's own
  std::vector<std::string> api_keys;
  int token_delay_ms = 5;
  int embed_dim = 128;
  int n_ctx = 4096;
  int n_ubatch = 512;                     // physical batch: min(-ub, -b); an embedding input must fit in one
  bool jinja = true;                      // --no-jinja turns the Jinja templates (and tools) off
  bool mmproj = false;                    // --mmproj: a vision projector is loaded
  bool thinking = false;                  // FAKE_THINKING=1: the chat template thinks
  bool fim = false;                       // FAKE_FIM=1: the vocabulary has FIM tokens
  std::string reasoning_format = "auto";  // --reasoning-format
  int slots = 4;                          // -np/--parallel; -1 (auto) gives 4
  int request_delay_ms = 0;               // FAKE_REQUEST_DELAY_MS
  std::string model_path;
};
Settings g_cfg;

// The slots: inference requests beyond them wait, as in llama-server's queue.
class Slots {
 public:
  void acquire() {
    std::unique_lock lock(mu_);
    if (busy_ >= g_cfg.slots) std::fprintf(stderr, "fake-llama-server: request waited for a slot (%d busy)\n", busy_);
    cv_.wait(lock, [&] { return busy_ < g_cfg.slots; });
    ++busy_;
  }
  void release() {
    std::lock_guard lock(mu_);
    --busy_;
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int busy_ = 0;
};
Slots g_slots;

struct SlotHold {
  SlotHold() { g_slots.acquire(); }
  ~SlotHold() { g_slots.release(); }
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;
};

bool is_inference(const std::string& method, const std::string& path) {
  static const std::set<std::string> paths = {
      "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completion",   "/completions", "/infill",
      "/v1/embeddings",       "/embeddings",       "/embedding",      "/v1/responses", "/responses",   "/v1/messages",
      "/v1/rerank",           "/v1/reranking",     "/rerank",         "/reranking"};
  return method == "POST" && paths.count(path) > 0;
}

// GET /props, in llama-server's field order (reference: llama-swap-and-llama-server.md).
std::string props_json() {
  return json{{"default_generation_settings", {{"n_ctx", g_cfg.n_ctx}, {"params", json::object()}}},
              {"total_slots", g_cfg.slots},
              {"model_path", g_cfg.model_path},
              {"chat_template", ""},
              {"chat_template_caps", json::object()},
              {"modalities", {{"vision", g_cfg.mmproj}, {"audio", false}}},
              {"media_marker", "<__media__>"},
              {"build_info", "b0-fake"},
              {"is_sleeping", false}}
      .dump();
}

void on_term(int) {
  g_stop = true;
}

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v ? v : def;
}

int env_int(const char* name, int def, int min_value) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0') return def;
  return static_cast<int>(std::max<long>(min_value, std::min<long>(n, 1 << 30)));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// llama.cpp's json_value(): the default when the key is missing, null or of another type.
template <typename T>
T json_value(const json& body, const char* key, const T& def) {
  if (!body.is_object() || !body.contains(key) || body[key].is_null()) return def;
  try {
    return body[key].get<T>();
  } catch (const json::exception&) {
    return def;
  }
}

// ---------------------------------------------------------------------------
// HTTP

struct Request {
  std::string method, target, path, version;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  bool close = false;  // answer with "Connection: close" and close afterwards
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> extra_headers = {};
};

// An error answer, thrown by the handlers.
struct HttpError {
  int status;
  std::string body;
};

// llama.cpp's format_error_response(): {"code","message","type"}.
HttpError api_error(int status, const std::string& message, const std::string& type) {
  return {status, dump(json{{"error", {{"code", status}, {"message", message}, {"type", type}}}})};
}

// What llama-server's ex_wrapper() makes of what a handler throws:
// std::invalid_argument -> 400, any other exception -> 500.
HttpError bad_request(const std::string& message) {
  return api_error(400, message, "invalid_request_error");
}
HttpError server_error(const std::string& message) {
  return api_error(500, message, "server_error");
}

// The middlewares and the 404 handler build theirs inline: {"message","type","code"}.
std::string inline_error(int status, const std::string& message, const std::string& type) {
  return dump(json{{"error", {{"message", message}, {"type", type}, {"code", status}}}});
}

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

// Status line and headers, in cpp-httplib's order (alphabetical).
std::string head(int status, const Request& req, const std::string& content_type, std::optional<size_t> length,
                 const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::vector<std::pair<std::string, std::string>> h = extra;
  h.emplace_back("Access-Control-Allow-Origin", req.header("origin"));
  if (req.close)
    h.emplace_back("Connection", "close");
  else
    h.emplace_back("Keep-Alive",
                   "timeout=" + std::to_string(kKeepAliveTimeoutMs / 1000) + ", max=" + std::to_string(kKeepAliveMax));
  if (length)
    h.emplace_back("Content-Length", std::to_string(*length));
  else
    h.emplace_back("Transfer-Encoding", "chunked");
  if (!content_type.empty()) h.emplace_back("Content-Type", content_type);
  h.emplace_back("Server", "llama.cpp");
  std::stable_sort(h.begin(), h.end(), [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  for (const auto& [k, v] : h) out += k + ": " + v + "\r\n";
  return out + "\r\n";
}

std::string http_chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

std::string sse(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

class Conn {
 public:
  explicit Conn(Socket fd) : fd_(fd) {}
  ~Conn() { close_socket(fd_); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  enum class Read { ok, closed, bad };

  Read read_request(Request& r) {
    // Keep-alive: wait for the next request, then read its head.
    if (buf_.empty() && fill(kKeepAliveTimeoutMs) <= 0) return Read::closed;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > kMaxHeaderBytes) return Read::bad;
      if (fill(kReadTimeoutMs) <= 0) return Read::closed;
    }
    if (end > kMaxHeaderBytes) return Read::bad;
    const std::string head_text = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (!parse_head(head_text, r)) return Read::bad;
    // curl sends "Expect: 100-continue" with bodies over 1 KiB and waits for this.
    if (lower(r.header("expect")) == "100-continue" && !send("HTTP/1.1 100 Continue\r\n\r\n")) return Read::closed;

    if (lower(r.header("transfer-encoding")).find("chunked") != std::string::npos) {
      if (!read_chunked_body(r.body)) return Read::bad;
    } else if (r.headers.count("content-length")) {
      const std::string cl = trim(r.header("content-length"));
      if (cl.empty() || cl.find_first_not_of("0123456789") != std::string::npos || cl.size() > 12) return Read::bad;
      const size_t n = std::stoull(cl);
      if (n > kMaxBodyBytes) return Read::bad;
      if (!need(n)) return Read::closed;
      r.body = buf_.substr(0, n);
      buf_.erase(0, n);
    }
    return Read::ok;
  }

  bool send(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      const auto n =
          ::send(fd_, s.data() + done, static_cast<int>(std::min<size_t>(s.size() - done, 1 << 30)), kSendFlags);
      if (n < 0 && interrupted_call()) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Lets `ms` pass; false as soon as the peer has closed or reset the connection
  // (cpp-httplib's is_socket_alive() looks for the same).
  bool wait_alive(int ms) {
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      short revents = 0;
#ifdef _WIN32
      // Winsock has no POLLRDHUP: a readable socket is peeked, and 0 bytes is the peer's close.
      const int rc =
          poll_one(fd_, POLLRDNORM, static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, 20))), revents);
      if (rc < 0) return false;
      if (rc > 0 && (revents & (POLLHUP | POLLERR | POLLNVAL))) return false;
      if (rc > 0 && (revents & POLLRDNORM)) {
        char c;
        if (::recv(fd_, &c, 1, MSG_PEEK) <= 0) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
#else
      const int rc = poll_one(fd_, POLLRDHUP, static_cast<int>(std::max<int64_t>(0, left)), revents);
      if (rc < 0 && errno != EINTR) return false;
      if (rc > 0 && (revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return false;
#endif
      if (left <= 0) return true;
    }
  }

 private:
  // Waits up to timeout_ms for bytes and appends them: 1 read, 0 timed out, -1 closed.
  int fill(int timeout_ms) {
    short revents = 0;
    int rc;
    do rc = poll_one(fd_, POLLIN, timeout_ms, revents);
    while (rc < 0 && interrupted_call());
    if (rc <= 0) return rc < 0 ? -1 : 0;
    char tmp[16384];
    int n;
    do n = static_cast<int>(::recv(fd_, tmp, sizeof tmp, 0));
    while (n < 0 && interrupted_call());
    if (n <= 0) return -1;
    buf_.append(tmp, static_cast<size_t>(n));
    return 1;
  }

  bool need(size_t n) {
    while (buf_.size() < n)
      if (fill(kReadTimeoutMs) <= 0) return false;
    return true;
  }

  bool read_line(std::string& line) {
    size_t pos;
    while ((pos = buf_.find("\r\n")) == std::string::npos) {
      if (buf_.size() > kMaxHeaderBytes) return false;
      if (fill(kReadTimeoutMs) <= 0) return false;
    }
    line = buf_.substr(0, pos);
    buf_.erase(0, pos + 2);
    return true;
  }

  bool read_chunked_body(std::string& body) {
    for (;;) {
      std::string line;
      if (!read_line(line)) return false;
      line = trim(line.substr(0, line.find(';')));
      if (line.empty() || line.size() > 15 || line.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        return false;
      const size_t n = std::stoull(line, nullptr, 16);
      if (n == 0) {
        do
          if (!read_line(line)) return false;
        while (!line.empty());  // trailers
        return true;
      }
      if (body.size() + n > kMaxBodyBytes || !need(n + 2) || buf_.compare(n, 2, "\r\n") != 0) return false;
      body.append(buf_, 0, n);
      buf_.erase(0, n + 2);
    }
  }

  static bool parse_head(const std::string& text, Request& r) {
    size_t pos = text.find("\r\n");
    const std::string line = text.substr(0, pos);
    const auto s1 = line.find(' ');
    const auto s2 = s1 == std::string::npos ? std::string::npos : line.find(' ', s1 + 1);
    if (s1 == std::string::npos || s2 == std::string::npos || line.find(' ', s2 + 1) != std::string::npos) return false;
    r.method = line.substr(0, s1);
    r.target = line.substr(s1 + 1, s2 - s1 - 1);
    r.version = line.substr(s2 + 1);
    if (r.method.empty() || r.target.empty() || r.target[0] != '/' ||
        (r.version != "HTTP/1.1" && r.version != "HTTP/1.0"))
      return false;
    for (char c : r.method)
      if (!std::isupper(static_cast<unsigned char>(c))) return false;
    r.path = r.target.substr(0, r.target.find('?'));
    while (pos != std::string::npos) {
      const size_t next = text.find("\r\n", pos + 2);
      const std::string h = text.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      pos = next;
      const auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0 || h.find_first_of(" \t") < colon) return false;
      r.headers[lower(h.substr(0, colon))] = trim(h.substr(colon + 1));
    }
    return true;
  }

  Socket fd_;
  std::string buf_;
};

// ---------------------------------------------------------------------------
// Generation

std::string token_text(int i) {
  static const char* words[] = {"Hello", " from", " fake"};
  return i < 3 ? words[i] : " token";
}

std::string generated_text(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += token_text(i);
  return text;
}

// llama.cpp's random_string(): 32 alphanumerics (completion and tool call ids).
std::string random_id() {
  static const char chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937 gen{std::random_device{}()};
  std::string s(32, ' ');
  for (auto& c : s) c = chars[gen() % (sizeof chars - 1)];
  return s;
}

// A crude tokenizer: pieces of up to 4 bytes, never splitting a UTF-8
// character (so ASCII text is 4 bytes a token).
std::vector<std::string> pieces_of(const std::string& text) {
  std::vector<std::string> pieces;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = std::min(text.size(), i + 4);
    // Back off to a character start; a character longer than the room left is taken whole.
    size_t cut = end;
    while (cut > i && cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    if (cut == i) {
      cut = i + 1;
      while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
    }
    end = cut;
    pieces.push_back(text.substr(i, end - i));
    i = end;
  }
  return pieces;
}

int count_tokens(const std::string& text) {
  return static_cast<int>(pieces_of(text).size());
}

// Token ids: 1 is BOS, 2 EOS; pieces get ids from 3 as they are first seen
// (stable for the life of the process, which is all /detokenize needs).
class Vocabulary {
 public:
  int id(const std::string& piece) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = ids_.try_emplace(piece, static_cast<int>(pieces_.size()) + 3);
    if (fresh) pieces_.push_back(piece);
    return it->second;
  }
  std::string piece(int64_t id) {
    std::lock_guard lock(mu_);
    if (id < 3 || id - 3 >= static_cast<int64_t>(pieces_.size())) return "";  // specials detokenize to nothing here
    return pieces_[static_cast<size_t>(id - 3)];
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> ids_;
  std::vector<std::string> pieces_;
};
Vocabulary g_vocab;

int count_prompt_tokens(const json& prompt) {
  if (prompt.is_string()) return 1 + count_tokens(prompt.get<std::string>());  // + BOS
  if (prompt.is_array()) {
    int n = 0;
    for (const auto& p : prompt) n += p.is_number() ? 1 : count_prompt_tokens(p);
    return std::max(1, n);
  }
  return 1;
}

constexpr int kImageTokens = 256;  // prompt tokens per image (with --mmproj)

int count_chat_tokens(const json& messages, const json& tools) {
  int n = 1;
  for (const auto& m : messages) {
    n += 4;  // role and template markers
    if (!m.is_object() || !m.contains("content")) continue;
    const auto& c = m["content"];
    if (c.is_string()) {
      n += count_tokens(c.get<std::string>());
    } else if (c.is_array()) {
      for (const auto& part : c) {
        if (json_value(part, "type", std::string()) == "image_url")
          n += kImageTokens;
        else if (part.is_object() && part.contains("text") && part["text"].is_string())
          n += count_tokens(part["text"].get<std::string>());
      }
    }
  }
  if (tools.is_array() && !tools.empty()) n += count_tokens(dump(tools));  // rendered into the prompt
  return n;
}

struct Generation {
  int task = 0;
  int n = 3;               // tokens to generate
  bool limited = false;    // stopped by the limit ("length"), not by end of generation
  bool tool_call = false;  // ends with a tool call ("tool_calls")
  int prompt_n = 1;
  bool stream = false;
  bool include_usage = false;
  std::string id = "chatcmpl-" + random_id();
  std::time_t created = std::time(nullptr);
  Clock::time_point t_request = Clock::now();
  Clock::time_point t_gen_start, t_gen_end;
  int generated = 0;

  // llama.cpp's result_timings::to_json().
  json timings() const {
    const double prompt_ms = std::chrono::duration<double, std::milli>(t_gen_start - t_request).count();
    const double predicted_ms = std::chrono::duration<double, std::milli>(t_gen_end - t_gen_start).count();
    auto per_token = [](double ms, int n) { return n > 0 ? ms / n : 0.0; };
    auto per_second = [](double ms, int n) { return ms > 0 ? 1e3 / ms * n : 0.0; };
    return json{
        {"cache_n", 0},
        {"prompt_n", prompt_n},
        {"prompt_ms", prompt_ms},
        {"prompt_per_token_ms", per_token(prompt_ms, prompt_n)},
        {"prompt_per_second", per_second(prompt_ms, prompt_n)},
        {"predicted_n", generated},
        {"predicted_ms", predicted_ms},
        {"predicted_per_token_ms", per_token(predicted_ms, generated)},
        {"predicted_per_second", per_second(predicted_ms, generated)},
    };
  }
  // llama.cpp's usage_json_oaicompat() (cached_tokens since PR #19361).
  json usage() const {
    return json{{"completion_tokens", generated},
                {"prompt_tokens", prompt_n},
                {"total_tokens", generated + prompt_n},
                {"prompt_tokens_details", {{"cached_tokens", 0}}}};
  }
  std::string finish_reason() const { return limited ? "length" : tool_call ? "tool_calls" : "stop"; }
};

Generation make_generation(const json& body) {
  Generation g;
  g.task = g_next_task++;
  // llama.cpp: n_predict, else max_completion_tokens, else max_tokens; -1 means no limit.
  for (const char* key : {"n_predict", "max_completion_tokens", "max_tokens"}) {
    if (body.contains(key) && body[key].is_number_integer()) {
      const int64_t v = body[key].get<int64_t>();
      if (v >= 0) {
        g.n = static_cast<int>(std::min<int64_t>(v, 10000000));
        g.limited = true;
      }
      break;
    }
  }
  g.stream = json_value(body, "stream", false);
  g.include_usage = json_value(json_value(body, "stream_options", json::object()), "include_usage", false);
  return g;
}

void log_cancel(const Generation& g) {
  std::fprintf(stderr, "fake-llama-server: client disconnected, cancelled task %d after %d of %d tokens\n", g.task,
               g.generated, g.n);
}

// Non-streaming: N tokens' time, watching for the client to go away.
bool generate_all(Conn& c, Generation& g) {
  g.t_gen_start = Clock::now();
  for (int i = 0; i < g.n; ++i) {
    if (!c.wait_alive(g_cfg.token_delay_ms)) {
      g.t_gen_end = Clock::now();
      log_cancel(g);
      return false;
    }
    g.generated = i + 1;
  }
  g.t_gen_end = Clock::now();
  return true;
}

// Streaming: the head goes out with the first token (the real server waits for
// the first result so that an early error is still a plain HTTP error); one
// HTTP chunk per token; the final events and the terminating chunk last.
// Returns whether the connection can serve another request.
bool stream(Conn& c, const Request& req, Generation& g, const std::function<std::string(int)>& token_events,
            const std::function<std::string()>& final_events) {
  std::string pending = head(200, req, "text/event-stream", std::nullopt, {{"X-Accel-Buffering", "no"}});
  g.t_gen_start = Clock::now();
  for (int i = 0; i < g.n; ++i) {
    if (!c.wait_alive(g_cfg.token_delay_ms) || !c.send(pending + http_chunk(token_events(i)))) {
      g.t_gen_end = Clock::now();
      log_cancel(g);
      return false;
    }
    pending.clear();
    g.generated = i + 1;
  }
  g.t_gen_end = Clock::now();
  return c.send(pending + http_chunk(final_events()) + "0\r\n\r\n");
}

// ---------------------------------------------------------------------------
// Chat: what the fake model answers, token by token

// The parsed message grows token by token as llama.cpp's chat parser would
// report it: reasoning, content, one tool call.
struct ChatReply {
  enum class Kind { text, json, tool };
  enum class Part { reasoning, content, tool_head, tool_args };
  struct Piece {
    Part part;
    std::string text;
  };
  static constexpr const char* kReasoning[] = {"Let", " me", " think"};
  static constexpr const char* kJson[] = {"{\"", "fake", "\":", "true", "}"};

  Kind kind = Kind::text;
  int n_reasoning = 0;            // reasoning tokens first (FAKE_THINKING)
  bool reasoning_inline = false;  // reasoning_format none: "<think>...</think>" in content
  std::string tool_name;
  std::string tool_id = random_id();   // gen_tool_call_id()
  std::vector<std::string> tool_args;  // the arguments text, in pieces

  // Tokens until the end of generation; plain text has no end (3 unless limited).
  int natural_length() const {
    switch (kind) {
      case Kind::json:
        return n_reasoning + static_cast<int>(std::size(kJson));
      case Kind::tool:
        return n_reasoning + 1 + static_cast<int>(tool_args.size());
      case Kind::text:
        break;
    }
    return n_reasoning + 3;
  }

  Piece piece(int i) const {
    if (i < n_reasoning) {
      std::string t = kReasoning[i];
      if (!reasoning_inline) return {Part::reasoning, t};
      if (i == 0) t = "<think>" + t;
      if (i == n_reasoning - 1) t += "</think>";
      return {Part::content, t};
    }
    const int j = i - n_reasoning;
    switch (kind) {
      case Kind::json:
        return {Part::content, kJson[j]};
      case Kind::tool:
        return j == 0 ? Piece{Part::tool_head, ""} : Piece{Part::tool_args, tool_args[static_cast<size_t>(j - 1)]};
      case Kind::text:
        break;
    }
    return {Part::content, token_text(j)};
  }

  // server_chat_msg_diff_to_json_oaicompat() of token i's diff.
  json delta(int i) const {
    const Piece p = piece(i);
    switch (p.part) {
      case Part::reasoning:
        return json{{"reasoning_content", p.text}};
      case Part::content:
        return json{{"content", p.text}};
      case Part::tool_head:
        return json{{"tool_calls",
                     json::array({json{
                         {"index", 0}, {"id", tool_id}, {"type", "function"}, {"function", {{"name", tool_name}}}}})}};
      case Part::tool_args:
        break;
    }
    return json{{"tool_calls", json::array({json{{"index", 0}, {"function", {{"arguments", p.text}}}}})}};
  }

  // common_chat_msg::to_json_oaicompat() after n tokens.
  json message(int n) const {
    std::string content, reasoning, arguments;
    bool called = false;
    for (int i = 0; i < n; ++i) {
      const Piece p = piece(i);
      switch (p.part) {
        case Part::reasoning:
          reasoning += p.text;
          break;
        case Part::content:
          content += p.text;
          break;
        case Part::tool_head:
          called = true;
          break;
        case Part::tool_args:
          arguments += p.text;
          break;
      }
    }
    json m{{"role", "assistant"}, {"content", content}};
    if (!reasoning.empty()) m["reasoning_content"] = reasoning;
    if (called)
      m["tool_calls"] = json::array(
          {json{{"type", "function"}, {"function", {{"name", tool_name}, {"arguments", arguments}}}, {"id", tool_id}}});
    return m;
  }
};

// The text of the last user message (its text parts joined).
std::string last_user_text(const json& messages) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (json_value(*it, "role", std::string()) != "user") continue;
    const json content = json_value(*it, "content", json());
    if (content.is_string()) return content.get<std::string>();
    std::string text;
    if (content.is_array())
      for (const auto& part : content) text += json_value(part, "text", std::string());
    return text;
  }
  return "";
}

// The fake's tool call arguments: {"location":"Paris"}, or the first string
// property of the tool's parameters schema set to "Paris".
json tool_arguments(const json& function) {
  const json props = json_value(json_value(function, "parameters", json::object()), "properties", json::object());
  if (!props.is_object() || props.empty()) return json{{"location", "Paris"}};
  for (const auto& [name, schema] : props.items())
    if (!schema.is_object() || !schema.contains("type") || schema["type"] == "string") return json{{name, "Paris"}};
  return json::object();
}

// The arguments text in three pieces of about equal length (empty ones dropped).
std::vector<std::string> split_in_three(const std::string& text) {
  const size_t a = (text.size() + 2) / 3;
  std::vector<std::string> out;
  for (size_t pos = 0; pos < text.size(); pos += a) out.push_back(text.substr(pos, a));
  return out;
}

// llama.cpp's base64_decode() in server-common.cpp: stops at '=' or at the
// first character that is not base64.
std::string base64_decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    const auto pos = chars.find(ch);
    if (ch == '=' || pos == std::string::npos) break;
    acc = (acc << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool looks_like_image(const std::string& b) {
  auto starts = [&](const char* magic, size_t n) { return b.size() >= n && b.compare(0, n, magic, n) == 0; };
  return starts("\x89PNG\r\n\x1a\n", 8) || starts("\xff\xd8\xff", 3) || starts("GIF87a", 6) || starts("GIF89a", 6) ||
         starts("BM", 2);
}

// handle_media() in server-common.cpp for an image_url part (with --mmproj).
void check_image_url(const std::string& url) {
  if (url.rfind("http", 0) == 0) throw server_error("Failed to download image");  // no network here
  if (url.rfind("file://", 0) == 0) throw bad_request("file:// URLs are not allowed unless --media-path is specified");
  if (std::count(url.begin(), url.end(), ',') != 1) throw server_error("Invalid url value");
  const std::string head_part = url.substr(0, url.find(','));
  if (head_part.rfind("data:image/", 0) != 0) throw server_error("Invalid url format: " + head_part);
  if (head_part.size() < 6 || head_part.compare(head_part.size() - 6, 6, "base64") != 0)
    throw server_error("url must be base64 encoded");
  // mtmd_helper_bitmap_init_from_buf() fails later, in handle_completions_impl(): 400.
  if (!looks_like_image(base64_decode(url.substr(url.find(',') + 1))))
    throw bad_request("Failed to load image or audio file");
}

// oaicompat_chat_params_parse() and what follows it, in the real order of the checks.
ChatReply plan_chat(const json& body, bool streaming) {
  const json tools = json_value(body, "tools", json());
  const bool has_tools = tools.is_array() && !tools.empty();
  const std::string tool_choice = json_value(body, "tool_choice", std::string("auto"));
  if (!g_cfg.jinja) {
    if (has_tools) throw server_error("tools param requires --jinja flag");
    if (tool_choice != "auto") throw server_error("tool_choice param requires --jinja flag");
  }

  json json_schema = json_value(body, "json_schema", json());
  if (!json_schema.is_null() && !json_value(body, "grammar", std::string()).empty())
    throw server_error("Cannot use both json_schema and grammar");
  if (body.contains("response_format")) {
    const json format = json_value(body, "response_format", json::object());
    const std::string type = json_value(format, "type", std::string());
    if (type == "json_object")
      json_schema = json_value(format, "schema", json::object());
    else if (type == "json_schema")
      json_schema = json_value(json_value(format, "json_schema", json::object()), "schema", json::object());
    else if (!type.empty() && type != "text")
      throw bad_request("response_format type must be one of \"text\" or \"json_object\", but got: " + type);
  }

  if (!body.contains("messages")) throw bad_request("'messages' is required");
  const json& messages = body.at("messages");
  if (!messages.is_array()) throw bad_request("Expected 'messages' to be an array");
  for (const auto& msg : messages) {
    const std::string role = json_value(msg, "role", std::string());
    if (role != "assistant" && !msg.contains("content"))
      throw bad_request("All non-assistant messages must contain 'content'");
    if (role == "assistant") {
      if (!msg.contains("content") && !msg.contains("tool_calls"))
        throw bad_request("Assistant message must contain either 'content' or 'tool_calls'!");
      if (!msg.contains("content")) continue;
    }
    const json& content = msg.at("content");
    if (content.is_string() || content.is_null()) continue;
    if (!content.is_array()) throw bad_request("Expected 'content' to be a string or an array");
    for (const auto& part : content) {
      const std::string type = json_value(part, "type", std::string());
      if (type == "image_url") {
        if (!g_cfg.mmproj)
          throw server_error(
              "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj");
        check_image_url(json_value(json_value(part, "image_url", json::object()), "url", std::string()));
      } else if (type == "input_audio") {
        throw server_error(
            "audio input is not supported - hint: if this is unexpected, you may need to provide the mmproj");
      } else if (type != "text") {
        throw bad_request("unsupported content[].type");
      }
    }
  }
  // common_chat_msgs_parse_oaicompat()
  for (const auto& msg : messages) {
    try {
      if (!msg.contains("role")) throw std::invalid_argument("Missing 'role' in message: " + msg.dump());
      if (msg.contains("content") && msg.at("content").is_array())
        for (const auto& part : msg.at("content"))
          if (json_value(part, "type", std::string()) == "text") (void)part.at("text").get<std::string>();
    } catch (const std::exception& e) {
      throw server_error("Failed to parse messages: " + std::string(e.what()));
    }
  }
  // common_chat_tools_parse_oaicompat()
  json first_function;
  try {
    if (!tools.is_null()) {
      if (!tools.is_array()) throw std::invalid_argument("Expected 'tools' to be an array, got " + tools.dump());
      for (const auto& tool : tools) {
        if (!tool.contains("type")) throw std::invalid_argument("Missing tool type: " + tool.dump());
        const auto& type = tool.at("type");
        if (!type.is_string() || type != "function")
          throw std::invalid_argument("Unsupported tool type: " + tool.dump());
        if (!tool.contains("function")) throw std::invalid_argument("Missing tool function: " + tool.dump());
        (void)tool.at("function").at("name").get<std::string>();
        if (first_function.is_null()) first_function = tool.at("function");
      }
    }
  } catch (const std::exception& e) {
    throw server_error("Failed to parse tools: " + std::string(e.what()) + "; tools = " + tools.dump(2));
  }
  if (tool_choice != "auto" && tool_choice != "none" && tool_choice != "required")
    throw bad_request("Invalid tool_choice: " + tool_choice);

  std::string reasoning_format = g_cfg.reasoning_format;
  if (body.contains("reasoning_format")) {
    reasoning_format = body.at("reasoning_format").get<std::string>();
    if (reasoning_format != "none" && reasoning_format != "auto" && reasoning_format != "deepseek" &&
        reasoning_format != "deepseek-legacy")
      throw server_error("Unknown reasoning format: " + reasoning_format);
  }
  if (has_tools && tool_choice != "none" && body.contains("grammar"))
    throw bad_request("Cannot use custom grammar constraints with tools.");

  // chat_template_kwargs values are compared as dumped JSON.
  bool enable_thinking = g_cfg.thinking;
  const json kwargs = json_value(body, "chat_template_kwargs", json::object());
  if (kwargs.is_object() && kwargs.contains("enable_thinking")) {
    const std::string v = dump(kwargs.at("enable_thinking"));
    if (v == "true")
      enable_thinking = true;
    else if (v == "false")
      enable_thinking = false;
    else if (!v.empty() && v[0] == '"')
      throw bad_request("invalid type for \"enable_thinking\" (expected boolean, got string)");
  }

  ChatReply r;
  r.n_reasoning = g_cfg.thinking && enable_thinking ? static_cast<int>(std::size(ChatReply::kReasoning)) : 0;
  r.reasoning_inline = reasoning_format == "none" || (reasoning_format == "deepseek-legacy" && streaming);
  if (json_schema.is_object() && !json_schema.empty()) {  // llama.cpp: no grammar from {}
    r.kind = ChatReply::Kind::json;
  } else if (has_tools && tool_choice != "none" &&
             (tool_choice == "required" || lower(last_user_text(messages)).find("tool") != std::string::npos)) {
    r.kind = ChatReply::Kind::tool;
    r.tool_name = first_function.at("name").get<std::string>();
    r.tool_args = split_in_three(dump(tool_arguments(first_function)));
  }
  return r;
}

// ---------------------------------------------------------------------------
// Handlers

json parse_body(const Request& req) {
  return json::parse(req.body);  // throws: 500, as real
}

json chat_chunk(const Generation& g, json choices) {
  return json{{"choices", std::move(choices)},
              {"created", g.created},
              {"id", g.id},
              {"model", g_cfg.alias},
              {"system_fingerprint", kFingerprint},
              {"object", "chat.completion.chunk"}};
}

json delta_choice(json delta, const json& finish_reason = nullptr) {
  return json::array({json{{"finish_reason", finish_reason}, {"index", 0}, {"delta", std::move(delta)}}});
}

// Returns whether the connection can serve another request.
bool handle_chat(Conn& c, const Request& req) {
  json body = parse_body(req);
  const ChatReply reply = plan_chat(body, json_value(body, "stream", false));
  Generation g = make_generation(body);
  g.prompt_n = count_chat_tokens(body["messages"], json_value(body, "tools", json()));
  const int natural = reply.natural_length();
  if (reply.kind == ChatReply::Kind::text) {
    if (!g.limited) g.n = natural;
  } else if (!g.limited || g.n >= natural) {  // the end of generation comes first
    g.n = natural;
    g.limited = false;
    g.tool_call = reply.kind == ChatReply::Kind::tool;
  }

  if (!g.stream) {
    if (!generate_all(c, g)) return false;
    json res{{"choices",
              json::array(
                  {json{{"finish_reason", g.finish_reason()}, {"index", 0}, {"message", reply.message(g.generated)}}})},
             {"created", g.created},
             {"model", g_cfg.alias},
             {"system_fingerprint", kFingerprint},
             {"object", "chat.completion"},
             {"usage", g.usage()},
             {"id", g.id},
             {"timings", g.timings()}};
    const std::string out = dump(res);
    return c.send(head(200, req, "application/json; charset=utf-8", out.size()) + out);
  }

  auto token_events = [&g, &reply](int i) {
    std::string out;
    if (i == 0) out += sse(chat_chunk(g, delta_choice({{"role", "assistant"}, {"content", nullptr}})));
    return out + sse(chat_chunk(g, delta_choice(reply.delta(i))));
  };
  auto final_events = [&g] {
    std::vector<json> chunks{chat_chunk(g, delta_choice(json::object(), g.finish_reason()))};
    if (g.include_usage) {
      json u = chat_chunk(g, json::array());
      u["usage"] = g.usage();
      chunks.push_back(std::move(u));
    }
    chunks.back()["timings"] = g.timings();
    std::string out;
    for (const auto& ch : chunks) out += sse(ch);
    return out + "data: [DONE]\n\n";
  };
  return stream(c, req, g, token_events, final_events);
}

bool handle_oai_completion(Conn& c, const Request& req) {
  json body = parse_body(req);
  if (!body.is_object() || !body.contains("prompt")) throw api_error(500, "\"prompt\" is required", "server_error");
  Generation g = make_generation(body);
  g.prompt_n = count_prompt_tokens(body["prompt"]);

  auto completion = [&g](const std::string& text, const json& finish_reason) {
    return json{
        {"choices",
         json::array({json{{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}})},
        {"created", g.created},
        {"model", g_cfg.alias},
        {"system_fingerprint", kFingerprint},
        {"object", "text_completion"}};
  };
  auto final_object = [&](const std::string& text) {
    json res = completion(text, g.finish_reason());
    res["usage"] = g.usage();
    res["id"] = g.id;
    res["timings"] = g.timings();
    return res;
  };

  if (!g.stream) {
    if (!generate_all(c, g)) return false;
    const std::string out = dump(final_object(generated_text(g.generated)));
    return c.send(head(200, req, "application/json; charset=utf-8", out.size()) + out);
  }
  auto token_events = [&](int i) {
    json ch = completion(token_text(i), nullptr);
    ch["id"] = g.id;
    return sse(ch);
  };
  auto final_events = [&] { return sse(final_object("")) + "data: [DONE]\n\n"; };
  return stream(c, req, g, token_events, final_events);
}

// The native answer of /completion and /infill (to_json_non_oaicompat()).
bool native_completion(Conn& c, const Request& req, const json& body, const std::string& prompt_text, int prompt_n) {
  Generation g = make_generation(body);
  g.prompt_n = prompt_n;

  auto final_object = [&](const std::string& text) {
    return json{{"index", 0},
                {"content", text},
                {"tokens", json::array()},
                {"id_slot", 0},
                {"stop", true},
                {"model", g_cfg.alias},
                {"tokens_predicted", g.generated},
                {"tokens_evaluated", g.prompt_n},
                {"generation_settings", {{"n_predict", g.limited ? g.n : -1}, {"stream", g.stream}}},
                {"prompt", prompt_text},
                {"has_new_line", false},
                {"truncated", false},
                {"stop_type", g.limited ? "limit" : "eos"},
                {"stopping_word", ""},
                {"tokens_cached", g.prompt_n + g.generated},
                {"timings", g.timings()}};
  };

  if (!g.stream) {
    if (!generate_all(c, g)) return false;
    const std::string out = dump(final_object(generated_text(g.generated)));
    return c.send(head(200, req, "application/json; charset=utf-8", out.size()) + out);
  }
  auto token_events = [&](int i) {
    return sse(json{{"index", 0},
                    {"content", token_text(i)},
                    {"tokens", json::array()},
                    {"stop", false},
                    {"id_slot", 0},
                    {"tokens_predicted", i + 1},
                    {"tokens_evaluated", g.prompt_n}});
  };
  auto final_events = [&] { return sse(final_object("")); };  // no [DONE] on the native routes
  return stream(c, req, g, token_events, final_events);
}

bool handle_native_completion(Conn& c, const Request& req) {
  json body = parse_body(req);
  const json prompt = body.at("prompt");  // real: json out_of_range -> 500
  return native_completion(c, req, body, prompt.is_string() ? prompt.get<std::string>() : dump(prompt),
                           count_prompt_tokens(prompt));
}

// tokenize_mixed() of input_prefix / input_suffix: a string, or an array of
// strings and token ids; anything else throws json's type_error (500).
std::string fim_part(const json& part, int& n_tokens) {
  if (!part.is_array()) {
    const std::string text = part.get<std::string>();
    n_tokens += count_tokens(text);
    return text;
  }
  std::string text;
  for (const auto& p : part) {
    if (p.is_string()) {
      text += p.get<std::string>();
      n_tokens += count_tokens(p.get<std::string>());
    } else {
      n_tokens += 1;
    }
  }
  return text;
}

// post_infill in server-context.cpp, then format_prompt_infill() for a model
// with FIM prefix/suffix/middle tokens only (no repo-level FIM tokens).
bool handle_infill(Conn& c, const Request& req) {
  if (!g_cfg.fim)
    throw api_error(501,
                    "Infill is not supported by this model: prefix token is missing. suffix token is missing. "
                    "middle token is missing. ",
                    "not_supported_error");
  json body = parse_body(req);
  if (body.contains("input_extra") && !body.at("input_extra").is_array())
    throw bad_request("\"input_extra\" must be an array of {\"filename\": string, \"text\": string}");
  const json extra = json_value(body, "input_extra", json::array());
  for (const auto& chunk : extra) {
    if (!chunk.contains("text") || !chunk.at("text").is_string())
      throw bad_request("extra_context chunk must contain a \"text\" field with a string value");
    if (chunk.contains("filename") && !chunk.at("filename").is_string())
      throw bad_request("extra_context chunk's \"filename\" field must be a string");
  }
  // Missing "prompt" or one that is not a string counts as "" (real sets an
  // error and then goes on); missing input_prefix/input_suffix: at() throws, 500.
  const std::string prompt = json_value(body, "prompt", std::string());
  int n = 3;  // FIM prefix, suffix and middle
  const std::string prefix = fim_part(body.at("input_prefix"), n);
  const std::string suffix = fim_part(body.at("input_suffix"), n);
  static const std::string kSnippet = "\n\n--- snippet ---\n\n";
  std::string text;
  for (const auto& chunk : extra) {
    const std::string t = chunk.at("text").get<std::string>();
    text += kSnippet + t;
    n += count_tokens(kSnippet) + count_tokens(t);
  }
  n += count_tokens(prompt);
  text += "<|fim_prefix|>" + prefix + prompt + "<|fim_suffix|>" + suffix + "<|fim_middle|>";
  return native_completion(c, req, body, text, n);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A deterministic pseudo-embedding of `text`, values in [-1, 1).
std::vector<float> raw_vector(const std::string& text, uint64_t salt) {
  uint64_t state = fnv1a(text) ^ (salt * 0x9e3779b97f4a7c15ull);
  std::vector<float> v(static_cast<size_t>(g_cfg.embed_dim));
  for (auto& x : v) x = static_cast<float>(static_cast<double>(splitmix64(state) >> 11) / 4503599627370496.0 - 1.0);
  return v;
}

// llama.cpp's common_embd_normalize(): -1 none, 0 max-abs (int16 range), 2 euclidean, else p-norm.
void normalize(std::vector<float>& v, int norm) {
  double sum = 0;
  switch (norm) {
    case -1:
      sum = 1;
      break;
    case 0:
      for (float x : v) sum = std::max(sum, static_cast<double>(std::fabs(x)));
      sum /= 32760.0;
      break;
    case 2:
      for (float x : v) sum += static_cast<double>(x) * x;
      sum = std::sqrt(sum);
      break;
    default:
      for (float x : v) sum += std::pow(std::fabs(x), norm);
      sum = std::pow(sum, 1.0 / norm);
      break;
  }
  const double scale = sum > 0.0 ? 1.0 / sum : 0.0;
  for (auto& x : v) x = static_cast<float>(x * scale);
}

std::string base64(const std::vector<float>& v) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const size_t n = v.size() * sizeof(float);
  std::string out;
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t b = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    out += tbl[(b >> 18) & 63];
    out += tbl[(b >> 12) & 63];
    out += i + 1 < n ? tbl[(b >> 6) & 63] : '=';
    out += i + 2 < n ? tbl[b & 63] : '=';
  }
  return out;
}

Response handle_embeddings(const Request& req, bool oai) {
  if (!g_cfg.embeddings)
    throw api_error(501, "This server does not support embeddings. Start it with `--embeddings`",
                    "not_supported_error");
  const bool pooled = g_cfg.pooling != "none";
  if (oai && !pooled)
    throw api_error(400, "Pooling type 'none' is not OAI compatible. Please use a different pooling type",
                    "invalid_request_error");
  const json body = parse_body(req);
  json prompt;
  if (body.contains("input")) {
    prompt = body["input"];
  } else if (body.contains("content")) {
    oai = false;  // "content" is not OAI compatible
    prompt = body["content"];
  } else {
    throw api_error(400, "\"input\" or \"content\" must be provided", "invalid_request_error");
  }
  bool use_base64 = false;
  if (body.contains("encoding_format")) {
    const std::string format = json_value(body, "encoding_format", std::string());
    if (format == "base64")
      use_base64 = true;
    else if (format != "float")
      throw api_error(400, "The format to return the embeddings in. Can be either float or base64",
                      "invalid_request_error");
  }
  const int norm = json_value(body, "embd_normalize", 2);

  // One prompt per element of an array of strings (or token lists); an array
  // holding numbers is a single prompt of tokens.
  std::vector<json> prompts;
  const bool has_numbers =
      prompt.is_array() && std::any_of(prompt.begin(), prompt.end(), [](const json& p) { return p.is_number(); });
  if (prompt.is_array() && !has_numbers)
    prompts.assign(prompt.begin(), prompt.end());
  else
    prompts.push_back(prompt);
  if (prompts.empty()) throw api_error(500, "\"prompt\" must not be empty", "server_error");

  json data = json::array();
  int n_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string text = prompts[i].is_string() ? prompts[i].get<std::string>() : dump(prompts[i]);
    const int tokens = count_prompt_tokens(prompts[i]);
    // Pooled embeddings cannot split a prompt: it must fit one physical batch, then the context.
    if (tokens > g_cfg.n_ubatch)
      throw api_error(500, "input is too large to process. increase the physical batch size", "server_error");
    if (tokens > g_cfg.n_ctx)
      throw HttpError{400, dump(json{{"error",
                                      {{"code", 400},
                                       {"message", "input is larger than the max context size. skipping"},
                                       {"type", "exceed_context_size_error"},
                                       {"n_prompt_tokens", tokens},
                                       {"n_ctx", g_cfg.n_ctx}}}})};
    n_tokens += tokens;
    if (oai) {
      auto v = raw_vector(text, 0);
      normalize(v, norm);
      json e{{"embedding", use_base64 ? json(base64(v)) : json(v)}, {"index", i}, {"object", "embedding"}};
      if (use_base64) e["encoding_format"] = "base64";
      data.push_back(std::move(e));
    } else {
      json rows = json::array();
      if (pooled) {
        auto v = raw_vector(text, 0);
        normalize(v, norm);
        rows.push_back(v);
      } else {
        for (int t = 0; t < tokens; ++t) rows.push_back(raw_vector(text, static_cast<uint64_t>(t) + 1));
      }
      data.push_back(json{{"index", i}, {"embedding", std::move(rows)}});
    }
  }
  if (!oai) return {200, dump(data)};
  const std::string model = json_value(body, "model", g_cfg.alias);
  return {200, dump(json{{"model", model},
                         {"object", "list"},
                         {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}},
                         {"data", std::move(data)}})};
}

// ---------------------------------------------------------------------------
// Agent APIs: OpenAI Responses and Anthropic Messages. llama-server turns both
// into a chat request (convert_responses_to_chatcmpl() and
// convert_anthropic_to_oai() in tools/server/server-common.cpp) and answers in
// the API's own shape; the shapes and field orders here are the captured ones
// (shared/reference/llama-server-agent-api-transcripts.txt).

std::string sse_event(const std::string& name, const json& data) {
  return "event: " + name + "\ndata: " + dump(data) + "\n\n";
}

// The chat messages a Responses body stands for: "instructions" as a system
// message, "input" as one user message (a string) or its items' role and
// content (input_text parts count as text).
json responses_messages(const json& body) {
  json messages = json::array();
  const json instructions = json_value(body, "instructions", json());
  if (instructions.is_string()) messages.push_back(json{{"role", "system"}, {"content", instructions}});
  const json input = json_value(body, "input", json());
  if (input.is_string()) {
    messages.push_back(json{{"role", "user"}, {"content", input}});
  } else if (input.is_array()) {
    for (const auto& item : input)
      messages.push_back(json{{"role", json_value(item, "role", std::string("user"))},
                              {"content", json_value(item, "content", json(""))}});
  } else {
    throw bad_request("'input' must be a string or array of objects");
  }
  return messages;
}

// The chat messages of an Anthropic body: "system" (a string or text blocks)
// first, then the messages (text blocks count as text). A missing "messages"
// is a std::runtime_error in llama.cpp: 500.
json anthropic_messages(const json& body) {
  if (!body.contains("messages")) throw server_error("'messages' is required");
  json messages = json::array();
  const json system = json_value(body, "system", json());
  if (system.is_string()) {
    messages.push_back(json{{"role", "system"}, {"content", system}});
  } else if (system.is_array()) {
    std::string text;
    for (const auto& block : system) text += json_value(block, "text", std::string());
    messages.push_back(json{{"role", "system"}, {"content", text}});
  }
  if (body.at("messages").is_array())
    for (const auto& m : body.at("messages")) messages.push_back(m);
  return messages;
}

// A Generation of plain text (3 tokens unless limited) whose limit is `limit_key`.
Generation agent_generation(const json& body, const char* limit_key, const json& messages) {
  json limits = json::object();
  if (body.contains(limit_key)) limits["max_tokens"] = body.at(limit_key);
  Generation g = make_generation(limits);
  g.stream = json_value(body, "stream", false);
  g.prompt_n = count_chat_tokens(messages, json_value(body, "tools", json()));
  if (!g.limited) g.n = 3;
  return g;
}

json responses_usage(const Generation& g) {
  return json{{"input_tokens", g.prompt_n},
              {"output_tokens", g.generated},
              {"total_tokens", g.prompt_n + g.generated},
              {"input_tokens_details", {{"cached_tokens", 0}}}};
}

json output_text(const std::string& text) {
  return json{{"type", "output_text"}, {"annotations", json::array()}, {"logprobs", json::array()}, {"text", text}};
}

// POST /v1/responses, /responses. Non-streaming: one "response" object
// (no timings). Streaming: response.created, response.in_progress,
// response.output_item.added and response.content_part.added with the first
// token's response.output_text.delta, one delta per later token, then
// response.output_text.done, response.content_part.done,
// response.output_item.done and response.completed (with usage and, beside
// the response, timings); no [DONE]. max_output_tokens is the limit.
bool handle_responses(Conn& c, const Request& req) {
  const json body = parse_body(req);
  Generation g = agent_generation(body, "max_output_tokens", responses_messages(body));
  const std::string resp_id = "resp_" + random_id();
  const std::string msg_id = "msg_" + random_id();

  if (!g.stream) {
    if (!generate_all(c, g)) return false;
    const json res{{"completed_at", std::time(nullptr)},
                   {"created_at", g.created},
                   {"id", resp_id},
                   {"model", g_cfg.alias},
                   {"object", "response"},
                   {"output", json::array({json{{"content", json::array({output_text(generated_text(g.generated))})},
                                                {"id", msg_id},
                                                {"role", "assistant"},
                                                {"status", "completed"},
                                                {"type", "message"}}})},
                   {"status", "completed"},
                   {"usage", responses_usage(g)}};
    const std::string out = dump(res);
    return c.send(head(200, req, "application/json; charset=utf-8", out.size()) + out);
  }

  const json in_progress{{"id", resp_id}, {"object", "response"}, {"status", "in_progress"}};
  auto start_events = [&] {
    return sse_event("response.created", json{{"type", "response.created"}, {"response", in_progress}}) +
           sse_event("response.in_progress", json{{"type", "response.in_progress"}, {"response", in_progress}}) +
           sse_event("response.output_item.added", json{{"type", "response.output_item.added"},
                                                        {"item",
                                                         {{"content", json::array()},
                                                          {"id", msg_id},
                                                          {"role", "assistant"},
                                                          {"status", "in_progress"},
                                                          {"type", "message"}}}}) +
           sse_event("response.content_part.added", json{{"type", "response.content_part.added"},
                                                         {"item_id", msg_id},
                                                         {"part", {{"type", "output_text"}, {"text", ""}}}});
  };
  auto token_events = [&](int i) {
    const std::string delta =
        sse_event("response.output_text.delta",
                  json{{"type", "response.output_text.delta"}, {"item_id", msg_id}, {"delta", token_text(i)}});
    return i == 0 ? start_events() + delta : delta;
  };
  auto final_events = [&] {
    const std::string text = generated_text(g.generated);
    const json item{{"type", "message"},
                    {"status", "completed"},
                    {"id", msg_id},
                    {"content", json::array({output_text(text)})},
                    {"role", "assistant"}};
    const json response{
        {"id", resp_id},        {"object", "response"},          {"created_at", g.created},    {"status", "completed"},
        {"model", g_cfg.alias}, {"output", json::array({item})}, {"usage", responses_usage(g)}};
    return (g.generated == 0 ? start_events() : std::string()) +
           sse_event("response.output_text.done",
                     json{{"type", "response.output_text.done"}, {"item_id", msg_id}, {"text", text}}) +
           sse_event("response.content_part.done",
                     json{{"type", "response.content_part.done"}, {"item_id", msg_id}, {"part", output_text(text)}}) +
           sse_event("response.output_item.done", json{{"type", "response.output_item.done"}, {"item", item}}) +
           sse_event("response.completed",
                     json{{"type", "response.completed"}, {"response", response}, {"timings", g.timings()}});
  };
  return stream(c, req, g, token_events, final_events);
}

// Anthropic's usage: nothing is cached here, so every prompt token is input.
json anthropic_usage(const Generation& g, int output_tokens) {
  return json{{"cache_read_input_tokens", 0}, {"input_tokens", g.prompt_n}, {"output_tokens", output_tokens}};
}

// POST /v1/messages. Non-streaming: one "message" (id chatcmpl-..., as real).
// Streaming: message_start and content_block_start with the first token's
// content_block_delta, one delta per later token, then content_block_stop,
// message_delta (stop_reason, output_tokens) and message_stop. stop_reason is
// "max_tokens" when max_tokens cut it, else "end_turn". Without max_tokens
// real llama-server sets 4096 and the model stops at its end of generation;
// the fake's plain text ends after 3 tokens.
bool handle_messages(Conn& c, const Request& req) {
  const json body = parse_body(req);
  Generation g = agent_generation(body, "max_tokens", anthropic_messages(body));
  auto stop_reason = [&g] { return g.limited ? "max_tokens" : "end_turn"; };

  if (!g.stream) {
    if (!generate_all(c, g)) return false;
    const json res{{"id", g.id},
                   {"type", "message"},
                   {"role", "assistant"},
                   {"content", json::array({json{{"type", "text"}, {"text", generated_text(g.generated)}}})},
                   {"model", g_cfg.alias},
                   {"stop_reason", stop_reason()},
                   {"stop_sequence", nullptr},
                   {"usage", anthropic_usage(g, g.generated)}};
    const std::string out = dump(res);
    return c.send(head(200, req, "application/json; charset=utf-8", out.size()) + out);
  }

  auto start_events = [&] {
    return sse_event("message_start", json{{"type", "message_start"},
                                           {"message",
                                            {{"id", g.id},
                                             {"type", "message"},
                                             {"role", "assistant"},
                                             {"content", json::array()},
                                             {"model", g_cfg.alias},
                                             {"stop_reason", nullptr},
                                             {"stop_sequence", nullptr},
                                             {"usage", anthropic_usage(g, 0)}}}}) +
           sse_event("content_block_start", json{{"type", "content_block_start"},
                                                 {"index", 0},
                                                 {"content_block", {{"type", "text"}, {"text", ""}}}});
  };
  auto token_events = [&](int i) {
    const std::string delta =
        sse_event("content_block_delta", json{{"type", "content_block_delta"},
                                              {"index", 0},
                                              {"delta", {{"type", "text_delta"}, {"text", token_text(i)}}}});
    return i == 0 ? start_events() + delta : delta;
  };
  auto final_events = [&] {
    return (g.generated == 0 ? start_events() : std::string()) +
           sse_event("content_block_stop", json{{"type", "content_block_stop"}, {"index", 0}}) +
           sse_event("message_delta", json{{"type", "message_delta"},
                                           {"delta", {{"stop_reason", stop_reason()}, {"stop_sequence", nullptr}}},
                                           {"usage", {{"output_tokens", g.generated}}}}) +
           sse_event("message_stop", json{{"type", "message_stop"}});
  };
  return stream(c, req, g, token_events, final_events);
}

// POST /v1/messages/count_tokens: {"input_tokens":N}.
Response handle_count_tokens(const Request& req) {
  const json body = parse_body(req);
  const int n = count_chat_tokens(anthropic_messages(body), json_value(body, "tools", json()));
  return {200, dump(json{{"input_tokens", n}})};
}

// POST /v1/responses/input_tokens (captured) and
// /v1/chat/completions/input_tokens (not captured; answered the same way):
// {"input_tokens":N,"object":"response.input_tokens"}.
Response handle_input_tokens(const Request& req, bool chat) {
  const json body = parse_body(req);
  const json messages = chat ? json_value(body, "messages", json::array()) : responses_messages(body);
  const int n = count_chat_tokens(messages, json_value(body, "tools", json()));
  return {200, dump(json{{"input_tokens", n}, {"object", "response.input_tokens"}})};
}

// A deterministic relevance of `doc` to `query` in (0, 1): the share of the
// query's words found in the document, squeezed away from 0 and 1.
double relevance(const std::string& query, const std::string& doc) {
  std::istringstream words(lower(query));
  const std::string d = lower(doc);
  int n = 0, found = 0;
  for (std::string w; words >> w; ++n)
    if (d.find(w) != std::string::npos) ++found;
  return (found + 0.5) / (n + 1.0);
}

// POST /v1/rerank, /v1/reranking, /rerank, /reranking. Without --reranking:
// the captured 501 not_supported_error, with "Connection: close". With it:
// llama.cpp's handler (tools/server/server-context.cpp, post_rerank: "query"
// must be a string, "documents" (or TEI's "texts") a non-empty string array,
// top_n = json_value(body, "top_n", documents.size())) and
// format_response_rerank() in tools/server/server-common.cpp: results
// {index, relevance_score} (TEI: a bare array of {index, score}) sorted by
// score, highest first, cut to top_n; then {"model": the body's model else
// the alias, "object":"list", "usage":{prompt_tokens, total_tokens},
// "results"}. Tokens per document: query + document + 4 (BOS, EOS, SEP, EOS).
Response handle_rerank(const Request& req) {
  const json body = parse_body(req);
  const bool tei = body.contains("texts");
  if (body.count("query") != 1) throw bad_request("\"query\" must be provided");
  if (!body.at("query").is_string()) throw bad_request("\"query\" must be a string");
  const std::string query = body.at("query").get<std::string>();
  const auto documents = json_value(body, "documents", json_value(body, "texts", std::vector<std::string>()));
  if (documents.empty()) throw bad_request("\"documents\" must be a non-empty string array");
  const int top_n = json_value(body, "top_n", static_cast<int>(documents.size()));

  std::vector<std::pair<size_t, double>> ranks;
  int n_tokens = 0;
  for (size_t i = 0; i < documents.size(); ++i) {
    ranks.emplace_back(i, relevance(query, documents[i]));
    n_tokens += count_tokens(query) + count_tokens(documents[i]) + 4;
  }
  // Real sorts with std::sort (ties in no set order); stable here, so tests can rely on it.
  std::stable_sort(ranks.begin(), ranks.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  ranks.resize(static_cast<size_t>(std::clamp(top_n, 0, static_cast<int>(ranks.size()))));
  json results = json::array();
  for (const auto& [index, score] : ranks) {
    json r{{"index", index}, {tei ? "score" : "relevance_score", score}};
    if (tei && json_value(body, "return_text", false)) r["text"] = documents[index];
    results.push_back(std::move(r));
  }
  if (tei) return {200, dump(results)};
  return {200, dump(json{{"model", json_value(body, "model", g_cfg.alias)},
                         {"object", "list"},
                         {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}},
                         {"results", std::move(results)}})};
}

Response handle_tokenize(const Request& req) {
  const json body = parse_body(req);
  json tokens = json::array();
  if (body.contains("content")) {
    const std::string text = body["content"].is_string() ? body["content"].get<std::string>() : dump(body["content"]);
    const bool with_pieces = json_value(body, "with_pieces", false);
    if (json_value(body, "add_special", false))
      tokens.push_back(with_pieces ? json{{"id", 1}, {"piece", ""}} : json(1));
    for (const auto& piece : pieces_of(text)) {
      const int id = g_vocab.id(piece);
      tokens.push_back(with_pieces ? json{{"id", id}, {"piece", piece}} : json(id));
    }
  }
  return {200, dump(json{{"tokens", std::move(tokens)}})};
}

Response handle_detokenize(const Request& req) {
  const json body = parse_body(req);
  std::string content;
  if (body.contains("tokens"))
    for (const auto& t : body["tokens"]) content += g_vocab.piece(t.get<int64_t>());
  return {200, dump(json{{"content", content}})};
}

Response handle_apply_template(const Request& req) {
  const json body = parse_body(req);
  plan_chat(body, false);  // oaicompat_chat_params_parse: the chat route's checks
  std::string prompt;
  for (const auto& m : body.at("messages")) {
    const json content = json_value(m, "content", json());
    std::string text;
    if (content.is_string())
      text = content.get<std::string>();
    else if (content.is_array())
      for (const auto& part : content) text += json_value(part, "text", std::string());
    prompt += "<|im_start|>" + json_value(m, "role", std::string()) + "\n" + text + "<|im_end|>\n";
  }
  prompt += "<|im_start|>assistant\n";
  return {200, dump(json{{"prompt", prompt}})};
}

Response handle_models() {
  const json caps = g_cfg.embeddings ? json::array({"embedding"})
                    : g_cfg.mmproj   ? json::array({"completion", "multimodal"})
                                     : json::array({"completion"});
  return {200, dump(json{{"models", json::array({json{{"name", g_cfg.alias},
                                                      {"model", g_cfg.alias},
                                                      {"modified_at", ""},
                                                      {"size", ""},
                                                      {"digest", ""},
                                                      {"type", "model"},
                                                      {"description", ""},
                                                      {"tags", json::array({""})},
                                                      {"capabilities", caps},
                                                      {"parameters", ""},
                                                      {"details", {{"format", "gguf"}}}}})},
                         {"object", "list"},
                         {"data", json::array({json{{"id", g_cfg.alias},
                                                    {"aliases", json::array({g_cfg.alias})},
                                                    {"tags", json::array()},
                                                    {"object", "model"},
                                                    {"created", std::time(nullptr)},
                                                    {"owned_by", "llamacpp"},
                                                    {"meta",
                                                     {{"vocab_type", 1},
                                                      {"n_vocab", 32000},
                                                      {"n_ctx", g_cfg.n_ctx},
                                                      {"n_ctx_train", 4096},
                                                      {"n_embd", g_cfg.embed_dim},
                                                      {"n_params", 0},
                                                      {"size", 0}}}}})}})};
}

bool is_public(const std::string& path) {
  return path == "/health" || path == "/v1/health" || path == "/models" || path == "/v1/models" || path == "/";
}

bool authorized(const Request& req) {
  if (g_cfg.api_keys.empty() || is_public(req.path)) return true;
  std::string key = req.header("authorization");
  if (key.empty()) key = req.header("x-api-key");
  if (key.rfind("Bearer ", 0) == 0) key = key.substr(7);
  return std::find(g_cfg.api_keys.begin(), g_cfg.api_keys.end(), key) != g_cfg.api_keys.end();
}

bool send_response(Conn& c, const Request& req, const Response& r) {
  return c.send(head(r.status, req, r.content_type, r.body.size(), r.extra_headers) + r.body);
}

// The captured refusal of a server started without --reranking.
std::string inline_rerank_refusal() {
  return api_error(501, "This server does not support reranking. Start it with `--reranking`", "not_supported_error")
      .body;
}

// Answers one request; returns whether the connection can serve another.
bool dispatch(Conn& c, Request& req) {
  const std::string json_type = "application/json; charset=utf-8";
  const std::string& m = req.method;
  const std::string& p = req.path;
  if (m == "OPTIONS")  // CORS preflight: no key, no loading check
    return send_response(c, req,
                         {200,
                          "",
                          "text/html",
                          {{"Access-Control-Allow-Credentials", "true"},
                           {"Access-Control-Allow-Methods", "GET, POST"},
                           {"Access-Control-Allow-Headers", "*"}}});
  if (!g_ready) return send_response(c, req, {503, inline_error(503, "Loading model", "unavailable_error")});
  if (!authorized(req)) {
    std::fprintf(stderr, "fake-llama-server: unauthorized: Invalid API Key\n");
    return send_response(c, req, {401, inline_error(401, "Invalid API Key", "authentication_error")});
  }
  std::optional<SlotHold> slot;
  if (is_inference(m, p)) {
    slot.emplace();
    if (g_cfg.request_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(g_cfg.request_delay_ms));
  }
  try {
    if (m == "GET" && (p == "/health" || p == "/v1/health")) return send_response(c, req, {200, R"({"status":"ok"})"});
    if (m == "GET" && p == "/props") return send_response(c, req, {200, props_json()});
    if (m == "GET" && (p == "/models" || p == "/v1/models")) return send_response(c, req, handle_models());
    if (m == "POST" && (p == "/v1/chat/completions" || p == "/chat/completions")) return handle_chat(c, req);
    if (m == "POST" && p == "/v1/completions") return handle_oai_completion(c, req);
    if (m == "POST" && (p == "/completion" || p == "/completions")) return handle_native_completion(c, req);
    if (m == "POST" && p == "/infill") return handle_infill(c, req);
    if (m == "POST" && p == "/v1/embeddings") return send_response(c, req, handle_embeddings(req, true));
    if (m == "POST" && (p == "/embeddings" || p == "/embedding"))
      return send_response(c, req, handle_embeddings(req, false));
    if (m == "POST" && (p == "/v1/responses" || p == "/responses")) return handle_responses(c, req);
    if (m == "POST" && (p == "/v1/responses/input_tokens" || p == "/responses/input_tokens"))
      return send_response(c, req, handle_input_tokens(req, false));
    if (m == "POST" && p == "/v1/chat/completions/input_tokens")
      return send_response(c, req, handle_input_tokens(req, true));
    if (m == "POST" && p == "/v1/messages") return handle_messages(c, req);
    if (m == "POST" && p == "/v1/messages/count_tokens") return send_response(c, req, handle_count_tokens(req));
    if (m == "POST" && (p == "/v1/rerank" || p == "/v1/reranking" || p == "/rerank" || p == "/reranking")) {
      if (!g_cfg.reranking) {
        req.close = true;  // captured: this 501 closes the connection
        return send_response(c, req, {501, inline_rerank_refusal()});
      }
      return send_response(c, req, handle_rerank(req));
    }
    if (m == "POST" && p == "/tokenize") return send_response(c, req, handle_tokenize(req));
    if (m == "POST" && p == "/detokenize") return send_response(c, req, handle_detokenize(req));
    if (m == "POST" && p == "/apply-template") return send_response(c, req, handle_apply_template(req));
    return send_response(c, req, {404, inline_error(404, "File Not Found", "not_found_error")});
  } catch (const HttpError& e) {
    return send_response(c, req, {e.status, e.body, json_type});
  } catch (const std::exception& e) {
    const HttpError err = api_error(500, e.what(), "server_error");
    std::fprintf(stderr, "fake-llama-server: got exception: %s\n", err.body.c_str());
    return send_response(c, req, {err.status, err.body, json_type});
  }
}

void serve_connection(Socket fd) {
  Conn c(fd);
  for (int left = kKeepAliveMax; left > 0; --left) {
    Request req;
    const auto r = c.read_request(req);
    if (r == Conn::Read::closed) return;
    if (r == Conn::Read::bad) {
      req.close = true;
      c.send(head(400, req, "", size_t{0}));
      return;
    }
    const std::string conn = lower(req.header("connection"));
    req.close = left == 1 || conn == "close" || (req.version == "HTTP/1.0" && conn != "keep-alive");
    const bool ok = dispatch(c, req);
    if (req.path != "/health" && req.path != "/v1/health" && req.path != "/models" && req.path != "/v1/models")
      std::fprintf(stderr, "fake-llama-server: request: %s %s\n", req.method.c_str(), req.path.c_str());
    if (!ok || req.close) return;
  }
}

void register_gpu_use(const std::string& visible) {
  const std::string dir = env_or("FAKE_GPU_DIR", "");
  if (dir.empty()) return;
  // CUDA_VISIBLE_DEVICES empty: no GPU, no context at all (as measured).
  if (visible.empty()) return;
  g_reg_file = dir + "/procs/" + std::to_string(current_pid());
  std::ofstream out(g_reg_file + ".tmp");
  out << visible << " " << env_or("FAKE_SERVER_MEM_MIB", "700") << " llama-server\n";
  out.close();
  std::rename((g_reg_file + ".tmp").c_str(), g_reg_file.c_str());
}

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string k = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!k.empty()) out.push_back(k);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.size() > 1 && a[0] == '-' && i + 1 < argc &&
        (argv[i + 1][0] != '-' || std::isdigit(static_cast<unsigned char>(argv[i + 1][1])))) {
      opt[a] = argv[++i];
    } else {
      opt[a] = "";
    }
  }
  std::fprintf(stderr, "fake-llama-server: argv:");
  for (int i = 0; i < argc; ++i) std::fprintf(stderr, " %s", argv[i]);
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  std::fprintf(stderr, "\nfake-llama-server: CUDA_VISIBLE_DEVICES=%s CUDA_DEVICE_ORDER=%s\n", cvd ? cvd : "(unset)",
               env_or("CUDA_DEVICE_ORDER", "(unset)").c_str());

  const std::string host = opt.count("--host") ? opt["--host"] : "127.0.0.1";
  const int port = opt.count("--port") ? std::atoi(opt["--port"].c_str()) : 8080;
  const std::string model = opt.count("-m") ? opt["-m"] : opt.count("--model") ? opt["--model"] : "";
  // The model's id is the -m path unless --alias; "--alias a,b" gives "a".
  g_cfg.alias = model;
  if (opt.count("--alias") || opt.count("-a")) {
    const std::string a = opt.count("--alias") ? opt["--alias"] : opt["-a"];
    g_cfg.alias = a.substr(0, a.find(','));
  }
  g_cfg.embeddings = opt.count("--embeddings") || opt.count("--embedding");
  g_cfg.reranking = opt.count("--reranking") || opt.count("--rerank");
  g_cfg.pooling = lower(env_or("FAKE_MODEL_POOLING", "none"));
  if (opt.count("--pooling") && !opt["--pooling"].empty()) g_cfg.pooling = lower(opt["--pooling"]);
  if (opt.count("--api-key")) g_cfg.api_keys = split_keys(opt["--api-key"]);
  g_cfg.token_delay_ms = env_int("FAKE_TOKEN_DELAY_MS", 5, 0);
  g_cfg.request_delay_ms = env_int("FAKE_REQUEST_DELAY_MS", 0, 0);
  g_cfg.model_path = model;
  for (const char* np : {"-np", "--parallel"})
    if (opt.count(np) && std::atoi(opt[np].c_str()) > 0) g_cfg.slots = std::atoi(opt[np].c_str());
  g_cfg.embed_dim = env_int("FAKE_EMBED_DIM", 128, 1);
  g_cfg.jinja = !opt.count("--no-jinja");
  g_cfg.mmproj = (opt.count("--mmproj") && !opt["--mmproj"].empty()) || (opt.count("-mm") && !opt["-mm"].empty());
  if (opt.count("--reasoning-format") && !opt["--reasoning-format"].empty())
    g_cfg.reasoning_format = opt["--reasoning-format"];
  g_cfg.thinking = env_or("FAKE_THINKING", "") == "1";
  g_cfg.fim = env_or("FAKE_FIM", "") == "1";
  for (const char* c : {"-c", "--ctx-size"})
    if (opt.count(c) && std::atoi(opt[c].c_str()) > 0) g_cfg.n_ctx = std::atoi(opt[c].c_str());
  int ubatch = 512, batch = 2048;
  for (const char* c : {"-ub", "--ubatch-size"})
    if (opt.count(c) && std::atoi(opt[c].c_str()) > 0) ubatch = std::atoi(opt[c].c_str());
  for (const char* c : {"-b", "--batch-size"})
    if (opt.count(c) && std::atoi(opt[c].c_str()) > 0) batch = std::atoi(opt[c].c_str());
  g_cfg.n_ubatch = std::min(ubatch, batch);

  if (env_or("FAKE_FAIL", "") == "refuse") {
    std::fprintf(stderr, "couldn't bind HTTP server socket, hostname: %s, port: %d\nexiting due to HTTP server error\n",
                 host.c_str(), port);
    return 1;
  }
  // Port first, as the real server does.
#ifdef _WIN32
  WSADATA wsa;
  ::WSAStartup(MAKEWORD(2, 2), &wsa);
  const Socket srv = ::socket(AF_INET, SOCK_STREAM, 0);
  // cpp-httplib on Windows: SO_EXCLUSIVEADDRUSE, so a taken port fails to bind.
  const BOOL one = TRUE;
  ::setsockopt(srv, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, reinterpret_cast<const char*>(&one), sizeof one);
#else
  const Socket srv = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#endif
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(srv, 128) != 0) {
    std::fprintf(stderr, "couldn't bind HTTP server socket, hostname: %s, port: %d\nexiting due to HTTP server error\n",
                 host.c_str(), port);
    return 1;
  }
  std::thread([srv] {
    for (;;) {
#ifdef _WIN32
      const Socket fd = ::accept(srv, nullptr, nullptr);
#else
      const Socket fd = ::accept4(srv, nullptr, nullptr, SOCK_CLOEXEC);
#endif
      if (fd == kNoSocket) {
        // Out of descriptors or the like: back off instead of spinning.
        if (!interrupted_call()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      const int nodelay = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&nodelay), sizeof nodelay);
      try {
        std::thread(serve_connection, fd).detach();
      } catch (const std::system_error&) {  // no more threads
        close_socket(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }).detach();

  std::ifstream mf(model, std::ios::binary);
  char magic[4] = {};
  if (!mf || !mf.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::fprintf(stderr, "gguf_init_from_file: failed to open GGUF file '%s'\nexiting due to model loading error\n",
                 model.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
  register_gpu_use(cvd ? cvd : "all");

  const int delay = env_int("FAKE_LOAD_DELAY_MS", 100, 0);
  const std::string fail = env_or("FAKE_FAIL", "");
  if (fail == "crash") {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay / 2));
    std::fprintf(stderr, "llama_model_load: error loading model: fake crash\n");
    if (!g_reg_file.empty()) std::remove(g_reg_file.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  if (fail == "never-healthy") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  g_ready = true;
  std::fprintf(stderr, "main: model loaded\n");
  // Handlers only after loading, like the real server; "listening" after them.
#ifdef _WIN32
  // llama-server's own handler: CTRL_C_EVENT stops it; everything else goes on to the default (exit at once).
  if (env_or("FAKE_IGNORE_SIGTERM", "") == "1") {
    ::SetConsoleCtrlHandler([](DWORD type) -> BOOL { return type == CTRL_C_EVENT; }, TRUE);
  } else {
    ::SetConsoleCtrlHandler(
        [](DWORD type) -> BOOL {
          if (type != CTRL_C_EVENT) return FALSE;
          on_term(0);
          return TRUE;
        },
        TRUE);
  }
#else
  if (env_or("FAKE_IGNORE_SIGTERM", "") == "1") {
    ::signal(SIGTERM, SIG_IGN);
  } else {
    struct sigaction sa {};
    sa.sa_handler = on_term;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
  }
#endif
  std::fprintf(stderr, "main: server is listening on http://%s:%d\n", host.c_str(), port);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::fprintf(stderr, "srv operator(): cleaning up before exit...\n");
  if (!g_reg_file.empty()) std::remove(g_reg_file.c_str());
  std::fflush(stderr);
  // Connection threads may be mid-stream: leave without running destructors
  // under them. Their sockets close with the process.
  std::_Exit(0);
}
