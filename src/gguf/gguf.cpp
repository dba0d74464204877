#include "gguf/gguf.h"

#include <cstring>
#include <fstream>
#include <vector>

namespace llamactl::gguf {
namespace {

enum Type : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

size_t scalar_size(uint32_t t) {
  switch (t) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
      return 8;
    default:
      return 0;
  }
}

struct Truncated {};
struct Malformed {
  std::string what;
};

class Reader {
 public:
  Reader(std::string_view b, uint32_t version) : b_(b), version_(version) {}
  void set_version(uint32_t v) { version_ = v; }

  template <class T>
  T read() {
    if (b_.size() - pos_ < sizeof(T)) throw Truncated{};
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));  // GGUF is little-endian, as is every target
    pos_ += sizeof(T);
    return v;
  }
  uint64_t read_count() { return version_ == 1 ? read<uint32_t>() : read<uint64_t>(); }
  std::string_view read_string() {
    const uint64_t n = read_count();
    if (n > (1u << 24)) throw Malformed{"string of " + std::to_string(n) + " bytes"};
    if (b_.size() - pos_ < n) throw Truncated{};
    const std::string_view s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void skip(uint64_t n) {
    if (b_.size() - pos_ < n) throw Truncated{};
    pos_ += n;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view b_;
  size_t pos_ = 0;
  uint32_t version_;
};

std::optional<uint64_t> read_uint(Reader& r, uint32_t type) {
  switch (type) {
    case kU8:
      return r.read<uint8_t>();
    case kI8: {
      auto v = r.read<int8_t>();
      return v < 0 ? std::nullopt : std::optional<uint64_t>(v);
    }
    case kU16:
      return r.read<uint16_t>();
    case kI16: {
      auto v = r.read<int16_t>();
      return v < 0 ? std::nullopt : std::optional<uint64_t>(v);
    }
    case kU32:
      return r.read<uint32_t>();
    case kI32: {
      auto v = r.read<int32_t>();
      return v < 0 ? std::nullopt : std::optional<uint64_t>(v);
    }
    case kU64:
      return r.read<uint64_t>();
    case kI64: {
      auto v = r.read<int64_t>();
      return v < 0 ? std::nullopt : std::optional<uint64_t>(v);
    }
    default:
      return std::nullopt;
  }
}

// Reads (or skips) one value. Integer scalars and the max of integer arrays
// come back as a number, strings through `text`.
std::optional<uint64_t> read_value(Reader& r, uint32_t type, std::string* text, int depth = 0) {
  if (type == kString) {
    const auto s = r.read_string();
    if (text) *text = std::string(s);
    return std::nullopt;
  }
  if (type == kArray) {
    if (depth > 2) throw Malformed{"nested arrays too deep"};
    const uint32_t item = r.read<uint32_t>();
    const uint64_t n = r.read_count();
    if (n > (1u << 26)) throw Malformed{"array of " + std::to_string(n) + " items"};
    std::optional<uint64_t> max;
    if (const size_t sz = scalar_size(item); sz && item != kF32 && item != kF64 && item != kBool) {
      for (uint64_t i = 0; i < n; ++i) {
        const auto v = read_uint(r, item);
        if (v && (!max || *v > *max)) max = v;
      }
      return max;
    }
    for (uint64_t i = 0; i < n; ++i) read_value(r, item, nullptr, depth + 1);
    return std::nullopt;
  }
  const size_t sz = scalar_size(type);
  if (!sz) throw Malformed{"unknown value type " + std::to_string(type)};
  if (type == kF32 || type == kF64 || type == kBool) {
    r.skip(sz);
    return std::nullopt;
  }
  return read_uint(r, type);
}

// Bytes per block and elements per block of ggml tensor types (ggml.c's
// type_traits). Unknown types make tensor_bytes 0: the file size is used then.
std::optional<std::pair<uint64_t, uint64_t>> type_block(uint32_t t) {
  switch (t) {
    case 0:
      return std::pair{4, 1};  // F32
    case 1:
      return std::pair{2, 1};  // F16
    case 2:
      return std::pair{18, 32};  // Q4_0
    case 3:
      return std::pair{20, 32};  // Q4_1
    case 6:
      return std::pair{22, 32};  // Q5_0
    case 7:
      return std::pair{24, 32};  // Q5_1
    case 8:
      return std::pair{34, 32};  // Q8_0
    case 10:
      return std::pair{84, 256};  // Q2_K
    case 11:
      return std::pair{110, 256};  // Q3_K
    case 12:
      return std::pair{144, 256};  // Q4_K
    case 13:
      return std::pair{176, 256};  // Q5_K
    case 14:
      return std::pair{210, 256};  // Q6_K
    case 15:
      return std::pair{292, 256};  // Q8_K
    case 30:
      return std::pair{2, 1};  // BF16
    default:
      return std::nullopt;
  }
}

}  // namespace

Result<Info> parse(std::string_view bytes) {
  Info info;
  Reader r(bytes, 3);
  try {
    if (bytes.size() < 4 || bytes.substr(0, 4) != "GGUF")
      return make_error(ErrorKind::parse, "not a GGUF file (bad magic)");
    r.skip(4);
    info.version = r.read<uint32_t>();
    if (info.version < 1 || info.version > 3)
      return make_error(ErrorKind::parse, "unsupported GGUF version " + std::to_string(info.version));
    r.set_version(info.version);
    info.tensor_count = r.read_count();
    const uint64_t kv_count = r.read_count();
    if (info.tensor_count > (1u << 20) || kv_count > (1u << 20))
      return make_error(ErrorKind::parse, "implausible GGUF header counts");

    struct Pending {
      std::string key;
      uint64_t value;
    };
    std::vector<Pending> numbers;
    for (uint64_t i = 0; i < kv_count; ++i) {
      const std::string key(r.read_string());
      const uint32_t type = r.read<uint32_t>();
      std::string text;
      const auto v = read_value(r, type, &text);
      if (key == "general.architecture")
        info.architecture = text;
      else if (key == "general.name")
        info.name = text;
      else if (v)
        numbers.push_back({key, *v});
    }
    // Per-architecture keys: "<arch>.block_count" etc.
    const std::string a = info.architecture + ".";
    for (const auto& [key, v] : numbers) {
      if (key == a + "block_count")
        info.block_count = v;
      else if (key == a + "context_length")
        info.context_length = v;
      else if (key == a + "embedding_length")
        info.embedding_length = v;
      else if (key == a + "attention.head_count")
        info.head_count = v;
      else if (key == a + "attention.head_count_kv")
        info.head_count_kv = v;
      else if (key == a + "attention.key_length")
        info.key_length = v;
      else if (key == a + "attention.value_length")
        info.value_length = v;
    }
    uint64_t total = 0;
    bool all_known = true;
    for (uint64_t i = 0; i < info.tensor_count; ++i) {
      r.read_string();
      const uint32_t n_dims = r.read<uint32_t>();
      if (n_dims > 8) return make_error(ErrorKind::parse, "tensor with " + std::to_string(n_dims) + " dimensions");
      uint64_t elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t dim = r.read<uint64_t>();
        if (dim != 0 && elements > UINT64_MAX / dim) return make_error(ErrorKind::parse, "tensor size overflows");
        elements *= dim;
      }
      const uint32_t type = r.read<uint32_t>();
      r.read<uint64_t>();  // offset
      if (const auto blk = type_block(type)) {
        total += elements / blk->second * blk->first;
      } else {
        all_known = false;
      }
    }
    info.tensor_bytes = all_known ? total : 0;
  } catch (const Truncated&) {
    return make_error(ErrorKind::parse,
                      "GGUF header truncated at byte " + std::to_string(r.pos()) + " (needs more bytes)");
  } catch (const Malformed& m) {
    return make_error(ErrorKind::parse, "malformed GGUF header: " + m.what);
  }
  return info;
}

Result<Info> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::model_not_found, "cannot open model file '" + path + "'");
  // Headers with a large vocabulary run to several MiB; read in growing chunks.
  std::string buf;
  for (size_t want = 1 << 20; want <= (size_t{128} << 20); want *= 4) {
    buf.resize(want);
    in.clear();
    in.seekg(0);
    in.read(buf.data(), static_cast<std::streamsize>(want));
    buf.resize(static_cast<size_t>(in.gcount()));
    auto info = parse(buf);
    if (info.ok() || buf.size() < want || info.error().message.find("needs more bytes") == std::string::npos) {
      if (!info.ok()) return make_error(ErrorKind::model_not_found, path + ": " + info.error().message);
      return info;
    }
  }
  return make_error(ErrorKind::model_not_found, path + ": GGUF header larger than 128 MiB");
}

std::optional<uint64_t> kv_cache_bytes(const Info& info, uint64_t context) {
  if (!info.block_count || !info.embedding_length || !info.head_count || *info.head_count == 0) return std::nullopt;
  const uint64_t heads_kv = info.head_count_kv.value_or(*info.head_count);
  const uint64_t head_dim = *info.embedding_length / *info.head_count;
  const uint64_t k = info.key_length.value_or(head_dim), v = info.value_length.value_or(head_dim);
  return *info.block_count * context * heads_kv * (k + v) * 2;  // f16 K and V
}

}  // namespace llamactl::gguf
