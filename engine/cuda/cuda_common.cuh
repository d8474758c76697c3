// Shared device-side helpers of the CUDA backend (compiled by nvcc only):
// error-to-Status macros, warp/block reductions, launch sizing.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "assay/status.h"

namespace assay::engine::cuda {

// Status of a failed CUDA runtime call, naming the call.
inline Status cuda_error(const char* call, cudaError_t e) {
  return Status::Internal(std::string(call) + " failed: " + cudaGetErrorName(e) + " (" +
                          cudaGetErrorString(e) + ")");
}
const char* cublas_status_name(cublasStatus_t s);

}  // namespace assay::engine::cuda

// Returns a Status from the enclosing function when a CUDA call fails.
#define ACU_CHECK(call)                                                      \
  do {                                                                       \
    const cudaError_t acu_e_ = (call);                                       \
    if (acu_e_ != cudaSuccess) return ::assay::engine::cuda::cuda_error(#call, acu_e_); \
  } while (0)

// After a kernel launch: launch-configuration errors and, in debug builds of
// the tests, asynchronous faults are reported with the kernel's name.
#define ACU_LAUNCHED(name)                                                   \
  do {                                                                       \
    const cudaError_t acu_e_ = cudaGetLastError();                           \
    if (acu_e_ != cudaSuccess) return ::assay::engine::cuda::cuda_error("launch " name, acu_e_); \
  } while (0)

#define ACU_CUBLAS(call)                                                     \
  do {                                                                       \
    const cublasStatus_t acu_s_ = (call);                                    \
    if (acu_s_ != CUBLAS_STATUS_SUCCESS)                                     \
      return ::assay::Status::Internal(std::string(#call) + " failed: " +    \
                                       ::assay::engine::cuda::cublas_status_name(acu_s_)); \
  } while (0)

namespace assay::engine::cuda::dev {

constexpr int kWarp = 32;

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum; every thread gets the result. blockDim.x must be a
// multiple of 32 (at most 1024). `sh` holds 32 floats; reusable after return.
__device__ inline float block_sum(float v, float* sh) {
  const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp;
  const int nw = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // protects sh from a previous use
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0f;
  return warp_sum(v);
}
__device__ inline float block_max(float v, float* sh) {
  const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp;
  const int nw = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

inline unsigned int blocks_for(size_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

}  // namespace assay::engine::cuda::dev
