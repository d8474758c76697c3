// CPU kernels (see assay/engine_ops.h for shapes and conventions).
//
// Reductions that cross rows (bias and LayerNorm parameter gradients, the
// embedding gradients) are parallelised over column blocks with the rows
// summed sequentially inside each block, so their order does not depend on
// the number of threads.
// FP comparisons may not trap: lets GCC if-convert the clamps in exp_ and so
// vectorise the GELU and softmax loops. Results are unchanged (no exceptions
// are ever enabled); only the vectoriser's assumptions differ.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "assay/engine_ops.h"

namespace assay::engine::ops {
namespace {

constexpr int kColBlock = 64;  // columns per parallel task in column reductions
// Loops with less work than this (in multiply-adds) run on one thread: the
// fork/join costs more than it saves, and much more on a loaded machine.
constexpr size_t kParallelWork = 1 << 18;

inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                 const float* A, int lda, const float* B, int ldb, float beta, float* Cm, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cm, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                 const double* A, int lda, const double* B, int ldb, double beta, double* Cm,
                 int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cm, ldc);
}

// exp for the float kernels: branch-free, so loops over it vectorise (libm's
// expf/tanhf calls do not). exp(x) = 2^k·e^r with k = round(x·log2 e),
// r = x − k·ln 2 in two parts (Cody–Waite), e^r by the Cephes expf
// polynomial: about 2 ulp over the clamped range [-87, 88], where the
// result stays a normal float. The double instantiation (used by gradient
// checks) keeps std::exp.
inline float exp_(float x) {
  x = std::min(88.0f, std::max(-87.0f, x));
  // Round to nearest with the 1.5·2^23 trick (no SSE4.1 needed to vectorise).
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const float pow2k = std::bit_cast<float>((uint32_t)((int32_t)k + 127) << 23);
  return y * pow2k;
}
inline double exp_(double x) { return std::exp(x); }

// dst[c] += Σ_r src[r*C + c] for r in [0, N), rows in order.
template <class F>
void column_sum_add(F* dst, const F* src, int N, int C) {
  const int nblocks = (C + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kColBlock, c1 = std::min(C, c0 + kColBlock);
    for (int r = 0; r < N; r++) {
      const F* row = src + (size_t)r * C;
      for (int c = c0; c < c1; c++) dst[c] += row[c];
    }
  }
}

}  // namespace

template <class F>
void encoder_forward(F* out, const int32_t* inp, const F* wte, const F* wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * C >= kParallelWork)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      F* o = out + ((size_t)b * T + t) * C;
      const F* we = wte + (size_t)inp[b * T + t] * C;
      const F* pe = wpe + (size_t)t * C;
      for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
  }
}

template <class F>
void encoder_backward(F* dwte, F* dwpe, const F* dout, const int32_t* inp, int B, int T, int C) {
  // Token ids repeat, so rows of dwte are shared: split by columns instead.
  const int nblocks = (C + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= kParallelWork)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kColBlock, c1 = std::min(C, c0 + kColBlock);
    for (int b = 0; b < B; b++) {
      for (int t = 0; t < T; t++) {
        const F* d = dout + ((size_t)b * T + t) * C;
        F* we = dwte + (size_t)inp[b * T + t] * C;
        F* pe = dwpe + (size_t)t * C;
        for (int c = c0; c < c1; c++) {
          we[c] += d[c];
          pe[c] += d[c];
        }
      }
    }
  }
}

template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias,
                       int N, int C) {
  const F eps = F(1e-5);
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork)
  for (int r = 0; r < N; r++) {
    const F* x = inp + (size_t)r * C;
    F m = 0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    F v = 0;
    for (int c = 0; c < C; c++) {
      const F d = x[c] - m;
      v += d * d;
    }
    v /= C;  // biased variance, as torch.nn.LayerNorm
    const F s = F(1) / std::sqrt(v + eps);
    F* o = out + (size_t)r * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

template <class F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                        const F* mean, const F* rstd, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork)
  for (int r = 0; r < N; r++) {
    const F* x = inp + (size_t)r * C;
    const F* d = dout + (size_t)r * C;
    const F m = mean[r], s = rstd[r];
    F dnorm_mean = 0, dnorm_norm_mean = 0;
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      const F dnorm = weight[c] * d[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    F* di = dinp + (size_t)r * C;
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      const F dnorm = weight[c] * d[c];
      di[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }
  const int nblocks = (C + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kColBlock, c1 = std::min(C, c0 + kColBlock);
    for (int r = 0; r < N; r++) {
      const F* x = inp + (size_t)r * C;
      const F* d = dout + (size_t)r * C;
      const F m = mean[r], s = rstd[r];
      for (int c = c0; c < c1; c++) {
        dweight[c] += (x[c] - m) * s * d[c];
        dbias[c] += d[c];
      }
    }
  }
}

template <class F>
void matmul_forward(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC) {
  if (bias != nullptr) {
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= kParallelWork)
    for (int r = 0; r < N; r++) std::memcpy(out + (size_t)r * OC, bias, sizeof(F) * OC);
  }
  gemm(CblasNoTrans, CblasNoTrans, N, OC, C, F(1), inp, C, weight, OC, bias ? F(1) : F(0), out, OC);
}

template <class F>
void matmul_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                     int N, int C, int OC) {
  // dinp [N,C] += dout [N,OC] · weightᵀ
  gemm(CblasNoTrans, CblasTrans, N, C, OC, F(1), dout, OC, weight, OC, F(1), dinp, C);
  // dweight [C,OC] += inpᵀ · dout
  gemm(CblasTrans, CblasNoTrans, C, OC, N, F(1), inp, C, dout, OC, F(1), dweight, OC);
  if (dbias != nullptr) column_sum_add(dbias, dout, N, OC);
}

template <class F>
void head_forward(F* logits, const F* inp, const F* wte, int N, int C, int V) {
  gemm(CblasNoTrans, CblasTrans, N, V, C, F(1), inp, C, wte, C, F(0), logits, V);
}

template <class F>
void head_backward(F* dinp, F* dwte, const F* dlogits, const F* inp, const F* wte, int N, int C,
                   int V) {
  // dinp [N,C] += dlogits [N,V] · wte [V,C]
  gemm(CblasNoTrans, CblasNoTrans, N, C, V, F(1), dlogits, V, wte, C, F(1), dinp, C);
  // dwte [V,C] += dlogitsᵀ · inp
  gemm(CblasTrans, CblasNoTrans, V, C, N, F(1), dlogits, V, inp, C, F(1), dwte, C);
}

// Per (b, h) the attention is three small matrix products done by BLAS:
// pre = q·kᵀ·scale [T,T], att = causal_softmax(pre), out = att·v [T,hs].
// The products also cover the masked upper triangle, where att is 0; that
// wastes half the multiply-adds but BLAS is far faster than scalar loops.
// q, k, v of head h are strided views of qkv (leading dimension 3C).
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const F scale = F(1) / std::sqrt(F(hs));
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const F* q = qkv + (size_t)b * T * C3 + h * hs;
      F* a = att + ((size_t)b * NH + h) * T * T;
      gemm(CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, q + C, C3, F(0), a, T);
      for (int t = 0; t < T; t++) {
        F* row = a + (size_t)t * T;
        F maxv = row[0];
        for (int t2 = 1; t2 <= t; t2++) maxv = std::max(maxv, row[t2]);
        F sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          row[t2] = exp_(row[t2] - maxv);
          sum += row[t2];
        }
        const F inv = F(1) / sum;
        for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
        for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0;
      }
      gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), a, T, q + 2 * C, C3, F(0),
           out + (size_t)b * T * C + h * hs, C);
    }
  }
}

// Per (b, h), with d = dout of the head [T,hs]:
//   datt = d·vᵀ,  dv += attᵀ·d,
//   dpre = att ⊙ (datt − rowsum(att ⊙ datt)) · scale   (0 above the diagonal),
//   dq += dpre·k,  dk += dpreᵀ·q.
template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C,
                        int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const F scale = F(1) / std::sqrt(F(hs));
  std::vector<F> dpre((size_t)T * T);
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const F* q = qkv + (size_t)b * T * C3 + h * hs;
      F* dq = dqkv + (size_t)b * T * C3 + h * hs;
      const F* a = att + ((size_t)b * NH + h) * T * T;
      const F* d = dout + (size_t)b * T * C + h * hs;
      F* dp = dpre.data();
      gemm(CblasNoTrans, CblasTrans, T, T, hs, F(1), d, C, q + 2 * C, C3, F(0), dp, T);
      gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), a, T, d, C, F(1), dq + 2 * C, C3);
      for (int t = 0; t < T; t++) {
        const F* arow = a + (size_t)t * T;
        F* row = dp + (size_t)t * T;
        F s = 0;
        for (int t2 = 0; t2 <= t; t2++) s += arow[t2] * row[t2];
        for (int t2 = 0; t2 <= t; t2++) row[t2] = arow[t2] * (row[t2] - s) * scale;
        for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0;
      }
      gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), dp, T, q + C, C3, F(1), dq, C3);
      gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), dp, T, q, C3, F(1), dq + C, C3);
    }
  }
}

// tanh-GELU through the identity 0.5·x·(1 + tanh u) = x·σ(2u), which needs
// one exp and no tanh: s = 1/(1 + e^(−2u)), u = k·(x + 0.044715·x³).
// Derivative: s + 2·x·s·(1 − s)·k·(1 + 3·0.044715·x²).
template <class F>
void gelu_forward(F* out, const F* inp, size_t n) {
  const F k = std::sqrt(F(2) / F(M_PI));
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (size_t i = 0; i < n; i++) {
    const F x = inp[i];
    const F u = k * (x + F(0.044715) * x * x * x);
    out[i] = x / (F(1) + exp_(F(-2) * u));
  }
}

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, size_t n) {
  const F k = std::sqrt(F(2) / F(M_PI));
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (size_t i = 0; i < n; i++) {
    const F x = inp[i];
    const F u = k * (x + F(0.044715) * x * x * x);
    const F s = F(1) / (F(1) + exp_(F(-2) * u));
    const F du = k * (F(1) + F(3 * 0.044715) * x * x);
    dinp[i] += (s + F(2) * x * s * (F(1) - s) * du) * dout[i];
  }
}

template <class F>
void residual_forward(F* out, const F* a, const F* b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

template <class F>
double crossentropy_forward_backward(F* dlogits, const F* logits, const int32_t* targets, int N,
                                     int V, double scale, int* count) {
  std::vector<double> row_loss(N, 0.0);
#pragma omp parallel for schedule(static) if ((size_t)N * V >= kParallelWork)
  for (int r = 0; r < N; r++) {
    const F* z = logits + (size_t)r * V;
    F* dz = dlogits ? dlogits + (size_t)r * V : nullptr;
    const int y = targets[r];
    if (y < 0 || y >= V) {
      if (dz) std::fill(dz, dz + V, F(0));
      continue;
    }
    F maxv = z[0];
    for (int j = 1; j < V; j++) maxv = std::max(maxv, z[j]);
    double sum = 0;
    for (int j = 0; j < V; j++) sum += std::exp((double)(z[j] - maxv));
    const double lse = std::log(sum) + (double)maxv;
    row_loss[r] = lse - (double)z[y];
    if (dz) {
      for (int j = 0; j < V; j++) dz[j] = (F)(std::exp((double)z[j] - lse) * scale);
      dz[y] -= (F)scale;
    }
  }
  double total = 0;
  int n = 0;
  for (int r = 0; r < N; r++) {
    if (targets[r] >= 0 && targets[r] < V) {
      total += row_loss[r];
      n++;
    }
  }
  if (count) *count = n;
  return total;
}

#define ASSAY_INSTANTIATE_OPS(F)                                                                   \
  template void encoder_forward<F>(F*, const int32_t*, const F*, const F*, int, int, int);         \
  template void encoder_backward<F>(F*, F*, const F*, const int32_t*, int, int, int);              \
  template void layernorm_forward<F>(F*, F*, F*, const F*, const F*, const F*, int, int);          \
  template void layernorm_backward<F>(F*, F*, F*, const F*, const F*, const F*, const F*,          \
                                      const F*, int, int);                                         \
  template void matmul_forward<F>(F*, const F*, const F*, const F*, int, int, int);                \
  template void matmul_backward<F>(F*, F*, F*, const F*, const F*, const F*, int, int, int);       \
  template void head_forward<F>(F*, const F*, const F*, int, int, int);                            \
  template void head_backward<F>(F*, F*, const F*, const F*, const F*, int, int, int);             \
  template void attention_forward<F>(F*, F*, const F*, int, int, int, int);                        \
  template void attention_backward<F>(F*, const F*, const F*, const F*, int, int, int, int);       \
  template void gelu_forward<F>(F*, const F*, size_t);                                             \
  template void gelu_backward<F>(F*, const F*, const F*, size_t);                                  \
  template void residual_forward<F>(F*, const F*, const F*, size_t);                               \
  template double crossentropy_forward_backward<F>(F*, const F*, const int32_t*, int, int, double, \
                                                   int*);

ASSAY_INSTANTIATE_OPS(float)
ASSAY_INSTANTIATE_OPS(double)

}  // namespace assay::engine::ops
