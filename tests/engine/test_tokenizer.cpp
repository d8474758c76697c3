// Tokenizers: byte-level, GPT-2 pre-tokenizer, BPE merges on a hand-made
// vocabulary, file formats (vocab.json + merges.txt, tokenizer.json).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "assay/engine.h"
#include "temp_dir.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {


// GPT-2's printable form of a byte (the byte_to_unicode map), as UTF-8.
std::string byte_char(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    int k = 0;
    for (int x = 0; x < b; x++) {
      if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) k++;
    }
    cp = 256 + k;
  }
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

// A tiny GPT-2 style vocabulary: bytes are ids 0..255 (id = byte value),
// then merged tokens, then <|endoftext|> = 262.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"t", "h"}, {"th", "e"}, {"Ġ", "c"}, {"a", "t"}, {"Ġc", "at"}, {"h", "at"}};

nlohmann::json tiny_vocab(bool with_special) {
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; b++) v[byte_char(b)] = b;
  v["th"] = 256;
  v["the"] = 257;
  v["Ġc"] = 258;
  v["at"] = 259;
  v["Ġcat"] = 260;
  v["hat"] = 261;
  if (with_special) v["<|endoftext|>"] = 262;
  return v;
}

fs::path write_vocab_merges(const std::string& name) {
  const fs::path d = temp_dir(name);
  std::ofstream(d / "vocab.json") << tiny_vocab(true).dump();
  std::ofstream m(d / "merges.txt");
  m << "#version: 0.2\n";
  for (const auto& [a, b] : kMerges) m << a << " " << b << "\n";
  return d;
}

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
