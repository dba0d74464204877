#include "unit/gguf_writer.h"

#include <fstream>

namespace llamactl::testing {
namespace {

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_str(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
void kv_u32(std::string& out, const std::string& key, uint32_t v) {
  put_str(out, key);
  put<uint32_t>(out, 4);
  put<uint32_t>(out, v);
}
void kv_str(std::string& out, const std::string& key, const std::string& v) {
  put_str(out, key);
  put<uint32_t>(out, 8);
  put_str(out, v);
}

}  // namespace

std::string make_gguf(const GgufSpec& s) {
  std::string out = "GGUF";
  put<uint32_t>(out, 3);
  put<uint64_t>(out, s.tensors.size());
  put<uint64_t>(out, 8);  // kv count
  kv_str(out, "general.architecture", s.architecture);
  kv_str(out, "general.name", s.name);
  const std::string a = s.architecture + ".";
  kv_u32(out, a + "block_count", static_cast<uint32_t>(s.block_count));
  kv_u32(out, a + "context_length", static_cast<uint32_t>(s.context_length));
  kv_u32(out, a + "embedding_length", static_cast<uint32_t>(s.embedding_length));
  kv_u32(out, a + "attention.head_count", static_cast<uint32_t>(s.head_count));
  kv_u32(out, a + "attention.head_count_kv", static_cast<uint32_t>(s.head_count_kv));
  // An array value (as tokenizers have) to exercise skipping.
  put_str(out, "tokenizer.ggml.tokens");
  put<uint32_t>(out, 9);
  put<uint32_t>(out, 8);
  put<uint64_t>(out, 3);
  for (const char* t : {"<s>", "</s>", "hello"}) put_str(out, t);
  uint64_t offset = 0;
  for (const auto& [name, dims] : s.tensors) {
    put_str(out, name);
    put<uint32_t>(out, static_cast<uint32_t>(dims.size()));
    uint64_t n = 1;
    for (auto d : dims) {
      put<uint64_t>(out, d);
      n *= d;
    }
    put<uint32_t>(out, s.tensor_type);
    put<uint64_t>(out, offset);
    offset += n * 2;
  }
  out.append(s.data_bytes, '\0');
  return out;
}

void write_gguf(const std::string& path, const GgufSpec& spec) {
  std::ofstream(path, std::ios::binary) << make_gguf(spec);
}

}  // namespace llamactl::testing
