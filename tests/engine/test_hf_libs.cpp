// Cross-checks against Hugging Face's own `tokenizers` and `safetensors`
// Python packages (hf_libs_ref.py). They are not Debian packages: these
// tests use the venv scripts/py-peers builds (hf_python.h) and skip, saying
// why, when no Python at hand can import both.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "assay/engine.h"
#include "hf_python.h"
#include "temp_dir.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {

std::string python() { return hf_python(); }

// "" when the peers are importable, else why the tests skip.
std::string lacks_hf_libs() { return hf_python_lacks("tokenizers, safetensors"); }

int run_ref(const std::string& args) {
  const std::string cmd =
      python() + " " + ASSAY_SOURCE_DIR + "/tests/engine/hf_libs_ref.py " + args;
  return std::system(cmd.c_str());
}


// Hand-picked edge cases plus random strings over tricky pieces: combining
// marks (category M, neither letter nor number), non-ASCII digits and
// numerals, Unicode spaces, contractions, CRLF, emoji.
std::vector<std::string> texts() {
  std::vector<std::string> t = {
      "Hello world", "I'll  go!!", "don't we've they're I'm he'd", "a\n\nb", "x   ", "3.14 is pi",
      "héllo wörld", "日本語 123", "  ★x", "e\xcc\x81t\xc3\xa9", "tab\there", "crlf\r\nline",
      "nbsp\xc2\xa0here", "ideo\xe3\x80\x80space", "\xd9\xa3\xd9\xa4 arabic digits", "½ and ²",
      "emoji 🙂🙂 ok", "   leading", "trailing\n", "'S 'LL 'Ve", "__init__(self)", ""};
  const char* pieces[] = {"a",  "Z",   "é",  "e\xcc\x81", "日", "\xd9\xa3", "½",  "²",  " ",
                          "  ", "\n",  "\t", "\xc2\xa0",  "'s", "'re",      "'",  "!",  "...",
                          "🙂", "0",   "42", "_",         "-",  "Ω",        "ß",  "\r\n"};
  std::mt19937 g(17);
  for (int i = 0; i < 300; i++) {
    std::string s;
    const int n = 1 + (int)(g() % 12);
    for (int k = 0; k < n; k++) s += pieces[g() % std::size(pieces)];
    t.push_back(s);
  }
  return t;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

}  // namespace

TEST(HfLibs, PretokenizerMatchesTokenizersByteLevel) {
  if (const std::string why = lacks_hf_libs(); !why.empty()) GTEST_SKIP() << why;
  const fs::path d = temp_dir("hf_pretok");
  const auto all = texts();
  std::ofstream(d / "in.json") << nlohmann::json(all).dump();
  ASSERT_EQ(run_ref("pretok " + (d / "in.json").string() + " " + (d / "out.json").string()), 0);
  const auto ref = read_json(d / "out.json");
  ASSERT_EQ(ref.size(), all.size());
  for (size_t i = 0; i < all.size(); i++) {
    std::vector<std::string> mine;
    for (auto p : gpt2_pretokenize(all[i])) mine.emplace_back(p);
    EXPECT_EQ(mine, ref[i].get<std::vector<std::string>>()) << "text " << i << ": " << all[i];
  }
}

TEST(HfLibs, BpeMatchesTokenizersOnTrainedVocab) {
  if (const std::string why = lacks_hf_libs(); !why.empty()) GTEST_SKIP() << why;
  const fs::path d = temp_dir("hf_bpe");
  const auto all = texts();
  {
    std::ofstream corpus(d / "corpus.txt");
    for (int r = 0; r < 20; r++)
      for (const auto& s : all) corpus << s << "\n";
    corpus << "the quick brown fox jumps over the lazy dog; they're testing tokenizers\n";
  }
  ASSERT_EQ(run_ref("train_bpe " + (d / "corpus.txt").string() + " " + d.string() + " 600"), 0);
  std::ofstream(d / "in.json") << nlohmann::json(all).dump();
  ASSERT_EQ(run_ref("encode " + d.string() + " " + (d / "in.json").string() + " " +
                    (d / "out.json").string()),
            0);
  const auto ref = read_json(d / "out.json");
  auto tok = load_bpe_tokenizer((d / "vocab.json").string(), (d / "merges.txt").string());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  size_t merged = 0;
  for (size_t i = 0; i < all.size(); i++) {
    const auto ids = (*tok)->encode(all[i]);
    EXPECT_EQ(ids, ref[i].get<std::vector<int32_t>>()) << "text " << i << ": " << all[i];
    EXPECT_EQ((*tok)->decode(ids), all[i]);
    for (int32_t id : ids) merged += id >= 257 ? 1 : 0;
  }
  EXPECT_GT(merged, 100u);  // the trained merges are actually exercised
}

TEST(HfLibs, SafetensorsBothDirections) {
  if (const std::string why = lacks_hf_libs(); !why.empty()) GTEST_SKIP() << why;
  const fs::path d = temp_dir("hf_st");
  // Ours -> safetensors.numpy.load_file.
  auto m = GPT::init_random(GPTConfig{50, 8, 1, 2, 8}, 3);
  ASSERT_TRUE(m.ok());
  std::vector<TensorRef> refs;
  for (const auto& t : m->param_info()) refs.push_back({t.name, t.shape, m->params().data() + t.offset});
  const fs::path ours = d / "ours.safetensors";
  ASSERT_TRUE(write_safetensors(ours.string(), refs).ok());
  ASSERT_EQ(run_ref("st_read " + ours.string() + " " + (d / "out.json").string()), 0);
  const auto ref = read_json(d / "out.json");
  ASSERT_EQ(ref.size(), m->param_info().size());
  for (const auto& t : m->param_info()) {
    ASSERT_TRUE(ref.contains(t.name)) << t.name;
    EXPECT_EQ(ref[t.name][0], "float32");
    EXPECT_EQ(ref[t.name][1].get<std::vector<int64_t>>(), t.shape);
    double sum = 0;
    for (size_t i = 0; i < t.numel; i++) sum += m->params()[t.offset + i];
    EXPECT_NEAR(ref[t.name][2].get<double>(), sum, 1e-9 + 1e-12 * std::fabs(sum)) << t.name;
  }
  // safetensors.numpy.save_file -> ours.
  const fs::path theirs = d / "theirs.safetensors";
  ASSERT_EQ(run_ref("st_write " + theirs.string()), 0);
  auto st = SafeTensors::read(theirs.string());
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(*st->to_f32("a"), (std::vector<float>{-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(*st->to_f32("h"), (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f}));
  EXPECT_EQ(st->find("h")->dtype, "F16");
}
