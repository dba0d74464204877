#pragma once
// Wall-clock time as milliseconds since the Unix epoch, and its ISO form.

#include <cstdint>
#include <ctime>
#include <string>

namespace llamactl {

int64_t now_ms();
/// The UTC calendar time of `t` (gmtime_r, gmtime_s on Windows).
std::tm utc_tm(std::time_t t);
/// 1764064800000 -> "2025-11-25T10:00:00Z" (UTC, second precision).
std::string iso8601(int64_t epoch_ms);
/// 75 -> "1m15s", 3700 -> "1h1m", 90000 -> "1d1h".
std::string human_duration_s(int64_t seconds);

}  // namespace llamactl
