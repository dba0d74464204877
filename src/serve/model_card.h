#pragma once
// What Ollama's /api/tags, /api/ps and /api/show say about a model, read
// from the GGUF header of a configured model file: "details", "model_info",
// "capabilities", "template", "parameters", plus the size, mtime and a
// digest of the file. No HTTP here: serve turns a card into JSON replies.

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
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

/// One configured model as the catalog reads it: what describe() takes.
struct ModelSource {
  std::string name;       // config name
  std::string path;       // the GGUF
  int64_t context = 0;    // configured context (num_ctx)
  std::string projector;  // mmproj file, or ""
  bool embeddings = false;
};

/// Cards by model name, re-read only when the model file's (or projector's)
/// size or mtime changed, or the path, projector or context did. Thread-safe.
/// Errors are not cached: each get() of a missing file tries again.
///
/// warm() reads the cards of a list of models ahead of the requests that need
/// them, on a few threads of its own (each reads one model's files at a time),
/// so that the first /api/tags does not read 200 GGUF headers one after
/// another. One model's card is read by one thread at a time: a get() for a
/// card that a worker (or another request) is reading waits for that one read,
/// not for the whole warm-up; a get() for a card nobody has read yet reads it
/// itself.
class ModelCatalog {
 public:
  /// Warms with min(4, hardware threads) workers.
  ModelCatalog();
  /// `workers`: threads for warm() (at least 1). `before_read`, when set, is
  /// called on the reading thread with the model name just before each read
  /// of a model's files (by a worker or by get()): tests hold a read there.
  explicit ModelCatalog(size_t workers, std::function<void(const std::string&)> before_read = {});
  /// stop().
  ~ModelCatalog();
  ModelCatalog(const ModelCatalog&) = delete;
  ModelCatalog& operator=(const ModelCatalog&) = delete;

  /// describe() through the cache; the same errors.
  Result<std::shared_ptr<const ModelCard>> get(const ModelSource& model);
  Result<std::shared_ptr<const ModelCard>> get(const std::string& name, const std::string& path, int64_t context,
                                               const std::string& projector = "", bool embeddings = false);

  /// Reads the cards of `models` in the background, in list order; a card
  /// already read and unchanged costs a stat. Supersedes an earlier warm():
  /// its models not yet started are dropped (a read in progress finishes),
  /// and cards of models not in `models` are forgotten (a config reload's new
  /// list). Errors (a missing file) are left for get() to report. Starts the
  /// workers on its first call; does nothing after stop().
  void warm(std::vector<ModelSource> models);
  /// Ends warming: pending models are dropped, each worker finishes the read
  /// it is in and is joined. get() still works, reading on its caller's thread.
  void stop();
  /// Waits until the last warm()'s list is all read and no worker reads;
  /// false when `timeout` passes first. For tests and benchmarks.
  bool wait_warm(std::chrono::milliseconds timeout);
  /// How many times a model's files were read (by get() or a worker).
  uint64_t reads() const;

 private:
  struct Entry {
    std::string path, projector;
    int64_t context = 0;
    bool embeddings = false;
    std::vector<int64_t> stamp;  // size and mtime (ns) of the model file, then of the projector
    std::shared_ptr<const ModelCard> card;
  };
  void work();
  Result<std::shared_ptr<const ModelCard>> read(const ModelSource& model, std::vector<int64_t> stamp,
                                                std::unique_lock<std::mutex>& lock);

  const size_t worker_count_;
  const std::function<void(const std::string&)> before_read_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;       // queue_ filled, or stopping_
  std::condition_variable done_cv_;       // a read ended (reading_ shrank), or a worker went idle
  std::map<std::string, Entry> entries_;  // by model name
  std::set<std::string> reading_;         // model names whose files a thread reads now
  std::deque<ModelSource> queue_;         // warm()'s models not yet taken by a worker
  size_t busy_ = 0;                       // workers with a model in hand
  uint64_t reads_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace llamactl::serve
