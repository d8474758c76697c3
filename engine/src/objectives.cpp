// Token-level objectives: cross-entropy, distillation divergences, sequence
// log-likelihoods. Formulas: see objectives.h; every gradient is checked by
// finite differences in tests/objectives.
#include "assay/objectives.h"

#include <cmath>
#include <string>
#include <vector>

#include "objectives_internal.h"

namespace assay::obj {

using detail::log_softmax_row;
using detail::row_weight;
using detail::write_grad_row;
using detail::zero_grad_row;

Status check_shapes(const Logits& z, std::span<const int> targets, std::span<const float> mask) {
  if (z.data == nullptr) return Status::Invalid("logits: null data");
  if (z.B <= 0 || z.T <= 0 || z.V <= 0)
    return Status::Invalid("logits: shape must be positive, got [" + std::to_string(z.B) + ", " +
                           std::to_string(z.T) + ", " + std::to_string(z.V) + "]");
  if (!targets.empty() && targets.size() != z.rows())
    return Status::Invalid("targets: expected " + std::to_string(z.rows()) + " entries (B*T), got " +
                           std::to_string(targets.size()));
  if (!mask.empty() && mask.size() != z.rows())
    return Status::Invalid("mask: expected " + std::to_string(z.rows()) + " entries (B*T), got " +
                           std::to_string(mask.size()));
  for (std::size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] >= z.V)
      return Status::Invalid("targets[" + std::to_string(r) + "]: expected < vocab size " +
                             std::to_string(z.V) + ", got " + std::to_string(targets[r]));
  }
  return Status::Ok();
}

namespace {

double total_weight(std::span<const float> mask, std::span<const int> targets, std::size_t rows) {
  double n = 0;
  for (std::size_t r = 0; r < rows; ++r) n += row_weight(mask, targets, r);
  return n;
}

// Per-row loss sums reduced in row order so results do not depend on threads.
double ordered_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

Result<TokenLoss> cross_entropy(const Logits& z, std::span<const int> targets,
                                std::span<const float> mask, GradSink grad) {
  if (targets.empty()) return Status::Invalid("cross_entropy: targets are required");
  ASSAY_RETURN_IF_ERROR(check_shapes(z, targets, mask));
  const std::size_t R = z.rows();
  const int V = z.V;
  const double N = total_weight(mask, targets, R);
  std::vector<double> row_loss(R, 0.0);
#pragma omp parallel if (detail::worth_threads(z.size()))
  {
    std::vector<double> lq(V);
#pragma omp for schedule(static)
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(R); ++ri) {
      const auto r = static_cast<std::size_t>(ri);
      const double w = row_weight(mask, targets, r);
      if (w == 0 || N == 0) {
        if (grad.data) zero_grad_row(grad, r, V);
        continue;
      }
      log_softmax_row(z.data + r * V, V, 1.0, lq.data());
      const int y = targets[r];
      row_loss[r] = -w * lq[y];
      if (grad.data) {
        for (int j = 0; j < V; ++j) lq[j] = std::exp(lq[j]);
        lq[y] -= 1.0;
        write_grad_row(grad, r, V, lq.data(), w / N);
      }
    }
  }
  TokenLoss out;
  out.n_tokens = N;
  out.loss = N > 0 ? ordered_sum(row_loss) / N : 0.0;
  return out;
}

// ---------------------------------------------------------------------------
// Distillation

Result<Divergence> parse_divergence(const std::string& n) {
  if (n == "fkl" || n == "forward_kl") return Divergence::kForwardKL;
  if (n == "rkl" || n == "reverse_kl") return Divergence::kReverseKL;
  if (n == "jsd" || n == "js") return Divergence::kJSD;
  if (n == "tv" || n == "total_variation") return Divergence::kTV;
  if (n == "skl" || n == "skew_kl") return Divergence::kSkewKL;
  if (n == "srkl" || n == "skew_reverse_kl") return Divergence::kSkewReverseKL;
  return Status::Invalid("divergence: expected one of fkl, rkl, jsd, tv, skl, srkl, got '" + n + "'");
}

const char* divergence_name(Divergence d) {
  switch (d) {
    case Divergence::kForwardKL: return "fkl";
    case Divergence::kReverseKL: return "rkl";
    case Divergence::kJSD: return "jsd";
    case Divergence::kTV: return "tv";
    case Divergence::kSkewKL: return "skl";
    case Divergence::kSkewReverseKL: return "srkl";
  }
  return "?";
}

namespace {

// log(a e^x + b e^y) for a, b >= 0, stable.
double log_mix(double la, double x, double lb, double y) {
  const double u = la + x, v = lb + y;
  const double m = std::max(u, v);
  if (m == -INFINITY) return -INFINITY;
  return m + std::log(std::exp(u - m) + std::exp(v - m));
}

// Reverse KL row: L = sum q (lq - lp); g = q (lq - lp - L) / tau (already chained).
double rkl_row(const double* lq, const double* lp, int V, double tau, double* g) {
  double L = 0;
  for (int j = 0; j < V; ++j) L += std::exp(lq[j]) * (lq[j] - lp[j]);
  if (g)
    for (int j = 0; j < V; ++j) g[j] = std::exp(lq[j]) * (lq[j] - lp[j] - L) / tau;
  return L;
}

// Forward KL row: L = sum p (lp - lq); g = (q - p) / tau.
double fkl_row(const double* lq, const double* lp, int V, double tau, double* g) {
  double L = 0;
  for (int j = 0; j < V; ++j) {
    const double p = std::exp(lp[j]);
    if (p > 0) L += p * (lp[j] - lq[j]);
    if (g) g[j] = (std::exp(lq[j]) - p) / tau;
  }
  return L;
}

// One row of any token divergence. lq, lp: log-probs at temperature tau.
// g (may be null) receives dL/dz for this row, chain rule applied.
double divergence_row(const DistillOptions& o, const double* lq, const double* lp, int V,
                      double* g, std::vector<double>& tmp) {
  const double tau = o.tau;
  switch (o.div) {
    case Divergence::kForwardKL: return fkl_row(lq, lp, V, tau, g);
    case Divergence::kReverseKL: return rkl_row(lq, lp, V, tau, g);
    case Divergence::kJSD: {
      const double b = o.beta;
      if (b <= 0) return fkl_row(lq, lp, V, tau, g);
      if (b >= 1) return rkl_row(lq, lp, V, tau, g);
      const double lb = std::log(b), l1b = std::log1p(-b);
      double kp = 0, kq = 0;  // KL(p||m), KL(q||m)
      for (int j = 0; j < V; ++j) {
        const double lm = log_mix(lb, lp[j], l1b, lq[j]);
        tmp[j] = lq[j] - lm;  // log(q/m)
        const double p = std::exp(lp[j]), q = std::exp(lq[j]);
        if (p > 0) kp += p * (lp[j] - lm);
        if (q > 0) kq += q * tmp[j];
      }
      if (g)
        for (int j = 0; j < V; ++j) g[j] = (1 - b) * std::exp(lq[j]) * (tmp[j] - kq) / tau;
      return b * kp + (1 - b) * kq;
    }
    case Divergence::kTV: {
      double L = 0;
      for (int j = 0; j < V; ++j) {
        const double d = std::exp(lq[j]) - std::exp(lp[j]);
        L += 0.5 * std::fabs(d);
        if (g) g[j] = d > 0 ? 0.5 : (d < 0 ? -0.5 : 0.0);
      }
      if (g) {
        for (int j = 0; j < V; ++j) tmp[j] = std::exp(lq[j]);
        detail::softmax_chain(tmp.data(), g, V, tau);
      }
      return L;
    }
    case Divergence::kSkewKL: {
      // m = a p + (1-a) q; L = KL(p||m); g = (1-a) q (E_q[w] - w)/tau, w = p/m.
      const double a = o.alpha;
      const double la = std::log(a), l1a = std::log1p(-a);
      double L = 0, Ew = 0;
      for (int j = 0; j < V; ++j) {
        const double lm = log_mix(la, lp[j], l1a, lq[j]);
        const double p = std::exp(lp[j]);
        if (p > 0) L += p * (lp[j] - lm);
        tmp[j] = std::exp(lp[j] - lm);  // w
        Ew += std::exp(lq[j]) * tmp[j];
      }
      if (g)
        for (int j = 0; j < V; ++j) g[j] = (1 - a) * std::exp(lq[j]) * (Ew - tmp[j]) / tau;
      return L;
    }
    case Divergence::kSkewReverseKL: {
      // m = (1-a) p + a q; L = KL(q||m); g = C(q, log(q/m) - a q/m).
      const double a = o.alpha;
      const double la = std::log(a), l1a = std::log1p(-a);
      double L = 0;
      for (int j = 0; j < V; ++j) {
        const double lm = log_mix(l1a, lp[j], la, lq[j]);
        const double q = std::exp(lq[j]);
        if (q > 0) L += q * (lq[j] - lm);
        if (g) g[j] = (lq[j] - lm) - a * std::exp(lq[j] - lm);
      }
      if (g) {
        for (int j = 0; j < V; ++j) tmp[j] = std::exp(lq[j]);
        detail::softmax_chain(tmp.data(), g, V, tau);
      }
      return L;
    }
  }
  return 0;
}

Status check_distill_options(const DistillOptions& o) {
  if (!(o.tau > 0)) return Status::Invalid("distill: tau must be > 0, got " + std::to_string(o.tau));
  if (o.div == Divergence::kJSD && !(o.beta >= 0 && o.beta <= 1))
    return Status::Invalid("distill: jsd beta must be in [0, 1], got " + std::to_string(o.beta));
  if ((o.div == Divergence::kSkewKL || o.div == Divergence::kSkewReverseKL) &&
      !(o.alpha > 0 && o.alpha < 1))
    return Status::Invalid("distill: skew alpha must be in (0, 1), got " + std::to_string(o.alpha));
  return Status::Ok();
}

}  // namespace

Result<DistillLoss> distill(const Logits& z, const float* teacher, std::span<const float> mask,
                            const DistillOptions& opt, GradSink grad) {
  ASSAY_RETURN_IF_ERROR(check_shapes(z, {}, mask));
  ASSAY_RETURN_IF_ERROR(check_distill_options(opt));
  if (teacher == nullptr) return Status::Invalid("distill: teacher logits are null");
  const std::size_t R = z.rows();
  const int V = z.V;
  const double N = total_weight(mask, {}, R);
  std::vector<double> row_loss(R, 0.0), row_kl(R, 0.0);
#pragma omp parallel if (detail::worth_threads(z.size()))
  {
    std::vector<double> lq(V), lp(V), g(V), tmp(V), lq1(V), lp1(V);
#pragma omp for schedule(static)
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(R); ++ri) {
      const auto r = static_cast<std::size_t>(ri);
      const double w = row_weight(mask, {}, r);
      if (w == 0 || N == 0) {
        if (grad.data) zero_grad_row(grad, r, V);
        continue;
      }
      const float* zr = z.data + r * V;
      const float* tr = teacher + r * V;
      log_softmax_row(zr, V, opt.tau, lq.data());
      log_softmax_row(tr, V, opt.tau, lp.data());
      row_loss[r] = w * divergence_row(opt, lq.data(), lp.data(), V, grad.data ? g.data() : nullptr, tmp);
      if (opt.tau == 1.0 && opt.div == Divergence::kForwardKL) {
        row_kl[r] = row_loss[r];
      } else {
        log_softmax_row(zr, V, 1.0, lq1.data());
        log_softmax_row(tr, V, 1.0, lp1.data());
        row_kl[r] = w * fkl_row(lq1.data(), lp1.data(), V, 1.0, nullptr);
      }
      if (grad.data) write_grad_row(grad, r, V, g.data(), w / N);
    }
  }
  DistillLoss out;
  out.n_tokens = N;
  if (N > 0) {
    out.loss = ordered_sum(row_loss) / N;
    out.kl_to_teacher = ordered_sum(row_kl) / N;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Sequence log-likelihoods

Result<SeqLogProbs> sequence_logprobs(const Logits& z, std::span<const int> targets,
                                      std::span<const float> mask) {
  if (targets.empty()) return Status::Invalid("sequence_logprobs: targets are required");
  ASSAY_RETURN_IF_ERROR(check_shapes(z, targets, mask));
  const int V = z.V, T = z.T;
  SeqLogProbs out;
  out.logp.assign(z.B, 0.0);
  out.n_tokens.assign(z.B, 0.0);
  std::vector<double> row_lp(z.rows(), 0.0);
#pragma omp parallel if (detail::worth_threads(z.size()))
  {
    std::vector<double> lq(V);
#pragma omp for schedule(static)
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(z.rows()); ++ri) {
      const auto r = static_cast<std::size_t>(ri);
      const double w = row_weight(mask, targets, r);
      if (w == 0) continue;
      log_softmax_row(z.data + r * V, V, 1.0, lq.data());
      row_lp[r] = w * lq[targets[r]];
    }
  }
  for (int b = 0; b < z.B; ++b) {
    for (int t = 0; t < T; ++t) {
      const std::size_t r = static_cast<std::size_t>(b) * T + t;
      out.logp[b] += row_lp[r];
      out.n_tokens[b] += row_weight(mask, targets, r);
    }
  }
  return out;
}

Status sequence_logprobs_backward(const Logits& z, std::span<const int> targets,
                                  std::span<const float> mask, std::span<const double> coef,
                                  GradSink grad) {
  if (targets.empty()) return Status::Invalid("sequence_logprobs_backward: targets are required");
  ASSAY_RETURN_IF_ERROR(check_shapes(z, targets, mask));
  if (coef.size() != static_cast<std::size_t>(z.B))
    return Status::Invalid("sequence_logprobs_backward: expected " + std::to_string(z.B) +
                           " coefficients, got " + std::to_string(coef.size()));
  if (!grad.data) return Status::Ok();
  const int V = z.V, T = z.T;
#pragma omp parallel if (detail::worth_threads(z.size()))
  {
    std::vector<double> g(V);
#pragma omp for schedule(static)
    for (std::ptrdiff_t ri = 0; ri < static_cast<std::ptrdiff_t>(z.rows()); ++ri) {
      const auto r = static_cast<std::size_t>(ri);
      const double w = row_weight(mask, targets, r);
      const double c = coef[r / T];
      if (w == 0 || c == 0) {
        zero_grad_row(grad, r, V);
        continue;
      }
      // dL/dz = c * dlogp/dz = c w (onehot - q)
      log_softmax_row(z.data + r * V, V, 1.0, g.data());
      for (int j = 0; j < V; ++j) g[j] = -std::exp(g[j]);
      g[targets[r]] += 1.0;
      write_grad_row(grad, r, V, g.data(), c * w);
    }
  }
  return Status::Ok();
}

}  // namespace assay::obj
