#include "serve/model_card.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.h"
#include "support/wait.h"
#include "unit/gguf_writer.h"

using namespace llamactl;
using nlohmann::json;
namespace t = llamactl::testing;
namespace fs = std::filesystem;

namespace {

// A Llama-3.2-like chat model: file type, parameter count, a template with
// tools and thinking, EOS and EOT tokens.
t::GgufSpec chat_spec() {
  t::GgufSpec spec;
  spec.tokens = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "hello"};
  spec.extra = {
      t::kv_u32("general.file_type", 15),
      t::kv_u64("general.parameter_count", 3212749888),
      t::kv_string("tokenizer.chat_template", "{% if tools %}{{ tools }}{% endif %}<think>{{ x }}</think>"),
      t::kv_u32("tokenizer.ggml.eos_token_id", 1),
      t::kv_u32("tokenizer.ggml.eot_token_id", 2),
  };
  return spec;
}

void set_mtime_ms(const std::string& path, int64_t ms) {
#ifdef _WIN32
  // MinGW's std::filesystem sets whole seconds only: the Win32 call keeps the milliseconds.
  HANDLE h = ::CreateFileA(path.c_str(), FILE_WRITE_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  ASSERT_NE(h, INVALID_HANDLE_VALUE);
  const int64_t ticks = ms * 10'000 + 116444736000000000;  // 100 ns since 1601
  const FILETIME ft{static_cast<DWORD>(ticks & 0xffffffff), static_cast<DWORD>(ticks >> 32)};
  EXPECT_TRUE(::SetFileTime(h, nullptr, nullptr, &ft));
  ::CloseHandle(h);
#else
  const auto sys = std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(ms));
  fs::last_write_time(path, std::chrono::file_clock::from_sys(sys));
#endif
}

}  // namespace

TEST(ModelCard, HumanNumberMatchesOllama) {
  // Ollama's format/format_test.go table, then real models.
  const std::vector<std::pair<uint64_t, std::string>> cases = {
      {0, "0"},
      {999, "999"},
      {1000, "1K"},
      {1001, "1K"},
      {1000000, "1M"},
      {125000000, "125M"},
      {500500000, "500.50M"},
      {500550000, "500.55M"},
      {1000000000, "1B"},
      {2800000000, "2.8B"},
      {2850000000, "2.9B"},
      {1000000000000, "1000B"},
      {8030261248, "8.0B"},    // Llama 3 8B: one decimal even when it is 0
      {3212749888, "3.2B"},    // Llama 3.2 3B
      {134515008, "134.52M"},  // SmolLM 135M: two decimals for M
      {22565376, "22.57M"},    // all-MiniLM-L6-v2
      {2500, "2K"},            // Go's %.0f rounds a tie to even
  };
  for (const auto& [n, want] : cases) EXPECT_EQ(serve::human_number(n), want) << n;
}

TEST(ModelCard, QuantizationNames) {
  EXPECT_EQ(serve::quantization_name(0), "F32");
  EXPECT_EQ(serve::quantization_name(1), "F16");
  EXPECT_EQ(serve::quantization_name(2), "Q4_0");
  EXPECT_EQ(serve::quantization_name(7), "Q8_0");
  EXPECT_EQ(serve::quantization_name(15), "Q4_K_M");
  EXPECT_EQ(serve::quantization_name(18), "Q6_K");
  EXPECT_EQ(serve::quantization_name(30), "IQ4_XS");
  EXPECT_EQ(serve::quantization_name(32), "BF16");
  EXPECT_EQ(serve::quantization_name(38), "MXFP4_MOE");
  EXPECT_EQ(serve::quantization_name(4), "MXFP4");    // Ollama's own gpt-oss blobs
  EXPECT_EQ(serve::quantization_name(5), "unknown");  // removed Q4_2
  EXPECT_EQ(serve::quantization_name(1024), "unknown");
  EXPECT_EQ(serve::quantization_name(std::nullopt), "unknown");
}

TEST(ModelCard, TaggedName) {
  EXPECT_EQ(serve::tagged_name("tiny"), "tiny:latest");
  EXPECT_EQ(serve::tagged_name("tiny:q4"), "tiny:q4");
  EXPECT_EQ(serve::tagged_name("hf.co/u/m:Q4_K_M"), "hf.co/u/m:Q4_K_M");
  EXPECT_EQ(serve::tagged_name("host:5000/m"), "host:5000/m:latest");  // a port is not a tag
}

TEST(ModelCard, ProjectorPathFromArgs) {
  EXPECT_EQ(serve::projector_path({"-ngl", "99", "--mmproj", "/m/p.gguf"}), "/m/p.gguf");
  EXPECT_EQ(serve::projector_path({"-mm", "/m/p.gguf"}), "/m/p.gguf");
  EXPECT_EQ(serve::projector_path({"--mmproj=/m/p.gguf"}), "/m/p.gguf");
  EXPECT_EQ(serve::projector_path({"--mmproj"}), "");  // no value
  EXPECT_EQ(serve::projector_path({"--no-mmproj", "-c", "4096"}), "");
}

TEST(ModelCard, DescribesChatModel) {
  t::TempDir dir;
  const std::string path = dir / "tiny.gguf";
  t::write_gguf(path, chat_spec());
  set_mtime_ms(path, 1714857464706);
  auto card = serve::describe("tiny", path, 4096);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_EQ(card->name, "tiny:latest");
  EXPECT_EQ(card->size, fs::file_size(path));
  EXPECT_EQ(card->modified_ms, 1714857464706);
  EXPECT_EQ(card->details, json::parse(R"({"parent_model":"","format":"gguf","family":"llama","families":["llama"],
                                           "parameter_size":"3.2B","quantization_level":"Q4_K_M"})"));
  ASSERT_TRUE(card->model_info.is_object());
  EXPECT_EQ(card->model_info["general.architecture"], "llama");
  EXPECT_EQ(card->model_info["general.parameter_count"], 3212749888u);
  EXPECT_EQ(card->model_info["llama.context_length"], 2048);
  EXPECT_EQ(card->model_info["tokenizer.ggml.tokens"].size(), 4u);  // small arrays are shown
  EXPECT_EQ(card->model_info.size(), 13u);                          // 8 written by default + 5 extra
  EXPECT_EQ(card->capabilities, (std::vector<std::string>{"completion", "tools", "thinking"}));
  EXPECT_EQ(card->template_text, "{% if tools %}{{ tools }}{% endif %}<think>{{ x }}</think>");
  EXPECT_EQ(card->parameters,
            "num_ctx                        4096\n"
            "stop                           \"<|end_of_text|>\"\n"
            "stop                           \"<|eot_id|>\"");
  EXPECT_EQ(card->context_length, 2048u);
  EXPECT_EQ(card->embedding_length, 64u);
  EXPECT_FALSE(card->declares_pooling);
  ASSERT_EQ(card->digest.size(), 40u);
  EXPECT_EQ(card->digest.find_first_not_of("0123456789abcdef"), std::string::npos) << card->digest;
}

TEST(ModelCard, BareModel) {
  // No template, file type, parameter count KV or EOS: the plainest GGUF.
  t::TempDir dir;
  const std::string path = dir / "bare.gguf";
  t::GgufSpec spec;
  spec.name = "bare";
  spec.tensors = {{"a", {64, 256}}, {"b", {64}}};
  t::write_gguf(path, spec);
  auto card = serve::describe("bare:q8", path, 0);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_EQ(card->name, "bare:q8");
  EXPECT_EQ(card->details["quantization_level"], "unknown");
  EXPECT_EQ(card->details["parameter_size"], "16K");              // 64*256 + 64 tensor elements
  EXPECT_EQ(card->model_info["general.parameter_count"], 16448);  // added, as Ollama always has it
  EXPECT_EQ(card->capabilities, (std::vector<std::string>{"completion"}));
  EXPECT_EQ(card->template_text, "");
  EXPECT_EQ(card->parameters, "");  // no context configured, no EOS token
}

TEST(ModelCard, ConfiguredEmbeddingsListEmbeddingBeforeCompletion) {
  // `embeddings = true` on a chat GGUF: llama-server runs with --embeddings
  // and still chats. Ollama lists a model's config capabilities first and
  // adds completion when the GGUF declares no pooling type.
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::write_gguf(path, chat_spec());
  auto card = serve::describe("m", path, 4096, "", true);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_EQ(card->capabilities, (std::vector<std::string>{"embedding", "completion", "tools", "thinking"}));
  // A GGUF that declares pooling stays embedding only.
  t::GgufSpec spec;
  spec.architecture = "bert";
  spec.extra = {t::kv_u32("bert.pooling_type", 1)};
  const std::string embed = dir / "embed.gguf";
  t::write_gguf(embed, spec);
  auto e = serve::describe("embed", embed, 512, "", true);
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->capabilities, (std::vector<std::string>{"embedding"}));
}

TEST(ModelCard, EmbeddingModelIsOnlyEmbedding) {
  t::TempDir dir;
  const std::string path = dir / "embed.gguf";
  t::GgufSpec spec;
  spec.architecture = "bert";
  // Qwen3-Embedding-like: the base model's chat template, with tools and <think>.
  spec.extra = {t::kv_u32("bert.pooling_type", 1),
                t::kv_string("tokenizer.chat_template", "{{ tools }} <think></think>")};
  t::write_gguf(path, spec);
  auto card = serve::describe("embed", path, 512);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_TRUE(card->declares_pooling);
  EXPECT_EQ(card->capabilities, (std::vector<std::string>{"embedding"}));
  EXPECT_EQ(card->details["family"], "bert");
  EXPECT_EQ(card->details["families"], json({"bert"}));
}

TEST(ModelCard, VisionAudioAndInsert) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::GgufSpec spec;
  spec.architecture = "gemma3";
  spec.tokens = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"};
  spec.extra = {t::kv_u32("gemma3.vision.block_count", 27)};
  t::write_gguf(path, spec);
  auto card = serve::describe("m", path, 4096);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_EQ(card->capabilities, (std::vector<std::string>{"completion", "vision", "insert"}));

  // llama.cpp's way: the encoders are in a separate mmproj file.
  const std::string text_only = dir / "text.gguf";
  t::write_gguf(text_only, {});
  t::GgufSpec clip;
  clip.architecture = "clip";
  clip.extra = {t::kv_bool("clip.has_vision_encoder", true), t::kv_bool("clip.has_audio_encoder", true)};
  const std::string projector = dir / "mmproj.gguf";
  t::write_gguf(projector, clip);
  auto with_projector = serve::describe("m", text_only, 4096, projector);
  ASSERT_TRUE(with_projector.ok()) << with_projector.error().message;
  EXPECT_EQ(with_projector->capabilities, (std::vector<std::string>{"completion", "vision", "audio"}));
  auto missing_projector = serve::describe("m", text_only, 4096, dir / "none.gguf");
  ASSERT_TRUE(missing_projector.ok()) << missing_projector.error().message;
  EXPECT_EQ(missing_projector->capabilities, (std::vector<std::string>{"completion"}));
}

TEST(ModelCard, LargeArraysAreEmptyInModelInfo) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::GgufSpec spec;
  for (int i = 0; i < 65; ++i) spec.tokens.push_back(fmt::format("x{}", i));
  spec.extra = {t::kv_strings("tokenizer.ggml.merges", std::vector<std::string>(64, "a b"))};
  t::write_gguf(path, spec);
  auto card = serve::describe("m", path, 4096);
  ASSERT_TRUE(card.ok()) << card.error().message;
  EXPECT_EQ(card->model_info["tokenizer.ggml.tokens"], json::array());  // 68 items
  EXPECT_EQ(card->model_info["tokenizer.ggml.merges"].size(), 64u);     // exactly 64 is still shown
}

TEST(ModelCard, ParametersQuoteStopTokens) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::GgufSpec spec;
  spec.tokens = {"say \"end\"", "x"};
  spec.extra = {t::kv_u32("tokenizer.ggml.eos_token_id", 0), t::kv_u32("tokenizer.ggml.eot_token_id", 0)};
  t::write_gguf(path, spec);
  auto card = serve::describe("m", path, 8192);
  ASSERT_TRUE(card.ok()) << card.error().message;
  // EOT equal to EOS gives one stop line; quotes are escaped as in Go's %#v.
  EXPECT_EQ(card->parameters,
            "num_ctx                        8192\n"
            "stop                           \"say \\\"end\\\"\"");
}

TEST(ModelCard, ModelInfoAlwaysDumps) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::GgufSpec spec;
  spec.extra = {t::kv_string("general.license", "bad \xff utf-8")};
  t::write_gguf(path, spec);
  auto card = serve::describe("m", path, 4096);
  ASSERT_TRUE(card.ok()) << card.error().message;
  std::string dumped;
  ASSERT_NO_THROW(dumped = card->model_info.dump());
  EXPECT_NE(dumped.find("bad \xEF\xBF\xBD utf-8"), std::string::npos) << dumped;
}

TEST(ModelCard, DigestIsStableAndFollowsContent) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::GgufSpec spec = chat_spec();
  spec.data_bytes = 3 << 20;  // larger than the two hashed MiB
  const std::string bytes = t::make_gguf(spec);
  const auto write = [&](const std::string& content) { std::ofstream(path, std::ios::binary) << content; };
  const auto digest = [&] {
    auto card = serve::describe("m", path, 4096);
    EXPECT_TRUE(card.ok()) << card.error().message;
    return card.ok() ? card->digest : std::string();
  };
  write(bytes);
  const std::string first = digest();
  EXPECT_EQ(digest(), first);
  set_mtime_ms(path, 1000);
  EXPECT_EQ(digest(), first);  // content, not mtime

  std::string changed_tail = bytes;
  changed_tail.back() = '\x01';
  write(changed_tail);
  EXPECT_NE(digest(), first);

  std::string changed_header = bytes;
  changed_header[changed_header.find("tiny")] = 'T';  // general.name, same size
  write(changed_header);
  EXPECT_NE(digest(), first);

  std::string changed_middle = bytes;
  changed_middle[bytes.size() / 2] = '\x01';  // the documented blind spot: not hashed
  write(changed_middle);
  EXPECT_EQ(digest(), first);

  write(bytes + std::string(1, '\0'));  // size is hashed too
  EXPECT_NE(digest(), first);
}

TEST(ModelCard, ErrorsNameThePath) {
  t::TempDir dir;
  const std::string missing = dir / "missing.gguf";
  auto r = serve::describe("m", missing, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::model_not_found);
  EXPECT_NE(r.error().message.find(missing), std::string::npos) << r.error().message;

  const std::string garbage = dir / "garbage.gguf";
  std::ofstream(garbage, std::ios::binary) << "not a model at all";
  r = serve::describe("m", garbage, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(garbage), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("bad magic"), std::string::npos) << r.error().message;

  const std::string cut = dir / "cut.gguf";
  const std::string bytes = t::make_gguf(chat_spec());
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  r = serve::describe("m", cut, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(cut), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("truncated"), std::string::npos) << r.error().message;
}

TEST(ModelCard, CatalogRereadsOnlyChangedFiles) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::write_gguf(path, chat_spec());
  set_mtime_ms(path, 1000);
  serve::ModelCatalog catalog;
  auto first = catalog.get("m", path, 4096);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto again = catalog.get("m", path, 4096);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(first->get(), again->get());  // cached: the same card

  set_mtime_ms(path, 2000);  // touched: read again, same content
  auto touched = catalog.get("m", path, 4096);
  ASSERT_TRUE(touched.ok());
  EXPECT_NE(touched->get(), first->get());
  EXPECT_EQ((*touched)->modified_ms, 2000);
  EXPECT_EQ((*touched)->digest, (*first)->digest);

  auto other_context = catalog.get("m", path, 8192);
  ASSERT_TRUE(other_context.ok());
  EXPECT_EQ((*other_context)->parameters.substr(0, 35), "num_ctx                        8192");
  auto configured = catalog.get("m", path, 8192, "", true);  // the config turned embeddings on
  ASSERT_TRUE(configured.ok());
  EXPECT_EQ((*configured)->capabilities.front(), "embedding");

  t::GgufSpec bigger = chat_spec();
  bigger.extra.push_back(t::kv_u32("llama.pooling_type", 2));
  t::write_gguf(path, bigger);
  set_mtime_ms(path, 2000);  // same mtime, other size
  auto rewritten = catalog.get("m", path, 8192);
  ASSERT_TRUE(rewritten.ok());
  EXPECT_EQ((*rewritten)->capabilities, (std::vector<std::string>{"embedding"}));

  fs::remove(path);
  auto gone = catalog.get("m", path, 8192);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().kind, ErrorKind::model_not_found);
}

TEST(ModelCard, CatalogIsThreadSafe) {
  t::TempDir dir;
  std::vector<std::string> paths;
  for (int i = 0; i < 3; ++i) {
    paths.push_back(dir / fmt::format("m{}.gguf", i));
    t::write_gguf(paths.back(), chat_spec());
  }
  serve::ModelCatalog catalog;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int th = 0; th < 8; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < 50; ++i) {
        const int m = (th + i) % 3;
        auto card = catalog.get(fmt::format("m{}", m), paths[m], 4096);
        if (!card.ok() || (*card)->name != fmt::format("m{}:latest", m)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

namespace {

// Model files named m0..m{n-1}.gguf (one chat GGUF each) and their sources.
std::vector<serve::ModelSource> model_files(const t::TempDir& dir, const std::vector<std::string>& names) {
  std::vector<serve::ModelSource> out;
  for (const auto& name : names) {
    const std::string path = dir / (name + ".gguf");
    t::write_gguf(path, chat_spec());
    out.push_back({name, path, 4096, "", false});
  }
  return out;
}

// Which models were read, by whom, in order; read "a" can be held until open().
struct ReadLog {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::thread::id>> reads;
  std::string hold;  // the model whose read waits for open()
  bool held = false, opened = false;

  void before_read(const std::string& name) {
    std::unique_lock lock(mutex);
    reads.emplace_back(name, std::this_thread::get_id());
    if (name != hold) return;
    held = true;
    cv.notify_all();
    cv.wait(lock, [this] { return opened; });
  }
  bool wait_held() {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(10), [this] { return held; });
  }
  void open() {
    std::lock_guard lock(mutex);
    opened = true;
    cv.notify_all();
  }
  std::vector<std::string> names() {
    std::lock_guard lock(mutex);
    std::vector<std::string> out;
    for (const auto& r : reads) out.push_back(r.first);
    return out;
  }
};

}  // namespace

TEST(ModelCard, CatalogWarmReadsEveryCardOnItsWorkers) {
  t::TempDir dir;
  const auto models = model_files(dir, {"a", "b", "c", "d", "e", "f"});
  ReadLog log;
  serve::ModelCatalog catalog(2, [&](const std::string& name) { log.before_read(name); });
  catalog.warm(models);
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  EXPECT_EQ(catalog.reads(), 6u);
  for (const auto& [name, thread] : log.reads) EXPECT_NE(thread, std::this_thread::get_id()) << name;
  for (const auto& m : models) {
    auto card = catalog.get(m);
    ASSERT_TRUE(card.ok()) << card.error().message;
    EXPECT_EQ((*card)->name, m.name + ":latest");
    EXPECT_EQ((*card)->size, fs::file_size(m.path));
  }
  EXPECT_EQ(catalog.reads(), 6u) << "the requests found every card read";
  catalog.warm(models);  // again, nothing changed: a stat each, no read
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  EXPECT_EQ(catalog.reads(), 6u);
}

TEST(ModelCard, CatalogGetDuringWarmReadsOnlyWhatItNeeds) {
  t::TempDir dir;
  const auto models = model_files(dir, {"a", "b", "c"});
  ReadLog log;
  log.hold = "a";
  serve::ModelCatalog catalog(1, [&](const std::string& name) { log.before_read(name); });
  catalog.warm(models);
  ASSERT_TRUE(log.wait_held());  // the one worker is stuck in a's files

  // Not yet read: this request reads c itself, at once, and only c.
  auto c = catalog.get(models[2]);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ((*c)->name, "c:latest");
  EXPECT_EQ(log.names(), (std::vector<std::string>{"a", "c"}));

  // Being read by the worker: this request waits for that read, not a second one.
  std::shared_ptr<const serve::ModelCard> a;
  std::thread request([&] {
    if (auto r = catalog.get(models[0])) a = *r;
  });
  log.open();
  request.join();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "a:latest");
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  EXPECT_EQ(log.names(), (std::vector<std::string>{"a", "c", "b"})) << "c was not read again by the worker";
  EXPECT_EQ(catalog.reads(), 3u);
}

TEST(ModelCard, CatalogSecondWarmSupersedesTheFirst) {
  t::TempDir dir;
  const auto models = model_files(dir, {"a", "b", "c", "d", "e"});
  ReadLog log;
  log.hold = "a";
  serve::ModelCatalog catalog(1, [&](const std::string& name) { log.before_read(name); });
  catalog.warm({models[0], models[1], models[2]});
  ASSERT_TRUE(log.wait_held());
  catalog.warm({models[3], models[4]});  // a config reload: b and c are gone
  log.open();
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  EXPECT_EQ(log.names(), (std::vector<std::string>{"a", "d", "e"})) << "the read in progress ends; b, c are dropped";
  auto d = catalog.get(models[3]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(catalog.reads(), 3u);
  auto b = catalog.get(models[1]);  // a model gone from the list can still be asked for
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name, "b:latest");
}

TEST(ModelCard, CatalogStopsPromptlyOnDestruction) {
  t::TempDir dir;
  const std::string path = dir / "m.gguf";
  t::write_gguf(path, chat_spec());
  std::vector<serve::ModelSource> models;
  for (int i = 0; i < 400; ++i) models.push_back({fmt::format("m{}", i), path, 4096, "", false});
  std::atomic<int> started{0};
  auto catalog = std::make_unique<serve::ModelCatalog>(2, [&](const std::string&) {
    ++started;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // slow storage: 400 reads take 1 s on 2 workers
  });
  catalog->warm(models);
  ASSERT_TRUE(t::eventually([&] { return started.load() > 0; }));
  const auto t0 = std::chrono::steady_clock::now();
  catalog.reset();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, std::chrono::milliseconds(500)) << "only the reads in progress are finished";
  EXPECT_LT(started.load(), 400);
}

TEST(ModelCard, CatalogRereadsAFileChangedAfterWarm) {
  t::TempDir dir;
  const auto models = model_files(dir, {"m"});
  serve::ModelCatalog catalog(1);
  catalog.warm(models);
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  auto before = catalog.get(models[0]);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(catalog.reads(), 1u);

  t::GgufSpec embedding = chat_spec();
  embedding.extra.push_back(t::kv_u32("llama.pooling_type", 2));
  t::write_gguf(models[0].path, embedding);  // another size
  auto after = catalog.get(models[0]);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(catalog.reads(), 2u);
  EXPECT_EQ((*after)->size, fs::file_size(models[0].path));
  EXPECT_EQ((*after)->capabilities, (std::vector<std::string>{"embedding"}));

  fs::remove(models[0].path);  // gone: warm() leaves the error to get()
  catalog.warm(models);
  ASSERT_TRUE(catalog.wait_warm(std::chrono::seconds(10)));
  auto gone = catalog.get(models[0]);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().kind, ErrorKind::model_not_found);
}
