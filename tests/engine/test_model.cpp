// Whole-model tests: config validation, layout, gradient check of the full
// fp32 model, frozen copies and determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "assay/engine.h"
#include "assay/engine_ops.h"

using namespace assay::engine;

namespace {

GPTConfig tiny_config() { return GPTConfig{11, 8, 2, 2, 8}; }

std::vector<int32_t> random_tokens(int n, int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = (int32_t)(g() % V);
  return t;
}

// Mean CE of next-token targets over tokens [B, T] (last position ignored).
double model_loss(GPT& m, const std::vector<int32_t>& tok, int B, int T,
                  std::vector<float>* dlogits) {
  auto r = m.forward(tok.data(), B, T);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  std::vector<int32_t> tgt(B * T, -1);
  for (int b = 0; b < B; b++)
    for (int t = 0; t + 1 < T; t++) tgt[b * T + t] = tok[b * T + t + 1];
  const int V = m.config().vocab_size;
  if (dlogits) dlogits->assign((size_t)B * T * V, 0.0f);
  return lm_cross_entropy(r->data(), tgt.data(), B * T, V, dlogits ? dlogits->data() : nullptr);
}

}  // namespace

TEST(GPTConfig, Validate) {
  EXPECT_TRUE(tiny_config().validate().ok());
  GPTConfig bad = tiny_config();
  bad.n_head = 3;
  const auto st = bad.validate();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("n_head must divide n_embd (8), got 3"), std::string::npos)
      << st.message();
  bad = tiny_config();
  bad.vocab_size = 0;
  EXPECT_FALSE(bad.validate().ok());
  EXPECT_FALSE(GPT::init_random(bad, 1).ok());
}

TEST(GPT, LayoutMatchesGpt2Small) {
  const GPTConfig gpt2{50257, 1024, 12, 12, 768};
  EXPECT_EQ(gpt2.num_params(), 124439808u);  // GPT-2 small, tied head
  const auto layout = param_layout(gpt2);
  ASSERT_EQ(layout.size(), 2u + 12 * 12 + 2);
  EXPECT_EQ(layout[0].name, "transformer.wte.weight");
  EXPECT_EQ(layout[4].name, "transformer.h.0.attn.c_attn.weight");
  EXPECT_EQ(layout[4].shape, (std::vector<int64_t>{768, 2304}));
  EXPECT_TRUE(layout[4].decay);
  EXPECT_FALSE(layout[5].decay);  // c_attn.bias
  EXPECT_EQ(layout.back().name, "transformer.ln_f.bias");
  EXPECT_EQ(layout.back().offset + layout.back().numel, gpt2.num_params());
}

TEST(GPT, InitStatistics) {
  const GPTConfig cfg{64, 32, 4, 4, 64};
  auto m = GPT::init_random(cfg, 7);
  ASSERT_TRUE(m.ok());
  auto stdev = [&](const char* name) {
    const ParamTensor* t = m->find_param(name);
    EXPECT_NE(t, nullptr) << name;
    double s = 0;
    for (size_t i = 0; i < t->numel; i++)
      s += (double)m->params()[t->offset + i] * m->params()[t->offset + i];
    return std::sqrt(s / t->numel);
  };
  EXPECT_NEAR(stdev("transformer.h.0.mlp.c_fc.weight"), 0.02, 0.001);
  EXPECT_NEAR(stdev("transformer.h.1.mlp.c_proj.weight"), 0.02 / std::sqrt(8.0), 0.0005);
  EXPECT_EQ(m->params()[m->find_param("transformer.ln_f.weight")->offset], 1.0f);
  EXPECT_EQ(m->params()[m->find_param("transformer.h.0.attn.c_attn.bias")->offset], 0.0f);
}

TEST(GPT, ForwardRejectsBadInput) {
  auto m = GPT::init_random(tiny_config(), 1);
  ASSERT_TRUE(m.ok());
  std::vector<int32_t> tok(9, 1);
  EXPECT_FALSE(m->forward(tok.data(), 1, 9).ok());  // T > n_positions
  tok[3] = 11;
  const auto r = m->forward(tok.data(), 1, 8);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("token at index 3 is 11"), std::string::npos);
  EXPECT_FALSE(m->backward(nullptr).ok());
}

// Full-model gradient check in fp32. Parameters are rescaled to N(0, 0.3)
// so that every tensor gets gradients well above float noise. Two checks:
//  1. directional derivative along a random direction d over ALL parameters:
//     (L(θ+hd) − L(θ−hd))/2h vs g·d, h = 1e-3, relative error < 1e-2;
//  2. per element, 3 entries of every tensor, h = 1e-2:
//     |g − num| <= 2e-3 + 3e-2·|num|.
TEST(GPT, FullModelGradientCheck) {
  const GPTConfig cfg = tiny_config();
  auto mr = GPT::init_random(cfg, 3);
  ASSERT_TRUE(mr.ok());
  GPT& m = *mr;
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.0f, 0.3f);
  for (const ParamTensor& t : m.param_info()) {
    for (size_t i = 0; i < t.numel; i++) {
      float& p = m.params()[t.offset + i];
      p = (t.name.find("ln_") != std::string::npos && t.name.find("weight") != std::string::npos)
              ? 1.0f + nd(g)
              : nd(g);
    }
  }
  const int B = 2, T = 5;
  const auto tok = random_tokens(B * T, cfg.vocab_size, 9);
  std::vector<float> dlogits;
  m.zero_grad();
  model_loss(m, tok, B, T, &dlogits);
  ASSERT_TRUE(m.backward(dlogits.data()).ok());
  const std::vector<float> grad(m.grads().begin(), m.grads().end());

  // 1. Directional derivative.
  std::vector<float> d(m.num_params());
  for (float& x : d) x = nd(g);
  double gd = 0;
  for (size_t i = 0; i < d.size(); i++) gd += (double)grad[i] * d[i];
  const std::vector<float> base(m.params().begin(), m.params().end());
  auto shifted = [&](float h) {
    for (size_t i = 0; i < d.size(); i++) m.params()[i] = base[i] + h * d[i];
    return model_loss(m, tok, B, T, nullptr);
  };
  const float h = 1e-3f;
  const double num = (shifted(h) - shifted(-h)) / (2 * h);
  std::copy(base.begin(), base.end(), m.params().begin());
  EXPECT_NEAR(num, gd, 1e-2 * std::fabs(gd)) << "directional derivative";

  // 2. Selected elements of every tensor.
  for (const ParamTensor& t : m.param_info()) {
    for (size_t k = 0; k < 3; k++) {
      const size_t i = t.offset + (k * 7919) % t.numel;
      const float keep = m.params()[i];
      const float he = 1e-2f;
      m.params()[i] = keep + he;
      const double lp = model_loss(m, tok, B, T, nullptr);
      m.params()[i] = keep - he;
      const double lm = model_loss(m, tok, B, T, nullptr);
      m.params()[i] = keep;
      const double n = (lp - lm) / (2 * he);
      EXPECT_LE(std::fabs(grad[i] - n), 2e-3 + 3e-2 * std::fabs(n))
          << t.name << " element " << i - t.offset << ": analytic " << grad[i] << " numeric " << n;
    }
  }
}

// Gradient through the hidden-state input of backward(): L = Σ hidden ⊙ R.
TEST(GPT, HiddenGradientCheck) {
  auto mr = GPT::init_random(tiny_config(), 4);
  ASSERT_TRUE(mr.ok());
  GPT& m = *mr;
  const int B = 1, T = 6, C = 8;
  const auto tok = random_tokens(B * T, 11, 10);
  std::mt19937 g(6);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> R(B * T * C);
  for (float& x : R) x = nd(g);
  auto loss = [&] {
    EXPECT_TRUE(m.forward(tok.data(), B, T).ok());
    double s = 0;
    for (size_t i = 0; i < R.size(); i++) s += (double)m.hidden()[i] * R[i];
    return s;
  };
  loss();
  m.zero_grad();
  ASSERT_TRUE(m.backward(nullptr, R.data()).ok());
  std::vector<float> d(m.num_params());
  for (float& x : d) x = nd(g);
  double gd = 0;
  for (size_t i = 0; i < d.size(); i++) gd += (double)m.grads()[i] * d[i];
  const std::vector<float> base(m.params().begin(), m.params().end());
  const float h = 1e-4f;
  for (size_t i = 0; i < d.size(); i++) m.params()[i] = base[i] + h * d[i];
  const double lp = loss();
  for (size_t i = 0; i < d.size(); i++) m.params()[i] = base[i] - h * d[i];
  const double lm = loss();
  EXPECT_NEAR((lp - lm) / (2 * h), gd, 1e-2 * std::fabs(gd) + 1e-3);
}

TEST(GPT, FrozenCloneMatchesAndHasNoGradients) {
  const GPTConfig cfg{50, 16, 3, 2, 16};
  auto m = GPT::init_random(cfg, 11);
  ASSERT_TRUE(m.ok());
  GPT frozen = m->clone(Mode::kFrozen);
  EXPECT_EQ(frozen.mode(), Mode::kFrozen);
  EXPECT_TRUE(frozen.grads().empty());
  const auto tok = random_tokens(2 * 16, 50, 12);
  auto a = m->forward(tok.data(), 2, 16);
  auto b = frozen.forward(tok.data(), 2, 16);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  EXPECT_EQ(std::memcmp(a->data(), b->data(), a->size() * 4), 0);
  EXPECT_EQ(std::memcmp(m->hidden().data(), frozen.hidden().data(), m->hidden().size() * 4), 0);
  std::vector<float> dl(a->size(), 0.0f);
  const auto st = frozen.backward(dl.data());
  EXPECT_EQ(st.code(), assay::Code::kFailedPrecondition);
}

TEST(GPT, DeterministicAcrossRuns) {
  const GPTConfig cfg{40, 16, 2, 4, 32};
  auto run = [&] {
    auto m = GPT::init_random(cfg, 99);
    EXPECT_TRUE(m.ok());
    AdamW opt(AdamWConfig{}, *m);
    const auto tok = random_tokens(3 * 16, 40, 13);
    std::vector<float> dl;
    for (int s = 0; s < 3; s++) {
      m->zero_grad();
      model_loss(*m, tok, 3, 16, &dl);
      EXPECT_TRUE(m->backward(dl.data()).ok());
      clip_grad_norm(m->grads(), 1.0f);
      EXPECT_TRUE(opt.step(*m, 1e-3f).ok());
    }
    model_loss(*m, tok, 3, 16, nullptr);
    return std::make_pair(std::vector<float>(m->params().begin(), m->params().end()),
                          std::vector<float>(m->logits().begin(), m->logits().end()));
  };
  const auto a = run(), b = run();
  ASSERT_EQ(a.first.size(), b.first.size());
  EXPECT_EQ(std::memcmp(a.first.data(), b.first.data(), a.first.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.second.data(), b.second.data(), a.second.size() * 4), 0);
  auto other = GPT::init_random(cfg, 100);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->params()[5], GPT::init_random(cfg, 99)->params()[5]);
}

// The non-BLAS kernels fix their summation order independently of the thread
// count, so 1 and 2 threads give identical bits. Sizes are above the
// single-thread cut-off so that the parallel paths run.
TEST(Kernels, IdenticalAcrossThreadCounts) {
  namespace ops = assay::engine::ops;
  const int B = 2, T = 64, C = 768, NH = 6, V = 97;
  std::mt19937 g(8);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto randv = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(g);
    return v;
  };
  const auto x = randv((size_t)B * T * C), w = randv(C), bias = randv(C), dout = randv(x.size());
  const auto qkv = randv((size_t)B * T * 3 * C);
  const auto tok = random_tokens(B * T, V, 3);
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<float> out(x.size()), mean(B * T), rstd(B * T), dx(x.size()), dw(C), db(C);
    ops::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(),
                           B * T, C);
    ops::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                            mean.data(), rstd.data(), B * T, C);
    std::vector<float> att((size_t)B * NH * T * T), y(x.size()), dqkv(qkv.size());
    ops::attention_forward(y.data(), att.data(), qkv.data(), B, T, C, NH);
    ops::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
    std::vector<float> dwte((size_t)V * C), dwpe((size_t)T * C), gl(x.size());
    ops::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tok.data(), B, T, C);
    ops::gelu_backward(gl.data(), x.data(), dout.data(), x.size());
    std::vector<float> all;
    for (const auto* v : {&out, &dx, &dw, &db, &y, &dqkv, &dwte, &dwpe, &gl})
      all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  const int saved = num_threads();
  const auto one = run(1), two = run(2);
  set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * 4), 0);
}
