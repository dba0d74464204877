#pragma once
// Reads the header of a GGUF model file: the metadata that decides how much
// memory the model needs (layers, heads, embedding size, training context).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace llamactl::gguf {

struct Info {
  uint32_t version = 0;
  std::string architecture;  // "llama", "qwen2", ...
  std::string name;          // general.name, may be empty
  uint64_t tensor_count = 0;
  uint64_t tensor_bytes = 0;  // sum of tensor data sizes when every type is known, else 0
  std::optional<uint64_t> block_count;
  std::optional<uint64_t> context_length;
  std::optional<uint64_t> embedding_length;
  std::optional<uint64_t> head_count;
  std::optional<uint64_t> head_count_kv;  // max over layers when given per layer
  std::optional<uint64_t> key_length;
  std::optional<uint64_t> value_length;
};

/// Parses a GGUF header held in `bytes` (the start of the file). Error
/// (kind parse) names what is wrong: bad magic, unsupported version,
/// truncated header ("needs more bytes"), absurd counts.
Result<Info> parse(std::string_view bytes);

/// Reads enough of the file at `path` and parses it. Error kind
/// model_not_found when the file cannot be opened.
Result<Info> read_file(const std::string& path);

/// Bytes of KV cache (f16 K and V) for `context` tokens; nullopt when the
/// header lacks the sizes.
std::optional<uint64_t> kv_cache_bytes(const Info& info, uint64_t context);

}  // namespace llamactl::gguf
