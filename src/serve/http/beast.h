#pragma once
// Beast's side of serve's HTTP files: the parsed client message and the
// upstream response parser. Included by heads.cpp, upstream.cpp and
// server.cpp only (Beast is slow to compile, and nothing else needs it).

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "serve/http/heads.h"
#include "serve/http/request.h"
#include "serve/http/stream.h"

namespace llamactl::serve {

namespace beast = boost::beast;
namespace http = beast::http;

struct NativeRequest {
  http::request<http::string_body> msg;
};

/// Hop-by-hop and per-connection fields: never forwarded.
bool hop_by_hop(http::field f);

/// llama-server's response as serve reads it. Beast parses; the header is
/// kept as an UpstreamHead, not as a basic_fields (a node, an allocation and
/// a tree insert per field, and lookups after: a tenth of serve's CPU per
/// relayed request). The body goes to the caller's buffer, as with
/// http::buffer_body: set `body_data` and `body_size` before each read;
/// `body_size` is what is left of it.
class UpstreamParser final : public http::basic_parser<false> {
 public:
  UpstreamParser() {
    head.fields.reserve(256);  // one allocation for llama-server's few fields
    // Unlimited: Beast 1.74 treats body_limit(none) as "exceeded" for any Content-Length.
    body_limit(std::numeric_limits<std::uint64_t>::max());
  }
  UpstreamParser(const UpstreamParser&) = delete;
  UpstreamParser& operator=(const UpstreamParser&) = delete;
  UpstreamParser(UpstreamParser&&) = delete;
  UpstreamParser& operator=(UpstreamParser&&) = delete;
  ~UpstreamParser() override = default;

  UpstreamHead head;
  char* body_data = nullptr;
  size_t body_size = 0;

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int, error_code&) override {}
  void on_response_impl(int code, beast::string_view why, int, error_code&) override {
    head.status = code;
    head.reason.assign(why.data(), why.size());
  }
  void on_field_impl(http::field name, beast::string_view name_string, beast::string_view value, error_code&) override;
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  size_t on_body_impl(beast::string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  bool seen_type_ = false;
};

}  // namespace llamactl::serve
