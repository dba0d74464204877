#include <gtest/gtest.h>

#include "gguf/gguf.h"
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
