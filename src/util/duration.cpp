#include "util/duration.h"

#include <cmath>
#include <string>

#include "util/strings.h"

namespace llamactl {

Result<int64_t> parse_duration_ms(std::string_view text) {
  const std::string_view s = trim(text);
  const auto bad = [&] {
    return make_error(ErrorKind::parse, "invalid duration '" + std::string(s) + "' (use e.g. 300, 90s, 5m, 1h30m, -1)");
  };
  if (s.empty()) return bad();
  if (const auto n = parse_double(s)) {  // bare number: seconds, as Ollama
    if (*n < 0) return kNever;
    if (*n > 1e12) return bad();
    return static_cast<int64_t>(std::llround(*n * 1000.0));
  }
  bool negative = false;
  std::string_view rest = s;
  if (rest.front() == '-') {
    negative = true;
    rest.remove_prefix(1);
  }
  double total_ms = 0;
  bool any = false;
  while (!rest.empty()) {
    size_t i = 0;
    while (i < rest.size() && ((rest[i] >= '0' && rest[i] <= '9') || rest[i] == '.')) ++i;
    if (i == 0) return bad();
    const auto num = parse_double(rest.substr(0, i));
    if (!num) return bad();
    rest.remove_prefix(i);
    double unit_ms = 0;
    if (starts_with(rest, "ms")) {
      unit_ms = 1;
      rest.remove_prefix(2);
    } else if (starts_with(rest, "h")) {
      unit_ms = 3600e3;
      rest.remove_prefix(1);
    } else if (starts_with(rest, "m")) {
      unit_ms = 60e3;
      rest.remove_prefix(1);
    } else if (starts_with(rest, "s")) {
      unit_ms = 1e3;
      rest.remove_prefix(1);
    } else {
      return bad();
    }
    total_ms += *num * unit_ms;
    any = true;
  }
  if (!any || total_ms > 1e15) return bad();
  if (negative) return total_ms == 0 ? int64_t{0} : kNever;
  return static_cast<int64_t>(std::llround(total_ms));
}

std::string format_duration_ms(int64_t ms) {
  if (ms < 0) return "never";
  int64_t s = ms / 1000;
  if (s == 0) return ms == 0 ? "0s" : std::to_string(ms) + "ms";
  std::string out;
  if (s >= 3600) {
    out += std::to_string(s / 3600) + "h";
    s %= 3600;
  }
  if (s >= 60) {
    out += std::to_string(s / 60) + "m";
    s %= 60;
  }
  if (s > 0) out += std::to_string(s) + "s";
  return out;
}

}  // namespace llamactl
