#pragma once
// What serve reads from an OpenAI request before relaying it: pure, unit-tested.

#include <string>
#include <string_view>

namespace llamactl::serve {

struct BodyModel {
  bool is_object = false;  // the body is one JSON object (valid JSON, nothing after it)
  std::string model;       // its top-level "model"; empty when missing, not a string, or ""
  bool too_deep = false;   // refused for nesting deeper than kMaxJsonDepth (util/json_depth.h)
};

/// The top-level "model" of a request body, checking the whole body as JSON
/// without building it: the relay sends the body on as it came, and a chat
/// request can carry megabytes of messages and images. As with a parsed
/// object, the last of repeated "model" keys counts. A body that nests
/// deeper than kMaxJsonDepth is not an object, and says so (`too_deep`).
BodyModel body_model(std::string_view body);

/// Renames the model in llama-server's JSON replies to the name the request
/// used, as Ollama's OpenAI routes echo it (llama-server names its --alias,
/// the config name, whatever the request said: an alias, "name:tag").
/// Works on the bytes as they stream: every `"model":"SERVED"` becomes
/// `"model":"REQUESTED"`, and a piece's end that may begin one is held back
/// for the next. Raw quotes cannot stand inside a JSON string, so only keys
/// and values match, never text.
class ModelRename {
 public:
  ModelRename() = default;
  /// Both names as plain text (they are quoted here); the same name: inactive.
  ModelRename(std::string_view served, std::string_view requested);
  bool active() const { return !from_.empty(); }
  /// `piece` renamed, less what is held back.
  std::string feed(std::string_view piece);
  /// What was held back (at the body's end).
  std::string finish();

 private:
  std::string from_, to_, held_;
};

}  // namespace llamactl::serve
