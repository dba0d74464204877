#include "mcp/mcp.h"
#include "util/json_depth.h"

#include <algorithm>
#include <vector>

namespace llamactl::mcp {
namespace {

// JSON-RPC 2.0 error codes.
constexpr int kParseError = -32700;
constexpr int kInvalidRequest = -32600;
constexpr int kMethodNotFound = -32601;
constexpr int kInvalidParams = -32602;

// Revisions this server speaks; the first is the newest (offered when the
// client asks for one it does not know).
const std::vector<std::string> kVersions = {kProtocolVersion, "2025-03-26", "2024-11-05"};

ojson object_schema(ojson properties, const std::vector<std::string>& required = {}) {
  ojson s{{"type", "object"}, {"properties", std::move(properties)}, {"additionalProperties", false}};
  if (!required.empty()) s["required"] = required;
  return s;
}

ojson string_prop(const std::string& description) {
  return ojson{{"type", "string"}, {"description", description}};
}

std::string rpc_error(const json& id, int code, const std::string& message) {
  return ojson{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}}.dump(
      -1, ' ', false, ojson::error_handler_t::replace);
}

}  // namespace

ojson tool_definitions() {
  const ojson duration{{"type", {"string", "number"}},
                       {"description",
                        "Idle time after which `llamactl serve` may unload it: Ollama's forms, e.g. \"5m\", "
                        "\"1h30m\", 300 (seconds), -1 (never), 0 (as soon as it is idle)"}};
  const ojson doc{{"type", "object"}};  // the same documents as the CLI's --json (see docs/json.md)
  ojson tools = ojson::array();
  tools.push_back({{"name", "gpus"},
                   {"title", "GPUs"},
                   {"description",
                    "Read nvidia-smi and classify every GPU: free, ours (which model), or used by someone else "
                    "(process, user, MiB). The same object as `llamactl gpus --json`."},
                   {"inputSchema", object_schema(ojson::object())},
                   {"outputSchema", doc}});
  tools.push_back({{"name", "status"},
                   {"title", "Status"},
                   {"description",
                    "Reconcile llamactl's state with the processes and GPUs and list every instance (model, GPUs, "
                    "port, pid, health, keep-alive and expiry, dead ones too). The same object as `llamactl status "
                    "--json`."},
                   {"inputSchema", object_schema(ojson::object())},
                   {"outputSchema", doc}});
  tools.push_back(
      {{"name", "load"},
       {"title", "Load a model"},
       {"description",
        "Place a configured model (or a .gguf path) on a free GPU, start llama-server and wait until it is healthy. "
        "Refuses a GPU that someone else uses or that lacks memory. On a model that already runs it changes only "
        "its keep-alive (when given). The same object as `llamactl load --json`."},
       {"inputSchema",
        object_schema({{"model", string_prop("Model name or alias from the config, or a path to a .gguf file")},
                       {"gpu", string_prop("\"0\", \"1\", \"0,1\", \"both\", \"auto\" (most free memory) or \"cpu\"")},
                       {"keep_alive", duration}},
                      {"model"})},
       {"outputSchema", doc}});
  tools.push_back(
      {{"name", "unload"},
       {"title", "Unload"},
       {"description",
        "Stop llamactl's instances gracefully and free their GPUs: one model, whatever runs on some GPUs, "
        "or all. Give exactly one of model, gpu, all. The same object as `llamactl unload --json`."},
       {"inputSchema",
        object_schema({{"model", string_prop("Model name or alias")},
                       {"gpu", string_prop("Unload what runs on these GPUs: \"0\", \"1\", \"0,1\", \"cpu\"")},
                       {"all", {{"type", "boolean"}, {"description", "Unload every instance"}}}})},
       {"outputSchema", doc}});
  tools.push_back(
      {{"name", "set_keep_alive"},
       {"title", "Set keep-alive"},
       {"description",
        "Change how long a running model may sit idle before `llamactl serve` unloads it. Returns the model, the new "
        "keep-alive and when it now expires."},
       {"inputSchema", object_schema({{"model", string_prop("Model name or alias")}, {"keep_alive", duration}},
                                     {"model", "keep_alive"})},
       {"outputSchema", doc}});
  return tools;
}

std::optional<std::string> check_arguments(const std::string& tool, const json& args) {
  if (!args.is_object()) return "arguments must be an object";
  const auto defs = tool_definitions();
  const auto def = std::find_if(defs.begin(), defs.end(), [&](const ojson& d) { return d["name"] == tool; });
  if (def == defs.end()) return "unknown tool '" + tool + "'";
  const ojson& schema = (*def)["inputSchema"];
  const ojson& props = schema["properties"];
  for (const auto& [key, value] : args.items()) {
    if (!props.contains(key)) return "unknown argument '" + key + "' for " + tool;
    const ojson& type = props[key]["type"];
    const auto allows = [&](const char* t) {
      return type.is_array() ? std::find(type.begin(), type.end(), t) != type.end() : type == t;
    };
    const bool ok = (allows("string") && value.is_string()) || (allows("boolean") && value.is_boolean()) ||
                    (allows("number") && value.is_number());
    if (!ok)
      return "argument '" + key + "' of " + tool + " must be a " +
             (type.is_array() ? "string or number" : type.get<std::string>());
  }
  if (schema.contains("required"))
    for (const auto& r : schema["required"])
      if (!args.contains(r.get<std::string>())) return tool + " needs '" + r.get<std::string>() + "'";
  if (tool == "unload") {
    const int given =
        (args.contains("model") ? 1 : 0) + (args.contains("gpu") ? 1 : 0) + (args.value("all", false) ? 1 : 0);
    if (given != 1) return "unload needs exactly one of model, gpu or all:true";
  }
  return std::nullopt;
}

std::optional<std::string> Server::handle(std::string_view line) {
  if (json_too_deep(line)) return rpc_error(nullptr, kParseError, "Parse error: " + std::string(kJsonTooDeepMessage));
  const json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded()) return rpc_error(nullptr, kParseError, "Parse error: the line is not JSON");
  if (!msg.is_object())  // 2025-06-18 has no batches
    return rpc_error(nullptr, kInvalidRequest, "Invalid Request: expected one JSON-RPC object per line");
  const bool has_id = msg.contains("id") && (msg["id"].is_string() || msg["id"].is_number_integer());
  const json id = has_id ? msg["id"] : json(nullptr);
  if (!msg.contains("method")) {
    if (msg.contains("result") || msg.contains("error")) return std::nullopt;  // a response to us: we send no requests
    return rpc_error(id, kInvalidRequest, "Invalid Request: no method");
  }
  if (msg.value("jsonrpc", "") != "2.0" || !msg["method"].is_string())
    return rpc_error(id, kInvalidRequest, "Invalid Request: jsonrpc must be \"2.0\" and method a string");
  const std::string method = msg["method"];
  if (!msg.contains("id")) {  // a notification: never answered
    if (method == "notifications/initialized") initialized_ = true;
    return std::nullopt;
  }
  if (!has_id) return rpc_error(nullptr, kInvalidRequest, "Invalid Request: id must be a string or an integer");
  const json params = msg.contains("params") ? msg["params"] : json::object();
  bool is_error = false;
  int code = 0;
  std::string message;
  ojson result = dispatch(method, params, is_error, code, message);
  if (is_error) return rpc_error(id, code, message);
  return ojson{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}}.dump(-1, ' ', false,
                                                                                   ojson::error_handler_t::replace);
}

ojson Server::dispatch(const std::string& method, const json& params, bool& is_error, int& code, std::string& message) {
  const auto fail = [&](int c, std::string m) {
    is_error = true;
    code = c;
    message = std::move(m);
    return ojson();
  };
  if (!params.is_object()) return fail(kInvalidParams, "params must be an object");
  if (method == "initialize") {
    const std::string asked = params.value("protocolVersion", "");
    const bool known = std::find(kVersions.begin(), kVersions.end(), asked) != kVersions.end();
    return ojson{{"protocolVersion", known ? asked : kVersions.front()},
                 {"capabilities", {{"tools", {{"listChanged", false}}}}},
                 {"serverInfo", {{"name", "llamactl"}, {"title", "llamactl GPU manager"}, {"version", version_}}},
                 {"instructions",
                  "Manage llama.cpp llama-server instances on this machine's NVIDIA GPUs: see what uses each GPU "
                  "(gpus, status), start a model on a free GPU (load), stop it (unload), and set how long it may "
                  "sit idle (set_keep_alive)."}};
  }
  if (method == "ping") return ojson::object();
  if (method == "tools/list") return ojson{{"tools", tool_definitions()}};
  if (method == "tools/call") {
    if (!params.contains("name") || !params["name"].is_string()) return fail(kInvalidParams, "tools/call needs a name");
    const std::string name = params["name"];
    const auto defs = tool_definitions();
    if (std::none_of(defs.begin(), defs.end(), [&](const ojson& d) { return d["name"] == name; }))
      return fail(kInvalidParams, "Unknown tool: " + name);
    const json args =
        params.contains("arguments") && !params["arguments"].is_null() ? params["arguments"] : json::object();
    ToolResult r;
    if (auto bad = check_arguments(name, args)) {
      r.is_error = true;
      r.message = *bad;
    } else {
      try {
        r = tools_.call(name, args);
      } catch (const std::exception& e) {  // a tool that threw still answers this request
        r = ToolResult{true, ojson::object(), std::string("internal error: ") + e.what()};
      }
    }
    if (r.is_error) {
      if (r.structured.empty()) r.structured = ojson{{"error", r.message}};
      return ojson{{"content", {{{"type", "text"}, {"text", r.message}}}},
                   {"structuredContent", r.structured},
                   {"isError", true}};
    }
    return ojson{
        {"content", {{{"type", "text"}, {"text", r.structured.dump(2, ' ', false, ojson::error_handler_t::replace)}}}},
        {"structuredContent", r.structured},
        {"isError", false}};
  }
  return fail(kMethodNotFound, "Method not found: " + method);
}

}  // namespace llamactl::mcp
