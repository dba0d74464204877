#pragma once
// Loopback sockets for tests and benchmarks on POSIX (not built for Windows).

#include <chrono>

namespace llamactl::testing {

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0 and
/// released); 0 when the system gave none. Another process may take it first.
int free_port();

struct ConnectOptions {
  /// > 0: connect without blocking and give up after this long; the socket
  /// then stays non-blocking. 0: a blocking connect.
  std::chrono::milliseconds connect_timeout{0};
  /// > 0: SO_RCVTIMEO and SO_SNDTIMEO on the connected socket.
  std::chrono::seconds io_timeout{0};
  int rcvbuf = 0;        ///< > 0: SO_RCVBUF, set before connecting
  bool nodelay = false;  ///< TCP_NODELAY
};

/// A TCP connection (close-on-exec) to 127.0.0.1:`port`; -1 when it cannot connect.
int connect_loopback(int port, const ConnectOptions& options = {});

}  // namespace llamactl::testing
