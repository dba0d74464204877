#pragma once
// Every HTTP head serve writes, in one place: the request heads sent to
// llama-server, the relayed response heads and serve's own response heads.
// Here and only here are Server, CORS and the framing fields set. Beast-free
// declarations; heads.cpp and upstream.cpp parse with Beast.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "serve/http/request.h"

namespace llamactl::serve {

/// How a response body is delimited for the client.
enum class Framing {
  length,   // Content-Length
  chunked,  // chunks of what arrives
  close,    // no length and an HTTP/1.0 client (no chunks there): until serve closes
  none,     // no body at all (204, 304)
};

/// The framing of a relayed body: a body of known length keeps it; any other
/// (chunked, or until the upstream closes) goes on in chunks, or for an
/// HTTP/1.0 client until serve closes.
Framing response_framing(const std::optional<uint64_t>& length, bool done_at_header, bool upstream_chunked,
                         unsigned client_version);

/// llama-server's response head as serve keeps it: the field lines that may
/// go on to the client (all but hop-by-hop ones, Server and CORS, which are
/// serve's policy) and the few values serve reads. Vary and X-Accel-Buffering
/// are apart: whether they go on depends on the request.
struct UpstreamHead {
  int status = 0;
  std::string reason;         // as sent (often empty)
  bool event_stream = false;  // its (first) Content-Type is text/event-stream
  std::string fields, vary, accel;
};

/// serve's own response head: status line, Server, Content-Type (when not
/// empty), CORS for an allowed `origin`, `extra` ("Name: value\r\n" lines),
/// the framing's field and `Connection: close` when not `keep_alive`.
std::string response_head(int status, std::string_view content_type, Framing framing, uint64_t length, bool keep_alive,
                          std::string_view origin, std::string_view extra = {});

/// The client's head for an upstream response: its kept fields with serve's
/// Server, CORS for an allowed `origin`, `X-Accel-Buffering: no` on SSE, the
/// framing's field and `Connection: close` when not `keep_alive`.
std::string relayed_response_head(const UpstreamHead& up, Framing framing, const std::optional<uint64_t>& length,
                                  bool sse, bool keep_alive, std::string_view origin);

/// The answer to an allowed CORS preflight (204).
std::string preflight_head(std::string_view origin, bool keep_alive);

/// The request line and header llama-server gets for a relayed request:
/// the client's fields but hop-by-hop ones, Authorization and Origin; its
/// own Host and the body's Content-Length.
std::string relay_head(const Request& req, int port);

/// A request of serve's own to llama-server: `POST target` with a JSON body
/// of `length` bytes, keep-alive; `accept` when not empty.
std::string upstream_post_head(std::string_view target, int port, uint64_t length, std::string_view accept = {});

/// The chunk-size line of a chunk of `n` bytes ("1a2\r\n") in `out` (at least 20 bytes); returns its length.
size_t chunk_size_line(size_t n, char* out);

}  // namespace llamactl::serve
