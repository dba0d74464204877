// serve::body_model against nlohmann::json's parser: the scan must accept
// exactly the bodies nlohmann accepts as one object and find the same
// top-level "model" (the relay once used nlohmann's SAX parser for this).

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>
#include <vector>

#include "serve/body_model.h"
#include "util/json_depth.h"

namespace {

using llamactl::serve::body_model;
using llamactl::serve::BodyModel;
using llamactl::serve::ModelRename;

/// What nlohmann makes of a body.
BodyModel reference(const std::string& body) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  BodyModel r;
  if (j.is_discarded() || !j.is_object()) return r;
  r.is_object = true;
  if (const auto it = j.find("model"); it != j.end() && it->is_string()) r.model = it->get<std::string>();
  return r;
}

/// The body with bytes outside printable ASCII as \xNN, for a failure's message.
std::string printable(const std::string& body) {
  std::string out;
  for (const char ch : body.substr(0, 300)) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return body.size() > 300 ? out + "... (" + std::to_string(body.size()) + " bytes)" : out;
}

void expect_same(const std::string& body) {
  const BodyModel want = reference(body);
  const BodyModel got = body_model(body);
  EXPECT_EQ(got.is_object, want.is_object) << "body: " << printable(body);
  EXPECT_EQ(got.model, want.model) << "body: " << printable(body);
}

TEST(ServeBodyModel, AgreesWithNlohmannOnEdgeCases) {
  const std::vector<std::string> cases = {
      // keys and values with escapes
      R"({"mod\u0065l":"a"})", R"({"model":"t\u0069ny"})", R"({"model":"a\"b\\c\/d\b\f\n\r\t"})",
      R"({"model":"\ud83d\ude00"})", R"({"model":"\ud83d"})", R"({"model":"\ude00"})", R"({"model":"\ud83d\u0041"})",
      R"({"model":"\ud83d\"})", R"({"model":"\u00"})", R"({"model":"\u00g0"})", R"({"model":"\x41"})",
      R"({"model":"\u0000"})", "{\"model\":\"a\tb\"}", "{\"model\":\"a\nb\"}", std::string("{\"model\":\"a\0b\"}", 13),
      std::string("{\"model\":\"a\"}\0", 14), std::string("{\"model\":\"a\"}\0x", 15),
      std::string("{\"model\":\0\"a\"}", 14), std::string(" \0{}", 4), "{\"model\":\"a\x7f\"}",
      // UTF-8: valid, overlong, surrogates, beyond U+10FFFF, cut short
      "{\"model\":\"caf\xc3\xa9\"}", "{\"model\":\"\xe6\x97\xa5\"}", "{\"model\":\"\xf0\x9f\x98\x80\"}",
      "{\"model\":\"\xc0\xaf\"}", "{\"model\":\"\xc1\xbf\"}", "{\"model\":\"\xe0\x80\xaf\"}",
      "{\"model\":\"\xed\xa0\x80\"}", "{\"model\":\"\xf4\x90\x80\x80\"}", "{\"model\":\"\xf5\x80\x80\x80\"}",
      "{\"model\":\"\xc3\"}", "{\"model\":\"\xe6\x97\"}", "{\"model\":\"\x80\"}", "{\"model\":\"\xff\"}",
      "{\"a\":\"\xf0\x9f\x98\"}", "{\"a\":\"\xf0\x9f\x98", "{\"\xc3\xa9\":1}",
      // byte order marks
      "\xef\xbb\xbf{\"model\":\"a\"}", "\xef\xbb{\"model\":\"a\"}", "\xef{}", "\xef\xbb\xbf\xef\xbb\xbf{}",
      " \xef\xbb\xbf{}",
      // numbers
      R"({"n":0,"model":"a"})", R"({"n":-0})", R"({"n":01})", R"({"n":-})", R"({"n":1.})", R"({"n":.5})", R"({"n":1e})",
      R"({"n":1e+})", R"({"n":1E-2})", R"({"n":+1})", R"({"n":1.5e308})", R"({"n":1.8e308})", R"({"n":1e309})",
      R"({"n":-1e309})", R"({"n":1e-400})", R"({"n":0e999999999999})", R"({"n":0.0e99999})",
      R"({"n":123456789012345678901234567890})", R"({"n":18446744073709551616})", R"({"n":-9223372036854775809})",
      R"({"n":1e99999999999999999999999})", R"({"n":1e-99999999999999999999999})", R"({"n":0.000001e-310})",
      R"({"n":100000e303})", R"({"n":0.00001e313})", R"({"n":0x10})", R"({"n":NaN})", R"({"n":Infinity})",
      "{\"n\":" + std::string(308, '9') + "}", "{\"n\":" + std::string(309, '9') + "}",
      "{\"n\":1" + std::string(400, '0') + "e-100}", "{\"n\":0." + std::string(400, '0') + "1e400}",
      // literals and structure
      R"({"model":true})", R"({"model":tru})", R"({"model":nul})", R"({"model":falsey})", R"({"a":[],"b":{}})",
      R"({"a":[1,]})", R"({"a":[,1]})", R"({"a":{"b":1,}})", R"({,"a":1})", R"({"a" 1})", R"({"a"::1})", R"({1:1})",
      R"({'model':'a'})", R"({"a":1}})", R"({"a":[1}})", R"({"a":{]})", R"({"model":"a"}[])", "{\"model\":\"a\"}\f",
      "{\"model\":\"a\"}\v", "\t\r\n {\"model\"\t:\r\"a\"\n}\t\r\n ", "{} ", "{}\n{}", R"({"model":"a","model":null})",
      R"({"model":null,"model":"b"})", R"({"model":"a","x":{"model":"b"}})", R"({"x":[{"model":"b"}],"model":"a"})",
      R"({"model":[]})", R"({"model":{}})", R"({"model":["a"],"y":1})", R"({"a":"model","model":"x"})",
      // nesting up to the bound (kMaxJsonDepth levels, the top-level object included)
      "{\"a\":" + std::string(255, '[') + std::string(255, ']') + ",\"model\":\"deep\"}",
      "{\"a\":" + std::string(255, '[') + std::string(254, ']') + ",\"model\":\"deep\"}"};
  for (const auto& c : cases) expect_same(c);
}

// Deeper than kMaxJsonDepth: refused, and said so, whatever nlohmann would
// make of it (its dump() and copies recurse once per level: 85,000 levels
// ended serve with SIGSEGV). json_too_deep draws the same line.
TEST(ServeBodyModel, RefusesNestingDeeperThanTheBound) {
  using llamactl::json_too_deep;
  using llamactl::kMaxJsonDepth;
  const auto nested = [](int levels) {
    return "{\"model\":\"deep\",\"a\":" + std::string(static_cast<size_t>(levels - 1), '[') +
           std::string(static_cast<size_t>(levels - 1), ']') + "}";
  };
  const std::string at_bound = nested(kMaxJsonDepth);
  EXPECT_TRUE(body_model(at_bound).is_object);
  EXPECT_FALSE(body_model(at_bound).too_deep);
  EXPECT_FALSE(json_too_deep(at_bound));
  const std::string over = nested(kMaxJsonDepth + 1);
  EXPECT_FALSE(body_model(over).is_object);
  EXPECT_TRUE(body_model(over).too_deep);
  EXPECT_TRUE(json_too_deep(over));
  // Objects in objects, as `format` or tool arguments nest.
  std::string objects = "{\"model\":\"m\"";
  for (int i = 1; i < kMaxJsonDepth + 1; ++i) objects += ",\"k\":{\"x\":1";
  objects += std::string(static_cast<size_t>(kMaxJsonDepth), '}');
  EXPECT_TRUE(body_model(objects).too_deep);
  EXPECT_TRUE(json_too_deep(objects));
  // The 100,000-deep body of the report; cut short, too (no closing brackets).
  const std::string huge = "{\"model\":\"x\",\"think\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_TRUE(body_model(huge).too_deep);
  EXPECT_TRUE(json_too_deep(huge));
  EXPECT_TRUE(body_model("{\"a\":" + std::string(100000, '[')).too_deep);
  // Brackets in strings do not count; escaped quotes do not end a string.
  const std::string in_strings = "{\"model\":\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"}";
  EXPECT_FALSE(json_too_deep(in_strings));
  EXPECT_TRUE(body_model(in_strings).is_object);
  EXPECT_FALSE(json_too_deep("\"unterminated [[[["));
  EXPECT_FALSE(json_too_deep("]]]]}}}}[[[]]]"));  // closers first never go below zero
}

/// A random JSON value; `model_chance` of a top-level "model" key.
void random_value(std::mt19937& rng, std::string& out, int depth) {
  static const std::vector<std::string> strings = {"\"\"",
                                                   "\"tiny\"",
                                                   "\"qwen:7b\"",
                                                   "\"a\\\"b\"",
                                                   "\"\\u00e9t\\u00e9\"",
                                                   "\"\\ud83d\\ude00\"",
                                                   "\"caf\xc3\xa9\"",
                                                   "\"\xe6\x97\xa5\xe6\x9c\xac\"",
                                                   "\"line\\nbreak\"",
                                                   "\"model\"",
                                                   "\"\\/\""};
  static const std::vector<std::string> scalars = {
      "0", "-1", "3.25", "1e5", "-2.5E-3", "true", "false", "null", "12345678901234567890", "1.7976931348623157e308"};
  std::uniform_int_distribution<int> pick(0, depth > 4 ? 1 : 3);
  switch (pick(rng)) {
    case 0:
      out += strings[std::uniform_int_distribution<size_t>(0, strings.size() - 1)(rng)];
      return;
    case 1:
      out += scalars[std::uniform_int_distribution<size_t>(0, scalars.size() - 1)(rng)];
      return;
    case 2: {
      out += '[';
      const int n = std::uniform_int_distribution<int>(0, 4)(rng);
      for (int i = 0; i < n; ++i) {
        if (i) out += std::uniform_int_distribution<int>(0, 1)(rng) ? "," : " , ";
        random_value(rng, out, depth + 1);
      }
      out += ']';
      return;
    }
    default: {
      out += '{';
      const int n = std::uniform_int_distribution<int>(0, 4)(rng);
      for (int i = 0; i < n; ++i) {
        if (i) out += ',';
        out += std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? "\"model\"" : "\"k" + std::to_string(i) + "\"";
        out += std::uniform_int_distribution<int>(0, 1)(rng) ? ":" : " :\n";
        random_value(rng, out, depth + 1);
      }
      out += '}';
    }
  }
}

TEST(ServeBodyModel, AgreesWithNlohmannOnRandomAndMutatedBodies) {
  std::mt19937 rng(20261124);  // fixed: a failure repeats
  const std::string alphabet =
      std::string("{}[]\",:\\/ u0eE+-.19tfnal\x80\xc3\xa9\xed\xf0\xf4\x90\xff\t\n\r\x01\x1f") + std::string(1, '\0');
  int objects = 0, with_model = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body = "{";
    const int n = std::uniform_int_distribution<int>(0, 5)(rng);
    for (int k = 0; k < n; ++k) {
      if (k) body += ',';
      body += std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? "\"model\":" : "\"f" + std::to_string(k) + "\":";
      random_value(rng, body, 1);
    }
    body += '}';
    expect_same(body);
    const BodyModel valid = reference(body);
    objects += valid.is_object;
    with_model += !valid.model.empty();
    // Then one to three random edits of it.
    for (int m = std::uniform_int_distribution<int>(1, 3)(rng); m > 0 && !body.empty(); --m) {
      const size_t at = std::uniform_int_distribution<size_t>(0, body.size() - 1)(rng);
      const char c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
      switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
        case 0:
          body[at] = c;
          break;
        case 1:
          body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 2:
          body.erase(at, 1);
          break;
        default:
          body.resize(at);
      }
    }
    expect_same(body);
    if (::testing::Test::HasFailure()) break;  // one body is enough to read
  }
  // The generator did make what it is meant to make.
  EXPECT_EQ(objects, 20000);
  EXPECT_GT(with_model, 1500);
}

}  // namespace

// ModelRename: llama-server's replies name its alias; serve echoes the
// request's name, on the bytes as they stream.

TEST(ModelRename, SameNameIsInactiveAndPassesBytesThrough) {
  ModelRename r("tiny", "tiny");
  EXPECT_FALSE(r.active());
  EXPECT_EQ(r.feed(R"({"model":"tiny"})"), R"({"model":"tiny"})");
  EXPECT_EQ(r.finish(), "");
}

TEST(ModelRename, EveryModelKeyIsRenamedInOnePiece) {
  ModelRename r("tiny", "small:latest");
  EXPECT_EQ(r.feed(R"({"id":"x","model":"tiny","response":{"model":"tiny"}})"),
            R"({"id":"x","model":"small:latest","response":{"model":"small:latest"}})");
  EXPECT_EQ(r.finish(), "");
}

TEST(ModelRename, TextThatMentionsTheNameIsLeftAlone) {
  ModelRename r("tiny", "small");
  // Inside a JSON string a quote is escaped, so the pattern cannot match there.
  const std::string body = R"({"content":"the \"model\":\"tiny\" key","model":"tinyx","x":"model","y":"tiny"})";
  EXPECT_EQ(r.feed(body) + r.finish(), body);
}

TEST(ModelRename, APatternSplitAtEveryPointIsStillRenamed) {
  const std::string body = "data: {\"model\":\"tiny\",\"choices\":[]}\n\ndata: {\"model\":\"tiny\"}\n\n";
  const std::string want = "data: {\"model\":\"q\\\"x\",\"choices\":[]}\n\ndata: {\"model\":\"q\\\"x\"}\n\n";
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    ModelRename r("tiny", "q\"x");  // the request's name is quoted as JSON
    std::string out = r.feed(std::string_view(body).substr(0, cut));
    out += r.feed(std::string_view(body).substr(cut));
    out += r.finish();
    EXPECT_EQ(out, want) << "cut at " << cut;
  }
  // One byte at a time.
  ModelRename r("tiny", "q\"x");
  std::string out;
  for (char c : body) out += r.feed(std::string_view(&c, 1));
  EXPECT_EQ(out + r.finish(), want);
}

TEST(ModelRename, AHeldBackPrefixThatNeverCompletesComesOutAtTheEnd) {
  ModelRename r("tiny", "small");
  EXPECT_EQ(r.feed(R"({"a":1,"model":"ti)"), R"({"a":1,)");
  EXPECT_EQ(r.finish(), R"("model":"ti)");
}
