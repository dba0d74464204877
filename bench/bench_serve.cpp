// Benchmark: `llamactl serve` as a reverse proxy. Prints figures; no pass/fail.
//
// The upstream is this program itself: started as `bench_serve -m PATH --host
// H --port P ...` (how serve starts a llama-server) it is a one-thread epoll
// responder that answers at once: GET /health 200, POST .../completions with
// a small fixed chat.completion, or with "stream":true an SSE stream of
// max_tokens token events spaced by BENCH_SSE_GAP_MS (headers at once, token
// k at (k+1) gaps after the request, then a finish event and [DONE]), one HTTP
// chunk per event, keep-alive without a request limit. serve starts it as the
// model's llama-server; the same process then serves all three paths:
//
//   1. throughput: C keep-alive connections (1, 16, 64), one thread each,
//      POST /v1/chat/completions {"max_tokens":1} back to back; requests/s,
//      p50 and p99 latency for (a) direct to the upstream, (b) through serve,
//      (c) through nginx (Debian's, proxy_buffering off, upstream keepalive)
//      when /usr/sbin/nginx exists; plus the repo's fake llama-server on its
//      own (direct) for reference, to show why it is not the upstream here.
//   2. SSE: one stream of N events, direct vs serve (vs nginx): time to first
//      byte, to the first data event, gaps between consecutive token events,
//      each event's lateness against the upstream's schedule, and how many
//      reads carried more than one event (a proxy that buffers shows those).
//   3. idle: serve's VmRSS/VmHWM, and its CPU (and its children's: the mock
//      nvidia-smi -lms streams of the GPU monitor) over a quiet period.
//
// Every process it starts is stopped by pid; the instance serve loaded is
// stopped with `llamactl unload --all`. A watchdog (--max-seconds) bounds the
// whole run.
//
// usage: bench_serve [--duration S] [--warmup S] [--rounds N] [--conns 1,16,64]
//                    [--sse-tokens N] [--sse-gap-ms MS] [--sse-runs N]
//                    [--idle-wait S] [--idle-measure S] [--nginx-workers N|auto]
//                    [--no-nginx] [--no-fake] [--pin] [--keep] [--max-seconds S]
//
// --pin: the proxy under test alone on the last CPU, all else on the others.

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Value of header `name` (lower-case, without colon) in a lower-cased header block; "" if none.
std::string header_value(const std::string& head_lower, const std::string& name) {
  const size_t pos = head_lower.find("\r\n" + name + ":");
  if (pos == std::string::npos) return "";
  size_t v = pos + 2 + name.size() + 1;
  const size_t eol = head_lower.find("\r\n", v);
  while (v < head_lower.size() && head_lower[v] == ' ') ++v;
  return head_lower.substr(v, eol == std::string::npos || eol < v ? std::string::npos : eol - v);
}

// ============================== responder mode ==============================

namespace responder {

constexpr const char* kToken =
    R"({"choices":[{"finish_reason":null,"index":0,"delta":{"content":" token"}}],"created":1700000000,)"
    R"("id":"chatcmpl-bench","model":"tiny","system_fingerprint":"b0-bench","object":"chat.completion.chunk"})";
constexpr const char* kFinish =
    R"({"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1700000000,)"
    R"("id":"chatcmpl-bench","model":"tiny","system_fingerprint":"b0-bench","object":"chat.completion.chunk"})";
constexpr const char* kCompletion =
    R"({"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":"Hello"}}],)"
    R"("created":1700000000,"model":"tiny","system_fingerprint":"b0-bench","object":"chat.completion",)"
    R"("usage":{"completion_tokens":1,"prompt_tokens":9,"total_tokens":10},"id":"chatcmpl-bench"})";

struct Conn {
  int fd = -1;
  std::string in, out;
  size_t out_off = 0;
  bool close_after = false;  // close once `out` is flushed and no stream is open
  bool want_write = false;
  bool streaming = false;
  int sent = 0, total = 0;
  Clock::time_point start;
};

std::string chunk(const std::string& payload) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  return size + payload + "\r\n";
}

std::string event(const char* json) {
  return chunk(std::string("data: ") + json + "\n\n");
}

std::string response(int status, const char* reason, const std::string& body, bool close) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                  "\r\nServer: llama.cpp\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n";
  r += close ? "Connection: close\r\n" : "Keep-Alive: timeout=5\r\n";
  return r + "\r\n" + body;
}

// A JSON field's integer value, found textually ("max_tokens": 256); -1 if none.
long json_int(const std::string& body, const std::string& key) {
  const size_t k = body.find("\"" + key + "\"");
  if (k == std::string::npos) return -1;
  size_t i = k + key.size() + 2;
  while (i < body.size() && (body[i] == ' ' || body[i] == ':' || body[i] == '\t')) ++i;
  if (i >= body.size() || !std::isdigit(static_cast<unsigned char>(body[i]))) return -1;
  return std::strtol(body.c_str() + i, nullptr, 10);
}

bool json_true(const std::string& body, const std::string& key) {
  const size_t k = body.find("\"" + key + "\"");
  if (k == std::string::npos) return false;
  size_t i = k + key.size() + 2;
  while (i < body.size() && (body[i] == ' ' || body[i] == ':' || body[i] == '\t')) ++i;
  return body.compare(i, 4, "true") == 0;
}

class Server {
 public:
  Server(int listen_fd, std::string alias, std::chrono::microseconds gap)
      : lfd_(listen_fd), alias_(std::move(alias)), gap_(gap) {}

  int run() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    const int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    tfd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    add(lfd_, EPOLLIN);
    add(sfd, EPOLLIN);
    add(tfd_, EPOLLIN);
    epoll_event evs[256];
    for (;;) {
      const int n = ::epoll_wait(ep_, evs, 256, -1);
      if (n < 0 && errno != EINTR) return 1;
      for (int i = 0; i < n; ++i) {
        const int fd = evs[i].data.fd;
        if (fd == sfd) return 0;
        if (fd == lfd_) {
          accept_all();
        } else if (fd == tfd_) {
          uint64_t x;
          while (::read(tfd_, &x, sizeof x) > 0) {
          }
        } else {
          auto it = conns_.find(fd);
          if (it == conns_.end()) continue;
          Conn& c = *it->second;
          if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (!read_from(c)) {
              drop(fd);
              continue;
            }
            process(c);
          }
          if (evs[i].events & EPOLLOUT) flush(c);
          if (finished(c)) drop(fd);
        }
      }
      tick();
    }
  }

 private:
  int lfd_, ep_ = -1, tfd_ = -1;
  std::string alias_;
  std::chrono::microseconds gap_;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  std::set<int> streams_;                   // connections with a stream open
  std::optional<Clock::time_point> armed_;  // what the timer is set to

  void add(int fd, uint32_t events) {
    epoll_event e{};
    e.events = events;
    e.data.fd = fd;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e);
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      conns_[fd] = std::move(c);
      add(fd, EPOLLIN);
    }
  }

  void drop(int fd) {
    ::epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    conns_.erase(fd);
    streams_.erase(fd);
  }

  static bool finished(const Conn& c) { return c.close_after && !c.streaming && c.out_off >= c.out.size(); }

  // False when the peer closed or the connection broke.
  static bool read_from(Conn& c) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return false;
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
  }

  void set_write_interest(Conn& c, bool want) {
    if (c.want_write == want) return;
    c.want_write = want;
    epoll_event e{};
    e.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    e.data.fd = c.fd;
    ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &e);
  }

  void flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_write_interest(c, true);
        return;
      }
      c.close_after = true;  // broken: drop it
      c.streaming = false;
      c.out.clear();
      c.out_off = 0;
      return;
    }
    c.out.clear();
    c.out_off = 0;
    set_write_interest(c, false);
  }

  void emit_tokens(Conn& c, Clock::time_point now) {
    while (c.streaming && c.sent < c.total && (gap_.count() == 0 || now >= c.start + gap_ * (c.sent + 1))) {
      c.out += event(kToken);
      ++c.sent;
    }
    if (c.streaming && c.sent >= c.total) {
      c.out += event(kFinish);
      c.out += chunk("data: [DONE]\n\n");
      c.out += "0\r\n\r\n";
      c.streaming = false;
    }
  }

  // Handles every complete request in `in` (none while a stream is open).
  void process(Conn& c) {
    while (!c.streaming && !c.close_after) {
      const size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) break;
      const std::string head = lower(c.in.substr(0, end + 2));
      const std::string cl = header_value(head, "content-length");
      const size_t body_len = cl.empty() ? 0 : std::strtoul(cl.c_str(), nullptr, 10);
      if (c.in.size() < end + 4 + body_len) break;
      const std::string line = c.in.substr(0, c.in.find("\r\n"));
      const std::string body = c.in.substr(end + 4, body_len);
      c.in.erase(0, end + 4 + body_len);
      const size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
      const std::string method = line.substr(0, sp1);
      std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
      path = path.substr(0, path.find('?'));
      const std::string conn_hdr = header_value(head, "connection");
      const bool http10 = line.find("HTTP/1.0") != std::string::npos;
      c.close_after = conn_hdr == "close" || (http10 && conn_hdr != "keep-alive");

      if (method == "GET" && (path == "/health" || path == "/v1/health")) {
        c.out += response(200, "OK", R"({"status":"ok"})", c.close_after);
      } else if (method == "GET" && (path == "/models" || path == "/v1/models")) {
        c.out += response(200, "OK",
                          R"({"object":"list","data":[{"id":")" + alias_ +
                              R"(","object":"model","created":1700000000,"owned_by":"llamacpp"}]})",
                          c.close_after);
      } else if (method == "POST" && (path == "/v1/chat/completions" || path == "/chat/completions" ||
                                      path == "/v1/completions" || path == "/completion")) {
        if (json_true(body, "stream")) {
          long n = json_int(body, "max_tokens");
          if (n < 0) n = json_int(body, "n_predict");  // what serve's Ollama translation sends
          c.total = static_cast<int>(n < 0 ? 16 : std::min(n, 100000L));
          c.sent = 0;
          c.start = Clock::now();
          c.streaming = true;
          c.out +=
              "HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nContent-Type: text/event-stream\r\n"
              "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n";
          c.out += c.close_after ? "Connection: close\r\n\r\n" : "Keep-Alive: timeout=5\r\n\r\n";
          emit_tokens(c, c.start);
          if (c.streaming) streams_.insert(c.fd);
        } else {
          c.out += response(200, "OK", kCompletion, c.close_after);
        }
      } else {
        c.out +=
            response(404, "Not Found", R"({"error":{"code":404,"message":"File Not Found","type":"not_found_error"}})",
                     c.close_after);
      }
    }
    flush(c);
  }

  // Emits due tokens and arms the timer for the next one.
  void tick() {
    if (streams_.empty() && !armed_) return;
    const auto now = Clock::now();
    std::optional<Clock::time_point> next;
    const std::vector<int> fds(streams_.begin(), streams_.end());
    for (int fd : fds) {
      auto it = conns_.find(fd);
      if (it == conns_.end()) {
        streams_.erase(fd);
        continue;
      }
      Conn& c = *it->second;
      const size_t before = c.out.size();
      emit_tokens(c, now);
      if (c.out.size() != before) flush(c);
      if (!c.streaming) {
        streams_.erase(fd);
        process(c);  // requests that waited behind the stream
        if (c.streaming) streams_.insert(fd);
        if (finished(c)) {
          drop(fd);
          continue;
        }
        if (!c.streaming) continue;
      }
      const auto due = c.start + gap_ * (c.sent + 1);
      if (!next || due < *next) next = due;
    }
    if (next == armed_) return;
    armed_ = next;
    itimerspec its{};
    if (next) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(next->time_since_epoch()).count();
      its.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
      its.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
      if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    }
    ::timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  }
};

int main_responder(int argc, char** argv) {
  std::string host = "127.0.0.1", alias = "model", model;
  int port = 8080;
  for (int i = 1; i + 1 < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--host")
      host = argv[++i];
    else if (a == "--port")
      port = std::atoi(argv[++i]);
    else if (a == "--alias")
      alias = argv[++i];
    else if (a == "-m")
      model = argv[++i];
  }
  const char* gap_env = std::getenv("BENCH_SSE_GAP_MS");
  const double gap_ms = gap_env ? std::atof(gap_env) : 2.0;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1024) != 0) {
    std::fprintf(stderr, "bench responder: cannot bind %s:%d: %s\n", host.c_str(), port, std::strerror(errno));
    return 1;
  }
  // Register with the mock nvidia-smi as the fake llama-server does, so the
  // GPU monitor sees a process on the GPU.
  std::string reg;
  if (const char* dir = std::getenv("FAKE_GPU_DIR"); dir && *dir) {
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    if (!cvd || *cvd) {
      reg = std::string(dir) + "/procs/" + std::to_string(::getpid());
      std::ofstream(reg) << (cvd ? cvd : "all") << " 700 llama-server\n";
    }
  }
  std::fprintf(stderr, "bench responder: model %s alias %s listening on %s:%d, SSE gap %.3f ms\n", model.c_str(),
               alias.c_str(), host.c_str(), port, gap_ms);
  Server s(fd, alias, std::chrono::microseconds(static_cast<int64_t>(gap_ms * 1000)));
  const int rc = s.run();
  if (!reg.empty()) std::remove(reg.c_str());
  return rc;
}

}  // namespace responder

// ============================== client side ==============================

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string post_request(int port, const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string get_request(int port, const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n\r\n";
}

/// One keep-alive client connection: request, then one whole response.
class HttpConn {
 public:
  ~HttpConn() { close(); }
  bool open(int port) {
    close();
    fd_ = connect_to(port);
    buf_.clear();
    return fd_ >= 0;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool is_open() const { return fd_ >= 0; }
  /// Sends `req` and reads the response. Returns the status (0: failed, see
  /// error()); `closes` says the server ends the connection after it.
  int exchange(const std::string& req, bool& closes, std::string* body = nullptr) {
    closes = true;
    error_.clear();
    if (!send_all(fd_, req)) return fail("send: " + std::string(std::strerror(errno)));
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!more()) return fail("reading the head");
    const std::string head = lower(buf_.substr(0, end + 2));
    if (head.compare(0, 5, "http/") != 0) return fail("not HTTP: " + buf_.substr(0, 60));
    const int status = std::atoi(head.c_str() + 9);
    const std::string conn = header_value(head, "connection");
    closes = conn == "close" || head.compare(0, 8, "http/1.0") == 0;
    const std::string cl = header_value(head, "content-length");
    size_t pos = end + 4;
    std::string out;
    if (!cl.empty()) {
      const size_t n = std::strtoul(cl.c_str(), nullptr, 10);
      while (buf_.size() < pos + n)
        if (!more()) return fail("reading the body");
      if (body) out = buf_.substr(pos, n);
      pos += n;
    } else if (header_value(head, "transfer-encoding").find("chunked") != std::string::npos) {
      for (;;) {
        size_t eol;
        while ((eol = buf_.find("\r\n", pos)) == std::string::npos)
          if (!more()) return fail("reading a chunk size");
        const size_t n = std::strtoul(buf_.c_str() + pos, nullptr, 16);
        while (buf_.size() < eol + 2 + n + 2)
          if (!more()) return fail("reading a chunk");
        if (body) out.append(buf_, eol + 2, n);
        pos = eol + 2 + n + 2;
        if (n == 0) break;  // no trailers from any of our servers
      }
    } else {
      while (more()) {
      }
      if (body) out = buf_.substr(pos);
      pos = buf_.size();
      closes = true;
    }
    buf_.erase(0, pos);
    if (body) *body = std::move(out);
    return status;
  }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  std::string buf_, error_;
  bool more() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      error_ += n == 0 ? " (peer closed)" : std::string(" (") + std::strerror(errno) + ")";
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fail(const std::string& what) {
    error_ = what + error_;
    close();
    return 0;
  }
};

/// One request on a new connection; status (0 on failure).
int http_once(int port, const std::string& req, std::string* body = nullptr) {
  HttpConn c;
  if (!c.open(port)) return 0;
  bool closes = false;
  return c.exchange(req, closes, body);
}

bool wait_status(int port, const std::string& req, int want, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    if (http_once(port, req) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// ---- load generator ----

struct LoadResult {
  std::string path;
  int conns = 0;
  int round = 0;
  double rps = 0, p50 = 0, p99 = 0, mean = 0;
  uint64_t n = 0, errors = 0, non200 = 0, reconnects = 0;
  uint64_t total_ok = 0;  // 200s over the whole run, warm-up included (for CPU per request)
  double proxy_us = -1, upstream_us = -1, client_us = -1;  // CPU per request
  double proxy_cs = -1;                                    // the proxy's context switches per request
  double idle_pct = -1, steal_pct = -1;                    // the machine's, over the run (all CPUs)
  std::string first_error;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size()))) - 1;
  return sorted[std::min(idx, sorted.size() - 1)];
}

struct WorkerOut {
  std::vector<double> lat_ms;
  uint64_t total_ok = 0, errors = 0, non200 = 0, reconnects = 0;
  std::string first_error;
};

LoadResult run_load(const std::string& name, int port, int conns, double warmup_s, double duration_s) {
  const std::string body = R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1})";
  const std::string req = post_request(port, "/v1/chat/completions", body);
  const auto start = Clock::now() + std::chrono::milliseconds(100);
  const auto warm_end = start + std::chrono::microseconds(static_cast<int64_t>(warmup_s * 1e6));
  const auto end = warm_end + std::chrono::microseconds(static_cast<int64_t>(duration_s * 1e6));
  std::vector<WorkerOut> outs(static_cast<size_t>(conns));
  std::vector<std::thread> threads;
  for (int i = 0; i < conns; ++i)
    threads.emplace_back([&, i] {
      WorkerOut& o = outs[static_cast<size_t>(i)];
      o.lat_ms.reserve(static_cast<size_t>(duration_s * 40000 / conns) + 1024);
      HttpConn c;
      bool opened_before = false;
      std::this_thread::sleep_until(start);
      while (Clock::now() < end) {
        if (!c.is_open()) {
          if (!c.open(port)) {
            ++o.errors;
            if (o.first_error.empty()) o.first_error = std::string("connect: ") + std::strerror(errno);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
          }
          if (opened_before) ++o.reconnects;
          opened_before = true;
        }
        const auto t0 = Clock::now();
        bool closes = false;
        const int status = c.exchange(req, closes);
        const auto t1 = Clock::now();
        if (status == 0) {
          ++o.errors;
          if (o.first_error.empty()) o.first_error = c.error();
          continue;
        }
        if (status != 200) {
          ++o.non200;
          if (o.first_error.empty()) o.first_error = "status " + std::to_string(status);
        } else {
          ++o.total_ok;
          if (t1 >= warm_end && t1 <= end) o.lat_ms.push_back(ms_between(t0, t1));
        }
        if (closes) c.close();
      }
    });
  for (auto& t : threads) t.join();
  LoadResult r;
  r.path = name;
  r.conns = conns;
  std::vector<double> all;
  for (auto& o : outs) {
    all.insert(all.end(), o.lat_ms.begin(), o.lat_ms.end());
    r.errors += o.errors;
    r.non200 += o.non200;
    r.reconnects += o.reconnects;
    r.total_ok += o.total_ok;
    if (r.first_error.empty()) r.first_error = o.first_error;
  }
  std::sort(all.begin(), all.end());
  r.n = all.size();
  r.rps = static_cast<double>(all.size()) / duration_s;
  r.p50 = percentile(all, 0.50);
  r.p99 = percentile(all, 0.99);
  double sum = 0;
  for (double x : all) sum += x;
  r.mean = all.empty() ? 0 : sum / static_cast<double>(all.size());
  return r;
}

// ---- SSE ----

struct SseRun {
  bool ok = false;
  std::string error;
  double ttfb = 0, first_event = 0, total = 0;
  double gap_mean = 0, gap_p50 = 0, gap_p99 = 0, gap_max = 0;
  double late_p50 = 0, late_max = 0;  // event arrival minus its schedule ((k+1) gaps after sending)
  int token_events = 0, coalesced = 0;
};

// ollama: POST /api/chat through serve's translation; NDJSON lines instead
// of SSE events, the done:true line instead of [DONE].
SseRun sse_once(int port, int tokens, double gap_ms, bool ollama = false) {
  SseRun r;
  const std::string body =
      ollama ? R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":)" +
                   std::to_string(tokens) + "}}"
             : R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":)" + std::to_string(tokens) +
                   R"(,"stream":true})";
  const char* route = ollama ? "/api/chat" : "/v1/chat/completions";
  const std::string sep_text = ollama ? "\n" : "\n\n";
  const int fd = connect_to(port);
  if (fd < 0) {
    r.error = "connect failed";
    return r;
  }
  const auto t0 = Clock::now();
  if (!send_all(fd, post_request(port, route, body))) {
    ::close(fd);
    r.error = "send failed";
    return r;
  }
  std::string raw, de;                 // raw bytes; de-chunked body
  size_t raw_pos = std::string::npos;  // where the next chunk-size line starts
  size_t ev_pos = 0;                   // where the next event starts in `de`
  std::vector<Clock::time_point> ev_at;
  bool done = false, have_ttfb = false, saw_done = false;
  while (!done) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) {
      r.error = "timed out";
      break;
    }
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    const auto now = Clock::now();
    if (n <= 0) {
      r.error = "connection closed before the end of the stream";
      break;
    }
    if (!have_ttfb) {
      r.ttfb = ms_between(t0, now);
      have_ttfb = true;
    }
    raw.append(buf, static_cast<size_t>(n));
    if (raw_pos == std::string::npos) {
      const size_t end = raw.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      const std::string head = lower(raw.substr(0, end + 2));
      if (std::atoi(head.c_str() + 9) != 200 ||
          header_value(head, "transfer-encoding").find("chunked") == std::string::npos) {
        r.error = "unexpected head: " + raw.substr(0, end);
        break;
      }
      raw_pos = end + 4;
    }
    // De-chunk what is complete.
    for (;;) {
      const size_t eol = raw.find("\r\n", raw_pos);
      if (eol == std::string::npos) break;
      const size_t len = std::strtoul(raw.c_str() + raw_pos, nullptr, 16);
      if (raw.size() < eol + 2 + len + 2) break;
      if (len == 0) {
        done = true;
        break;
      }
      de.append(raw, eol + 2, len);
      raw_pos = eol + 2 + len + 2;
    }
    // Events completed by this read.
    int completed_tokens = 0;
    for (;;) {
      const size_t sep = de.find(sep_text, ev_pos);
      if (sep == std::string::npos) break;
      const std::string ev = de.substr(ev_pos, sep - ev_pos);
      ev_pos = sep + sep_text.size();
      if (ollama) {
        if (ev.find("\"done\":true") != std::string::npos) {
          saw_done = true;
          continue;
        }
      } else {
        if (ev.compare(0, 6, "data: ") != 0) continue;
        if (ev == "data: [DONE]") {
          saw_done = true;
          continue;
        }
      }
      if (static_cast<int>(ev_at.size()) < tokens) ++completed_tokens;
      ev_at.push_back(now);
    }
    if (completed_tokens > 1) r.coalesced += completed_tokens;
  }
  ::close(fd);
  r.total = ms_between(t0, Clock::now());
  r.token_events = std::min<int>(static_cast<int>(ev_at.size()), tokens);
  if (!done && r.error.empty()) r.error = "no end of stream";
  if (!r.error.empty()) return r;
  if (!saw_done || r.token_events < tokens) {
    r.error = "got " + std::to_string(r.token_events) + " token events" + (saw_done ? "" : ", no [DONE]");
    return r;
  }
  r.first_event = ms_between(t0, ev_at[0]);
  std::vector<double> gaps, late;
  for (int k = 0; k < tokens; ++k) {
    late.push_back(ms_between(t0, ev_at[static_cast<size_t>(k)]) - gap_ms * (k + 1));
    if (k > 0) gaps.push_back(ms_between(ev_at[static_cast<size_t>(k - 1)], ev_at[static_cast<size_t>(k)]));
  }
  std::sort(gaps.begin(), gaps.end());
  std::sort(late.begin(), late.end());
  double sum = 0;
  for (double g : gaps) sum += g;
  r.gap_mean = gaps.empty() ? 0 : sum / static_cast<double>(gaps.size());
  r.gap_p50 = percentile(gaps, 0.5);
  r.gap_p99 = percentile(gaps, 0.99);
  r.gap_max = gaps.empty() ? 0 : gaps.back();
  r.late_p50 = percentile(late, 0.5);
  r.late_max = late.back();
  r.ok = true;
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// ============================== processes ==============================

std::atomic<pid_t> g_serve{-1}, g_nginx{-1}, g_fake{-1}, g_instance{-1};
char g_tmp[64] = "";  // the temp dir, for the message of an interrupted run

void emergency(int sig) {
  const char msg[] = "\nbench_serve: stopped (watchdog or signal); killing what it started\n";
  (void)!::write(2, msg, sizeof msg - 1);
  for (auto* p : {&g_serve, &g_nginx, &g_fake, &g_instance}) {
    const pid_t pid = p->load();
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  const char left[] = "temp dir left behind: ";
  (void)!::write(2, left, sizeof left - 1);
  (void)!::write(2, g_tmp, std::strlen(g_tmp));
  (void)!::write(2, "\n", 1);
  ::_exit(sig == SIGALRM ? 3 : 130);
}

std::vector<std::string> child_env(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  auto overridden = [&](const std::string& kv) {
    const std::string name = kv.substr(0, kv.find('='));
    if (name == "LLAMACTL_GPU_FIXTURE" || name == "LLAMACTL_CONFIG" || name == "LLAMACTL_STATE_DIR" ||
        name == "LLAMACTL_API_KEY" || name == "OLLAMA_HOST" || name == "OLLAMA_KEEP_ALIVE")
      return true;
    for (const auto& e : extra)
      if (e.substr(0, e.find('=')) == name) return true;
    return false;
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) out.emplace_back(*e);
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log) {
  std::vector<char*> a, e;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  for (const auto& s : env) e.push_back(const_cast<char*>(s.c_str()));
  e.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  if (::posix_spawn(&pid, a[0], &fa, nullptr, a.data(), e.data()) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

/// SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (128+sig), or -1.
int stop_child(pid_t pid, std::chrono::milliseconds timeout) {
  if (pid <= 0) return -1;
  ::kill(pid, SIGTERM);
  const auto until = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (w < 0) return -1;
    if (Clock::now() >= until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "pid %d did not stop within %lld ms: SIGKILL\n", pid, static_cast<long long>(timeout.count()));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

/// Runs a command to completion (bounded); its exit code or -1.
int run_wait(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log,
             std::chrono::milliseconds timeout) {
  const pid_t pid = spawn(argv, env, log);
  if (pid < 0) return -1;
  const auto until = Clock::now() + timeout;
  int status = 0;
  while (Clock::now() < until) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

bool port_available(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

int pick_base_port() {
  std::random_device rd;
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int base = 20000 + static_cast<int>(rd() % 300) * 100;
    bool ok = true;
    for (int p = base; p < base + 20 && ok; ++p) ok = port_available(p);
    if (ok) return base;
  }
  return 45000;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- /proc ----

struct ProcStat {
  pid_t ppid = 0;
  uint64_t ticks = 0;  // utime + stime
};

std::optional<ProcStat> proc_stat(pid_t pid) {
  const std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(s.substr(close + 2));
  std::vector<std::string> f;
  std::string x;
  while (in >> x) f.push_back(x);
  if (f.size() < 13) return std::nullopt;
  // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  ProcStat p;
  p.ppid = static_cast<pid_t>(std::atol(f[1].c_str()));
  p.ticks = std::strtoull(f[11].c_str(), nullptr, 10) + std::strtoull(f[12].c_str(), nullptr, 10);
  return p;
}

/// CPU time of all threads in ns (schedstat), 0 where unavailable.
uint64_t proc_cpu_ns(pid_t pid) {
  uint64_t sum = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    sum += std::strtoull(slurp(dir + "/" + e->d_name + "/schedstat").c_str(), nullptr, 10);
  }
  ::closedir(d);
  return sum;
}

std::string proc_comm(pid_t pid) {
  std::string c = slurp("/proc/" + std::to_string(pid) + "/comm");
  while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
  return c;
}

std::vector<pid_t> descendants(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  DIR* d = ::opendir("/proc");
  if (!d) return {};
  while (dirent* e = ::readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (auto st = proc_stat(pid)) kids[st->ppid].push_back(pid);
  }
  ::closedir(d);
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    for (pid_t k : kids[p]) {
      out.push_back(k);
      todo.push_back(k);
    }
  }
  return out;
}

/// CPU time (ns) of a process and, with `tree`, of all its descendants.
uint64_t cpu_ns_of(pid_t pid, bool tree) {
  if (pid <= 0) return 0;
  uint64_t sum = proc_cpu_ns(pid);
  if (tree)
    for (pid_t k : descendants(pid)) sum += proc_cpu_ns(k);
  return sum;
}

/// Context switches (voluntary and not) of all threads of a process (and its descendants).
uint64_t ctx_switches(pid_t pid, bool tree) {
  if (pid <= 0) return 0;
  std::vector<pid_t> pids = {pid};
  if (tree)
    for (pid_t k : descendants(pid)) pids.push_back(k);
  uint64_t sum = 0;
  for (pid_t p : pids) {
    const std::string dir = "/proc/" + std::to_string(p) + "/task";
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const pid_t tid = static_cast<pid_t>(std::atol(e->d_name));
      std::istringstream in(slurp(dir + "/" + std::to_string(tid) + "/status"));
      std::string line;
      while (std::getline(in, line))
        if (line.find("ctxt_switches:") != std::string::npos)
          sum += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    ::closedir(d);
  }
  return sum;
}

/// The machine's CPU time from /proc/stat's first line, in ticks: idle
/// (idle + iowait), stolen by the hypervisor, and all of it.
struct MachineCpu {
  uint64_t idle = 0, steal = 0, total = 0;
};

MachineCpu machine_cpu() {
  std::istringstream in(slurp("/proc/stat"));
  std::string cpu;
  in >> cpu;
  MachineCpu m;
  if (cpu != "cpu") return m;
  // user nice system idle iowait irq softirq steal (guest time is inside user)
  uint64_t v[8] = {};
  for (auto& x : v) in >> x;
  for (auto x : v) m.total += x;
  m.idle = v[3] + v[4];
  m.steal = v[7];
  return m;
}

uint64_t self_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

long status_kb(pid_t pid, const std::string& field) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, field.size() + 1, field + ":") == 0) return std::atol(line.c_str() + field.size() + 1);
  return -1;
}

std::string loadavg() {
  std::string s = slurp("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ============================== main ==============================

struct Options {
  double duration = 3, warmup = 0.5;
  int rounds = 3;
  std::vector<int> conns = {1, 16, 64};
  int sse_tokens = 256, sse_runs = 5;
  double sse_gap_ms = 2;
  double idle_wait = 5, idle_measure = 10;
  std::string nginx_workers = "auto";
  bool nginx = true, fake = true, keep = false;
  bool pin = false;  // the proxy on the last CPU, everything else on the others
  int max_seconds = 170;
};

void usage() {
  std::fprintf(
      stderr,
      "usage: bench_serve [--duration S] [--warmup S] [--rounds N] [--conns 1,16,64] [--sse-tokens N]\n"
      "                   [--sse-gap-ms MS] [--sse-runs N] [--idle-wait S] [--idle-measure S]\n"
      "                   [--nginx-workers N|auto] [--no-nginx] [--no-fake] [--pin] [--keep] [--max-seconds S]\n");
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--rounds")
      o.rounds = std::max(1, std::atoi(val().c_str()));
    else if (a == "--duration")
      o.duration = std::atof(val().c_str());
    else if (a == "--warmup")
      o.warmup = std::atof(val().c_str());
    else if (a == "--conns") {
      o.conns.clear();
      std::istringstream in(val());
      std::string c;
      while (std::getline(in, c, ','))
        if (std::atoi(c.c_str()) > 0) o.conns.push_back(std::atoi(c.c_str()));
    } else if (a == "--sse-tokens")
      o.sse_tokens = std::atoi(val().c_str());
    else if (a == "--sse-gap-ms")
      o.sse_gap_ms = std::atof(val().c_str());
    else if (a == "--sse-runs")
      o.sse_runs = std::atoi(val().c_str());
    else if (a == "--idle-wait")
      o.idle_wait = std::atof(val().c_str());
    else if (a == "--idle-measure")
      o.idle_measure = std::atof(val().c_str());
    else if (a == "--nginx-workers")
      o.nginx_workers = val();
    else if (a == "--no-nginx")
      o.nginx = false;
    else if (a == "--no-fake")
      o.fake = false;
    else if (a == "--keep")
      o.keep = true;
    else if (a == "--pin")
      o.pin = true;
    else if (a == "--max-seconds")
      o.max_seconds = std::atoi(val().c_str());
    else
      return std::nullopt;
  }
  if (o.duration <= 0 || o.warmup < 0 || o.conns.empty() || o.sse_tokens < 2 || o.sse_runs < 1 || o.sse_gap_ms < 0 ||
      o.idle_measure <= 0 || o.max_seconds <= 0)
    return std::nullopt;
  return o;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// Every thread of a process (not its children) onto `cpus`; false if one could not be pinned.
bool pin_threads(pid_t pid, const cpu_set_t& cpus) {
  std::error_code ec;
  bool ok = true;
  for (fs::directory_iterator t("/proc/" + std::to_string(pid) + "/task", ec), end; !ec && t != end; t.increment(ec)) {
    const pid_t tid = std::atoi(t->path().filename().c_str());
    if (tid > 0 && ::sched_setaffinity(tid, sizeof cpus, &cpus) != 0) {
      std::fprintf(stderr, "cannot pin thread %d of %d: %s\n", tid, pid, std::strerror(errno));
      ok = false;
    }
  }
  return ok && !ec;
}

std::string self_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

std::string nginx_config(const std::string& dir, const std::string& workers, int listen, int upstream) {
  std::string c;
  c += "worker_processes " + workers + ";\n";
  c += "pid " + dir + "/nginx.pid;\n";
  c += "error_log " + dir + "/error.log warn;\n";
  c += "events { worker_connections 4096; }\n";
  c += "http {\n";
  c += "  access_log off;\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    c += std::string("  ") + t + "_temp_path " + dir + "/" + t + ";\n";
  c += "  keepalive_requests 1000000;\n";
  c += "  upstream u {\n    server 127.0.0.1:" + std::to_string(upstream) +
       ";\n    keepalive 64;\n    keepalive_requests 1000000;\n  }\n";
  c += "  server {\n    listen 127.0.0.1:" + std::to_string(listen) + ";\n";
  c += "    location / {\n      proxy_pass http://u;\n      proxy_http_version 1.1;\n";
  c += "      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }\n  }\n}\n";
  return c;
}

/// Of one path's rounds at one concurrency, the one with the median req/s.
const LoadResult* median_round(const std::vector<LoadResult>& rs, const std::string& path, int conns) {
  std::vector<const LoadResult*> v;
  for (const auto& r : rs)
    if (r.conns == conns && r.path == path) v.push_back(&r);
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end(), [](const LoadResult* a, const LoadResult* b) { return a->rps < b->rps; });
  return v[(v.size() - 1) / 2];
}

void print_load_table(const std::vector<LoadResult>& rs, const Options& o) {
  std::printf(
      "\n== throughput: POST /v1/chat/completions, max_tokens 1, non-streaming; %.1f s per run after %.1f s "
      "warm-up; of %d rounds, the median one by req/s ==\n",
      o.duration, o.warmup, o.rounds);
  std::printf("%-6s %5s %8s %8s %8s %8s %9s %8s %21s %7s %10s %s\n", "path", "conns", "req/s", "p50 ms", "p99 ms",
              "mean ms", "vs direct", "+p99 ms", "CPU us/req prx/up/cli", "prx cs", "idle/steal", "err/non-200/reconn");
  std::vector<std::string> order;
  for (const auto& r : rs)
    if (std::find(order.begin(), order.end(), r.path) == order.end()) order.push_back(r.path);
  for (int c : o.conns) {
    const LoadResult* direct = median_round(rs, "direct", c);
    for (const auto& path : order) {
      const LoadResult* m = median_round(rs, path, c);
      if (!m) continue;
      const auto& r = *m;
      std::string ratio = "-", added = "-";
      if (direct && &r != direct && direct->rps > 0) {
        char b[32];
        std::snprintf(b, sizeof b, "%.2fx", r.rps / direct->rps);
        ratio = b;
        std::snprintf(b, sizeof b, "%+.3f", r.p99 - direct->p99);
        added = b;
      }
      char cpu[64];
      auto us = [](double v) { return v < 0 ? std::string("-") : std::to_string(static_cast<int>(std::lround(v))); };
      std::snprintf(cpu, sizeof cpu, "%s/%s/%s", us(r.proxy_us).c_str(), us(r.upstream_us).c_str(),
                    us(r.client_us).c_str());
      char cs[32] = "-";
      if (r.proxy_cs >= 0) std::snprintf(cs, sizeof cs, "%.1f", r.proxy_cs);
      char idle[32] = "-";
      if (r.idle_pct >= 0) std::snprintf(idle, sizeof idle, "%.0f%%/%.0f%%", r.idle_pct, r.steal_pct);
      std::printf("%-6s %5d %8.0f %8.3f %8.3f %8.3f %9s %8s %21s %7s %10s %llu/%llu/%llu\n", r.path.c_str(), r.conns,
                  r.rps, r.p50, r.p99, r.mean, ratio.c_str(), added.c_str(), cpu, cs, idle,
                  static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.non200),
                  static_cast<unsigned long long>(r.reconnects));
      if (!r.first_error.empty()) std::printf("    first error: %s\n", r.first_error.c_str());
    }
  }
  // serve against nginx, round by round (the runs of a round are next to each other in time).
  bool header = false;
  for (int c : o.conns) {
    std::vector<double> tput, cpu, p99;
    std::string each;
    for (int round = 0; round < o.rounds; ++round) {
      const LoadResult *s = nullptr, *n = nullptr;
      for (const auto& r : rs)
        if (r.conns == c && r.round == round) {
          if (r.path == "serve") s = &r;
          if (r.path == "nginx") n = &r;
        }
      if (!s || !n || n->rps <= 0) continue;
      tput.push_back(s->rps / n->rps);
      if (s->proxy_us > 0 && n->proxy_us > 0) cpu.push_back(s->proxy_us / n->proxy_us);
      p99.push_back(s->p99 - n->p99);
      char b[16];
      std::snprintf(b, sizeof b, "%s%.2f", each.empty() ? "" : " ", s->rps / n->rps);
      each += b;
    }
    if (tput.empty()) continue;
    if (!header) std::printf("serve vs nginx (median of the rounds; each round's throughput ratio in brackets):\n");
    header = true;
    std::printf("  %2d conns: throughput %.2fx nginx's [%s], CPU per request %.2fx nginx's, p99 %+.3f ms vs nginx\n", c,
                median(tput), each.c_str(), cpu.empty() ? 0.0 : median(cpu), median(p99));
  }
  std::printf(
      "CPU us/req: CPU time per request (warm-up included) of the proxy (serve; nginx master+workers), the\n"
      "upstream process and this load generator; with N cores, req/s <= N x 1e6 / (their sum).\n"
      "prx cs: the proxy's context switches per request (all its threads).\n"
      "idle/steal: the machine's CPU time over the run (warm-up included, all CPUs) that was idle, and that the\n"
      "hypervisor took; a run that leaves CPUs idle is bound by wake-ups and latency, not by CPU.\n"
      "fake: the repo's fake llama-server alone (thread per connection, 100 requests per connection).\n");
}

int main_bench(const Options& o) {
  struct sigaction sa {};
  sa.sa_handler = emergency;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(static_cast<unsigned>(o.max_seconds));
  const auto t_begin = Clock::now();

  char tmpl[] = "/tmp/bench-serve-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string tmp = tmpl;
  std::snprintf(g_tmp, sizeof g_tmp, "%s", tmpl);
  const std::string gguf = tmp + "/tiny.gguf", cfg = tmp + "/llamactl.toml", state = tmp + "/state",
                    gpus = tmp + "/gpus", serve_log = tmp + "/serve.log";
  fs::create_directories(gpus + "/procs");
  {
    std::string g = "GGUF";
    const uint32_t version = 3;
    const uint64_t zero = 0;
    g.append(reinterpret_cast<const char*>(&version), 4);
    g.append(reinterpret_cast<const char*>(&zero), 8);
    g.append(reinterpret_cast<const char*>(&zero), 8);
    write_file(gguf, g);
  }
  write_file(gpus + "/gpus", "0 0 81559 0 NVIDIA H100 80GB HBM3\n");
  const std::string self = self_path();
  write_file(cfg, "llama_server = \"" + self + "\"\nbase_port = " + std::to_string(pick_base_port()) +
                      "\n\n[models.tiny]\npath = \"" + gguf + "\"\nkeep_alive = \"-1\"\n");

  char gap[32];
  std::snprintf(gap, sizeof gap, "%g", o.sse_gap_ms);
  const auto env = child_env({"LLAMACTL_NVIDIA_SMI=" FAKE_NVIDIA_SMI, "FAKE_GPU_DIR=" + gpus,
                              std::string("BENCH_SSE_GAP_MS=") + gap, "NO_COLOR=1"});
  const std::vector<std::string> global = {"--config", cfg, "--state-dir", state};

  std::printf("bench_serve: %u CPUs, load average at start %s; temp dir %s\n", std::thread::hardware_concurrency(),
              loadavg().c_str(), tmp.c_str());
  // --pin: this program (the load generator) and what it starts run on all
  // CPUs but the last; the proxy under test (serve, nginx) gets the last to
  // itself. On a small machine the proxies otherwise compete with the load
  // they serve, and the scheduler's choices weigh as much as their work.
  // The CPUs this process may use (taskset, cpusets), not all the machine's.
  cpu_set_t allowed, proxy_cpus, other_cpus;
  CPU_ZERO(&allowed);
  CPU_ZERO(&proxy_cpus);
  CPU_ZERO(&other_cpus);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) std::perror("sched_getaffinity");
  const int ncpu = CPU_COUNT(&allowed);
  if (o.pin && ncpu >= 2) {
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) last = c;
    other_cpus = allowed;
    CPU_CLR(last, &other_cpus);
    CPU_SET(last, &proxy_cpus);
    if (::sched_setaffinity(0, sizeof other_cpus, &other_cpus) != 0) {
      std::perror("sched_setaffinity");
      std::error_code ignored;
      fs::remove_all(tmp, ignored);
      return 1;
    }
    std::printf(
        "pinned: serve and nginx (their default threads and workers) on CPU %d; the load generator, the upstream and "
        "the rest on the other %d CPU(s)\n",
        last, ncpu - 1);
  } else if (o.pin) {
    std::printf("pinned: no (one CPU)\n");
  }
  const bool pinning = o.pin && ncpu >= 2;
  std::printf("llamactl: %s\n", LLAMACTL_BIN);

  const int serve_port = free_port();
  std::vector<std::string> serve_argv = {LLAMACTL_BIN, "serve", "-q", "--listen",
                                         "127.0.0.1:" + std::to_string(serve_port)};
  serve_argv.insert(serve_argv.end(), global.begin(), global.end());
  const pid_t serve = spawn(serve_argv, env, serve_log);
  g_serve = serve;
  int rc = 0;
  int direct_port = 0;
  pid_t instance = -1;
  pid_t nginx = -1, fake = -1;
  int nginx_port = 0, fake_port = 0;
  std::vector<LoadResult> results;

  auto cleanup = [&] {
    std::fprintf(stderr, "cleaning up\n");
    if (nginx > 0) stop_child(nginx, std::chrono::seconds(5));
    g_nginx = -1;
    if (fake > 0) stop_child(fake, std::chrono::seconds(5));
    g_fake = -1;
    if (serve > 0) {
      const int code = stop_child(serve, std::chrono::seconds(15));
      if (code != 0) std::printf("serve exited with %d on SIGTERM\n", code);
    }
    g_serve = -1;
    std::vector<std::string> unload = {LLAMACTL_BIN, "unload", "--all"};
    unload.insert(unload.end(), global.begin(), global.end());
    const int urc = run_wait(unload, env, tmp + "/unload.log", std::chrono::seconds(30));
    if (urc != 0) std::printf("unload --all exited %d: %s\n", urc, slurp(tmp + "/unload.log").c_str());
    g_instance = -1;
    const std::string log = slurp(serve_log);
    if (!log.empty()) {
      std::printf("\nserve's log (-q: warnings and errors only):\n%s\n",
                  log.size() > 3000 ? ("..." + log.substr(log.size() - 3000)).c_str() : log.c_str());
    } else {
      std::printf("\nserve's log: empty (no warnings or errors)\n");
    }
    if (!o.keep) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
    } else {
      std::printf("kept %s\n", tmp.c_str());
    }
  };

  // serve up, then the model loaded through it.
  if (serve < 0 || !wait_status(serve_port, get_request(serve_port, "/health"), 200, std::chrono::seconds(10))) {
    std::printf("serve did not come up; log:\n%s\n", slurp(serve_log).c_str());
    cleanup();
    return 1;
  }
  {
    const auto t0 = Clock::now();
    std::string body;
    const int st =
        http_once(serve_port,
                  post_request(serve_port, "/v1/chat/completions",
                               R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1})"),
                  &body);
    if (st != 200) {
      std::printf("loading the model through serve failed: status %d %s\nserve log:\n%s\n", st, body.c_str(),
                  slurp(serve_log).c_str());
      cleanup();
      return 1;
    }
    std::printf("first request through serve (starts the instance): %.1f ms\n", ms_between(t0, Clock::now()));
    const auto j = nlohmann::json::parse(slurp(state + "/state.json"), nullptr, false);
    if (j.is_object() && j.contains("instances") && !j["instances"].empty()) {
      direct_port = j["instances"][0].value("port", 0);
      instance = static_cast<pid_t>(j["instances"][0].value("pid", int64_t{-1}));
      g_instance = instance;
    }
    if (direct_port <= 0) {
      std::printf("no instance port in %s/state.json\n", state.c_str());
      cleanup();
      return 1;
    }
  }
  if (pinning &&
      !(pin_threads(serve, proxy_cpus) && pin_threads(instance, other_cpus))) {  // the instance had serve's CPUs
    std::printf("--pin: could not pin serve or its instance\n");
    cleanup();
    return 1;
  }
  const long rss_after_load = status_kb(serve, "VmRSS");
  std::printf("upstream: this program as an epoll responder (instance pid %d, port %d); serve pid %d, port %d\n",
              instance, direct_port, serve, serve_port);

  // nginx
  if (!o.nginx) {
    std::printf("nginx: skipped (--no-nginx)\n");
  } else if (::access("/usr/sbin/nginx", X_OK) != 0) {
    std::printf("nginx: not installed (apt-get install nginx-light or nginx)\n");
  } else {
    const std::string dir = tmp + "/nginx";
    fs::create_directories(dir);
    nginx_port = free_port();
    write_file(dir + "/nginx.conf", nginx_config(dir, o.nginx_workers, nginx_port, direct_port));
    nginx = spawn(
        {"/usr/sbin/nginx", "-p", dir + "/", "-e", dir + "/error.log", "-c", dir + "/nginx.conf", "-g", "daemon off;"},
        env, dir + "/stdout.log");
    g_nginx = nginx;
    if (nginx < 0 || !wait_status(nginx_port, get_request(nginx_port, "/health"), 200, std::chrono::seconds(5))) {
      std::printf("nginx did not come up: %s\n", slurp(dir + "/error.log").c_str());
      if (nginx > 0) stop_child(nginx, std::chrono::seconds(5));
      nginx = -1;
      g_nginx = -1;
    } else {
      bool pinned = !pinning || pin_threads(nginx, proxy_cpus);
      for (pid_t w : pinning ? descendants(nginx) : std::vector<pid_t>{}) pinned = pin_threads(w, proxy_cpus) && pinned;
      if (!pinned) std::printf("--pin: could not pin nginx; its figures are not pinned\n");
      std::printf(
          "nginx: /usr/sbin/nginx, worker_processes %s (%zu workers), upstream keepalive 64, "
          "proxy_buffering off, HTTP/1.1 upstream, access_log off\n",
          o.nginx_workers.c_str(), descendants(nginx).size());
    }
  }

  // The repo's fake llama-server on its own, for reference.
  if (o.fake) {
    fake_port = free_port();
    fake = spawn(
        {FAKE_LLAMA_SERVER, "-m", gguf, "--host", "127.0.0.1", "--port", std::to_string(fake_port), "--alias", "tiny"},
        child_env({"FAKE_TOKEN_DELAY_MS=0", "FAKE_LOAD_DELAY_MS=0"}), tmp + "/fake.log");
    g_fake = fake;
    if (fake < 0 || !wait_status(fake_port, get_request(fake_port, "/health"), 200, std::chrono::seconds(5))) {
      std::printf("fake llama-server did not come up\n");
      if (fake > 0) stop_child(fake, std::chrono::seconds(5));
      fake = -1;
      g_fake = -1;
    }
  }

  // 1. throughput, interleaving the paths at each concurrency.
  for (int c : o.conns) {
    struct Path {
      std::string name;
      int port;
      pid_t proxy;  // -1: none
      bool proxy_tree;
      pid_t upstream;
    };
    std::vector<Path> paths = {{"direct", direct_port, -1, false, instance},
                               {"serve", serve_port, serve, false, instance}};
    if (nginx > 0) paths.push_back({"nginx", nginx_port, nginx, true, instance});
    if (fake > 0) paths.push_back({"fake", fake_port, -1, false, fake});
    // Rounds of all paths one after the other: what the machine's neighbours
    // do to one run shows in the others' runs of the same round.
    for (int round = 0; round < o.rounds; ++round)
      for (const auto& p : paths) {
        std::fprintf(stderr, "load: %s, %d connections, round %d...\n", p.name.c_str(), c, round + 1);
        const uint64_t cs0 = ctx_switches(p.proxy, p.proxy_tree);
        const uint64_t px0 = cpu_ns_of(p.proxy, p.proxy_tree), up0 = cpu_ns_of(p.upstream, false), cl0 = self_cpu_ns();
        const MachineCpu m0 = machine_cpu();
        LoadResult r = run_load(p.name, p.port, c, o.warmup, o.duration);
        const MachineCpu m1 = machine_cpu();
        const uint64_t px1 = cpu_ns_of(p.proxy, p.proxy_tree), up1 = cpu_ns_of(p.upstream, false), cl1 = self_cpu_ns();
        const uint64_t cs1 = ctx_switches(p.proxy, p.proxy_tree);
        if (m1.total > m0.total) {
          const auto total = static_cast<double>(m1.total - m0.total);
          r.idle_pct = 100.0 * static_cast<double>(m1.idle - m0.idle) / total;
          r.steal_pct = 100.0 * static_cast<double>(m1.steal - m0.steal) / total;
        }
        if (r.total_ok > 0) {
          const double n = static_cast<double>(r.total_ok) * 1000.0;
          if (p.proxy > 0) r.proxy_us = static_cast<double>(px1 - px0) / n;
          if (p.proxy > 0) r.proxy_cs = static_cast<double>(cs1 - cs0) / static_cast<double>(r.total_ok);
          r.upstream_us = static_cast<double>(up1 - up0) / n;
          r.client_us = static_cast<double>(cl1 - cl0) / n;
        }
        r.round = round;
        results.push_back(r);
      }
  }
  if (fake > 0) stop_child(fake, std::chrono::seconds(5));
  fake = -1;
  g_fake = -1;
  print_load_table(results, o);
  std::fflush(stdout);

  // 2. SSE, alternating the paths run by run.
  {
    // "ollama": /api/chat through serve, NDJSON translated from the same upstream SSE.
    std::vector<std::pair<std::string, int>> paths = {{"direct", direct_port}, {"serve", serve_port}};
    if (nginx > 0) paths.emplace_back("nginx", nginx_port);
    paths.emplace_back("ollama", serve_port);
    std::map<std::string, std::vector<SseRun>> runs;
    for (const auto& [name, port] : paths)
      (void)sse_once(port, 16, o.sse_gap_ms, name == "ollama");  // warm-up, not counted
    for (int i = 0; i < o.sse_runs; ++i)
      for (const auto& [name, port] : paths) {
        std::fprintf(stderr, "sse: %s, run %d...\n", name.c_str(), i + 1);
        runs[name].push_back(sse_once(port, o.sse_tokens, o.sse_gap_ms, name == "ollama"));
      }
    std::printf(
        "\n== SSE: one stream of %d token events, upstream gap %.3f ms; medians of %d runs (worst max gap "
        "of all runs) ==\n",
        o.sse_tokens, o.sse_gap_ms, o.sse_runs);
    std::printf("%-8s %8s %9s %9s %9s %9s %9s %9s %12s %10s %10s %9s\n", "path", "TTFB ms", "1st ev ms", "total ms",
                "gap mean", "gap p50", "gap p99", "gap max", "worst max", "late p50", "late max", "coalesced");
    std::map<std::string, std::vector<double>> late_p50s;
    for (const auto& [name, port] : paths) {
      std::vector<double> ttfb, first, total, gmean, gp50, gp99, gmax, lp50, lmax, coal;
      double worst = 0;
      int failed = 0;
      std::string err;
      for (const auto& r : runs[name]) {
        if (!r.ok) {
          ++failed;
          err = r.error;
          continue;
        }
        ttfb.push_back(r.ttfb);
        first.push_back(r.first_event);
        total.push_back(r.total);
        gmean.push_back(r.gap_mean);
        gp50.push_back(r.gap_p50);
        gp99.push_back(r.gap_p99);
        gmax.push_back(r.gap_max);
        lp50.push_back(r.late_p50);
        lmax.push_back(r.late_max);
        coal.push_back(r.coalesced);
        worst = std::max(worst, r.gap_max);
      }
      late_p50s[name] = lp50;
      std::printf("%-8s %8.3f %9.3f %9.1f %9.3f %9.3f %9.3f %9.3f %12.3f %10.3f %10.3f %9.0f\n", name.c_str(),
                  median(ttfb), median(first), median(total), median(gmean), median(gp50), median(gp99), median(gmax),
                  worst, median(lp50), median(lmax), median(coal));
      if (failed) std::printf("    %d run(s) failed: %s\n", failed, err.c_str());
    }
    std::printf(
        "late: event k's arrival minus (k+1) x gap after the request was sent (includes the request's "
        "trip);\ncoalesced: token events that arrived in a read together with another one.\n");
    if (!late_p50s["serve"].empty() && !late_p50s["direct"].empty())
      std::printf(
          "through serve each event arrives %.3f ms later than direct (median lateness; includes the request's "
          "forward trip)\n",
          median(late_p50s["serve"]) - median(late_p50s["direct"]));
    if (!late_p50s["ollama"].empty() && !late_p50s["serve"].empty())
      std::printf(
          "the Ollama translation (SSE -> NDJSON) adds %.3f ms per streamed chunk (median lateness, ollama "
          "vs serve's OpenAI relay)\n",
          median(late_p50s["ollama"]) - median(late_p50s["serve"]));
  }
  std::fflush(stdout);

  // 3. idle
  {
    std::fprintf(stderr, "idle: waiting %.0f s, then measuring %.0f s...\n", o.idle_wait, o.idle_measure);
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(o.idle_wait * 1e6)));
    const long rss = status_kb(serve, "VmRSS"), hwm = status_kb(serve, "VmHWM");
    auto snapshot = [&] {
      std::map<pid_t, std::pair<uint64_t, uint64_t>> m;  // pid -> ticks, ns
      for (pid_t p : descendants(serve)) {
        if (p == instance) continue;
        if (auto st = proc_stat(p)) m[p] = {st->ticks, proc_cpu_ns(p)};
      }
      return m;
    };
    const auto s0 = proc_stat(serve);
    const uint64_t n0 = proc_cpu_ns(serve);
    const auto k0 = snapshot();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(o.idle_measure * 1e6)));
    const auto s1 = proc_stat(serve);
    const uint64_t n1 = proc_cpu_ns(serve);
    const auto k1 = snapshot();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double serve_ticks_pct = s0 && s1 ? 100.0 * static_cast<double>(s1->ticks - s0->ticks) / hz / secs : -1;
    const double serve_ns_pct = 100.0 * static_cast<double>(n1 - n0) / 1e9 / secs;
    double kid_ticks = 0, kid_ns = 0;
    std::map<std::string, int> names;
    for (const auto& [pid, v] : k1) {
      const auto it = k0.find(pid);
      const auto before = it == k0.end() ? std::pair<uint64_t, uint64_t>{0, 0} : it->second;
      kid_ticks += static_cast<double>(v.first - before.first);
      kid_ns += static_cast<double>(v.second - before.second);
      ++names[proc_comm(pid)];
    }
    std::string kids;
    for (const auto& [n, c] : names) kids += (kids.empty() ? "" : ", ") + std::to_string(c) + " x " + n;
    std::printf("\n== idle serve (after the runs, %.0f s quiet, 1 instance, GPU monitor running) ==\n", o.idle_wait);
    std::printf("VmRSS %.1f MB (%ld kB; %ld kB right after the first load), VmHWM %.1f MB (%ld kB)\n",
                static_cast<double>(rss) / 1024, rss, rss_after_load, static_cast<double>(hwm) / 1024, hwm);
    std::printf("CPU over %.1f s: serve %.3f%% of a core (schedstat; %.2f%% by utime+stime ticks)\n", secs,
                serve_ns_pct, serve_ticks_pct);
    std::printf("                 its children (%s): %.3f%% (schedstat; %.2f%% by ticks); together %.3f%%\n",
                kids.empty() ? "none" : kids.c_str(), 100.0 * kid_ns / 1e9 / secs, 100.0 * kid_ticks / hz / secs,
                serve_ns_pct + 100.0 * kid_ns / 1e9 / secs);
  }

  {
    std::string text;
    if (http_once(serve_port, get_request(serve_port, "/metrics"), &text) == 200) {
      std::printf("serve's /metrics at the end:");
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line))
        if (line.rfind("llamactl_requests_total{", 0) == 0 || line.rfind("llamactl_loads_total{", 0) == 0 ||
            line.rfind("llamactl_unloads_total{", 0) == 0 || line.rfind("llamactl_gpu_reading_ok", 0) == 0)
          if (line.size() < 2 || line.substr(line.size() - 2) != " 0") std::printf("\n  %s", line.c_str());
      std::printf("\n");
    }
  }
  std::printf("\nload average at the end %s; whole run %.1f s\n", loadavg().c_str(),
              std::chrono::duration<double>(Clock::now() - t_begin).count());
  std::fflush(stdout);
  cleanup();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  // serve starts us as its llama-server: `-m PATH --host H --port P ...`.
  if (argc > 1 && std::strcmp(argv[1], "-m") == 0) return responder::main_responder(argc, argv);
  const auto o = parse_args(argc, argv);
  if (!o) {
    usage();
    return 2;
  }
  return main_bench(*o);
}
