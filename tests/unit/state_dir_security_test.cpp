// The state dir against another user of the machine (issue: nothing another
// user's files say is trusted): owner-only modes whatever the umask, a dir
// others can write to refused (ssh's StrictModes), no link planted at a path
// llamactl writes is ever followed, a state file of another user refused.
// POSIX: the Windows build keeps its state under %LOCALAPPDATA%.

#include <gtest/gtest.h>

#ifndef _WIN32
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <filesystem>
#include <fstream>

#include "platform/platform.h"
#include "state/state.h"
#include "support/temp_dir.h"
#include "support/wait.h"

using namespace llamactl;
using namespace llamactl::state;
using llamactl::testing::read_text;
using llamactl::testing::TempDir;
namespace fs = std::filesystem;

namespace {

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

}  // namespace

#ifdef _WIN32

// Windows: a reparse point (symbolic link, junction) at the log, the lock or
// logs/ is refused as on POSIX. Owner checks are POSIX only (README).
TEST(StateDirSecurity, NoPlantedLinkIsFollowedOnWindows) {
  TempDir t;
  const StateDir d(t / "state");
  ASSERT_TRUE(d.ensure().ok());
  const std::string victim = t / "victim";
  spit(victim, "keep");
  std::error_code ec;
  fs::create_symlink(platform::fs_path(victim), platform::fs_path(d.log_path("m")), ec);
  if (ec) GTEST_SKIP() << "cannot make a symbolic link here: " << ec.message();
  EXPECT_FALSE(platform::write_private_file(d.log_path("m"), "# log\n").ok());
  EXPECT_EQ(read_text(victim), "keep");
  fs::create_symlink(platform::fs_path(victim), platform::fs_path(d.lock_path()), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_FALSE(d.lock().ok());
  EXPECT_EQ(read_text(victim), "keep");
  fs::remove(platform::fs_path(d.lock_path()));
  const std::string elsewhere = t / "elsewhere";
  fs::create_directory(platform::fs_path(elsewhere));
  fs::remove_all(platform::fs_path(d.dir() + "/logs"));
  fs::create_directory_symlink(platform::fs_path(elsewhere), platform::fs_path(d.dir() + "/logs"), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_FALSE(d.ensure().ok());
}

#else

using llamactl::testing::mode_of;

namespace {

Instance record(const std::string& model) {
  Instance i;
  i.model = model;
  i.port = 8081;
  i.pid = 4242;
  return i;
}

/// Runs `f` with the umask set to `mask`, then puts the old one back.
template <class F>
void with_umask(mode_t mask, F f) {
  const mode_t old = ::umask(mask);
  f();
  ::umask(old);
}

constexpr uid_t kNobody = 65534;

}  // namespace

TEST(StateDirSecurity, FilesAre0600AndDirs0700WhateverTheUmask) {
  TempDir t;
  const StateDir d(t / "state");
  with_umask(0, [&] {
    auto lock = d.lock();
    ASSERT_TRUE(lock.ok()) << lock.error().message;
    ASSERT_TRUE(d.save(*lock, StateFile{}).ok());
    ASSERT_TRUE(d.write_pidfile(*lock, record("m")).ok());
    ASSERT_TRUE(platform::write_private_file(d.log_path("m"), "# log\n").ok());
    // A log that exists with a wider mode (an older llamactl) is made private on reuse.
    spit(d.log_path("old"), "x");
    ::chmod(d.log_path("old").c_str(), 0644);
    ASSERT_TRUE(platform::write_private_file(d.log_path("old"), "# log\n").ok());
  });
  for (const auto& dir : {d.dir(), d.dir() + "/logs", d.dir() + "/pids"}) EXPECT_EQ(mode_of(dir), 0700u) << dir;
  for (const auto& file : {d.state_path(), d.lock_path(), d.pid_path("m"), d.log_path("m"), d.log_path("old")})
    EXPECT_EQ(mode_of(file), 0600u) << file;
}

TEST(StateDirSecurity, ADirOthersCanWriteToIsRefusedWithTheFix) {
  TempDir t;
  const std::string dir = t / "state";
  fs::create_directory(dir);
  for (const auto& [mode, who] :
       {std::pair{0777u, "every user"}, std::pair{0770u, "its group"}, std::pair{0722u, "every user"}}) {
    ::chmod(dir.c_str(), mode);
    const auto s = StateDir(dir).ensure();
    ASSERT_FALSE(s.ok()) << std::oct << mode;
    EXPECT_EQ(s.error().kind, ErrorKind::state);
    EXPECT_NE(s.error().message.find(who), std::string::npos) << s.error().message;
    EXPECT_NE(s.error().message.find("chmod 700 " + dir), std::string::npos) << s.error().message;
  }
  ::chmod(dir.c_str(), 0755);  // readable by others, writable by none: fine
  EXPECT_TRUE(StateDir(dir).ensure().ok());
  // A group-writable logs/ is refused as well.
  ::chmod((dir + "/logs").c_str(), 0775);
  EXPECT_FALSE(StateDir(dir).ensure().ok());
}

TEST(StateDirSecurity, ADirOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to give a directory to another user";
  TempDir t;
  const std::string dir = t / "state";
  fs::create_directory(dir);
  ::chmod(dir.c_str(), 0700);
  ASSERT_EQ(::chown(dir.c_str(), kNobody, kNobody), 0);
  const auto s = StateDir(dir).ensure();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not to you"), std::string::npos) << s.error().message;
}

TEST(StateDirSecurity, AStateFileOfAnotherUserIsNeverBelieved) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to give a file to another user";
  TempDir t;
  const StateDir d(t / "state");
  ASSERT_TRUE(d.ensure().ok());
  spit(d.state_path(), R"({"schema_version":1,"instances":[{"model":"m","port":8081,"pid":1}]})");
  ASSERT_EQ(::chown(d.state_path().c_str(), kNobody, kNobody), 0);
  auto lock = d.lock();
  ASSERT_TRUE(lock.ok());
  std::vector<std::string> warnings;
  const auto st = d.load(*lock, warnings);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("belongs to another user"), std::string::npos) << st.error().message;
  EXPECT_FALSE(d.peek().ok());
  EXPECT_TRUE(fs::exists(d.state_path()));  // refused, not moved or rewritten
}

// A link at every path llamactl writes: the write fails or goes elsewhere,
// the link's target is never touched.
TEST(StateDirSecurity, NoPlantedLinkIsFollowed) {
  TempDir t;
  const StateDir d(t / "state");
  ASSERT_TRUE(d.ensure().ok());
  const std::string victim = t / "victim";
  const auto plant = [&](const std::string& at) {
    spit(victim, "keep");
    fs::remove(at);
    fs::create_symlink(victim, at);
  };
  // The log: refused.
  plant(d.log_path("m"));
  const auto log = platform::write_private_file(d.log_path("m"), "# log\n");
  EXPECT_FALSE(log.ok());
  EXPECT_NE(log.error().message.find("symbolic link"), std::string::npos) << log.error().message;
  EXPECT_EQ(read_text(victim), "keep");
  // The temps of the state file and of a pid file, at the names they had
  // (PATH.tmp.PID, which the attack used): now random, and never followed.
  const std::string pid = std::to_string(::getpid());
  plant(d.state_path() + ".tmp." + pid);
  {
    auto lock = d.lock();
    ASSERT_TRUE(lock.ok());
    ASSERT_TRUE(d.save(*lock, StateFile{}).ok());
    EXPECT_EQ(read_text(victim), "keep");
    EXPECT_FALSE(fs::is_symlink(d.state_path()));
    plant(d.pid_path("m") + ".tmp." + pid);
    ASSERT_TRUE(d.write_pidfile(*lock, record("m")).ok());
    EXPECT_EQ(read_text(victim), "keep");
    // The state file itself: the rename replaces the link, never writes its target.
    plant(d.state_path());
    ASSERT_TRUE(d.save(*lock, StateFile{}).ok());
    EXPECT_EQ(read_text(victim), "keep");
    EXPECT_FALSE(fs::is_symlink(d.state_path()));
  }
  // The lock file: refused, and a missing target is not created.
  fs::remove(victim);
  fs::remove(d.lock_path());
  fs::create_symlink(victim, d.lock_path());
  const auto lock = d.lock();
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.error().message.find("symbolic link"), std::string::npos) << lock.error().message;
  EXPECT_FALSE(fs::exists(victim));
  // logs/ itself a link to somewhere else: refused.
  fs::remove(d.lock_path());
  const std::string elsewhere = t / "elsewhere";
  fs::create_directory(elsewhere);
  ::chmod(elsewhere.c_str(), 0700);
  fs::remove_all(d.dir() + "/logs");
  fs::create_directory_symlink(elsewhere, d.dir() + "/logs");
  const auto s = d.ensure();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("symbolic link"), std::string::npos) << s.error().message;
}

#endif  // _WIN32
