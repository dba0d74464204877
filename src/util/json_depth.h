#pragma once
// JSON from outside: the one bound on how deep a text that llamactl reads may
// nest, and text out that is always valid UTF-8.
//
// nlohmann::json parses iteratively, but dump(), copies and comparisons
// recurse once per level: a body nested 85,000 deep ended serve with
// SIGSEGV in dump() (and a deep `tools` array does the same to
// llama-server). Every JSON text from outside (request bodies, llama-server's
// replies, a model's tool-call arguments, state and config files) is checked
// against this bound before it is parsed. No real request comes near it.

#include <string>
#include <string_view>

namespace llamactl {

inline constexpr int kMaxJsonDepth = 256;

/// Whether the arrays and objects of `text` nest deeper than `limit`.
/// Brackets inside strings do not count; `text` need not be valid JSON (the
/// parser judges that), so an unterminated string simply ends the scan.
bool json_too_deep(std::string_view text, int limit = kMaxJsonDepth);

/// The message for a text refused by json_too_deep, naming the limit.
static_assert(kMaxJsonDepth == 256, "kJsonTooDeepMessage names the limit");
inline constexpr std::string_view kJsonTooDeepMessage =
    "JSON nested deeper than 256 levels (arrays and objects); llamactl refuses it";

/// nlohmann's J::parse(text, nullptr, false), but a discarded value for a
/// text that nests deeper than kMaxJsonDepth.
template <class J>
J parse_json_bounded(std::string_view text) {
  if (json_too_deep(text)) return J(J::value_t::discarded);
  return J::parse(text, nullptr, false);
}

/// j.dump(indent) as text that is always valid UTF-8: a string that is not
/// (a prefix of llama-server's output cut mid-character, a process name, a
/// damaged file's bytes in a message) gets U+FFFD where plain dump() would
/// throw. Every JSON that llamactl writes out goes through this.
template <class J>
std::string dump_utf8(const J& j, int indent = -1) {
  return j.dump(indent, ' ', false, J::error_handler_t::replace);
}

}  // namespace llamactl
