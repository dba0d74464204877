#pragma once
// What Ollama's /api/tags, /api/ps and /api/show say about a model, read
// from the GGUF header of a configured model file: "details", "model_info",
// "capabilities", "template", "parameters", plus the size, mtime and a
// digest of the file. No HTTP here: serve turns a card into JSON replies.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace llamactl::serve {

// nlohmann::json's destructor allocates (it flattens nested values), which
// clang-tidy counts as a throw from the implicit noexcept members.
struct ModelCard {          // NOLINT(bugprone-exception-escape)
  std::string name;         // config name with a tag: "tiny:latest" ("tiny:q4" keeps its tag)
  std::string digest;       // 40 hex chars; see content_digest in model_card.cpp
  uint64_t size = 0;        // file bytes
  int64_t modified_ms = 0;  // file mtime, ms since the Unix epoch
  /// {"parent_model":"","format":"gguf","family":arch,"families":[arch],
  ///  "parameter_size":"3.2B","quantization_level":"Q4_K_M"}; parameter_size
  /// is "" when the header gives no way to count parameters.
  nlohmann::json details;
  /// The GGUF metadata KVs (gguf::Info::metadata; arrays of more than 64
  /// items are []), plus general.parameter_count when the file lacks it, as
  /// Ollama always has it. Always an object.
  nlohmann::json model_info;
  /// In this order, each when it applies: "embedding" (configured
  /// `embeddings = true`), "completion" or "embedding" (the GGUF declares a
  /// pooling type: then alone), "vision", "audio", "tools", "insert",
  /// "thinking". See capabilities() in model_card.cpp for the rules.
  std::vector<std::string> capabilities;
  std::string template_text;  // tokenizer.chat_template (Jinja), or ""
  /// Ollama-style block, one "%-30s %s" line per parameter, joined by "\n":
  /// num_ctx (the configured context), then stop for the EOS and EOT token
  /// texts as JSON-quoted strings.
  std::string parameters;
  std::optional<uint64_t> context_length;    // training context (<arch>.context_length)
  std::optional<uint64_t> embedding_length;  // <arch>.embedding_length
  bool declares_pooling = false;             // the GGUF has <arch>.pooling_type
};

/// Ollama's format.HumanNumber, used for parameter_size: whole numbers lose
/// the decimals ("1B", "125M"), otherwise one decimal for B ("8.0B", "2.9B")
/// and two for M ("134.52M"); K is rounded ("1K"), smaller numbers plain.
std::string human_number(uint64_t n);

/// quantization_level for general.file_type (llama.cpp's llama_ftype):
/// 15 -> "Q4_K_M", 1 -> "F16"; "unknown" when absent or not a known type.
std::string quantization_name(std::optional<uint32_t> file_type);

/// The name clients see: "tiny" -> "tiny:latest"; "tiny:q4" and
/// "hf.co/u/m:Q4_K_M" keep their tag; "host:5000/m" -> "host:5000/m:latest".
std::string tagged_name(const std::string& name);

/// The multimodal projector named in llama-server arguments ("--mmproj X",
/// "-mm X", "--mmproj=X"); "" when there is none.
std::string projector_path(const std::vector<std::string>& args);

/// Reads the GGUF header of `path` (config model `name`, configured context
/// `context` for the num_ctx line) and, when `projector` is not empty, the
/// header of that mmproj file, whose vision or audio encoder then counts as
/// the model's (an unreadable projector adds nothing). Errors, naming the
/// path: model_not_found when the file is missing or not a readable GGUF
/// (the message says what is wrong with the header), io when it cannot be
/// read for the digest. `embeddings`: the config starts it with --embeddings
/// (capabilities then list "embedding").
Result<ModelCard> describe(const std::string& name, const std::string& path, int64_t context,
                           const std::string& projector = "", bool embeddings = false);

/// Cards by model name, re-read only when the model file's (or projector's)
/// size or mtime changed, or the path, projector or context did. Thread-safe;
/// files are read outside the lock, so two threads that miss together may
/// both read. Errors are not cached: each get() of a missing file tries again.
class ModelCatalog {
 public:
  /// describe() through the cache; the same errors.
  Result<std::shared_ptr<const ModelCard>> get(const std::string& name, const std::string& path, int64_t context,
                                               const std::string& projector = "", bool embeddings = false);

 private:
  struct Entry {
    std::string path, projector;
    int64_t context = 0;
    bool embeddings = false;
    std::vector<int64_t> stamp;  // size and mtime (ns) of the model file, then of the projector
    std::shared_ptr<const ModelCard> card;
  };
  std::mutex mutex_;
  std::map<std::string, Entry> entries_;  // by model name
};

}  // namespace llamactl::serve
