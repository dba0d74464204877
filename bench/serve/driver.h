#pragma once
// bench_serve's driver: starts serve (with this program as its upstream),
// nginx and the fake llama-server, runs the three measurements and prints them.

#include "serve/options.h"

namespace bench_serve {

/// The whole benchmark; 0 when it ran (its figures are not judged), 1 when
/// serve or the model could not be started. Everything it started is stopped
/// by pid, also on SIGINT, SIGTERM and the --max-seconds watchdog.
int run_bench(const Options& o);

}  // namespace bench_serve
