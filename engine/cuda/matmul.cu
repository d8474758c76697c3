// Matrix products via cuBLAS (TF32 tensor cores, fp32 in/out) and causal
// attention built on strided-batched GEMMs plus a causal softmax kernel.
#include <mutex>

#include "cuda_common.cuh"
#include "kernels.cuh"

namespace assay::engine::cuda {

namespace {

using dev::blocks_for;
using dev::kWarp;

constexpr int kThreads = 256;
constexpr int kMaxDevices = 64;

// One cuBLAS handle per device, created on first use and kept for the
// process lifetime (handles are expensive to create).
Result<cublasHandle_t> handle() {
  static std::mutex mu;
  static cublasHandle_t handles[kMaxDevices] = {};
  int d = 0;
  const cudaError_t e = cudaGetDevice(&d);
  if (e != cudaSuccess) return cuda_error("cudaGetDevice", e);
  if (d < 0 || d >= kMaxDevices)
    return Status::Internal("cuBLAS: device ordinal " + std::to_string(d) + " beyond the supported " +
                            std::to_string(kMaxDevices));
  std::lock_guard<std::mutex> lock(mu);
  if (!handles[d]) {
    cublasHandle_t h = nullptr;
    ACU_CUBLAS(cublasCreate(&h));
    ACU_CUBLAS(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    handles[d] = h;
  }
  return handles[d];
}

// Row-major C[M,N] = alpha·op(A)·op(B) + beta·C, batched with strides (in
// floats). A is stored [M,K], or [K,M] when ta; B is stored [K,N], or [N,K]
// when tb. cuBLAS is column-major, so this computes Cᵀ = op(B)ᵀ·op(A)ᵀ.
Status gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B,
            float beta, float* C, int batch = 1, long long sA = 0, long long sB = 0,
            long long sC = 0) {
  if (M <= 0 || N <= 0 || batch <= 0) return Status::Ok();
  ASSAY_ASSIGN_OR_RETURN(cublasHandle_t h, handle());
  const int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
  ACU_CUBLAS(cublasGemmStridedBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                        N, M, K, &alpha, B, CUDA_R_32F, ldb, sB, A, CUDA_R_32F, lda, sA,
                                        &beta, C, CUDA_R_32F, ldc, sC, batch,
                                        CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  return Status::Ok();
}

// qkv [B,T,3,NH,hs] -> q, k, v [B,NH,T,hs]
__global__ void permute_kernel(float* q, float* k, float* v, const float* qkv, int B, int T,
                               int NH, int hs) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t n = (size_t)B * NH * T * hs;
  if (i >= n) return;
  const int d = (int)(i % hs);
  const int t = (int)((i / hs) % T);
  const int h = (int)((i / ((size_t)hs * T)) % NH);
  const size_t b = i / ((size_t)hs * T * NH);
  const size_t C = (size_t)NH * hs;
  const size_t src = (b * T + t) * 3 * C + (size_t)h * hs + d;
  q[i] = qkv[src];
  k[i] = qkv[src + C];
  v[i] = qkv[src + 2 * C];
}

// dqkv [B,T,3,NH,hs] += dq, dk, dv [B,NH,T,hs]
__global__ void permute_backward_kernel(float* dqkv, const float* dq, const float* dk,
                                        const float* dv, int B, int T, int NH, int hs) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t n = (size_t)B * NH * T * hs;
  if (i >= n) return;
  const int d = (int)(i % hs);
  const int t = (int)((i / hs) % T);
  const int h = (int)((i / ((size_t)hs * T)) % NH);
  const size_t b = i / ((size_t)hs * T * NH);
  const size_t C = (size_t)NH * hs;
  const size_t dst = (b * T + t) * 3 * C + (size_t)h * hs + d;
  dqkv[dst] += dq[i];
  dqkv[dst + C] += dk[i];
  dqkv[dst + 2 * C] += dv[i];
}

// y [B,NH,T,hs] <-> out [B,T,NH,hs]; backward=false: out = y; true: y = out.
__global__ void unpermute_kernel(float* out, float* y, int B, int T, int NH, int hs, bool backward) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  const size_t n = (size_t)B * NH * T * hs;
  if (i >= n) return;
  const int d = (int)(i % hs);
  const int t = (int)((i / hs) % T);
  const int h = (int)((i / ((size_t)hs * T)) % NH);
  const size_t b = i / ((size_t)hs * T * NH);
  const size_t o = (b * T + t) * NH * hs + (size_t)h * hs + d;
  if (backward) {
    y[i] = out[o];
  } else {
    out[o] = y[i];
  }
}

// In place on att [rows, T] (rows = B·NH·T, row r is query t = r % T): the
// scaled scores become causal softmax rows, zero above the diagonal. One
// warp per row; every element is read and written by the same lane.
__global__ void softmax_causal_forward_kernel(float* att, size_t rows, int T) {
  const size_t row = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int t = (int)(row % T);
  float* x = att + row * T;
  float m = -INFINITY, s = 0;
  for (int j = lane; j <= t; j += kWarp) {
    const float v = x[j];
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  const float M = dev::warp_max(m);
  s = m == -INFINITY ? 0.0f : s * __expf(m - M);
  const float inv = 1.0f / dev::warp_sum(s);
  for (int j = lane; j < T; j += kWarp) x[j] = j <= t ? __expf(x[j] - M) * inv : 0.0f;
}

// In place on datt: dpre = att ⊙ (datt − Σ att·datt) on j <= t, 0 above.
__global__ void softmax_causal_backward_kernel(float* datt, const float* att, size_t rows, int T) {
  const size_t row = blockIdx.x * (size_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int t = (int)(row % T);
  float* d = datt + row * T;
  const float* a = att + row * T;
  float s = 0;
  for (int j = lane; j <= t; j += kWarp) s += a[j] * d[j];
  s = dev::warp_sum(s);
  for (int j = lane; j < T; j += kWarp) d[j] = j <= t ? a[j] * (d[j] - s) : 0.0f;
}

}  // namespace

namespace k {

Status matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC) {
  ASSAY_RETURN_IF_ERROR(gemm(false, false, N, OC, C, 1.0f, inp, weight, 0.0f, out));
  if (bias) ASSAY_RETURN_IF_ERROR(add_bias(out, bias, N, OC));
  return Status::Ok();
}

Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC) {
  // dinp [N,C] += dout [N,OC] · weightᵀ ; dweight [C,OC] += inpᵀ · dout
  ASSAY_RETURN_IF_ERROR(gemm(false, true, N, C, OC, 1.0f, dout, weight, 1.0f, dinp));
  ASSAY_RETURN_IF_ERROR(gemm(true, false, C, OC, N, 1.0f, inp, dout, 1.0f, dweight));
  if (dbias) ASSAY_RETURN_IF_ERROR(bias_backward(dbias, dout, N, OC));
  return Status::Ok();
}

Status head_forward(float* logits, const float* inp, const float* wte, int N, int C, int V) {
  return gemm(false, true, N, V, C, 1.0f, inp, wte, 0.0f, logits);
}

Status head_backward(float* dinp, float* dwte, const float* dlogits, const float* inp,
                     const float* wte, int N, int C, int V) {
  // dinp [N,C] += dlogits [N,V] · wte [V,C] ; dwte [V,C] += dlogitsᵀ · inp
  ASSAY_RETURN_IF_ERROR(gemm(false, false, N, C, V, 1.0f, dlogits, wte, 1.0f, dinp));
  ASSAY_RETURN_IF_ERROR(gemm(true, false, V, C, N, 1.0f, dlogits, inp, 1.0f, dwte));
  return Status::Ok();
}

Status attention_forward(float* out, float* att, const float* qkv, float* scratch, int B, int T,
                         int C, int NH) {
  const int hs = C / NH;
  const size_t n = (size_t)B * T * C;
  if (n == 0) return Status::Ok();
  float *q = scratch, *kk = scratch + n, *v = scratch + 2 * n, *y = scratch + 3 * n;
  permute_kernel<<<blocks_for(n, kThreads), kThreads>>>(q, kk, v, qkv, B, T, NH, hs);
  ACU_LAUNCHED("permute_kernel");
  const int BH = B * NH;
  const long long sqk = (long long)T * hs, satt = (long long)T * T;
  // att [T,T] = q · kᵀ / sqrt(hs) per (b, h)
  ASSAY_RETURN_IF_ERROR(
      gemm(false, true, T, T, hs, 1.0f / sqrtf((float)hs), q, kk, 0.0f, att, BH, sqk, sqk, satt));
  const size_t rows = (size_t)BH * T;
  const int rows_per_block = kThreads / kWarp;
  softmax_causal_forward_kernel<<<blocks_for(rows, rows_per_block), kThreads>>>(att, rows, T);
  ACU_LAUNCHED("softmax_causal_forward_kernel");
  // y [T,hs] = att · v
  ASSAY_RETURN_IF_ERROR(gemm(false, false, T, hs, T, 1.0f, att, v, 0.0f, y, BH, satt, sqk, sqk));
  unpermute_kernel<<<blocks_for(n, kThreads), kThreads>>>(out, y, B, T, NH, hs, false);
  ACU_LAUNCHED("unpermute_kernel");
  return Status::Ok();
}

Status attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                          float* datt, float* scratch, float* fwd_scratch, int B, int T, int C,
                          int NH) {
  const int hs = C / NH;
  const size_t n = (size_t)B * T * C;
  if (n == 0) return Status::Ok();
  float *q = fwd_scratch, *kk = fwd_scratch + n, *v = fwd_scratch + 2 * n;
  float *dq = scratch, *dk = scratch + n, *dv = scratch + 2 * n, *dy = scratch + 3 * n;
  permute_kernel<<<blocks_for(n, kThreads), kThreads>>>(q, kk, v, qkv, B, T, NH, hs);
  ACU_LAUNCHED("permute_kernel");
  unpermute_kernel<<<blocks_for(n, kThreads), kThreads>>>(const_cast<float*>(dout), dy, B, T, NH, hs,
                                                          true);
  ACU_LAUNCHED("unpermute_kernel (backward)");
  const int BH = B * NH;
  const long long sqk = (long long)T * hs, satt = (long long)T * T;
  // datt = dy · vᵀ ; dv = attᵀ · dy
  ASSAY_RETURN_IF_ERROR(gemm(false, true, T, T, hs, 1.0f, dy, v, 0.0f, datt, BH, sqk, sqk, satt));
  ASSAY_RETURN_IF_ERROR(gemm(true, false, T, hs, T, 1.0f, att, dy, 0.0f, dv, BH, satt, sqk, sqk));
  const size_t rows = (size_t)BH * T;
  const int rows_per_block = kThreads / kWarp;
  softmax_causal_backward_kernel<<<blocks_for(rows, rows_per_block), kThreads>>>(datt, att, rows, T);
  ACU_LAUNCHED("softmax_causal_backward_kernel");
  // dq = dpre · k / sqrt(hs) ; dk = dpreᵀ · q / sqrt(hs)
  const float sc = 1.0f / sqrtf((float)hs);
  ASSAY_RETURN_IF_ERROR(gemm(false, false, T, hs, T, sc, datt, kk, 0.0f, dq, BH, satt, sqk, sqk));
  ASSAY_RETURN_IF_ERROR(gemm(true, false, T, hs, T, sc, datt, q, 0.0f, dk, BH, satt, sqk, sqk));
  permute_backward_kernel<<<blocks_for(n, kThreads), kThreads>>>(dqkv, dq, dk, dv, B, T, NH, hs);
  ACU_LAUNCHED("permute_backward_kernel");
  return Status::Ok();
}

}  // namespace k
}  // namespace assay::engine::cuda
