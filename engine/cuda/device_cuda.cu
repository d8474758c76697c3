// Device queries of the CUDA build (the no-CUDA answers are in src/device.cpp).
#include "assay/engine_cuda.h"
#include "cuda_common.cuh"

namespace assay::engine::cuda {

bool built_with_cuda() { return true; }

Result<int> cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear it so later runtime calls start clean
    return Status::FailedPrecondition(std::string("no usable CUDA device: cudaGetDeviceCount returned ") +
                                      cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                      "); use --device cpu");
  }
  return n;
}

Result<std::string> device_name(int index) {
  cudaDeviceProp p{};
  ACU_CHECK(cudaGetDeviceProperties(&p, index));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.totalGlobalMem >> 30) + " GiB)";
}

}  // namespace assay::engine::cuda
