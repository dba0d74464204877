#include <gtest/gtest.h>
#include <signal.h>
#ifndef _WIN32
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <filesystem>
#include <fstream>
#include <random>

#include "state/replica.h"
#include "state/state.h"
#include "support/temp_dir.h"

using namespace llamactl;
using namespace llamactl::state;

namespace {

Instance make(const std::string& model, int64_t pid) {
  Instance i;
  i.model = model;
  i.path = "/models/" + model + ".gguf";
  i.gpus = {0};
  i.port = 8081;
  i.pid = pid;
  i.start_time = 12345;
  i.started_at_ms = 1764064800000;
  i.last_used_at_ms = 1764064860000;
  i.log = "/tmp/" + model + ".log";
  i.argv = {"llama-server", "-m", i.path};
  i.owner = "alice";
  i.state = "running";
  i.estimate_mib = 5120;
  return i;
}

}  // namespace

TEST(State, JsonRoundTrip) {
  StateFile st;
  st.instances = {make("a", 10), make("b", 11)};
  st.instances[1].gpus = {};
  auto back = from_json(to_json(st));
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->instances.size(), 2u);
  EXPECT_EQ(back->instances[0].model, "a");
  EXPECT_EQ(back->instances[0].start_time, 12345u);
  EXPECT_EQ(back->instances[0].argv.size(), 3u);
  EXPECT_EQ(back->instances[0].estimate_mib, 5120);
  EXPECT_TRUE(back->instances[1].gpus.empty());
}

TEST(State, RejectsDamageWithReason) {
  EXPECT_FALSE(from_json("{").ok());
  EXPECT_FALSE(from_json("[]").ok());
  EXPECT_FALSE(from_json(R"({"instances":[]})").ok());
  EXPECT_FALSE(from_json(R"({"schema_version":99,"instances":[]})").ok());
  auto missing = from_json(R"({"schema_version":1,"instances":[{"model":"a","port":1}]})");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("instance 1"), std::string::npos);
}

TEST(State, DamagedFileIsMovedAsideNotOverwritten) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp.path());
  ASSERT_TRUE(dir.ensure().ok());
  { std::ofstream(dir.state_path()) << "{ this is not json"; }
  auto lock = dir.lock();
  ASSERT_TRUE(lock.ok());
  std::vector<std::string> warnings;
  auto st = dir.load(*lock, warnings);
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->instances.empty());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("damaged"), std::string::npos);
  int aside = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    if (e.path().filename().string().find("state.json.damaged-") == 0) {
      ++aside;
      std::ifstream in(e.path());
      std::string content((std::istreambuf_iterator<char>(in)), {});
      EXPECT_EQ(content, "{ this is not json");
    }
  EXPECT_EQ(aside, 1);
}

TEST(State, DirIsOwnerOnly) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp / "nested/state");
  ASSERT_TRUE(dir.ensure().ok());
#ifndef _WIN32  // Windows: %LOCALAPPDATA% is the user's by its ACL; serve changes no ACLs
  const auto perms = std::filesystem::status(dir.dir()).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_all);
#endif
}

// Processes made with fork(): POSIX only. The Windows build runs the rest.
#ifndef _WIN32
TEST(State, ConcurrentWritersLoseNothing) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp.path());
  ASSERT_TRUE(dir.ensure().ok());
  constexpr int kWriters = 8, kEach = 25;
  std::vector<pid_t> kids;
  for (int w = 0; w < kWriters; ++w) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      for (int i = 0; i < kEach; ++i) {
        auto lock = dir.lock();
        if (!lock) ::_exit(2);
        std::vector<std::string> warnings;
        auto st = dir.load(*lock, warnings);
        if (!st || !warnings.empty()) ::_exit(3);
        st->instances.push_back(make("w" + std::to_string(w) + "-" + std::to_string(i), 100 + i));
        if (!dir.save(*lock, *st)) ::_exit(4);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto st = dir.peek();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->instances.size(), static_cast<size_t>(kWriters * kEach));
}

TEST(State, WriterKilledAtAnyPointLeavesOldOrNew) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp.path());
  ASSERT_TRUE(dir.ensure().ok());
  std::mt19937 rng(42);
  for (int round = 0; round < 30; ++round) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Rewrites a large state over and over until killed.
      StateFile st;
      for (int i = 0; i < 400; ++i) st.instances.push_back(make(std::string("m").append(std::to_string(i)), 1000 + i));
      auto lock = dir.lock();
      if (!lock) ::_exit(2);
      for (int n = 0;; ++n) {
        st.instances[0].pid = 1000 + n;
        if (!dir.save(*lock, st)) ::_exit(3);
      }
    }
    ::usleep(static_cast<useconds_t>(std::uniform_int_distribution<int>(0, 30000)(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    auto st = dir.peek();
    ASSERT_TRUE(st.ok()) << "round " << round << ": " << st.error().message;
    EXPECT_TRUE(st->instances.empty() || st->instances.size() == 400u);
  }
}
#endif  // _WIN32

TEST(State, PidfilesFollowInstances) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp.path());
  auto lock = dir.lock();
  ASSERT_TRUE(lock.ok());
  const auto inst = make("llama/7b", 4321);
  ASSERT_TRUE(dir.write_pidfile(*lock, inst).ok());
  int64_t pid = 0;
  std::ifstream(dir.pid_path("llama/7b")) >> pid;  // closed at once: Windows cannot delete an open file
  EXPECT_EQ(pid, 4321);
  EXPECT_EQ(dir.pid_path("llama/7b"), platform::join_path(tmp.path(), "pids/llama_7b.pid"));
  ASSERT_TRUE(dir.remove_pidfile(*lock, "llama/7b").ok());
  EXPECT_FALSE(std::filesystem::exists(dir.pid_path("llama/7b")));
}

#ifndef _WIN32  // fork()
TEST(State, LockTimesOutWithStateError) {
  llamactl::testing::TempDir tmp;
  StateDir dir(tmp.path());
  auto held = dir.lock();
  ASSERT_TRUE(held.ok());
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto second = dir.lock(std::chrono::milliseconds(100));
    ::_exit(!second.ok() && second.error().kind == ErrorKind::state ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
#endif  // _WIN32

TEST(Replica, NamesSayWhichModelAnInstanceServes) {
  using llamactl::state::is_replica;
  using llamactl::state::replica_base;
  using llamactl::state::replica_name;
  EXPECT_EQ(replica_name("tiny", 1), "tiny");
  EXPECT_EQ(replica_name("tiny", 2), "tiny#2");
  EXPECT_EQ(replica_base("tiny#2"), "tiny");
  EXPECT_EQ(replica_base("tiny#12"), "tiny");
  EXPECT_EQ(replica_base("tiny"), "tiny");
  EXPECT_EQ(replica_base("tiny#"), "tiny#");
  EXPECT_EQ(replica_base("#2"), "#2");
  EXPECT_EQ(replica_base("tiny#2b"), "tiny#2b");
  EXPECT_TRUE(is_replica("a#3"));
  EXPECT_FALSE(is_replica("a"));
}
