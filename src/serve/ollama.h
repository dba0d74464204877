#pragma once
// Ollama's API on top of llama-server's OpenAI endpoints: pure functions on
// JSON, no sockets and no clocks of their own (times are passed in), tested
// by table. The mapping follows Ollama itself, which runs llama-server as
// its runner (shared/reference/ollama-api.md section 9): options become
// llama-server sampling fields, `think` becomes chat_template_kwargs,
// `format` becomes response_format, images become data-URI image parts,
// tool-call arguments are strings upstream and objects here, and the final
// statistics come from llama-server's `timings` (ms) as nanoseconds.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace llamactl::serve::ollama {

using nlohmann::json;
using ojson = nlohmann::ordered_json;  // replies keep Ollama's field order

/// An answer that is not a translation: HTTP status and Ollama's message.
struct Failure {
  int status = 400;
  std::string message;
};

/// keep_alive in all of Ollama's forms: seconds (float allowed), a Go
/// duration string ("5m", "1h30m", "300ms", "0s"), negative = forever
/// (returned as -1). Absent or null: nullopt. A bare numeric string ("300")
/// is an error, as in Ollama ("time: missing unit in duration").
struct KeepAlive {
  std::optional<int64_t> ms;
  std::optional<Failure> error;
};
KeepAlive parse_keep_alive(const json* value);

/// Go's time.ParseDuration on a string, in milliseconds (negative allowed);
/// nullopt with the message Go gives when it does not parse.
std::optional<int64_t> parse_go_duration_ms(std::string_view text, std::string* error);

enum class Kind { chat, generate };
/// What llama-server route a translated request goes to, and how its stream reads.
enum class Upstream { chat, completion, infill };

/// A chat or generate request, validated and translated.
// nlohmann::json members: their move may allocate (clang-tidy cannot see it does not throw here).
struct Request {  // NOLINT(bugprone-exception-escape)
  Kind kind = Kind::chat;
  std::string model;  // as sent (echoed in every reply)
  bool stream = true;
  std::optional<int64_t> keep_alive_ms;
  bool load_only = false;  // empty prompt / messages: load (or unload) and answer at once
  bool unload = false;     // load_only with keep_alive 0
  std::optional<int64_t> num_ctx;
  bool wants_thinking = false;  // `think` asked for it (checked against the model)
  bool wants_context = false;   // generate, not raw: the final object carries `context`
  Upstream upstream = Upstream::chat;
  std::string upstream_path;         // "/v1/chat/completions", "/v1/completions", "/infill"
  json upstream_body;                // always a streaming request
  std::vector<std::string> ignored;  // option keys that were ignored (debug log)
};

/// The model name a request names (`model`, else `name`); empty when neither.
std::string requested_model(const json& body);

/// Validates and translates POST /api/chat or /api/generate. `body` must be a
/// JSON object. Failure: 400 with Ollama's message.
std::optional<Failure> translate(Kind kind, const json& body, Request& out);

/// The `options` object mapped onto llama-server fields of `out` (sampling
/// keys); num_ctx returned through `num_ctx`; unknown and load-time keys
/// listed in `ignored`. Failure on a known key with the wrong type.
std::optional<Failure> map_options(const json& options, json& out, std::optional<int64_t>& num_ctx,
                                   std::vector<std::string>& ignored);

/// The MIME type of base64 image data by its magic bytes (png, jpeg, gif,
/// webp, bmp); "image/png" when it cannot tell.
std::string image_mime(std::string_view base64);

/// RFC 3339 UTC with the fraction Go prints (trailing zeros trimmed), e.g.
/// "2024-09-12T21:17:29.110811Z".
std::string created_at(int64_t epoch_ns);
/// RFC 3339 in UTC for expires_at/modified_at, e.g. "2024-06-04T14:38:31.83753Z".
std::string rfc3339_ms(int64_t epoch_ms);

/// Turns llama-server's SSE stream (or the native /infill stream) into
/// Ollama's NDJSON lines, or into the one object of `stream:false`. Feed it
/// body bytes as they arrive; each call returns what to send now.
class Translator {
 public:
  struct Times {
    int64_t start_steady_ns = 0;  // when the request arrived
    int64_t load_ns = 0;          // time spent waiting for the model (load_duration)
  };
  Translator(Kind kind, Upstream upstream, std::string model, bool stream, Times times);

  /// Body bytes from llama-server; returns NDJSON lines to write (stream
  /// mode), usually one line per token, possibly empty.
  std::string feed(std::string_view bytes, int64_t wall_ns);
  /// llama-server ended the response. `broken`: it ended without finishing
  /// (connection lost, error): the reply ends with an {"error":...} line (or,
  /// for stream:false, is an error object). Returns the last text to write.
  std::string finish(int64_t wall_ns, int64_t steady_ns, const std::string& broken = {});
  /// stream:false failed or llama-server reported an error: the status to
  /// answer with (0 when the reply is a normal 200).
  int error_status() const { return error_status_; }
  bool finished() const { return finished_; }
  /// llama-server finished the reply with no error (so far: finish() may still find bad tool calls).
  bool succeeded() const { return saw_finish_ && error_.empty(); }
  /// The reply's text so far (stream mode too), and the prompt llama-server
  /// names in /infill's last event (empty for the other routes).
  const std::string& reply_text() const { return content_; }
  const std::string& prompt_text() const { return prompt_; }
  /// Token ids for the final object's `context` (generate only; left out when never set).
  void set_context(std::vector<int64_t> ids) { context_ = std::move(ids); }

 private:
  void on_event(const json& ev, int64_t wall_ns, std::string& out);
  ojson base(int64_t wall_ns) const;
  void emit_text(const std::string& content, const std::string& thinking, int64_t wall_ns, std::string& out);
  std::optional<ojson> tool_calls_json(std::string& error) const;
  void add_metrics(ojson& o, int64_t steady_ns) const;

  Kind kind_;
  Upstream upstream_;
  std::string model_;
  bool stream_;
  Times times_;
  std::string pending_;  // an incomplete SSE line
  bool finished_ = false;
  bool saw_finish_ = false;
  int error_status_ = 0;
  std::string error_;
  std::string done_reason_ = "stop";
  // The content always accumulates (for `context`), thinking only for
  // stream:false; tool calls always do (parsed at the end).
  std::string content_, thinking_;
  std::string prompt_;                           // /infill's rendered prompt
  std::optional<std::vector<int64_t>> context_;  // generate's `context`
  struct ToolCall {
    std::string id, name, arguments;
  };
  std::vector<ToolCall> calls_;
  json timings_, usage_;
};

/// POST /api/embed: input string or array of strings. `upstream` is the
/// /v1/embeddings body. Empty input: load_only.
struct EmbedRequest {  // NOLINT(bugprone-exception-escape): json members, as Request
  std::string model;
  std::vector<std::string> input;
  bool legacy = false;  // /api/embeddings: prompt -> embedding, not normalised
  bool load_only = false;
  bool truncate = true;  // cut inputs too long for the instance (false: 400)
  std::optional<int64_t> dimensions;
  std::optional<int64_t> keep_alive_ms;
  json upstream_body;
};
std::optional<Failure> translate_embed(const json& body, bool legacy, EmbedRequest& out);
/// llama-server's /v1/embeddings reply -> Ollama's. Failure on a reply that
/// does not have one vector per input, or NaN/Inf values.
std::optional<Failure> embed_reply(const EmbedRequest& req, const json& upstream, int64_t total_ns, int64_t load_ns,
                                   ojson& out);

/// An embedding cut to its first `dimensions` values (when it has more) and
/// L2-normalised again, as Ollama's EmbedHandler does for `dimensions`.
void truncate_normalise(std::vector<double>& v, std::optional<int64_t> dimensions);

/// `dimensions` of a /v1/embeddings body (OpenAI's: the length to cut the
/// vectors to); nullopt when absent, null or 0 (Ollama's "not set"). Failure
/// (400) when it is not a non-negative integer.
std::optional<Failure> openai_dimensions(const json& body, std::optional<int64_t>& dimensions);
/// llama-server's /v1/embeddings reply with each float vector passed through
/// truncate_normalise, float arrays and base64 strings (float32,
/// little-endian) alike; the rest of the reply as it was. Failure (502) when
/// it is not an OpenAI list of vectors.
std::optional<Failure> cut_openai_embeddings(std::string_view reply, int64_t dimensions, std::string& out);

/// Tokens llama-server adds around an embedding input that /tokenize leaves
/// out (BOS, and EOS or SEP), kept free when an input is cut.
inline constexpr int64_t kEmbedSpecialTokens = 2;

/// Whether llama-server refused an embedding input as too long: its 500
/// "input is too large to process" (over the physical batch) or a 400
/// exceed_context_size_error (over the context). Then the number of tokens
/// an input may have, from the error's n_ctx (else `context`) and `ubatch`
/// (0: unknown), less kEmbedSpecialTokens; 0 when nothing says. nullopt: a
/// different error.
std::optional<int64_t> embed_overflow_limit(int status, std::string_view body, int64_t context, int64_t ubatch);

/// Sets the inputs (after some were cut) in the request's upstream body.
void set_embed_inputs(EmbedRequest& req, std::vector<std::string> input);

/// Ollama's `context` (server/routes.go, GenerateHandler): the token ids of
/// the prompt as the template rendered it followed by the reply, one
/// /tokenize of the two texts together. These read llama-server's answers on
/// the way: the rendered prompt of an /apply-template reply ({"prompt":...})
/// and the ids of a /tokenize reply ({"tokens":[...]}); nullopt when the
/// reply is not that shape.
std::optional<std::string> applied_prompt(std::string_view apply_template_reply);
std::optional<std::vector<int64_t>> token_ids(std::string_view tokenize_reply);
/// A /tokenize body for `text` (no BOS added, special tokens parsed: the
/// server's defaults, which Ollama keeps).
std::string tokenize_body(const std::string& text);

/// llama-server's error body ({"error":{"message":...}} or text) -> its message.
std::string upstream_error_message(std::string_view body);

/// A load/unload reply: {"model","created_at",("response"|"message"),"done":true,"done_reason"}.
ojson load_reply(Kind kind, const std::string& model, const std::string& reason, int64_t wall_ns);

}  // namespace llamactl::serve::ollama
