#include "state/state.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "util/json_depth.h"
#include "util/time.h"

namespace llamactl::state {

using nlohmann::json;

Instance* StateFile::find(const std::string& model) {
  for (auto& i : instances)
    if (i.model == model && !i.dead()) return &i;
  return nullptr;
}

Instance* StateFile::find_dead(const std::string& model) {
  for (auto& i : instances)
    if (i.model == model && i.dead()) return &i;
  return nullptr;
}

std::vector<Instance> StateFile::live() const {
  std::vector<Instance> out;
  for (const auto& i : instances)
    if (!i.dead()) out.push_back(i);
  return out;
}

std::string file_safe(const std::string& model) {
  std::string out;
  for (char c : model) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.' || c == '#';
    out += ok ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  return out;
}

std::string StateDir::pid_path(const std::string& model) const {
  return platform::join_path(dir_, "pids/" + file_safe(model) + ".pid");
}
std::string StateDir::log_path(const std::string& model) const {
  return platform::join_path(dir_, "logs/" + file_safe(model) + ".log");
}

Status StateDir::ensure() const {
  // The dir itself may be a link the user made (to another disk); logs/ and pids/ may not.
  if (auto s = platform::make_private_dir(dir_); !s) return s;
  for (const std::string& d : {platform::join_path(dir_, "logs"), platform::join_path(dir_, "pids")})
    if (auto s = platform::make_private_dir(d, false); !s) return s;
  return ok_status();
}

Result<Lock> StateDir::lock(std::chrono::milliseconds timeout) const {
  if (auto s = ensure(); !s) return s.error();
  auto l = platform::FileLock::acquire(lock_path(), timeout);
  if (!l) return l.error();
  return Lock(std::move(*l));
}

std::string to_json(const StateFile& state) {
  json j;
  j["schema_version"] = kSchemaVersion;
  j["instances"] = json::array();
  for (const auto& i : state.instances) {
    json o = {{"model", i.model},
              {"path", i.path},
              {"gpus", i.gpus},
              {"port", i.port},
              {"pid", i.pid},
              {"process_start_time", i.start_time},
              {"started_at_ms", i.started_at_ms},
              {"started_at", iso8601(i.started_at_ms)},
              {"last_used_at_ms", i.last_used_at_ms},
              {"keep_alive_ms", i.keep_alive_ms},
              {"log", i.log},
              {"argv", i.argv},
              {"owner", i.owner},
              {"state", i.state}};
    o["estimate_mib"] = i.estimate_mib ? json(*i.estimate_mib) : json(nullptr);
    o["loaded_by"] = i.loaded_by;
    if (i.died_at_ms) o["died_at_ms"] = *i.died_at_ms;
    if (i.exit_code) o["exit_code"] = *i.exit_code;
    j["instances"].push_back(std::move(o));
  }
  return dump_utf8(j, 2) + "\n";
}

Result<StateFile> from_json(const std::string& text) {
  json j;
  if (json_too_deep(text))
    return make_error(ErrorKind::state, std::string("not valid JSON: ") + std::string(kJsonTooDeepMessage));
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return make_error(ErrorKind::state, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) return make_error(ErrorKind::state, "top level is not an object");
  if (!j.contains("schema_version") || !j["schema_version"].is_number_integer())
    return make_error(ErrorKind::state, "missing 'schema_version'");
  if (j["schema_version"].get<int>() > kSchemaVersion)
    return make_error(ErrorKind::state, "schema_version " + std::to_string(j["schema_version"].get<int>()) +
                                            " is newer than this llamactl understands (" +
                                            std::to_string(kSchemaVersion) + ")");
  if (!j.contains("instances") || !j["instances"].is_array())
    return make_error(ErrorKind::state, "missing 'instances'");
  StateFile st;
  size_t n = 0;
  for (const auto& o : j["instances"]) {
    ++n;
    const std::string where = "instance " + std::to_string(n);
    try {
      Instance i;
      i.model = o.at("model").get<std::string>();
      i.path = o.value("path", "");
      i.gpus = o.value("gpus", std::vector<int>{});
      i.port = o.at("port").get<int>();
      i.pid = o.at("pid").get<int64_t>();
      i.start_time = o.value("process_start_time", uint64_t{0});
      i.started_at_ms = o.value("started_at_ms", int64_t{0});
      i.last_used_at_ms = o.value("last_used_at_ms", i.started_at_ms);
      i.keep_alive_ms = o.value("keep_alive_ms", int64_t{-1});
      i.log = o.value("log", "");
      i.argv = o.value("argv", std::vector<std::string>{});
      i.owner = o.value("owner", "");
      i.state = o.value("state", "running");
      if (o.contains("estimate_mib") && o["estimate_mib"].is_number_integer())
        i.estimate_mib = o["estimate_mib"].get<int64_t>();
      i.loaded_by = o.value("loaded_by", "cli");
      if (o.contains("died_at_ms") && o["died_at_ms"].is_number_integer())
        i.died_at_ms = o["died_at_ms"].get<int64_t>();
      if (o.contains("exit_code") && o["exit_code"].is_number_integer()) i.exit_code = o["exit_code"].get<int>();
      if (i.state != "starting" && i.state != "running" && i.state != "dead")
        return make_error(ErrorKind::state, where + ": unknown state '" + i.state + "'");
      if (i.model.empty() || i.pid <= 0 || i.port <= 0 || i.port > 65535)
        return make_error(ErrorKind::state, where + ": invalid model, pid or port");
      st.instances.push_back(std::move(i));
    } catch (const json::exception& e) {
      return make_error(ErrorKind::state, where + ": " + e.what());
    }
  }
  return st;
}

namespace {

/// A state file another user wrote lists processes llamactl would signal:
/// never believed (ssh's StrictModes, for records).
Status check_owner(const std::string& path) {
  if (const auto mine = platform::owned_by_me(path); mine && !*mine)
    return make_error(ErrorKind::state, path +
                                            " belongs to another user; llamactl acts only on records it wrote itself "
                                            "(remove the file, or use a state dir of your own)");
  return ok_status();
}

}  // namespace

Result<StateFile> StateDir::peek() const {
  if (!platform::file_exists(state_path())) return StateFile{};
  if (auto s = check_owner(state_path()); !s) return s.error();
  auto text = platform::read_file(state_path());
  if (!text) return make_error(ErrorKind::state, text.error().message);
  auto st = from_json(*text);
  if (!st) return make_error(ErrorKind::state, state_path() + ": " + st.error().message);
  return st;
}

Result<StateFile> StateDir::load(const Lock&, std::vector<std::string>& warnings) const {
  if (!platform::file_exists(state_path())) return StateFile{};
  if (auto s = check_owner(state_path()); !s) return s.error();
  auto text = platform::read_file(state_path());
  if (!text) return make_error(ErrorKind::state, text.error().message);
  auto st = from_json(*text);
  if (st) return st;
  // Never overwrite a damaged file silently: move it aside for the user to inspect.
  const std::string aside = state_path() + ".damaged-" + std::to_string(now_ms());
  if (auto r = platform::rename_file(state_path(), aside); !r)
    return make_error(ErrorKind::state, state_path() + " is damaged (" + st.error().message +
                                            ") and could not be moved aside: " + r.error().message);
  warnings.push_back("state file " + state_path() + " was damaged (" + st.error().message + "); moved it to " + aside +
                     " and started with an empty state");
  return StateFile{};
}

Status StateDir::save(const Lock&, const StateFile& state) const {
  return platform::write_file_atomic(state_path(), to_json(state));
}

Status StateDir::write_pidfile(const Lock&, const Instance& inst) const {
  return platform::write_file_atomic(pid_path(inst.model), std::to_string(inst.pid) + "\n");
}

Status StateDir::remove_pidfile(const Lock&, const std::string& model) const {
  return platform::remove_file(pid_path(model));
}

std::string resolve_dir(const std::string& flag_value) {
  std::string dir = flag_value;
  if (dir.empty()) dir = platform::env("LLAMACTL_STATE_DIR").value_or("");
  if (dir.empty()) dir = platform::default_state_dir();
  // Absolute, so the log paths recorded in the state work from any directory.
  std::error_code ec;
  const auto abs = std::filesystem::absolute(platform::fs_path(dir), ec);
  return ec ? dir : platform::utf8_path(abs.lexically_normal());
}

}  // namespace llamactl::state
