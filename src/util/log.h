#pragma once
// Diagnostics to stderr through spdlog. Only log.cpp includes spdlog, so
// the header-only library is compiled once.

#include <fmt/format.h>

#include <string_view>
#include <utility>

namespace llamactl::log {

enum class Level { debug, info, warn, error, off };

/// verbosity: -1 = quiet (errors only), 0 = warnings, 1 = info, 2+ = debug.
void init(int verbosity);
void write(Level level, std::string_view message);
bool enabled(Level level);

template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace llamactl::log
