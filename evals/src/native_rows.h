// Per-row helpers on a logits row [V] shared by scoring and generation.
#pragma once

#include <cmath>
#include <cstdint>

#include "assay/evals_native.h"

namespace assay::evals {

// log-softmax of row [V] at `token`, and the row's argmax (lowest id on ties).
inline TokenLogprob score_row(const float* row, int V, int32_t token) {
  int32_t top = 0;
  for (int i = 1; i < V; ++i)
    if (row[i] > row[top]) top = i;
  const double m = row[top];
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(row[i]) - m);
  const double lse = m + std::log(sum);
  return {token, static_cast<double>(row[token]) - lse, top, m - lse};
}

}  // namespace assay::evals
