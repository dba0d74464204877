#pragma once
// bench_serve's tables: throughput by path and concurrency, and SSE timing.

#include <map>
#include <string>
#include <vector>

#include "serve/load_client.h"
#include "serve/options.h"

namespace bench_serve {

/// The throughput table (the median round of each path at each concurrency),
/// serve against nginx round by round, and what the columns mean.
void print_load_table(const std::vector<LoadResult>& rs, const Options& o);

/// The SSE table, one row per path in `paths` (each with its runs in `runs`),
/// and the lateness serve and the Ollama translation add.
void print_sse_table(const std::vector<std::string>& paths, const std::map<std::string, std::vector<SseRun>>& runs,
                     const Options& o);

}  // namespace bench_serve
