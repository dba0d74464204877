// Benchmark: GET /api/tags with many configured models.
//
// Writes MODELS GGUF files of a realistic header (a vocabulary of TOKENS
// strings with their token types, as a Qwen or Llama 3 GGUF has, plus a MiB
// standing in for weights, so the digest reads the first and last MiB as it
// does on a real file), configures them all, starts `llamactl serve` with the
// mock nvidia-smi, waits WAIT seconds after /health answers, and times the
// first GET /api/tags, then a second. Then times serve's SIGTERM stop.
// The files are in the page cache (just written), as they are on a machine
// that has read them before.
//
// usage: bench_tags [--models N] [--tokens N] [--wait SECONDS] [--llamactl PATH]
//   --llamactl: another build of llamactl (e.g. main's, for a before/after).

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "integration/harness.h"
#include "integration/serve_harness.h"
#include "unit/gguf_writer.h"

using namespace llamactl::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int models = 200;
  int tokens = 150'000;
  double wait_s = 3;
  std::string llamactl = LLAMACTL_BIN;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--models" && has_value) {
      o.models = std::atoi(argv[++i]);
    } else if (a == "--tokens" && has_value) {
      o.tokens = std::atoi(argv[++i]);
    } else if (a == "--wait" && has_value) {
      o.wait_s = std::atof(argv[++i]);
    } else if (a == "--llamactl" && has_value) {
      o.llamactl = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_tags [--models N] [--tokens N] [--wait SECONDS] [--llamactl PATH]\n");
      std::exit(2);
    }
  }
  return o;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// One model's GGUF: the vocabulary makes the header a few MB, as real ones are.
GgufSpec realistic(int index, int tokens) {
  GgufSpec spec;
  spec.architecture = "qwen2";
  spec.name = "bench-" + std::to_string(index);
  spec.block_count = 28;
  spec.context_length = 32768;
  spec.embedding_length = 3584;
  spec.head_count = 28;
  spec.head_count_kv = 4;
  spec.tokens.clear();
  spec.tokens.reserve(static_cast<size_t>(tokens));
  for (int t = 0; t < tokens; ++t) spec.tokens.push_back("tok" + std::to_string(t));
  spec.extra = {
      kv_u32("general.file_type", 15),
      kv_i32s("tokenizer.ggml.token_type", std::vector<int32_t>(static_cast<size_t>(tokens), 1)),
      kv_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"),
      kv_u32("tokenizer.ggml.eos_token_id", 1),
  };
  spec.data_bytes = 1 << 20;
  return spec;
}

pid_t start_serve(const Sandbox& sb, const Options& o, int port) {
  auto argv = sb.command(sb.state_dir(), {"serve", "--listen", "127.0.0.1:" + std::to_string(port)});
  for (auto& a : argv)
    if (a == LLAMACTL_BIN) a = o.llamactl;
  SpawnOptions so;
  so.log = sb.path("serve.log");
  return static_cast<pid_t>(spawn_logged(argv, so));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  Sandbox sb;
  std::filesystem::create_directories(sb.path("models"));
  std::string config;
  uint64_t bytes = 0;
  const auto written = Clock::now();
  for (int i = 0; i < o.models; ++i) {
    const std::string path = sb.path("models/m" + std::to_string(i) + ".gguf");
    write_gguf(path, realistic(i, o.tokens));
    bytes += std::filesystem::file_size(path);
    config += "[models.m" + std::to_string(i) + "]\npath = \"" + path + "\"\n";
  }
  sb.write_config(config);
  std::printf("%d models of %.1f MB each (%d tokens), written in %.1f s\n", o.models,
              static_cast<double>(bytes) / o.models / 1e6, o.tokens, ms_since(written) / 1000);
  std::printf("llamactl: %s\n", o.llamactl.c_str());

  const int port = free_port();
  const auto started = Clock::now();
  const pid_t pid = start_serve(sb, o, port);
  const bool up =
      eventually([&] { return http_request(port, "GET", "/health", "", {}, std::chrono::seconds(1)).status == 200; },
                 std::chrono::seconds(20));
  if (pid <= 0 || !up) {
    std::fprintf(stderr, "serve did not start:\n%s\n", read_text(sb.path("serve.log")).c_str());
    return 1;
  }
  std::printf("serve answered /health after %.1f ms\n", ms_since(started));
  std::this_thread::sleep_for(std::chrono::duration<double>(o.wait_s));

  int status = 0;
  for (const char* which : {"first", "second"}) {
    const auto t0 = Clock::now();
    const auto r = http_request(port, "GET", "/api/tags", "", {}, std::chrono::seconds(120));
    const double took = ms_since(t0);
    const size_t listed = r.status == 200 ? r.json()["models"].size() : 0;
    std::printf("%-6s GET /api/tags, %.1f s after start: %8.1f ms (%zu models listed)\n", which, o.wait_s, took,
                listed);
    if (listed != static_cast<size_t>(o.models)) status = 1;
  }

  const auto stopping = Clock::now();
  ::kill(pid, SIGTERM);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  std::printf("serve stopped on SIGTERM in %.1f ms (exit %d)\n", ms_since(stopping),
              WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
  return status;
}
