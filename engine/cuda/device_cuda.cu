// The module's entry points (engine_cuda_module.h): device queries and model
// creation, exported as C symbols for the engine's loader.
#include <cstdint>

#include "cuda_common.cuh"
#include "cuda_model.cuh"

namespace assay::engine::cuda {

Result<int> visible_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear it so later runtime calls start clean
    return Status::FailedPrecondition(std::string("no usable CUDA device: cudaGetDeviceCount returned ") +
                                      cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                                      "); a GPU needs the NVIDIA driver (libcuda.so.1 and the nvidia kernel "
                                      "module); use --device cpu");
  }
  return n;
}

namespace {

class CudaModule final : public Module {
 public:
  Result<int> device_count() override { return visible_device_count(); }

  Result<std::string> device_name(int index) override {
    cudaDeviceProp p{};
    ACU_CHECK(cudaGetDeviceProperties(&p, index));
    return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
           std::to_string(p.totalGlobalMem >> 30) + " GiB)";
  }

  Result<std::unique_ptr<DeviceModel>> create_model(const ModelInit& init) override {
    return CudaModel::create(init);
  }
};

}  // namespace
}  // namespace assay::engine::cuda

extern "C" __attribute__((visibility("default"))) uint64_t assay_cuda_module_abi() {
  return assay::engine::cuda::kModuleAbiValue;
}

extern "C" __attribute__((visibility("default"))) assay::engine::cuda::Module* assay_cuda_module() {
  static assay::engine::cuda::CudaModule module;
  return &module;
}
