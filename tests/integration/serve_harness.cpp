#include "integration/serve_harness.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace llamactl::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The socket stays non-blocking: send_all and read_some poll with their own deadlines.
int connect_to(int port, std::chrono::milliseconds timeout) {
  ConnectOptions o;
  o.connect_timeout = timeout;
  return connect_loopback(port, o);
}

bool send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 10000) != 1) return false;
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Appends what arrives until the deadline; false when the peer closed.
bool read_some(int fd, std::string& out, Clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
  pollfd p{fd, POLLIN, 0};
  if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1) return true;
  char buf[16384];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n <= 0) return false;
  out.append(buf, static_cast<size_t>(n));
  return true;
}

std::string request_text(const std::string& method, const std::string& path, const std::string& body,
                         const std::vector<std::string>& headers, bool close) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) r += h + "\r\n";
  if (!body.empty() || method == "POST") r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) r += "Connection: close\r\n";
  return r + "\r\n" + body;
}

}  // namespace

std::string raw_exchange(int port, const std::string& text, std::chrono::milliseconds within, bool* closed) {
  std::string raw;
  bool open = true;
  const int fd = connect_to(port, std::chrono::seconds(5));
  if (fd >= 0 && send_all(fd, text)) {
    const auto until = Clock::now() + within;
    while (open && Clock::now() < until) open = read_some(fd, raw, until);
  }
  if (fd >= 0) ::close(fd);
  if (closed) *closed = !open;
  return raw;
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string dechunk(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t eol = s.find("\r\n", i);
    if (eol == std::string::npos) break;
    const size_t n = std::stoul(s.substr(i, eol - i), nullptr, 16);
    if (n == 0 || eol + 2 + n > s.size()) break;
    out += s.substr(eol + 2, n);
    i = eol + 2 + n + 2;
  }
  return out;
}

HttpReply parse_reply(const std::string& raw) {
  HttpReply r;
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) {
    r.error = "no complete response: " + raw.substr(0, 200);
    return r;
  }
  std::istringstream head(raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  r.status = std::atoi(line.c_str() + 9);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v[0] == ' ') v.erase(0, 1);
    r.headers[lower(line.substr(0, colon))] = v;
  }
  const std::string body = raw.substr(end + 4);
  r.body = lower(r.headers["transfer-encoding"]) == "chunked" ? dechunk(body) : body;
  return r;
}

}  // namespace

nlohmann::json HttpReply::json() const {
  return nlohmann::json::parse(body, nullptr, false);
}

HttpReply http_request(int port, const std::string& method, const std::string& path, const std::string& body,
                       const std::vector<std::string>& headers, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  const int fd = connect_to(port, timeout);
  HttpReply r;
  if (fd < 0) {
    r.error = "connect failed";
    return r;
  }
  std::string raw;
  if (send_all(fd, request_text(method, path, body, headers, true)))
    while (Clock::now() < until && read_some(fd, raw, until)) {
    }
  ::close(fd);
  r = parse_reply(raw);
  if (r.status == 0 && Clock::now() >= until) r.error = "timed out; got: " + raw.substr(0, 200);
  return r;
}

HttpStream::HttpStream(int port, const std::string& method, const std::string& path, const std::string& body,
                       const std::vector<std::string>& headers) {
  fd_ = connect_to(port, std::chrono::seconds(5));
  if (fd_ >= 0) send_all(fd_, request_text(method, path, body, headers, true));
}

HttpStream::~HttpStream() {
  close();
}

std::string HttpStream::body() const {
  const size_t end = raw_.find("\r\n\r\n");
  if (end == std::string::npos) return "";
  const bool chunked = lower(raw_.substr(0, end)).find("transfer-encoding: chunked") != std::string::npos;
  return chunked ? dechunk(raw_.substr(end + 4)) : raw_.substr(end + 4);
}

bool HttpStream::read_until(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (fd_ >= 0 && body().find(needle) == std::string::npos && Clock::now() < until)
    if (!read_some(fd_, raw_, until)) break;
  return body().find(needle) != std::string::npos;
}

bool HttpStream::read_to_end(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (fd_ >= 0 && Clock::now() < until)
    if (!read_some(fd_, raw_, until)) return true;
  return false;
}

void HttpStream::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

ServeProcess::ServeProcess(const Sandbox& sb, const std::vector<std::string>& args, const std::vector<std::string>& env,
                           int port)
    : port_(port ? port : free_port()) {
  std::vector<std::string> full = {"serve", "--listen", "127.0.0.1:" + std::to_string(port_)};
  full.insert(full.end(), args.begin(), args.end());
  const auto argv = sb.command(sb.state_dir(), full, env);
  static int counter = 0;
  log_ = sb.path("serve-" + std::to_string(++counter) + ".log");
  SpawnOptions o;
  o.log = log_;
  pid_ = spawn_logged(argv, o);
}

ServeProcess::~ServeProcess() {
  // Gracefully first, so serve stops its GPU monitor's children; then by force.
  if (pid_ > 0 && !reaped_ && terminate(std::chrono::seconds(10)) == -1 && !reaped_) {
    ::kill(static_cast<pid_t>(pid_), SIGKILL);
    ::waitpid(static_cast<pid_t>(pid_), nullptr, 0);
  }
}

bool ServeProcess::ready(std::chrono::milliseconds timeout) const {
  return eventually(
      [&] { return http_request(port_, "GET", "/health", "", {}, std::chrono::seconds(1)).status == 200; }, timeout);
}

int ServeProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0 || reaped_) return -1;
  const auto until = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t w = ::waitpid(static_cast<pid_t>(pid_), &status, WNOHANG);
    if (w == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (Clock::now() >= until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int ServeProcess::terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0 || reaped_) return -1;
  ::kill(static_cast<pid_t>(pid_), SIGTERM);
  return wait_exit(timeout);
}

std::string ServeProcess::output() const {
  return read_text(log_);
}

double metric(const ServeProcess& s, const std::string& line_start) {
  const auto r = http_request(s.port(), "GET", "/metrics");
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(line_start + " ", 0) == 0) return std::stod(line.substr(line_start.size() + 1));
  return -1;
}

}  // namespace llamactl::testing
