// serve's Stream and Deadlines (src/serve/http_session.h): a deadline is a
// number, and the sweep closes the sockets past it. Real sockets on loopback.

#include <gtest/gtest.h>

#include "serve/http_session.h"

using namespace llamactl::serve;

namespace {

/// A connected pair on loopback, both ends on `ioc`.
struct Pair {
  Socket a;
  Socket b;
};

Pair connected(asio::io_context& ioc) {
  Acceptor acceptor(ioc.get_executor(), tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
  Socket a(ioc.get_executor());
  a.connect(acceptor.local_endpoint());
  Socket b = acceptor.accept();
  return {std::move(a), std::move(b)};
}

}  // namespace

TEST(ServeStream, SweepClosesOnlyWhatIsPastItsDeadline) {
  asio::io_context ioc;
  Deadlines deadlines;
  auto p1 = connected(ioc);
  auto p2 = connected(ioc);
  Stream late(std::move(p1.a), deadlines);
  Stream fine(std::move(p2.a), deadlines);
  EXPECT_EQ(deadlines.size(), 2U);

  late.expires_after(std::chrono::milliseconds(0));
  fine.expires_after(std::chrono::hours(1));
  error_code late_ec, fine_ec;
  bool late_done = false, fine_done = false;
  char b1 = 0, b2 = 0;
  late.async_read_some(asio::buffer(&b1, 1), [&](error_code ec, size_t) {
    late_ec = ec;
    late_done = true;
  });
  fine.async_read_some(asio::buffer(&b2, 1), [&](error_code ec, size_t) {
    fine_ec = ec;
    fine_done = true;
  });
  ioc.poll();
  EXPECT_FALSE(late_done);  // nothing to read yet, and no timer of its own

  EXPECT_EQ(deadlines.sweep(Clock::now()), 1U);
  ioc.poll();
  ASSERT_TRUE(late_done);
  EXPECT_TRUE(late_ec);
  EXPECT_TRUE(late.timed_out());
  EXPECT_EQ(late.why(late_ec), error_code(beast::error::timeout));
  EXPECT_FALSE(late.socket().is_open());
  // The other read is still waiting, and completes with data as usual.
  EXPECT_FALSE(fine_done);
  EXPECT_FALSE(fine.timed_out());
  asio::write(p2.b, asio::buffer("x", 1));
  ioc.run_for(std::chrono::seconds(5));
  ASSERT_TRUE(fine_done);
  EXPECT_FALSE(fine_ec);
  EXPECT_EQ(b2, 'x');
  EXPECT_EQ(fine.why(fine_ec), error_code());

  // A swept Stream is not swept again; the other only once its time passes.
  EXPECT_EQ(deadlines.sweep(Clock::now()), 0U);
  EXPECT_EQ(deadlines.sweep(Clock::now() + std::chrono::hours(2)), 1U);
}

TEST(ServeStream, NeverAndReleasedStreamsAreNotSwept) {
  asio::io_context ioc;
  Deadlines deadlines;
  auto p = connected(ioc);
  Stream s(std::move(p.a), deadlines);
  s.expires_after(std::chrono::milliseconds(0));
  s.expires_never();
  EXPECT_EQ(deadlines.sweep(Clock::now() + std::chrono::hours(24 * 365)), 0U);
  s.expires_after(std::chrono::milliseconds(0));
  Socket kept = s.release_socket();  // to the pool: its deadline goes with the request
  EXPECT_EQ(deadlines.sweep(Clock::now()), 0U);
  EXPECT_TRUE(kept.is_open());
}

TEST(ServeStream, StreamsLeaveTheirListWhenDestroyedInAnyOrder) {
  asio::io_context ioc;
  Deadlines deadlines;
  std::vector<Pair> pairs;
  for (int i = 0; i < 5; ++i) pairs.push_back(connected(ioc));
  {
    std::vector<std::unique_ptr<Stream>> streams;
    for (auto& p : pairs) streams.push_back(std::make_unique<Stream>(std::move(p.a), deadlines));
    EXPECT_EQ(deadlines.size(), 5U);
    streams[2].reset();  // middle
    streams[4].reset();  // head (the last added)
    streams[0].reset();  // tail
    EXPECT_EQ(deadlines.size(), 2U);
    for (auto& s : streams)
      if (s) s->expires_after(std::chrono::milliseconds(0));
    EXPECT_EQ(deadlines.sweep(Clock::now()), 2U);
  }
  EXPECT_EQ(deadlines.size(), 0U);
}
