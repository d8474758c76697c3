// Inverted hinge loss (LoKU): the worked example of objectives' reference
// (p = [0.6, 0.3, 0.1], target 0: IHL 1.3, gradient [0.42, -0.39, -0.03]),
// finite differences with masks and ignored targets, the first-index rule on
// ties, and the flat token-mean reduction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "assay/objectives.h"
#include "fd_util.h"

namespace {

using namespace assay::obj;
using assay::obj::test_util::random_logits;

TEST(InvertedHinge, WorkedExample) {
  const std::vector<float> z = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  const std::vector<int> y = {0};
  std::vector<float> g(3, 7.0f);
  auto r = inverted_hinge({z.data(), 1, 1, 3}, y, {}, {g.data()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_NEAR(r->loss, 1.3, 1e-6);
  EXPECT_DOUBLE_EQ(r->n_tokens, 1.0);
  EXPECT_NEAR(g[0], 0.42, 1e-6);
  EXPECT_NEAR(g[1], -0.39, 1e-6);
  EXPECT_NEAR(g[2], -0.03, 1e-6);
}

TEST(InvertedHinge, GradientMatchesFiniteDifferencesWithMask) {
  constexpr int B = 2, T = 4, V = 9;
  // Seeds whose rows keep the top two non-target probabilities apart, so
  // that the max does not switch within the finite-difference step.
  auto z = random_logits(static_cast<std::size_t>(B) * T * V, 5);
  std::vector<int> y = {1, 4, 8, 0, -1, 2, 2, 6};
  std::vector<float> mask = {0, 1, 1, 0.5f, 1, 1, 1, 1};
  for (int r = 0; r < B * T; ++r) {
    if (y[r] < 0) continue;
    std::vector<float> row(z.begin() + r * V, z.begin() + (r + 1) * V);
    row.erase(row.begin() + y[r]);
    std::sort(row.begin(), row.end());
    ASSERT_GT(row[V - 2] - row[V - 3], 0.05f) << "row " << r << " near a tie; pick another seed";
  }
  std::vector<float> g(z.size(), 3.0f);
  auto r = inverted_hinge({z.data(), B, T, V}, y, mask, {g.data()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_DOUBLE_EQ(r->n_tokens, 5.5);
  // Flat mean: the per-token values weighted by the mask over sum(mask).
  double ref = 0;
  for (int row = 0; row < B * T; ++row) {
    if (y[row] < 0 || mask[row] == 0) continue;
    double mx = -1e30, s = 0;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(z[row * V + j]));
    for (int j = 0; j < V; ++j) s += std::exp(z[row * V + j] - mx);
    double pm = 0;
    for (int j = 0; j < V; ++j)
      if (j != y[row]) pm = std::max(pm, std::exp(z[row * V + j] - mx) / s);
    ref += mask[row] * (1 + std::exp(z[row * V + y[row]] - mx) / s - pm);
  }
  EXPECT_NEAR(r->loss, ref / 5.5, 1e-9);
  for (int j = 0; j < V; ++j) EXPECT_EQ(g[j], 0.0f);          // mask 0
  for (int j = 0; j < V; ++j) EXPECT_EQ(g[4 * V + j], 0.0f);  // ignored target
  auto loss = [&](const std::vector<float>& zz) {
    return inverted_hinge({zz.data(), B, T, V}, y, mask, {}).value().loss;
  };
  assay::obj::test_util::check_fd_gradient(z, g, loss, "inverted_hinge", 2e-4, 2e-3, 1e-3);
  // Accumulating sink with a scale: out += scale * grad.
  std::vector<float> acc(z.size(), 1.0f);
  ASSERT_TRUE(inverted_hinge({z.data(), B, T, V}, y, mask, {acc.data(), -2.0, true}).ok());
  for (std::size_t i = 0; i < z.size(); ++i) ASSERT_NEAR(acc[i], 1.0f - 2.0f * g[i], 1e-6f);
}

TEST(InvertedHinge, TiesGoToTheFirstIndex) {
  // Target 2; tokens 0 and 3 tie for the runner-up: the gradient pushes 0 up only.
  const std::vector<float> z = {1.0f, 0.0f, 2.0f, 1.0f};
  const std::vector<int> y = {2};
  std::vector<float> g(4);
  auto r = inverted_hinge({z.data(), 1, 1, 4}, y, {}, {g.data()});
  ASSERT_TRUE(r.ok());
  // p_0 = p_3, so only the -p_m onehot term tells them apart: g0 - g3 = -p_m.
  double s = 0;
  for (float x : z) s += std::exp(x);
  const double pm = std::exp(1.0) / s;
  EXPECT_NEAR(g[0] - g[3], -pm, 1e-6);
  EXPECT_NEAR(r->loss, 1 + std::exp(2.0) / s - pm, 1e-7);
  double sum = 0;
  for (float x : g) sum += x;
  EXPECT_NEAR(sum, 0.0, 1e-6);
}

TEST(InvertedHinge, Errors) {
  const std::vector<float> z(6, 0.0f);
  auto r = inverted_hinge({z.data(), 1, 2, 3}, {}, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("targets are required"), std::string::npos);
  const std::vector<int> y = {0, 3};
  r = inverted_hinge({z.data(), 1, 2, 3}, y, {}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("targets[1]: expected < vocab size 3, got 3"), std::string::npos);
}

}  // namespace
