// The only translation unit of the core that includes Beast (slow to compile).

#include "net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace llamactl::net {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Result<HttpResponse> http_get(const std::string& host, int port, const std::string& target,
                              std::chrono::milliseconds timeout) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return make_error(ErrorKind::io, "not an IP address: '" + host + "'");

  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host + ":" + std::to_string(port));
  req.set(http::field::user_agent, "llamactl");
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  boost::system::error_code result = asio::error::would_block;

  stream.expires_after(timeout);
  stream.async_connect(tcp::endpoint(address, static_cast<unsigned short>(port)), [&](beast::error_code e) {
    if (e) {
      result = e;
      return;
    }
    http::async_write(stream, req, [&](beast::error_code e2, size_t) {
      if (e2) {
        result = e2;
        return;
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code e3, size_t) { result = e3; });
    });
  });
  ioc.run();  // the stream's expiry bounds every step

  const std::string where = host + ":" + std::to_string(port) + target;
  if (result == beast::error::timeout) return make_error(ErrorKind::timeout, where + ": no answer in time");
  if (result) return make_error(ErrorKind::io, where + ": " + result.message());
  HttpResponse r;
  r.status = static_cast<int>(parser.get().result_int());
  r.body = parser.get().body();
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return r;
}

}  // namespace llamactl::net
