// Tokenizers: byte-level, GPT-2 pre-tokenizer, BPE merges on a hand-made
// vocabulary, file formats (vocab.json + merges.txt, tokenizer.json).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "assay/engine.h"
#include "temp_dir.h"
#include "tiny_bpe.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {


void expect_tiny_bpe(const Tokenizer& t) {
  EXPECT_EQ(t.kind(), "gpt2-bpe");
  EXPECT_EQ(t.vocab_size(), 263);
  EXPECT_EQ(t.eos_id(), 262);
  // "the" -> the; " cat" -> Ġc+at -> Ġcat; " hat" -> Ġ, h+at -> Ġ hat.
  EXPECT_EQ(t.encode("the cat hat"), (std::vector<int32_t>{257, 260, 32, 261}));
  // Rank order: "t h" (0) merges before "a t" (3); "th at" is no merge.
  EXPECT_EQ(t.encode("that"), (std::vector<int32_t>{256, 259}));
  EXPECT_EQ(t.encode("a<|endoftext|>b", true), (std::vector<int32_t>{'a', 262, 'b'}));
  EXPECT_EQ(t.encode("<|endoftext|>", false).size(), 13u);
  const std::string text = "the cat, that hat!\n\n  héllo wörld 日本語 ★ \xff\xfe end";
  EXPECT_EQ(t.decode(t.encode(text)), text);
  EXPECT_EQ(t.decode(std::vector<int32_t>{257, 262, 9999}), "the<|endoftext|>");
}

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : gpt2_pretokenize(s)) out.emplace_back(p);
  return out;
}

}  // namespace

TEST(ByteTokenizer, RoundTripAndSpecials) {
  auto t = make_byte_tokenizer();
  EXPECT_EQ(t->vocab_size(), 257);
  EXPECT_EQ(t->eos_id(), 256);
  const std::string text("a\x00\xff\xc3(<|endoftext|>", 18);
  const auto ids = t->encode(text);
  EXPECT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[1], 0);
  EXPECT_EQ(ids[2], 255);
  EXPECT_EQ(t->decode(ids), text);
  const auto sp = t->encode(text, true);
  ASSERT_EQ(sp.size(), 6u);
  EXPECT_EQ(sp.back(), 256);
  EXPECT_EQ(t->decode(sp), text);
}

TEST(ByteTokenizer, SavesGpt2CompatibleFiles) {
  const fs::path d = temp_dir("tok_byte");
  auto t = make_byte_tokenizer();
  ASSERT_TRUE(t->save(d.string()).ok());
  std::ifstream vf(d / "vocab.json");
  const auto vocab = nlohmann::json::parse(vf);
  EXPECT_EQ(vocab.size(), 257u);
  EXPECT_EQ(vocab["Ġ"], 32);  // space
  EXPECT_EQ(vocab["Ċ"], 10);  // newline
  EXPECT_EQ(vocab["A"], 65);
  EXPECT_EQ(vocab["<|endoftext|>"], 256);
  auto back = load_tokenizer(d.string());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ((*back)->kind(), "byte");
  // Read as a plain GPT-2 BPE (no merges) the files give the same ids.
  auto bpe = load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string());
  ASSERT_TRUE(bpe.ok()) << bpe.status().to_string();
  const std::string text = "Hello, wörld!\n\t<|endoftext|> 123";
  EXPECT_EQ((*bpe)->encode(text, true), t->encode(text, true));
  EXPECT_EQ((*bpe)->vocab_size(), 257);
}

TEST(Gpt2Pretokenize, MatchesPattern) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("I'll  go!!"), (V{"I", "'ll", " ", " go", "!!"}));
  EXPECT_EQ(split("don't we've"), (V{"don", "'t", " we", "'ve"}));
  EXPECT_EQ(split("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("x   "), (V{"x", "   "}));
  EXPECT_EQ(split("3.14 is pi"), (V{"3", ".", "14", " is", " pi"}));
  EXPECT_EQ(split("héllo wörld"), (V{"héllo", " wörld"}));
  EXPECT_EQ(split("日本語 123"), (V{"日本語", " 123"}));
  EXPECT_EQ(split("  ★x"), (V{" ", " ★", "x"}));
  EXPECT_EQ(split("abc123def"), (V{"abc", "123", "def"}));
  EXPECT_EQ(split("'S"), (V{"'", "S"}));    // contractions are lowercase only
  EXPECT_EQ(split(" \xff"), (V{" \xff"}));  // invalid UTF-8 is "other"
  EXPECT_TRUE(split("").empty());
}

TEST(BpeTokenizer, VocabAndMergesFiles) {
  const fs::path d = write_vocab_merges("tok_bpe");
  auto t = load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  expect_tiny_bpe(**t);
  // save() writes files that load back to the same tokenizer.
  const fs::path d2 = temp_dir("tok_bpe_saved");
  ASSERT_TRUE((*t)->save(d2.string()).ok());
  auto back = load_tokenizer(d2.string());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  expect_tiny_bpe(**back);
}

TEST(BpeTokenizer, TokenizerJsonBothMergeEncodings) {
  for (bool pairs : {false, true}) {
    const fs::path d = temp_dir(pairs ? "tok_json_pairs" : "tok_json_str");
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& [a, b] : kMerges) {
      if (pairs)
        merges.push_back({a, b});
      else
        merges.push_back(a + " " + b);
    }
    nlohmann::json j = {
        {"version", "1.0"},
        {"added_tokens", {{{"id", 262}, {"content", "<|endoftext|>"}, {"special", true}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
        {"model", {{"type", "BPE"}, {"vocab", tiny_vocab(false)}, {"merges", merges}}}};
    std::ofstream(d / "tokenizer.json") << j.dump();
    auto t = load_tokenizer(d.string());
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    expect_tiny_bpe(**t);
  }
}

TEST(BpeTokenizer, RejectsBadFiles) {
  const fs::path d = write_vocab_merges("tok_bad");
  std::ofstream(d / "merges.txt") << "#version: 0.2\nt h\nbad\n";
  auto t = load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("merges.txt:3"), std::string::npos) << t.status().message();
  std::ofstream(d / "vocab.json") << "{\"a\": \"x\"}";
  EXPECT_FALSE(load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string()).ok());
  const fs::path e = temp_dir("tok_bad_json");
  std::ofstream(e / "tokenizer.json") << R"({"model": {"type": "WordPiece", "vocab": {}}})";
  auto w = load_tokenizer(e.string());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("model.type must be \"BPE\""), std::string::npos);
  EXPECT_EQ(load_tokenizer(temp_dir("tok_empty").string()).status().code(), assay::Code::kNotFound);
}

// The BOS convention travels in tokenizer_config.json as transformers names
// it; nothing else in the directory may override it for transformers.
TEST(Tokenizer, SavesAndLoadsAddBosToken) {
  const fs::path bpe_src = write_vocab_merges("tok_bos_src");
  for (bool bos : {true, false}) {
    for (const char* kind : {"byte", "gpt2-bpe"}) {
      std::unique_ptr<Tokenizer> t;
      if (std::string(kind) == "byte") {
        t = make_byte_tokenizer();
      } else {
        auto b = load_bpe_tokenizer((bpe_src / "vocab.json").string(),
                                    (bpe_src / "merges.txt").string());
        ASSERT_TRUE(b.ok()) << b.status().to_string();
        t = std::move(*b);
      }
      EXPECT_FALSE(t->add_bos_token());
      t->set_add_bos_token(bos);
      const fs::path d = temp_dir(std::string("tok_bos_") + kind + (bos ? "_on" : "_off"));
      std::ofstream(d / "tokenizer.json") << "{}";  // stale, from another tokenizer
      ASSERT_TRUE(t->save(d.string()).ok());
      std::ifstream cf(d / "tokenizer_config.json");
      const auto cfg = nlohmann::json::parse(cf);
      EXPECT_EQ(cfg["add_bos_token"], bos) << kind;
      EXPECT_EQ(cfg["add_eos_token"], false);
      EXPECT_EQ(cfg["clean_up_tokenization_spaces"], false);
      EXPECT_EQ(cfg["bos_token"], "<|endoftext|>");
      EXPECT_EQ(cfg["tokenizer_class"], "GPT2Tokenizer");
      EXPECT_TRUE(fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt"));
      EXPECT_FALSE(fs::exists(d / "tokenizer.json")) << kind << ": would shadow add_bos_token";
      auto back = load_tokenizer(d.string());
      ASSERT_TRUE(back.ok()) << back.status().to_string();
      EXPECT_EQ((*back)->kind(), kind);
      EXPECT_EQ((*back)->add_bos_token(), bos) << kind;
      // The flag never changes encode(): scoring paths prepend bos_id().
      EXPECT_EQ((*back)->encode("the cat"), t->encode("the cat"));
    }
  }
}

// GPT-2 directories from transformers declare no BOS convention (or false).
TEST(Tokenizer, HfStyleDirectoriesKeepAddBosFalse) {
  const fs::path plain = write_vocab_merges("tok_hf_plain");  // no tokenizer_config.json
  const fs::path cfg_no_field = write_vocab_merges("tok_hf_cfg");
  std::ofstream(cfg_no_field / "tokenizer_config.json") << R"({"model_max_length": 1024})";
  const fs::path cfg_null = write_vocab_merges("tok_hf_null");
  std::ofstream(cfg_null / "tokenizer_config.json") << R"({"add_bos_token": null})";
  for (const auto& d : {plain, cfg_no_field, cfg_null}) {
    auto t = load_tokenizer(d.string());
    ASSERT_TRUE(t.ok()) << d << ": " << t.status().to_string();
    EXPECT_FALSE((*t)->add_bos_token()) << d;
  }
  const fs::path on = write_vocab_merges("tok_hf_on");
  std::ofstream(on / "tokenizer_config.json") << R"({"add_bos_token": true})";
  auto t = load_tokenizer(on.string());
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_TRUE((*t)->add_bos_token());
  const fs::path bad = write_vocab_merges("tok_hf_bad");
  std::ofstream(bad / "tokenizer_config.json") << R"({"add_bos_token": "yes"})";
  auto b = load_tokenizer(bad.string());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find((bad / "tokenizer_config.json").string() +
                                      ": field add_bos_token must be true or false, got \"yes\""),
            std::string::npos)
      << b.status().message();
}
