// Row helpers shared by the objective implementations (not a public header).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

#include "assay/objectives.h"

namespace assay::obj::detail {

// Threads only pay off above a few tens of thousands of elements; small
// batches (tests, tiny demo models) run on the calling thread.
inline bool worth_threads(std::size_t work) { return work >= (1u << 16); }

// out[j] = log softmax(z / tau)[j] for one row of V logits; computed in double.
inline void log_softmax_row(const float* z, int V, double tau, double* out) {
  double mx = -INFINITY;
  for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(z[j]) / tau);
  double s = 0;
  for (int j = 0; j < V; ++j) {
    out[j] = static_cast<double>(z[j]) / tau - mx;
    s += std::exp(out[j]);
  }
  const double lse = std::log(s);
  for (int j = 0; j < V; ++j) out[j] -= lse;
}

// Weight of row r: mask value (1 when no mask); 0 when the target is negative.
inline double row_weight(std::span<const float> mask, std::span<const int> targets, std::size_t r) {
  double w = mask.empty() ? 1.0 : static_cast<double>(mask[r]);
  if (!targets.empty() && targets[r] < 0) w = 0;
  return w;
}

// Writes one row of gradient: out = (acc ? out : 0) + k * g.
inline void write_grad_row(const GradSink& sink, std::size_t r, int V, const double* g, double k) {
  float* o = sink.data + r * static_cast<std::size_t>(V);
  const double s = sink.scale * k;
  if (sink.accumulate) {
    for (int j = 0; j < V; ++j) o[j] = static_cast<float>(o[j] + s * g[j]);
  } else {
    for (int j = 0; j < V; ++j) o[j] = static_cast<float>(s * g[j]);
  }
}

inline void zero_grad_row(const GradSink& sink, std::size_t r, int V) {
  if (sink.accumulate) return;
  float* o = sink.data + r * static_cast<std::size_t>(V);
  std::fill(o, o + V, 0.0f);
}

// Softmax chain rule C(q, g): dz_j = (1/tau) q_j (g_j - sum_k q_k g_k), in place on g.
inline void softmax_chain(const double* q, double* g, int V, double tau) {
  double dot = 0;
  for (int j = 0; j < V; ++j) dot += q[j] * g[j];
  for (int j = 0; j < V; ++j) g[j] = q[j] * (g[j] - dot) / tau;
}

}  // namespace assay::obj::detail
