// The platform layer's processes, locks and atomic files, with the same
// expectations on POSIX and on Windows (run there under Wine). The child is
// tests/fake/platform_child.cpp; every one a test starts is killed by pid at
// the end of the test.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "platform/platform.h"
#include "support/temp_dir.h"
#include "support/wait.h"
#include "util/strings.h"

using namespace llamactl;
using llamactl::testing::eventually;
using llamactl::testing::read_text;
using llamactl::testing::TempDir;
using namespace std::chrono_literals;

namespace {

// A platform_child started detached, with its output in `log`; killed (with
// its children) when the test ends.
struct Child {
  platform::Spawned spawned;
  std::string log;
  Child(const TempDir& dir, const std::string& mode) : Child(PLATFORM_CHILD, dir / (mode + ".log"), mode) {}
  Child(const std::string& program, std::string log_path, const std::string& mode) : log(std::move(log_path)) {
    platform::SpawnSpec spec;
    spec.argv = {program, mode};
    spec.log_path = log;
    auto r = platform::spawn_detached(spec);
    if (r)
      spawned = *r;
    else
      ADD_FAILURE() << r.error().message;
  }
  ~Child() {
    if (spawned.pid > 0) platform::signal_group(spawned.pid, platform::Signal::kill);
    eventually([&] { return !alive(); }, 5s);
    platform::try_reap(spawned.pid);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  bool alive() {
    platform::try_reap(spawned.pid);
    return platform::process_alive(spawned.pid, spawned.start_time);
  }
  bool says(const std::string& line) const { return read_text(log).find(line) != std::string::npos; }
};

}  // namespace

TEST(Platform, SpawnDetachedRunsTheProgramWithItsOutputInTheLog) {
  TempDir dir;
  Child c(dir, "graceful");
  ASSERT_GT(c.spawned.pid, 0);
  EXPECT_NE(c.spawned.start_time, 0u);
  EXPECT_TRUE(eventually([&] { return c.says("started " + std::to_string(c.spawned.pid)); }, 10s)) << read_text(c.log);
  EXPECT_TRUE(c.alive());
  // The start time tells a reused pid apart.
  EXPECT_FALSE(platform::process_alive(c.spawned.pid, c.spawned.start_time + 1));
  EXPECT_EQ(platform::process_start_time(c.spawned.pid), c.spawned.start_time);
}

TEST(Platform, SpawnDetachedRefusesAProgramThatDoesNotExist) {
  TempDir dir;
  platform::SpawnSpec spec;
  spec.argv = {dir / "no-such-program"};
  spec.log_path = dir / "log";
  auto r = platform::spawn_detached(spec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::start_failed);
}

TEST(Platform, TerminateStopsTheProcessGracefully) {
  TempDir dir;
  Child c(dir, "graceful");
  ASSERT_TRUE(eventually([&] { return c.says("started"); }, 10s)) << read_text(c.log);
  ASSERT_TRUE(platform::signal_group(c.spawned.pid, platform::Signal::terminate));
  EXPECT_TRUE(eventually([&] { return !c.alive(); }, 10s));
  // Its handler ran: a graceful stop, not a kill.
  EXPECT_TRUE(c.says("graceful stop")) << read_text(c.log);
}

TEST(Platform, KillEndsAProcessThatIgnoresTerminateAndTheProcessesItStarted) {
  TempDir dir;
  Child c(dir, "parent");
  ASSERT_TRUE(eventually([&] { return c.says("child "); }, 10s)) << read_text(c.log);
  const std::string text = read_text(c.log);
  const size_t at = text.find("child ") + 6;
  const auto child_pid = parse_int(trim(text.substr(at, text.find('\n', at) - at)));
  ASSERT_TRUE(child_pid && *child_pid > 0) << text;
  const auto child_start = platform::process_start_time(*child_pid);
  ASSERT_TRUE(child_start);

  platform::signal_group(c.spawned.pid, platform::Signal::terminate);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(c.alive()) << "a process that ignores the graceful stop keeps running";

  EXPECT_TRUE(platform::signal_group(c.spawned.pid, platform::Signal::kill));
  EXPECT_TRUE(eventually([&] { return !c.alive(); }, 10s));
  EXPECT_TRUE(eventually([&] { return !platform::process_alive(*child_pid, child_start); }, 10s))
      << "the process it started is ended too";
  EXPECT_FALSE(c.says("graceful stop"));
}

TEST(Platform, SignalingNoProcessIsFalse) {
  EXPECT_FALSE(platform::signal_group(0, platform::Signal::terminate));
  EXPECT_FALSE(platform::signal_group(-5, platform::Signal::kill));
}

TEST(Platform, FileLockIsExclusiveUntilReleased) {
  TempDir dir;
  const std::string path = dir / "lock";
  {
    auto first = platform::FileLock::acquire(path, 100ms);
    ASSERT_TRUE(first) << first.error().message;
    const auto start = std::chrono::steady_clock::now();
    auto second = platform::FileLock::acquire(path, 200ms);
    EXPECT_FALSE(second);
    EXPECT_EQ(second.error().kind, ErrorKind::state);
    EXPECT_NE(second.error().message.find("another llamactl holds it"), std::string::npos) << second.error().message;
    EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms) << "it waits for the timeout";
  }
  // Released with the first one's scope; a waiter gets it as soon as it is free.
  auto again = platform::FileLock::acquire(path, 100ms);
  EXPECT_TRUE(again);
}

TEST(Platform, FileLockWaiterGetsTheLockWhenItIsReleased) {
  TempDir dir;
  const std::string path = dir / "lock";
  auto acquired = platform::FileLock::acquire(path, 100ms);
  ASSERT_TRUE(acquired);
  auto first = std::make_unique<platform::FileLock>(std::move(*acquired));
  std::thread release([&] {
    std::this_thread::sleep_for(200ms);
    first.reset();
  });
  auto waiter = platform::FileLock::acquire(path, 5s);
  release.join();
  EXPECT_TRUE(waiter);
}

TEST(Platform, AtomicWriteReplacesTheWholeFile) {
  TempDir dir;
  const std::string path = dir / "state.json";
  ASSERT_TRUE(platform::write_file_atomic(path, std::string(100000, 'a')));
  ASSERT_TRUE(platform::write_file_atomic(path, "short"));
  EXPECT_EQ(read_text(path), "short");
  // No temp file is left beside it.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(Platform, AtomicWriteWaitsForAReaderThatHoldsTheFile) {
  // On Windows a reader that opened the file without FILE_SHARE_DELETE (as
  // the C runtime does) makes the replace fail until it closes the file.
  TempDir dir;
  const std::string path = dir / "state.json";
  ASSERT_TRUE(platform::write_file_atomic(path, "old"));
  auto reader = std::make_unique<std::ifstream>(path, std::ios::binary);
  ASSERT_TRUE(*reader);
  std::thread close_later([&] {
    std::this_thread::sleep_for(300ms);
    reader.reset();
  });
  const auto start = std::chrono::steady_clock::now();
  const auto written = platform::write_file_atomic(path, "new");
  const auto took = std::chrono::steady_clock::now() - start;
  close_later.join();
  EXPECT_TRUE(written) << (written ? "" : written.error().message);
#ifdef _WIN32
  EXPECT_GE(took, 250ms) << "the replace waited for the reader to close the file";
#else
  EXPECT_LT(took, 250ms) << "POSIX renames over a file that is open";
#endif
  EXPECT_EQ(read_text(path), "new");
}

TEST(Platform, ProcessUserIsTheOwnersLoginName) {
  TempDir dir;
  Child c(dir, "graceful");
  ASSERT_TRUE(eventually([&] { return c.says("started"); }, 10s)) << read_text(c.log);
  const std::string me = platform::current_user();
  EXPECT_FALSE(me.empty());
  EXPECT_EQ(platform::process_user(platform::current_pid()), me);
  EXPECT_EQ(platform::process_user(c.spawned.pid), me) << "a process this user started is this user's";
  platform::signal_group(c.spawned.pid, platform::Signal::kill);
  ASSERT_TRUE(eventually([&] { return !c.alive(); }, 5s));
  EXPECT_EQ(platform::process_user(c.spawned.pid), std::nullopt) << "no process, no owner";
}

// Paths are UTF-8 everywhere. "è" is in the Western code pages, "日本" and "ж"
// are not: on Windows they work only because the executables declare UTF-8
// as their code page (cmake/windows/llamactl.manifest).
TEST(Platform, PathsBeyondAsciiWork) {
  TempDir dir;
  const std::string sub = dir / "mod\u00e8les-\u65e5\u672c-\u0436";
  const auto on_disk = [](const std::string& utf8) {
    // std::filesystem takes the name as UTF-8 and asks the OS in UTF-16: the
    // name on disk is these characters, not their bytes read in a code page.
    return std::filesystem::path(std::u8string(utf8.begin(), utf8.end()));
  };
  ASSERT_TRUE(platform::make_private_dir(sub + "/state"));
  EXPECT_TRUE(std::filesystem::is_directory(on_disk(sub + "/state")));

  const std::string file = sub + "/state/\u00e9tat.json";
  ASSERT_TRUE(platform::write_file_atomic(file, "{}"));
  EXPECT_TRUE(std::filesystem::exists(on_disk(file)));
  EXPECT_TRUE(platform::file_exists(file));
  const auto content = platform::read_file(file);
  ASSERT_TRUE(content);
  EXPECT_EQ(*content, "{}");
  EXPECT_TRUE(platform::file_mtime_ns(file));
  auto lock = platform::FileLock::acquire(sub + "/state/\u00e9tat.lock", 1s);
  EXPECT_TRUE(lock) << (lock ? "" : lock.error().message);

  // A program in such a folder, with its log there too.
  const std::string child_name = std::filesystem::path(PLATFORM_CHILD).filename().string();
  const std::string program = sub + "/\u0436-" + child_name;
  std::filesystem::copy_file(std::filesystem::path(PLATFORM_CHILD), on_disk(program));
  Child c(program, sub + "/\u0436.log", "graceful");
  ASSERT_GT(c.spawned.pid, 0);
  EXPECT_TRUE(eventually([&] { return c.says("started"); }, 10s)) << read_text(c.log);
  EXPECT_TRUE(std::filesystem::exists(on_disk(sub + "/\u0436.log")));
}

namespace {

void set_env(const char* name, const std::string& value) {
#ifdef _WIN32
  ::_putenv_s(name, value.c_str());
#else
  ::setenv(name, value.c_str(), 1);
#endif
}

// PATH and the working directory as they were, whatever way the test ends.
struct RestorePathAndCwd {
  std::optional<std::string> path = platform::env("PATH");
  std::filesystem::path cwd = std::filesystem::current_path();
  ~RestorePathAndCwd() {
    std::filesystem::current_path(cwd);
#ifdef _WIN32
    ::_putenv_s("PATH", path.value_or("").c_str());
#else
    if (path)
      ::setenv("PATH", path->c_str(), 1);
    else
      ::unsetenv("PATH");
#endif
  }
};

}  // namespace

// A program is looked up on PATH, never in the working directory: a
// llama-server or nvidia-smi lying where llamactl happens to run is not it.
TEST(Platform, FindProgramLooksOnPathNotInTheWorkingDirectory) {
  TempDir dir, elsewhere;
  const auto child = std::filesystem::path(PLATFORM_CHILD);
  const std::string name = "llamactl-probe-" + std::to_string(platform::current_pid());
  const auto copy = std::filesystem::path(dir.path()) / (name + child.extension().string());
  std::filesystem::copy_file(child, copy);
  RestorePathAndCwd restore;
  std::filesystem::current_path(dir.path());
  set_env("PATH", elsewhere.path());
  EXPECT_EQ(platform::find_program(name), std::nullopt) << "not from the working directory";
  set_env("PATH", dir.path());
  const auto found = platform::find_program(name);
  ASSERT_TRUE(found) << "found on PATH " << platform::env("PATH").value_or("(unset)");
  EXPECT_TRUE(std::filesystem::equivalent(*found, copy));
}

TEST(Platform, JoinPathUsesTheOsSeparator) {
#ifdef _WIN32
  EXPECT_EQ(platform::join_path("C:\\state", "logs/a.log"), "C:\\state\\logs\\a.log");
  EXPECT_EQ(platform::join_path("C:\\state\\", "a.pid"), "C:\\state\\a.pid");
#else
  EXPECT_EQ(platform::join_path("/state", "logs/a.log"), "/state/logs/a.log");
  EXPECT_EQ(platform::join_path("/state/", "a.pid"), "/state/a.pid");
#endif
  EXPECT_EQ(platform::join_path("", "a.pid"), "a.pid");
}
