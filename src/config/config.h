#pragma once
// The TOML config (SPEC section 3): global settings, per-GPU ports and
// overrides, and the model catalogue. Every key has a default, so no config
// file at all is valid.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace llamactl::config {

enum class Placement { visible_devices, tensor_split };

struct ModelConfig {
  std::string name;
  std::string path;
  std::optional<std::string> gpu;  // "0", "0,1", "both", "auto", "cpu"
  std::optional<int64_t> context;
  std::vector<std::string> args;
  std::vector<std::string> aliases;
  std::optional<int64_t> keep_alive_ms;  // kNever for "never"
  bool embeddings = false;               // start llama-server with --embeddings (and a pooling type)
  bool reranking = false;       // start llama-server with --reranking (a GGUF with rank pooling gets it anyway)
  std::optional<int> parallel;  // -np: requests one instance serves at once (serve admits that many)
  // serve: the most instances of the model at once (one more starts on an
  // idle GPU when every slot is busy and a request waited scale_after).
  int replicas = 1;
  int64_t scale_after_ms = 2000;
  bool operator==(const ModelConfig&) const = default;
};

struct GpuOverride {
  std::optional<int64_t> threshold_mib;
};

struct Config {
  std::string source;  // file it came from; empty for defaults
  std::string llama_server = "llama-server";
  int base_port = 8081;
  int64_t memory_threshold_mib = 30;
  Placement placement = Placement::visible_devices;
  int64_t keep_alive_ms = 5 * 60 * 1000;
  int64_t context = 4096;
  bool context_set = false;                   // `context` given in the file (not the built-in default)
  bool allow_context_over_trained = false;    // a context above the GGUF's trained one: a warning, not a refusal
  int64_t max_queue = 512;                    // serve: requests waiting per model, then 503
  int64_t queue_timeout_ms = 10 * 60 * 1000;  // serve: the longest a request waits in a queue; kNever: no bound
  std::map<std::string, int> ports;           // "gpu0", "gpu1", "both", "cpu"
  std::map<int, GpuOverride> gpu;
  /// `gpus = [0, 1]` (indices or "GPU-..." UUIDs): the GPUs placement may
  /// use (gpu/visible.h); nullopt: not set. `gpus_where` is "file:line".
  std::optional<std::vector<std::string>> gpus;
  std::string gpus_where;
  std::vector<std::string> ignore_processes;  // defaults to the desktop compositors
  std::map<std::string, ModelConfig> models;
  std::vector<std::string> warnings;  // unknown keys, with file:line

  /// Model by name or alias; a ":latest"-style tag is ignored. nullptr when none.
  const ModelConfig* find_model(const std::string& name) const;
  /// Every name a model answers to: the names, then the aliases (for "did you mean").
  std::vector<std::string> model_names() const;
};

/// What a reload changes, model by model (names sorted).
struct ConfigChanges {
  std::vector<std::string> added;
  std::vector<std::string> changed;  // its llama-server would start differently
  std::vector<std::string> removed;
  bool empty() const { return added.empty() && changed.empty() && removed.empty(); }
};

/// Compares two configs: a model is changed when its entry differs, or a
/// global setting its instance starts with does (llama_server, placement,
/// and the default context for a model without its own).
ConfigChanges compare(const Config& before, const Config& after);

/// Parses config text. `source` names the file in messages ("c.toml:7: ...").
/// Error kind config, with file, line and key, for any invalid value.
Result<Config> parse(const std::string& text, const std::string& source);

/// The config file to use: the flag, else LLAMACTL_CONFIG, else
/// ./llamactl.toml, else the per-user config dir. Empty when none exists
/// (and none was asked for explicitly).
std::string locate(const std::string& flag_value);

/// Loads the located file. An explicitly named file that does not exist is
/// an error; no file at all gives the defaults.
Result<Config> load(const std::string& flag_value);

}  // namespace llamactl::config
