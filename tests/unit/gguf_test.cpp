#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "support/temp_dir.h"
#include "unit/gguf_writer.h"

using namespace llamactl;

TEST(Gguf, ReadsArchitectureAndSizes) {
  llamactl::testing::GgufSpec spec;
  spec.block_count = 32;
  spec.embedding_length = 4096;
  spec.head_count = 32;
  spec.head_count_kv = 8;
  spec.context_length = 8192;
  spec.tensors = {{"a", {4096, 4096}}, {"b", {4096}}};
  auto info = gguf::parse(llamactl::testing::make_gguf(spec));
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->version, 3u);
  EXPECT_EQ(info->architecture, "llama");
  EXPECT_EQ(info->name, "tiny");
  EXPECT_EQ(info->block_count, 32u);
  EXPECT_EQ(info->context_length, 8192u);
  EXPECT_EQ(info->head_count_kv, 8u);
  EXPECT_EQ(info->tensor_count, 2u);
  EXPECT_EQ(info->tensor_bytes, (4096u * 4096u + 4096u) * 2u);  // F16
  // Llama-2/3-8B-like: 32 layers * 4096 ctx * 8 kv heads * (128 + 128) * 2 bytes = 512 MiB.
  EXPECT_EQ(gguf::kv_cache_bytes(*info, 4096), uint64_t{512} * 1024 * 1024);
}

TEST(Gguf, RejectsBadInput) {
  EXPECT_FALSE(gguf::parse("").ok());
  EXPECT_FALSE(gguf::parse("GGML0000").ok());
  auto good = llamactl::testing::make_gguf({});
  for (size_t cut : {4u, 8u, 20u, 40u, 100u}) {
    auto r = gguf::parse(std::string_view(good).substr(0, cut));
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
  }
  std::string bad_version = good;
  bad_version[4] = 9;
  EXPECT_FALSE(gguf::parse(bad_version).ok());
}

TEST(Gguf, MissingFileIsModelNotFound) {
  auto r = gguf::read_file("/nonexistent/model.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::model_not_found);
}

namespace {

using llamactl::testing::GgufSpec;
using llamactl::testing::make_gguf;
using nlohmann::json;
namespace t = llamactl::testing;

const json* find_kv(const gguf::Info& info, const std::string& key) {
  for (const auto& [k, v] : info.metadata)
    if (k == key) return &v;
  return nullptr;
}

std::vector<std::string> numbered(const std::string& prefix, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

}  // namespace

TEST(Gguf, MetadataKeepsEveryKvInFileOrderWithJsonTypes) {
  GgufSpec spec;
  spec.extra = {t::kv_i32("test.negative", -3),        t::kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f),
                t::kv_bool("test.flag", true),         t::kv_u64("general.parameter_count", 1234),
                t::kv_strings("test.few", {"a", "b"}), t::kv_i32s("test.ints", {1, -2, 3})};
  auto info = gguf::parse(make_gguf(spec));
  ASSERT_TRUE(info.ok()) << info.error().message;
  std::vector<std::string> keys;
  for (const auto& [k, v] : info->metadata) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "general.architecture", "general.name", "llama.block_count", "llama.context_length",
                      "llama.embedding_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                      "tokenizer.ggml.tokens", "test.negative", "llama.attention.layer_norm_rms_epsilon", "test.flag",
                      "general.parameter_count", "test.few", "test.ints"}));
  EXPECT_EQ(*find_kv(*info, "general.architecture"), "llama");
  EXPECT_EQ(*find_kv(*info, "llama.block_count"), 2);
  EXPECT_EQ(*find_kv(*info, "test.negative"), -3);
  // A float32 keeps its shortest decimal form (1e-05, not 9.99999974737875e-06).
  EXPECT_EQ(find_kv(*info, "llama.attention.layer_norm_rms_epsilon")->dump(), "1e-05");
  EXPECT_EQ(*find_kv(*info, "test.flag"), true);
  EXPECT_EQ(*find_kv(*info, "tokenizer.ggml.tokens"), json({"<s>", "</s>", "hello"}));
  EXPECT_EQ(*find_kv(*info, "test.few"), json({"a", "b"}));
  EXPECT_EQ(*find_kv(*info, "test.ints"), json({1, -2, 3}));
  EXPECT_EQ(info->parameter_count, 1234u);  // the KV wins over the tensors
}

TEST(Gguf, ArraysOverSixtyFourItemsAreEmptyButStillRead) {
  GgufSpec spec;
  spec.tokens = numbered("t", 65);
  std::vector<int32_t> per_layer(80, 2);
  per_layer[40] = 8;  // the largest per-layer KV head count decides the KV cache size
  spec.extra = {
      t::kv_strings("test.sixty_four", numbered("s", 64)), t::kv_i32s("llama.attention.head_count_kv", per_layer),
      t::kv_raw("test.floats", 9,
                std::string("\x06\0\0\0", 4) + std::string("\x64\0\0\0\0\0\0\0", 8) + std::string(100 * 4, '\0')),
      t::kv_string("test.after", "still read")};
  auto info = gguf::parse(make_gguf(spec));
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(*find_kv(*info, "tokenizer.ggml.tokens"), json::array());
  EXPECT_EQ(find_kv(*info, "test.sixty_four")->size(), 64u);
  EXPECT_EQ(*find_kv(*info, "test.floats"), json::array());
  // head_count_kv appears twice (the writer's u32 2, then the array): the last wins.
  EXPECT_EQ(info->head_count_kv, 8u);
  EXPECT_EQ(*find_kv(*info, "test.after"), "still read");
}

TEST(Gguf, DerivedFieldsForShow) {
  GgufSpec spec;
  spec.tokens = {"<s>", "</s>", "<|eot_id|>", "<|fim_prefix|>", "<|fim_suffix|>"};
  spec.tensors = {{"a", {64, 256}}, {"b", {64}}};
  spec.extra = {t::kv_u32("general.file_type", 15),
                t::kv_string("tokenizer.chat_template", "{% if tools %}x{% endif %}"),
                t::kv_u32("llama.pooling_type", 1),
                t::kv_u32("tokenizer.ggml.eos_token_id", 1),
                t::kv_u32("tokenizer.ggml.eot_token_id", 2),
                t::kv_u32("llama.vision.block_count", 24)};
  auto info = gguf::parse(make_gguf(spec));
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->file_type, 15u);
  EXPECT_EQ(info->parameter_count, 64u * 256u + 64u);  // no KV: the tensors' elements
  EXPECT_EQ(info->chat_template, "{% if tools %}x{% endif %}");
  EXPECT_EQ(info->pooling_type, 1u);
  EXPECT_EQ(info->eos_token, "</s>");
  EXPECT_EQ(info->eot_token, "<|eot_id|>");
  EXPECT_TRUE(info->vision);
  EXPECT_FALSE(info->audio);
  EXPECT_TRUE(info->fim);  // Qwen's FIM token texts, as llama.cpp finds them without ids

  auto plain = gguf::parse(make_gguf({}));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->file_type);
  EXPECT_EQ(plain->chat_template, "");
  EXPECT_FALSE(plain->pooling_type);
  EXPECT_FALSE(plain->eos_token);
  EXPECT_FALSE(plain->vision);
  EXPECT_FALSE(plain->fim);
}

TEST(Gguf, FimNeedsPrefixAndSuffix) {
  GgufSpec ids;
  ids.extra = {t::kv_u32("tokenizer.ggml.fim_pre_token_id", 0), t::kv_u32("tokenizer.ggml.fim_suf_token_id", 1)};
  EXPECT_TRUE(gguf::parse(make_gguf(ids))->fim);
  GgufSpec prefix_only;
  prefix_only.extra = {t::kv_u32("tokenizer.ggml.fim_pre_token_id", 0)};
  EXPECT_FALSE(gguf::parse(make_gguf(prefix_only))->fim);
  GgufSpec text_prefix_only;
  text_prefix_only.tokens = {"<PRE>", "<MID>"};
  EXPECT_FALSE(gguf::parse(make_gguf(text_prefix_only))->fim);
}

TEST(Gguf, ProjectorEncoders) {
  GgufSpec clip;
  clip.architecture = "clip";
  clip.extra = {t::kv_bool("clip.has_vision_encoder", false), t::kv_bool("clip.has_audio_encoder", true)};
  auto info = gguf::parse(make_gguf(clip));
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->vision);
  EXPECT_TRUE(info->audio);
  clip.extra = {t::kv_bool("clip.has_vision_encoder", true)};
  EXPECT_TRUE(gguf::parse(make_gguf(clip))->vision);
}

TEST(Gguf, BadUtf8BecomesReplacementCharacter) {
  GgufSpec spec;
  spec.extra = {t::kv_string("test.bad", "a\xff\xc3"), t::kv_string("test.good", "caf\xc3\xa9")};
  auto info = gguf::parse(make_gguf(spec));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(*find_kv(*info, "test.bad"), "a\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(*find_kv(*info, "test.good"), "caf\xc3\xa9");
  for (const auto& [k, v] : info->metadata) EXPECT_NO_THROW((void)v.dump()) << k;
}

TEST(Gguf, AnyBoolByteIsABool) {
  GgufSpec spec;
  spec.extra = {t::kv_raw("test.flag", 7, "\x02")};
  auto info = gguf::parse(make_gguf(spec));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(*find_kv(*info, "test.flag"), true);
}

TEST(Gguf, MalformedMetadataIsNamed) {
  const auto error_for = [](const llamactl::testing::GgufKv& kv) {
    GgufSpec spec;
    spec.extra = {kv};
    auto r = gguf::parse(make_gguf(spec));
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.ok() ? ErrorKind::usage : r.error().kind, ErrorKind::parse);
    return r.ok() ? std::string() : r.error().message;
  };
  const auto u32 = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  const auto u64 = [](uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); };
  EXPECT_NE(error_for(t::kv_raw("k", 99, "")).find("unknown value type 99"), std::string::npos);
  EXPECT_NE(error_for(t::kv_raw("k", 9, u32(42) + u64(0))).find("unknown array item type 42"), std::string::npos);
  EXPECT_NE(error_for(t::kv_raw("k", 9, u32(8) + u64(uint64_t{1} << 40))).find("array of"), std::string::npos);
  EXPECT_NE(error_for(t::kv_raw("k", 8, u64(uint64_t{1} << 30))).find("string of"), std::string::npos);
  std::string nested;
  for (int i = 0; i < 4; ++i) nested += u32(9) + u64(1);  // [[[[...]]]]
  EXPECT_NE(error_for(t::kv_raw("k", 9, nested + u32(4) + u64(0))).find("nested arrays too deep"), std::string::npos);
}

TEST(Gguf, ReadsLargeTokenizerHeaderFromFile) {
  // A 150k-token vocabulary makes a header of several MiB: read_file must grow
  // its buffer, here twice (1 MiB, 4 MiB, then 16 MiB).
  llamactl::testing::TempDir dir;
  GgufSpec spec;
  spec.tokens = numbered("a_token_of_some_thirty_bytes_", 150000);
  spec.extra = {t::kv_u32("tokenizer.ggml.eos_token_id", 149999)};
  spec.data_bytes = 4096;
  const std::string bytes = make_gguf(spec);
  ASSERT_GT(bytes.size(), size_t{4} << 20);
  llamactl::testing::write_gguf(dir / "big.gguf", spec);
  auto info = gguf::read_file(dir / "big.gguf");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->eos_token, "a_token_of_some_thirty_bytes_149999");
  EXPECT_EQ(*find_kv(*info, "tokenizer.ggml.tokens"), json::array());
  EXPECT_EQ(info->tensor_count, 1u);
}

TEST(Gguf, TruncatedFileNamesPath) {
  llamactl::testing::TempDir dir;
  const std::string bytes = make_gguf({});
  const std::string path = dir / "cut.gguf";
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto r = gguf::read_file(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}
