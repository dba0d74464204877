// bench_serve's upstream: an epoll responder that answers at once, and
// streams token events on a fixed schedule (see responder.h).

#include "serve/responder.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "serve/common.h"

namespace bench_serve {

namespace {

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

}  // namespace

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

}  // namespace bench_serve
