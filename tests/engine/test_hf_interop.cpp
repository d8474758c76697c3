// transformers (AutoTokenizer + GPT2LMHeadModel, hf_bos_ref.py) loading an
// Assay checkpoint directory must see the checkpoint's input convention:
// with add_bos_token it tokenizes to [bos] + the engine's ids and scores a
// text with the same summed log-prob as the engine; without it (the
// HF GPT-2 convention) there is no BOS on either side. Skips, saying why,
// without a Python that has transformers (scripts/py-peers builds one).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "assay/engine.h"
#include "hf_python.h"
#include "temp_dir.h"
#include "tiny_bpe.h"

using namespace assay::engine;
namespace fs = std::filesystem;

namespace {

// Texts within n_positions (32) tokens, with merges, non-ASCII bytes and
// spaced punctuation (which transformers' decode clean-up would rewrite).
const std::vector<std::string> kTexts = {"the cat hat", "that hat, the cat!", " the  cat\n",
                                         "héllo wörld ★", "the cat , hat ."};

// Sum over i >= 1 of log p(ids[i] | ids[<i]) from the engine's logits.
double engine_logprob(GPT& model, const std::vector<int32_t>& ids) {
  auto lg = model.forward(ids.data(), 1, (int)ids.size());
  EXPECT_TRUE(lg.ok()) << lg.status().to_string();
  if (!lg.ok()) return NAN;
  const int V = model.config().vocab_size;
  double total = 0;
  for (size_t i = 1; i < ids.size(); i++) {
    const float* row = lg->data() + (i - 1) * V;
    double mx = row[0], z = 0;
    for (int v = 1; v < V; v++) mx = std::max(mx, (double)row[v]);
    for (int v = 0; v < V; v++) z += std::exp((double)row[v] - mx);
    total += (double)row[ids[i]] - mx - std::log(z);
  }
  return total;
}

// A checkpoint with the tiny BPE tokenizer (bos = eos = 262, not the last
// id of the padded model vocab) and weights large enough for peaked logits.
void save_tiny_checkpoint(const fs::path& dir, bool add_bos) {
  const fs::path src = write_vocab_merges(dir.filename().string() + "_tok");
  auto tok = load_bpe_tokenizer((src / "vocab.json").string(), (src / "merges.txt").string());
  ASSERT_TRUE(tok.ok()) << tok.status().to_string();
  (*tok)->set_add_bos_token(add_bos);
  auto m = GPT::init_random(GPTConfig{268, 32, 2, 4, 32}, 41);
  ASSERT_TRUE(m.ok());
  uint32_t s = 7;
  for (float& p : m->params()) {
    s = s * 1664525u + 1013904223u;
    p += ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.4f;
  }
  ASSERT_TRUE(save_checkpoint(dir.string(), *m, **tok, {}).ok());
}

}  // namespace

TEST(HfInterop, AutoTokenizerAndModelFollowTheBosConvention) {
  if (const std::string why = hf_python_lacks("torch, transformers"); !why.empty()) {
    GTEST_SKIP() << why;
  }
  for (bool add_bos : {true, false}) {
    SCOPED_TRACE(add_bos ? "add_bos_token true" : "add_bos_token false");
    const fs::path dir = temp_dir(add_bos ? "hf_bos_on" : "hf_bos_off");
    save_tiny_checkpoint(dir, add_bos);
    auto ck = load_checkpoint(dir.string(), Mode::kFrozen);
    ASSERT_TRUE(ck.ok()) << ck.status().to_string();
    ASSERT_EQ(ck->tokenizer->add_bos_token(), add_bos);
    const int bos = ck->tokenizer->bos_id();
    ASSERT_EQ(bos, 262);

    std::ofstream(dir / "in.json") << nlohmann::json(kTexts).dump();
    const std::string cmd = hf_python() + " " + ASSAY_SOURCE_DIR + "/tests/engine/hf_bos_ref.py " +
                            dir.string() + " " + (dir / "in.json").string() + " " +
                            (dir / "out.json").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(dir / "out.json");
    const auto ref = nlohmann::json::parse(f);
    EXPECT_EQ(ref["fast_class"], "GPT2TokenizerFast");
    EXPECT_EQ(ref["slow_class"], "GPT2Tokenizer");
    for (size_t i = 0; i < kTexts.size(); i++) {
      SCOPED_TRACE("text " + std::to_string(i) + ": " + kTexts[i]);
      std::vector<int32_t> ids;
      if (add_bos) ids.push_back(bos);
      const auto text_ids = ck->tokenizer->encode(kTexts[i]);
      ids.insert(ids.end(), text_ids.begin(), text_ids.end());
      EXPECT_EQ(ref["fast"][i].get<std::vector<int32_t>>(), ids);
      EXPECT_EQ(ref["slow"][i].get<std::vector<int32_t>>(), ids);
      EXPECT_EQ(ref["decoded"][i].get<std::string>(), kTexts[i]);
      const double mine = engine_logprob(ck->model, ids), theirs = ref["logprob"][i].get<double>();
      EXPECT_LT(theirs, -1.0);  // a real sum, not an empty one
      EXPECT_NEAR(mine, theirs, 1e-4);
    }
  }
}
