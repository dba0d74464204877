#pragma once
// A client's request as serve's handlers see it: views into the message the
// session parsed (Beast's, which only server.cpp and heads.cpp know), so
// nothing is copied per request and no handler includes Beast.

#include <string>
#include <string_view>

namespace llamactl::serve {

enum class Method { get, head, post, put, patch, del, options, other };

/// The parsed message behind a Request (server.cpp owns it; heads.cpp reads
/// its fields for the relayed head).
struct NativeRequest;

struct Request {
  Method method = Method::other;
  std::string_view method_name;  // as sent, for the log
  std::string_view target;       // path and query
  std::string_view path;         // target up to '?'
  unsigned version = 11;         // 10 or 11
  bool keep_alive = true;        // the client allows another request on this connection
  std::string_view host, origin, authorization, x_api_key;
  const std::string* body = nullptr;  // never null once the session made it
  const NativeRequest* native = nullptr;

  const std::string& text() const { return *body; }
};

}  // namespace llamactl::serve
