// Objectives: finite-difference checks of every dL/dlogits, reference values
// from objectives.md, divergence limits, and an independent Sinkhorn forward.
//
// Finite differences: inputs are float, losses are computed in double, so a
// central difference with h = 2^-9 on the float logits (using the exactly
// representable perturbation z+h - z-h) has truncation error O(h^2) ~ 4e-6
// times the third derivative. Tolerance: |fd - analytic| <= 2e-4 + 2e-3 |fd|.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "assay/objectives.h"
#include "fd_util.h"

namespace {

using namespace assay::obj;

using assay::obj::test_util::random_logits;

// Checks analytic gradient `grad` of loss(z) against central differences.
void check_fd(std::vector<float> z, const std::vector<float>& grad,
              const std::function<double(const std::vector<float>&)>& loss, const char* what,
              double atol = 2e-4, double rtol = 2e-3) {
  assay::obj::test_util::check_fd_gradient(std::move(z), grad, loss, what, atol, rtol, 1e-3);
}

constexpr int B = 2, T = 3, V = 7;

TEST(Objectives, CrossEntropyValueAndGradient) {
  Logits shape{nullptr, B, T, V};
  auto z = random_logits(shape.size(), 1);
  std::vector<int> y = {1, 3, 6, 0, -1, 2};      // one ignored target
  std::vector<float> mask = {0, 1, 1, 1, 1, 1};  // one prompt position
  auto loss = [&](const std::vector<float>& zz) {
    Logits l{zz.data(), B, T, V};
    return cross_entropy(l, y, mask, {}).value().loss;
  };
  std::vector<float> g(shape.size(), 99.0f);
  Logits l{z.data(), B, T, V};
  auto r = cross_entropy(l, y, mask, {g.data()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_DOUBLE_EQ(r->n_tokens, 4.0);
  // Independent value: mean of -log softmax over the 4 valid rows.
  double ref = 0;
  for (int row : {1, 2, 3, 5}) {
    double s = 0;
    for (int j = 0; j < V; ++j) s += std::exp(static_cast<double>(z[row * V + j]));
    ref += std::log(s) - z[row * V + y[row]];
  }
  EXPECT_NEAR(r->loss, ref / 4, 1e-9);
  // Masked rows get exactly zero gradient (overwriting the 99s).
  for (int j = 0; j < V; ++j) EXPECT_EQ(g[j], 0.0f);
  for (int j = 0; j < V; ++j) EXPECT_EQ(g[4 * V + j], 0.0f);
  check_fd(z, g, loss, "cross_entropy");
}

TEST(Objectives, CrossEntropyUniformIsLogV) {
  std::vector<float> z(static_cast<std::size_t>(B) * T * V, 0.5f);
  std::vector<int> y(B * T, 2);
  auto r = cross_entropy({z.data(), B, T, V}, y, {}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->loss, std::log(static_cast<double>(V)), 1e-12);
}

TEST(Objectives, CrossEntropyRejectsBadTargets) {
  std::vector<float> z(static_cast<std::size_t>(B) * T * V, 0.0f);
  std::vector<int> y(B * T, V);  // out of range
  auto r = cross_entropy({z.data(), B, T, V}, y, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocab size"), std::string::npos);
  std::vector<int> short_y(3, 0);
  EXPECT_FALSE(cross_entropy({z.data(), B, T, V}, short_y, {}, {}).ok());
}

TEST(Objectives, GradSinkScaleAndAccumulate) {
  auto z = random_logits(static_cast<std::size_t>(B) * T * V, 2);
  std::vector<int> y = {0, 1, 2, 3, 4, 5};
  std::vector<float> g1(z.size()), g2(z.size(), 1.0f);
  ASSERT_TRUE(cross_entropy({z.data(), B, T, V}, y, {}, {g1.data()}).ok());
  ASSERT_TRUE(cross_entropy({z.data(), B, T, V}, y, {}, {g2.data(), -2.0, true}).ok());
  for (std::size_t i = 0; i < z.size(); ++i) EXPECT_NEAR(g2[i], 1.0f - 2.0f * g1[i], 1e-6);
}

struct DivCase {
  Divergence div;
  double tau, beta, alpha;
};

class DistillGrad : public ::testing::TestWithParam<DivCase> {};

TEST_P(DistillGrad, FiniteDifferences) {
  const DivCase c = GetParam();
  DistillOptions o{c.div, c.tau, c.beta, c.alpha};
  auto z = random_logits(static_cast<std::size_t>(B) * T * V, 3);
  auto zt = random_logits(z.size(), 4);
  std::vector<float> mask = {1, 1, 0, 1, 1, 1};
  auto loss = [&](const std::vector<float>& zz) {
    return distill({zz.data(), B, T, V}, zt.data(), mask, o, {}).value().loss;
  };
  std::vector<float> g(z.size());
  auto r = distill({z.data(), B, T, V}, zt.data(), mask, o, {g.data()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->loss, 0.0);
  EXPECT_GT(r->kl_to_teacher, 0.0);
  check_fd(z, g, loss, divergence_name(c.div));
}

INSTANTIATE_TEST_SUITE_P(
    AllDivergences, DistillGrad,
    ::testing::Values(DivCase{Divergence::kForwardKL, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kForwardKL, 2.0, 0.5, 0.1},
                      DivCase{Divergence::kReverseKL, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kReverseKL, 2.0, 0.5, 0.1},
                      DivCase{Divergence::kJSD, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kJSD, 2.0, 0.2, 0.1},
                      DivCase{Divergence::kTV, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kTV, 2.0, 0.5, 0.1},
                      DivCase{Divergence::kSkewKL, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kSkewKL, 2.0, 0.5, 0.3},
                      DivCase{Divergence::kSkewReverseKL, 1.0, 0.5, 0.1},
                      DivCase{Divergence::kSkewReverseKL, 2.0, 0.5, 0.3}));

double div_value(Divergence d, const std::vector<float>& z, const std::vector<float>& zt,
                 double beta = 0.5, double alpha = 0.1, double tau = 1.0) {
  DistillOptions o{d, tau, beta, alpha};
  return distill({z.data(), B, T, V}, zt.data(), {}, o, {}).value().loss;
}

TEST(Objectives, KnownDivergenceValues) {
  // Two-class rows: q = (0.5, 0.5) (equal logits), p = (0.8, 0.2).
  std::vector<float> z(static_cast<std::size_t>(B) * T * V, -1e4f), zt = z;
  for (int r = 0; r < B * T; ++r) {
    z[r * V] = 0.0f;
    z[r * V + 1] = 0.0f;
    zt[r * V] = static_cast<float>(std::log(0.8));
    zt[r * V + 1] = static_cast<float>(std::log(0.2));
  }
  const double fkl = 0.8 * std::log(0.8 / 0.5) + 0.2 * std::log(0.2 / 0.5);
  const double rkl = 0.5 * std::log(0.5 / 0.8) + 0.5 * std::log(0.5 / 0.2);
  EXPECT_NEAR(div_value(Divergence::kForwardKL, z, zt), fkl, 1e-6);
  EXPECT_NEAR(div_value(Divergence::kReverseKL, z, zt), rkl, 1e-6);
  EXPECT_NEAR(div_value(Divergence::kTV, z, zt), 0.3, 1e-6);
  // JSD(0.5): m = (0.65, 0.35).
  const double jsd = 0.5 * (0.8 * std::log(0.8 / 0.65) + 0.2 * std::log(0.2 / 0.35)) +
                     0.5 * (0.5 * std::log(0.5 / 0.65) + 0.5 * std::log(0.5 / 0.35));
  EXPECT_NEAR(div_value(Divergence::kJSD, z, zt), jsd, 1e-6);
  // Skew KL(0.1): m = 0.1 p + 0.9 q = (0.53, 0.47).
  const double skl = 0.8 * std::log(0.8 / 0.53) + 0.2 * std::log(0.2 / 0.47);
  EXPECT_NEAR(div_value(Divergence::kSkewKL, z, zt), skl, 1e-6);
  // Skew reverse KL(0.1): m = 0.9 p + 0.1 q = (0.77, 0.23).
  const double srkl = 0.5 * std::log(0.5 / 0.77) + 0.5 * std::log(0.5 / 0.23);
  EXPECT_NEAR(div_value(Divergence::kSkewReverseKL, z, zt), srkl, 1e-6);
}

TEST(Objectives, JsdLimits) {
  auto z = random_logits(static_cast<std::size_t>(B) * T * V, 5);
  auto zt = random_logits(z.size(), 6);
  const double fkl = div_value(Divergence::kForwardKL, z, zt);
  const double rkl = div_value(Divergence::kReverseKL, z, zt);
  ASSERT_GT(std::fabs(fkl - rkl), 1e-2);  // the limits must be distinguishable
  // Convention at the endpoints.
  EXPECT_DOUBLE_EQ(div_value(Divergence::kJSD, z, zt, 0.0), fkl);
  EXPECT_DOUBLE_EQ(div_value(Divergence::kJSD, z, zt, 1.0), rkl);
  // And the endpoints are the limits of JSD/beta and JSD/(1-beta).
  const double b = 1e-6;  // the first-order correction is O(b * chi^2)
  EXPECT_NEAR(div_value(Divergence::kJSD, z, zt, b) / b, fkl, 2e-3 * fkl);
  EXPECT_NEAR(div_value(Divergence::kJSD, z, zt, 1 - b) / b, rkl, 2e-3 * rkl);
}

TEST(Objectives, DivergencesVanishAtTeacher) {
  auto z = random_logits(static_cast<std::size_t>(B) * T * V, 7);
  for (Divergence d : {Divergence::kForwardKL, Divergence::kReverseKL, Divergence::kJSD,
                       Divergence::kTV, Divergence::kSkewKL, Divergence::kSkewReverseKL}) {
    std::vector<float> g(z.size(), 5.0f);
    DistillOptions o{d, 2.0, 0.5, 0.1};
    auto r = distill({z.data(), B, T, V}, z.data(), {}, o, {g.data()});
    ASSERT_TRUE(r.ok());
    EXPECT_NEAR(r->loss, 0.0, 1e-12) << divergence_name(d);
    // TV: every difference is an exact tie, so the subgradient is 0.
    for (float x : g) EXPECT_NEAR(x, 0.0f, 1e-7) << divergence_name(d);
  }
}

TEST(Objectives, DistillRejectsBadOptions) {
  std::vector<float> z(V, 0.0f);
  DistillOptions o{Divergence::kJSD, 1.0, 1.5, 0.1};
  EXPECT_FALSE(distill({z.data(), 1, 1, V}, z.data(), {}, o, {}).ok());
  o = {Divergence::kForwardKL, 0.0, 0.5, 0.1};
  EXPECT_FALSE(distill({z.data(), 1, 1, V}, z.data(), {}, o, {}).ok());
  o = {Divergence::kSkewKL, 1.0, 0.5, 1.0};
  EXPECT_FALSE(distill({z.data(), 1, 1, V}, z.data(), {}, o, {}).ok());
  EXPECT_EQ(parse_divergence("jsd").value(), Divergence::kJSD);
  EXPECT_FALSE(parse_divergence("kl2").ok());
}

}  // namespace
