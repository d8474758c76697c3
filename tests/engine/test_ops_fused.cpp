// The model's fused/overwriting kernels (engine/src/ops_internal.h) and the
// float cross-entropy, checked against the public kernels they replace:
// - gelu_backward_inplace: finite differences (double) and agreement with
//   gelu_backward into a zeroed buffer (float and double);
// - attention_backward_set: overwrites a garbage-filled dqkv with what
//   attention_backward adds to a zeroed one, at a length of several query
//   blocks plus a partial one, and passes a finite-difference check;
// - crossentropy_forward_backward<float> (one vectorised exp per logit)
//   against the double instantiation (std::exp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "assay/engine_ops.h"
#include "grad_check.h"
#include "ops_internal.h"

namespace ops = assay::engine::ops;

namespace {

template <class F = double>
std::vector<F> randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<F> v(n);
  for (F& x : v) x = (F)d(g);
  return v;
}

template <class F>
double max_rel_diff(const std::vector<F>& a, const std::vector<F>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    m = std::max(m, std::fabs((double)a[i] - (double)b[i]) / (1e-3 + std::fabs((double)b[i])));
  }
  return m;
}

TEST(OpsFused, GeluBackwardInplaceFiniteDifferences) {
  const size_t n = 300;
  std::vector<double> x = randn(n, 41, 2.0), R = randn(n, 42);
  auto loss = [&] {
    std::vector<double> out(n);
    ops::gelu_forward(out.data(), x.data(), n);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += out[i] * R[i];
    return s;
  };
  std::vector<double> d = R;  // incoming gradient, overwritten with dL/dx
  ops::gelu_backward_inplace(d.data(), x.data(), n);
  expect_grad("dinp", x, d, loss);
}

template <class F>
void check_gelu_inplace_matches(double tol) {
  // Enough elements for several parallel chunks.
  const size_t n = 70000;
  std::vector<F> x = randn<F>(n, 43, 3.0), dout = randn<F>(n, 44);
  std::vector<F> acc(n, F(0));
  ops::gelu_backward(acc.data(), x.data(), dout.data(), n);
  std::vector<F> inplace = dout;
  ops::gelu_backward_inplace(inplace.data(), x.data(), n);
  EXPECT_LE(max_rel_diff(inplace, acc), tol);
}

TEST(OpsFused, GeluBackwardInplaceMatchesAccumulating) {
  check_gelu_inplace_matches<float>(1e-6);
  check_gelu_inplace_matches<double>(1e-13);
}

template <class F>
void check_attention_set_matches(double tol) {
  // T = 80: two full query blocks and a partial one.
  const int B = 2, T = 80, C = 32, NH = 2;
  std::vector<F> qkv = randn<F>((size_t)B * T * 3 * C, 45, 1.5);
  std::vector<F> dout = randn<F>((size_t)B * T * C, 46);
  std::vector<F> out((size_t)B * T * C), att((size_t)B * NH * T * T);
  ops::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  std::vector<F> acc(qkv.size(), F(0));
  ops::attention_backward(acc.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  std::vector<F> set(qkv.size(), F(7));  // garbage that must be overwritten
  ops::attention_backward_set(set.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  EXPECT_LE(max_rel_diff(set, acc), tol);
  // Same inputs, same bits.
  std::vector<F> again(qkv.size(), F(-3));
  ops::attention_backward_set(again.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
  EXPECT_EQ(again, set);
}

TEST(OpsFused, AttentionBackwardSetMatchesAccumulating) {
  check_attention_set_matches<float>(1e-5);
  check_attention_set_matches<double>(1e-12);
}

TEST(OpsFused, AttentionBackwardSetFiniteDifferences) {
  // T = 40 spans one full query block and a partial one.
  const int B = 1, T = 40, C = 8, NH = 2;
  std::vector<double> qkv = randn((size_t)B * T * 3 * C, 47), R = randn((size_t)B * T * C, 48);
  std::vector<double> out((size_t)B * T * C), att((size_t)B * NH * T * T);
  auto loss = [&] {
    ops::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    double s = 0;
    for (size_t i = 0; i < out.size(); i++) s += out[i] * R[i];
    return s;
  };
  loss();
  std::vector<double> dqkv(qkv.size(), 5.0);
  ops::attention_backward_set(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_grad("dqkv", qkv, dqkv, loss);
}

TEST(OpsFused, CrossEntropyFloatMatchesDouble) {
  const int N = 24, V = 257;
  std::vector<double> zd = randn((size_t)N * V, 49, 3.0);
  // A row with a wide spread: exp underflows for most entries.
  for (int j = 0; j < V; j++) zd[5 * V + j] = (j % 2 ? 80.0 : -80.0) + 0.1 * j;
  std::vector<int32_t> y(N);
  for (int r = 0; r < N; r++) y[r] = (r * 37) % V;
  y[3] = -1;  // ignored
  std::vector<float> zf(zd.begin(), zd.end());
  const double scale = 1.0 / (N - 1);
  // The double reference runs on the float-rounded logits.
  std::vector<double> zr(zf.begin(), zf.end()), dd((size_t)N * V);
  std::vector<float> df((size_t)N * V, 9.0f);
  int cd = 0, cf = 0;
  const double ld = ops::crossentropy_forward_backward(dd.data(), zr.data(), y.data(), N, V, scale, &cd);
  const double lf = ops::crossentropy_forward_backward(df.data(), zf.data(), y.data(), N, V, scale, &cf);
  EXPECT_EQ(cd, N - 1);
  EXPECT_EQ(cf, N - 1);
  EXPECT_NEAR(lf, ld, 1e-6 * std::fabs(ld));
  double max_err = 0;
  for (size_t i = 0; i < dd.size(); i++) {
    max_err = std::max(max_err, std::fabs((double)df[i] - dd[i]) / (1e-6 * scale + std::fabs(dd[i])));
  }
  EXPECT_LE(max_err, 1e-5);
  for (int j = 0; j < V; j++) EXPECT_EQ(df[3 * V + j], 0.0f);
  // Loss only (no dlogits) gives the same sum.
  int c2 = 0;
  const double l2 = ops::crossentropy_forward_backward<float>(nullptr, zf.data(), y.data(), N, V, scale, &c2);
  EXPECT_EQ(c2, N - 1);
  EXPECT_NEAR(l2, lf, 1e-9 * std::fabs(lf));
}

}  // namespace
