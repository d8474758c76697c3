// Batch-wise Sinkhorn distillation with the gradient through the unrolled
// normalisations. See objectives.h for the grouping (coupling) choice.
//
// Every Sinkhorn iterate is a diagonal scaling of the kernel K:
//   A_k = diag(u_k) K diag(v_{k-1})   (after the row normalisation of step k)
//   P_k = diag(u_k) K diag(v_k)       (after the column normalisation)
// with u_0 = v_0 = 1, so the backward pass rebuilds entries from the stored
// scaling vectors and normalisers instead of keeping n_iters N x N matrices.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "assay/objectives.h"
#include "objectives_internal.h"

namespace assay::obj {

namespace {

struct Group {
  std::vector<std::size_t> rows;  // row indices (b*T + t) of the valid positions
};

// One group: returns sum(P*W) and, when g_s is given, dL/ds for each row
// ([N, V], dL/d(student probs)).
double sinkhorn_group(const std::vector<double>& S, const std::vector<double>& Tt, int N, int V,
                      const SinkhornOptions& o, std::vector<double>* g_s) {
  const std::size_t NN = static_cast<std::size_t>(N) * N;
  std::vector<double> W(NN), K(NN);
  // W_ij = ||s_i - t_j||_1: [N, N]
#pragma omp parallel for schedule(static) if (detail::worth_threads(static_cast<std::size_t>(N) * N * V))
  for (int i = 0; i < N; ++i) {
    for (int j = 0; j < N; ++j) {
      const double* s = &S[static_cast<std::size_t>(i) * V];
      const double* t = &Tt[static_cast<std::size_t>(j) * V];
      double d = 0;
      for (int v = 0; v < V; ++v) d += std::fabs(s[v] - t[v]);
      W[static_cast<std::size_t>(i) * N + j] = d;
    }
  }
  // K = exp(-(W - rowmin)/eps): a row scaling of exp(-W/eps), which the first
  // row normalisation cancels exactly, so loss and gradient are unchanged.
  for (int i = 0; i < N; ++i) {
    double mn = INFINITY;
    for (int j = 0; j < N; ++j) mn = std::min(mn, W[static_cast<std::size_t>(i) * N + j]);
    for (int j = 0; j < N; ++j) {
      const std::size_t ij = static_cast<std::size_t>(i) * N + j;
      K[ij] = std::exp(-(W[ij] - mn) / o.eps);
    }
  }
  const int n = o.n_iters;
  // us[k], vs[k] for k = 0..n; rs[k], cs[k] for k = 1..n (index k-1).
  std::vector<std::vector<double>> us(n + 1, std::vector<double>(N, 1.0)), vs = us;
  std::vector<std::vector<double>> rs(n, std::vector<double>(N)), cs = rs;
  for (int k = 1; k <= n; ++k) {
    auto& u = us[k];
    auto& v = vs[k];
    const auto& up = us[k - 1];
    const auto& vp = vs[k - 1];
    for (int i = 0; i < N; ++i) {
      double r = 0;
      for (int j = 0; j < N; ++j) r += up[i] * K[static_cast<std::size_t>(i) * N + j] * vp[j];
      rs[k - 1][i] = r;
      u[i] = up[i] / r;
    }
    std::vector<double> c(N, 0.0);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) c[j] += u[i] * K[static_cast<std::size_t>(i) * N + j] * vp[j];
    for (int j = 0; j < N; ++j) {
      cs[k - 1][j] = c[j];
      v[j] = vp[j] / c[j];
    }
  }
  double loss = 0;
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      const std::size_t ij = static_cast<std::size_t>(i) * N + j;
      loss += us[n][i] * K[ij] * vs[n][j] * W[ij];
    }
  if (!g_s) return loss;

  // Backward. G holds dL/dP_k, starting from the direct dependence P_n*W.
  std::vector<double> G = W, GW(NN);
  for (std::size_t ij = 0; ij < NN; ++ij)
    GW[ij] = us[n][ij / N] * K[ij] * vs[n][ij % N];  // dL/dW direct term: P
  for (int k = n; k >= 1; --k) {
    const auto& u = us[k];
    const auto& v = vs[k];
    const auto& vp = vs[k - 1];
    const auto& up = us[k - 1];
    const auto& c = cs[k - 1];
    const auto& r = rs[k - 1];
    // Column normalisation P = A / c_j: G_A = (G_P - sum_i G_P P) / c_j.
    std::vector<double> sj(N, 0.0);
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) {
        const std::size_t ij = static_cast<std::size_t>(i) * N + j;
        sj[j] += G[ij] * u[i] * K[ij] * v[j];
      }
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < N; ++j) {
        const std::size_t ij = static_cast<std::size_t>(i) * N + j;
        G[ij] = (G[ij] - sj[j]) / c[j];
      }
    // Row normalisation A = X / r_i: G_X = (G_A - sum_j G_A A) / r_i.
    for (int i = 0; i < N; ++i) {
      double ti = 0;
      for (int j = 0; j < N; ++j) {
        const std::size_t ij = static_cast<std::size_t>(i) * N + j;
        ti += G[ij] * u[i] * K[ij] * vp[j];
      }
      for (int j = 0; j < N; ++j) {
        const std::size_t ij = static_cast<std::size_t>(i) * N + j;
        G[ij] = (G[ij] - ti) / r[i];
      }
    }
    (void)up;
  }
  // Through K = exp(-W/eps) (row shift treated as constant, see above).
  for (std::size_t ij = 0; ij < NN; ++ij) GW[ij] += G[ij] * K[ij] * (-1.0 / o.eps);
  // dL/ds_i = sum_j GW_ij sign(s_i - t_j).
  g_s->assign(static_cast<std::size_t>(N) * V, 0.0);
#pragma omp parallel for schedule(static) if (detail::worth_threads(static_cast<std::size_t>(N) * N * V))
  for (int i = 0; i < N; ++i) {
    double* gi = &(*g_s)[static_cast<std::size_t>(i) * V];
    const double* s = &S[static_cast<std::size_t>(i) * V];
    for (int j = 0; j < N; ++j) {
      const double gw = GW[static_cast<std::size_t>(i) * N + j];
      const double* t = &Tt[static_cast<std::size_t>(j) * V];
      for (int v = 0; v < V; ++v) {
        const double d = s[v] - t[v];
        gi[v] += d > 0 ? gw : (d < 0 ? -gw : 0.0);
      }
    }
  }
  return loss;
}

void probs_row(const float* z, int V, double tau, double* out) {
  detail::log_softmax_row(z, V, tau, out);
  for (int j = 0; j < V; ++j) out[j] = std::exp(out[j]);
}

}  // namespace

Result<SinkhornLoss> sinkhorn(const Logits& z, const float* teacher, std::span<const float> mask,
                              const SinkhornOptions& o, GradSink grad) {
  ASSAY_RETURN_IF_ERROR(check_shapes(z, {}, mask));
  if (teacher == nullptr) return Status::Invalid("sinkhorn: teacher logits are null");
  if (!(o.tau > 0)) return Status::Invalid("sinkhorn: tau must be > 0, got " + std::to_string(o.tau));
  if (!(o.eps > 0)) return Status::Invalid("sinkhorn: eps must be > 0, got " + std::to_string(o.eps));
  if (o.n_iters < 1)
    return Status::Invalid("sinkhorn: n_iters must be >= 1, got " + std::to_string(o.n_iters));
  const int V = z.V;
  std::vector<Group> groups;
  if (o.coupling == SinkhornCoupling::kBatch) groups.emplace_back();
  for (int b = 0; b < z.B; ++b) {
    if (o.coupling == SinkhornCoupling::kSequence) groups.emplace_back();
    for (int t = 0; t < z.T; ++t) {
      const std::size_t r = static_cast<std::size_t>(b) * z.T + t;
      if (mask.empty() || mask[r] > 0) groups.back().rows.push_back(r);
    }
  }
  std::erase_if(groups, [](const Group& g) { return g.rows.empty(); });
  if (grad.data && !grad.accumulate) std::fill(grad.data, grad.data + z.size(), 0.0f);

  SinkhornLoss out;
  out.n_groups = static_cast<int>(groups.size());
  if (groups.empty()) return out;
  double total = 0;
  const double k = o.weight / static_cast<double>(groups.size());
  std::vector<double> S, Tt, gs;
  for (const Group& g : groups) {
    const int N = static_cast<int>(g.rows.size());
    S.assign(static_cast<std::size_t>(N) * V, 0.0);
    Tt.assign(S.size(), 0.0);
    for (int i = 0; i < N; ++i) {
      probs_row(z.data + g.rows[i] * V, V, o.tau, &S[static_cast<std::size_t>(i) * V]);
      probs_row(teacher + g.rows[i] * V, V, o.tau, &Tt[static_cast<std::size_t>(i) * V]);
    }
    total += sinkhorn_group(S, Tt, N, V, o, grad.data ? &gs : nullptr);
    if (!grad.data) continue;
    for (int i = 0; i < N; ++i) {
      double* gi = &gs[static_cast<std::size_t>(i) * V];
      detail::softmax_chain(&S[static_cast<std::size_t>(i) * V], gi, V, o.tau);
      // Rows appear in exactly one group, so accumulate = true keeps the zeroing above.
      GradSink acc = grad;
      acc.accumulate = true;
      detail::write_grad_row(acc, g.rows[i], V, gi, k);
    }
  }
  out.loss = k * total;
  return out;
}

}  // namespace assay::obj
