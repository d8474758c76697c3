// Tiny GPT models for the evalnative tests: random or trained in a known
// example order with the engine API (one example per AdamW step).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "assay/engine.h"

namespace assay::evals::testing {

inline engine::GPTConfig tiny_config(int n_positions = 32, int n_embd = 32, int n_layer = 2) {
  engine::GPTConfig c;
  c.vocab_size = 257;  // byte tokenizer
  c.n_positions = n_positions;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_embd = n_embd;
  return c;
}

inline engine::GPT random_model(const engine::GPTConfig& cfg, uint64_t seed,
                                engine::Mode mode = engine::Mode::kTrain) {
  auto m = engine::GPT::init_random(cfg, seed, mode);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return std::move(m).value();
}

// Byte tokens of [bos] + text, cut to n_positions + 1.
inline std::vector<int32_t> bos_tokens(const engine::Tokenizer& tok, const std::string& text,
                                       int n_positions) {
  std::vector<int32_t> ids{tok.bos_id()};
  auto t = tok.encode(text);
  ids.insert(ids.end(), t.begin(), t.end());
  if (ids.size() > static_cast<size_t>(n_positions) + 1) ids.resize(n_positions + 1);
  return ids;
}

// Trains on texts[order[k]] for k = 0.., `epochs` passes in the same order,
// one example per step, next-token loss over [bos] + text. Returns the last loss.
inline float train_in_order(engine::GPT& model, const engine::Tokenizer& tok,
                            const std::vector<std::string>& texts, const std::vector<size_t>& order,
                            int epochs, float lr) {
  engine::AdamW opt(engine::AdamWConfig{}, model);
  const int P = model.config().n_positions, V = model.config().vocab_size;
  std::vector<float> dlogits;
  float loss = 0;
  for (int e = 0; e < epochs; ++e) {
    for (size_t k : order) {
      auto ids = bos_tokens(tok, texts[k], P);
      const int T = static_cast<int>(ids.size()) - 1;
      std::vector<int32_t> targets(ids.begin() + 1, ids.end());
      model.zero_grad();
      auto logits = model.forward(ids.data(), 1, T);
      EXPECT_TRUE(logits.ok());
      dlogits.resize(static_cast<size_t>(T) * V);
      loss = engine::lm_cross_entropy(logits->data(), targets.data(), T, V, dlogits.data());
      EXPECT_TRUE(model.backward(dlogits.data()).ok());
      EXPECT_TRUE(opt.step(model, lr).ok());
    }
  }
  return loss;
}

inline std::vector<size_t> shuffled(size_t n, uint64_t seed) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  std::mt19937_64 rng(seed);
  for (size_t i = n; i > 1; --i) std::swap(v[i - 1], v[rng() % i]);
  return v;
}

// n random lower-case "sentences" of `len` characters.
inline std::vector<std::string> random_texts(size_t n, size_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz     ";
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    for (size_t k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    out.push_back(s);
  }
  return out;
}

// n "sentences" of `words` words drawn from a fixed vocabulary of `vocab`
// random 3..5-letter words: the words are learnable from the whole set, the
// word sequence of each sentence is specific to it.
inline std::vector<std::string> word_texts(size_t n, int words, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> lex;
  for (int i = 0; i < vocab; ++i) {
    std::string w;
    const int len = 3 + static_cast<int>(rng() % 3);
    for (int k = 0; k < len; ++k) w += static_cast<char>('a' + rng() % 26);
    lex.push_back(w);
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    for (int k = 0; k < words; ++k) s += (k ? " " : "") + lex[rng() % lex.size()];
    out.push_back(s);
  }
  return out;
}

}  // namespace assay::evals::testing
