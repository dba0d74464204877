#include "util/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>

#include "util/strings.h"

namespace llamactl::log {
namespace {

std::atomic<Level> g_level{Level::warn};

spdlog::logger& logger() {
  // stderr only: stdout belongs to the command's human or JSON output.
  static auto instance = [] {
    auto l = spdlog::stderr_logger_mt("llamactl");
    l->set_pattern("llamactl: %l: %v");
    l->set_level(spdlog::level::trace);
    return l;
  }();
  return *instance;
}

}  // namespace

void init(int verbosity) {
  if (verbosity < 0)
    g_level = Level::error;
  else if (verbosity == 0)
    g_level = Level::warn;
  else if (verbosity == 1)
    g_level = Level::info;
  else
    g_level = Level::debug;
}

bool enabled(Level level) {
  return level >= g_level.load();
}

void write(Level level, std::string_view raw) {
  // Messages carry process names, paths and nvidia-smi's words: no control
  // character reaches the terminal (strings.h, printable).
  const std::string message = printable(raw, true);
  switch (level) {
    case Level::debug:
      logger().debug("{}", message);
      break;
    case Level::info:
      logger().info("{}", message);
      break;
    case Level::warn:
      logger().warn("{}", message);
      break;
    case Level::error:
      logger().error("{}", message);
      break;
    case Level::off:
      break;
  }
  logger().flush();
}

}  // namespace llamactl::log
