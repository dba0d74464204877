#pragma once
// Ollama-style keep-alive durations: "5m", "1h30m", "90s", "300" (seconds),
// "0" (right away), negative (never).

#include <cstdint>
#include <string_view>

#include "util/result.h"

namespace llamactl {

inline constexpr int64_t kNever = -1;

/// Milliseconds, or kNever for any negative value. Error (kind parse) for
/// anything else than a number with optional h/m/s/ms units.
Result<int64_t> parse_duration_ms(std::string_view text);

/// 300000 -> "5m", 5400000 -> "1h30m", kNever -> "never".
std::string format_duration_ms(int64_t ms);

}  // namespace llamactl
