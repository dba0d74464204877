#pragma once
// Small text helpers shared by the parsers. Pure, no allocation surprises.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llamactl {

std::string_view trim(std::string_view s);
std::vector<std::string_view> split(std::string_view s, char sep);
/// Lines of a text, with "\r\n" and "\n" both accepted; no trailing empty line.
std::vector<std::string_view> split_lines(std::string_view text);
bool iequals(std::string_view a, std::string_view b);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);
std::string to_lower(std::string_view s);
std::string join(const std::vector<std::string>& parts, std::string_view sep);

/// Whole-string decimal integer (surrounding spaces allowed); nullopt otherwise.
std::optional<int64_t> parse_int(std::string_view s);
/// Whole-string decimal number; nullopt otherwise.
std::optional<double> parse_double(std::string_view s);

/// True for nvidia-smi's "no value" tokens: "[N/A]", "[Not Supported]",
/// any "[...]", "N/A", "ERR!", "-" and the empty string.
bool is_unknown_token(std::string_view s);

/// "4111", "4111 MiB", "4111MiB" -> 4111; "2 GiB" -> 2048; unknown tokens -> nullopt.
std::optional<int64_t> parse_mib(std::string_view s);
/// "37", "37 %" -> 37; unknown tokens -> nullopt.
std::optional<int> parse_percent(std::string_view s);

/// Last path component, accepting both '/' and '\\'.
std::string_view basename_any(std::string_view path);

/// Edits (insert, delete, replace, swap of two neighbours) that turn `a`
/// into `b`, case-insensitively: "qwne" -> "qwen" is 1.
size_t edit_distance(std::string_view a, std::string_view b);
/// The candidate nearest to a mistyped `word`, for "did you mean": nullopt
/// when none is close enough (at most one edit per three characters, at
/// least one). On a tie the earlier candidate wins, so callers list the
/// likelier names first.
std::optional<std::string> nearest(std::string_view word, const std::vector<std::string>& candidates);

/// `s` with every control character (below 0x20, and 0x7f) shown as '?':
/// names come from nvidia-smi and other users' processes, and one called
/// "\x1b]0;pwned\x07" would drive the terminal of whoever prints it.
/// `keep_lines`: newlines and tabs stay (a message with a log tail).
std::string printable(std::string_view s, bool keep_lines = false);

}  // namespace llamactl
