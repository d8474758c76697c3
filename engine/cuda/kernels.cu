// Elementwise, normalisation and optimizer kernels of the CUDA backend.
// Shapes follow kernels.cuh; each kernel is the plain llm.c-style
// counterpart of the CPU kernel of the same name in ops.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_common.cuh"
#include "kernels.cuh"

namespace assay::engine::cuda {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

namespace {

using dev::blocks_for;
using dev::kWarp;

constexpr int kThreads = 256;

// ------------------------------------------------------------- encoder

// out [B,T,C]: one thread per element.
__global__ void encoder_forward_kernel(float* out, const int32_t* inp, const float* wte,
                                       const float* wpe, int T, int C, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const size_t bt = i / C;
  const int c = (int)(i % C), t = (int)(bt % T);
  out[i] = wte[(size_t)inp[bt] * C + c] + wpe[(size_t)t * C + c];
}

// dwte rows by token: one block per distinct token id, summing that token's
// positions in increasing order (no atomics, so the result is reproducible).
// buckets = [tokens n_u | starts n_u+1 | positions B*T], built on the host.
__global__ void encoder_backward_wte_kernel(float* dwte, const float* dout, const int32_t* buckets,
                                            int n_u, int C) {
  const int u = blockIdx.x;
  const int32_t* tokens = buckets;
  const int32_t* starts = buckets + n_u;
  const int32_t* pos = buckets + 2 * n_u + 1;
  const size_t row = (size_t)tokens[u] * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float s = 0;
    for (int k = starts[u]; k < starts[u + 1]; k++) s += dout[(size_t)pos[k] * C + c];
    dwte[row + c] += s;
  }
}

// dwpe [T,C]: one thread per (t,c), summing over b in order.
__global__ void encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= (size_t)T * C) return;
  float s = 0;
  for (int b = 0; b < B; b++) s += dout[(size_t)b * T * C + i];
  dwpe[i] += s;
}

// ----------------------------------------------------------- layernorm

// One warp per row of C.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* w, const float* b, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const float* x = inp + (size_t)row * C;
  float s = 0;
  for (int c = lane; c < C; c += kWarp) s += x[c];
  const float m = dev::warp_sum(s) / C;
  float v = 0;
  for (int c = lane; c < C; c += kWarp) {
    const float d = x[c] - m;
    v += d * d;
  }
  const float r = rsqrtf(dev::warp_sum(v) / C + 1e-5f);
  float* o = out + (size_t)row * C;
  for (int c = lane; c < C; c += kWarp) o[c] = (x[c] - m) * r * w[c] + b[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// dinp: one warp per row.
__global__ void layernorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
                                               const float* w, const float* mean,
                                               const float* rstd, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const float* x = inp + (size_t)row * C;
  const float* g = dout + (size_t)row * C;
  const float m = mean[row], r = rstd[row];
  float a = 0, bsum = 0;  // mean(dnorm), mean(dnorm·norm)
  for (int c = lane; c < C; c += kWarp) {
    const float dn = w[c] * g[c];
    a += dn;
    bsum += dn * (x[c] - m) * r;
  }
  a = dev::warp_sum(a) / C;
  bsum = dev::warp_sum(bsum) / C;
  float* d = dinp + (size_t)row * C;
  for (int c = lane; c < C; c += kWarp) {
    const float norm = (x[c] - m) * r;
    d[c] += (w[c] * g[c] - a - norm * bsum) * r;
  }
}

// Column sums in a fixed order (reproducible, no atomics). Block (32, 32):
// x = column within a group of 32, y = row lane. Each thread sums rows
// y, y+32, ...; lanes are then added in order 0..31. With inp given (LayerNorm
// weights) also dst2[c] += Σ dout·(inp − mean)·rstd; always dst[c] += Σ dout.
constexpr int kColLanes = 32;
__global__ void colsum_kernel(float* dst, float* dst2, const float* dout, const float* inp,
                              const float* mean, const float* rstd, int N, int C) {
  __shared__ float s1[kColLanes][kWarp + 1], s2[kColLanes][kWarp + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.x * kWarp + tx;
  float a = 0, b = 0;
  if (c < C) {
    for (int r = ty; r < N; r += kColLanes) {
      const float g = dout[(size_t)r * C + c];
      a += g;
      if (inp) b += g * (inp[(size_t)r * C + c] - mean[r]) * rstd[r];
    }
  }
  s1[ty][tx] = a;
  s2[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < C) {
    float A = 0, B = 0;
    for (int k = 0; k < kColLanes; k++) {
      A += s1[k][tx];
      B += s2[k][tx];
    }
    dst[c] += A;
    if (dst2) dst2[c] += B;
  }
}

// out [N,OC] += bias [OC]
__global__ void add_bias_kernel(float* out, const float* bias, int OC, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] += bias[i % OC];
}

// ------------------------------------------------------ elementwise ops

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2/pi)

__global__ void gelu_forward_kernel(float* out, const float* inp, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = inp[i];
  out[i] = 0.5f * x * (1.0f + tanhf(kGeluS * (x + 0.044715f * x * x * x)));
}

__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = inp[i];
  const float u = kGeluS * (x + 0.044715f * x * x * x);
  const float th = tanhf(u);
  const float sech2 = 1.0f - th * th;
  const float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluS * (1.0f + 3.0f * 0.044715f * x * x);
  dinp[i] += grad * dout[i];
}

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, size_t n) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, size_t n, float s) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

// ------------------------------------------------------------ optimizer

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, const uint8_t* decay,
                             size_t n, float lr, float b1, float b2, float eps, float wd,
                             float step_size, float bc2_sqrt) {
  const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  // Same order of operations as AdamW::step in optim.cpp.
  float pi = p[i];
  if (decay[i]) pi *= 1.0f - lr * wd;
  const float gi = g[i];
  const float mi = m[i] + (gi - m[i]) * (1.0f - b1);
  const float vi = v[i] * b2 + (1.0f - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float denom = sqrtf(vi) / bc2_sqrt + eps;
  p[i] = pi - step_size * (mi / denom);
}

// Per-block partial sums of squares (grid-stride), one float per block.
__global__ void sum_squares_kernel(float* partial, const float* x, size_t n) {
  __shared__ float sh[32];
  float s = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    s += x[i] * x[i];
  s = dev::block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

Status colsum(float* dst, float* dst2, const float* dout, const float* inp, const float* mean,
              const float* rstd, int N, int C) {
  if (N == 0 || C == 0) return Status::Ok();
  colsum_kernel<<<blocks_for(C, kWarp), dim3(kWarp, kColLanes)>>>(dst, dst2, dout, inp, mean, rstd, N, C);
  ACU_LAUNCHED("colsum_kernel");
  return Status::Ok();
}

}  // namespace

namespace k {

Status sync(const char* what) {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return cuda_error((std::string("cudaDeviceSynchronize after ") + what).c_str(), e);
  return Status::Ok();
}

Status encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B,
                       int T, int C) {
  const size_t n = (size_t)B * T * C;
  if (n == 0) return Status::Ok();
  encoder_forward_kernel<<<blocks_for(n, kThreads), kThreads>>>(out, inp, wte, wpe, T, C, n);
  ACU_LAUNCHED("encoder_forward_kernel");
  return Status::Ok();
}

Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B,
                        int T, int C) {
  const size_t n = (size_t)B * T * C;
  if (n == 0) return Status::Ok();
  // Bucket positions by token id on the host (B*T ids), then one block per
  // distinct id.
  const size_t BT = (size_t)B * T;
  std::vector<int32_t> ids(BT);
  ACU_CHECK(cudaMemcpy(ids.data(), inp, BT * sizeof(int32_t), cudaMemcpyDeviceToHost));
  std::vector<int32_t> order(BT);
  for (size_t i = 0; i < BT; i++) order[i] = (int32_t)i;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
  std::vector<int32_t> tokens, starts;
  for (size_t k = 0; k < BT; k++) {
    if (k == 0 || ids[order[k]] != ids[order[k - 1]]) {
      tokens.push_back(ids[order[k]]);
      starts.push_back((int32_t)k);
    }
  }
  starts.push_back((int32_t)BT);
  const int n_u = (int)tokens.size();
  std::vector<int32_t> buckets(tokens);
  buckets.insert(buckets.end(), starts.begin(), starts.end());
  buckets.insert(buckets.end(), order.begin(), order.end());
  int32_t* d_buckets = nullptr;
  ACU_CHECK(cudaMalloc(&d_buckets, buckets.size() * sizeof(int32_t)));
  cudaError_t e = cudaMemcpy(d_buckets, buckets.data(), buckets.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) {
    encoder_backward_wte_kernel<<<n_u, kThreads>>>(dwte, dout, d_buckets, n_u, C);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();  // before freeing the buckets
  }
  cudaFree(d_buckets);
  if (e != cudaSuccess) return cuda_error("encoder_backward_wte_kernel", e);
  encoder_backward_wpe_kernel<<<blocks_for((size_t)T * C, kThreads), kThreads>>>(dwpe, dout, B, T, C);
  ACU_LAUNCHED("encoder_backward_wpe_kernel");
  return Status::Ok();
}

Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) {
  if (N == 0) return Status::Ok();
  const int rows_per_block = kThreads / kWarp;
  layernorm_forward_kernel<<<blocks_for(N, rows_per_block), kThreads>>>(out, mean, rstd, inp, weight,
                                                                         bias, N, C);
  ACU_LAUNCHED("layernorm_forward_kernel");
  return Status::Ok();
}

Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) {
  if (N == 0) return Status::Ok();
  const int rows_per_block = kThreads / kWarp;
  layernorm_backward_dinp_kernel<<<blocks_for(N, rows_per_block), kThreads>>>(dinp, dout, inp, weight,
                                                                               mean, rstd, N, C);
  ACU_LAUNCHED("layernorm_backward_dinp_kernel");
  return colsum(dbias, dweight, dout, inp, mean, rstd, N, C);
}

// Used by matmul.cu.
Status add_bias(float* out, const float* bias, int N, int OC) {
  const size_t n = (size_t)N * OC;
  if (n == 0) return Status::Ok();
  add_bias_kernel<<<blocks_for(n, kThreads), kThreads>>>(out, bias, OC, n);
  ACU_LAUNCHED("add_bias_kernel");
  return Status::Ok();
}

Status bias_backward(float* dbias, const float* dout, int N, int OC) {
  return colsum(dbias, nullptr, dout, nullptr, nullptr, nullptr, N, OC);
}

Status gelu_forward(float* out, const float* inp, size_t n) {
  if (n == 0) return Status::Ok();
  gelu_forward_kernel<<<blocks_for(n, kThreads), kThreads>>>(out, inp, n);
  ACU_LAUNCHED("gelu_forward_kernel");
  return Status::Ok();
}

Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
  if (n == 0) return Status::Ok();
  gelu_backward_kernel<<<blocks_for(n, kThreads), kThreads>>>(dinp, inp, dout, n);
  ACU_LAUNCHED("gelu_backward_kernel");
  return Status::Ok();
}

Status residual_forward(float* out, const float* a, const float* b, size_t n) {
  if (n == 0) return Status::Ok();
  residual_forward_kernel<<<blocks_for(n, kThreads), kThreads>>>(out, a, b, n);
  ACU_LAUNCHED("residual_forward_kernel");
  return Status::Ok();
}

Status scale(float* x, size_t n, float s) {
  if (n == 0) return Status::Ok();
  scale_kernel<<<blocks_for(n, kThreads), kThreads>>>(x, n, s);
  ACU_LAUNCHED("scale_kernel");
  return Status::Ok();
}

Status adamw_update(float* params, const float* grads, float* m, float* v, const uint8_t* decay,
                    size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                    double bc1, double bc2) {
  if (n == 0) return Status::Ok();
  const float step_size = (float)(lr / bc1), bc2_sqrt = (float)std::sqrt(bc2);
  adamw_kernel<<<blocks_for(n, kThreads), kThreads>>>(params, grads, m, v, decay, n, lr, beta1, beta2,
                                                      eps, weight_decay, step_size, bc2_sqrt);
  ACU_LAUNCHED("adamw_kernel");
  return Status::Ok();
}

Status sum_squares(const float* x, size_t n, double* out_host) {
  *out_host = 0;
  if (n == 0) return Status::Ok();
  const int blocks = (int)std::min<size_t>(1024, blocks_for(n, kThreads));
  float* partial = nullptr;
  ACU_CHECK(cudaMalloc(&partial, blocks * sizeof(float)));
  sum_squares_kernel<<<blocks, kThreads>>>(partial, x, n);
  cudaError_t e = cudaGetLastError();
  std::vector<float> h(blocks);
  if (e == cudaSuccess) e = cudaMemcpy(h.data(), partial, blocks * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(partial);
  if (e != cudaSuccess) return cuda_error("sum_squares_kernel / cudaMemcpy", e);
  double s = 0;
  for (float p : h) s += p;
  *out_host = s;
  return Status::Ok();
}

}  // namespace k
}  // namespace assay::engine::cuda
