// Central finite differences for the engine's kernel tests (double
// precision, where a loss is smooth enough for h = 1e-5).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

// Compares `analytic` with central differences of loss() over every element of x.
inline void expect_grad(const char* what, std::vector<double>& x,
                        const std::vector<double>& analytic,
                        const std::function<double()>& loss) {
  ASSERT_EQ(x.size(), analytic.size());
  const double h = 1e-5;
  for (size_t i = 0; i < x.size(); i++) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    const double num = (lp - lm) / (2 * h);
    const double err = std::fabs(analytic[i] - num);
    EXPECT_LE(err, 1e-7 + 1e-6 * std::fabs(num))
        << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << num;
  }
  // Guard against a vacuous check (all-zero gradients).
  double norm = 0;
  for (double g : analytic) norm += g * g;
  EXPECT_GT(norm, 1e-12) << what << ": gradient is zero";
}

