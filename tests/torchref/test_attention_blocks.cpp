// The engine's attention kernels skip the upper triangle by blocks of 32
// queries. The engine's own gradient tests use short sequences (one or two blocks), so this
// checks forward and backward at T = 150 (four full blocks and a partial one)
// against direct loops in double precision, for both instantiations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "assay/engine_ops.h"

using namespace assay::engine;

namespace {

constexpr int B = 2, T = 150, C = 32, NH = 2, hs = C / NH;

struct Direct {
  std::vector<double> out, att, dqkv;
};

// out = softmax(q·kᵀ/sqrt(hs), causal)·v per head, and the gradient of
// Σ out ⊙ dout with respect to qkv, written out element by element.
Direct direct(const std::vector<double>& qkv, const std::vector<double>& dout) {
  Direct r{std::vector<double>((size_t)B * T * C, 0.0), std::vector<double>((size_t)B * NH * T * T, 0.0),
           std::vector<double>(qkv.size(), 0.0)};
  const double scale = 1.0 / std::sqrt((double)hs);
  auto at = [&](int b, int t, int part, int h, int i) {
    return ((size_t)b * T + t) * 3 * C + part * C + h * hs + i;
  };
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      double* a = r.att.data() + ((size_t)b * NH + h) * T * T;
      for (int t = 0; t < T; t++) {
        double mx = -1e300;
        for (int u = 0; u <= t; u++) {
          double s = 0;
          for (int i = 0; i < hs; i++) s += qkv[at(b, t, 0, h, i)] * qkv[at(b, u, 1, h, i)];
          a[t * T + u] = s * scale;
          mx = std::max(mx, s * scale);
        }
        double z = 0;
        for (int u = 0; u <= t; u++) z += (a[t * T + u] = std::exp(a[t * T + u] - mx));
        for (int u = 0; u <= t; u++) a[t * T + u] /= z;
        for (int i = 0; i < hs; i++) {
          double o = 0;
          for (int u = 0; u <= t; u++) o += a[t * T + u] * qkv[at(b, u, 2, h, i)];
          r.out[((size_t)b * T + t) * C + h * hs + i] = o;
        }
        // Backward of this row.
        const double* d = dout.data() + ((size_t)b * T + t) * C + h * hs;
        std::vector<double> datt(t + 1);
        double dot = 0;
        for (int u = 0; u <= t; u++) {
          double s = 0;
          for (int i = 0; i < hs; i++) s += d[i] * qkv[at(b, u, 2, h, i)];
          datt[u] = s;
          dot += s * a[t * T + u];
        }
        for (int u = 0; u <= t; u++) {
          const double dpre = a[t * T + u] * (datt[u] - dot) * scale;
          for (int i = 0; i < hs; i++) {
            r.dqkv[at(b, t, 0, h, i)] += dpre * qkv[at(b, u, 1, h, i)];
            r.dqkv[at(b, u, 1, h, i)] += dpre * qkv[at(b, t, 0, h, i)];
            r.dqkv[at(b, u, 2, h, i)] += a[t * T + u] * d[i];
          }
        }
      }
    }
  }
  return r;
}

template <class F>
double max_rel(const std::vector<F>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); i++) {
    num = std::max(num, std::fabs((double)a[i] - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / std::max(den, 1e-30);
}

template <class F>
void check(double tol) {
  std::vector<double> qkv((size_t)B * T * 3 * C), dout((size_t)B * T * C);
  uint32_t s = 17;
  auto next = [&] {
    s = s * 1664525u + 1013904223u;
    return (double)((s >> 8) & 0xFFFF) / 32768.0 - 1.0;
  };
  for (double& x : qkv) x = 1.5 * next();
  for (double& x : dout) x = next();
  const Direct ref = direct(qkv, dout);
  std::vector<F> q(qkv.begin(), qkv.end()), d(dout.begin(), dout.end());
  std::vector<F> out(ref.out.size()), att(ref.att.size(), F(7)), dq(q.size(), F(0));
  ops::attention_forward(out.data(), att.data(), q.data(), B, T, C, NH);
  ops::attention_backward(dq.data(), d.data(), q.data(), att.data(), B, T, C, NH);
  EXPECT_LE(max_rel(out, ref.out), tol);
  // att must be exactly zero above the diagonal (the buffer started at 7).
  EXPECT_LE(max_rel(att, ref.att), tol);
  EXPECT_LE(max_rel(dq, ref.dqkv), tol);
  // backward accumulates: a second call doubles dqkv.
  std::vector<F> dq2 = dq;
  ops::attention_backward(dq2.data(), d.data(), q.data(), att.data(), B, T, C, NH);
  for (size_t i = 0; i < dq.size(); i++) ASSERT_NEAR(dq2[i], 2 * dq[i], 1e-5 * (1 + std::fabs(dq[i])));
}

TEST(AttentionBlocks, DoubleMatchesDirectLoops) { check<double>(1e-12); }
TEST(AttentionBlocks, FloatMatchesDirectLoops) { check<float>(2e-5); }

}  // namespace
