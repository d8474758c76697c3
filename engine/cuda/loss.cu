// Fused classifier kernels: softmax + cross-entropy and the distillation
// divergences, one block per row of V logits. Probabilities are recomputed
// from the logits on the fly and never stored; the row is overwritten in
// place with dlogits. All arithmetic is fp32 (block reductions).
#include "cuda_common.cuh"
#include "kernels.cuh"

namespace assay::engine::cuda {

namespace {

constexpr int kThreads = 512;

// Online (max, sum exp) over a row scaled by 1/tau, combined across the block.
struct MaxSum {
  float max, sum;
};

__device__ MaxSum row_max_sum(const float* x, int V, float inv_tau, float* sh) {
  float m = -INFINITY, s = 0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = x[j] * inv_tau;
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  const float M = dev::block_max(m, sh);
  s = m == -INFINITY ? 0.0f : s * __expf(m - M);
  return {M, dev::block_sum(s, sh)};
}

// logits [N,V] -> row_logp [N]; optional in-place dlogits (see kernels.cuh).
__global__ void crossentropy_kernel(float* logits, float* row_logp, const int32_t* targets,
                                    const float* row_scale, int V) {
  __shared__ float sh[32];
  const size_t r = blockIdx.x;
  float* x = logits + r * V;
  const int y = targets[r];
  const MaxSum ms = row_max_sum(x, V, 1.0f, sh);
  const float lse = ms.max + logf(ms.sum);
  if (threadIdx.x == 0) row_logp[r] = y >= 0 && y < V ? x[y] - lse : 0.0f;
  if (!row_scale) return;
  // Every thread read x[y] (thread 0) before any write: block_sum ends with
  // a __syncthreads-protected broadcast, and the read above precedes this
  // barrier.
  __syncthreads();
  const float sc = (y >= 0 && y < V) ? row_scale[r] : 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = __expf(x[j] - lse);
    x[j] = sc * (p - (j == y ? 1.0f : 0.0f));
  }
}

// Distillation per row (kind 0 forward KL, 1 reverse KL); see kernels.cuh.
__global__ void distill_kernel(float* z, const float* zt, float* row_div, float* row_kl,
                               float* row_logp, const int32_t* targets, const float* div_scale,
                               const float* ce_scale, int kind, float tau, int V) {
  __shared__ float sh[32];
  const size_t r = blockIdx.x;
  float* x = z + r * V;
  const float* xt = zt + r * V;
  const float it = 1.0f / tau;
  const MaxSum sq = row_max_sum(x, V, it, sh);     // student at tau
  const MaxSum sp = row_max_sum(xt, V, it, sh);    // teacher at tau
  const MaxSum sq1 = row_max_sum(x, V, 1.0f, sh);  // student at 1
  const MaxSum sp1 = row_max_sum(xt, V, 1.0f, sh); // teacher at 1
  const float lzq = sq.max + logf(sq.sum), lzp = sp.max + logf(sp.sum);
  const float lzq1 = sq1.max + logf(sq1.sum), lzp1 = sp1.max + logf(sp1.sum);
  // Divergence and KL at tau 1.
  float d = 0, kl = 0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float lq = x[j] * it - lzq, lp = xt[j] * it - lzp;
    d += kind == 0 ? __expf(lp) * (lp - lq) : __expf(lq) * (lq - lp);
    const float lq1 = x[j] - lzq1, lp1 = xt[j] - lzp1;
    kl += __expf(lp1) * (lp1 - lq1);
  }
  d = dev::block_sum(d, sh);
  kl = dev::block_sum(kl, sh);
  const int y = targets ? targets[r] : -1;
  const bool has_y = y >= 0 && y < V;
  if (threadIdx.x == 0) {
    row_div[r] = d;
    row_kl[r] = kl;
    row_logp[r] = has_y ? x[y] - lzq1 : 0.0f;
  }
  __syncthreads();  // x[y] is read above before any thread overwrites x
  const float ds = div_scale[r];
  const float cs = (ce_scale && has_y) ? ce_scale[r] : 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float lq = x[j] * it - lzq, lp = xt[j] * it - lzp;
    const float q = __expf(lq);
    const float g = kind == 0 ? (q - __expf(lp)) * it : q * (lq - lp - d) * it;
    const float q1 = __expf(x[j] - lzq1);
    x[j] = ds * g + cs * (q1 - (j == y ? 1.0f : 0.0f));
  }
}

}  // namespace

namespace k {

Status crossentropy_forward_backward(float* logits, float* row_logp, const int32_t* targets,
                                     const float* row_scale, int N, int V) {
  if (N <= 0) return Status::Ok();
  if (V <= 0) return Status::Invalid("crossentropy_forward_backward: V must be > 0, got " + std::to_string(V));
  crossentropy_kernel<<<N, kThreads>>>(logits, row_logp, targets, row_scale, V);
  ACU_LAUNCHED("crossentropy_kernel");
  return Status::Ok();
}

Status distill_forward_backward(float* z, const float* zt, float* row_div, float* row_kl,
                                float* row_logp, const int32_t* targets, const float* div_scale,
                                const float* ce_scale, int kind, float tau, int N, int V) {
  if (N <= 0) return Status::Ok();
  if (kind != 0 && kind != 1)
    return Status::Invalid("distill_forward_backward: kind must be 0 (forward KL) or 1 (reverse KL), got " +
                           std::to_string(kind));
  if (!(tau > 0)) return Status::Invalid("distill_forward_backward: tau must be > 0, got " + std::to_string(tau));
  if (V <= 0) return Status::Invalid("distill_forward_backward: V must be > 0, got " + std::to_string(V));
  distill_kernel<<<N, kThreads>>>(z, zt, row_div, row_kl, row_logp, targets, div_scale, ce_scale, kind,
                                  tau, V);
  ACU_LAUNCHED("distill_kernel");
  return Status::Ok();
}

}  // namespace k
}  // namespace assay::engine::cuda
