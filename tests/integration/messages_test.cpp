// Messages that help (issue 22, item 5): the exact words and exit code a
// newcomer's mistake gets from the real binary.

#include <gtest/gtest.h>

#include <fstream>

#include "integration/harness.h"

using namespace llamactl::testing;

TEST(Messages, UnknownCommandSuggestsTheNearest) {
  Sandbox sb;
  auto r = sb.run({"lod", "qwen"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "llamactl: error: unknown command 'lod'; did you mean 'load'?\n"
            "Run 'llamactl --help' for usage.\n");
  // Nothing near: the commands are listed instead (not the hidden __complete).
  auto far = sb.run({"frobnicate"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_EQ(far.err,
            "llamactl: error: unknown command 'frobnicate'; commands: gpus, load, unload, status, serve, watch, mcp\n"
            "Run 'llamactl --help' for usage.\n");
  auto none = sb.run({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_EQ(none.err,
            "llamactl: error: a command is required: gpus, load, unload, status, serve, watch, mcp\n"
            "Run 'llamactl --help' for usage.\n");
}

TEST(Messages, UnknownOptionSuggestsTheNearest) {
  Sandbox sb;
  auto r = sb.run({"load", "qwen", "--gpuu", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "llamactl: error: unknown option '--gpuu'; did you mean '--gpu'?\n"
            "Run 'llamactl load --help' for usage.\n");
  // A global flag is a candidate after the subcommand too; --x=v is named without its value.
  auto g = sb.run({"gpus", "--jsno=1"});
  EXPECT_EQ(g.exit_code, 2);
  EXPECT_EQ(g.err.substr(0, g.err.find('\n')), "llamactl: error: unknown option '--jsno'; did you mean '--json'?");
  auto far = sb.run({"gpus", "--no-such-flag"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_EQ(far.err.substr(0, far.err.find('\n')), "llamactl: error: unknown option '--no-such-flag'");
  auto extra = sb.run({"load", "a", "b"});
  EXPECT_EQ(extra.exit_code, 2);
  EXPECT_EQ(extra.err.substr(0, extra.err.find('\n')), "llamactl: error: unexpected argument 'b'");
  // Errors CLI11 words well enough keep its words.
  auto bad = sb.run({"gpus", "--threshold", "abc"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--threshold"), std::string::npos) << bad.err;
}

TEST(Messages, StrictWithoutGpuIsAnErrorNotABanner) {
  Sandbox sb;
  const std::vector<std::string> nodev = {"FAKE_SMI_MODE=nodev"};
  auto human = sb.run({"gpus", "--strict"}, nodev);
  EXPECT_EQ(human.exit_code, 10);
  EXPECT_EQ(human.out, "");  // no "CPU Mode" banner before the error
  EXPECT_EQ(human.err.rfind("llamactl: error: --strict: no usable GPU reading: ", 0), 0u) << human.err;
  EXPECT_NE(human.err.find("No devices were found"), std::string::npos) << human.err;
  auto j = sb.run({"gpus", "--strict", "--json"}, nodev);
  EXPECT_EQ(j.exit_code, 10);
  const auto obj = j.json();
  EXPECT_EQ(obj["exit_code"], 10) << j.out;
  EXPECT_EQ(obj["error"].get<std::string>().rfind("--strict: no usable GPU reading: ", 0), 0u) << j.out;
  EXPECT_FALSE(obj.contains("mode")) << j.out;
  // Under --json the reason is in the object, and once on stderr for a person.
  auto plain = sb.run({"gpus", "--json"}, nodev);
  EXPECT_EQ(plain.exit_code, 0);
  const auto err = plain.err;
  const auto first = err.find("No devices were found");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("No devices were found", first + 1), std::string::npos) << err;
}

TEST(Messages, ModelTypoSuggestsTheNearestConfiguredName) {
  Sandbox sb;
  sb.write_config("[models.qwen]\npath = \"" + sb.model("qwen7b") + "\"\naliases = [\"qwen-7b\"]\n");
  auto r = sb.run({"load", "qwne"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.err, "llamactl: error: model 'qwne' is not in the config (" + sb.path("llamactl.toml") +
                       ") and is not a path to a .gguf file; did you mean 'qwen'?\n");
  auto far = sb.run({"load", "mistral"});
  EXPECT_EQ(far.exit_code, 5);
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
}

TEST(Messages, UnloadOfNoModelSaysSoAndListsWhatRuns) {
  Sandbox sb;
  sb.write_config("[models.qwen]\npath = \"" + sb.model("qwen7b") + "\"\n[models.llama]\npath = \"" +
                  sb.model("llama") + "\"\n");
  const std::string cfg = sb.path("llamactl.toml");
  auto none = sb.run({"unload", "qwne"});
  EXPECT_EQ(none.exit_code, 5);
  EXPECT_EQ(none.err, "llamactl: error: 'qwne' is not a model: not in the config (" + cfg +
                          ") and not one of ours that runs; did you mean 'qwen'? Nothing of ours runs.\n");
  auto loaded = sb.run({"load", "qwen", "--gpu", "0"});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  auto cpu = sb.run({"load", sb.model("tiny"), "--gpu", "cpu"});
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  auto typo = sb.run({"unload", "qwne"});
  EXPECT_EQ(typo.exit_code, 5);
  EXPECT_EQ(typo.err, "llamactl: error: 'qwne' is not a model: not in the config (" + cfg +
                          ") and not one of ours that runs; did you mean 'qwen'? Running: qwen on GPU 0, tiny on "
                          "the CPU.\n");
  auto idle = sb.run({"unload", "llama"});
  EXPECT_EQ(idle.exit_code, 5);
  EXPECT_EQ(idle.err, "llamactl: error: 'llama' is not running. Running: qwen on GPU 0, tiny on the CPU.\n");
  auto gpu = sb.run({"unload", "--gpu", "1"});
  EXPECT_EQ(gpu.exit_code, 5);
  EXPECT_EQ(gpu.err, "llamactl: error: nothing of ours runs on GPU 1. Running: qwen on GPU 0, tiny on the CPU.\n");
  EXPECT_EQ(sb.run({"unload", "--all"}).exit_code, 0);
}

TEST(Messages, NoLlamaServerSaysWhereItLookedAndHowToGetOne) {
  Sandbox sb;
  // No llama_server key: the default name, looked up on a PATH without it.
  std::ofstream(sb.path("llamactl.toml")) << "base_port = " << sb.base_port() << "\n";
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "cpu"}, {"PATH=" + sb.path("empty-bin")});
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_EQ(r.err, "llamactl: error: llama-server not found: llama_server = 'llama-server' (" +
                       sb.path("llamactl.toml") +
                       ") is not on PATH. Build llama.cpp (https://github.com/ggml-org/llama.cpp) or take its release "
                       "binaries, then put llama-server on PATH or set llama_server = \"/path/to/llama-server\" in "
                       "the config\n");
  std::ofstream(sb.path("llamactl.toml"))
      << "llama_server = \"/nonexistent/llama-server\"\nbase_port = " << sb.base_port() << "\n";
  auto named = sb.run({"load", sb.model("tiny"), "--gpu", "cpu"});
  EXPECT_EQ(named.exit_code, 6);
  EXPECT_NE(named.err.find("llama-server not found: llama_server = '/nonexistent/llama-server' (" +
                           sb.path("llamactl.toml") + ") is missing or not executable."),
            std::string::npos)
      << named.err;
}

TEST(Messages, TomlSyntaxErrorInPlainWordsWithLineAndColumn) {
  Sandbox sb;
  std::ofstream(sb.path("llamactl.toml")) << "base_port = 8081\nllama_server = \"/opt/llama-server\n";
  auto r = sb.run({"gpus"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "llamactl: error: " + sb.path("llamactl.toml") +
                       ":2:34: a string is not closed: add the missing quote before the end of the line\n");
}

TEST(Messages, CpuInstancesRunOnTheCpuWithARamEstimate) {
  Sandbox sb;
  auto r = sb.run({"load", sb.model("tiny"), "--gpu", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("loaded 'tiny' on the CPU\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find(" MiB of RAM (weights "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("/GPU"), std::string::npos) << r.out;
  auto again = sb.run({"load", sb.model("tiny")});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.out.rfind("'tiny' already runs on the CPU\n", 0), 0u) << again.out;
  auto elsewhere = sb.run({"load", sb.model("tiny"), "--gpu", "0"});
  EXPECT_EQ(elsewhere.exit_code, 4);
  EXPECT_NE(elsewhere.err.find("'tiny' already runs on the CPU (pid "), std::string::npos) << elsewhere.err;
  auto gone = sb.run({"unload", "tiny"});
  EXPECT_EQ(gone.exit_code, 0);
  EXPECT_EQ(gone.out.rfind("unloaded 'tiny' from the CPU (pid ", 0), 0u) << gone.out;
}

TEST(Messages, ContextAboveTheTrainedOneIsRefusedUnlessAllowed) {
  Sandbox sb;
  const std::string model = sb.model("tiny");  // the test GGUF: llama.context_length 2048
  sb.write_config("context = 16000000\n");
  auto r = sb.run({"load", model, "--gpu", "cpu"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(
      r.err,
      "llamactl: error: context 16000000 is above the 2048 tokens 'tiny' was trained with (llama.context_length); "
      "set a smaller context, or allow_context_over_trained = true in the config, or load with --force\n");
  auto forced = sb.run({"load", model, "--gpu", "cpu", "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(forced.err.find("context 16000000 is above the 2048 tokens 'tiny' was trained with"), std::string::npos)
      << forced.err;
  ASSERT_EQ(sb.run({"unload", "tiny"}).exit_code, 0);
  sb.write_config("allow_context_over_trained = true\n[models.tiny]\npath = \"" + model + "\"\ncontext = 4096\n");
  auto allowed = sb.run({"load", "tiny", "--gpu", "cpu"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_NE(allowed.err.find("context 4096 is above the 2048 tokens"), std::string::npos) << allowed.err;
  // The built-in default (4096) is not a choice anyone made: no warning.
  ASSERT_EQ(sb.run({"unload", "tiny"}).exit_code, 0);
  sb.write_config("");
  auto plain = sb.run({"load", model, "--gpu", "cpu"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.err.find("trained"), std::string::npos) << plain.err;
}
