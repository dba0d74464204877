#pragma once
// Starting the programs a test or benchmark runs, on POSIX (not built for Windows).

#include <cstdint>
#include <string>
#include <vector>

namespace llamactl::testing {

struct SpawnOptions {
  std::string log = "/dev/null";  ///< where stdout and stderr go
  bool append = false;            ///< add to `log` rather than truncate it
  /// NAME=value for the child; nullptr: this process's environment.
  const std::vector<std::string>* env = nullptr;
};

/// argv[0] (looked up on PATH when it has no slash) with stdin from /dev/null
/// and stdout and stderr to `options.log`; its pid, or -1 when it could not be started.
int64_t spawn_logged(const std::vector<std::string>& argv, const SpawnOptions& options = {});

}  // namespace llamactl::testing
