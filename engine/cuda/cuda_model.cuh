// The module's DeviceModel (engine_cuda_module.h): the GPT of model.cpp with
// parameters, gradients, AdamW state and activations on one CUDA device.
// Compiled into libassay_cuda.so only.
#pragma once

#include <memory>

#include "assay/engine_cuda_module.h"

namespace assay::engine::cuda {

// Visible CUDA devices; the error names cudaGetDeviceCount's (no driver, ...).
Result<int> visible_device_count();

class CudaModel final : public DeviceModel {
 public:
  static Result<std::unique_ptr<DeviceModel>> create(const ModelInit& init);
  ~CudaModel() override;

  const GPTConfig& config() const override;
  Mode mode() const override;
  size_t num_params() const override;
  int device_index() const override;

  Status forward(const int32_t* tokens, int B, int T) override;
  int batch_B() const override;
  int batch_T() const override;
  float* logits_device() override;
  Status copy_logits(std::span<float> out) const override;
  Status copy_hidden(std::span<float> out) const override;

  Result<DeviceLoss> cross_entropy_backward(const int32_t* targets, const float* weights,
                                            double grad_scale) override;
  Status logprob_gather(const int32_t* targets, std::span<float> row_logp, const float* row_coef) override;
  Result<DeviceLoss> distill_backward(const float* teacher_logits_device, DistillKind kind, double tau,
                                      double weight, const int32_t* targets, const float* weights,
                                      double ce_weight) override;

  Status backward() override;
  Status backward_from_host(const float* dlogits) override;
  Status zero_grad() override;
  Result<float> clip_grad_norm(float max_norm) override;
  Status adamw_step(const AdamWConfig& cfg, float lr) override;
  int64_t adamw_t() const override;

  Status download_params(std::span<float> out) const override;
  Status download_grads(std::span<float> out) const override;
  Status download_adam_state(std::span<float> m, std::span<float> v) const override;
  Status upload_adam_state(std::span<const float> m, std::span<const float> v, int64_t t) override;

  Status row_scores(std::span<const int32_t> rows, std::span<const int32_t> targets,
                    std::span<RowScore> out) override;
  Status copy_logit_rows(std::span<const int32_t> rows, std::span<float> out) const override;

  struct Impl;

 private:
  explicit CudaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace assay::engine::cuda
