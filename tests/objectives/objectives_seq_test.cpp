// Sinkhorn distillation, sequence log-likelihoods, preference (f-DPO) and
// unlearning (NPO, SimNPO) objectives: reference values and finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "assay/objectives.h"
#include "fd_util.h"

namespace {

using namespace assay::obj;

using assay::obj::test_util::random_logits;

// Central differences on float inputs with the exact perturbation (fd_util.h).
template <class F>
void fd_check(std::vector<float> z, const std::vector<float>& g, F loss, const char* what,
              double atol = 2e-4, double rtol = 3e-3) {
  assay::obj::test_util::check_fd_gradient(std::move(z), g, loss, what, atol, rtol, 1e-4);
}

std::vector<double> softmax(const float* z, int V, double tau) {
  std::vector<double> p(V);
  double mx = -1e300, s = 0;
  for (int j = 0; j < V; ++j) mx = std::max(mx, z[j] / tau);
  for (int j = 0; j < V; ++j) s += (p[j] = std::exp(z[j] / tau - mx));
  for (auto& x : p) x /= s;
  return p;
}

// Textbook Sinkhorn on explicit matrices, no shift: the independent forward.
double naive_sinkhorn(const std::vector<std::vector<double>>& S,
                      const std::vector<std::vector<double>>& Tt, double eps, int n) {
  const std::size_t N = S.size();
  std::vector<std::vector<double>> W(N, std::vector<double>(N)), P = W;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      double d = 0;
      for (std::size_t v = 0; v < S[i].size(); ++v) d += std::fabs(S[i][v] - Tt[j][v]);
      W[i][j] = d;
      P[i][j] = std::exp(-d / eps);
    }
  for (int k = 0; k < n; ++k) {
    for (auto& row : P) {
      double s = 0;
      for (double x : row) s += x;
      for (double& x : row) x /= s;
    }
    for (std::size_t j = 0; j < N; ++j) {
      double s = 0;
      for (std::size_t i = 0; i < N; ++i) s += P[i][j];
      for (std::size_t i = 0; i < N; ++i) P[i][j] /= s;
    }
  }
  double L = 0;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < N; ++j) L += P[i][j] * W[i][j];
  return L;
}

TEST(Sinkhorn, ForwardMatchesTextbookIteration) {
  const int B = 2, T = 4, V = 6;
  auto z = random_logits(B * T * V, 11), zt = random_logits(B * T * V, 12);
  std::vector<float> mask = {1, 1, 1, 0, 1, 1, 1, 1};
  SinkhornOptions o;  // tau 2, eps 0.1, 20 iterations
  o.weight = 0.5;
  for (auto coupling : {SinkhornCoupling::kSequence, SinkhornCoupling::kBatch}) {
    o.coupling = coupling;
    auto r = sinkhorn({z.data(), B, T, V}, zt.data(), mask, o, {});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    std::vector<std::vector<std::vector<double>>> S(coupling == SinkhornCoupling::kBatch ? 1 : B),
        Tt = S;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        const int row = b * T + t;
        if (mask[row] == 0) continue;
        const int g = coupling == SinkhornCoupling::kBatch ? 0 : b;
        S[g].push_back(softmax(&z[row * V], V, o.tau));
        Tt[g].push_back(softmax(&zt[row * V], V, o.tau));
      }
    double ref = 0;
    for (std::size_t g = 0; g < S.size(); ++g) ref += naive_sinkhorn(S[g], Tt[g], o.eps, o.n_iters);
    ref *= o.weight / static_cast<double>(S.size());
    EXPECT_EQ(r->n_groups, static_cast<int>(S.size()));
    EXPECT_NEAR(r->loss, ref, 1e-10 * std::max(1.0, ref));
    EXPECT_GT(r->loss, 0.0);
  }
}

TEST(Sinkhorn, GradientThroughUnrolledIterations) {
  const int B = 2, T = 3, V = 5;
  auto z = random_logits(B * T * V, 21, 1.5), zt = random_logits(B * T * V, 22, 1.5);
  std::vector<float> mask = {1, 1, 1, 1, 0, 1};
  for (auto coupling : {SinkhornCoupling::kSequence, SinkhornCoupling::kBatch}) {
    SinkhornOptions o;
    o.tau = 1.0;
    o.eps = 0.5;  // smoother plan: larger gradients through the iterations
    o.n_iters = 5;
    o.coupling = coupling;
    std::vector<float> g(z.size());
    ASSERT_TRUE(sinkhorn({z.data(), B, T, V}, zt.data(), mask, o, {g.data()}).ok());
    fd_check(z, g, [&](const std::vector<float>& zz) {
      return sinkhorn({zz.data(), B, T, V}, zt.data(), mask, o, {}).value().loss;
    }, coupling == SinkhornCoupling::kBatch ? "sinkhorn batch" : "sinkhorn sequence");
    for (int j = 0; j < V; ++j) EXPECT_EQ(g[4 * V + j], 0.0f);  // masked row
  }
}

TEST(Sinkhorn, RejectsBadOptions) {
  std::vector<float> z(10, 0.0f);
  SinkhornOptions o;
  o.eps = 0;
  EXPECT_FALSE(sinkhorn({z.data(), 1, 2, 5}, z.data(), {}, o, {}).ok());
  o = {};
  o.n_iters = 0;
  EXPECT_FALSE(sinkhorn({z.data(), 1, 2, 5}, z.data(), {}, o, {}).ok());
}

TEST(SequenceLogProbs, BackwardMatchesFiniteDifferences) {
  const int B = 3, T = 4, V = 6;
  auto z = random_logits(B * T * V, 31);
  std::vector<int> y = {1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0};
  std::vector<float> mask = {0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0};
  std::vector<double> coef = {0.7, -1.3, 0.25};
  auto lp = sequence_logprobs({z.data(), B, T, V}, y, mask);
  ASSERT_TRUE(lp.ok());
  EXPECT_DOUBLE_EQ(lp->n_tokens[0], 3.0);
  EXPECT_DOUBLE_EQ(lp->n_tokens[1], 2.0);
  EXPECT_DOUBLE_EQ(lp->n_tokens[2], 3.0);
  for (double x : lp->logp) EXPECT_LT(x, 0.0);
  std::vector<float> g(z.size());
  ASSERT_TRUE(sequence_logprobs_backward({z.data(), B, T, V}, y, mask, coef, {g.data()}).ok());
  fd_check(z, g, [&](const std::vector<float>& zz) {
    auto r = sequence_logprobs({zz.data(), B, T, V}, y, mask).value();
    double L = 0;
    for (int b = 0; b < B; ++b) L += coef[b] * r.logp[b];
    return L;
  }, "sequence_logprobs");
}

// ---------------------------------------------------------------------------
// Preference losses

TEST(Preference, SanityValuesAtInitialisation) {
  std::vector<PrefPair> pairs(4);
  for (auto& p : pairs) {
    p.policy_w = p.ref_w = -12.0;
    p.policy_l = p.ref_l = -15.0;
    p.len_w = p.len_l = 6;
  }
  PrefOptions o;
  auto r = preference_loss(pairs, o);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->loss, 0.693147, 1e-6);
  EXPECT_NEAR(r->accuracy, 0.0, 0);
  EXPECT_NEAR(r->margin, 0.0, 0);
  // dL/ddelta = -beta/2 at delta = 0, averaged over 4 pairs.
  EXPECT_NEAR(r->c_w[0], -0.05 / 4, 1e-12);
  EXPECT_NEAR(r->c_l[0], 0.05 / 4, 1e-12);
  o.loss = PrefLoss::kIpo;
  EXPECT_NEAR(preference_loss(pairs, o)->loss, 25.0, 1e-9);
  o.beta = 0.5;
  EXPECT_NEAR(preference_loss(pairs, o)->loss, 1.0, 1e-9);
  o = {};
  o.loss = PrefLoss::kHinge;
  EXPECT_NEAR(preference_loss(pairs, o)->loss, 1.0, 1e-12);
  o.loss = PrefLoss::kRobust;
  o.robust_eps = 0.2;  // at delta 0: ((1-e) ln2 - e ln2)/(1-2e) = ln 2
  EXPECT_NEAR(preference_loss(pairs, o)->loss, std::log(2.0), 1e-12);
  for (auto f : {FDivergence::kForwardKL, FDivergence::kJS, FDivergence::kAlpha}) {
    o = {};
    o.div = f;
    EXPECT_NEAR(preference_loss(pairs, o)->loss, std::log(2.0), 1e-12) << fdivergence_name(f);
  }
}

TEST(Preference, DiagnosticsShowLikelihoodDisplacement) {
  // Both log-likelihoods fall, the rejected one faster: margin up, Delta_w < 0.
  std::vector<PrefPair> pairs = {{-14.0, -25.0, -12.0, -15.0, 5, 5}, {-9.0, -30.0, -8.0, -20.0, 4, 4}};
  auto r = preference_loss(pairs, {});
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->chosen_logratio, (-2.0 - 1.0) / 2, 1e-12);
  EXPECT_NEAR(r->reward_chosen, 0.1 * -1.5, 1e-12);
  EXPECT_NEAR(r->reward_rejected, 0.1 * (-10.0 - 10.0) / 2, 1e-12);
  EXPECT_NEAR(r->margin, r->reward_chosen - r->reward_rejected, 1e-12);
  EXPECT_GT(r->margin, 0.0);
  EXPECT_DOUBLE_EQ(r->accuracy, 1.0);
  EXPECT_LT(r->loss, std::log(2.0));
}

TEST(Preference, CoefficientsMatchFiniteDifferences) {
  std::vector<PrefPair> base = {{-10.0, -13.0, -11.0, -12.0, 5, 7},
                                {-20.0, -18.0, -19.5, -18.7, 9, 6},
                                {-7.0, -9.0, -7.2, -8.1, 3, 4}};
  for (auto loss : {PrefLoss::kSigmoid, PrefLoss::kIpo, PrefLoss::kHinge, PrefLoss::kRobust}) {
    for (auto div : {FDivergence::kReverseKL, FDivergence::kForwardKL, FDivergence::kJS,
                     FDivergence::kAlpha}) {
      PrefOptions o;
      o.loss = loss;
      o.div = div;
      o.beta = 0.3;
      o.alpha = 0.4;
      o.robust_eps = 0.15;
      auto r = preference_loss(base, o);
      ASSERT_TRUE(r.ok());
      double max_abs = 0;
      for (std::size_t i = 0; i < base.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          const double h = 1e-6;
          auto plus = base, minus = base;
          (side ? plus[i].policy_l : plus[i].policy_w) += h;
          (side ? minus[i].policy_l : minus[i].policy_w) -= h;
          const double fd =
              (preference_loss(plus, o)->loss - preference_loss(minus, o)->loss) / (2 * h);
          const double an = side ? r->c_l[i] : r->c_w[i];
          max_abs = std::max(max_abs, std::fabs(fd));
          EXPECT_NEAR(an, fd, 1e-7 + 1e-6 * std::fabs(fd))
              << pref_loss_name(loss) << "/" << fdivergence_name(div) << " pair " << i << " side " << side;
        }
      }
      EXPECT_GT(max_abs, 1e-4) << pref_loss_name(loss) << "/" << fdivergence_name(div);
    }
  }
}

TEST(Preference, ScoreTableAndClamp) {
  EXPECT_DOUBLE_EQ(fdiv_score(FDivergence::kReverseKL, 1.5, 0.5), 1.5);
  EXPECT_NEAR(fdiv_score(FDivergence::kForwardKL, 1.0, 0.5), -std::exp(-1.0), 1e-15);
  EXPECT_NEAR(fdiv_score(FDivergence::kJS, 0.0, 0.5), -std::log(2.0), 1e-15);
  EXPECT_NEAR(fdiv_score(FDivergence::kAlpha, 2.0, 0.5), std::exp(-1.0) / -0.5, 1e-15);
  EXPECT_NEAR(fdiv_score_grad(FDivergence::kJS, 0.0, 0.5), 0.5, 1e-15);
  // Huge negative Delta would overflow e^(-Delta) without the clamp.
  EXPECT_TRUE(std::isfinite(fdiv_score(FDivergence::kForwardKL, -1e6, 0.5)));
  EXPECT_TRUE(std::isfinite(fdiv_score_grad(FDivergence::kAlpha, -1e6, 0.5)));
}

TEST(Preference, RejectsBadOptions) {
  std::vector<PrefPair> pairs(1);
  PrefOptions o;
  o.beta = 0;
  EXPECT_FALSE(preference_loss(pairs, o).ok());
  o = {};
  o.loss = PrefLoss::kRobust;
  o.robust_eps = 0.5;
  EXPECT_FALSE(preference_loss(pairs, o).ok());
  EXPECT_FALSE(preference_loss({}, {}).ok());
  EXPECT_EQ(parse_pref_loss("ipo").value(), PrefLoss::kIpo);
  EXPECT_EQ(parse_fdivergence("js").value(), FDivergence::kJS);
  EXPECT_FALSE(parse_fdivergence("hellinger").ok());
}

// ---------------------------------------------------------------------------
// Unlearning

TEST(Unlearning, NpoAtInitialisation) {
  std::vector<double> lp = {-20.0, -35.0, -8.0};
  auto r = npo_loss(lp, lp, 0.1);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->loss, 13.862944, 1e-6);
  EXPECT_NEAR(r->loss, (2 / 0.1) * std::log(2.0), 1e-12);
  // Weighted gradient ascent: dL/dlogp = 2 sigma(0)/B = 1/B.
  for (double c : r->coef) EXPECT_NEAR(c, 1.0 / 3, 1e-12);
}

TEST(Unlearning, NpoAndSimNpoFiniteDifferences) {
  std::vector<double> lp = {-20.0, -35.0, -8.0}, ref = {-18.0, -36.5, -9.0}, len = {10, 14, 3};
  auto npo = npo_loss(lp, ref, 0.3).value();
  auto sim = simnpo_loss(lp, len, 4.5, 0.5).value();
  for (std::size_t b = 0; b < lp.size(); ++b) {
    const double h = 1e-6;
    auto p = lp, m = lp;
    p[b] += h;
    m[b] -= h;
    EXPECT_NEAR(npo.coef[b], (npo_loss(p, ref, 0.3)->loss - npo_loss(m, ref, 0.3)->loss) / (2 * h), 1e-7);
    EXPECT_NEAR(sim.coef[b],
                (simnpo_loss(p, len, 4.5, 0.5)->loss - simnpo_loss(m, len, 4.5, 0.5)->loss) / (2 * h),
                1e-7);
    // Both push the forget likelihood down: the loss grows with logp.
    EXPECT_GT(npo.coef[b], 0.0);
    EXPECT_GT(sim.coef[b], 0.0);
  }
  // SimNPO per-token dloss matches -2 sigma(-beta a)/(|y| B).
  const double a = 8.0 / 3 - 0.5;
  EXPECT_NEAR(sim.coef[2], 2 * sigmoid(-4.5 * a) / (3 * 3), 1e-12);
}

TEST(Unlearning, RejectsBadInputs) {
  std::vector<double> a = {-1.0}, b = {-1.0, -2.0}, zero_len = {0.0};
  EXPECT_FALSE(npo_loss(a, b, 0.1).ok());
  EXPECT_FALSE(npo_loss(a, a, -1).ok());
  EXPECT_FALSE(simnpo_loss(a, zero_len, 4.5, 0).ok());
}

TEST(Helpers, StableLogSigmoid) {
  EXPECT_NEAR(log_sigmoid(0.0), -std::log(2.0), 1e-15);
  EXPECT_NEAR(log_sigmoid(-800.0), -800.0, 1e-9);
  EXPECT_NEAR(log_sigmoid(800.0), 0.0, 1e-15);
  EXPECT_NEAR(sigmoid(-800.0), 0.0, 1e-300);
  EXPECT_DOUBLE_EQ(sigmoid(0.0), 0.5);
}

}  // namespace
