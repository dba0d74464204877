// The web page's server side (src/serve/ui_routes.h, web_assets.h,
// gpu_history.h): its document, its history ring, its files' types, and the
// llamactl fields of POST /models/load.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/gpu_history.h"
#include "serve/router_api.h"
#include "serve/ui_routes.h"
#include "serve/web_assets.h"

using namespace llamactl;
using namespace llamactl::serve;

namespace {

gpu::ProbeResult reading(std::vector<int64_t> used) {
  gpu::ProbeResult r;
  for (size_t i = 0; i < used.size(); ++i) {
    gpu::GpuReading g;
    g.index = static_cast<int>(i);
    g.uuid = "GPU-" + std::to_string(i);
    g.name = "NVIDIA H100 80GB HBM3";
    g.memory_used_mib = used[i];
    g.memory_total_mib = 81559;
    g.utilization_pct = 7;
    r.snapshot.gpus.push_back(g);
  }
  return r;
}

}  // namespace

TEST(GpuHistory, KeepsTheLastMinutesOfReadingsAndGivesWhatIsNew) {
  GpuHistory h(10'000, 5);
  h.record(reading({100, 200}), 1000);
  h.record(reading({150, 200}), 2000);
  h.record(reading({150, 200}), 2000);  // the same reading again: nothing new
  gpu::ProbeResult cpu;
  cpu.cpu_mode = true;
  h.record(cpu, 3000);  // CPU mode: no GPU, no sample
  auto all = h.since(0);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].t_ms, 2000);
  ASSERT_EQ(all[1].gpus.size(), 2u);
  EXPECT_EQ(all[1].gpus[0].used_mib, 150);
  EXPECT_EQ(all[1].gpus[1].total_mib, 81559);
  EXPECT_EQ(h.since(1000).size(), 1u);
  EXPECT_TRUE(h.since(2000).empty());
  // Older than the span goes, and never more than max_samples.
  h.record(reading({1}), 12'500);
  EXPECT_EQ(h.since(0).front().t_ms, 12'500) << "1000 and 2000 are more than 10 s old";
  for (int t = 13'000; t < 14'000; t += 100) h.record(reading({1}), t);
  EXPECT_EQ(h.since(0).size(), 5u);
}

TEST(WebAssets, TypesByExtensionAndNoPaths) {
  EXPECT_EQ(web_content_type("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(web_content_type("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(web_content_type("style.css"), "text/css; charset=utf-8");
  EXPECT_EQ(web_content_type("favicon.svg"), "image/svg+xml");
  EXPECT_EQ(web_content_type("x.bin"), "application/octet-stream");
  EXPECT_EQ(find_web_asset("../CMakeLists.txt"), nullptr);
  EXPECT_EQ(find_web_asset("/etc/passwd"), nullptr);
  EXPECT_EQ(find_web_asset("nope.js"), nullptr);
  for (const auto& a : web_assets()) {
    EXPECT_EQ(a.name.find('/'), std::string_view::npos) << a.name;
    EXPECT_EQ(find_web_asset(a.name), &a);
  }
  if (const auto* index = find_web_asset("")) {
    EXPECT_EQ(index->name, "index.html");
  }
}

TEST(UiDocument, StatusAsTheCliPrintsItWithServesQueuesModelsAndHistory) {
  UiInputs in;
  const auto probe = reading({30000, 5});
  state::Instance tiny;
  tiny.model = "tiny";
  tiny.gpus = {0};
  tiny.port = 8081;
  tiny.pid = 4242;
  tiny.state = "running";
  tiny.loaded_by = "serve";
  runtime::Reconciled rec;
  rec.live.push_back(tiny);
  in.view = runtime::build_view(probe, {}, rec, {}, 5000, [](int64_t) { return std::optional<std::string>(); });
  in.instances = {ModelInfo{"tiny", "tiny", {0}, "ready", 8081, true, 4242, -1, 0, 2, 1},
                  ModelInfo{"other", "other", {}, "stopped", 0, true, 0, -1, 0, 0, 0}};
  in.statuses = {{"other", ModelStatus{}}, {"tiny", ModelStatus{"loaded", false, std::nullopt, {}, {}}}};
  auto cfg = std::make_shared<config::Config>();
  config::ModelConfig t, o;
  t.name = "tiny";
  t.path = "/m/tiny.gguf";
  t.aliases = {"small"};
  o.name = "other";
  o.path = "/m/other.gguf";
  o.gpu = "1";
  cfg->models["tiny"] = t;
  cfg->models["other"] = o;
  in.config = cfg;
  GpuHistory h;
  h.record(probe, 4000);
  in.samples = h.since(0);
  in.span_ms = h.span_ms();
  in.now_ms = 5000;
  in.reading_at_ms = 4000;
  in.streaming = true;
  const auto doc = ui_document(in);
  EXPECT_EQ(doc["now_ms"], 5000);
  EXPECT_EQ(doc["reading_at_ms"], 4000);
  EXPECT_EQ(doc["streaming"], true);
  EXPECT_EQ(doc["status"]["gpus"]["total_gpus"], 2);
  EXPECT_EQ(doc["status"]["gpus"]["gpu_status"][0]["model_name"], "tiny");
  ASSERT_EQ(doc["status"]["instances"].size(), 1u);
  EXPECT_EQ(doc["status"]["instances"][0]["in_flight"], 2);
  EXPECT_EQ(doc["status"]["instances"][0]["queued"], 1);
  ASSERT_EQ(doc["models"].size(), 2u);
  EXPECT_EQ(doc["models"][1]["name"], "tiny");
  EXPECT_EQ(doc["models"][1]["status"], "loaded");
  EXPECT_EQ(doc["models"][1]["aliases"], nlohmann::ordered_json::array({"small"}));
  EXPECT_EQ(doc["models"][1]["instances"], nlohmann::ordered_json::array({"tiny"}));
  EXPECT_EQ(doc["models"][0]["gpu"], "1");
  EXPECT_EQ(doc["models"][0]["instances"].size(), 0u);
  ASSERT_EQ(doc["history"]["samples"].size(), 1u);
  EXPECT_EQ(doc["history"]["samples"][0]["t_ms"], 4000);
  EXPECT_EQ(doc["history"]["samples"][0]["gpus"][0]["used_mib"], 30000);
  EXPECT_EQ(doc["history"]["span_ms"], 600000);
}

TEST(RouterLoadExtras, GpuAndKeepAliveAreTheClisWithClearErrors) {
  runtime::LoadRequest r;
  EXPECT_FALSE(load_extras(R"({"model":"tiny","gpu":"0,1","keep_alive":"10m"})", r));
  EXPECT_EQ(r.gpu, "0,1");
  EXPECT_EQ(r.keep_alive_ms, 600000);
  runtime::LoadRequest n;
  EXPECT_FALSE(load_extras(R"({"model":"tiny","gpu":2,"keep_alive":-1})", n));
  EXPECT_EQ(n.gpu, "2");
  EXPECT_EQ(n.keep_alive_ms, -1);
  runtime::LoadRequest none;
  EXPECT_FALSE(load_extras(R"({"model":"tiny"})", none));
  EXPECT_FALSE(none.gpu);
  EXPECT_FALSE(none.keep_alive_ms);
  runtime::LoadRequest bad;
  EXPECT_NE(load_extras(R"({"model":"tiny","gpu":[0]})", bad).value_or("").find("gpu must be"), std::string::npos);
  EXPECT_NE(load_extras(R"({"model":"tiny","keep_alive":"soon"})", bad).value_or("").find("keep_alive"),
            std::string::npos);
  EXPECT_NE(load_extras(R"({"model":"tiny","keep_alive":{}})", bad).value_or("").find("keep_alive must be"),
            std::string::npos);
}

TEST(UiLog, LastLinesOfAText) {
  EXPECT_EQ(last_lines("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(last_lines("a\nb\nc", 2), "b\nc\n") << "an unterminated last line counts";
  EXPECT_EQ(last_lines("a\nb\n", 5), "a\nb\n");
  EXPECT_EQ(last_lines("", 3), "");
  EXPECT_EQ(last_lines("only", 1), "only\n");
}
