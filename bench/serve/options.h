#pragma once
// bench_serve's command line (docs/benchmarks.md, "serve benchmark").

#include <optional>
#include <string>
#include <vector>

namespace bench_serve {

struct Options {
  double duration = 3, warmup = 0.5;
  int rounds = 3;
  std::vector<int> conns = {1, 16, 64};
  int sse_tokens = 256, sse_runs = 5;
  double sse_gap_ms = 2;
  double idle_wait = 5, idle_measure = 10;
  std::string nginx_workers = "auto";
  bool nginx = true, fake = true, keep = false;
  bool pin = false;  // the proxy on the last CPU, everything else on the others
  int max_seconds = 170;
};

/// The usage line, on stderr.
void usage();
/// The options of `argv`; nullopt on an unknown flag or a value out of range.
std::optional<Options> parse_args(int argc, char** argv);

}  // namespace bench_serve
