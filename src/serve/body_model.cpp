#include "serve/body_model.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "util/json_depth.h"

namespace llamactl::serve {

// A validating scan of one JSON text (RFC 8259, as nlohmann::json accepts
// it) that keeps only the top-level "model". It replaced nlohmann's SAX
// parser, which cost about 8,000 instructions for an 80-byte chat request
// (a fifth of serve's user-space CPU per relayed request): its lexer copies
// every string a byte at a time and converts every number. Here a string
// is decoded only when it is the model or a top-level key with an escape,
// and numbers are only checked. What it accepts and refuses is checked
// against nlohmann's parser in the unit tests (a differential test).

namespace {

/// Bytes that stand for themselves in a JSON string: printable ASCII but the quote and the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

class Scan {
 public:
  explicit Scan(std::string_view text)
      : p_(reinterpret_cast<const unsigned char*>(text.data())), end_(p_ + text.size()) {}

  BodyModel run() {
    // A UTF-8 byte order mark is skipped (nlohmann does too).
    if (end_ - p_ >= 1 && *p_ == 0xEF) {
      if (end_ - p_ < 3 || p_[1] != 0xBB || p_[2] != 0xBF) return {};
      p_ += 3;
    }
    ws();
    if (p_ == end_ || *p_ != '{') return {};
    BodyModel out;
    if (!value(out)) {
      BodyModel refused;
      refused.too_deep = out.too_deep;
      return refused;
    }
    ws();
    // Nothing may follow, but a NUL byte ends the text (for nlohmann, and so
    // for llama-server, which reads bodies with it).
    if (p_ != end_ && *p_ != 0) return {};
    out.is_object = true;
    return out;
  }

 private:
  /// The whole value at p_ (the top-level object), iteratively: a body may
  /// nest deeper than the stack would like.
  bool value(BodyModel& out) {
    std::string open;  // the containers open now: '{' or '['
    bool at_model = false;
    std::string key;
    for (;;) {
      ws();
      if (p_ == end_) return false;
      const bool model_value = at_model && open.size() == 1;
      at_model = false;
      if (*p_ == '{' || *p_ == '[') {
        const unsigned char c = *p_++;
        if (model_value) out.model.clear();
        open.push_back(static_cast<char>(c));
        if (open.size() > static_cast<size_t>(kMaxJsonDepth)) {
          out.too_deep = true;
          return false;
        }
        ws();
        if (p_ == end_) return false;
        if (*p_ != static_cast<unsigned char>(c == '{' ? '}' : ']')) {
          if (c == '{' && !member_key(open.size() == 1, key, at_model)) return false;
          continue;  // to the first member's value or the first element
        }
        ++p_;  // empty: closed at once
        open.pop_back();
      } else if (!scalar(model_value ? &out.model : nullptr)) {
        return false;
      }
      switch (after_value(open, key, at_model)) {
        case Next::value:
          continue;
        case Next::done:
          return true;
        case Next::bad:
          return false;
      }
    }
  }

  /// A string, true, false, null or a number. `model`: the top-level
  /// "model"'s value, which holds the string read, or nothing.
  bool scalar(std::string* model) {
    if (model) model->clear();
    switch (*p_) {
      case '"':
        return string(model);
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  enum class Next { value, done, bad };

  /// After a value: a separator (and the next member's key), or the end of
  /// one or more containers.
  Next after_value(std::string& open, std::string& key, bool& at_model) {
    for (;;) {
      if (open.empty()) return Next::done;
      ws();
      if (p_ == end_) return Next::bad;
      const char c = static_cast<char>(*p_++);
      if (c == ',') {
        if (open.back() == '{') {
          ws();
          if (!member_key(open.size() == 1, key, at_model)) return Next::bad;
        }
        return Next::value;
      }
      if (c != (open.back() == '{' ? '}' : ']')) return Next::bad;
      open.pop_back();
    }
  }

  /// A member's key and its colon; `at_model` is set when the key of a
  /// top-level member is "model".
  bool member_key(bool top, std::string& key, bool& at_model) {
    if (p_ == end_ || *p_ != '"') return false;
    const unsigned char* start = p_;
    if (!string(nullptr)) return false;
    if (top) {
      // Compared as it stands, decoded only when it has an escape.
      const std::string_view raw(reinterpret_cast<const char*>(start + 1), static_cast<size_t>(p_ - start - 2));
      if (raw.find('\\') == std::string_view::npos) {
        at_model = raw == "model";
      } else {
        const unsigned char* after = p_;
        p_ = start;
        key.clear();
        string(&key);
        p_ = after;
        at_model = key == "model";
      }
    }
    ws();
    if (p_ == end_ || *p_ != ':') return false;
    ++p_;
    return true;
  }

  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        std::string_view(reinterpret_cast<const char*>(p_), word.size()) != word)
      return false;
    p_ += word.size();
    return true;
  }

  /// A string at its opening quote; its text is appended to `out` when given.
  bool string(std::string* out) {
    ++p_;
    const unsigned char* run = p_;  // bytes not yet appended
    for (;;) {
      while (p_ != end_ && kPlain[*p_]) ++p_;
      if (p_ == end_) return false;
      const unsigned char c = *p_;
      if (c == '"') {
        if (out) out->append(reinterpret_cast<const char*>(run), static_cast<size_t>(p_ - run));
        ++p_;
        return true;
      }
      if (c == '\\') {
        if (out) out->append(reinterpret_cast<const char*>(run), static_cast<size_t>(p_ - run));
        ++p_;
        if (!escape(out)) return false;
        run = p_;
        continue;
      }
      if (c < 0x20) return false;  // control characters must be escaped
      if (!utf8()) return false;
    }
  }

  /// One UTF-8 sequence of two to four bytes at p_ (RFC 3629: no overlong
  /// forms, no surrogates, nothing above U+10FFFF).
  bool utf8() {
    const unsigned char c = *p_;
    int more = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (end_ - p_ <= more) return false;
    if (p_[1] < lo || p_[1] > hi) return false;
    for (int i = 2; i <= more; ++i)
      if (p_[i] < 0x80 || p_[i] > 0xBF) return false;
    p_ += more + 1;
    return true;
  }

  /// The escape after a backslash; its character is appended to `out` when given.
  bool escape(std::string* out) {
    if (p_ == end_) return false;
    const unsigned char c = *p_++;
    char plain = 0;
    switch (c) {
      case '"':
      case '\\':
      case '/':
        plain = static_cast<char>(c);
        break;
      case 'b':
        plain = '\b';
        break;
      case 'f':
        plain = '\f';
        break;
      case 'n':
        plain = '\n';
        break;
      case 'r':
        plain = '\r';
        break;
      case 't':
        plain = '\t';
        break;
      case 'u':
        return unicode_escape(out);
      default:
        return false;
    }
    if (out) out->push_back(plain);
    return true;
  }

  /// `\uXXXX` after the `\u`, a surrogate pair as one code point.
  bool unicode_escape(std::string* out) {
    uint32_t cp = 0;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a low surrogate first
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t low = 0;
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
      p_ += 2;
      if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (!out) return true;
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return true;
  }

  bool hex4(uint32_t& v) {
    if (end_ - p_ < 4) return false;
    for (int i = 0; i < 4; ++i) {
      const unsigned char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return false;
    }
    return true;
  }

  static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

  /// A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, refused (as
  /// nlohmann refuses it) when its value is beyond a double's range.
  bool number() {
    const unsigned char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    if (p_ == end_ || !digit(*p_)) return false;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    const auto int_digits = p_ - start;
    bool plain = true;  // no fraction, no exponent
    if (p_ != end_ && *p_ == '.') {
      plain = false;
      ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      plain = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !digit(*p_)) return false;
      while (p_ != end_ && digit(*p_)) ++p_;
    }
    // Up to 308 digits and no exponent, it fits a double; else ask from_chars.
    if (plain && int_digits <= 308) return true;
    double v = 0;
    const auto r = std::from_chars(reinterpret_cast<const char*>(start), reinterpret_cast<const char*>(p_), v);
    if (r.ec != std::errc::result_out_of_range) return r.ec == std::errc();
    return !overflows(start, p_);  // out of range: too small is fine (it is 0), too large is not
  }

  /// For a number out of a double's range: true when it is too large, not too small.
  static bool overflows(const unsigned char* p, const unsigned char* end) {
    if (*p == '-') ++p;
    // The decimal exponent of the first significant digit.
    int64_t lead = 0;
    bool seen = false;
    for (; p != end && digit(*p); ++p) {
      if (*p != '0') seen = true;
      if (seen) ++lead;
    }
    if (p != end && *p == '.') {
      for (++p; p != end && digit(*p); ++p) {
        if (seen) continue;
        --lead;
        if (*p != '0') seen = true;
      }
    }
    if (!seen) return false;  // zero
    int64_t exp = 0;
    if (p != end && (*p == 'e' || *p == 'E')) {
      ++p;
      const bool negative = p != end && *p == '-';
      if (p != end && (*p == '+' || *p == '-')) ++p;
      for (; p != end && digit(*p); ++p) exp = std::min<int64_t>(exp * 10 + (*p - '0'), int64_t{1} << 40);
      if (negative) exp = -exp;
    }
    return lead + exp > 0;
  }

  const unsigned char* p_;
  const unsigned char* end_;
};

}  // namespace

BodyModel body_model(std::string_view body) {
  return Scan(body).run();
}

ModelRename::ModelRename(std::string_view served, std::string_view requested) {
  if (served == requested) return;
  from_ = "\"model\":" + dump_utf8(nlohmann::json(std::string(served)));
  to_ = "\"model\":" + dump_utf8(nlohmann::json(std::string(requested)));
}

std::string ModelRename::feed(std::string_view piece) {
  if (!active()) return std::string(piece);
  std::string data = std::move(held_);
  held_.clear();
  data.append(piece);
  std::string out;
  out.reserve(data.size() + to_.size());
  size_t pos = 0;
  for (size_t hit; (hit = data.find(from_, pos)) != std::string::npos; pos = hit + from_.size())
    out.append(data, pos, hit - pos).append(to_);
  // The longest end of what is left that could begin a match waits for more.
  size_t keep = std::min(from_.size() - 1, data.size() - pos);
  while (keep > 0 && data.compare(data.size() - keep, keep, from_, 0, keep) != 0) --keep;
  out.append(data, pos, data.size() - pos - keep);
  held_ = data.substr(data.size() - keep);
  return out;
}

std::string ModelRename::finish() {
  return std::exchange(held_, {});
}

}  // namespace llamactl::serve
