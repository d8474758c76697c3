// The inverted hinge loss of LoKU (formula in assay/objectives.h): a flat
// mask-weighted mean over every valid token of the batch, as the reference
// code reduces it (not a per-sequence mean first).
#include <cmath>
#include <string>
#include <vector>

#include "assay/objectives.h"
#include "objectives_internal.h"

namespace assay::obj {

Result<TokenLoss> inverted_hinge(const Logits& z, std::span<const int> targets,
                                 std::span<const float> mask, GradSink grad) {
  if (targets.empty()) return Status::Invalid("inverted_hinge: targets are required");
  ASSAY_RETURN_IF_ERROR(check_shapes(z, targets, mask));
  if (z.V < 2) return Status::Invalid("inverted_hinge: needs a vocabulary of at least 2, got " + std::to_string(z.V));
  const std::size_t R = z.rows();
  const int V = z.V;
  double N = 0;
  for (std::size_t r = 0; r < R; ++r) N += detail::row_weight(mask, targets, r);
  std::vector<double> row_loss(R, 0.0);
#pragma omp parallel if (detail::worth_threads(z.size()))
  {
    std::vector<double> p(V);
#pragma omp for schedule(static)
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(R); ++ri) {
      const auto r = static_cast<std::size_t>(ri);
      const double w = detail::row_weight(mask, targets, r);
      if (w == 0 || N == 0) {
        if (grad.data) detail::zero_grad_row(grad, r, V);
        continue;
      }
      detail::log_softmax_row(z.data + r * V, V, 1.0, p.data());
      for (int j = 0; j < V; ++j) p[j] = std::exp(p[j]);
      const int y = targets[r];
      int m = y == 0 ? 1 : 0;
      for (int j = 0; j < V; ++j) {
        if (j != y && p[j] > p[m]) m = j;
      }
      const double py = p[y], pm = p[m];
      row_loss[r] = w * (1.0 + py - pm);
      if (grad.data) {
        // p_y (δ_yk − p_k) − p_m (δ_mk − p_k) = (p_m − p_y) p_k + p_y δ_yk − p_m δ_mk
        const double c = pm - py;
        for (int j = 0; j < V; ++j) p[j] *= c;
        p[y] += py;
        p[m] -= pm;
        detail::write_grad_row(grad, r, V, p.data(), w / N);
      }
    }
  }
  TokenLoss out;
  out.n_tokens = N;
  double sum = 0;
  for (double x : row_loss) sum += x;  // row order: same result for any thread count
  out.loss = N > 0 ? sum / N : 0.0;
  return out;
}

}  // namespace assay::obj
