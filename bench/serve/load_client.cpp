// bench_serve's client side (see load_client.h).

#include "serve/load_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "serve/common.h"
#include "support/net_posix.h"

namespace bench_serve {
namespace {

// A connection to 127.0.0.1:`port` with 10 s send and receive timeouts and no Nagle delay.
int connect_to(int port) {
  llamactl::testing::ConnectOptions o;
  o.io_timeout = std::chrono::seconds(10);
  o.nodelay = true;
  return llamactl::testing::connect_loopback(port, o);
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

struct WorkerOut {
  std::vector<double> lat_ms;
  uint64_t total_ok = 0, errors = 0, non200 = 0, reconnects = 0;
  std::string first_error;
};

}  // namespace

std::string post_request(int port, const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string get_request(int port, const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n\r\n";
}

int http_once(int port, const std::string& req, std::string* body) {
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

namespace {

// When a run starts, when its warm-up ends (latencies count from here), and when it ends.
struct Window {
  Clock::time_point start, warm_end, end;
};

// One connection's requests, back to back over the window; it reconnects when the server closes.
void load_worker(WorkerOut& o, int port, const std::string& req, const Window& w, size_t reserve) {
  o.lat_ms.reserve(reserve);
  HttpConn c;
  bool opened_before = false;
  std::this_thread::sleep_until(w.start);
  while (Clock::now() < w.end) {
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
      if (t1 >= w.warm_end && t1 <= w.end) o.lat_ms.push_back(ms_between(t0, t1));
    }
    if (closes) c.close();
  }
}

// The workers' counts added up, and the latency figures of all their requests.
LoadResult summarize(const std::string& name, int conns, double duration_s, const std::vector<WorkerOut>& outs) {
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

}  // namespace

LoadResult run_load(const std::string& name, int port, int conns, double warmup_s, double duration_s) {
  const std::string body = R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1})";
  const std::string req = post_request(port, "/v1/chat/completions", body);
  Window w;
  w.start = Clock::now() + std::chrono::milliseconds(100);
  w.warm_end = w.start + std::chrono::microseconds(static_cast<int64_t>(warmup_s * 1e6));
  w.end = w.warm_end + std::chrono::microseconds(static_cast<int64_t>(duration_s * 1e6));
  const size_t reserve = static_cast<size_t>(duration_s * 40000 / conns) + 1024;
  std::vector<WorkerOut> outs(static_cast<size_t>(conns));
  std::vector<std::thread> threads;
  for (int i = 0; i < conns; ++i)
    threads.emplace_back([&, i] { load_worker(outs[static_cast<size_t>(i)], port, req, w, reserve); });
  for (auto& t : threads) t.join();
  return summarize(name, conns, duration_s, outs);
}

namespace {

std::string stream_body(int tokens, bool ollama) {
  return ollama ? R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":)" +
                      std::to_string(tokens) + "}}"
                : R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":)" +
                      std::to_string(tokens) + R"(,"stream":true})";
}

// A chunked response taken apart as its bytes arrive: the head, the chunks,
// then the events (SSE, or NDJSON lines for Ollama) with when each completed.
class StreamReader {
 public:
  StreamReader(bool ollama, int tokens) : ollama_(ollama), tokens_(tokens), sep_(ollama ? "\n" : "\n\n") {}

  /// Takes one read's bytes, arrived at `now`; false (and `error`) on a head
  /// that is not a 200 with chunked transfer.
  bool add(const char* data, size_t n, Clock::time_point now, std::string& error) {
    raw_.append(data, n);
    if (raw_pos_ == std::string::npos) {
      const size_t end = raw_.find("\r\n\r\n");
      if (end == std::string::npos) return true;
      const std::string head = lower(raw_.substr(0, end + 2));
      if (std::atoi(head.c_str() + 9) != 200 ||
          header_value(head, "transfer-encoding").find("chunked") == std::string::npos) {
        error = "unexpected head: " + raw_.substr(0, end);
        return false;
      }
      raw_pos_ = end + 4;
    }
    dechunk();
    const int completed_tokens = take_events(now);
    if (completed_tokens > 1) coalesced_ += completed_tokens;
    return true;
  }

  bool done() const { return done_; }           ///< the last chunk arrived
  bool saw_done() const { return saw_done_; }   ///< [DONE], or Ollama's done:true line
  int coalesced() const { return coalesced_; }  ///< token events that came in a read with another
  const std::vector<Clock::time_point>& events() const { return ev_at_; }

 private:
  bool ollama_;
  int tokens_;
  std::string sep_;
  std::string raw_, de_;                // raw bytes; de-chunked body
  size_t raw_pos_ = std::string::npos;  // where the next chunk-size line starts
  size_t ev_pos_ = 0;                   // where the next event starts in `de_`
  std::vector<Clock::time_point> ev_at_;
  bool done_ = false, saw_done_ = false;
  int coalesced_ = 0;

  // De-chunks what is complete.
  void dechunk() {
    for (;;) {
      const size_t eol = raw_.find("\r\n", raw_pos_);
      if (eol == std::string::npos) break;
      const size_t len = std::strtoul(raw_.c_str() + raw_pos_, nullptr, 16);
      if (raw_.size() < eol + 2 + len + 2) break;
      if (len == 0) {
        done_ = true;
        break;
      }
      de_.append(raw_, eol + 2, len);
      raw_pos_ = eol + 2 + len + 2;
    }
  }

  // The events completed by this read; how many of them were token events.
  int take_events(Clock::time_point now) {
    int completed_tokens = 0;
    for (;;) {
      const size_t sep = de_.find(sep_, ev_pos_);
      if (sep == std::string::npos) break;
      const std::string ev = de_.substr(ev_pos_, sep - ev_pos_);
      ev_pos_ = sep + sep_.size();
      if (ollama_) {
        if (ev.find("\"done\":true") != std::string::npos) {
          saw_done_ = true;
          continue;
        }
      } else {
        if (ev.compare(0, 6, "data: ") != 0) continue;
        if (ev == "data: [DONE]") {
          saw_done_ = true;
          continue;
        }
      }
      if (static_cast<int>(ev_at_.size()) < tokens_) ++completed_tokens;
      ev_at_.push_back(now);
    }
    return completed_tokens;
  }
};

// Reads the stream on `fd` to its end; the time to the first byte into `r`, or its error.
void read_stream(int fd, Clock::time_point t0, StreamReader& reader, SseRun& r) {
  bool have_ttfb = false;
  while (!reader.done()) {
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
    if (!reader.add(buf, static_cast<size_t>(n), now, r.error)) break;
  }
}

// Gaps between the token events and each one's lateness against the upstream's schedule.
void time_events(SseRun& r, Clock::time_point t0, const std::vector<Clock::time_point>& ev_at, int tokens,
                 double gap_ms) {
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
}

}  // namespace

SseRun sse_once(int port, int tokens, double gap_ms, bool ollama) {
  SseRun r;
  const char* route = ollama ? "/api/chat" : "/v1/chat/completions";
  const int fd = connect_to(port);
  if (fd < 0) {
    r.error = "connect failed";
    return r;
  }
  const auto t0 = Clock::now();
  if (!send_all(fd, post_request(port, route, stream_body(tokens, ollama)))) {
    ::close(fd);
    r.error = "send failed";
    return r;
  }
  StreamReader reader(ollama, tokens);
  read_stream(fd, t0, reader, r);
  ::close(fd);
  r.total = ms_between(t0, Clock::now());
  r.coalesced = reader.coalesced();
  r.token_events = std::min<int>(static_cast<int>(reader.events().size()), tokens);
  if (!reader.done() && r.error.empty()) r.error = "no end of stream";
  if (!r.error.empty()) return r;
  if (!reader.saw_done() || r.token_events < tokens) {
    r.error = "got " + std::to_string(r.token_events) + " token events" + (reader.saw_done() ? "" : ", no [DONE]");
    return r;
  }
  time_events(r, t0, reader.events(), tokens, gap_ms);
  r.ok = true;
  return r;
}

}  // namespace bench_serve
