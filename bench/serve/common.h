#pragma once
// What the parts of bench_serve share: the clock, HTTP head parsing, and
// the statistics its tables print.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

namespace bench_serve {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Value of header `name` (lower-case, without colon) in a lower-cased header block; "" if none.
inline std::string header_value(const std::string& head_lower, const std::string& name) {
  const size_t pos = head_lower.find("\r\n" + name + ":");
  if (pos == std::string::npos) return "";
  size_t v = pos + 2 + name.size() + 1;
  const size_t eol = head_lower.find("\r\n", v);
  while (v < head_lower.size() && head_lower[v] == ' ') ++v;
  return head_lower.substr(v, eol == std::string::npos || eol < v ? std::string::npos : eol - v);
}

inline double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size()))) - 1;
  return sorted[std::min(idx, sorted.size() - 1)];
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace bench_serve
