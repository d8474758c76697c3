// LoRA adapters: kernel gradients by finite differences, parity with the
// factorised form x·W + s·(x·Aᵀ)·Bᵀ and with a plain dense weight, FILA's
// worked example and unchanged outputs at init, PEFT files round trip, and
// merge = adapted forward.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "assay/engine.h"
#include "assay/engine_ops.h"
#include "assay/lora.h"
#include "grad_check.h"
#include "hf_python.h"

namespace {

namespace fs = std::filesystem;
namespace lora = assay::engine::lora;
using assay::engine::GPT;
using assay::engine::GPTConfig;
using assay::engine::Mode;

std::vector<double> randn(size_t n, unsigned seed, double sd = 1.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, sd);
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<float> to_f(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// The LoRA linear as the product computes it: W_eff = merge(W, A, B), then
// matmul; backward through matmul, then the adapters' share of dW_eff.
struct LinearCase {
  int N = 5, in = 6, out = 7, r = 3;
  double s = 2.0 / 3;
  std::vector<double> x, W, bias, A, B, g;  // g: fixed upstream weights of the loss
};

double composite_loss(const LinearCase& c, const std::vector<double>& x, const std::vector<double>& A,
                      const std::vector<double>& B) {
  std::vector<double> weff(c.W.size()), y((size_t)c.N * c.out);
  lora::lora_merge<double>(weff.data(), c.W.data(), A.data(), B.data(), c.s, c.in, c.out, c.r);
  assay::engine::ops::matmul_forward<double>(y.data(), x.data(), weff.data(), c.bias.data(), c.N, c.in, c.out);
  double L = 0;  // a nonlinear loss so that the check is not only about linearity
  for (size_t i = 0; i < y.size(); i++) L += c.g[i] * y[i] + 0.5 * y[i] * y[i];
  return L;
}

LinearCase make_case(unsigned seed) {
  LinearCase c;
  c.x = randn((size_t)c.N * c.in, seed);
  c.W = randn((size_t)c.in * c.out, seed + 1, 0.5);
  c.bias = randn(c.out, seed + 2, 0.1);
  c.A = randn((size_t)c.r * c.in, seed + 3, 0.5);
  c.B = randn((size_t)c.out * c.r, seed + 4, 0.5);
  c.g = randn((size_t)c.N * c.out, seed + 5);
  return c;
}

TEST(LoraKernels, GradientsOfAdaptersAndInputMatchFiniteDifferences) {
  LinearCase c = make_case(11);
  std::vector<double> weff(c.W.size()), y((size_t)c.N * c.out), dy(y.size());
  lora::lora_merge<double>(weff.data(), c.W.data(), c.A.data(), c.B.data(), c.s, c.in, c.out, c.r);
  assay::engine::ops::matmul_forward<double>(y.data(), c.x.data(), weff.data(), c.bias.data(), c.N, c.in, c.out);
  for (size_t i = 0; i < y.size(); i++) dy[i] = c.g[i] + y[i];
  std::vector<double> dx(c.x.size(), 0.0), dW(c.W.size(), 0.0), db(c.out, 0.0), dA(c.A.size(), 0.0),
      dB(c.B.size(), 0.0);
  assay::engine::ops::matmul_backward<double>(dx.data(), dW.data(), db.data(), dy.data(), c.x.data(), weff.data(),
                                              c.N, c.in, c.out);
  lora::lora_backward_from_dense<double>(dA.data(), dB.data(), dW.data(), c.A.data(), c.B.data(), c.s, c.in,
                                         c.out, c.r);
  std::vector<double> x = c.x, A = c.A, B = c.B;
  expect_grad("dA", A, dA, [&] { return composite_loss(c, x, A, B); });
  expect_grad("dB", B, dB, [&] { return composite_loss(c, x, A, B); });
  expect_grad("dx", x, dx, [&] { return composite_loss(c, x, A, B); });
}

TEST(LoraKernels, BackwardAccumulates) {
  LinearCase c = make_case(3);
  std::vector<double> dW = randn(c.W.size(), 9), dA(c.A.size(), 0.0), dB(c.B.size(), 0.0);
  lora::lora_backward_from_dense<double>(dA.data(), dB.data(), dW.data(), c.A.data(), c.B.data(), c.s, c.in,
                                         c.out, c.r);
  std::vector<double> dA2 = dA, dB2 = dB;
  lora::lora_backward_from_dense<double>(dA2.data(), dB2.data(), dW.data(), c.A.data(), c.B.data(), c.s, c.in,
                                         c.out, c.r);
  for (size_t i = 0; i < dA.size(); i++) EXPECT_NEAR(dA2[i], 2 * dA[i], 1e-12);
  for (size_t i = 0; i < dB.size(); i++) EXPECT_NEAR(dB2[i], 2 * dB[i], 1e-12);
}

// Factorised LoRA in float (the form PEFT runs), written out with plain loops:
//   y = x·W + b + s·(x·Aᵀ)·Bᵀ;  h = x·Aᵀ;  dh = s·dy·B
//   dx = dy·Wᵀ + dh·A;  dA = dhᵀ·x;  dB = s·dyᵀ·h
TEST(LoraKernels, FloatPathMatchesFactorisedForwardAndBackward) {
  LinearCase c = make_case(21);
  c.N = 5;
  const auto x = to_f(c.x), W = to_f(c.W), b = to_f(c.bias), A = to_f(c.A), B = to_f(c.B), dy = to_f(c.g);
  const int N = c.N, in = c.in, out = c.out, r = c.r;
  std::vector<double> h((size_t)N * r, 0), yref((size_t)N * out, 0), dh((size_t)N * r, 0);
  std::vector<double> dxref((size_t)N * in, 0), dAref((size_t)r * in, 0), dBref((size_t)out * r, 0);
  for (int n = 0; n < N; n++) {
    for (int k = 0; k < r; k++)
      for (int i = 0; i < in; i++) h[n * r + k] += (double)x[n * in + i] * A[k * in + i];
    for (int o = 0; o < out; o++) {
      double v = b[o];
      for (int i = 0; i < in; i++) v += (double)x[n * in + i] * W[i * out + o];
      for (int k = 0; k < r; k++) v += c.s * h[n * r + k] * B[o * r + k];
      yref[n * out + o] = v;
    }
    for (int k = 0; k < r; k++)
      for (int o = 0; o < out; o++) dh[n * r + k] += c.s * dy[n * out + o] * B[o * r + k];
    for (int i = 0; i < in; i++) {
      double v = 0;
      for (int o = 0; o < out; o++) v += (double)dy[n * out + o] * W[i * out + o];
      for (int k = 0; k < r; k++) v += dh[n * r + k] * A[k * in + i];
      dxref[n * in + i] = v;
    }
    for (int k = 0; k < r; k++)
      for (int i = 0; i < in; i++) dAref[k * in + i] += dh[n * r + k] * x[n * in + i];
    for (int o = 0; o < out; o++)
      for (int k = 0; k < r; k++) dBref[o * r + k] += c.s * dy[n * out + o] * h[n * r + k];
  }
  std::vector<float> weff(W.size()), y((size_t)N * out), dx(x.size(), 0), dW(W.size(), 0), db(out, 0),
      dA(A.size(), 0), dB(B.size(), 0);
  lora::lora_merge<float>(weff.data(), W.data(), A.data(), B.data(), c.s, in, out, r);
  assay::engine::ops::matmul_forward<float>(y.data(), x.data(), weff.data(), b.data(), N, in, out);
  assay::engine::ops::matmul_backward<float>(dx.data(), dW.data(), db.data(), dy.data(), x.data(), weff.data(), N,
                                             in, out);
  lora::lora_backward_from_dense<float>(dA.data(), dB.data(), dW.data(), A.data(), B.data(), c.s, in, out, r);
  auto near = [](const char* what, const std::vector<float>& got, const std::vector<double>& want) {
    for (size_t i = 0; i < got.size(); i++)
      ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << what << "[" << i << "]";
  };
  near("y", y, yref);
  near("dx", dx, dxref);
  near("dA", dA, dAref);
  near("dB", dB, dBref);
}

// ------------------------------------------------------------ model level

GPTConfig tiny_cfg() { return GPTConfig{31, 16, 2, 2, 8}; }

std::vector<int32_t> tokens(int n, unsigned seed, int V) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(g() % V);
  return t;
}

// Adapters with every A and B nonzero, so that the adapter path is exercised.
lora::LoraAdapters random_adapters(const GPT& m, lora::LoraConfig cfg, unsigned seed) {
  auto a = lora::LoraAdapters::create(m, cfg, seed);
  EXPECT_TRUE(a.ok()) << a.status().to_string();
  const auto v = randn(a->params().size(), seed, 0.2);
  std::copy(v.begin(), v.end(), a->params().begin());
  return std::move(*a);
}

TEST(LoraModel, TargetsFollowPeftSuffixMatching) {
  auto m = GPT::init_random(tiny_cfg(), 1, Mode::kFrozen);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  auto t = lora::match_targets(*m, c);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 8u);  // 2 layers x (c_attn, attn.c_proj, c_fc, mlp.c_proj)
  EXPECT_EQ((*t)[0].module, "transformer.h.0.attn.c_attn");
  EXPECT_EQ((*t)[1].module, "transformer.h.0.attn.c_proj");
  EXPECT_EQ((*t)[3].module, "transformer.h.0.mlp.c_proj");
  EXPECT_EQ((*t)[3].in, 32);
  EXPECT_EQ((*t)[3].out, 8);
  c.targets = {"mlp.c_proj"};
  t = lora::match_targets(*m, c);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->size(), 2u);
  c.targets = {"q_proj"};
  t = lora::match_targets(*m, c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("'q_proj' matches no Conv1D weight"), std::string::npos);
}

TEST(LoraModel, DefaultInitLeavesModelUnchanged) {
  auto m = GPT::init_random(tiny_cfg(), 2, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  const std::vector<float> before(m->params().begin(), m->params().end());
  auto a = lora::LoraAdapters::create(*m, {}, 5);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->apply(*m).ok());
  EXPECT_TRUE(std::equal(before.begin(), before.end(), m->params().begin()));  // B = 0
  const auto& t = a->targets()[0];
  const float* A = a->params().data() + t.a_offset;
  double mx = 0;
  for (int i = 0; i < 8 * t.in; i++) mx = std::max(mx, (double)std::fabs(A[i]));
  EXPECT_GT(mx, 0.0);
  EXPECT_LE(mx, 1.0 / std::sqrt((double)t.in));  // kaiming_uniform(a = sqrt(5)) bound
}

// The adapted model equals a plain GPT whose targets hold W + s·(B·A)ᵀ built
// independently here; the adapters' gradients equal the chain rule applied
// to that dense model's weight gradients.
TEST(LoraModel, ForwardAndBackwardMatchDenseEquivalent) {
  auto m = GPT::init_random(tiny_cfg(), 3, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  c.r = 2;
  c.alpha = 5;
  auto ad = random_adapters(*m, c, 7);
  std::vector<float> dense(m->params().begin(), m->params().end());
  const double s = c.alpha / c.r;
  for (const auto& t : ad.targets()) {
    const float* A = ad.params().data() + t.a_offset;
    const float* B = ad.params().data() + t.b_offset;
    for (int i = 0; i < t.in; i++)
      for (int o = 0; o < t.out; o++) {
        double d = 0;
        for (int k = 0; k < c.r; k++) d += (double)B[o * c.r + k] * A[k * t.in + i];
        dense[t.w_offset + (size_t)i * t.out + o] = (float)(dense[t.w_offset + (size_t)i * t.out + o] + s * d);
      }
  }
  auto dm = GPT::from_params(tiny_cfg(), dense, Mode::kTrain);
  ASSERT_TRUE(dm.ok());
  ASSERT_TRUE(ad.apply(*m).ok());
  const int B = 2, T = 6, V = tiny_cfg().vocab_size;
  const auto tok = tokens(B * T, 4, V);
  auto l1 = m->forward(tok.data(), B, T);
  auto l2 = dm->forward(tok.data(), B, T);
  ASSERT_TRUE(l1.ok() && l2.ok());
  for (size_t i = 0; i < l1->size(); i++) ASSERT_NEAR((*l1)[i], (*l2)[i], 1e-5) << "logit " << i;
  const auto dlog = to_f(randn((size_t)B * T * V, 8, 0.1));
  m->zero_grad();
  dm->zero_grad();
  ASSERT_TRUE(m->backward(dlog.data()).ok());
  ASSERT_TRUE(dm->backward(dlog.data()).ok());
  ad.zero_grad();
  ASSERT_TRUE(ad.collect_grads(*m).ok());
  for (const auto& t : ad.targets()) {
    const float* A = ad.params().data() + t.a_offset;
    const float* Bm = ad.params().data() + t.b_offset;
    const float* dW = dm->grads().data() + t.w_offset;
    for (int k = 0; k < c.r; k++)
      for (int i = 0; i < t.in; i++) {
        double want = 0;  // dA = s·Bᵀ·dWᵀ
        for (int o = 0; o < t.out; o++) want += s * Bm[o * c.r + k] * dW[(size_t)i * t.out + o];
        ASSERT_NEAR(ad.grads()[t.a_offset + (size_t)k * t.in + i], want, 1e-5 * (1 + std::fabs(want)))
            << t.module << " dA";
      }
    for (int o = 0; o < t.out; o++)
      for (int k = 0; k < c.r; k++) {
        double want = 0;  // dB = s·dWᵀ·Aᵀ
        for (int i = 0; i < t.in; i++) want += s * dW[(size_t)i * t.out + o] * A[k * t.in + i];
        ASSERT_NEAR(ad.grads()[t.b_offset + (size_t)o * c.r + k], want, 1e-5 * (1 + std::fabs(want)))
            << t.module << " dB";
      }
  }
}

// End to end through the model in float: a few adapter entries against
// central differences of the LM loss (h = 1e-2; loose, float forward).
TEST(LoraModel, AdapterGradientsMatchFiniteDifferencesOfModelLoss) {
  auto m = GPT::init_random(tiny_cfg(), 4, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  c.r = 2;
  auto ad = random_adapters(*m, c, 9);
  const int B = 2, T = 5, V = tiny_cfg().vocab_size;
  const auto tok = tokens(B * T, 5, V);
  auto tgt = tokens(B * T, 6, V);
  auto loss = [&](bool grad) {
    EXPECT_TRUE(ad.apply(*m).ok());
    auto lg = m->forward(tok.data(), B, T);
    std::vector<float> d(lg->size());
    const float L = assay::engine::lm_cross_entropy(lg->data(), tgt.data(), B * T, V, grad ? d.data() : nullptr);
    if (grad) {
      m->zero_grad();
      EXPECT_TRUE(m->backward(d.data()).ok());
      ad.zero_grad();
      EXPECT_TRUE(ad.collect_grads(*m).ok());
    }
    return (double)L;
  };
  loss(true);
  const std::vector<float> g(ad.grads().begin(), ad.grads().end());
  std::mt19937 pick(3);
  double max_g = 0;
  for (int n = 0; n < 24; n++) {
    const size_t j = pick() % g.size();
    const float keep = ad.params()[j], h = 1e-2f;
    ad.params()[j] = keep + h;
    const double lp = loss(false);
    ad.params()[j] = keep - h;
    const double lm = loss(false);
    ad.params()[j] = keep;
    const double fd = (lp - lm) / (2 * h);
    max_g = std::max(max_g, std::fabs(fd));
    EXPECT_NEAR(g[j], fd, 2e-4 + 0.05 * std::fabs(fd)) << "adapter value " << j;
  }
  EXPECT_GT(max_g, 1e-4);
}

// ------------------------------------------------------------------ FILA

// The worked example of the LoKU code read: W = [[2,0],[0,1]] (nn.Linear
// [out,in]; diagonal, so the Conv1D layout is the same), F = [[1,0],[0,9]],
// r = 1, alpha = 2: the adapter takes row 1 (weighted σ = 3), not row 0.
TEST(Fila, WorkedExample) {
  GPTConfig cfg{5, 4, 1, 1, 2};
  auto m = GPT::init_random(cfg, 1, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  c.r = 1;
  c.alpha = 2;
  c.targets = {"attn.c_proj"};
  auto ad = lora::LoraAdapters::create(*m, c, 1);
  ASSERT_TRUE(ad.ok());
  const auto& t = ad->targets()[0];
  const float W[4] = {2, 0, 0, 1};
  std::copy(W, W + 4, m->params().begin() + t.w_offset);
  ad = lora::LoraAdapters::create(*m, c, 1);  // base = the edited weights
  std::vector<double> imp_f(m->num_params(), 0.0), imp_r(m->num_params(), 0.0);
  imp_f[t.w_offset + 0] = 1e-5;  // F = (imp_f/1) / (1e-5 + 0)
  imp_f[t.w_offset + 3] = 9e-5;
  ASSERT_TRUE(ad->fila_init(imp_f, 1.0, imp_r, 1.0).ok());
  const float* A = ad->params().data() + t.a_offset;
  const float* B = ad->params().data() + t.b_offset;
  const double sgn = A[1] > 0 ? 1 : -1;  // singular vectors are defined up to sign
  EXPECT_NEAR(A[0], 0.0, 1e-6);
  EXPECT_NEAR(A[1], sgn * std::sqrt(1.5), 1e-5);
  EXPECT_NEAR(B[0], 0.0, 1e-6);
  EXPECT_NEAR(B[1], sgn * std::sqrt(1.5) / (3 + 1e-5), 1e-5);
  const float* Wres = ad->base().data() + t.w_offset;
  EXPECT_NEAR(Wres[0], 2.0, 1e-5);
  EXPECT_NEAR(Wres[3], 0.0, 1e-5);
  EXPECT_NEAR(Wres[1], 0.0, 1e-6);
  EXPECT_NEAR(Wres[2], 0.0, 1e-6);
}

TEST(Fila, LeavesOutputsUnchangedAtInit) {
  auto m = GPT::init_random(tiny_cfg(), 6, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  const int B = 2, T = 7, V = tiny_cfg().vocab_size;
  const auto tok = tokens(B * T, 2, V);
  auto l0 = m->forward(tok.data(), B, T);
  ASSERT_TRUE(l0.ok());
  const std::vector<float> before(l0->begin(), l0->end());
  const std::vector<float> p0(m->params().begin(), m->params().end());
  lora::LoraConfig c;
  c.r = 4;
  auto ad = lora::LoraAdapters::create(*m, c, 2);
  ASSERT_TRUE(ad.ok());
  auto f = randn(m->num_params(), 12), rr = randn(m->num_params(), 13);
  for (auto& x : f) x = x * x;
  for (auto& x : rr) x = x * x;
  ASSERT_TRUE(ad->fila_init(f, 10.0, rr, 20.0).ok());
  ASSERT_TRUE(ad->apply(*m).ok());
  auto l1 = m->forward(tok.data(), B, T);
  ASSERT_TRUE(l1.ok());
  for (size_t i = 0; i < before.size(); i++) ASSERT_NEAR((*l1)[i], before[i], 1e-5) << "logit " << i;
  // Not vacuous: the base moved (W_res) and the adapters are nonzero.
  double moved = 0, anorm = 0;
  for (const auto& t : ad->targets())
    for (size_t i = 0; i < (size_t)t.in * t.out; i++)
      moved = std::max(moved, (double)std::fabs(ad->base()[t.w_offset + i] - p0[t.w_offset + i]));
  for (float x : ad->params()) anorm += (double)x * x;
  EXPECT_GT(moved, 1e-3);
  EXPECT_GT(anorm, 1e-3);
  // Everything that is not a target stays exactly the init.
  auto tg = lora::match_targets(*m, c);
  std::vector<bool> is_t(m->num_params(), false);
  for (const auto& t : *tg) std::fill(is_t.begin() + t.w_offset, is_t.begin() + t.w_offset + (size_t)t.in * t.out, true);
  for (size_t i = 0; i < p0.size(); i++)
    if (!is_t[i]) ASSERT_EQ(ad->base()[i], p0[i]) << "param " << i;
}

// ------------------------------------------------------------- PEFT files

class LoraFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("assay_lora_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(LoraFiles, SaveWritesPeftLayoutAndLoadRoundTrips) {
  auto m = GPT::init_random(tiny_cfg(), 1, Mode::kFrozen);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  c.r = 3;
  c.alpha = 6;
  auto ad = random_adapters(*m, c, 4);
  ASSERT_TRUE(lora::save_adapter((dir_ / "ad").string(), ad, "/models/base").ok());
  std::ifstream f(dir_ / "ad" / "adapter_config.json");
  const auto j = nlohmann::json::parse(f);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 3);
  EXPECT_EQ(j["lora_alpha"], 6);
  EXPECT_EQ(j["fan_in_fan_out"], true);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["lora_dropout"], 0.0);
  EXPECT_EQ(j["base_model_name_or_path"], "/models/base");
  EXPECT_EQ(j["target_modules"], nlohmann::json({"c_attn", "c_proj", "c_fc"}));
  auto st = assay::engine::SafeTensors::read((dir_ / "ad" / "adapter_model.safetensors").string());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->tensors().size(), 16u);
  const auto* a = st->find("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight");
  const auto* b = st->find("base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 8}));   // [r, in]
  EXPECT_EQ(b->shape, (std::vector<int64_t>{8, 3}));   // [out, r]
  EXPECT_EQ(a->dtype, "F32");
  auto file = lora::read_adapter((dir_ / "ad").string());
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  auto back = lora::load_adapter(*m, *file);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  ASSERT_EQ(back->params().size(), ad.params().size());
  EXPECT_TRUE(std::equal(ad.params().begin(), ad.params().end(), back->params().begin()));
  EXPECT_EQ(back->config().alpha, 6);
}

TEST_F(LoraFiles, ReadRejectsUnsupportedConfigsAndShapes) {
  auto m = GPT::init_random(tiny_cfg(), 1, Mode::kFrozen);
  ASSERT_TRUE(m.ok());
  lora::LoraConfig c;
  c.r = 2;
  auto ad = random_adapters(*m, c, 4);
  const std::string d = (dir_ / "ad").string();
  ASSERT_TRUE(lora::save_adapter(d, ad, "base").ok());
  auto edit = [&](const std::string& key, const nlohmann::json& v) {
    std::ifstream f(dir_ / "ad" / "adapter_config.json");
    auto j = nlohmann::json::parse(f);
    j[key] = v;
    std::ofstream(dir_ / "ad" / "adapter_config.json") << j.dump();
  };
  edit("use_dora", true);
  auto r = lora::read_adapter(d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("adapter_config.json: use_dora: expected false, got true"), std::string::npos)
      << r.status().message();
  edit("use_dora", false);
  edit("r", 4);  // the tensors are rank 2
  r = lora::read_adapter(d);
  ASSERT_TRUE(r.ok());
  auto l = lora::load_adapter(*m, *r);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("lora_A.weight: expected shape [4, 8]"), std::string::npos)
      << l.status().message();
  edit("r", 2);
  edit("target_modules", nlohmann::json::array({"c_attn"}));  // the file also holds c_proj, c_fc
  r = lora::read_adapter(d);
  ASSERT_TRUE(r.ok());
  l = lora::load_adapter(*m, *r);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("a tensor for a module the config does not target"), std::string::npos)
      << l.status().message();
}

TEST_F(LoraFiles, MergedCheckpointEqualsAdaptedForward) {
  const GPTConfig cfg{257, 16, 2, 2, 8};  // the byte tokenizer's vocabulary
  auto m = GPT::init_random(cfg, 8, Mode::kTrain);
  ASSERT_TRUE(m.ok());
  auto tok = assay::engine::make_byte_tokenizer();
  const std::string base = (dir_ / "base").string();
  auto bh = assay::engine::save_checkpoint(base, *m, *tok, {});
  ASSERT_TRUE(bh.ok()) << bh.status().to_string();
  lora::LoraConfig c;
  c.r = 2;
  c.targets = {"c_attn", "mlp.c_proj"};
  auto ad = random_adapters(*m, c, 6);
  ASSERT_TRUE(lora::save_adapter((dir_ / "ad").string(), ad, base).ok());
  auto h = lora::merge_to_checkpoint(base, (dir_ / "ad").string(), (dir_ / "merged").string());
  ASSERT_TRUE(h.ok()) << h.status().to_string();
  auto ck = assay::engine::load_checkpoint((dir_ / "merged").string(), Mode::kFrozen);
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(ck->meta.parent, *bh);
  EXPECT_EQ(ck->hash, *h);
  ASSERT_TRUE(ad.apply(*m).ok());
  // Same floats in, same kernel: the merged weights are the adapted ones bit for bit.
  EXPECT_TRUE(std::equal(m->params().begin(), m->params().end(), ck->model.params().begin()));
  const int B = 1, T = 9;
  const auto t = tokens(B * T, 1, cfg.vocab_size);
  auto la = m->forward(t.data(), B, T);
  auto lb = ck->model.forward(t.data(), B, T);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_TRUE(std::equal(la->begin(), la->end(), lb->begin()));
  auto bad = lora::merge_to_checkpoint(base, (dir_ / "nothing").string(), (dir_ / "m2").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("adapter_config.json: cannot open"), std::string::npos)
      << bad.status().message();
}

// Peer check: transformers loads the base and the merged checkpoint, torch
// recomputes W + (lora_alpha/r)·(B·A)ᵀ from the PEFT files (the
// fan_in_fan_out merge), and the merged weights must agree.
TEST_F(LoraFiles, MergeMatchesTorchRecomputation) {
  const std::string lacks = hf_python_lacks("torch, transformers, safetensors");
  if (!lacks.empty()) GTEST_SKIP() << lacks;
  const GPTConfig cfg{257, 16, 2, 2, 8};
  auto m = GPT::init_random(cfg, 9, Mode::kFrozen);
  ASSERT_TRUE(m.ok());
  auto tok = assay::engine::make_byte_tokenizer();
  const std::string base = (dir_ / "base").string(), ad_dir = (dir_ / "ad").string(),
                    merged = (dir_ / "merged").string();
  ASSERT_TRUE(assay::engine::save_checkpoint(base, *m, *tok, {}).ok());
  lora::LoraConfig c;
  c.r = 3;
  c.alpha = 7;
  auto ad = random_adapters(*m, c, 2);
  ASSERT_TRUE(lora::save_adapter(ad_dir, ad, base).ok());
  ASSERT_TRUE(lora::merge_to_checkpoint(base, ad_dir, merged).ok());
  const std::string py = R"(import json, sys, torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel
base, ad, merged = sys.argv[1:4]
cfg = json.load(open(ad + "/adapter_config.json"))
s = cfg["lora_alpha"] / cfg["r"]
t = load_file(ad + "/adapter_model.safetensors")
b = GPT2LMHeadModel.from_pretrained(base).state_dict()
m = GPT2LMHeadModel.from_pretrained(merged).state_dict()
n, worst = 0, 0.0
for k in b:
    if not k.endswith(".weight"):
        continue
    mod = k[:-len(".weight")]
    a_key = "base_model.model." + mod + ".lora_A.weight"
    want = b[k].double()
    if a_key in t:
        A = t[a_key].double(); B = t["base_model.model." + mod + ".lora_B.weight"].double()
        want = want + s * (B @ A).T
        n += 1
    worst = max(worst, (m[k].double() - want).abs().max().item())
print(n, worst)
)";
  std::ofstream(dir_ / "peer.py") << py;
  const std::string cmd = hf_python() + " " + (dir_ / "peer.py").string() + " " + base + " " + ad_dir + " " +
                          merged + " > " + (dir_ / "peer.out").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << [&] {
    std::ifstream f(dir_ / "peer.out");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }();
  std::ifstream f(dir_ / "peer.out");
  int n = 0;
  double worst = 1;
  f >> n >> worst;
  EXPECT_EQ(n, 8);  // 2 layers x 4 Conv1D weights
  EXPECT_LT(worst, 1e-6);
}

}  // namespace
