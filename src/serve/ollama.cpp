#include "serve/ollama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>

#include "util/json_depth.h"
#include "util/strings.h"
#include "util/time.h"

namespace llamactl::serve::ollama {
namespace {

constexpr int64_t kNs = 1'000'000'000;

Failure bad(std::string message) {
  return Failure{400, std::move(message)};
}

/// Go's %q of a string (enough for messages: quotes and backslashes escaped).
std::string go_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

/// What Go's encoding/json calls a JSON value's type in its errors.
std::string go_type(const json& v) {
  if (v.is_boolean()) return "bool";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  if (v.is_object()) return "object";
  return "null";
}

bool base64_ok(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r';
  });
}

std::string random_call_id() {
  static thread_local std::mt19937 gen{std::random_device{}()};
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<size_t> d(0, sizeof kAlnum - 2);
  std::string id = "call_";
  for (int i = 0; i < 8; ++i) id += kAlnum[d(gen)];
  return id;
}

/// `format`: "json" -> JSON mode, an object -> a JSON schema. Chat takes
/// OpenAI's response_format; llama-server's completion routes take json_schema.
/// JSON mode is the schema {"type":"object"} on every route: llama-server
/// builds a grammar only from a non-empty schema, so a bare
/// {"type":"json_object"} would leave the reply unconstrained.
std::optional<Failure> map_format(const json* format, Upstream up, json& out) {
  if (!format || format->is_null() || (format->is_string() && format->get<std::string>().empty())) return std::nullopt;
  json schema;
  if (format->is_string() && format->get<std::string>() == "json") {
    schema = {{"type", "object"}};
  } else if (format->is_object()) {
    schema = *format;
  } else {
    return bad("invalid format: " + format->dump() + "; expected \"json\" or a valid JSON Schema object");
  }
  if (up == Upstream::chat)
    out["response_format"] = {{"type", "json_schema"}, {"json_schema", {{"name", "schema"}, {"schema", schema}}}};
  else
    out["json_schema"] = schema;
  return std::nullopt;
}

/// `think`: a bool, or "low"|"medium"|"high"|"max" (thinking with an effort).
std::optional<Failure> map_think(const json* think, json& out, bool& wants) {
  wants = false;
  if (!think || think->is_null()) return std::nullopt;
  if (think->is_boolean()) {
    wants = think->get<bool>();
    out["chat_template_kwargs"]["enable_thinking"] = wants;
    return std::nullopt;
  }
  if (think->is_string()) {
    const std::string v = think->get<std::string>();
    if (v == "low" || v == "medium" || v == "high" || v == "max") {
      wants = true;
      out["chat_template_kwargs"]["enable_thinking"] = true;
      out["chat_template_kwargs"]["reasoning_effort"] = v;
      out["reasoning_effort"] = v;
      return std::nullopt;
    }
    if (v.empty()) return std::nullopt;
  }
  return bad("invalid think value: " + think->dump() +
             " (must be \"high\", \"medium\", \"low\", \"max\", true, or false)");
}

std::optional<Failure> string_field(const json& body, const char* key, std::string& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return bad(std::string("field '") + key + "' must be a string, not " + go_type(*it));
  out = it->get<std::string>();
  return std::nullopt;
}

std::optional<Failure> bool_field(const json& body, const char* key, bool& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return bad(std::string("field '") + key + "' must be a boolean, not " + go_type(*it));
  out = it->get<bool>();
  return std::nullopt;
}

/// Base64 images -> OpenAI content parts after the text (llama-server takes data URIs).
std::optional<Failure> content_with_images(const std::string& text, const json* images, json& content) {
  if (!images || images->is_null() || (images->is_array() && images->empty())) {
    content = text;
    return std::nullopt;
  }
  if (!images->is_array()) return bad("field 'images' must be an array of base64 strings");
  content = json::array();
  if (!text.empty()) content.push_back({{"type", "text"}, {"text", text}});
  for (const auto& img : *images) {
    if (!img.is_string() || !base64_ok(img.get<std::string>()))
      return bad("illegal base64 data in 'images' (each image is a base64 string)");
    const std::string& b64 = img.get_ref<const std::string&>();
    content.push_back({{"type", "image_url"}, {"image_url", {{"url", "data:" + image_mime(b64) + ";base64," + b64}}}});
  }
  return std::nullopt;
}

std::optional<Failure> translate_messages(const json& messages, json& out) {
  out = json::array();
  for (const auto& m : messages) {
    if (!m.is_object()) return bad("each message must be an object");
    std::string role, content, thinking, tool_name, tool_call_id;
    for (auto [key, dest] : {std::pair{"role", &role},
                             {"content", &content},
                             {"thinking", &thinking},
                             {"tool_name", &tool_name},
                             {"tool_call_id", &tool_call_id}})
      if (auto f = string_field(m, key, *dest)) return f;
    role = to_lower(role);  // Ollama lower-cases roles on decode
    json msg = {{"role", role}};
    const auto images = m.find("images");
    if (auto f = content_with_images(content, images == m.end() ? nullptr : &*images, msg["content"])) return f;
    if (!thinking.empty()) msg["reasoning_content"] = thinking;
    if (!tool_name.empty()) msg["name"] = tool_name;
    if (!tool_call_id.empty()) msg["tool_call_id"] = tool_call_id;
    if (const auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
      if (!tc->is_array()) return bad("field 'tool_calls' must be an array");
      json calls = json::array();
      for (const auto& c : *tc) {
        const json fn = c.value("function", json::object());
        if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
          return bad("each tool call needs function.name");
        const json args = fn.value("arguments", json::object());
        // Ollama sends arguments as an object; llama-server wants the JSON text.
        json call = {
            {"type", "function"},
            {"function",
             {{"name", fn["name"]}, {"arguments", args.is_string() ? args.get<std::string>() : dump_utf8(args)}}}};
        if (c.contains("id") && c["id"].is_string()) call["id"] = c["id"];
        calls.push_back(std::move(call));
      }
      msg["tool_calls"] = std::move(calls);
      if (content.empty() && (images == m.end() || images->empty())) msg["content"] = nullptr;
    }
    out.push_back(std::move(msg));
  }
  return std::nullopt;
}

double number_or(const json& j, const char* key, double dflt) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : dflt;
}

int64_t ms_to_ns(double ms) {
  return static_cast<int64_t>(std::llround(ms * 1e6));
}

}  // namespace

std::optional<int64_t> parse_go_duration_ms(std::string_view text, std::string* error) {
  const std::string orig(text);
  const auto fail = [&](std::string msg) -> std::optional<int64_t> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  std::string_view s = text;
  bool neg = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return fail("time: invalid duration " + go_quote(orig));
  double total_ns = 0;
  while (!s.empty()) {
    size_t i = 0;
    bool digits = false;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      digits = true;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        ++i;
        digits = true;
      }
    }
    if (!digits) return fail("time: invalid duration " + go_quote(orig));
    const double v = std::strtod(std::string(s.substr(0, i)).c_str(), nullptr);
    s.remove_prefix(i);
    size_t u = 0;
    while (u < s.size() && s[u] != '.' && !std::isdigit(static_cast<unsigned char>(s[u]))) ++u;
    const std::string unit(s.substr(0, u));
    if (unit.empty()) return fail("time: missing unit in duration " + go_quote(orig));
    double scale = 0;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1e6;
    else if (unit == "s")
      scale = 1e9;
    else if (unit == "m")
      scale = 60e9;
    else if (unit == "h")
      scale = 3600e9;
    else
      return fail("time: unknown unit " + go_quote(unit) + " in duration " + go_quote(orig));
    s.remove_prefix(u);
    total_ns += v * scale;
    if (total_ns > 9.2e18) return fail("time: invalid duration " + go_quote(orig));
  }
  const auto ms = static_cast<int64_t>(total_ns / 1e6);
  return neg ? -ms : ms;
}

KeepAlive parse_keep_alive(const json* value) {
  KeepAlive k;
  if (!value || value->is_null()) return k;
  if (value->is_number()) {
    const double s = value->get<double>();
    if (!std::isfinite(s)) {
      k.error = bad("keep_alive must be a finite number of seconds");
      return k;
    }
    k.ms = s < 0 ? -1 : static_cast<int64_t>(std::llround(std::min(s, 9e15) * 1000.0));
    return k;
  }
  if (value->is_string()) {
    std::string err;
    const auto ms = parse_go_duration_ms(value->get<std::string>(), &err);
    if (!ms) {
      k.error = bad(err);
      return k;
    }
    k.ms = *ms < 0 ? -1 : *ms;
    return k;
  }
  k.error = bad("Unsupported type: '" + go_type(*value) +
                "' for keep_alive (a number of seconds or a duration such as \"5m\")");
  return k;
}

std::string requested_model(const json& body) {
  for (const char* key : {"model", "name"})
    if (const auto it = body.find(key); it != body.end() && it->is_string() && !it->get<std::string>().empty())
      return it->get<std::string>();
  return {};
}

std::optional<Failure> map_options(const json& options, json& out, std::optional<int64_t>& num_ctx,
                                   std::vector<std::string>& ignored) {
  if (options.is_null()) return std::nullopt;
  if (!options.is_object()) return bad("field 'options' must be an object");
  // Ollama's runtime options and the llama-server field each becomes.
  static const std::vector<std::pair<std::string, std::string>> kInts = {{"num_predict", "n_predict"},
                                                                         {"top_k", "top_k"},
                                                                         {"seed", "seed"},
                                                                         {"repeat_last_n", "repeat_last_n"},
                                                                         {"num_keep", "n_keep"}};
  static const std::vector<std::pair<std::string, std::string>> kFloats = {{"temperature", "temperature"},
                                                                           {"top_p", "top_p"},
                                                                           {"min_p", "min_p"},
                                                                           {"typical_p", "typical_p"},
                                                                           {"repeat_penalty", "repeat_penalty"},
                                                                           {"presence_penalty", "presence_penalty"},
                                                                           {"frequency_penalty", "frequency_penalty"}};
  // Load-time options Ollama reloads for; llamactl places models itself, so
  // these are ignored (num_ctx is the exception: a larger one reloads).
  static const std::vector<std::string> kLoadTime = {"num_batch", "num_gpu", "main_gpu",  "use_mmap", "num_thread",
                                                     "low_vram",  "f16_kv",  "use_mlock", "numa",     "vocab_only"};
  for (const auto& item : options.items()) {
    const std::string& key = item.key();  // not a structured binding: lambdas below capture it
    const json& v = item.value();
    if (v.is_null()) continue;
    const auto as_int = std::find_if(kInts.begin(), kInts.end(), [&](const auto& p) { return p.first == key; });
    if (as_int != kInts.end()) {
      if (!v.is_number()) return bad("option \"" + key + "\" must be of type integer");
      out[as_int->second] = static_cast<int64_t>(v.get<double>());  // Go truncates floats into ints
      continue;
    }
    const auto as_float = std::find_if(kFloats.begin(), kFloats.end(), [&](const auto& p) { return p.first == key; });
    if (as_float != kFloats.end()) {
      if (!v.is_number()) return bad("option \"" + key + "\" must be of type float");
      out[as_float->second] = v.get<double>();
      continue;
    }
    if (key == "stop") {
      if (v.is_string()) {
        out["stop"] = json::array({v});
        continue;
      }
      if (!v.is_array() || !std::all_of(v.begin(), v.end(), [](const json& s) { return s.is_string(); }))
        return bad("option \"stop\" must be of type array of strings");
      if (!v.empty()) out["stop"] = v;
      continue;
    }
    if (key == "num_ctx") {
      if (!v.is_number()) return bad("option \"num_ctx\" must be of type integer");
      num_ctx = static_cast<int64_t>(v.get<double>());
      continue;
    }
    ignored.push_back(key);
    (void)kLoadTime;  // listed for the reader: ignored like unknown keys
  }
  return std::nullopt;
}

std::optional<Failure> translate(Kind kind, const json& body, Request& out) {
  out = Request{};
  out.kind = kind;
  out.model = requested_model(body);
  if (out.model.empty()) return kind == Kind::chat ? bad("model is required") : Failure{404, "model '' not found"};
  if (auto f = bool_field(body, "stream", out.stream)) return f;
  const auto ka_it = body.find("keep_alive");
  const KeepAlive ka = parse_keep_alive(ka_it == body.end() ? nullptr : &*ka_it);
  if (ka.error) return ka.error;
  out.keep_alive_ms = ka.ms;

  json up = json::object();
  const auto options = body.find("options");
  if (options != body.end())
    if (auto f = map_options(*options, up, out.num_ctx, out.ignored)) return f;
  const auto find = [&](const char* key) -> const json* {
    const auto it = body.find(key);
    return it == body.end() ? nullptr : &*it;
  };

  bool raw = false;
  if (kind == Kind::chat) {
    const json* messages = find("messages");
    if (messages && !messages->is_null() && !messages->is_array()) return bad("field 'messages' must be an array");
    out.load_only = !messages || messages->is_null() || messages->empty();
    if (!out.load_only)
      if (auto f = translate_messages(*messages, up["messages"])) return f;
    if (const json* tools = find("tools"); tools && !tools->is_null()) {
      if (!tools->is_array()) return bad("field 'tools' must be an array");
      if (!tools->empty()) up["tools"] = *tools;
    }
    out.upstream = Upstream::chat;
  } else {
    std::string prompt, suffix, system, tmpl;
    for (auto [key, dest] :
         {std::pair{"prompt", &prompt}, {"suffix", &suffix}, {"system", &system}, {"template", &tmpl}})
      if (auto f = string_field(body, key, *dest)) return f;
    if (auto f = bool_field(body, "raw", raw)) return f;
    const json* context = find("context");
    const bool has_context = context && context->is_array() && !context->empty();
    if (raw && (!tmpl.empty() || !system.empty() || has_context))
      return bad("raw mode does not support template, system, or context");
    if (!tmpl.empty()) out.ignored.emplace_back("template");  // the GGUF's own template is used
    if (has_context) out.ignored.emplace_back("context");
    out.load_only = prompt.empty();
    if (!suffix.empty()) {
      out.upstream = Upstream::infill;
      up["input_prefix"] = prompt;
      up["input_suffix"] = suffix;
      up["prompt"] = "";
    } else if (raw) {
      out.upstream = Upstream::completion;
      up["prompt"] = prompt;
    } else {
      out.upstream = Upstream::chat;
      json messages = json::array();
      if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
      json user = {{"role", "user"}};
      if (auto f = content_with_images(prompt, find("images"), user["content"])) return f;
      messages.push_back(std::move(user));
      up["messages"] = std::move(messages);
    }
  }
  if (auto f = map_format(find("format"), out.upstream, up)) return f;
  if (auto f = map_think(find("think"), up, out.wants_thinking)) return f;
  if (out.upstream != Upstream::chat) {  // thinking is a chat-template matter
    up.erase("chat_template_kwargs");
    up.erase("reasoning_effort");
  }
  if (out.keep_alive_ms && *out.keep_alive_ms == 0 && out.load_only) out.unload = true;
  // Ollama returns the tokens of every templated generate (not raw ones, not loads).
  out.wants_context = kind == Kind::generate && !out.load_only && !raw;
  up["stream"] = true;  // always streamed from llama-server; stream:false is collected here
  if (out.upstream != Upstream::infill) up["stream_options"] = {{"include_usage", true}};
  up["cache_prompt"] = true;
  out.upstream_path = out.upstream == Upstream::chat         ? "/v1/chat/completions"
                      : out.upstream == Upstream::completion ? "/v1/completions"
                                                             : "/infill";
  out.upstream_body = std::move(up);
  return std::nullopt;
}

std::string image_mime(std::string_view b64) {
  if (starts_with(b64, "iVBORw0KGgo")) return "image/png";
  if (starts_with(b64, "/9j/")) return "image/jpeg";
  if (starts_with(b64, "R0lGOD")) return "image/gif";
  if (starts_with(b64, "UklGR")) return "image/webp";
  if (starts_with(b64, "Qk")) return "image/bmp";
  return "image/png";
}

namespace {
/// RFC 3339 in UTC from whole seconds and nanoseconds, the fraction as Go
/// prints it (trailing zeros trimmed, none when zero).
std::string rfc3339(int64_t secs, int64_t frac_ns) {
  const std::tm tm = utc_tm(static_cast<std::time_t>(secs));
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (frac_ns > 0) {
    std::string digits = std::to_string(frac_ns);
    digits.insert(0, 9 - digits.size(), '0');
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  return out + "Z";
}
}  // namespace

std::string created_at(int64_t epoch_ns) {
  return rfc3339(epoch_ns / kNs, epoch_ns % kNs);
}

std::string rfc3339_ms(int64_t epoch_ms) {
  // Not through nanoseconds: "forever" (now + Go's MaxInt64 ns) would overflow them.
  return rfc3339(epoch_ms / 1000, (epoch_ms % 1000) * 1'000'000);
}

// ---------------------------------------------------------------------------
// Responses

Translator::Translator(Kind kind, Upstream upstream, std::string model, bool stream, Times times)
    : kind_(kind), upstream_(upstream), model_(std::move(model)), stream_(stream), times_(times) {}

ojson Translator::base(int64_t wall_ns) const {
  return ojson{{"model", model_}, {"created_at", created_at(wall_ns)}};
}

void Translator::emit_text(const std::string& content, const std::string& thinking, int64_t wall_ns, std::string& out) {
  if (content.empty() && thinking.empty()) return;
  content_ += content;
  if (!stream_) {
    thinking_ += thinking;
    return;
  }
  ojson o = base(wall_ns);
  if (kind_ == Kind::chat) {
    ojson m{{"role", "assistant"}, {"content", content}};
    if (!thinking.empty()) m["thinking"] = thinking;
    o["message"] = std::move(m);
  } else {
    o["response"] = content;
    if (!thinking.empty()) o["thinking"] = thinking;
  }
  o["done"] = false;
  out += dump_utf8(o) + "\n";
}

std::string Translator::feed(std::string_view bytes, int64_t wall_ns) {
  std::string out;
  pending_.append(bytes);
  size_t start = 0;
  for (;;) {
    const size_t nl = pending_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(pending_.data() + start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (finished_) continue;
    std::string_view payload;
    bool is_error_field = false;
    if (starts_with(line, "data:")) {
      payload = trim(line.substr(5));
    } else if (starts_with(line, "error:")) {  // llama-server's error event in a stream
      payload = trim(line.substr(6));
      is_error_field = true;
    } else {
      continue;  // blank separators, "event:" lines, comments
    }
    if (payload == "[DONE]") continue;
    json ev = parse_json_bounded<json>(payload);
    if (ev.is_discarded()) {
      error_ = "llama-server sent an event that is not JSON: " + std::string(payload.substr(0, 200));
      continue;
    }
    if (is_error_field) ev = json{{"error", ev}};
    on_event(ev, wall_ns, out);
  }
  pending_.erase(0, start);
  return out;
}

void Translator::on_event(const json& ev, int64_t wall_ns, std::string& out) {
  if (!ev.is_object()) return;
  if (const auto err = ev.find("error"); err != ev.end()) {
    error_ = err->is_object()   ? err->value("message", err->dump())
             : err->is_string() ? err->get<std::string>()
                                : err->dump();
    if (err->is_object() && err->contains("code") && (*err)["code"].is_number_integer())
      error_status_ = (*err)["code"].get<int>();
    return;
  }
  if (const auto t = ev.find("timings"); t != ev.end() && t->is_object()) timings_ = *t;
  if (const auto u = ev.find("usage"); u != ev.end() && u->is_object()) usage_ = *u;

  if (upstream_ == Upstream::infill) {  // native /completion shape
    emit_text(ev.value("content", std::string()), "", wall_ns, out);
    if (ev.value("stop", false)) {
      if (const auto p = ev.find("prompt"); p != ev.end() && p->is_string()) prompt_ = p->get<std::string>();
      saw_finish_ = true;
      done_reason_ = ev.value("stop_type", std::string()) == "limit" ? "length" : "stop";
      if (!ev.contains("timings")) return;
      // /infill carries counts outside timings too
      if (!timings_.contains("prompt_n") && ev.contains("tokens_evaluated"))
        timings_["prompt_n"] = ev["tokens_evaluated"];
      if (!timings_.contains("predicted_n") && ev.contains("tokens_predicted"))
        timings_["predicted_n"] = ev["tokens_predicted"];
    }
    return;
  }
  const auto choices = ev.find("choices");
  if (choices == ev.end() || !choices->is_array() || choices->empty()) return;
  const json& c = (*choices)[0];
  if (upstream_ == Upstream::completion) {
    const auto text = c.find("text");
    if (text != c.end() && text->is_string()) emit_text(text->get<std::string>(), "", wall_ns, out);
  } else if (const auto d = c.find("delta"); d != c.end() && d->is_object()) {
    const auto str = [&](const char* key) {
      const auto it = d->find(key);
      return it != d->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    emit_text(str("content"), str("reasoning_content"), wall_ns, out);
    if (const auto tc = d->find("tool_calls"); tc != d->end() && tc->is_array()) {
      // Streamed calls come in pieces by index: id and name first, then argument text.
      for (const auto& piece : *tc) {
        const size_t idx = piece.value("index", calls_.size());
        if (idx > 1024) continue;
        if (calls_.size() <= idx) calls_.resize(idx + 1);
        auto& call = calls_[idx];
        if (piece.contains("id") && piece["id"].is_string()) call.id = piece["id"].get<std::string>();
        if (const auto fn = piece.find("function"); fn != piece.end() && fn->is_object()) {
          if (fn->contains("name") && (*fn)["name"].is_string()) call.name += (*fn)["name"].get<std::string>();
          if (fn->contains("arguments") && (*fn)["arguments"].is_string())
            call.arguments += (*fn)["arguments"].get<std::string>();
        }
      }
    }
  }
  if (const auto fr = c.find("finish_reason"); fr != c.end() && fr->is_string()) {
    saw_finish_ = true;
    done_reason_ = fr->get<std::string>() == "length" ? "length" : "stop";
  }
}

std::optional<ojson> Translator::tool_calls_json(std::string& error) const {
  if (calls_.empty()) return std::nullopt;
  ojson calls = ojson::array();
  for (size_t i = 0; i < calls_.size(); ++i) {
    const auto& c = calls_[i];
    if (c.name.empty()) continue;
    ojson args = c.arguments.empty() ? ojson::object() : parse_json_bounded<ojson>(c.arguments);
    if (args.is_discarded()) {
      error = "llama-server returned tool call arguments that are not JSON: " + c.arguments.substr(0, 200);
      return std::nullopt;
    }
    calls.push_back({{"id", c.id.empty() ? random_call_id() : c.id},
                     {"function", {{"index", i}, {"name", c.name}, {"arguments", std::move(args)}}}});
  }
  return calls;
}

void Translator::add_metrics(ojson& o, int64_t steady_ns) const {
  // Ollama's metrics are omitempty: zero values are left out.
  const auto put = [&](const char* key, int64_t v) {
    if (v > 0) o[key] = v;
  };
  put("total_duration", steady_ns - times_.start_steady_ns);
  put("load_duration", times_.load_ns);
  const auto usage_int = [&](const char* key) { return static_cast<int64_t>(number_or(usage_, key, 0)); };
  if (timings_.is_object() && timings_.contains("prompt_n")) {
    put("prompt_eval_count",
        static_cast<int64_t>(number_or(timings_, "cache_n", 0) + number_or(timings_, "prompt_n", 0)));
    put("prompt_eval_duration", ms_to_ns(number_or(timings_, "prompt_ms", 0)));
    put("eval_count", static_cast<int64_t>(number_or(timings_, "predicted_n", 0)));
    put("eval_duration", ms_to_ns(number_or(timings_, "predicted_ms", 0)));
  } else {
    put("prompt_eval_count", usage_int("prompt_tokens"));
    put("eval_count", usage_int("completion_tokens"));
  }
}

std::string Translator::finish(int64_t wall_ns, int64_t steady_ns, const std::string& broken) {
  if (finished_) return {};
  finished_ = true;
  std::string error = error_;
  if (error.empty() && !broken.empty()) error = broken;
  if (error.empty() && !saw_finish_) error = "llama-server ended the response before it finished";
  std::optional<ojson> calls;
  if (error.empty()) calls = tool_calls_json(error);
  if (!error.empty()) {
    if (error_status_ == 0) error_status_ = 500;
    return dump_utf8(ojson{{"error", error}}) + (stream_ ? "\n" : "");
  }
  error_status_ = 0;
  std::string out;
  if (stream_ && calls && kind_ == Kind::chat) {
    // The calls in a done:false chunk, then the final one (Ollama's documented stream).
    ojson o = base(wall_ns);
    o["message"] = {{"role", "assistant"}, {"content", ""}, {"tool_calls", *calls}};
    o["done"] = false;
    out += dump_utf8(o) + "\n";
  }
  ojson o = base(wall_ns);
  // Field order as Ollama's Go structs: ChatResponse has done_reason before
  // done, GenerateResponse after it.
  if (kind_ == Kind::chat) {
    ojson m{{"role", "assistant"}, {"content", stream_ ? std::string() : content_}};
    if (!stream_ && !thinking_.empty()) m["thinking"] = thinking_;
    if (!stream_ && calls) m["tool_calls"] = *calls;
    o["message"] = std::move(m);
    o["done_reason"] = done_reason_;
    o["done"] = true;
  } else {
    o["response"] = stream_ ? std::string() : content_;
    if (!stream_ && !thinking_.empty()) o["thinking"] = thinking_;
    o["done"] = true;
    o["done_reason"] = done_reason_;
    if (context_ && !context_->empty()) o["context"] = *context_;  // omitempty, before the metrics
  }
  add_metrics(o, steady_ns);
  out += dump_utf8(o);
  if (stream_) out += "\n";
  return out;
}

// ---------------------------------------------------------------------------
// Embeddings

std::optional<Failure> translate_embed(const json& body, bool legacy, EmbedRequest& out) {
  out = EmbedRequest{};
  out.legacy = legacy;
  out.model = requested_model(body);
  if (out.model.empty()) return bad("model is required");
  const auto ka_it = body.find("keep_alive");
  const KeepAlive ka = parse_keep_alive(ka_it == body.end() ? nullptr : &*ka_it);
  if (ka.error) return ka.error;
  out.keep_alive_ms = ka.ms;
  if (legacy) {
    std::string prompt;
    if (auto f = string_field(body, "prompt", prompt)) return f;
    if (!prompt.empty()) out.input.push_back(prompt);
  } else {
    const auto in = body.find("input");
    if (in != body.end() && in->is_string()) {
      if (!in->get<std::string>().empty()) out.input.push_back(in->get<std::string>());
    } else if (in != body.end() && in->is_array()) {
      for (const auto& s : *in) {
        if (!s.is_string()) return bad("invalid input type");
        out.input.push_back(s.get<std::string>());
      }
    } else if (in != body.end() && !in->is_null()) {
      return bad("invalid input type");
    }
    if (auto f = bool_field(body, "truncate", out.truncate)) return f;
    if (const auto d = body.find("dimensions"); d != body.end() && !d->is_null()) {
      if (!d->is_number_integer() || d->get<int64_t>() < 0) return bad("dimensions must be a positive integer");
      if (d->get<int64_t>() > 0) out.dimensions = d->get<int64_t>();
    }
  }
  out.load_only = out.input.empty();
  set_embed_inputs(out, out.input);
  return std::nullopt;
}

void set_embed_inputs(EmbedRequest& req, std::vector<std::string> input) {
  req.input = std::move(input);
  req.upstream_body = {{"input", req.input}, {"encoding_format", "float"}};
  // llama-server normalises by default (L2); the legacy route returns raw vectors, as Ollama's does.
  if (req.legacy) req.upstream_body["embd_normalize"] = -1;
}

std::optional<int64_t> embed_overflow_limit(int status, std::string_view body, int64_t context, int64_t ubatch) {
  const json j = parse_json_bounded<json>(body);
  if (j.is_discarded() || !j.is_object() || !j.contains("error") || !j["error"].is_object()) return std::nullopt;
  const json& e = j["error"];
  const std::string type = e.value("type", std::string());
  const std::string message = e.value("message", std::string());
  const bool over_batch = status == 500 && message.find("too large to process") != std::string::npos;
  const bool over_context = status == 400 && type == "exceed_context_size_error";
  if (!over_batch && !over_context) return std::nullopt;
  int64_t limit = context;
  if (const auto n = e.find("n_ctx"); n != e.end() && n->is_number_integer() && n->get<int64_t>() > 0)
    limit = n->get<int64_t>();
  if (ubatch > 0) limit = limit > 0 ? std::min(limit, ubatch) : ubatch;
  return limit > kEmbedSpecialTokens ? limit - kEmbedSpecialTokens : 0;
}

void truncate_normalise(std::vector<double>& v, std::optional<int64_t> dimensions) {
  if (dimensions && *dimensions > 0 && static_cast<size_t>(*dimensions) < v.size())
    v.resize(static_cast<size_t>(*dimensions));
  double norm = 0;
  for (double x : v) norm += x * x;
  norm = std::sqrt(norm);
  if (norm > 0)
    for (double& x : v) x /= norm;
}

std::optional<Failure> openai_dimensions(const json& body, std::optional<int64_t>& dimensions) {
  dimensions.reset();
  const auto d = body.find("dimensions");
  if (d == body.end() || d->is_null()) return std::nullopt;
  if (!d->is_number_integer() || d->get<int64_t>() < 0) return bad("dimensions must be a positive integer");
  if (d->get<int64_t>() > 0) dimensions = d->get<int64_t>();
  return std::nullopt;
}

namespace {
constexpr std::string_view kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// encoding_format "base64": the float32 values, little-endian, in standard
/// base64 (what llama-server sends and the OpenAI clients decode).
std::optional<std::vector<double>> floats_of_base64(std::string_view text) {
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const size_t v = kBase64.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (bytes.size() % 4 != 0) return std::nullopt;
  std::vector<double> out;
  for (size_t i = 0; i < bytes.size(); i += 4) {
    uint32_t u = 0;
    for (size_t k = 0; k < 4; ++k) u |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + k])) << (8 * k);
    float f = 0;
    std::memcpy(&f, &u, sizeof f);
    out.push_back(f);
  }
  return out;
}

std::string base64_of_floats(const std::vector<double>& v) {
  std::string bytes;
  for (double d : v) {
    const auto f = static_cast<float>(d);
    uint32_t u = 0;
    std::memcpy(&u, &f, sizeof u);
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<char>((u >> (8 * k)) & 0xFF));
  }
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
    out.push_back(kBase64[(n >> 18) & 63]);
    out.push_back(kBase64[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kBase64[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kBase64[n & 63] : '=');
  }
  return out;
}
}  // namespace

std::optional<Failure> cut_openai_embeddings(std::string_view reply, int64_t dimensions, std::string& out) {
  const Failure malformed{502, "llama-server answered the embedding request without a list of vectors"};
  ojson j = parse_json_bounded<ojson>(reply);  // ordered: the reply keeps llama-server's field order
  if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array()) return malformed;
  for (auto& item : j["data"]) {
    if (!item.is_object() || !item.contains("embedding")) return malformed;
    auto& emb = item["embedding"];
    if (emb.is_string()) {  // encoding_format "base64" (the openai clients' default)
      auto v = floats_of_base64(emb.get<std::string>());
      if (!v) return malformed;
      truncate_normalise(*v, dimensions);
      emb = base64_of_floats(*v);
      continue;
    }
    if (!emb.is_array()) return malformed;
    std::vector<double> v;
    for (const auto& x : emb) {
      if (!x.is_number()) return malformed;
      v.push_back(x.get<double>());
    }
    truncate_normalise(v, dimensions);
    emb = std::move(v);
  }
  out = dump_utf8(j);
  return std::nullopt;
}

std::optional<Failure> embed_reply(const EmbedRequest& req, const json& upstream, int64_t total_ns, int64_t load_ns,
                                   ojson& out) {
  const auto data = upstream.find("data");
  if (data == upstream.end() || !data->is_array() || data->size() != req.input.size())
    return Failure{500, "llama-server answered the embedding request without one vector per input"};
  std::vector<std::vector<double>> vecs(req.input.size());
  for (size_t i = 0; i < data->size(); ++i) {
    const json& d = (*data)[i];
    const size_t idx = d.value("index", i);
    const auto emb = d.find("embedding");
    if (idx >= vecs.size() || emb == d.end() || !emb->is_array())
      return Failure{500, "llama-server answered the embedding request with a malformed vector"};
    for (const auto& x : *emb) {
      if (!x.is_number() || !std::isfinite(x.get<double>()))
        return Failure{500, "llama-server returned an embedding with NaN or Inf values"};
      vecs[idx].push_back(x.get<double>());
    }
  }
  if (req.legacy) {
    out = ojson{{"embedding", vecs.empty() ? std::vector<double>{} : vecs[0]}};
    return std::nullopt;
  }
  for (auto& v : vecs) truncate_normalise(v, req.dimensions);
  out = ojson{{"model", req.model}, {"embeddings", vecs}};
  if (total_ns > 0) out["total_duration"] = total_ns;
  if (load_ns > 0) out["load_duration"] = load_ns;
  const auto usage = upstream.find("usage");
  if (usage != upstream.end() && usage->is_object()) {
    const auto n = static_cast<int64_t>(number_or(*usage, "prompt_tokens", 0));
    if (n > 0) out["prompt_eval_count"] = n;
  }
  return std::nullopt;
}

std::optional<std::string> applied_prompt(std::string_view reply) {
  const json j = parse_json_bounded<json>(reply);
  if (j.is_discarded() || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string()) return std::nullopt;
  return j["prompt"].get<std::string>();
}

std::optional<std::vector<int64_t>> token_ids(std::string_view reply) {
  const json j = parse_json_bounded<json>(reply);
  if (j.is_discarded() || !j.is_object() || !j.contains("tokens") || !j["tokens"].is_array()) return std::nullopt;
  std::vector<int64_t> ids;
  ids.reserve(j["tokens"].size());
  for (const auto& t : j["tokens"]) {
    if (!t.is_number_integer()) return std::nullopt;  // with_pieces objects are not asked for
    ids.push_back(t.get<int64_t>());
  }
  return ids;
}

std::string tokenize_body(const std::string& text) {
  json b = json::object();
  b["content"] = text;
  return dump_utf8(b);
}

std::string upstream_error_message(std::string_view body) {
  const json j = parse_json_bounded<json>(body);
  if (!j.is_discarded() && j.is_object()) {
    const auto e = j.find("error");
    if (e != j.end() && e->is_object() && e->contains("message") && (*e)["message"].is_string())
      return (*e)["message"].get<std::string>();
    if (e != j.end() && e->is_string()) return e->get<std::string>();
  }
  const std::string_view t = trim(body);
  return t.empty() ? std::string("llama-server answered with an error and no message") : std::string(t.substr(0, 500));
}

ojson load_reply(Kind kind, const std::string& model, const std::string& reason, int64_t wall_ns) {
  ojson o{{"model", model}, {"created_at", created_at(wall_ns)}};
  if (kind == Kind::chat) {
    o["message"] = {{"role", "assistant"}, {"content", ""}};
    o["done_reason"] = reason;
    o["done"] = true;
  } else {
    o["response"] = "";
    o["done"] = true;
    o["done_reason"] = reason;
  }
  return o;
}

}  // namespace llamactl::serve::ollama
