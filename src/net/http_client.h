#pragma once
// Minimal HTTP/1.1 client for loopback probes (health checks). Every call
// has a deadline; nothing here resolves host names (a static binary cannot
// use NSS), so hosts are IP literals.

#include <chrono>
#include <string>

#include "util/result.h"

namespace llamactl::net {

struct HttpResponse {
  int status = 0;
  std::string body;
};

/// GET http://host:port/target. Error kind io when the connection fails
/// (refused, reset), kind timeout when the deadline passes first.
Result<HttpResponse> http_get(const std::string& host, int port, const std::string& target,
                              std::chrono::milliseconds timeout);

}  // namespace llamactl::net
