// The heads serve writes (src/serve/http/heads.h): what llama-server gets of
// a client's request, what the client gets of llama-server's response, and
// serve's own; all parsed back with Beast.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "serve/http/beast.h"

using namespace llamactl::serve;

TEST(HttpHeads, RequestToLlamaServerDropsWhatIsNotItsToSee) {
  NativeRequest native{{http::verb::post, "/v1/chat/completions?x=1", 11}};
  auto& req = native.msg;
  req.set(http::field::host, "example:11434");
  req.set(http::field::authorization, "Bearer secret");
  req.set(http::field::origin, "http://localhost:3000");
  req.set(http::field::connection, "keep-alive");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::content_length, "999");
  req.set(http::field::expect, "100-continue");
  req.set(http::field::te, "trailers");
  req.set("X-Stainless-Lang", "js");
  req.body() = R"({"model":"tiny"})";
  Request view;
  view.native = &native;
  const std::string h = relay_head(view, 8081);
  EXPECT_EQ(h.rfind("POST /v1/chat/completions?x=1 HTTP/1.1\r\n", 0), 0U) << h;
  EXPECT_NE(h.find("\r\nContent-Type: application/json\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("\r\nX-Stainless-Lang: js\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("\r\nHost: 127.0.0.1:8081\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("\r\nContent-Length: 16\r\n"), std::string::npos) << h;  // the body's, not the client's claim
  for (const char* gone : {"secret", "example", "localhost:3000", "Connection", "999", "100-continue", "trailers"})
    EXPECT_EQ(h.find(gone), std::string::npos) << gone << " in\n" << h;
  EXPECT_EQ(h.substr(h.size() - 4), "\r\n\r\n");
  // Beast parses it back as the same request.
  http::request_parser<http::string_body> parser;
  error_code ec;
  parser.put(asio::buffer(h), ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(parser.is_header_done());
}

TEST(HttpHeads, ResponseFraming) {
  // A length is passed on; a reply done at its header without one has no
  // body; otherwise chunks, or until close for an HTTP/1.0 client.
  EXPECT_EQ(response_framing(uint64_t{42}, false, false, 11), Framing::length);
  EXPECT_EQ(response_framing(uint64_t{0}, true, false, 11), Framing::length);
  EXPECT_EQ(response_framing(std::nullopt, true, false, 11), Framing::none);  // 204, 304
  EXPECT_EQ(response_framing(std::nullopt, false, true, 11), Framing::chunked);
  EXPECT_EQ(response_framing(std::nullopt, false, false, 11), Framing::chunked);  // until the upstream closes
  EXPECT_EQ(response_framing(std::nullopt, false, true, 10), Framing::close);
}

/// An upstream response as serve's relay reads it, from its bytes.
std::unique_ptr<UpstreamParser> parsed(const std::string& bytes) {
  auto p = std::make_unique<UpstreamParser>();
  error_code ec;
  p->put(asio::buffer(bytes), ec);
  EXPECT_TRUE(!ec || ec == http::error::need_more || ec == http::error::need_buffer) << ec.message();
  EXPECT_TRUE(p->is_header_done());
  return p;
}

TEST(HttpHeads, ResponseToTheClient) {
  const auto up = parsed(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
      "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nServer: llama.cpp\r\n"
      "Access-Control-Allow-Origin: *\r\nVary: Accept-Encoding\r\nX-Accel-Buffering: yes\r\n"
      "X-Request-Id: abc\r\n\r\n");
  EXPECT_EQ(up->head.status, 200);
  EXPECT_TRUE(up->head.event_stream);
  {
    const std::string h = relayed_response_head(up->head, Framing::chunked, std::nullopt, true, true, "");
    EXPECT_EQ(h.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << h;
    EXPECT_NE(h.find("\r\nContent-Type: text/event-stream\r\n"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nX-Request-Id: abc\r\n"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nVary: Accept-Encoding\r\n"), std::string::npos) << h;  // kept without an origin
    EXPECT_NE(h.find("\r\nServer: llamactl/"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nX-Accel-Buffering: no\r\n"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos) << h;
    for (const char* gone : {"llama.cpp", "Access-Control", "keep-alive", "timeout=5", "yes", "Connection"})
      EXPECT_EQ(h.find(gone), std::string::npos) << gone << " in\n" << h;
  }
  {
    const std::string h =
        relayed_response_head(up->head, Framing::length, uint64_t{7}, false, false, "http://localhost:3000");
    EXPECT_NE(h.find("\r\nContent-Length: 7\r\n"), std::string::npos) << h;
    EXPECT_EQ(h.find("Transfer-Encoding"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nAccess-Control-Allow-Origin: http://localhost:3000\r\nVary: Origin\r\n"), std::string::npos)
        << h;
    EXPECT_EQ(h.find("Accept-Encoding"), std::string::npos) << h;  // Vary replaced
    EXPECT_NE(h.find("\r\nConnection: close\r\n"), std::string::npos) << h;
    EXPECT_NE(h.find("\r\nX-Accel-Buffering: yes\r\n"), std::string::npos) << h;  // not a stream: the upstream's
    // Beast reads it back with the body's length.
    http::response_parser<http::string_body> parser;
    error_code ec;
    parser.put(asio::buffer(h), ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(parser.content_length().value_or(0), 7U);
  }
  {
    const auto nc = parsed("HTTP/1.1 204 No Content\r\nServer: llama.cpp\r\n\r\n");
    EXPECT_FALSE(nc->head.event_stream);
    EXPECT_TRUE(parsed("HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream; charset=utf-8\r\n\r\n")->head.event_stream);
    EXPECT_FALSE(parsed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")->head.event_stream);
    const std::string h = relayed_response_head(nc->head, Framing::none, std::nullopt, false, true, "");
    EXPECT_EQ(h, "HTTP/1.1 204 No Content\r\nServer: llamactl/" LLAMACTL_VERSION "\r\n\r\n");
    // No reason phrase from the upstream: the standard one.
    const auto bare = parsed("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(relayed_response_head(bare->head, Framing::length, uint64_t{0}, false, true, "")
                  .rfind("HTTP/1.1 404 Not Found\r\n", 0),
              0U);
  }
}

TEST(HttpHeads, UpstreamBodyGoesToTheCallersBufferPieceByPiece) {
  for (const std::string& bytes : {std::string("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"),
                                   std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                                               "5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: late\r\n\r\n")}) {
    UpstreamParser p;
    asio::const_buffer in = asio::buffer(bytes);
    std::string body;
    char piece[4];
    for (int guard = 0; !p.is_done() && guard < 100; ++guard) {
      p.body_data = piece;
      p.body_size = sizeof piece;
      error_code ec;
      const size_t used = p.put(in, ec);
      ASSERT_TRUE(!ec || ec == http::error::need_buffer) << ec.message();
      in += used;
      body.append(piece, sizeof piece - p.body_size);
    }
    EXPECT_TRUE(p.is_done()) << bytes;
    EXPECT_EQ(body, "hello world") << bytes;
    EXPECT_EQ(p.head.fields.find("late"), std::string::npos) << p.head.fields;  // a trailer is not a header field
  }
  // Without a buffer it takes no body bytes.
  const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
  UpstreamParser q;
  error_code ec;
  const size_t used = q.put(asio::buffer(bytes), ec);
  ASSERT_TRUE(q.is_header_done());
  EXPECT_EQ(q.put(asio::buffer(bytes) + used, ec), 0U);
  EXPECT_EQ(ec, http::error::need_buffer);
}
