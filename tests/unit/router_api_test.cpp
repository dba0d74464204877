// The JSON of llama-server's router API as serve writes it
// (src/serve/router_api.h): a model's status, and one SSE status event.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "serve/router_api.h"

using namespace llamactl::serve;
using nlohmann::json;

TEST(RouterApiJson, StatusOfALoadedModelHasItsArgs) {
  ModelStatus s;
  s.value = "loaded";
  s.args = {"llama-server", "-m", "/m/a.gguf", "--port", "8081"};
  EXPECT_EQ(json::parse(status_json(s)),
            json({{"value", "loaded"}, {"args", {"llama-server", "-m", "/m/a.gguf", "--port", "8081"}}}));
}

TEST(RouterApiJson, ADeadModelIsUnloadedAndFailedWithItsExitCodeWhenKnown) {
  ModelStatus s;
  s.failed = true;
  s.exit_code = 137;
  EXPECT_EQ(json::parse(status_json(s)),
            json({{"value", "unloaded"}, {"args", json::array()}, {"failed", true}, {"exit_code", 137}}));
  s.exit_code.reset();  // not our child: no code, still failed
  EXPECT_EQ(json::parse(status_json(s)), json({{"value", "unloaded"}, {"args", json::array()}, {"failed", true}}));
}

TEST(RouterApiJson, AnEventIsOneDataLineOfAModelStatus) {
  ModelStatus s;
  s.value = "loading";
  const std::string e = status_event("qwen", s);
  ASSERT_EQ(e.rfind("data: ", 0), 0U) << e;
  ASSERT_EQ(e.substr(e.size() - 2), "\n\n");
  EXPECT_EQ(e.find('\n'), e.size() - 2) << "one line: " << e;
  EXPECT_EQ(
      json::parse(e.substr(6)),
      json({{"model", "qwen"}, {"event", "model_status"}, {"data", {{"status", "loading"}, {"args", json::array()}}}}));
}

TEST(RouterApiJson, HostileNamesStayOneValidLine) {
  ModelStatus s;
  s.args = {"a\nb", "\xff\xfe"};
  const std::string e = status_event("x\n\ndata: {\"forged\":1}", s);
  EXPECT_EQ(e.find('\n'), e.size() - 2) << e;  // a newline in a name cannot start another event
  const json j = json::parse(e.substr(6));     // valid UTF-8 whatever the argv held
  EXPECT_EQ(j["model"], "x\n\ndata: {\"forged\":1}");
  EXPECT_EQ(j["data"]["args"][1], "\xEF\xBF\xBD\xEF\xBF\xBD");
}
