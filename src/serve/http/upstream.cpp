#include "serve/http/upstream.h"

#include <array>

#include "serve/http/beast.h"

namespace llamactl::serve {

struct UpstreamCall::State {
  std::optional<Stream> stream;
  beast::flat_buffer buf;
  std::optional<UpstreamParser> parser;  // made anew per attempt
};

UpstreamCall::UpstreamCall() = default;
UpstreamCall::~UpstreamCall() = default;
UpstreamCall::UpstreamCall(UpstreamCall&&) noexcept = default;
UpstreamCall& UpstreamCall::operator=(UpstreamCall&&) noexcept = default;

const UpstreamHead& UpstreamCall::head() const {
  return s_->parser->head;
}
std::optional<uint64_t> UpstreamCall::length() const {
  const auto& p = *s_->parser;
  return p.content_length() ? std::optional<uint64_t>(*p.content_length()) : std::nullopt;
}
bool UpstreamCall::done() const {
  return s_->parser->is_done();
}
bool UpstreamCall::chunked() const {
  return s_->parser->chunked();
}
bool UpstreamCall::keep_alive() const {
  return s_->parser->keep_alive();
}
Stream& UpstreamCall::stream() {
  return *s_->stream;
}
void UpstreamCall::close() {
  if (s_ && s_->stream) s_->stream->close();
}

std::optional<std::string_view> UpstreamCall::whole_body() const {
  const auto n = length();
  if (!n || s_->buf.size() < *n) return std::nullopt;
  return std::string_view(static_cast<const char*>(s_->buf.data().data()), *n);
}

awaitable<size_t> UpstreamCall::read(char* buf, size_t n, error_code& ec) {
  auto& p = *s_->parser;
  auto& up = *s_->stream;
  p.body_data = buf;
  p.body_size = n;
  up.expires_after(read_timeout_);
  co_await http::async_read_some(up, s_->buf, p, ec_token(ec));
  up.expires_never();  // next: a client write, under the client's deadline
  if (ec == http::error::need_buffer) ec = {};
  ec = up.why(ec);
  co_return n - p.body_size;
}

awaitable<error_code> UpstreamCall::collect(std::string& out, uint64_t limit) {
  std::array<char, 16384> buf{};
  error_code ec;
  while (!done()) {
    const size_t n = co_await read(buf.data(), buf.size(), ec);
    if (ec) co_return ec;
    out.append(buf.data(), n);
    if (out.size() > limit) co_return http::error::body_limit;
  }
  co_return ec;
}

void UpstreamCall::done_with(UpstreamPool& pool, int port) {
  if (!s_ || !s_->stream) return;
  auto& p = *s_->parser;
  // Anything after the body is not ours to make sense of: that connection is not reused.
  const auto n = length();
  const bool clean = p.is_done() || (n && s_->buf.size() == *n);
  if (p.keep_alive() && clean)
    pool.give(port, s_->stream->release_socket());
  else
    s_->stream->close();
}

awaitable<error_code> open_upstream(UpstreamPool& pool, int port, std::string_view head, std::string_view body,
                                    UpstreamCall& call) {
  auto exec = co_await asio::this_coro::executor;
  call.s_ = std::make_unique<UpstreamCall::State>();
  call.read_timeout_ = pool.timeouts.read;
  auto& x = *call.s_;
  // A pooled connection may have been closed by the server meanwhile: on a
  // failure before any response byte, try once more on a fresh connection.
  error_code ec;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto pooled = attempt == 0 ? pool.take(port) : std::nullopt;
    auto& upstream =
        pooled ? x.stream.emplace(std::move(*pooled), pool.deadlines) : x.stream.emplace(exec, pool.deadlines);
    if (!pooled) {
      upstream.expires_after(kConnectTimeout);
      co_await upstream.socket().async_connect(
          tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port)), ec_token(ec));
      if (ec) {
        ec = upstream.why(ec);
        break;
      }
      upstream.socket().set_option(tcp::no_delay(true), ec);
      upstream.socket().non_blocking(true, ec);  // for write_all's first, direct send
    }
    upstream.expires_after(pool.timeouts.write);
    // The header and the body in one send, the body not copied.
    const std::array<asio::const_buffer, 2> request{asio::buffer(head.data(), head.size()),
                                                    asio::buffer(body.data(), body.size())};
    co_await write_all(upstream, request, ec);
    if (!ec) {
      x.parser.emplace();
      x.buf.clear();
      upstream.expires_after(pool.timeouts.read);
      co_await http::async_read_header(upstream, x.buf, *x.parser, ec_token(ec));
    }
    upstream.expires_never();
    ec = upstream.why(ec);
    // A pooled connection the server had closed fails at once (reset, or
    // the end of the stream): send again on a fresh one. Never after a
    // timeout: the request may be running there.
    const bool closed_before = ec == http::error::end_of_stream || ec == asio::error::eof ||
                               ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
    if (!ec || !pooled || !closed_before) break;
  }
  co_return ec;
}

awaitable<JsonExchange> post_json(UpstreamPool& pool, int port, std::string_view target, std::string body) {
  JsonExchange r;
  const std::string head = upstream_post_head(target, port, body.size());
  UpstreamCall call;
  r.ec = co_await open_upstream(pool, port, head, body, call);
  if (r.ec) {
    pool.drop(port);
    co_return r;
  }
  r.connected = true;
  r.ec = co_await call.collect(r.text);
  if (r.ec) {
    pool.drop(port);
    co_return r;
  }
  r.status = call.status();
  call.done_with(pool, port);
  co_return r;
}

}  // namespace llamactl::serve
