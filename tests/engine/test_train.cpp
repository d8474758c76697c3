// Training smoke test: a tiny byte-level model overfits a repeated text.
#include <gtest/gtest.h>

#include <random>

#include "assay/engine.h"

using namespace assay::engine;

TEST(Train, TinyModelOverfitsRepeatedText) {
  auto tok = make_byte_tokenizer();
  std::string text;
  for (int i = 0; i < 20; i++) text += "the quick brown fox jumps over the lazy dog. ";
  const std::vector<int32_t> ids = tok->encode(text);
  const GPTConfig cfg{tok->vocab_size(), 32, 2, 4, 64};
  auto mr = GPT::init_random(cfg, 1234);
  ASSERT_TRUE(mr.ok());
  GPT& m = *mr;
  AdamWConfig ac;
  ac.weight_decay = 0.0f;
  AdamW opt(ac, m);
  LrSchedule sched{3e-3f, 3e-4f, 5, 80, LrSchedule::Decay::kCosine};
  const int B = 4, T = 32;
  std::mt19937 g(1);
  std::vector<int32_t> x(B * T), y(B * T);
  std::vector<float> dlogits((size_t)B * T * cfg.vocab_size);
  float first = 0, last = 0;
  for (int step = 0; step < 80; step++) {
    for (int b = 0; b < B; b++) {
      const size_t off = g() % (ids.size() - T - 1);
      for (int t = 0; t < T; t++) {
        x[b * T + t] = ids[off + t];
        y[b * T + t] = ids[off + t + 1];
      }
    }
    auto logits = m.forward(x.data(), B, T);
    ASSERT_TRUE(logits.ok());
    const float loss =
        lm_cross_entropy(logits->data(), y.data(), B * T, cfg.vocab_size, dlogits.data());
    m.zero_grad();
    ASSERT_TRUE(m.backward(dlogits.data()).ok());
    clip_grad_norm(m.grads(), 1.0f);
    ASSERT_TRUE(opt.step(m, sched.at(step)).ok());
    if (step == 0) first = loss;
    last = loss;
  }
  // Initial loss is about ln(257) = 5.55; the text has 28 distinct bytes and
  // is fully predictable after a few characters of context.
  EXPECT_NEAR(first, std::log(257.0f), 0.3f);
  EXPECT_LT(last, 1.0f) << "first " << first << " last " << last;
}
