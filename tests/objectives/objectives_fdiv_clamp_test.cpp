// The f-DPO scores' log-ratio clamp: exact (bit for bit) above -max_log_ratio,
// a C^1 tangent continuation below it, finite-difference-consistent slopes,
// bounded losses and coefficients at the log-ratios that blew training up,
// and the clamped fraction reported.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "assay/objectives.h"

namespace assay::obj {
namespace {

// The scores as they were computed before the clamp existed: exponents
// clamped at +-80, nothing else.
double old_exp(double x) { return std::exp(std::clamp(x, -80.0, 80.0)); }
double old_score(FDivergence f, double d, double a) {
  switch (f) {
    case FDivergence::kReverseKL: return d;
    case FDivergence::kForwardKL: return -old_exp(-d);
    case FDivergence::kJS: return log_sigmoid(d);
    case FDivergence::kAlpha: return old_exp((a - 1) * d) / (a - 1);
  }
  return 0;
}
double old_grad(FDivergence f, double d, double a) {
  switch (f) {
    case FDivergence::kReverseKL: return 1.0;
    case FDivergence::kForwardKL: return old_exp(-d);
    case FDivergence::kJS: return sigmoid(-d);
    case FDivergence::kAlpha: return old_exp((a - 1) * d);
  }
  return 0;
}

const FDivergence kAll[] = {FDivergence::kReverseKL, FDivergence::kForwardKL, FDivergence::kJS,
                            FDivergence::kAlpha};

TEST(FdivClamp, ExactAboveTheBoundBitForBit) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-10.0, 40.0);
  for (auto f : kAll) {
    for (double a : {0.2, 0.5, 0.9}) {
      for (int i = 0; i < 2000; ++i) {
        const double d = i == 0 ? -10.0 : u(rng);  // -10 = -M: still the exact branch
        const FdivScore s = fdiv_score_at(f, d, a);
        EXPECT_EQ(s.s, old_score(f, d, a)) << fdivergence_name(f) << " d=" << d;
        EXPECT_EQ(s.ds, old_grad(f, d, a)) << fdivergence_name(f) << " d=" << d;
        EXPECT_FALSE(s.clamped);
      }
    }
  }
}

TEST(FdivClamp, TangentContinuationBelowTheBound) {
  const double m = 10.0;
  for (auto f : {FDivergence::kForwardKL, FDivergence::kAlpha}) {
    const double a = 0.4;
    const FdivScore at = fdiv_score_at(f, -m, a, m);
    for (double d : {-10.5, -13.2, -40.0, -1e3, -1e6}) {
      const FdivScore s = fdiv_score_at(f, d, a, m);
      EXPECT_TRUE(s.clamped) << d;
      EXPECT_EQ(s.ds, at.ds) << d;  // slope frozen at s'(-M)
      EXPECT_NEAR(s.s, at.s + at.ds * (d + m), 1e-9 * std::fabs(s.s)) << d;
      EXPECT_TRUE(std::isfinite(s.s));
    }
    // Continuity of value and slope at -M (C^1): one step on either side.
    const double e = 1e-9;
    EXPECT_NEAR(fdiv_score(f, -m - e, a, m), at.s, 1e-7 * std::fabs(at.s));
    EXPECT_NEAR(fdiv_score_grad(f, -m + e, a, m), fdiv_score_grad(f, -m - e, a, m), 1e-7 * at.ds);
  }
  // The bounded scores never clamp.
  for (auto f : {FDivergence::kReverseKL, FDivergence::kJS}) {
    const FdivScore s = fdiv_score_at(f, -1e3, 0.5, m);
    EXPECT_FALSE(s.clamped);
    EXPECT_EQ(s.s, old_score(f, -1e3, 0.5));
  }
}

TEST(FdivClamp, ScoreSlopesMatchFiniteDifferences) {
  // Central differences of s(Delta) against s'(Delta), including points past
  // the bound and straddling it (the continuation is C^1, so the check holds
  // there too).
  for (double m : {2.0, 10.0}) {
    for (auto f : kAll) {
      for (double a : {0.3, 0.7}) {
        for (double d : {-3 * m, -m - 0.3, -m - 1e-4, -m, -m + 1e-4, -m + 0.3, -1.0, 0.0, 0.7, 4.0}) {
          // Small h: at -M the second derivative jumps, so the central
          // difference there is off by ~h |s''| / 2 (relative h / 2).
          const double h = 1e-7;
          const double fd = (fdiv_score(f, d + h, a, m) - fdiv_score(f, d - h, a, m)) / (2 * h);
          const double an = fdiv_score_grad(f, d, a, m);
          EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::fabs(an)))
              << fdivergence_name(f) << " a=" << a << " M=" << m << " d=" << d;
        }
      }
    }
  }
}

TEST(FdivClamp, PreferenceCoefficientsMatchFiniteDifferencesWhenClamped) {
  // Log-ratios of tens of nats, below -M for some completions.
  const std::vector<PrefPair> base = {{-40.0, -60.0, -22.0, -30.0, 12, 14},
                                      {-31.0, -20.0, -18.5, -19.0, 9, 6},
                                      {-7.0, -9.0, -7.2, -8.1, 3, 4}};
  for (auto loss : {PrefLoss::kSigmoid, PrefLoss::kIpo, PrefLoss::kHinge, PrefLoss::kRobust}) {
    for (auto div : {FDivergence::kForwardKL, FDivergence::kAlpha}) {
      PrefOptions o;
      o.loss = loss;
      o.div = div;
      o.beta = 0.1;
      o.alpha = 0.4;
      o.max_log_ratio = 6.0;
      auto r = preference_loss(base, o);
      ASSERT_TRUE(r.ok());
      EXPECT_GT(r->clamped_frac, 0.0);
      for (std::size_t i = 0; i < base.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          // The clamped pairs make the loss large (~1e3 for IPO), so rounding
          // in the difference is ~1e-16 |L| / h: h = 1e-5 keeps it < 1e-7.
          const double h = 1e-5;
          auto plus = base, minus = base;
          (side ? plus[i].policy_l : plus[i].policy_w) += h;
          (side ? minus[i].policy_l : minus[i].policy_w) -= h;
          const double fd = (preference_loss(plus, o)->loss - preference_loss(minus, o)->loss) / (2 * h);
          const double an = side ? r->c_l[i] : r->c_w[i];
          EXPECT_NEAR(an, fd, 1e-6 + 1e-6 * std::fabs(fd))
              << pref_loss_name(loss) << "/" << fdivergence_name(div) << " pair " << i << " side " << side;
        }
      }
    }
  }
}

// The reported blow-up: forward KL (and alpha) with the chosen completions'
// log-ratios at -13 to -60 nats. Without the bound (M = 80, the old exponent
// cap) the loss is ~1e4..1e25; with the default it stays within the linear
// bound and every coefficient is at most beta e^M / P.
TEST(FdivClamp, BlowUpScenarioIsBounded) {
  std::vector<PrefPair> pairs = {{-53.0, -70.0, -40.0, -71.0, 30, 30},
                                 {-80.0, -95.0, -20.0, -94.0, 40, 40},
                                 {-31.0, -33.0, -30.0, -33.5, 25, 25},
                                 {-12.0, -19.0, -12.5, -15.0, 10, 10}};
  for (auto div : {FDivergence::kForwardKL, FDivergence::kAlpha}) {
    PrefOptions o;
    o.div = div;
    o.alpha = 0.2;
    o.max_log_ratio = kMaxLogRatioLimit;  // effectively the old behaviour
    auto old = preference_loss(pairs, o);
    ASSERT_TRUE(old.ok());
    o.max_log_ratio = kDefaultMaxLogRatio;
    auto now = preference_loss(pairs, o);
    ASSERT_TRUE(now.ok());
    const double P = static_cast<double>(pairs.size());
    const double slope_max = div == FDivergence::kForwardKL ? std::exp(kDefaultMaxLogRatio)
                                                            : std::exp((1 - o.alpha) * kDefaultMaxLogRatio);
    EXPECT_GT(old->loss, 5e4) << fdivergence_name(div);  // what training saw
    // Sigmoid loss <= beta |delta| + ln 2, with |delta| <= |s_w| + |s_l| and
    // |s| <= slope_max (1/(1-a) + excess below -M) (1/(1-a) -> 1 for forward KL).
    const double max_excess = 60.0 - kDefaultMaxLogRatio;
    const double k = div == FDivergence::kForwardKL ? 1.0 : 1 / (1 - o.alpha);
    EXPECT_LT(now->loss, o.beta * 2 * slope_max * (k + max_excess) + std::log(2.0)) << fdivergence_name(div);
    EXPECT_LT(now->loss, old->loss * 1e-3) << fdivergence_name(div);
    double c_max = 0, c_old = 0;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      c_max = std::max({c_max, std::fabs(now->c_w[i]), std::fabs(now->c_l[i])});
      c_old = std::max({c_old, std::fabs(old->c_w[i]), std::fabs(old->c_l[i])});
    }
    EXPECT_LE(c_max, o.beta * slope_max / P * (1 + 1e-12)) << fdivergence_name(div);
    EXPECT_GT(c_old, 1e3 * c_max) << fdivergence_name(div);
    // Log-ratios: chosen -13, -60, -1, 0.5; rejected 1, -1, 0.5, -4: two of
    // the eight completions lie below -10.
    EXPECT_DOUBLE_EQ(now->clamped_frac, 2.0 / 8);
    EXPECT_DOUBLE_EQ(old->clamped_frac, 0.0);
    EXPECT_TRUE(std::isfinite(now->loss));
  }
}

TEST(FdivClamp, NormalRangeUnchanged) {
  // |Delta| < M: the default bound gives exactly what the unbounded formulas
  // give, for every loss and divergence.
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> lp(-30.0, -5.0), shift(-4.0, 4.0);
  std::vector<PrefPair> pairs(16);
  for (auto& p : pairs) {
    p.ref_w = lp(rng);
    p.ref_l = lp(rng);
    p.policy_w = p.ref_w + shift(rng);
    p.policy_l = p.ref_l + shift(rng);
    p.len_w = 5 + static_cast<int>(rng() % 10);
    p.len_l = 5 + static_cast<int>(rng() % 10);
  }
  for (auto loss : {PrefLoss::kSigmoid, PrefLoss::kIpo, PrefLoss::kHinge, PrefLoss::kRobust}) {
    for (auto div : kAll) {
      PrefOptions o;
      o.loss = loss;
      o.div = div;
      o.alpha = 0.3;
      auto now = preference_loss(pairs, o);
      o.max_log_ratio = kMaxLogRatioLimit;
      auto wide = preference_loss(pairs, o);
      ASSERT_TRUE(now.ok() && wide.ok());
      EXPECT_EQ(now->loss, wide->loss) << pref_loss_name(loss) << "/" << fdivergence_name(div);
      EXPECT_EQ(now->c_w, wide->c_w);
      EXPECT_EQ(now->c_l, wide->c_l);
      EXPECT_EQ(now->clamped_frac, 0.0);
      // And the pre-clamp sigmoid formula, recomputed here.
      if (loss != PrefLoss::kSigmoid) continue;
      double ref = 0;
      for (const auto& p : pairs) {
        const double delta = old_score(div, p.policy_w - p.ref_w, 0.3) - old_score(div, p.policy_l - p.ref_l, 0.3);
        ref += -log_sigmoid(0.1 * delta) / static_cast<double>(pairs.size());
      }
      EXPECT_NEAR(now->loss, ref, 1e-12) << fdivergence_name(div);
    }
  }
}

TEST(FdivClamp, RejectsBoundsOutsideTheRange) {
  std::vector<PrefPair> pairs(1);
  PrefOptions o;
  o.max_log_ratio = 0;
  EXPECT_FALSE(preference_loss(pairs, o).ok());
  o.max_log_ratio = kMaxLogRatioLimit + 1;
  auto r = preference_loss(pairs, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_log_ratio must be in (0, 80"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace assay::obj
