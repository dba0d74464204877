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

}  // namespace llamactl::serve
