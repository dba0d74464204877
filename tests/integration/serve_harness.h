#pragma once
// For serve's end-to-end tests: a `llamactl serve` process of a sandbox
// (stopped by pid by its owner), and a small HTTP/1.1 client on raw sockets
// that can also read a stream piece by piece and hang up in the middle.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "integration/harness.h"
#include "support/net_posix.h"  // free_port(), connect_loopback()

namespace llamactl::testing {

struct HttpReply {
  int status = 0;                              // 0: no answer (connection failed or timed out)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked
  std::string error;
  nlohmann::json json() const;
};

/// One request on a new connection (Connection: close); every step has a deadline.
HttpReply http_request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                       const std::vector<std::string>& headers = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

/// Connects, sends `text` exactly as given (for requests http_request will not
/// write: other Host fields, broken framing), and returns the raw bytes that
/// come back until serve closes the connection or `within` passes.
/// `closed` (when given) says whether serve closed it.
std::string raw_exchange(int port, const std::string& text, std::chrono::milliseconds within = std::chrono::seconds(10),
                         bool* closed = nullptr);

/// A request whose response is read as it arrives.
class HttpStream {
 public:
  HttpStream(int port, const std::string& method, const std::string& path, const std::string& body,
             const std::vector<std::string>& headers = {});
  ~HttpStream();
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;
  /// Reads until `needle` is in the body (de-chunked), the peer closes, or
  /// the timeout passes. True when found.
  bool read_until(const std::string& needle, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Reads until the peer closes (or the timeout passes); true when it closed.
  bool read_to_end(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  const std::string& raw() const { return raw_; }
  /// The body so far, chunk framing removed (an incomplete last chunk left out).
  std::string body() const;
  void close();

 private:
  int fd_ = -1;
  std::string raw_;
};

class ServeProcess {
 public:
  /// Starts `llamactl serve --listen 127.0.0.1:PORT ARGS` for the sandbox.
  ServeProcess(const Sandbox& sb, const std::vector<std::string>& args = {}, const std::vector<std::string>& env = {},
               int port = 0);
  ~ServeProcess();
  ServeProcess(const ServeProcess&) = delete;
  ServeProcess& operator=(const ServeProcess&) = delete;

  /// Waits until GET /health answers 200.
  bool ready(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  /// SIGTERM, then waits; returns the exit code (-1 on timeout: then killed).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Exit code if it has exited by itself within the timeout; -1 otherwise.
  int wait_exit(std::chrono::milliseconds timeout);
  std::string output() const;  // stdout and stderr so far
  int port() const { return port_; }
  int64_t pid() const { return pid_; }

 private:
  int64_t pid_ = -1;
  int port_ = 0;
  std::string log_;
  bool reaped_ = false;
};

/// The value of the /metrics line that starts with `line_start` (the name
/// and labels, e.g. `llamactl_swaps_total`); -1 when there is none.
double metric(const ServeProcess& s, const std::string& line_start);

}  // namespace llamactl::testing
