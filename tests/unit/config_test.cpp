#include <gtest/gtest.h>

#include "config/config.h"
#include "util/duration.h"

using namespace llamactl;
using namespace llamactl::config;

namespace {

const char* kFull = R"(llama_server = "/opt/llama/llama-server"
base_port = 9000
memory_threshold_mib = 64
placement = "tensor-split"
keep_alive = "10m"
context = 8192
ignore_processes = ["Xorg", "dwm.exe"]

[ports]
gpu0 = 8081
gpu1 = 8088
both = 8081

[gpu.0]
threshold_mib = 1024

[models.llama-7b]
path = "/models/llama-2-7b.Q4_K_M.gguf"
gpu = "auto"
context = 4096
args = ["--flash-attn", "on"]
aliases = ["llama"]
keep_alive = "1h30m"
)";

}  // namespace

TEST(Config, EveryKeyOfTheSpec) {
  auto c = parse(kFull, "c.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->llama_server, "/opt/llama/llama-server");
  EXPECT_EQ(c->base_port, 9000);
  EXPECT_EQ(c->memory_threshold_mib, 64);
  EXPECT_EQ(c->placement, Placement::tensor_split);
  EXPECT_EQ(c->keep_alive_ms, 600000);
  EXPECT_EQ(c->context, 8192);
  EXPECT_EQ(c->ignore_processes, (std::vector<std::string>{"Xorg", "dwm.exe"}));
  EXPECT_EQ(c->ports.at("gpu1"), 8088);
  EXPECT_EQ(c->ports.at("both"), 8081);
  EXPECT_EQ(c->gpu.at(0).threshold_mib, 1024);
  const auto& m = c->models.at("llama-7b");
  EXPECT_EQ(m.path, "/models/llama-2-7b.Q4_K_M.gguf");
  EXPECT_EQ(m.gpu, "auto");
  EXPECT_EQ(m.context, 4096);
  EXPECT_EQ(m.args, (std::vector<std::string>{"--flash-attn", "on"}));
  EXPECT_EQ(m.keep_alive_ms, 5400000);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(Config, DefaultsWhenEmpty) {
  auto c = parse("", "empty.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->llama_server, "llama-server");
  EXPECT_EQ(c->base_port, 8081);
  EXPECT_EQ(c->memory_threshold_mib, 30);
  EXPECT_EQ(c->placement, Placement::visible_devices);
  EXPECT_EQ(c->keep_alive_ms, 300000);
  EXPECT_EQ(c->context, 4096);
  EXPECT_FALSE(c->context_set);
  EXPECT_FALSE(c->allow_context_over_trained);
  EXPECT_FALSE(c->ignore_processes.empty());
}

TEST(Config, ModelNamesListNamesBeforeAliases) {
  auto c = parse("[models.b]\npath = \"/b.gguf\"\naliases = [\"bee\"]\n[models.a]\npath = \"/a.gguf\"\n", "c.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->model_names(), (std::vector<std::string>{"a", "b", "bee"}));
  EXPECT_TRUE(parse("", "c.toml")->model_names().empty());
}

TEST(Config, ContextChoiceAndItsAllowance) {
  auto c = parse("context = 8192\nallow_context_over_trained = true\n", "c.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->context, 8192);
  EXPECT_TRUE(c->context_set);
  EXPECT_TRUE(c->allow_context_over_trained);
  auto bad = parse("allow_context_over_trained = \"yes\"\n", "c.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("c.toml:1: key 'allow_context_over_trained'"), std::string::npos)
      << bad.error().message;
}

TEST(Config, FindsByNameAliasAndTag) {
  auto c = parse(kFull, "c.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->find_model("llama-7b"), nullptr);
  EXPECT_NE(c->find_model("llama"), nullptr);
  EXPECT_NE(c->find_model("llama:latest"), nullptr);
  EXPECT_EQ(c->find_model("nope"), nullptr);
}

TEST(Config, ErrorsNameFileLineAndKey) {
  auto bad_type = parse("base_port = \"x\"\n", "c.toml");
  ASSERT_FALSE(bad_type.ok());
  EXPECT_EQ(bad_type.error().kind, ErrorKind::config);
  EXPECT_EQ(bad_type.error().message, "c.toml:1: key 'base_port': expected an integer");

  auto range = parse("\n\nbase_port = 70000\n", "c.toml");
  ASSERT_FALSE(range.ok());
  EXPECT_NE(range.error().message.find("c.toml:3: key 'base_port'"), std::string::npos) << range.error().message;

  auto syntax = parse("[models.x\npath=1", "c.toml");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.error().message.rfind("c.toml:1:", 0), 0u) << syntax.error().message;

  auto gpu = parse("[models.x]\npath = \"/m.gguf\"\ngpu = \"3,x\"\n", "c.toml");
  ASSERT_FALSE(gpu.ok());
  EXPECT_NE(gpu.error().message.find("c.toml:3: key 'models.x.gpu'"), std::string::npos) << gpu.error().message;

  auto nopath = parse("[models.x]\ncontext = 5\n", "c.toml");
  ASSERT_FALSE(nopath.ok());
  EXPECT_NE(nopath.error().message.find("has no 'path'"), std::string::npos);

  auto placement = parse("placement = \"sideways\"\n", "c.toml");
  ASSERT_FALSE(placement.ok());

  auto ka = parse("keep_alive = \"soon\"\n", "c.toml");
  ASSERT_FALSE(ka.ok());
  EXPECT_NE(ka.error().message.find("keep_alive"), std::string::npos);

  auto port_key = parse("[ports]\ngpux = 1\n", "c.toml");
  ASSERT_FALSE(port_key.ok());

  auto rerank = parse("[models.x]\npath = \"/m.gguf\"\nreranking = \"yes\"\n", "c.toml");
  ASSERT_FALSE(rerank.ok());
  EXPECT_NE(rerank.error().message.find("c.toml:3: key 'models.x.reranking'"), std::string::npos)
      << rerank.error().message;
}

// TOML syntax errors in plain words, with file:line:column (toml++'s own
// words, e.g. "unescaped control characters other than TAB (U+0009) are
// explicitly prohibited" for a missing quote, tell a config author nothing).
TEST(Config, SyntaxErrorsInPlainWords) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"llama_server = \"/opt/llama-server\nbase_port = 1\n",
       "c.toml:1:34: a string is not closed: add the missing quote before the end of the line"},
      {"a = 'x\n", "c.toml:1:7: a string is not closed: add the missing quote before the end of the line"},
      {"llama_server = \"C:\\llama\\llama-server.exe\"\n",
       "c.toml:1:20: unknown escape '\\l' in a \"...\" string: write \\\\ for a backslash, or put a Windows path in "
       "'...'"},
      {"[models.a]\npath = \"x\"\n[models.a]\npath = \"y\"\n",
       "c.toml:3:1: defined twice: 'models.a' (each key and [table] once)"},
      {"context = 4096\ncontext = 5\n", "c.toml:2:11: defined twice: 'context' (each key and [table] once)"},
      {"placement = tensor-split\n",
       "c.toml:1:14: a value TOML does not know: text needs quotes (key = \"text\"); numbers and true/false do not"},
      {"x = \n", "c.toml:1:5: a key without a value: write key = value"},
      {"llama_server /opt/x\n", "c.toml:1:14: expected key = value: the '=' is missing"},
      {"ignore_processes = [\"a\" \"b\"]\n",
       "c.toml:1:25: a list needs commas between its items and a closing ']': [\"a\", \"b\"]"},
      {"[models.a\npath=\"x\"\n", "c.toml:1:10: a [table] header needs its closing ']' on the same line"},
      {"base_port = 8081 8082\n",
       "c.toml:1:18: more after the value: one key = value per line, and a comment starts with #"},
  };
  for (const auto& [text, want] : cases) {
    auto c = parse(text, "c.toml");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.error().message, want) << text;
    EXPECT_EQ(c.error().kind, llamactl::ErrorKind::config);
  }
}

TEST(Config, RerankingAndEmbeddingsKeys) {
  auto c =
      parse("[models.r]\npath = \"/r.gguf\"\nreranking = true\n[models.e]\npath = \"/e.gguf\"\nembeddings = true\n",
            "c.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->models.at("r").reranking);
  EXPECT_FALSE(c->models.at("r").embeddings);
  EXPECT_TRUE(c->models.at("e").embeddings);
  EXPECT_FALSE(c->models.at("e").reranking);
  EXPECT_TRUE(c->warnings.empty());
}

TEST(Config, UnknownKeysWarnWithLine) {
  auto c = parse("base_port = 8081\nbsae_port = 1\n[models.m]\npath = \"/m.gguf\"\ncontxt = 5\n", "c.toml");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->warnings.size(), 2u);
  EXPECT_EQ(c->warnings[0], "c.toml:2: unknown key 'bsae_port' ignored");
  EXPECT_EQ(c->warnings[1], "c.toml:5: unknown key 'models.m.contxt' ignored");
}

TEST(Config, DuplicateAliasIsAnError) {
  auto c =
      parse("[models.a]\npath=\"/a.gguf\"\naliases=[\"x\"]\n[models.b]\npath=\"/b.gguf\"\naliases=[\"x\"]\n", "c.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("alias 'x'"), std::string::npos);
}

TEST(Config, IntegerKeepAliveIsSeconds) {
  auto c = parse("keep_alive = 60\n", "c.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->keep_alive_ms, 60000);
  auto never = parse("keep_alive = -1\n", "c.toml");
  ASSERT_TRUE(never.ok());
  EXPECT_EQ(never->keep_alive_ms, kNever);
}

TEST(Config, CompareNamesAddedChangedAndRemovedModels) {
  const auto before = parse(R"(context = 4096
[models.same]
path = "/m/same.gguf"
[models.args]
path = "/m/args.gguf"
args = ["--flash-attn"]
[models.gone]
path = "/m/gone.gguf"
[models.own_context]
path = "/m/own.gguf"
context = 2048
)",
                            "a.toml");
  ASSERT_TRUE(before) << before.error().message;
  const auto after = parse(R"(context = 4096
[models.same]
path = "/m/same.gguf"
[models.args]
path = "/m/args.gguf"
args = ["--flash-attn", "--no-mmap"]
[models.own_context]
path = "/m/own.gguf"
context = 2048
[models.new]
path = "/m/new.gguf"
)",
                           "b.toml");
  ASSERT_TRUE(after) << after.error().message;
  const auto c = compare(*before, *after);
  EXPECT_EQ(c.added, std::vector<std::string>{"new"});
  EXPECT_EQ(c.changed, std::vector<std::string>{"args"});
  EXPECT_EQ(c.removed, std::vector<std::string>{"gone"});
  EXPECT_TRUE(compare(*after, *after).empty());
}

TEST(Config, CompareCountsTheGlobalsAnInstanceStartsWith) {
  auto a = parse("[models.x]\npath = \"/m/x.gguf\"\n[models.y]\npath = \"/m/y.gguf\"\ncontext = 8192\n", "a.toml");
  ASSERT_TRUE(a);
  auto b = *a;
  b.context = 16384;  // x uses the default context; y has its own
  EXPECT_EQ(compare(*a, b).changed, std::vector<std::string>{"x"});
  b = *a;
  b.llama_server = "/opt/other/llama-server";
  EXPECT_EQ(compare(*a, b).changed, (std::vector<std::string>{"x", "y"}));
  b = *a;
  b.keep_alive_ms = 1000;  // applies to the next idle period, no restart
  b.max_queue = 3;
  EXPECT_TRUE(compare(*a, b).empty());
}

TEST(Config, GpusWeWereGiven) {
  auto c = parse("\ngpus = [0, \"GPU-2ccccccc\", 3]\n", "c.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE(c->gpus.has_value());
  EXPECT_EQ(*c->gpus, (std::vector<std::string>{"0", "GPU-2ccccccc", "3"}));
  EXPECT_EQ(c->gpus_where, "c.toml:2");
  EXPECT_FALSE(parse("", "c.toml")->gpus.has_value());
  auto empty = parse("gpus = []\n", "c.toml");  // no GPU at all: CPU only
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->gpus && empty->gpus->empty());

  struct Row {
    const char* text;
    const char* says;
  };
  const Row rows[] = {
      {"gpus = \"0,1\"\n", "c.toml:1: key 'gpus': expected an array of GPU indices"},
      {"gpus = [0, 64]\n", "c.toml:1: key 'gpus': must be between 0 and 63"},
      {"gpus = [-1]\n", "c.toml:1: key 'gpus': must be between 0 and 63"},
      {"gpus = [\"cuda:0\"]\n", "key 'gpus': 'cuda:0' is neither a GPU index nor a \"GPU-...\" UUID"},
      {"gpus = [\"0,1\"]\n", "'0,1' is neither"},
      {"gpus = [1.5]\n", "expected GPU indices"},
  };
  for (const auto& row : rows) {
    auto r = parse(row.text, "c.toml");
    ASSERT_FALSE(r.ok()) << row.text;
    EXPECT_EQ(r.error().kind, ErrorKind::config);
    EXPECT_NE(r.error().message.find(row.says), std::string::npos) << r.error().message;
  }
}

TEST(Config, ReplicasAndScaleAfterAreReadCheckedAndNoReasonToRestart) {
  const auto a = parse("[models.x]\npath = \"/m/x.gguf\"\nreplicas = 3\nscale_after = \"500ms\"\n", "a.toml");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->models.at("x").replicas, 3);
  EXPECT_EQ(a->models.at("x").scale_after_ms, 500);
  const auto d = parse("[models.x]\npath = \"/m/x.gguf\"\n", "a.toml");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->models.at("x").replicas, 1);
  EXPECT_EQ(d->models.at("x").scale_after_ms, 2000);
  // More or fewer instances allowed: the running ones need no restart.
  EXPECT_TRUE(compare(*a, *d).empty());
  const auto zero = parse("[models.x]\npath = \"/m/x.gguf\"\nreplicas = 0\n", "a.toml");
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("a.toml:3: key 'models.x.replicas'"), std::string::npos) << zero.error().message;
  // "x#2" is how serve names x's second instance: not a model name.
  const auto hash = parse("[models.\"x#2\"]\npath = \"/m/x.gguf\"\n", "a.toml");
  ASSERT_FALSE(hash);
  EXPECT_NE(hash.error().message.find("contains '#'"), std::string::npos) << hash.error().message;
}
