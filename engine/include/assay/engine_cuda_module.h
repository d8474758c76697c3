// The contract between the engine and its CUDA backend module.
//
// The CUDA backend (engine/cuda/*.cu, cuBLAS, the CUDA runtime) is a shared
// library, libassay_cuda.so, opened with dlopen the first time a command asks
// for a GPU (engine/src/cuda_loader.cpp). CPU-only commands never map it:
// cudart, cuBLAS and cuBLASLt alone are ~230 MB of RSS and 85-430 ms of start-up.
//
// The module exports two C symbols (kModuleAbiSymbol, kModuleEntrySymbol); the
// entry returns a Module that lives as long as the process (the module is
// never closed). Across this boundary pass only the types below, which the
// engine and the module compile from the same headers; kModuleAbi changes
// with the interface and kModuleLayout with the size of every struct that
// crosses it, so a module from another build is refused, not misread.
//
// Shapes and semantics are those of CudaGPT (engine_cuda.h) and of the row
// readers (engine_cuda_rows.h): DeviceModel is CudaGPT's implementation,
// member for member, except that download_params writes a span of
// num_params() floats instead of a host GPT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "assay/engine.h"
#include "assay/engine_cuda.h"
#include "assay/engine_cuda_rows.h"
#include "assay/status.h"

namespace assay::engine::cuda {

// File name of the module; the loader looks for it next to the executable.
inline constexpr const char* kModuleFile = "libassay_cuda.so";
// extern "C" uint64_t assay_cuda_module_abi(void): kModuleAbi << 32 | kModuleLayout.
inline constexpr const char* kModuleAbiSymbol = "assay_cuda_module_abi";
// extern "C" assay::engine::cuda::Module* assay_cuda_module(void).
inline constexpr const char* kModuleEntrySymbol = "assay_cuda_module";

// 2: DeviceModel::upload_adam_state (resuming training on a device).
inline constexpr uint64_t kModuleAbi = 2;
inline constexpr uint64_t kModuleLayout =
    (sizeof(GPTConfig) + 3 * sizeof(ParamTensor) + 5 * sizeof(AdamWConfig) + 7 * sizeof(DeviceLoss) +
     11 * sizeof(RowScore) + 13 * sizeof(Status) + 17 * sizeof(std::string)) &
    0xffffffffu;
inline constexpr uint64_t kModuleAbiValue = kModuleAbi << 32 | kModuleLayout;

// One model on one device (CudaGPT's members; see engine_cuda.h).
class DeviceModel {
 public:
  virtual ~DeviceModel() = default;

  virtual const GPTConfig& config() const = 0;
  virtual Mode mode() const = 0;
  virtual size_t num_params() const = 0;
  virtual int device_index() const = 0;

  virtual Status forward(const int32_t* tokens, int B, int T) = 0;
  virtual int batch_B() const = 0;
  virtual int batch_T() const = 0;
  virtual float* logits_device() = 0;
  virtual Status copy_logits(std::span<float> out) const = 0;
  virtual Status copy_hidden(std::span<float> out) const = 0;

  virtual Result<DeviceLoss> cross_entropy_backward(const int32_t* targets, const float* weights,
                                                    double grad_scale) = 0;
  virtual Status logprob_gather(const int32_t* targets, std::span<float> row_logp, const float* row_coef) = 0;
  virtual Result<DeviceLoss> distill_backward(const float* teacher_logits_device, DistillKind kind, double tau,
                                              double weight, const int32_t* targets, const float* weights,
                                              double ce_weight) = 0;

  virtual Status backward() = 0;
  virtual Status backward_from_host(const float* dlogits) = 0;
  virtual Status zero_grad() = 0;
  virtual Result<float> clip_grad_norm(float max_norm) = 0;
  virtual Status adamw_step(const AdamWConfig& cfg, float lr) = 0;
  virtual int64_t adamw_t() const = 0;

  // out: num_params() floats in param_layout() order.
  virtual Status download_params(std::span<float> out) const = 0;
  virtual Status download_grads(std::span<float> out) const = 0;
  virtual Status download_adam_state(std::span<float> m, std::span<float> v) const = 0;
  // m, v: num_params() floats in param_layout() order; t: steps taken (>= 0).
  virtual Status upload_adam_state(std::span<const float> m, std::span<const float> v, int64_t t) = 0;

  // engine_cuda_rows.h
  virtual Status row_scores(std::span<const int32_t> rows, std::span<const int32_t> targets,
                            std::span<RowScore> out) = 0;
  virtual Status copy_logit_rows(std::span<const int32_t> rows, std::span<float> out) const = 0;
};

// What a device model is created from: the host model's config, its
// parameter layout (param_layout(config)) and parameters (num_params() floats).
struct ModelInit {
  GPTConfig config;
  std::span<const ParamTensor> layout;
  std::span<const float> params;
  int device = 0;
  Mode mode = Mode::kTrain;
};

// The module's entry object. Errors carry the CUDA runtime's names and
// strings (e.g. a missing driver is cudaGetDeviceCount's error).
class Module {
 public:
  virtual Result<int> device_count() = 0;
  // e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)".
  virtual Result<std::string> device_name(int index) = 0;
  virtual Result<std::unique_ptr<DeviceModel>> create_model(const ModelInit& init) = 0;

 protected:
  ~Module() = default;  // lives as long as the process
};

// The module loaded on first use, or why it cannot be: the module file was
// not found (the message lists where the loader looked and how to build it),
// dlopen failed (dlerror: typically a CUDA library it needs is missing), or
// it comes from another build. Thread-safe; the answer is cached.
Result<Module*> load_module();

}  // namespace assay::engine::cuda
