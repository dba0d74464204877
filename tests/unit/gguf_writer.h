#pragma once
// Writes small but valid GGUF files for tests (no real weights needed).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llamactl::testing {

struct GgufSpec {
  std::string architecture = "llama";
  std::string name = "tiny";
  uint64_t block_count = 2;
  uint64_t context_length = 2048;
  uint64_t embedding_length = 64;
  uint64_t head_count = 4;
  uint64_t head_count_kv = 2;
  std::vector<std::pair<std::string, std::vector<uint64_t>>> tensors = {{"token_embd.weight", {64, 256}}};
  uint32_t tensor_type = 1;  // F16
  size_t data_bytes = 0;     // zero bytes appended after the header (stands in for weights)
};

std::string make_gguf(const GgufSpec& spec);
void write_gguf(const std::string& path, const GgufSpec& spec);

}  // namespace llamactl::testing
