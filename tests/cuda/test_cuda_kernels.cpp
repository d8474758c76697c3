// Each CUDA kernel against the CPU reference kernel of engine_ops.h (forward
// and backward; backward outputs start non-zero to check accumulation).
// Skips with a reason without CUDA or without a GPU.
#include "cuda_test_util.h"

#include <numeric>

#include "assay/engine.h"
#include "assay/engine_ops.h"
#include "assay/objectives.h"

#ifdef ASSAY_WITH_CUDA
#include <cuda_runtime.h>

#include "kernels.cuh"

namespace {

namespace ops = assay::engine::ops;
namespace k = assay::engine::cuda::k;

// A device copy of a host vector; get() copies back (after a sync).
template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(const std::vector<T>& h) : n(h.size()) {
    if (cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess) p = nullptr;
    if (p && n) cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  DevBuf(const DevBuf&) = delete;
  ~DevBuf() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

#define ASSERT_OK(expr)                           \
  do {                                            \
    const ::assay::Status s_ = (expr);            \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.message(); \
  } while (0)

std::vector<float> zeros(size_t n) { return std::vector<float>(n, 0.0f); }

std::vector<int32_t> rand_tokens(size_t n, int V, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(g() % (uint64_t)V);
  return t;
}

}  // namespace
#endif

TEST(CudaKernels, Encoder) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int B = 2, T = 5, C = 8, V = 7;
  auto wte = randn(V * C, 1), wpe = randn(T * C, 2), dout = randn(B * T * C, 3);
  auto inp = rand_tokens(B * T, V, 4);
  std::vector<float> out(B * T * C);
  ops::encoder_forward(out.data(), inp.data(), wte.data(), wpe.data(), B, T, C);
  DevBuf<float> d_wte(wte), d_wpe(wpe), d_out(zeros(B * T * C)), d_dout(dout);
  DevBuf<int32_t> d_inp(inp);
  ASSERT_OK(k::encoder_forward(d_out.p, d_inp.p, d_wte.p, d_wpe.p, B, T, C));
  EXPECT_TRUE(close_all(d_out.get(), out, kFp32Tol, "encoder_forward"));
  auto dwte = randn(V * C, 5), dwpe = randn(T * C, 6);
  DevBuf<float> d_dwte(dwte), d_dwpe(dwpe);
  ops::encoder_backward(dwte.data(), dwpe.data(), dout.data(), inp.data(), B, T, C);
  ASSERT_OK(k::encoder_backward(d_dwte.p, d_dwpe.p, d_dout.p, d_inp.p, B, T, C));
  EXPECT_TRUE(close_all(d_dwte.get(), dwte, kFp32Tol, "encoder_backward dwte"));
  EXPECT_TRUE(close_all(d_dwpe.get(), dwpe, kFp32Tol, "encoder_backward dwpe"));
#endif
}

TEST(CudaKernels, LayerNorm) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int N = 37, C = 70;  // C not a multiple of the warp size
  auto inp = randn(N * C, 1, 2.0f), w = randn(C, 2), b = randn(C, 3), dout = randn(N * C, 4);
  std::vector<float> out(N * C), mean(N), rstd(N);
  ops::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
  DevBuf<float> d_inp(inp), d_w(w), d_b(b), d_out(zeros(N * C)), d_mean(zeros(N)),
      d_rstd(zeros(N)), d_dout(dout);
  ASSERT_OK(k::layernorm_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_w.p, d_b.p, N, C));
  EXPECT_TRUE(close_all(d_out.get(), out, {1e-5, 1e-4}, "layernorm_forward out"));
  EXPECT_TRUE(close_all(d_mean.get(), mean, kFp32Tol, "layernorm_forward mean"));
  EXPECT_TRUE(close_all(d_rstd.get(), rstd, {1e-5, 1e-4}, "layernorm_forward rstd"));
  auto dinp = randn(N * C, 5), dw = randn(C, 6), db = randn(C, 7);
  DevBuf<float> d_dinp(dinp), d_dw(dw), d_db(db);
  ops::layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), mean.data(),
                          rstd.data(), N, C);
  ASSERT_OK(k::layernorm_backward(d_dinp.p, d_dw.p, d_db.p, d_dout.p, d_inp.p, d_w.p, d_mean.p, d_rstd.p, N, C));
  EXPECT_TRUE(close_all(d_dinp.get(), dinp, {1e-4, 1e-4}, "layernorm_backward dinp"));
  EXPECT_TRUE(close_all(d_dw.get(), dw, {1e-4, 1e-4}, "layernorm_backward dweight"));
  EXPECT_TRUE(close_all(d_db.get(), db, {1e-4, 1e-4}, "layernorm_backward dbias"));
#endif
}

TEST(CudaKernels, MatmulAndHead) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int N = 19, C = 24, OC = 40, V = 33;
  auto inp = randn(N * C, 1), w = randn(C * OC, 2, 0.2f), b = randn(OC, 3), dout = randn(N * OC, 4);
  std::vector<float> out(N * OC);
  ops::matmul_forward(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
  DevBuf<float> d_inp(inp), d_w(w), d_b(b), d_out(zeros(N * OC)), d_dout(dout);
  ASSERT_OK(k::matmul_forward(d_out.p, d_inp.p, d_w.p, d_b.p, N, C, OC));
  EXPECT_TRUE(close_all(d_out.get(), out, kTf32Tol, "matmul_forward"));
  auto dinp = randn(N * C, 5), dw = randn(C * OC, 6), db = randn(OC, 7);
  DevBuf<float> d_dinp(dinp), d_dw(dw), d_db(db);
  ops::matmul_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), N, C, OC);
  ASSERT_OK(k::matmul_backward(d_dinp.p, d_dw.p, d_db.p, d_dout.p, d_inp.p, d_w.p, N, C, OC));
  EXPECT_TRUE(close_all(d_dinp.get(), dinp, kTf32Tol, "matmul_backward dinp"));
  EXPECT_TRUE(close_all(d_dw.get(), dw, kTf32Tol, "matmul_backward dweight"));
  EXPECT_TRUE(close_all(d_db.get(), db, kFp32Tol, "matmul_backward dbias"));

  auto wte = randn(V * C, 8, 0.2f), dlogits = randn(N * V, 9);
  std::vector<float> logits(N * V);
  ops::head_forward(logits.data(), inp.data(), wte.data(), N, C, V);
  DevBuf<float> d_wte(wte), d_logits(zeros(N * V)), d_dlogits(dlogits);
  ASSERT_OK(k::head_forward(d_logits.p, d_inp.p, d_wte.p, N, C, V));
  EXPECT_TRUE(close_all(d_logits.get(), logits, kTf32Tol, "head_forward"));
  auto hdinp = randn(N * C, 10), dwte = randn(V * C, 11);
  DevBuf<float> d_hdinp(hdinp), d_dwte(dwte);
  ops::head_backward(hdinp.data(), dwte.data(), dlogits.data(), inp.data(), wte.data(), N, C, V);
  ASSERT_OK(k::head_backward(d_hdinp.p, d_dwte.p, d_dlogits.p, d_inp.p, d_wte.p, N, C, V));
  EXPECT_TRUE(close_all(d_hdinp.get(), hdinp, kTf32Tol, "head_backward dinp"));
  EXPECT_TRUE(close_all(d_dwte.get(), dwte, kTf32Tol, "head_backward dwte"));
#endif
}

TEST(CudaKernels, Attention) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int B = 2, T = 37, C = 24, NH = 3;  // T > 32: rows span several warp strides
  auto qkv = randn((size_t)B * T * 3 * C, 1), dout = randn((size_t)B * T * C, 2);
  std::vector<float> out(B * T * C), att((size_t)B * NH * T * T);
  ops::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  DevBuf<float> d_qkv(qkv), d_out(zeros(B * T * C)), d_att(zeros(att.size())),
      d_dout(dout), d_s1(zeros(k::attention_scratch_floats(B, T, C))),
      d_s2(zeros(k::attention_scratch_floats(B, T, C))), d_datt(zeros(att.size()));
  ASSERT_OK(k::attention_forward(d_out.p, d_att.p, d_qkv.p, d_s1.p, B, T, C, NH));
  EXPECT_TRUE(close_all(d_att.get(), att, kTf32Tol, "attention_forward att"));
  EXPECT_TRUE(close_all(d_out.get(), out, kTf32Tol, "attention_forward out"));
  auto dqkv = randn(qkv.size(), 3);
  DevBuf<float> d_dqkv(dqkv);
  ops::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  ASSERT_OK(k::attention_backward(d_dqkv.p, d_dout.p, d_qkv.p, d_att.p, d_datt.p, d_s2.p, d_s1.p, B, T, C, NH));
  EXPECT_TRUE(close_all(d_dqkv.get(), dqkv, kTf32Tol, "attention_backward dqkv"));
#endif
}

TEST(CudaKernels, GeluAndResidual) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const size_t n = 1000;
  auto x = randn(n, 1, 3.0f), y = randn(n, 2), dout = randn(n, 3), dinp = randn(n, 4);
  std::vector<float> g(n), r(n);
  ops::gelu_forward(g.data(), x.data(), n);
  ops::residual_forward(r.data(), x.data(), y.data(), n);
  DevBuf<float> d_x(x), d_y(y), d_g(zeros(n)), d_r(zeros(n)), d_dout(dout), d_dinp(dinp);
  ASSERT_OK(k::gelu_forward(d_g.p, d_x.p, n));
  ASSERT_OK(k::residual_forward(d_r.p, d_x.p, d_y.p, n));
  EXPECT_TRUE(close_all(d_g.get(), g, kFp32Tol, "gelu_forward"));
  EXPECT_TRUE(close_all(d_r.get(), r, kFp32Tol, "residual_forward"));
  ops::gelu_backward(dinp.data(), x.data(), dout.data(), n);
  ASSERT_OK(k::gelu_backward(d_dinp.p, d_x.p, d_dout.p, n));
  EXPECT_TRUE(close_all(d_dinp.get(), dinp, kFp32Tol, "gelu_backward"));
#endif
}

TEST(CudaKernels, FusedCrossEntropyMatchesCpu) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int N = 9, V = 1500;  // V > block size: several passes per thread
  auto logits = randn((size_t)N * V, 1, 3.0f);
  auto targets = rand_tokens(N, V, 2);
  targets[3] = -1;  // ignored row
  std::vector<float> dl((size_t)N * V);
  const float loss = assay::engine::lm_cross_entropy(logits.data(), targets.data(), N, V, dl.data());
  int n_valid = 0;
  for (int t : targets) n_valid += t >= 0;
  std::vector<float> scale(N, 1.0f / n_valid);
  DevBuf<float> d_z(logits), d_lp(zeros(N)), d_scale(scale);
  DevBuf<int32_t> d_t(targets);
  ASSERT_OK(k::crossentropy_forward_backward(d_z.p, d_lp.p, d_t.p, d_scale.p, N, V));
  const auto lp = d_lp.get();
  double s = 0;
  for (int r = 0; r < N; r++) s -= lp[r];
  EXPECT_NEAR(s / n_valid, loss, 1e-4 * std::fabs(loss) + 1e-5);
  EXPECT_EQ(lp[3], 0.0f);
  EXPECT_TRUE(close_all(d_z.get(), dl, {1e-6, 1e-4}, "fused classifier dlogits"));
#endif
}

TEST(CudaKernels, LogProbGatherAndSequenceBackward) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const int B = 2, T = 4, V = 300, N = B * T;
  auto logits = randn((size_t)N * V, 1, 2.0f);
  auto targets = rand_tokens(N, V, 2);
  targets[0] = -1;
  std::vector<float> mask = {0, 1, 1, 1, 1, 1, 0, 1};
  const std::vector<double> coef = {0.7, -1.3};
  const assay::obj::Logits z{logits.data(), B, T, V};
  std::vector<int> ti(targets.begin(), targets.end());
  auto ref = assay::obj::sequence_logprobs(z, ti, mask);
  ASSERT_TRUE(ref.ok()) << ref.status().message();
  std::vector<float> dl((size_t)N * V);
  ASSERT_TRUE(assay::obj::sequence_logprobs_backward(z, ti, mask, coef, {dl.data()}).ok());
  std::vector<float> row_scale(N);  // −c_b·mask: the kernel writes scale·(q − onehot)
  for (int r = 0; r < N; r++) row_scale[r] = (float)(-coef[r / T] * mask[r]);
  DevBuf<float> d_z(logits), d_lp(zeros(N)), d_scale(row_scale);
  DevBuf<int32_t> d_t(targets);
  ASSERT_OK(k::crossentropy_forward_backward(d_z.p, d_lp.p, d_t.p, d_scale.p, N, V));
  const auto lp = d_lp.get();
  for (int b = 0; b < B; b++) {
    double s = 0;
    for (int t = 0; t < T; t++) s += mask[b * T + t] * lp[b * T + t];
    EXPECT_NEAR(s, ref->logp[b], 1e-4 * std::fabs(ref->logp[b]) + 1e-5) << "sequence " << b;
  }
  EXPECT_TRUE(close_all(d_z.get(), dl, {1e-6, 1e-4}, "sequence log-prob dlogits"));
#endif
}

#ifdef ASSAY_WITH_CUDA
namespace {
void check_distill(assay::obj::Divergence div, int kind, double tau, double ce_weight) {
  const int B = 2, T = 5, V = 700, N = B * T;
  auto zs = randn((size_t)N * V, 1, 2.0f), zt = randn((size_t)N * V, 2, 2.0f);
  auto targets = rand_tokens(N, V, 3);
  targets[2] = -1;
  std::vector<float> mask = {1, 1, 1, 0, 1, 1, 1, 1, 0, 1};
  std::vector<int> ti(targets.begin(), targets.end());
  const assay::obj::Logits z{zs.data(), B, T, V};
  assay::obj::DistillOptions o;
  o.div = div;
  o.tau = tau;
  const double weight = 0.8;
  std::vector<float> dl((size_t)N * V);
  auto r = assay::obj::distill(z, zt.data(), mask, o, {dl.data(), weight});
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto ce = assay::obj::cross_entropy(z, ti, mask, {dl.data(), ce_weight, true});
  ASSERT_TRUE(ce.ok()) << ce.status().message();
  double Nd = 0, Nc = 0;
  for (int i = 0; i < N; i++) {
    Nd += mask[i];
    Nc += targets[i] >= 0 ? mask[i] : 0;
  }
  std::vector<float> ds(N), cs(N);
  for (int i = 0; i < N; i++) {
    ds[i] = (float)(weight * mask[i] / Nd);
    cs[i] = (float)(ce_weight * (targets[i] >= 0 ? mask[i] : 0) / Nc);
  }
  DevBuf<float> d_z(zs), d_zt(zt), d_div(zeros(N)), d_kl(zeros(N)),
      d_lp(zeros(N)), d_ds(ds), d_cs(cs);
  DevBuf<int32_t> d_t(targets);
  ASSERT_OK(k::distill_forward_backward(d_z.p, d_zt.p, d_div.p, d_kl.p, d_lp.p, d_t.p, d_ds.p, d_cs.p, kind,
                                        (float)tau, N, V));
  const auto div_rows = d_div.get(), kl_rows = d_kl.get(), lp = d_lp.get();
  double sd = 0, sk = 0, sc = 0;
  for (int i = 0; i < N; i++) {
    sd += mask[i] * div_rows[i];
    sk += mask[i] * kl_rows[i];
    sc -= (targets[i] >= 0 ? mask[i] : 0) * lp[i];
  }
  EXPECT_NEAR(sd / Nd, r->loss, 1e-4 * std::fabs(r->loss) + 1e-5);
  EXPECT_NEAR(sk / Nd, r->kl_to_teacher, 1e-4 * std::fabs(r->kl_to_teacher) + 1e-5);
  EXPECT_NEAR(sc / Nc, ce->loss, 1e-4 * std::fabs(ce->loss) + 1e-5);
  EXPECT_TRUE(close_all(d_z.get(), dl, {1e-6, 1e-3}, "distill dlogits"));
}
}  // namespace
#endif

TEST(CudaKernels, DistillForwardKL) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  check_distill(assay::obj::Divergence::kForwardKL, 0, 1.0, 0.0);
  check_distill(assay::obj::Divergence::kForwardKL, 0, 2.0, 0.5);
#endif
}

TEST(CudaKernels, DistillReverseKL) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  check_distill(assay::obj::Divergence::kReverseKL, 1, 1.0, 0.0);
  check_distill(assay::obj::Divergence::kReverseKL, 1, 1.7, 0.3);
#endif
}

TEST(CudaKernels, AdamWAndGradNorm) {
  SKIP_WITHOUT_GPU();
#ifdef ASSAY_WITH_CUDA
  const size_t n = 5000;
  auto p = randn(n, 1), g0 = randn(n, 2);
  std::vector<uint8_t> mask(n);
  for (size_t i = 0; i < n; i++) mask[i] = (i / 100) % 2;
  assay::engine::AdamWConfig cfg;
  cfg.weight_decay = 0.1f;
  assay::engine::AdamW opt(cfg, n, mask);
  DevBuf<float> d_p(p), d_g(g0), d_m(zeros(n)), d_v(zeros(n));
  DevBuf<uint8_t> d_mask(mask);
  std::vector<float> cpu_p = p;
  for (int t = 1; t <= 4; t++) {
    auto g = randn(n, 10 + t);
    cudaMemcpy(d_g.p, g.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    const float lr = 1e-2f / t;
    ASSERT_TRUE(opt.step(cpu_p, g, lr).ok());
    const double bc1 = 1.0 - std::pow(0.9, t), bc2 = 1.0 - std::pow(0.999, t);
    ASSERT_OK(k::adamw_update(d_p.p, d_g.p, d_m.p, d_v.p, d_mask.p, n, lr, cfg.beta1, cfg.beta2, cfg.eps,
                              cfg.weight_decay, bc1, bc2));
  }
  EXPECT_TRUE(close_all(d_p.get(), cpu_p, {1e-6, 1e-5}, "AdamW params after 4 steps"));
  EXPECT_TRUE(close_all(d_m.get(), opt.m(), {1e-7, 1e-5}, "AdamW m"));
  EXPECT_TRUE(close_all(d_v.get(), opt.v(), {1e-9, 1e-5}, "AdamW v"));

  double ss = 0;
  ASSERT_OK(k::sum_squares(d_g.p, n, &ss));
  auto g4 = d_g.get();
  EXPECT_NEAR(std::sqrt(ss), assay::engine::grad_norm(g4), 1e-5 * std::sqrt(ss));
#endif
}
