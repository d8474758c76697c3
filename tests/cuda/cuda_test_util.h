// Helpers for the CUDA tests: GPU availability, device buffers, comparison
// with stated tolerances.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "assay/engine_cuda.h"

// Skips the current test unless this build has CUDA and a GPU is visible.
#define SKIP_WITHOUT_GPU()                                                                 \
  do {                                                                                     \
    if (!assay::engine::cuda::built_with_cuda())                                           \
      GTEST_SKIP() << "this build has no CUDA support (nvcc not found at configure time)"; \
    auto n_ = assay::engine::cuda::cuda_device_count();                                    \
    if (!n_.ok()) GTEST_SKIP() << "no GPU: " << n_.status().message();                     \
    if (*n_ == 0) GTEST_SKIP() << "no GPU: cudaGetDeviceCount returned 0";                 \
  } while (0)

// Tolerances (see ARCHITECTURE.md, engine CUDA backend). An element passes
// when |got − want| <= atol + rtol·|want| + rms_rtol·rms(want):
//  - pure fp32 elementwise/row kernels vs the fp32 CPU kernels:
//    atol 1e-5, rtol 1e-5 (fast exp/tanh, FMA contraction and another
//    reduction order differ by a few ulp);
//  - anything that went through a TF32 matmul: atol 1e-3, rtol 2e-2 and
//    rms_rtol 5e-3. TF32 rounds inputs to 10 mantissa bits (relative error
//    <= 2^-11 ≈ 4.9e-4 per input), so a K-term dot product is off by about
//    sqrt(K)·5e-4 times the size of its terms, not of its (possibly
//    cancelled, near-zero) result: the rms term scales with the tensor.
struct Tol {
  double atol, rtol, rms_rtol = 0;
};
inline constexpr Tol kFp32Tol{1e-5, 1e-5, 0};
inline constexpr Tol kTf32Tol{1e-3, 2e-2, 5e-3};

inline ::testing::AssertionResult close_all(const std::vector<float>& got, const std::vector<float>& want,
                                            Tol tol, const std::string& what) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  double ss = 0;
  for (float w : want) ss += (double)w * w;
  const double rms = want.empty() ? 0 : std::sqrt(ss / want.size());
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < got.size(); i++) {
    const double d = std::fabs((double)got[i] - want[i]);
    const double lim = tol.atol + tol.rtol * std::fabs((double)want[i]) + tol.rms_rtol * rms;
    if (!(d <= lim)) {
      bad++;
      if (d - lim > worst_excess || std::isnan(d)) {
        worst_excess = d - lim;
        worst = i;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size()
                                       << " elements out of tolerance (rms of reference " << rms
                                       << "); worst at " << worst << ": got " << got[worst] << ", want "
                                       << want[worst];
}

inline std::vector<float> randn(size_t n, uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
