// mcp: the Model Context Protocol on stdio for agents. The protocol is
// src/mcp (pure); the tools here run the same Runtime load/unload/collect as
// the CLI and answer with the same JSON documents as --json. Only protocol
// messages go to stdout; diagnostics go to stderr.

#include <cstdio>
#include <iostream>

#include "commands.h"
#include "mcp/mcp.h"
#include "ui/json.h"
#include "util/duration.h"
#include "util/log.h"
#include "util/time.h"

namespace llamactl::cmd {
namespace {

/// A duration argument: Ollama's forms as text, or a number of seconds.
Result<int64_t> duration_arg(const nlohmann::json& v) {
  if (v.is_number()) {
    const double secs = v.get<double>();
    if (secs < 0) return kNever;
    if (secs > 1e12) return make_error(ErrorKind::usage, "keep_alive of " + v.dump() + " seconds is too long");
    return static_cast<int64_t>(secs * 1000);
  }
  return parse_duration_ms(v.get<std::string>());
}

class RuntimeTools final : public mcp::Tools {
 public:
  explicit RuntimeTools(Context& ctx) : ctx_(ctx) {}

  mcp::ToolResult call(const std::string& name, const nlohmann::json& args) override {
    auto rt = ctx_.runtime(std::nullopt);
    if (!rt) return failure(rt.error());
    if (name == "gpus" || name == "status") {
      auto view = (*rt)->collect(name == "status");
      if (!view) return failure(view.error());
      return ok(name == "gpus" ? ui::gpus_json(view->gpus) : ui::status_json(*view));
    }
    if (name == "load") {
      runtime::LoadRequest req;
      req.model = args.at("model").get<std::string>();
      if (args.contains("gpu")) req.gpu = args["gpu"].get<std::string>();
      if (args.contains("keep_alive")) {
        auto ka = duration_arg(args["keep_alive"]);
        if (!ka) return failure(make_error(ErrorKind::usage, "keep_alive: " + ka.error().message));
        req.keep_alive_ms = *ka;
      }
      auto out = (*rt)->load(req);
      if (!out) return failure(out.error());
      return ok(ui::load_json(*out));
    }
    if (name == "unload") {
      runtime::UnloadRequest req;
      if (args.contains("model")) req.model = args["model"].get<std::string>();
      if (args.contains("gpu")) req.gpu = args["gpu"].get<std::string>();
      req.all = args.value("all", false);
      auto out = (*rt)->unload(req);
      if (!out) return failure(out.error());
      return ok(ui::unload_json(*out));
    }
    if (name == "set_keep_alive") return set_keep_alive(**rt, args);
    return failure(make_error(ErrorKind::usage, "unknown tool '" + name + "'"));
  }

 private:
  static mcp::ToolResult ok(const nlohmann::ordered_json& doc) {
    mcp::ToolResult r;
    r.structured = doc;
    return r;
  }
  static mcp::ToolResult failure(const Error& e) {
    mcp::ToolResult r;
    r.is_error = true;
    r.message = e.message;
    r.structured = {{"error", e.message}, {"exit_code", code(exit_for(e.kind))}};
    return r;
  }

  mcp::ToolResult set_keep_alive(runtime::Runtime& rt, const nlohmann::json& args) {
    const std::string wanted = args.at("model").get<std::string>();
    auto ka = duration_arg(args.at("keep_alive"));
    if (!ka) return failure(make_error(ErrorKind::usage, "keep_alive: " + ka.error().message));
    const auto cfg = rt.config();
    const auto* mc = cfg->find_model(wanted);
    const std::string name = mc ? mc->name : wanted;
    auto view = rt.collect(false);
    if (!view) return failure(view.error());
    for (const auto& i : view->instances) {
      if (i.rec.model != name || i.rec.dead()) continue;
      if (auto s = rt.set_keep_alive(name, i.rec.pid, *ka); !s) return failure(s.error());
      const int64_t since = std::max(i.rec.last_used_at_ms, i.rec.started_at_ms);
      nlohmann::ordered_json doc{{"model", name},
                                 {"keep_alive_ms", *ka},
                                 {"keep_alive", format_duration_ms(*ka)},
                                 {"previous_keep_alive_ms", i.rec.keep_alive_ms}};
      doc["expires_at"] = *ka < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(iso8601(since + *ka));
      return ok(doc);
    }
    return failure(make_error(ErrorKind::model_not_found, "'" + name + "' is not running (load it first)"));
  }

  Context& ctx_;
};

}  // namespace

CLI::App* setup_mcp(CLI::App& app) {
  auto* sub = app.add_subcommand("mcp",
                                 "Model Context Protocol server on stdio, for agents (tools: gpus, status, "
                                 "load, unload, set_keep_alive)");
  sub->footer("Speaks JSON-RPC 2.0, one message per line, protocol revision 2025-06-18. Logs go to stderr.");
  return sub;
}

int run_mcp(Context& ctx) {
  RuntimeTools tools(ctx);
  mcp::Server server(tools, LLAMACTL_VERSION);
  log::info("mcp: serving on stdio (protocol {})", mcp::kProtocolVersion);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::optional<std::string> reply;
    try {
      reply = server.handle(line);
    } catch (const std::exception& e) {  // a tool that threw: answer, never die mid-session
      log::error("mcp: {}", e.what());
      reply = nlohmann::json{{"jsonrpc", "2.0"},
                             {"id", nullptr},
                             {"error", {{"code", -32603}, {"message", std::string("Internal error: ") + e.what()}}}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    if (!reply) continue;
    reply->push_back('\n');
    std::fwrite(reply->data(), 1, reply->size(), stdout);
    std::fflush(stdout);
  }
  return code(Exit::ok);
}

}  // namespace llamactl::cmd
