// The CLI and serve against another user's files (issue: nothing another
// user's files say is trusted), with the real binary: modes under umask 000,
// a state dir others can write to, a state file that is not UTF-8, and a
// forged record naming another user's process.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "integration/harness.h"
#include "integration/serve_harness.h"
#include "platform/platform.h"
#include "support/temp_dir.h"

using namespace llamactl::testing;
using nlohmann::json;
using namespace std::chrono_literals;

TEST(StateSecurity, EveryFileIs0600AndEveryDir0700UnderUmask000) {
  Sandbox sb;
  const mode_t old = ::umask(0);
  const auto r = sb.run({"load", sb.model("tiny"), "--gpu", "0", "--json"});
  ::umask(old);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string d = sb.state_dir();
  for (const auto& dir : {d, d + "/logs", d + "/pids"}) EXPECT_EQ(mode_of(dir), 0700u) << dir;
  for (const auto& file : {d + "/state.json", d + "/state.lock", d + "/logs/tiny.log", d + "/pids/tiny.pid"})
    EXPECT_EQ(mode_of(file), 0600u) << file;
  EXPECT_EQ(sb.run({"unload", "tiny"}).exit_code, 0);
}

TEST(StateSecurity, AStateDirOthersCanWriteIsRefusedWithExit8) {
  Sandbox sb;
  ASSERT_TRUE(llamactl::platform::make_private_dir(sb.state_dir()).ok());
  ::chmod(sb.state_dir().c_str(), 0777);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"status"}, {"load", sb.model("tiny"), "--gpu", "0"}, {"unload", "--all"}}) {
    const auto r = sb.run(args);
    EXPECT_EQ(r.exit_code, 8) << args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("chmod 700 " + sb.state_dir()), std::string::npos) << r.err;
  }
  ServeProcess s(sb);
  EXPECT_EQ(s.wait_exit(10s), 8) << s.output();
  ::chmod(sb.state_dir().c_str(), 0700);
}

// Bytes that are not UTF-8 in state.json: moved aside with a warning, and
// `status --json` still prints one valid JSON document.
TEST(StateSecurity, AStateFileThatIsNotUtf8StillGivesValidJson) {
  Sandbox sb;
  ASSERT_TRUE(llamactl::platform::make_private_dir(sb.state_dir()).ok());
  for (const std::string& text :
       {std::string("{\"schema_version\":1,\"instances\":[{\"model\":\"\xff\xfe\",\"pid\":1}]}"),
        std::string("\xc3\x28\xa0\xa1 random \xf0\x28\x8c\x28")}) {
    std::ofstream(sb.state_dir() + "/state.json") << text;
    const auto r = sb.run({"status", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const auto j = json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    ASSERT_TRUE(j.contains("notices")) << r.out;
    EXPECT_NE(j["notices"].dump().find("damaged"), std::string::npos) << r.out;
  }
}

// A state.json written by another user that names a victim process: neither
// `unload --all` nor serve's reaper may signal it.
TEST(StateSecurity, AForgedRecordOfAnotherUsersProcessIsNeverSignalled) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root, to run a process as another user";
  const pid_t victim = ::fork();
  if (victim == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(97);
    ::execl("/bin/sleep", "sleep", "120", static_cast<char*>(nullptr));
    ::_exit(98);
  }
  ASSERT_GT(victim, 0);
  const auto stop_victim = [&] {
    ::kill(victim, SIGKILL);
    ::waitpid(victim, nullptr, 0);
  };
  ASSERT_TRUE(eventually([&] { return llamactl::platform::process_user(victim).value_or("") != "root"; }, 5s));
  const auto start = llamactl::platform::process_start_time(victim).value_or(0);

  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  ASSERT_TRUE(llamactl::platform::make_private_dir(sb.state_dir()).ok());
  const json forged = {{"schema_version", 1},
                       {"instances",
                        {{{"model", "tiny"},
                          {"path", sb.model("tiny")},
                          {"gpus", {0}},
                          {"port", sb.base_port()},
                          {"pid", victim},
                          {"process_start_time", start},
                          {"started_at_ms", 1},
                          {"last_used_at_ms", 1},
                          {"keep_alive_ms", 1},
                          {"owner", "root"},
                          {"state", "running"},
                          {"loaded_by", "serve"}}}}};
  std::ofstream(sb.state_dir() + "/state.json") << forged.dump();
  const auto u = sb.run({"unload", "--all"});
  EXPECT_NE(proc_state(victim), 0) << u.out << u.err;
  EXPECT_NE(proc_state(victim), 'Z') << u.out << u.err;
  {
    std::ofstream(sb.state_dir() + "/state.json") << forged.dump();  // whatever unload made of it
    ServeProcess s(sb);
    ASSERT_TRUE(s.ready()) << s.output();
    std::this_thread::sleep_for(1500ms);  // several reaper ticks past the record's keep-alive
    EXPECT_NE(proc_state(victim), 0) << s.output();
    EXPECT_NE(proc_state(victim), 'Z') << s.output();
    EXPECT_EQ(s.terminate(), 0) << s.output();
  }
  // The state file of another user is refused outright.
  std::ofstream(sb.state_dir() + "/state.json") << forged.dump();
  ASSERT_EQ(::chown((sb.state_dir() + "/state.json").c_str(), 65534, 65534), 0);
  const auto st = sb.run({"unload", "--all"});
  EXPECT_EQ(st.exit_code, 8) << st.err;
  EXPECT_NE(st.err.find("belongs to another user"), std::string::npos) << st.err;
  EXPECT_NE(proc_state(victim), 0);
  std::remove((sb.state_dir() + "/state.json").c_str());
  stop_victim();
}

// The state dir removed under a running serve: requests keep going to the
// instance that runs (no second llama-server), serve claims the dir again and
// writes its record back, and a second serve on that dir is still refused.
TEST(StateSecurity, TheStateDirRemovedUnderServeIsRecreatedWithWhatRuns) {
  Sandbox sb;
  sb.write_config("[models.tiny]\npath = \"" + sb.model("tiny") + "\"\n");
  ServeProcess s(sb);
  ASSERT_TRUE(s.ready()) << s.output();
  const std::string chat = R"({"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}]})";
  ASSERT_EQ(http_request(s.port(), "POST", "/api/chat", chat).status, 200) << s.output();
  const auto live_pids = [&] {
    std::vector<int64_t> pids;
    const auto st = sb.state_file();
    if (st.contains("instances"))
      for (const auto& i : st["instances"])
        if (i.value("model", "") == "tiny" && i.value("state", "") != "dead")
          pids.push_back(i.value("pid", int64_t{0}));
    return pids;
  };
  const auto before = live_pids();
  ASSERT_EQ(before.size(), 1u);
  // serve may rename a temp into the dir meanwhile: remove until it is gone.
  ASSERT_TRUE(eventually(
      [&] {
        std::error_code ec;
        std::filesystem::remove_all(sb.state_dir(), ec);
        return !ec;
      },
      5s));
  // At once, before serve has noticed: still the same instance.
  EXPECT_EQ(http_request(s.port(), "POST", "/api/chat", chat).status, 200) << s.output();
  EXPECT_TRUE(eventually([&] { return live_pids() == before; }, 10s)) << s.output();
  EXPECT_TRUE(std::filesystem::exists(sb.state_dir() + "/serve.json"));
  EXPECT_TRUE(std::filesystem::exists(sb.state_dir() + "/pids/tiny.pid"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(http_request(s.port(), "POST", "/api/chat", chat).status, 200);
  EXPECT_EQ(live_pids(), before) << s.output();
  // Still one serve per state dir.
  ServeProcess second(sb);
  EXPECT_EQ(second.wait_exit(10s), 8) << second.output();
  EXPECT_NE(second.output().find("already serves state dir"), std::string::npos) << second.output();
  EXPECT_EQ(s.terminate(), 0) << s.output();
  EXPECT_EQ(sb.run({"unload", "--all"}).exit_code, 0);
}
