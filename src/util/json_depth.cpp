#include "util/json_depth.h"

namespace llamactl {

bool json_too_deep(std::string_view text, int limit) {
  int depth = 0;
  const char* p = text.data();
  const char* const end = p + text.size();
  while (p != end) {
    const char c = *p++;
    if (c == '"') {
      // Skip the string: to the next quote not escaped by a backslash.
      while (p != end && *p != '"') p += (*p == '\\' && end - p > 1) ? 2 : 1;
      if (p == end) return false;
      ++p;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace llamactl
