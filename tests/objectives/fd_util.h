// Shared by the objective tests: random logits and a central-difference
// gradient check.
//
// Inputs are float and losses are computed in double, so a central
// difference with h = 2^-9 on the float logits, divided by the exactly
// representable step (z+h) - (z-h), has truncation error O(h^2) ~ 4e-6 times
// the third derivative.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace assay::obj::test_util {

inline std::vector<float> random_logits(std::size_t n, unsigned seed, double scale = 2.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, static_cast<float>(scale));
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Checks the analytic gradient `grad` of loss(z) element by element:
// |fd - grad| <= atol + rtol |fd|. A check over an all-zero gradient would
// prove nothing, so the largest |fd| must exceed min_grad.
template <class F>
void check_fd_gradient(std::vector<float> z, const std::vector<float>& grad, F loss,
                       const char* what, double atol, double rtol, double min_grad) {
  ASSERT_EQ(z.size(), grad.size()) << what;
  const float h = 1.0f / 512;
  double max_abs = 0;
  for (std::size_t i = 0; i < z.size(); ++i) {
    const float z0 = z[i];
    z[i] = z0 + h;
    const double lp = loss(z);
    const float zp = z[i];
    z[i] = z0 - h;
    const double lm = loss(z);
    const float zm = z[i];
    z[i] = z0;
    const double fd = (lp - lm) / (static_cast<double>(zp) - zm);
    max_abs = std::max(max_abs, std::fabs(fd));
    ASSERT_NEAR(grad[i], fd, atol + rtol * std::fabs(fd)) << what << " at element " << i;
  }
  EXPECT_GT(max_abs, min_grad) << what << ": gradient is trivially zero";
}

}  // namespace assay::obj::test_util
