#include "serve/model_card.h"

#include <boost/uuid/detail/sha1.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>

#include "gguf/gguf.h"
#include "platform/platform.h"
#include "util/log.h"
#include "util/strings.h"

namespace llamactl::serve {
namespace {

namespace fs = std::filesystem;

struct FileStat {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t mtime_ms = 0;
};

Result<FileStat> stat_file(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(platform::fs_path(path), ec);
  if (ec) return make_error(ErrorKind::model_not_found, "cannot open model file '" + path + "': " + ec.message());
  const auto mtime_ns = platform::file_mtime_ns(path);
  if (!mtime_ns) return mtime_ns.error();
  return FileStat{size, *mtime_ns, *mtime_ns / 1'000'000};
}

// Ollama's digest is the sha256 of a manifest; clients only need a stable id
// of at least 12 hex chars (`ollama list` prints Digest[:12] and panics on a
// shorter one) that changes with the model. Hashing a 40 GB file on every
// start would take minutes, so this is SHA-1 (the hash at hand, header-only
// in Boost) over the size and the first and last MiB: the header and the last
// tensors. Two files of one size that differ only in the middle collide,
// which no re-download or re-quantization does.
Result<std::string> content_digest(const std::string& path, uint64_t size) {
  constexpr uint64_t kChunk = 1 << 20;
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::io, "cannot read model file '" + path + "'");
  boost::uuids::detail::sha1 sha;
  const std::string size_text = std::to_string(size) + "\n";
  sha.process_bytes(size_text.data(), size_text.size());
  std::string buf(static_cast<size_t>(std::min(size, kChunk)), '\0');
  for (const uint64_t offset : {uint64_t{0}, size - buf.size()}) {
    in.clear();
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    sha.process_bytes(buf.data(), static_cast<size_t>(in.gcount()));  // a file cut since stat: what is left
  }
  boost::uuids::detail::sha1::digest_type digest;
  sha.get_digest(digest);
  std::string hex;
  for (const auto word : digest) {  // 32-bit words in Boost 1.74, bytes in later versions
    for (int shift = static_cast<int>(sizeof word) * 8 - 4; shift >= 0; shift -= 4)
      hex += "0123456789abcdef"[(static_cast<uint64_t>(word) >> shift) & 0xF];
  }
  return hex;
}

bool contains(const std::string& text, std::string_view what) {
  return text.find(what) != std::string::npos;
}

bool has_key(const gguf::Info& info, const std::string& key) {
  return std::any_of(info.metadata.begin(), info.metadata.end(), [&](const auto& kv) { return kv.first == key; });
}

// Ollama's rules (server/images.go), on the config, the GGUF and its Jinja
// template:
// - "embedding" first when the config says so (`embeddings = true`, as an
//   Ollama model's config capabilities come first); the rest as below, so a
//   chat GGUF started with --embeddings lists "completion" too (llama-server
//   still chats then; Ollama appends completion whenever pooling_type is absent);
// - "embedding" when <arch>.pooling_type is present, and then nothing else:
//   an embedding GGUF often carries the chat template of the model it was
//   tuned from (Qwen3-Embedding's mentions tools and <think>) but cannot chat;
// - otherwise "completion", "vision" / "audio" from the encoder keys of the
//   model or of its projector, "tools" when the template mentions tools or
//   tool_call, "thinking" when it has <think> and </think>;
// - "insert" (generate with a suffix): Ollama looks for .Suffix in its Go
//   template, which a Jinja chat template never has. llama-server fills in the
//   middle (/infill) when the vocabulary has FIM prefix and suffix tokens, by
//   id or by a known text, so that is the rule here (gguf::Info::fim).
std::vector<std::string> capabilities(const gguf::Info& info, bool declares_pooling, const gguf::Info* projector,
                                      bool embeddings) {
  if (declares_pooling) return {"embedding"};
  std::vector<std::string> caps;
  if (embeddings) caps.emplace_back("embedding");
  caps.emplace_back("completion");
  if (info.vision || (projector && projector->vision)) caps.emplace_back("vision");
  if (info.audio || (projector && projector->audio)) caps.emplace_back("audio");
  const std::string& t = info.chat_template;
  if (contains(t, "tools") || contains(t, "tool_call")) caps.emplace_back("tools");
  if (info.fim) caps.emplace_back("insert");
  if (contains(t, "<think>") && contains(t, "</think>")) caps.emplace_back("thinking");
  return caps;
}

std::string parameter_line(const std::string& key, const std::string& value) {
  return key + std::string(key.size() < 30 ? 30 - key.size() : 0, ' ') + " " + value;
}

std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string parameters_text(const gguf::Info& info, int64_t context) {
  std::vector<std::string> lines;
  if (context > 0) lines.push_back(parameter_line("num_ctx", std::to_string(context)));
  if (info.eos_token && !info.eos_token->empty()) lines.push_back(parameter_line("stop", quoted(*info.eos_token)));
  if (info.eot_token && !info.eot_token->empty() && info.eot_token != info.eos_token)
    lines.push_back(parameter_line("stop", quoted(*info.eot_token)));
  return join(lines, "\n");
}

nlohmann::json details_json(const gguf::Info& info) {
  return {
      {"parent_model", ""},
      {"format", "gguf"},
      {"family", info.architecture},
      {"families", info.architecture.empty() ? nlohmann::json::array() : nlohmann::json::array({info.architecture})},
      {"parameter_size", info.parameter_count ? human_number(*info.parameter_count) : ""},
      {"quantization_level", quantization_name(info.file_type)},
  };
}

nlohmann::json model_info_json(const gguf::Info& info) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : info.metadata) out[key] = value;
  if (info.parameter_count && !out.contains("general.parameter_count"))
    out["general.parameter_count"] = *info.parameter_count;
  return out;
}

ModelCard make_card(const std::string& name, const gguf::Info& info, int64_t context, const gguf::Info* projector,
                    bool embeddings) {
  ModelCard card;
  card.name = tagged_name(name);
  card.details = details_json(info);
  card.model_info = model_info_json(info);
  card.declares_pooling = has_key(info, info.architecture + ".pooling_type");
  card.capabilities = capabilities(info, card.declares_pooling, projector, embeddings);
  card.template_text = info.chat_template;
  card.parameters = parameters_text(info, context);
  card.context_length = info.context_length;
  card.embedding_length = info.embedding_length;
  return card;
}

Result<std::vector<int64_t>> stamp(const std::string& path, const std::string& projector) {
  auto model = stat_file(path);
  if (!model) return model.error();
  std::vector<int64_t> out = {static_cast<int64_t>(model->size), model->mtime_ns};
  if (!projector.empty()) {
    // A missing projector is a state of its own, so that its arrival re-reads.
    const auto p = stat_file(projector);
    out.push_back(p ? static_cast<int64_t>(p->size) : -1);
    out.push_back(p ? p->mtime_ns : -1);
  }
  return out;
}

}  // namespace

std::string human_number(uint64_t n) {
  const auto scaled = [](double value, int decimals, const char* suffix) {
    if (value == std::floor(value)) decimals = 0;
    std::array<char, 48> buf{};
    std::snprintf(buf.data(), buf.size(), "%.*f%s", decimals, value, suffix);
    return std::string(buf.data());
  };
  if (n >= 1'000'000'000) return scaled(static_cast<double>(n) / 1e9, 1, "B");
  if (n >= 1'000'000) return scaled(static_cast<double>(n) / 1e6, 2, "M");
  if (n >= 1'000) return scaled(static_cast<double>(n) / 1e3, 0, "K");
  return std::to_string(n);
}

std::string quantization_name(std::optional<uint32_t> file_type) {
  if (!file_type) return "unknown";
  // llama.h's llama_ftype, named as Ollama's fs/ggml FileType.String() names
  // them. 4 was llama.cpp's long-gone Q4_1_SOME_F16; Ollama reuses it for
  // MXFP4 (its gpt-oss blobs), and those blobs are GGUFs llamactl can serve.
  switch (*file_type) {
    // clang-format off
    case 0: return "F32";       case 1: return "F16";       case 2: return "Q4_0";
    case 3: return "Q4_1";      case 4: return "MXFP4";     case 7: return "Q8_0";
    case 8: return "Q5_0";      case 9: return "Q5_1";      case 10: return "Q2_K";
    case 11: return "Q3_K_S";   case 12: return "Q3_K_M";   case 13: return "Q3_K_L";
    case 14: return "Q4_K_S";   case 15: return "Q4_K_M";   case 16: return "Q5_K_S";
    case 17: return "Q5_K_M";   case 18: return "Q6_K";     case 19: return "IQ2_XXS";
    case 20: return "IQ2_XS";   case 21: return "Q2_K_S";   case 22: return "IQ3_XS";
    case 23: return "IQ3_XXS";  case 24: return "IQ1_S";    case 25: return "IQ4_NL";
    case 26: return "IQ3_S";    case 27: return "IQ3_M";    case 28: return "IQ2_S";
    case 29: return "IQ2_M";    case 30: return "IQ4_XS";   case 31: return "IQ1_M";
    case 32: return "BF16";     case 36: return "TQ1_0";    case 37: return "TQ2_0";
    case 38: return "MXFP4_MOE"; case 39: return "NVFP4";   case 40: return "Q1_0";
    // clang-format on
    default:
      return "unknown";
  }
}

std::string tagged_name(const std::string& name) {
  // A ':' before the last '/' is a registry port, not a tag.
  const auto colon = name.rfind(':');
  const auto slash = name.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) return name;
  return name + ":latest";
}

std::string projector_path(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--mmproj" || a == "-mm") && i + 1 < args.size()) return args[i + 1];
    for (const std::string_view flag : {"--mmproj=", "-mm="})
      if (starts_with(a, flag)) return a.substr(flag.size());
  }
  return "";
}

Result<ModelCard> describe(const std::string& name, const std::string& path, int64_t context,
                           const std::string& projector, bool embeddings) {
  const auto st = stat_file(path);
  if (!st) return st.error();
  const auto info = gguf::read_file(path);
  if (!info) return info.error();
  auto digest = content_digest(path, st->size);
  if (!digest) return digest.error();
  std::optional<gguf::Info> projector_info;
  if (!projector.empty()) {
    if (auto p = gguf::read_file(projector)) projector_info = std::move(*p);
  }
  ModelCard card = make_card(name, *info, context, projector_info ? &*projector_info : nullptr, embeddings);
  card.digest = std::move(*digest);
  card.size = st->size;
  card.modified_ms = st->mtime_ms;
  return card;
}

ModelCatalog::ModelCatalog() : ModelCatalog(std::clamp(std::thread::hardware_concurrency(), 1U, 4U)) {}

ModelCatalog::ModelCatalog(size_t workers, std::function<void(const std::string&)> before_read)
    : worker_count_(std::max<size_t>(workers, 1)), before_read_(std::move(before_read)) {}

ModelCatalog::~ModelCatalog() {
  stop();
}

Result<std::shared_ptr<const ModelCard>> ModelCatalog::get(const std::string& name, const std::string& path,
                                                           int64_t context, const std::string& projector,
                                                           bool embeddings) {
  return get(ModelSource{name, path, context, projector, embeddings});
}

Result<std::shared_ptr<const ModelCard>> ModelCatalog::get(const ModelSource& model) {
  // Stamped before reading: a file that changes during describe() has a newer
  // stamp next time and is read again.
  auto now = stamp(model.path, model.projector);
  std::unique_lock lock(mutex_);
  if (!now) {
    entries_.erase(model.name);
    return now.error();
  }
  for (;;) {
    const auto it = entries_.find(model.name);
    if (it != entries_.end() && it->second.path == model.path && it->second.projector == model.projector &&
        it->second.context == model.context && it->second.embeddings == model.embeddings && it->second.stamp == *now)
      return it->second.card;
    if (reading_.count(model.name) == 0) break;
    // Another thread reads this model's files: wait for that one read (it
    // most likely makes the card asked for), then look again.
    done_cv_.wait(lock);
  }
  return read(model, std::move(*now), lock);
}

// Called with `lock` held and model.name not in reading_; returns with it held.
Result<std::shared_ptr<const ModelCard>> ModelCatalog::read(const ModelSource& model, std::vector<int64_t> stamp,
                                                            std::unique_lock<std::mutex>& lock) {
  reading_.insert(model.name);
  std::optional<Result<ModelCard>> card;
  try {
    lock.unlock();
    if (before_read_) before_read_(model.name);
    card.emplace(describe(model.name, model.path, model.context, model.projector, model.embeddings));
    lock.lock();
  } catch (...) {
    // Whoever waits for this read must not wait forever.
    if (!lock.owns_lock()) lock.lock();
    reading_.erase(model.name);
    done_cv_.notify_all();
    throw;
  }
  reading_.erase(model.name);
  ++reads_;
  done_cv_.notify_all();
  if (!*card) return card->error();
  auto shared = std::make_shared<const ModelCard>(std::move(**card));
  entries_[model.name] = Entry{model.path, model.projector, model.context, model.embeddings, std::move(stamp), shared};
  return shared;
}

void ModelCatalog::warm(std::vector<ModelSource> models) {
  std::lock_guard lock(mutex_);
  if (stopping_) return;
  std::set<std::string> names;
  for (const auto& m : models) names.insert(m.name);
  for (auto it = entries_.begin(); it != entries_.end();)
    it = names.count(it->first) ? std::next(it) : entries_.erase(it);
  queue_.assign(std::make_move_iterator(models.begin()), std::make_move_iterator(models.end()));
  while (workers_.size() < worker_count_) workers_.emplace_back([this] { work(); });
  work_cv_.notify_all();
}

void ModelCatalog::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const ModelSource model = std::move(queue_.front());
    queue_.pop_front();
    ++busy_;
    lock.unlock();
    // get(): a card already read and unchanged costs a stat; one that a
    // request is reading now is waited for, not read twice. Errors are the
    // requests' to report (/api/tags names the model it leaves out).
    try {
      if (auto card = get(model); !card) log::debug("model card of {}: {}", model.name, card.error().message);
    } catch (const std::exception& e) {
      log::warn("model card of {}: {}", model.name, e.what());
    }
    lock.lock();
    --busy_;
    if (busy_ == 0 && queue_.empty()) done_cv_.notify_all();
  }
}

void ModelCatalog::stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
    workers.swap(workers_);
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (auto& w : workers) w.join();
}

bool ModelCatalog::wait_warm(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return done_cv_.wait_for(lock, timeout, [this] { return queue_.empty() && busy_ == 0; });
}

uint64_t ModelCatalog::reads() const {
  std::lock_guard lock(mutex_);
  return reads_;
}

}  // namespace llamactl::serve
