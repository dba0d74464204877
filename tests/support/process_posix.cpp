#include "support/process_posix.h"

#include <fcntl.h>
#include <spawn.h>

extern char** environ;

namespace llamactl::testing {

int64_t spawn_logged(const std::vector<std::string>& argv, const SpawnOptions& options) {
  std::vector<char*> a, e;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  if (options.env) {
    for (const auto& s : *options.env) e.push_back(const_cast<char*>(s.c_str()));
    e.push_back(nullptr);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, options.log.c_str(),
                                   O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC), 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), options.env ? e.data() : environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

}  // namespace llamactl::testing
