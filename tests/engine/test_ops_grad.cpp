// Finite-difference checks of every kernel's backward, run in double.
//
// Each test defines a scalar loss L = Σ out ⊙ R (R fixed random, so
// dout = R), computes the analytic gradient with <op>_backward and compares
// it with central differences (h = 1e-5) for every input element.
// Tolerance: |analytic − numeric| <= 1e-7 + 1e-6·|numeric|; in double the
// central-difference error is ~1e-10 here, so a wrong formula fails clearly.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "assay/engine_ops.h"
#include "grad_check.h"

namespace ops = assay::engine::ops;
using Vec = std::vector<double>;

namespace {

Vec randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (double& x : v) x = d(g);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

}  // namespace

TEST(OpsGrad, Encoder) {
  const int B = 2, T = 3, C = 4, V = 5;
  const std::vector<int32_t> tok = {1, 3, 1, 4, 1, 0};  // repeated ids share dwte rows
  Vec wte = randn(V * C, 1), wpe = randn(T * C, 2), R = randn(B * T * C, 3), out(B * T * C);
  auto loss = [&] {
    ops::encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  Vec dwte(V * C, 0.0), dwpe(T * C, 0.0);
  ops::encoder_backward(dwte.data(), dwpe.data(), R.data(), tok.data(), B, T, C);
  expect_grad("dwte", wte, dwte, loss);
  expect_grad("dwpe", wpe, dwpe, loss);
}

TEST(OpsGrad, LayerNorm) {
  const int N = 3, C = 8;
  Vec x = randn(N * C, 4, 2.0), w = randn(C, 5), b = randn(C, 6), R = randn(N * C, 7);
  Vec out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    ops::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N,
                           C);
    return dot(out, R);
  };
  loss();
  Vec dx(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
  ops::layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(),
                          mean.data(), rstd.data(), N, C);
  expect_grad("dx", x, dx, loss);
  expect_grad("dweight", w, dw, loss);
  expect_grad("dbias", b, db, loss);
}

TEST(OpsGrad, LayerNormForwardValues) {
  // Row [1, 2, 3, 4]: mean 2.5, biased var 1.25.
  const double x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, b[4] = {0, 0, 0, 0};
  double out[4], mean, rstd;
  ops::layernorm_forward(out, &mean, &rstd, x, w, b, 1, 4);
  EXPECT_DOUBLE_EQ(mean, 2.5);
  EXPECT_NEAR(rstd, 1.0 / std::sqrt(1.25 + 1e-5), 1e-15);
  EXPECT_NEAR(out[0], -1.5 / std::sqrt(1.25 + 1e-5), 1e-12);
}

TEST(OpsGrad, Matmul) {
  const int N = 4, C = 5, OC = 3;
  Vec x = randn(N * C, 8), W = randn(C * OC, 9), b = randn(OC, 10), R = randn(N * OC, 11);
  Vec out(N * OC);
  auto loss = [&] {
    ops::matmul_forward(out.data(), x.data(), W.data(), b.data(), N, C, OC);
    return dot(out, R);
  };
  // Forward value: out[1][2] = Σ_c x[1][c] W[c][2] + b[2] (Conv1D layout).
  loss();
  double ref = b[2];
  for (int c = 0; c < C; c++) ref += x[1 * C + c] * W[c * OC + 2];
  EXPECT_NEAR(out[1 * OC + 2], ref, 1e-12);
  Vec dx(N * C, 0.0), dW(C * OC, 0.0), db(OC, 0.0);
  ops::matmul_backward(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), N, C, OC);
  expect_grad("dinp", x, dx, loss);
  expect_grad("dweight", W, dW, loss);
  expect_grad("dbias", b, db, loss);
}

TEST(OpsGrad, BackwardAccumulates) {
  const int N = 2, C = 3, OC = 2;
  Vec x = randn(N * C, 12), W = randn(C * OC, 13), R = randn(N * OC, 14);
  Vec dx1(N * C, 0.0), dW1(C * OC, 0.0), db1(OC, 0.0);
  ops::matmul_backward(dx1.data(), dW1.data(), db1.data(), R.data(), x.data(), W.data(), N, C, OC);
  Vec dx2 = dx1, dW2 = dW1, db2 = db1;
  ops::matmul_backward(dx2.data(), dW2.data(), db2.data(), R.data(), x.data(), W.data(), N, C, OC);
  for (size_t i = 0; i < dx1.size(); i++) EXPECT_NEAR(dx2[i], 2 * dx1[i], 1e-12);
  for (size_t i = 0; i < dW1.size(); i++) EXPECT_NEAR(dW2[i], 2 * dW1[i], 1e-12);
  for (size_t i = 0; i < db1.size(); i++) EXPECT_NEAR(db2[i], 2 * db1[i], 1e-12);
}

TEST(OpsGrad, TiedHead) {
  const int N = 3, C = 4, V = 6;
  Vec x = randn(N * C, 15), wte = randn(V * C, 16), R = randn(N * V, 17), out(N * V);
  auto loss = [&] {
    ops::head_forward(out.data(), x.data(), wte.data(), N, C, V);
    return dot(out, R);
  };
  Vec dx(N * C, 0.0), dwte(V * C, 0.0);
  ops::head_backward(dx.data(), dwte.data(), R.data(), x.data(), wte.data(), N, C, V);
  expect_grad("dinp", x, dx, loss);
  expect_grad("dwte", wte, dwte, loss);
}

TEST(OpsGrad, Attention) {
  const int B = 2, T = 4, C = 8, NH = 2;
  Vec qkv = randn(B * T * 3 * C, 18), R = randn(B * T * C, 19);
  Vec out(B * T * C), att(B * NH * T * T);
  auto loss = [&] {
    ops::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  loss();
  // Causality: rows sum to 1 and are zero above the diagonal.
  for (int r = 0; r < B * NH * T; r++) {
    const int t = r % T;
    double s = 0;
    for (int t2 = 0; t2 < T; t2++) {
      s += att[r * T + t2];
      if (t2 > t) {
        EXPECT_EQ(att[r * T + t2], 0.0);
      }
    }
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
  // Position 0 attends only to itself: out = v of head h.
  for (int i = 0; i < C; i++) EXPECT_NEAR(out[i], qkv[2 * C + i], 1e-12);
  Vec dqkv(qkv.size(), 0.0);
  ops::attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_grad("dqkv", qkv, dqkv, loss);
}

TEST(OpsGrad, Gelu) {
  const size_t n = 40;
  Vec x = randn(n, 20, 2.5), R = randn(n, 21), out(n);
  auto loss = [&] {
    ops::gelu_forward(out.data(), x.data(), n);
    return dot(out, R);
  };
  // GELU_tanh(1) = 0.5·(1 + tanh(sqrt(2/π)·1.044715)) = 0.841191990607477
  double one = 1.0, g1;
  ops::gelu_forward(&g1, &one, 1);
  EXPECT_NEAR(g1, 0.841191990607477, 1e-12);
  Vec dx(n, 0.0);
  ops::gelu_backward(dx.data(), x.data(), R.data(), n);
  expect_grad("dinp", x, dx, loss);
}

TEST(OpsGrad, CrossEntropy) {
  const int N = 4, V = 7;
  Vec z = randn(N * V, 22, 2.0);
  const std::vector<int32_t> y = {3, -1, 0, 6};  // row 1 ignored
  auto loss = [&] {
    int n = 0;
    return ops::crossentropy_forward_backward<double>(nullptr, z.data(), y.data(), N, V, 1.0, &n);
  };
  Vec dz(N * V);
  int count = 0;
  const double total =
      ops::crossentropy_forward_backward(dz.data(), z.data(), y.data(), N, V, 1.0, &count);
  EXPECT_EQ(count, 3);
  EXPECT_GT(total, 0.0);
  for (int j = 0; j < V; j++) EXPECT_EQ(dz[1 * V + j], 0.0);
  expect_grad("dlogits", z, dz, loss);
  // Uniform logits: loss = ln V per row.
  Vec u(V, 0.5);
  const int32_t t0 = 2;
  int c1 = 0;
  EXPECT_NEAR(ops::crossentropy_forward_backward<double>(nullptr, u.data(), &t0, 1, V, 1.0, &c1),
              std::log(7.0), 1e-12);
}

// The float kernels use an in-house vectorisable exp; they must agree with
// the double kernels (std::exp) to float precision, including far tails.
TEST(OpsFloat, GeluAndAttentionMatchDouble) {
  std::vector<double> xd;
  for (double x = -12; x <= 12; x += 0.01) xd.push_back(x);
  for (double x : {-100.0, -40.0, 40.0, 100.0, 0.0}) xd.push_back(x);
  std::vector<float> xf(xd.begin(), xd.end()), of(xd.size()), gf(xd.size(), 0.0f),
      onesf(xd.size(), 1.0f);
  Vec od(xd.size()), gd(xd.size(), 0.0), onesd(xd.size(), 1.0);
  ops::gelu_forward(of.data(), xf.data(), xf.size());
  ops::gelu_forward(od.data(), xd.data(), xd.size());
  ops::gelu_backward(gf.data(), xf.data(), onesf.data(), xf.size());
  ops::gelu_backward(gd.data(), xd.data(), onesd.data(), xd.size());
  for (size_t i = 0; i < xd.size(); i++) {
    EXPECT_NEAR(of[i], od[i], 1e-6 * (1 + std::fabs(od[i]))) << "gelu(" << xd[i] << ")";
    EXPECT_NEAR(gf[i], gd[i], 2e-6 * (1 + std::fabs(gd[i]))) << "gelu'(" << xd[i] << ")";
  }
  const int B = 1, T = 16, C = 16, NH = 2;
  Vec qkv = randn(B * T * 3 * C, 30, 3.0);
  std::vector<float> qkvf(qkv.begin(), qkv.end()), outf(B * T * C), attf(B * NH * T * T);
  Vec outd(B * T * C), attd(B * NH * T * T);
  ops::attention_forward(outf.data(), attf.data(), qkvf.data(), B, T, C, NH);
  ops::attention_forward(outd.data(), attd.data(), qkv.data(), B, T, C, NH);
  for (size_t i = 0; i < attd.size(); i++) EXPECT_NEAR(attf[i], attd[i], 2e-6) << i;
  for (size_t i = 0; i < outd.size(); i++) EXPECT_NEAR(outf[i], outd[i], 1e-5) << i;
}
