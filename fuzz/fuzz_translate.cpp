// libFuzzer target: the request path that translates. A request body comes
// from any client; llama-server's stream comes from a process that a model's
// output drives. No input may crash serve: the depth bound, the OpenAI body
// scan, Ollama's chat/generate/embed translation and the re-serialisation of
// what it built (dump() recurses; serve's dump_utf8 never throws), and the reply
// side (the SSE translator, error bodies).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "serve/body_model.h"
#include "serve/ollama.h"
#include "util/json_depth.h"

namespace ol = llamactl::serve::ollama;
using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // OpenAI routes: serve reads only the model and relays the bytes.
  const auto openai = llamactl::serve::body_model(text);
  if (openai.too_deep && !llamactl::json_too_deep(text)) __builtin_trap();  // one bound, one answer

  // The rename of a reply's model gives the same bytes however the reply is cut.
  {
    llamactl::serve::ModelRename one("m", "renamed:tag");
    const std::string whole = one.feed(text) + one.finish();
    llamactl::serve::ModelRename two("m", "renamed:tag");
    const size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    if (two.feed(text.substr(0, cut)) + two.feed(text.substr(cut)) + two.finish() != whole) __builtin_trap();
  }

  // The reply side sees the same bytes as llama-server's stream or reply.
  for (const auto kind : {ol::Kind::chat, ol::Kind::generate}) {
    ol::Translator t(kind, ol::Upstream::chat, "m", true, {});
    (void)t.feed(text, 1);
    (void)t.finish(2, 3);
    ol::Translator whole(kind, ol::Upstream::completion, "m", false, {});
    (void)whole.feed(text, 1);
    (void)whole.finish(2, 3, "cut");
  }
  (void)ol::upstream_error_message(text);
  (void)ol::embed_overflow_limit(400, text, 512, 512);

  // Ollama routes: what serve does with a body before it goes upstream.
  if (llamactl::json_too_deep(text)) return 0;  // serve answers 400
  const json body = json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return 0;
  (void)ol::requested_model(body);
  for (const auto kind : {ol::Kind::chat, ol::Kind::generate}) {
    ol::Request r;
    if (!ol::translate(kind, body, r)) (void)llamactl::dump_utf8(r.upstream_body);
  }
  for (const bool legacy : {false, true}) {
    ol::EmbedRequest e;
    if (!ol::translate_embed(body, legacy, e)) (void)llamactl::dump_utf8(e.upstream_body);
  }
  return 0;
}
