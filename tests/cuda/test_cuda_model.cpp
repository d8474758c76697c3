// CudaGPT against the CPU GPT on a tiny config: logits, parameter gradients,
// fused loss, and a few AdamW steps' loss trajectory. Skips without a GPU.
#include "cuda_test_util.h"

#include "assay/engine.h"
#include "assay/objectives.h"

namespace {

using assay::engine::GPT;
using assay::engine::GPTConfig;
using assay::engine::Mode;
using assay::engine::cuda::CudaGPT;

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const ::assay::Status s_ = (expr);                      \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.message();  \
  } while (0)

const GPTConfig kCfg{67, 16, 2, 4, 32};  // V, P, L, NH, C

struct Batch {
  int B = 3, T = 11;
  std::vector<int32_t> x, y;
  std::vector<float> mask;
};

Batch make_batch(uint64_t seed) {
  Batch b;
  std::mt19937_64 g(seed);
  for (int i = 0; i < b.B * b.T; i++) {
    b.x.push_back((int32_t)(g() % kCfg.vocab_size));
    b.y.push_back((int32_t)(g() % kCfg.vocab_size));
    b.mask.push_back(i % 7 == 3 ? 0.0f : 1.0f);
  }
  b.y[5] = -1;
  return b;
}

}  // namespace

TEST(CudaModel, ForwardBackwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  auto cpu = GPT::init_random(kCfg, 7);
  ASSERT_TRUE(cpu.ok());
  auto dev = CudaGPT::create(*cpu, 0, Mode::kTrain);
  ASSERT_TRUE(dev.ok()) << dev.status().message();
  const Batch b = make_batch(1);
  const size_t BTV = (size_t)b.B * b.T * kCfg.vocab_size;

  auto logits = cpu->forward(b.x.data(), b.B, b.T);
  ASSERT_TRUE(logits.ok());
  ASSERT_OK(dev->forward(b.x.data(), b.B, b.T));
  std::vector<float> dlog(BTV);
  ASSERT_OK(dev->copy_logits(dlog));
  EXPECT_TRUE(close_all(dlog, std::vector<float>(logits->begin(), logits->end()), kTf32Tol, "logits"));

  // Loss and dlogits: fused device classifier vs lm_cross_entropy (no mask).
  std::vector<float> dl_cpu(BTV);
  const float loss = assay::engine::lm_cross_entropy(logits->data(), b.y.data(), b.B * b.T, kCfg.vocab_size,
                                                     dl_cpu.data());
  auto dloss = dev->cross_entropy_backward(b.y.data(), nullptr);
  ASSERT_TRUE(dloss.ok()) << dloss.status().message();
  EXPECT_NEAR(dloss->loss, loss, 1e-3 * loss);

  // Gradients: backprop the CPU dlogits through both models so only the
  // model's own kernels are compared.
  cpu->zero_grad();
  ASSERT_OK(cpu->backward(dl_cpu.data()));
  ASSERT_OK(dev->zero_grad());
  ASSERT_OK(dev->backward_from_host(dl_cpu.data()));
  std::vector<float> g(dev->num_params());
  ASSERT_OK(dev->download_grads(g));
  const auto cg = cpu->grads();
  for (const auto& t : cpu->param_info()) {
    std::vector<float> a(g.begin() + t.offset, g.begin() + t.offset + t.numel);
    std::vector<float> w(cg.begin() + t.offset, cg.begin() + t.offset + t.numel);
    EXPECT_TRUE(close_all(a, w, {1e-4, 3e-2, 1e-2}, "grad " + t.name));
  }
}

TEST(CudaModel, FrozenForwardAndHiddenMatchCpu) {
  SKIP_WITHOUT_GPU();
  auto cpu = GPT::init_random(kCfg, 9, Mode::kFrozen);
  ASSERT_TRUE(cpu.ok());
  auto dev = CudaGPT::create(*cpu, 0, Mode::kFrozen);
  ASSERT_TRUE(dev.ok()) << dev.status().message();
  const Batch b = make_batch(2);
  auto logits = cpu->forward(b.x.data(), b.B, b.T);
  ASSERT_TRUE(logits.ok());
  ASSERT_OK(dev->forward(b.x.data(), b.B, b.T));
  std::vector<float> h((size_t)b.B * b.T * kCfg.n_embd);
  ASSERT_OK(dev->copy_hidden(h));
  const auto ch = cpu->hidden();
  EXPECT_TRUE(close_all(h, std::vector<float>(ch.begin(), ch.end()), kTf32Tol, "hidden"));
  EXPECT_FALSE(dev->backward().ok());  // frozen
  std::vector<int32_t> bad = b.x;
  bad[4] = kCfg.vocab_size;
  EXPECT_FALSE(dev->forward(bad.data(), b.B, b.T).ok());
}

TEST(CudaModel, TrainingStepsTrackCpu) {
  SKIP_WITHOUT_GPU();
  auto cpu = GPT::init_random(kCfg, 11);
  ASSERT_TRUE(cpu.ok());
  auto dev = CudaGPT::create(*cpu, 0, Mode::kTrain);
  ASSERT_TRUE(dev.ok()) << dev.status().message();
  assay::engine::AdamWConfig ac;
  assay::engine::AdamW opt(ac, *cpu);
  const Batch b = make_batch(3);  // the same batch each step: the loss must fall
  const size_t BTV = (size_t)b.B * b.T * kCfg.vocab_size;
  std::vector<float> dl(BTV);
  std::vector<double> lc, lg;
  for (int step = 0; step < 8; step++) {
    const float lr = 3e-3f;
    auto z = cpu->forward(b.x.data(), b.B, b.T);
    ASSERT_TRUE(z.ok());
    // CPU: masked CE as in the sft recipe (weights = mask, -1 ignored).
    std::vector<int> yi(b.y.begin(), b.y.end());
    const assay::obj::Logits zz{z->data(), b.B, b.T, kCfg.vocab_size};
    auto ce = assay::obj::cross_entropy(zz, yi, b.mask, {dl.data()});
    ASSERT_TRUE(ce.ok()) << ce.status().message();
    lc.push_back(ce->loss);
    cpu->zero_grad();
    ASSERT_OK(cpu->backward(dl.data()));
    assay::engine::clip_grad_norm(cpu->grads(), 1.0f);
    ASSERT_OK(opt.step(*cpu, lr));

    ASSERT_OK(dev->zero_grad());
    ASSERT_OK(dev->forward(b.x.data(), b.B, b.T));
    auto dloss = dev->cross_entropy_backward(b.y.data(), b.mask.data());
    ASSERT_TRUE(dloss.ok()) << dloss.status().message();
    lg.push_back(dloss->loss);
    ASSERT_OK(dev->backward());
    ASSERT_TRUE(dev->clip_grad_norm(1.0f).ok());
    ASSERT_OK(dev->adamw_step(ac, lr));
  }
  for (size_t i = 0; i < lc.size(); i++) EXPECT_NEAR(lg[i], lc[i], 2e-2 * lc[i]) << "step " << i;
  EXPECT_LT(lg.back(), lg.front() - 0.05) << "device loss did not fall";
  EXPECT_EQ(dev->adamw_t(), 8);
  // Parameters come back to a host model.
  GPT back = cpu->clone(Mode::kTrain);
  ASSERT_OK(dev->download_params(back));
  // Adam's update is ~lr per element whatever the gradient's size, so where
  // a gradient is tiny, TF32 noise can flip a step: allow 1% outliers.
  const auto a = back.params(), w = cpu->params();
  size_t off = 0;
  for (size_t i = 0; i < a.size(); i++) off += std::fabs(a[i] - w[i]) > 2e-3f + 5e-2f * std::fabs(w[i]);
  EXPECT_LE(off, a.size() / 100) << off << " of " << a.size() << " parameters differ after 8 steps";
}
