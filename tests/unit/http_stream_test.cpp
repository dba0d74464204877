// serve's Stream and Deadlines (src/serve/http/stream.h): a deadline is a
// number, and the sweep closes the sockets past it; write_all sends directly
// what the socket takes; peer_closed. Real sockets on loopback.

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "serve/http/stream.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

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

/// Starts a coroutine on `ioc` that writes `buffers` with write_all, then
/// sets `done`; it runs as `ioc` is run.
template <class Buffers>
void spawn_write_all(asio::io_context& ioc, Stream& s, Buffers buffers, error_code& ec, bool& done) {
  asio::co_spawn(
      ioc.get_executor(),
      [&s, buffers, &ec, &done]() -> awaitable<void> {
        co_await write_all(s, buffers, ec);
        done = true;
      },
      asio::detached);
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
  EXPECT_EQ(late.why(late_ec), error_code(asio::error::timed_out));
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

TEST(ServeStream, AStreamMayOutliveItsList) {
  asio::io_context ioc;
  auto p = connected(ioc);
  auto deadlines = std::make_unique<Deadlines>();
  auto s = std::make_unique<Stream>(std::move(p.a), *deadlines);
  deadlines.reset();
  s.reset();  // no use of the gone list (AddressSanitizer checks in the debug build)
  SUCCEED();
}

// The heads the relay writes itself (Beast parses, serve writes).

TEST(ServeStream, WriteAllSendsWhatFitsNowAndTheRestWhenThePeerReads) {
  asio::io_context ioc;
  Deadlines deadlines;
  auto p = connected(ioc);
  p.a.set_option(asio::socket_base::send_buffer_size(256 * 1024));
  p.b.set_option(asio::socket_base::receive_buffer_size(256 * 1024));
  p.a.non_blocking(true);
  p.b.non_blocking(true);
  Stream s(std::move(p.a), deadlines);
  std::string data(16 << 20, '\0');  // far more than both socket buffers hold
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  error_code ec;
  bool done = false;
  const std::array<asio::const_buffer, 2> parts{asio::buffer(data.data(), 100),
                                                asio::buffer(data.data() + 100, data.size() - 100)};
  spawn_write_all(ioc, s, parts, ec, done);
  ioc.poll();
  EXPECT_FALSE(done);  // the direct send took a part; the rest waits for room

  std::string got;
  std::thread reader([&] {
    std::vector<char> buf(65536);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (got.size() < data.size() && std::chrono::steady_clock::now() < until) {
      error_code rec;
      const size_t n = p.b.read_some(asio::buffer(buf), rec);
      if (rec == asio::error::would_block) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (rec) break;
      got.append(buf.data(), n);
    }
  });
  ioc.run_for(std::chrono::seconds(30));
  reader.join();
  EXPECT_TRUE(done);
  EXPECT_FALSE(ec) << ec.message();
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);  // every byte once, in order
}

TEST(ServeStream, WriteAllOfWhatFitsCompletesWithoutATripThroughTheQueue) {
  asio::io_context ioc;
  Deadlines deadlines;
  auto p = connected(ioc);
  p.a.non_blocking(true);
  Stream s(std::move(p.a), deadlines);
  const std::string data(1000, 'x');
  error_code ec;
  bool done = false;
  spawn_write_all(ioc, s, asio::buffer(data), ec, done);
  ioc.run_one();      // the coroutine's start; an async_write would post its completion after it
  EXPECT_TRUE(done);  // sent directly
  EXPECT_FALSE(ec);
  std::string got(data.size(), '\0');
  asio::read(p.b, asio::buffer(got));
  EXPECT_EQ(got, data);
}

TEST(ServeStream, WriteAllOnABlockingSocketWaitsInTheReactor) {
  asio::io_context ioc;
  Deadlines deadlines;
  auto p = connected(ioc);
  Stream s(std::move(p.a), deadlines);  // not non-blocking: a direct send could block the thread
  const std::string data(1000, 'y');
  error_code ec;
  bool done = false;
  spawn_write_all(ioc, s, asio::buffer(data), ec, done);
  ioc.run_one();
  EXPECT_FALSE(done);  // async_write's completion is posted
  ioc.run();
  EXPECT_TRUE(done);
  EXPECT_FALSE(ec);
  std::string got(data.size(), '\0');
  asio::read(p.b, asio::buffer(got));
  EXPECT_EQ(got, data);
}

TEST(ServeStream, PeerClosedTellsAnEndFromDataAndFromNothing) {
  asio::io_context ioc;
  auto p = connected(ioc);
  EXPECT_FALSE(peer_closed(p.a));   // nothing there
  EXPECT_TRUE(p.a.non_blocking());  // and it stays non-blocking: write_all's direct send needs that
  asio::write(p.b, asio::buffer("x", 1));
  p.a.wait(Socket::wait_read);
  EXPECT_FALSE(peer_closed(p.a));  // a pipelined byte: there, and left for the next read
  char c = 0;
  EXPECT_EQ(p.a.read_some(asio::buffer(&c, 1)), 1U);
  EXPECT_EQ(c, 'x');
  p.b.close();
  p.a.wait(Socket::wait_read);
  EXPECT_TRUE(peer_closed(p.a));
  EXPECT_TRUE(p.a.non_blocking());
}
