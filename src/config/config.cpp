#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 1
#include "config/config.h"

#include <toml++/toml.h>

#include <set>

#include "gpu/classify.h"
#include "gpu/visible.h"
#include "platform/platform.h"
#include "util/duration.h"
#include "util/strings.h"

namespace llamactl::config {
namespace {

struct ConfigError {
  std::string message;
};

// toml++ words its errors for TOML experts ("Error while parsing string:
// unescaped control characters other than TAB (U+0009) are explicitly
// prohibited"); whoever edits the config needs to hear what to fix.
std::string plain_toml_error(std::string_view what) {
  constexpr std::string_view kPrefix = "Error while parsing ";
  std::string_view scope, reason = what;
  if (const auto colon = what.find(": "); starts_with(what, kPrefix) && colon != std::string_view::npos) {
    scope = what.substr(kPrefix.size(), colon - kPrefix.size());
    reason = what.substr(colon + 2);
  }
  const auto has = [&](std::string_view s) { return reason.find(s) != std::string_view::npos; };
  if (ends_with(scope, "string") && (has("control character") || has("end-of-file")))
    return "a string is not closed: add the missing quote before the end of the line";
  if (has("unknown escape sequence"))
    return "unknown escape " + std::string(reason.substr(reason.find('\'')).substr(0, 4)) +
           " in a \"...\" string: write \\\\ for a backslash, or put a Windows path in '...'";
  if (has("cannot redefine existing"))
    return "defined twice: " + std::string(reason.substr(reason.rfind(' ') + 1)) + " (each key and [table] once)";
  if (starts_with(reason, "expected value, saw '\\n'") || starts_with(reason, "expected value, saw '#'"))
    return "a key without a value: write key = value";
  if (has("could not determine value type") || starts_with(reason, "expected value") ||
      starts_with(reason, "expected 'true'") || starts_with(reason, "expected 'false'"))
    return "a value TOML does not know: text needs quotes (key = \"text\"); numbers and true/false do not";
  if (starts_with(reason, "expected '='")) return "expected key = value: the '=' is missing";
  if (scope == "table header") return "a [table] header needs its closing ']' on the same line";
  if (scope == "array") return "a list needs commas between its items and a closing ']': [\"a\", \"b\"]";
  if (scope == "inline table") return "an inline table is { key = value, key = value }, without a comma at the end";
  if (has("expected a comment or whitespace"))
    return "more after the value: one key = value per line, and a comment starts with #";
  return "not valid TOML" + (scope.empty() ? std::string() : " (" + std::string(scope) + ")") + ": " +
         std::string(reason);
}

class Walker {
 public:
  explicit Walker(std::string source) : source_(std::move(source)) {}

  std::string where(const toml::node& n) const {
    const auto& b = n.source().begin;
    return source_ + ":" + std::to_string(b.line);
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
    throw ConfigError{where(n) + ": key '" + key + "': " + what};
  }

  std::string str(const toml::node& n, const std::string& key) const {
    if (const auto* v = n.as_string()) return v->get();
    fail(n, key, "expected a string");
  }
  int64_t integer(const toml::node& n, const std::string& key, int64_t lo, int64_t hi) const {
    const auto* v = n.as_integer();
    if (!v) fail(n, key, "expected an integer");
    if (v->get() < lo || v->get() > hi)
      fail(n, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return v->get();
  }
  bool boolean(const toml::node& n, const std::string& key) const {
    if (const auto* v = n.as_boolean()) return v->get();
    fail(n, key, "expected true or false");
  }
  std::vector<std::string> strings(const toml::node& n, const std::string& key) const {
    const auto* arr = n.as_array();
    if (!arr) fail(n, key, "expected an array of strings");
    std::vector<std::string> out;
    for (const auto& item : *arr) out.push_back(str(item, key));
    return out;
  }
  int64_t duration(const toml::node& n, const std::string& key) const {
    if (const auto* i = n.as_integer()) return i->get() < 0 ? kNever : i->get() * 1000;
    const auto ms = parse_duration_ms(str(n, key));
    if (!ms) fail(n, key, ms.error().message);
    return *ms;
  }
  const toml::table& table(const toml::node& n, const std::string& key) const {
    if (const auto* t = n.as_table()) return *t;
    fail(n, key, "expected a table");
  }
  void unknown(const toml::node& n, const std::string& key, std::vector<std::string>& warnings) const {
    warnings.push_back(where(n) + ": unknown key '" + key + "' ignored");
  }

 private:
  std::string source_;
};

void check_gpu_spec(const Walker& w, const toml::node& n, const std::string& key, const std::string& spec) {
  static const std::set<std::string> words = {"auto", "cpu", "both", "all"};
  if (words.count(to_lower(spec))) return;
  for (auto part : split(spec, ',')) {
    const auto idx = parse_int(part);
    if (!idx || *idx < 0 || *idx > 63) w.fail(n, key, "'" + spec + "' is not a GPU spec (0, 1, 0,1, both, auto, cpu)");
  }
}

// `gpus = [0, "GPU-…"]`: checked here so a bad entry names its line.
std::vector<std::string> gpu_list(const Walker& w, const toml::node& n, const std::string& key) {
  const auto* arr = n.as_array();
  if (!arr) w.fail(n, key, "expected an array of GPU indices or \"GPU-...\" UUIDs, such as [0, 1]");
  std::vector<std::string> out;
  for (const auto& item : *arr) {
    if (item.is_integer())
      out.push_back(std::to_string(w.integer(item, key, 0, 63)));
    else if (item.is_string())
      out.push_back(w.str(item, key));
    else
      w.fail(item, key, "expected GPU indices or \"GPU-...\" UUIDs");
    if (auto r = gpu::parse_restriction(out.back(), gpu::RestrictionSource::config);
        !r || !*r || (*r)->entries.size() != 1)
      w.fail(item, key, "'" + out.back() + "' is neither a GPU index nor a \"GPU-...\" UUID");
  }
  return out;
}

ModelConfig parse_model(const Walker& w, const std::string& name, const toml::table& t, Config& cfg) {
  ModelConfig m;
  m.name = name;
  const std::string prefix = "models." + name + ".";
  // "<model>#2" names the model's second instance (replicas) in the state file.
  if (name.empty() || name.find('#') != std::string::npos)
    throw ConfigError{
        w.where(t) + ": model name '" + name + "' " +
        (name.empty() ? "is empty" : "contains '#' (serve names a model's replicas name#2, name#3, ...)")};
  for (const auto& [k, node] : t) {
    const std::string key(k.str());
    if (key == "path")
      m.path = w.str(node, prefix + key);
    else if (key == "gpu") {
      m.gpu = w.str(node, prefix + key);
      check_gpu_spec(w, node, prefix + key, *m.gpu);
    } else if (key == "context")
      m.context = w.integer(node, prefix + key, 1, 1 << 24);
    else if (key == "args")
      m.args = w.strings(node, prefix + key);
    else if (key == "aliases")
      m.aliases = w.strings(node, prefix + key);
    else if (key == "keep_alive")
      m.keep_alive_ms = w.duration(node, prefix + key);
    else if (key == "embeddings")
      m.embeddings = w.boolean(node, prefix + key);
    else if (key == "reranking")
      m.reranking = w.boolean(node, prefix + key);
    else if (key == "parallel")
      m.parallel = static_cast<int>(w.integer(node, prefix + key, 1, 256));
    else if (key == "replicas")
      m.replicas = static_cast<int>(w.integer(node, prefix + key, 1, 64));
    else if (key == "scale_after")
      m.scale_after_ms = w.duration(node, prefix + key);
    else
      w.unknown(node, prefix + key, cfg.warnings);
  }
  if (m.path.empty()) throw ConfigError{w.where(t) + ": model '" + name + "' has no 'path'"};
  return m;
}

}  // namespace

ConfigChanges compare(const Config& before, const Config& after) {
  ConfigChanges c;
  const bool launch_changed = before.llama_server != after.llama_server || before.placement != after.placement;
  for (const auto& [name, m] : after.models) {
    const auto it = before.models.find(name);
    if (it == before.models.end()) {
      c.added.push_back(name);
      continue;
    }
    const bool context_changed = !m.context && before.context != after.context;
    // How many instances may run is no reason to restart the ones that do.
    ModelConfig was = it->second;
    was.replicas = m.replicas;
    was.scale_after_ms = m.scale_after_ms;
    if (!(was == m) || launch_changed || context_changed) c.changed.push_back(name);
  }
  for (const auto& [name, m] : before.models)
    if (!after.models.count(name)) c.removed.push_back(name);
  return c;
}

const ModelConfig* Config::find_model(const std::string& wanted) const {
  std::string name = wanted;
  if (const auto colon = name.rfind(':'); colon != std::string::npos && name.find('/') == std::string::npos)
    name = name.substr(0, colon);  // "llama:latest" -> "llama"
  if (const auto it = models.find(name); it != models.end()) return &it->second;
  for (const auto& [n, m] : models)
    for (const auto& a : m.aliases)
      if (a == name || a == wanted) return &m;
  // Ollama matches names case-insensitively ("Llama3" finds "llama3").
  for (const auto& [n, m] : models) {
    if (iequals(n, name)) return &m;
    for (const auto& a : m.aliases)
      if (iequals(a, name) || iequals(a, wanted)) return &m;
  }
  return nullptr;
}

std::vector<std::string> Config::model_names() const {
  std::vector<std::string> names;
  for (const auto& [n, m] : models) names.push_back(n);
  for (const auto& [n, m] : models) names.insert(names.end(), m.aliases.begin(), m.aliases.end());
  return names;
}

Result<Config> parse(const std::string& text, const std::string& source) {
  Config cfg;
  cfg.source = source;
  cfg.ignore_processes = gpu::default_ignore_processes();
  const Walker w(source);
  try {
    const toml::table root = toml::parse(text, source);
    for (const auto& [k, node] : root) {
      const std::string key(k.str());
      if (key == "llama_server")
        cfg.llama_server = w.str(node, key);
      else if (key == "base_port")
        cfg.base_port = static_cast<int>(w.integer(node, key, 1, 65535));
      else if (key == "memory_threshold_mib")
        cfg.memory_threshold_mib = w.integer(node, key, 0, 1 << 30);
      else if (key == "placement") {
        const auto p = w.str(node, key);
        if (p == "visible-devices")
          cfg.placement = Placement::visible_devices;
        else if (p == "tensor-split")
          cfg.placement = Placement::tensor_split;
        else
          w.fail(node, key, "must be \"visible-devices\" or \"tensor-split\", not \"" + p + "\"");
      } else if (key == "keep_alive")
        cfg.keep_alive_ms = w.duration(node, key);
      else if (key == "context") {
        cfg.context = w.integer(node, key, 1, 1 << 24);
        cfg.context_set = true;
      } else if (key == "allow_context_over_trained")
        cfg.allow_context_over_trained = w.boolean(node, key);
      else if (key == "max_queue")
        cfg.max_queue = w.integer(node, key, 1, 1 << 20);
      else if (key == "queue_timeout")
        cfg.queue_timeout_ms = w.duration(node, key);
      else if (key == "ignore_processes")
        cfg.ignore_processes = w.strings(node, key);
      else if (key == "ports") {
        for (const auto& [pk, pn] : w.table(node, key)) {
          const std::string name(pk.str());
          const bool known = name == "both" || name == "cpu" ||
                             (starts_with(name, "gpu") && parse_int(std::string_view(name).substr(3)));
          if (!known) w.fail(pn, "ports." + name, "expected gpuN, both or cpu");
          cfg.ports[name] = static_cast<int>(w.integer(pn, "ports." + name, 1, 65535));
        }
      } else if (key == "gpu") {
        for (const auto& [gk, gn] : w.table(node, key)) {
          const std::string idx_text(gk.str());
          const auto idx = parse_int(idx_text);
          if (!idx || *idx < 0 || *idx > 63) w.fail(gn, "gpu." + idx_text, "expected a GPU index such as [gpu.0]");
          GpuOverride o;
          for (const auto& [ok, on] : w.table(gn, "gpu." + idx_text)) {
            const std::string okey = "gpu." + idx_text + "." + std::string(ok.str());
            if (ok.str() == "threshold_mib")
              o.threshold_mib = w.integer(on, okey, 0, 1 << 30);
            else
              w.unknown(on, okey, cfg.warnings);
          }
          cfg.gpu[static_cast<int>(*idx)] = o;
        }
      } else if (key == "gpus") {
        cfg.gpus = gpu_list(w, node, key);
        cfg.gpus_where = w.where(node);
      } else if (key == "models") {
        for (const auto& [mk, mn] : w.table(node, key)) {
          const std::string name(mk.str());
          cfg.models[name] = parse_model(w, name, w.table(mn, "models." + name), cfg);
        }
      } else {
        w.unknown(node, key, cfg.warnings);
      }
    }
  } catch (const toml::parse_error& e) {
    return make_error(ErrorKind::config, source + ":" + std::to_string(e.source().begin.line) + ":" +
                                             std::to_string(e.source().begin.column) + ": " +
                                             plain_toml_error(e.description()));
  } catch (const ConfigError& e) {
    return make_error(ErrorKind::config, e.message);
  }
  // Aliases must not shadow other models or each other.
  std::map<std::string, std::string> owner;
  for (const auto& [name, m] : cfg.models) owner[name] = name;
  for (const auto& [name, m] : cfg.models)
    for (const auto& a : m.aliases) {
      if (auto [it, fresh] = owner.emplace(a, name); !fresh && it->second != name)
        return make_error(ErrorKind::config, source + ": alias '" + a + "' of model '" + name +
                                                 "' is already used by '" + it->second + "'");
    }
  return cfg;
}

std::string locate(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (auto e = platform::env("LLAMACTL_CONFIG"); e && !e->empty()) return *e;
  if (platform::file_exists("llamactl.toml")) return "llamactl.toml";
  std::string user = platform::default_config_path();
  if (!user.empty() && platform::file_exists(user)) return user;
  return {};
}

Result<Config> load(const std::string& flag_value) {
  const std::string path = locate(flag_value);
  if (path.empty()) {
    Config cfg;
    cfg.ignore_processes = gpu::default_ignore_processes();
    return cfg;
  }
  auto text = platform::read_file(path);
  if (!text) return make_error(ErrorKind::config, "cannot read config file " + path);
  return parse(*text, path);
}

}  // namespace llamactl::config
