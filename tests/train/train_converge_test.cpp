// Convergence checks on the native engine: optimisation actually reaches
// its target, not just "loss went down a little".
//   1. A tiny GPT memorises one fixed batch (mean CE < 0.05 nats).
//   2. A short DPO run (sigmoid loss, reverse-KL score) against a frozen
//      reference lifts preference accuracy on its own training pairs from
//      0 (policy == reference, every delta is exactly 0) to > 0.9.
// Both run single-threaded so that they are deterministic and cheap.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/objectives.h"

namespace {

namespace eng = assay::engine;
namespace obj = assay::obj;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

eng::GPTConfig tiny_config(int n_positions) {
  eng::GPTConfig cfg;
  cfg.vocab_size = 257;  // byte tokenizer: 256 bytes + <|endoftext|>
  cfg.n_positions = n_positions;
  cfg.n_layer = 2;
  cfg.n_head = 4;
  cfg.n_embd = 64;
  return cfg;
}

TEST(TrainConverge, TinyModelOverfitsOneBatch) {
  eng::set_num_threads(1);
  constexpr int B = 2, T = 32, kMaxSteps = 400;
  // Memorising 64 fixed next-token targets must drive the mean CE close to
  // zero; 0.05 nats means every target gets probability ~0.95 on average.
  constexpr float kTargetLoss = 0.05f;
  const eng::GPTConfig cfg = tiny_config(T);
  ASSERT_TRUE(cfg.validate().ok());
  auto model = eng::GPT::init_random(cfg, /*seed=*/7, eng::Mode::kTrain);
  ASSERT_TRUE(model.ok()) << model.status().to_string();

  // One fixed batch: tokens [B, T] from text, targets [B*T] = tokens shifted by one.
  const std::string text =
      "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!";
  ASSERT_GE(text.size(), static_cast<std::size_t>(B * T + 1));
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<unsigned char>(text[i]);
    targets[i] = static_cast<unsigned char>(text[i + 1]);
  }

  eng::AdamWConfig ac;
  ac.weight_decay = 0.0f;  // decay only fights memorisation here
  eng::AdamW opt(ac, *model);
  std::vector<float> dlogits(static_cast<std::size_t>(B) * T * cfg.vocab_size);
  const auto t0 = Clock::now();
  float first = -1, loss = -1;
  int steps = 0;
  while (steps < kMaxSteps) {
    auto logits = model->forward(tokens.data(), B, T);
    ASSERT_TRUE(logits.ok()) << logits.status().to_string();
    loss = eng::lm_cross_entropy(logits->data(), targets.data(), B * T, cfg.vocab_size, dlogits.data());
    ASSERT_TRUE(std::isfinite(loss)) << "step " << steps;
    if (steps == 0) first = loss;
    if (loss < kTargetLoss) break;
    model->zero_grad();
    ASSERT_TRUE(model->backward(dlogits.data()).ok());
    eng::clip_grad_norm(model->grads(), 1.0f);
    ASSERT_TRUE(opt.step(*model, 3e-3f).ok());
    ++steps;
  }
  const double secs = seconds_since(t0);
  std::cout << "[overfit] first CE " << first << ", final CE " << loss << " after " << steps
            << " steps, " << secs << " s\n";
  RecordProperty("final_loss", std::to_string(loss));
  RecordProperty("steps", steps);
  // A random init predicts roughly uniformly: CE near ln(257) = 5.55.
  EXPECT_NEAR(first, std::log(257.0), 0.5);
  EXPECT_LT(loss, kTargetLoss) << "did not memorise one batch in " << kMaxSteps << " steps";
}

// Pairs laid out as B = 2P sequences [chosen_1..P, rejected_1..P] of length
// T; targets are next tokens; the mask keeps only completion targets.
struct PairBatch {
  int P = 0, T = 0;
  std::vector<int32_t> tokens;  // [2P, T]
  std::vector<int> targets;     // [2P, T], -1 past the end
  std::vector<float> mask;      // [2P, T], 1 where the target is a completion byte
};

PairBatch make_pair_batch(const std::vector<assay::data::PrefExample>& pairs, int eos) {
  PairBatch b;
  b.P = static_cast<int>(pairs.size());
  std::vector<std::pair<std::string, std::string>> seqs;  // (prompt, completion)
  for (const auto& p : pairs) seqs.emplace_back(p.prompt, p.chosen);
  for (const auto& p : pairs) seqs.emplace_back(p.prompt, p.rejected);
  for (const auto& [pr, co] : seqs) b.T = std::max<int>(b.T, static_cast<int>(pr.size() + co.size()));
  const int S = 2 * b.P, T = b.T;
  b.tokens.assign(static_cast<std::size_t>(S) * T, eos);
  b.targets.assign(b.tokens.size(), -1);
  b.mask.assign(b.tokens.size(), 0.0f);
  for (int s = 0; s < S; ++s) {
    const std::string full = seqs[s].first + seqs[s].second;
    const int n = static_cast<int>(full.size()), np = static_cast<int>(seqs[s].first.size());
    // Sequence = <eos> + bytes; position t predicts byte t of `full`.
    for (int t = 0; t < T; ++t) {
      const std::size_t i = static_cast<std::size_t>(s) * T + t;
      if (t > 0 && t - 1 < n) b.tokens[i] = static_cast<unsigned char>(full[t - 1]);
      if (t < n) {
        b.targets[i] = static_cast<unsigned char>(full[t]);
        b.mask[i] = t >= np ? 1.0f : 0.0f;
      }
    }
  }
  return b;
}

TEST(TrainConverge, ShortDpoRunSeparatesTrainingPairs) {
  eng::set_num_threads(1);
  constexpr int kPairs = 16, kSteps = 12;
  constexpr double kMinAccuracy = 0.9;
  const auto pairs = assay::data::generate_prefs({kPairs, /*difficulty=*/1, /*seed=*/5});
  ASSERT_EQ(pairs.size(), static_cast<std::size_t>(kPairs));
  const PairBatch b = make_pair_batch(pairs, /*eos=*/256);
  // T = the longest prompt + completion: the leading <eos> shifts the bytes
  // right by one, so position n-1 still predicts the last completion byte.
  const eng::GPTConfig cfg = tiny_config(b.T);
  ASSERT_TRUE(cfg.validate().ok()) << "T = " << b.T;
  const int S = 2 * kPairs, V = cfg.vocab_size;

  auto policy = eng::GPT::init_random(cfg, /*seed=*/11, eng::Mode::kTrain);
  ASSERT_TRUE(policy.ok()) << policy.status().to_string();
  eng::GPT ref = policy->clone(eng::Mode::kFrozen);

  // logp: [2P] summed completion log-probs of a model on the whole batch.
  auto seq_logp = [&](eng::GPT& m) -> obj::SeqLogProbs {
    auto logits = m.forward(b.tokens.data(), S, b.T);
    EXPECT_TRUE(logits.ok()) << logits.status().to_string();
    auto lp = obj::sequence_logprobs({logits->data(), S, b.T, V}, b.targets, b.mask);
    EXPECT_TRUE(lp.ok()) << lp.status().to_string();
    return *lp;
  };
  const obj::SeqLogProbs ref_lp = seq_logp(ref);
  auto make_pairs = [&](const obj::SeqLogProbs& lp) {
    std::vector<obj::PrefPair> out(kPairs);
    for (int i = 0; i < kPairs; ++i) {
      out[i] = {lp.logp[i], lp.logp[kPairs + i], ref_lp.logp[i], ref_lp.logp[kPairs + i],
                lp.n_tokens[i], lp.n_tokens[kPairs + i]};
    }
    return out;
  };
  // Chosen and rejected differ only from the slipped step on, so the masks
  // must differ somewhere or the test would measure nothing.
  for (int i = 0; i < kPairs; ++i) ASSERT_NE(pairs[i].chosen, pairs[i].rejected) << pairs[i].id;

  obj::PrefOptions po;  // sigmoid DPO, reverse-KL score
  po.beta = 0.1;
  eng::AdamWConfig ac;
  ac.weight_decay = 0.0f;
  eng::AdamW opt(ac, *policy);
  std::vector<float> dlogits(static_cast<std::size_t>(S) * b.T * V);
  std::vector<double> coef(S);
  const auto t0 = Clock::now();
  double first_acc = -1, first_loss = -1, last_loss = -1;
  for (int step = 0; step < kSteps; ++step) {
    const obj::SeqLogProbs lp = seq_logp(*policy);
    const auto pp = make_pairs(lp);
    auto pr = obj::preference_loss(pp, po);
    ASSERT_TRUE(pr.ok()) << pr.status().to_string();
    if (step == 0) first_acc = pr->accuracy, first_loss = pr->loss;
    last_loss = pr->loss;
    for (int i = 0; i < kPairs; ++i) coef[i] = pr->c_w[i], coef[kPairs + i] = pr->c_l[i];
    // forward was the policy's last, so logits() is this batch.
    ASSERT_TRUE(obj::sequence_logprobs_backward({policy->logits().data(), S, b.T, V}, b.targets, b.mask,
                                                coef, {dlogits.data(), 1.0, false})
                    .ok());
    policy->zero_grad();
    ASSERT_TRUE(policy->backward(dlogits.data()).ok());
    eng::clip_grad_norm(policy->grads(), 1.0f);
    ASSERT_TRUE(opt.step(*policy, 2e-3f).ok());
  }
  // Final accuracy from a fresh forward after the last update, computed
  // directly: delta_i = (lw - ref_w) - (ll - ref_l) > 0.
  const obj::SeqLogProbs lp = seq_logp(*policy);
  int correct = 0;
  for (int i = 0; i < kPairs; ++i) {
    const double d = (lp.logp[i] - ref_lp.logp[i]) - (lp.logp[kPairs + i] - ref_lp.logp[kPairs + i]);
    correct += d > 0 ? 1 : 0;
  }
  const double acc = static_cast<double>(correct) / kPairs;
  const double secs = seconds_since(t0);
  std::cout << "[dpo] T " << b.T << ", loss " << first_loss << " -> " << last_loss << ", accuracy "
            << first_acc << " -> " << acc << " after " << kSteps << " steps, " << secs << " s\n";
  RecordProperty("final_accuracy", std::to_string(acc));
  // Policy == reference at step 0: every delta is 0, loss = log 2, accuracy 0.
  EXPECT_EQ(first_acc, 0.0);
  EXPECT_NEAR(first_loss, std::log(2.0), 1e-9);
  EXPECT_LT(last_loss, first_loss);
  EXPECT_GT(acc, kMinAccuracy) << correct << "/" << kPairs << " pairs with delta > 0";
}

}  // namespace
