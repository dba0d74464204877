#include "serve/options.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace bench_serve {

void usage() {
  std::fprintf(
      stderr,
      "usage: bench_serve [--duration S] [--warmup S] [--rounds N] [--conns 1,16,64] [--sse-tokens N]\n"
      "                   [--sse-gap-ms MS] [--sse-runs N] [--idle-wait S] [--idle-measure S]\n"
      "                   [--nginx-workers N|auto] [--no-nginx] [--no-fake] [--pin] [--keep] [--max-seconds S]\n");
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--rounds")
      o.rounds = std::max(1, std::atoi(val().c_str()));
    else if (a == "--duration")
      o.duration = std::atof(val().c_str());
    else if (a == "--warmup")
      o.warmup = std::atof(val().c_str());
    else if (a == "--conns") {
      o.conns.clear();
      std::istringstream in(val());
      std::string c;
      while (std::getline(in, c, ','))
        if (std::atoi(c.c_str()) > 0) o.conns.push_back(std::atoi(c.c_str()));
    } else if (a == "--sse-tokens")
      o.sse_tokens = std::atoi(val().c_str());
    else if (a == "--sse-gap-ms")
      o.sse_gap_ms = std::atof(val().c_str());
    else if (a == "--sse-runs")
      o.sse_runs = std::atoi(val().c_str());
    else if (a == "--idle-wait")
      o.idle_wait = std::atof(val().c_str());
    else if (a == "--idle-measure")
      o.idle_measure = std::atof(val().c_str());
    else if (a == "--nginx-workers")
      o.nginx_workers = val();
    else if (a == "--no-nginx")
      o.nginx = false;
    else if (a == "--no-fake")
      o.fake = false;
    else if (a == "--keep")
      o.keep = true;
    else if (a == "--pin")
      o.pin = true;
    else if (a == "--max-seconds")
      o.max_seconds = std::atoi(val().c_str());
    else
      return std::nullopt;
  }
  if (o.duration <= 0 || o.warmup < 0 || o.conns.empty() || o.sse_tokens < 2 || o.sse_runs < 1 || o.sse_gap_ms < 0 ||
      o.idle_measure <= 0 || o.max_seconds <= 0)
    return std::nullopt;
  return o;
}

}  // namespace bench_serve
