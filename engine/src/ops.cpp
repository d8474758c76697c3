// CPU kernels (see assay/engine_ops.h for shapes and conventions).
//
// Reductions that cross rows (bias and LayerNorm parameter gradients, the
// embedding gradients) are parallelised over columns with the rows summed
// sequentially for each column, so their order does not depend on the number
// of threads.
// Row sums (LayerNorm statistics, softmax denominators) use kLanes partial
// sums combined in a fixed order, so the compiler can vectorise them and the
// order still does not depend on the thread count.
//
// The float elementwise and row kernels are compiled for three x86-64 levels
// (GCC function multi-versioning; the loader picks one per process): the
// baseline SSE2 build leaves most of the vector width unused. One process
// always runs the same version, so results stay deterministic; machines of
// different levels may differ in the last bits (FMA contraction).
//
// FP comparisons may not trap: lets GCC if-convert the clamps in exp_ and so
// vectorise the GELU and softmax loops. Results are unchanged (no exceptions
// are ever enabled); only the vectoriser's assumptions differ.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "assay/engine_ops.h"
#include "ops_internal.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ASSAY_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ASSAY_MULTIVERSION
#endif
#define ASSAY_INLINE inline __attribute__((always_inline))

namespace assay::engine::ops {
namespace {

constexpr int kColBlock = 64;  // columns per task (at least) in column reductions
constexpr int kLanes = 16;     // partial sums per row reduction (one AVX-512 register of floats)
// Query/key block of the causal attention products. 32 rather than 64:
// 10% fewer multiply-adds at T = 256 (the diagonal blocks waste less); with
// OpenBLAS the attention kernels ran ~5% faster at hs = 64 (16 and 128 were
// slower, 24-48 about the same).
constexpr int kAttnBlock = 32;
constexpr size_t kChunk = 1 << 14;  // elements per parallel task in elementwise loops
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
ASSAY_INLINE float exp_(float x) {
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
ASSAY_INLINE double exp_(double x) { return std::exp(x); }

// Σ_i term(i) for i in [0, n): kLanes partial sums, then a fixed pairwise
// combine. The order depends only on n, and the lane loop vectorises.
template <class F, class Term>
ASSAY_INLINE F lane_sum(int n, Term term) {
  F acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; j++) acc[j] += term(i + j);
  }
  F tail = 0;
  for (; i < n; i++) tail += term(i);
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; j++) acc[j] += acc[j + w];
  }
  return acc[0] + tail;
}

// max_i x[i] for i in [0, n), n >= 1 (max is exact, so any order gives the same).
template <class F>
ASSAY_INLINE F lane_max(const F* x, int n) {
  F acc[kLanes];
  for (int j = 0; j < kLanes; j++) acc[j] = x[0];
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; j++) acc[j] = std::max(acc[j], x[i + j]);
  }
  F m = x[0];
  for (int j = 0; j < kLanes; j++) m = std::max(m, acc[j]);
  for (; i < n; i++) m = std::max(m, x[i]);
  return m;
}

// Runs fn(begin, end) over [0, n) in kChunk pieces, in parallel when `work`
// (multiply-adds or elements) is large enough. For elementwise loops only:
// the result does not depend on the split.
template <class Fn>
void parallel_chunks(size_t n, size_t work, Fn fn) {
  const size_t nchunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (work >= kParallelWork && nchunks > 1)
  for (size_t c = 0; c < nchunks; c++) fn(c * kChunk, std::min(n, (c + 1) * kChunk));
}

// ------------------------------------------------------------ row kernels
// Each *_body is the loop for one type; the float overloads below it are the
// multi-versioned entry points, the double overloads plain calls.

// dst[c] += Σ_r src[r*C + c] for r in [0, N), c in [c0, c1), rows in order.
template <class F>
ASSAY_INLINE void colsum_body(F* dst, const F* src, int N, int C, int c0, int c1) {
  for (int r = 0; r < N; r++) {
    const F* row = src + (size_t)r * C;
    for (int c = c0; c < c1; c++) dst[c] += row[c];
  }
}
ASSAY_MULTIVERSION void colsum_cols(float* dst, const float* src, int N, int C, int c0, int c1) {
  colsum_body(dst, src, N, C, c0, c1);
}
void colsum_cols(double* dst, const double* src, int N, int C, int c0, int c1) {
  colsum_body(dst, src, N, C, c0, c1);
}

// Column ranges for reductions over rows: one contiguous range per thread
// (whole rows stream through the cache on one thread). Each column is still
// summed over rows in order, so the split does not change any result.
int column_parts(size_t work, int C) {
  if (work < kParallelWork) return 1;
  return std::max(1, std::min(omp_get_max_threads(), C / kColBlock));
}
int part_begin(int p, int parts, int C) {
  // Boundaries on multiples of 16 columns (one cache line of floats).
  return p == parts ? C : (int)((int64_t)C * p / parts) / 16 * 16;
}

// dst[c] += Σ_r src[r*C + c] for r in [0, N), rows in order.
template <class F>
void column_sum_add(F* dst, const F* src, int N, int C) {
  const int parts = column_parts((size_t)N * C, C);
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int p = 0; p < parts; p++) {
    colsum_cols(dst, src, N, C, part_begin(p, parts, C), part_begin(p + 1, parts, C));
  }
}

template <class F>
ASSAY_INLINE void ln_fwd_body(F* out, F* mean, F* rstd, const F* inp, const F* weight,
                              const F* bias, int C, int r0, int r1) {
  const F eps = F(1e-5);
  for (int r = r0; r < r1; r++) {
    const F* x = inp + (size_t)r * C;
    const F m = lane_sum<F>(C, [&](int c) { return x[c]; }) / F(C);
    // Biased variance, as torch.nn.LayerNorm.
    const F v = lane_sum<F>(C, [&](int c) { return (x[c] - m) * (x[c] - m); }) / F(C);
    const F s = F(1) / std::sqrt(v + eps);
    F* o = out + (size_t)r * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[r] = m;
    rstd[r] = s;
  }
}
ASSAY_MULTIVERSION void ln_fwd_rows(float* out, float* mean, float* rstd, const float* inp,
                                    const float* w, const float* b, int C, int r0, int r1) {
  ln_fwd_body(out, mean, rstd, inp, w, b, C, r0, r1);
}
void ln_fwd_rows(double* out, double* mean, double* rstd, const double* inp, const double* w,
                 const double* b, int C, int r0, int r1) {
  ln_fwd_body(out, mean, rstd, inp, w, b, C, r0, r1);
}

// dinp rows [r0, r1) of the LayerNorm backward.
template <class F>
ASSAY_INLINE void ln_bwd_body(F* dinp, const F* dout, const F* inp, const F* weight, const F* mean,
                              const F* rstd, int C, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    const F* x = inp + (size_t)r * C;
    const F* d = dout + (size_t)r * C;
    const F m = mean[r], s = rstd[r];
    const F dnorm_mean = lane_sum<F>(C, [&](int c) { return weight[c] * d[c]; }) / F(C);
    const F dnorm_norm_mean =
        lane_sum<F>(C, [&](int c) { return weight[c] * d[c] * ((x[c] - m) * s); }) / F(C);
    F* di = dinp + (size_t)r * C;
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      di[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }
}
ASSAY_MULTIVERSION void ln_bwd_rows(float* dinp, const float* dout, const float* inp,
                                    const float* w, const float* mean, const float* rstd, int C,
                                    int r0, int r1) {
  ln_bwd_body(dinp, dout, inp, w, mean, rstd, C, r0, r1);
}
void ln_bwd_rows(double* dinp, const double* dout, const double* inp, const double* w,
                 const double* mean, const double* rstd, int C, int r0, int r1) {
  ln_bwd_body(dinp, dout, inp, w, mean, rstd, C, r0, r1);
}

// dweight, dbias columns [c0, c1) of the LayerNorm backward, rows in order.
template <class F>
ASSAY_INLINE void ln_dparam_body(F* dweight, F* dbias, const F* dout, const F* inp, const F* mean,
                                 const F* rstd, int N, int C, int c0, int c1) {
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
ASSAY_MULTIVERSION void ln_dparam_cols(float* dw, float* db, const float* dout, const float* inp,
                                       const float* mean, const float* rstd, int N, int C, int c0,
                                       int c1) {
  ln_dparam_body(dw, db, dout, inp, mean, rstd, N, C, c0, c1);
}
void ln_dparam_cols(double* dw, double* db, const double* dout, const double* inp,
                    const double* mean, const double* rstd, int N, int C, int c0, int c1) {
  ln_dparam_body(dw, db, dout, inp, mean, rstd, N, C, c0, c1);
}

// Causal softmax of rows t in [t0, t1) of a [T, ld] score block whose row t
// covers keys [0, n): softmax over [0, t], zero on (t, n).
template <class F>
ASSAY_INLINE void softmax_body(F* a, int ld, int n, int t0, int t1) {
  for (int t = t0; t < t1; t++) {
    F* row = a + (size_t)t * ld;
    const int len = t + 1;
    const F maxv = lane_max(row, len);
    for (int j = 0; j < len; j++) row[j] = exp_(row[j] - maxv);
    const F inv = F(1) / lane_sum<F>(len, [&](int j) { return row[j]; });
    for (int j = 0; j < len; j++) row[j] *= inv;
    for (int j = len; j < n; j++) row[j] = 0;
  }
}
ASSAY_MULTIVERSION void softmax_rows(float* a, int ld, int n, int t0, int t1) {
  softmax_body(a, ld, n, t0, t1);
}
void softmax_rows(double* a, int ld, int n, int t0, int t1) { softmax_body(a, ld, n, t0, t1); }

// Softmax backward of the same rows: dp ← att ⊙ (dp − rowsum(att ⊙ dp))·scale
// on [0, t], zero on (t, n).
template <class F>
ASSAY_INLINE void softmax_bwd_body(F* dp, const F* att, int ld, int n, int t0, int t1, F scale) {
  for (int t = t0; t < t1; t++) {
    const F* arow = att + (size_t)t * ld;
    F* row = dp + (size_t)t * ld;
    const int len = t + 1;
    const F s = lane_sum<F>(len, [&](int j) { return arow[j] * row[j]; });
    for (int j = 0; j < len; j++) row[j] = arow[j] * (row[j] - s) * scale;
    for (int j = len; j < n; j++) row[j] = 0;
  }
}
ASSAY_MULTIVERSION void softmax_bwd_rows(float* dp, const float* att, int ld, int n, int t0,
                                         int t1, float scale) {
  softmax_bwd_body(dp, att, ld, n, t0, t1, scale);
}
void softmax_bwd_rows(double* dp, const double* att, int ld, int n, int t0, int t1,
                      double scale) {
  softmax_bwd_body(dp, att, ld, n, t0, t1, scale);
}

// tanh-GELU through the identity 0.5·x·(1 + tanh u) = x·σ(2u), which needs
// one exp and no tanh: s = 1/(1 + e^(−2u)), u = k·(x + 0.044715·x³).
// Derivative: s + 2·x·s·(1 − s)·k·(1 + 3·0.044715·x²).
template <class F>
ASSAY_INLINE void gelu_fwd_body(F* out, const F* inp, size_t i0, size_t i1) {
  const F k = F(0.7978845608028654);  // sqrt(2/π)
  for (size_t i = i0; i < i1; i++) {
    const F x = inp[i];
    const F u = k * (x + F(0.044715) * x * x * x);
    out[i] = x / (F(1) + exp_(F(-2) * u));
  }
}
ASSAY_MULTIVERSION void gelu_fwd_range(float* out, const float* inp, size_t i0, size_t i1) {
  gelu_fwd_body(out, inp, i0, i1);
}
void gelu_fwd_range(double* out, const double* inp, size_t i0, size_t i1) {
  gelu_fwd_body(out, inp, i0, i1);
}

template <class F>
ASSAY_INLINE void gelu_bwd_body(F* dinp, const F* inp, const F* dout, size_t i0, size_t i1) {
  const F k = F(0.7978845608028654);
  for (size_t i = i0; i < i1; i++) {
    const F x = inp[i];
    const F u = k * (x + F(0.044715) * x * x * x);
    const F s = F(1) / (F(1) + exp_(F(-2) * u));
    const F du = k * (F(1) + F(3 * 0.044715) * x * x);
    dinp[i] += (s + F(2) * x * s * (F(1) - s) * du) * dout[i];
  }
}
ASSAY_MULTIVERSION void gelu_bwd_range(float* dinp, const float* inp, const float* dout, size_t i0,
                                       size_t i1) {
  gelu_bwd_body(dinp, inp, dout, i0, i1);
}
void gelu_bwd_range(double* dinp, const double* inp, const double* dout, size_t i0, size_t i1) {
  gelu_bwd_body(dinp, inp, dout, i0, i1);
}

// In-place variant: d[i] ← gelu'(inp[i])·d[i] (the gradient buffer is
// overwritten, so no zeroed destination is needed).
template <class F>
ASSAY_INLINE void gelu_bwd_inplace_body(F* d, const F* inp, size_t i0, size_t i1) {
  const F k = F(0.7978845608028654);
  for (size_t i = i0; i < i1; i++) {
    const F x = inp[i];
    const F u = k * (x + F(0.044715) * x * x * x);
    const F s = F(1) / (F(1) + exp_(F(-2) * u));
    const F du = k * (F(1) + F(3 * 0.044715) * x * x);
    d[i] = (s + F(2) * x * s * (F(1) - s) * du) * d[i];
  }
}
ASSAY_MULTIVERSION void gelu_bwd_inplace_range(float* d, const float* inp, size_t i0, size_t i1) {
  gelu_bwd_inplace_body(d, inp, i0, i1);
}
void gelu_bwd_inplace_range(double* d, const double* inp, size_t i0, size_t i1) {
  gelu_bwd_inplace_body(d, inp, i0, i1);
}

template <class F>
ASSAY_INLINE void add_body(F* out, const F* a, const F* b, size_t i0, size_t i1) {
  for (size_t i = i0; i < i1; i++) out[i] = a[i] + b[i];
}
ASSAY_MULTIVERSION void add_range(float* out, const float* a, const float* b, size_t i0,
                                  size_t i1) {
  add_body(out, a, b, i0, i1);
}
void add_range(double* out, const double* a, const double* b, size_t i0, size_t i1) {
  add_body(out, a, b, i0, i1);
}

// out[r, :] = a[r, :] + bias (bias may be null) for rows [r0, r1) of width C.
template <class F>
ASSAY_INLINE void add_bias_body(F* out, const F* a, const F* bias, int C, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    F* o = out + (size_t)r * C;
    const F* x = a + (size_t)r * C;
    if (bias) {
      for (int c = 0; c < C; c++) o[c] = x[c] + bias[c];
    } else {
      for (int c = 0; c < C; c++) o[c] = x[c];
    }
  }
}
ASSAY_MULTIVERSION void add_bias_rows(float* out, const float* a, const float* bias, int C, int r0,
                                      int r1) {
  add_bias_body(out, a, bias, C, r0, r1);
}
void add_bias_rows(double* out, const double* a, const double* bias, int C, int r0, int r1) {
  add_bias_body(out, a, bias, C, r0, r1);
}

// Cross-entropy of one row z [V] with target y: returns logsumexp(z) − z[y]
// and, when dz is non-null, sets dz = scale·(softmax(z) − onehot(y)). One
// exp per element, stored in dz and rescaled; the denominator is summed in
// double (kLanes partial sums, fixed order).
template <class F>
ASSAY_INLINE double ce_row_body(F* dz, const F* z, int V, int y, double scale) {
  const F maxv = lane_max(z, V);
  double sum;
  if (dz) {
    for (int j = 0; j < V; j++) dz[j] = exp_(z[j] - maxv);
    sum = lane_sum<double>(V, [&](int j) { return (double)dz[j]; });
    const F mul = (F)(scale / sum);
    for (int j = 0; j < V; j++) dz[j] *= mul;
    dz[y] -= (F)scale;
  } else {
    sum = lane_sum<double>(V, [&](int j) { return (double)exp_(z[j] - maxv); });
  }
  return std::log(sum) + (double)maxv - (double)z[y];
}
ASSAY_MULTIVERSION double ce_row(float* dz, const float* z, int V, int y, double scale) {
  return ce_row_body(dz, z, V, y, scale);
}
double ce_row(double* dz, const double* z, int V, int y, double scale) {
  return ce_row_body(dz, z, V, y, scale);
}

// Rows per parallel task of the row kernels.
int row_block(int C) { return std::max(1, (int)(kChunk / (size_t)std::max(1, C))); }

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
  const int rb = row_block(C), nblocks = (N + rb - 1) / rb;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork && nblocks > 1)
  for (int blk = 0; blk < nblocks; blk++) {
    ln_fwd_rows(out, mean, rstd, inp, weight, bias, C, blk * rb, std::min(N, (blk + 1) * rb));
  }
}

template <class F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                        const F* mean, const F* rstd, int N, int C) {
  const int rb = row_block(C), nrb = (N + rb - 1) / rb;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= kParallelWork && nrb > 1)
  for (int blk = 0; blk < nrb; blk++) {
    ln_bwd_rows(dinp, dout, inp, weight, mean, rstd, C, blk * rb, std::min(N, (blk + 1) * rb));
  }
  const int parts = column_parts((size_t)N * C, C);
#pragma omp parallel for schedule(static) if (parts > 1)
  for (int p = 0; p < parts; p++) {
    ln_dparam_cols(dweight, dbias, dout, inp, mean, rstd, N, C, part_begin(p, parts, C),
                   part_begin(p + 1, parts, C));
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
void matmul_residual_forward(F* out, const F* inp, const F* weight, const F* bias,
                             const F* residual, int N, int C, int OC) {
  const int rb = row_block(OC), nblocks = (N + rb - 1) / rb;
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= kParallelWork && nblocks > 1)
  for (int blk = 0; blk < nblocks; blk++) {
    add_bias_rows(out, residual, bias, OC, blk * rb, std::min(N, (blk + 1) * rb));
  }
  gemm(CblasNoTrans, CblasNoTrans, N, OC, C, F(1), inp, C, weight, OC, F(1), out, OC);
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

// Per (b, h) the attention is small matrix products done by BLAS:
// pre = q·kᵀ·scale [T,T], att = causal_softmax(pre), out = att·v [T,hs].
// Causality is used by blocks of kAttnBlock queries: block [r0, r1) needs
// keys [0, r1) only, which skips most of the upper triangle (7/16 of the
// multiply-adds at T = 256). q, k, v of head h are strided views of qkv
// (leading dimension 3C).
// Head (b, h) uses the [T,T] block att + (b·NH + h)·att_stride: a stride of
// T·T keeps every head's probabilities (for the backward), a stride of 0
// reuses one block that stays in cache (forward only). With full_rows each
// row is zeroed up to T (the public contract); otherwise only up to the end
// of its query block, which is all the A·V product reads.
template <class F>
void attention_forward_impl(F* out, F* att, size_t att_stride, bool full_rows, const F* qkv, int B,
                            int T, int C, int NH) {
  const int hs = C / NH, C3 = 3 * C;
  const F scale = F(1) / std::sqrt(F(hs));
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const F* q = qkv + (size_t)b * T * C3 + h * hs;
      const F* k = q + C;
      const F* v = q + 2 * C;
      F* a = att + ((size_t)b * NH + h) * att_stride;
      F* o = out + (size_t)b * T * C + h * hs;
      for (int r0 = 0; r0 < T; r0 += kAttnBlock) {
        const int r1 = std::min(T, r0 + kAttnBlock), m = r1 - r0;
        F* ar = a + (size_t)r0 * T;
        gemm(CblasNoTrans, CblasTrans, m, r1, hs, scale, q + (size_t)r0 * C3, C3, k, C3, F(0), ar,
             T);
        softmax_rows(a, T, full_rows ? T : r1, r0, r1);  // also zeroes (t, n) of each row
        gemm(CblasNoTrans, CblasNoTrans, m, hs, r1, F(1), ar, T, v, C3, F(0), o + (size_t)r0 * C,
             C);
      }
    }
  }
}

template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  attention_forward_impl(out, att, (size_t)T * T, true, qkv, B, T, C, NH);
}

template <class F>
void attention_forward_scratch(F* out, F* scratch, const F* qkv, int B, int T, int C, int NH) {
  attention_forward_impl(out, scratch, 0, false, qkv, B, T, C, NH);
}

// Per (b, h), with d = dout of the head [T,hs]:
//   datt = d·vᵀ,  dv += attᵀ·d,
//   dpre = att ⊙ (datt − rowsum(att ⊙ datt)) · scale   (0 above the diagonal),
//   dq += dpre·k,  dk += dpreᵀ·q.
// Products with queries on the left run per query block [r0, r1) over keys
// [0, r1); products with keys on the left (dv, dk) per key block [c0, c1)
// over queries [c0, T): the skipped parts are zero.
// beta = 1 accumulates into dqkv, beta = 0 overwrites it: every element of
// dqkv is the output of exactly one product below.
template <class F>
void attention_backward_beta(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T,
                             int C, int NH, F beta) {
  const int hs = C / NH, C3 = 3 * C;
  const F scale = F(1) / std::sqrt(F(hs));
  // dpre [T,T] scratch, kept between calls; in each row t only the columns
  // below max(t+1, end of t's query block) are written and read.
  static thread_local std::vector<F> dpre;
  if (dpre.size() < (size_t)T * T) dpre.resize((size_t)T * T);
  F* dp = dpre.data();
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      const F* q = qkv + (size_t)b * T * C3 + h * hs;
      const F* k = q + C;
      const F* v = q + 2 * C;
      F* dq = dqkv + (size_t)b * T * C3 + h * hs;
      F* dk = dq + C;
      F* dv = dq + 2 * C;
      const F* a = att + ((size_t)b * NH + h) * T * T;
      const F* d = dout + (size_t)b * T * C + h * hs;
      for (int r0 = 0; r0 < T; r0 += kAttnBlock) {
        const int r1 = std::min(T, r0 + kAttnBlock), m = r1 - r0;
        gemm(CblasNoTrans, CblasTrans, m, r1, hs, F(1), d + (size_t)r0 * C, C, v, C3, F(0),
             dp + (size_t)r0 * T, T);
        softmax_bwd_rows(dp, a, T, r1, r0, r1, scale);
        gemm(CblasNoTrans, CblasNoTrans, m, hs, r1, F(1), dp + (size_t)r0 * T, T, k, C3, beta,
             dq + (size_t)r0 * C3, C3);
      }
      for (int c0 = 0; c0 < T; c0 += kAttnBlock) {
        const int c1 = std::min(T, c0 + kAttnBlock), n = c1 - c0, rows = T - c0;
        const size_t off = (size_t)c0 * T + c0;
        gemm(CblasTrans, CblasNoTrans, n, hs, rows, F(1), a + off, T, d + (size_t)c0 * C, C, beta,
             dv + (size_t)c0 * C3, C3);
        gemm(CblasTrans, CblasNoTrans, n, hs, rows, F(1), dp + off, T, q + (size_t)c0 * C3, C3,
             beta, dk + (size_t)c0 * C3, C3);
      }
    }
  }
}

template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C,
                        int NH) {
  attention_backward_beta(dqkv, dout, qkv, att, B, T, C, NH, F(1));
}

template <class F>
void attention_backward_set(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T,
                            int C, int NH) {
  attention_backward_beta(dqkv, dout, qkv, att, B, T, C, NH, F(0));
}

template <class F>
void gelu_forward(F* out, const F* inp, size_t n) {
  parallel_chunks(n, n, [&](size_t i0, size_t i1) { gelu_fwd_range(out, inp, i0, i1); });
}

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, size_t n) {
  parallel_chunks(n, n, [&](size_t i0, size_t i1) { gelu_bwd_range(dinp, inp, dout, i0, i1); });
}

template <class F>
void gelu_backward_inplace(F* d, const F* inp, size_t n) {
  parallel_chunks(n, n, [&](size_t i0, size_t i1) { gelu_bwd_inplace_range(d, inp, i0, i1); });
}

template <class F>
void residual_forward(F* out, const F* a, const F* b, size_t n) {
  parallel_chunks(n, n, [&](size_t i0, size_t i1) { add_range(out, a, b, i0, i1); });
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
    row_loss[r] = ce_row(dz, z, V, y, scale);
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
  template void matmul_residual_forward<F>(F*, const F*, const F*, const F*, const F*, int, int,  \
                                           int);                                                   \
  template void matmul_backward<F>(F*, F*, F*, const F*, const F*, const F*, int, int, int);       \
  template void head_forward<F>(F*, const F*, const F*, int, int, int);                            \
  template void head_backward<F>(F*, F*, const F*, const F*, const F*, int, int, int);             \
  template void attention_forward<F>(F*, F*, const F*, int, int, int, int);                        \
  template void attention_backward<F>(F*, const F*, const F*, const F*, int, int, int, int);       \
  template void gelu_forward<F>(F*, const F*, size_t);                                             \
  template void gelu_backward<F>(F*, const F*, const F*, size_t);                                  \
  template void gelu_backward_inplace<F>(F*, const F*, size_t);                                    \
  template void attention_backward_set<F>(F*, const F*, const F*, const F*, int, int, int, int);   \
  template void attention_forward_scratch<F>(F*, F*, const F*, int, int, int, int);                \
  template void residual_forward<F>(F*, const F*, const F*, size_t);                               \
  template double crossentropy_forward_backward<F>(F*, const F*, const int32_t*, int, int, double, \
                                                   int*);

ASSAY_INSTANTIATE_OPS(float)
ASSAY_INSTANTIATE_OPS(double)

}  // namespace assay::engine::ops
