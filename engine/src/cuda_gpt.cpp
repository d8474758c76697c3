// CudaGPT and the row readers on the engine side: thin handles that forward
// to the CUDA backend module's DeviceModel (engine_cuda_module.h), opened on
// the first CudaGPT::create.
#include <string>
#include <utility>
#include <vector>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_module.h"
#include "assay/engine_cuda_rows.h"

namespace assay::engine::cuda {

struct CudaGPT::Impl {
  std::unique_ptr<DeviceModel> model;
};

CudaGPT::CudaGPT(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGPT::CudaGPT(CudaGPT&&) noexcept = default;
CudaGPT& CudaGPT::operator=(CudaGPT&&) noexcept = default;
CudaGPT::~CudaGPT() = default;

Result<CudaGPT> CudaGPT::create(const GPT& host, int device_index, Mode mode) {
  ASSAY_ASSIGN_OR_RETURN(Module * module, load_module());
  const std::vector<ParamTensor> layout = param_layout(host.config());
  const ModelInit init{host.config(), layout, host.params(), device_index, mode};
  ASSAY_ASSIGN_OR_RETURN(std::unique_ptr<DeviceModel> model, module->create_model(init));
  return CudaGPT(std::make_unique<Impl>(Impl{std::move(model)}));
}

DeviceModel& CudaGPT::device_model() const { return *impl_->model; }

const GPTConfig& CudaGPT::config() const { return impl_->model->config(); }
Mode CudaGPT::mode() const { return impl_->model->mode(); }
size_t CudaGPT::num_params() const { return impl_->model->num_params(); }
int CudaGPT::device_index() const { return impl_->model->device_index(); }
Status CudaGPT::forward(const int32_t* tokens, int B, int T) { return impl_->model->forward(tokens, B, T); }
int CudaGPT::batch_B() const { return impl_->model->batch_B(); }
int CudaGPT::batch_T() const { return impl_->model->batch_T(); }
float* CudaGPT::logits_device() { return impl_->model->logits_device(); }
Status CudaGPT::copy_logits(std::span<float> out) const { return impl_->model->copy_logits(out); }
Status CudaGPT::copy_hidden(std::span<float> out) const { return impl_->model->copy_hidden(out); }

Result<DeviceLoss> CudaGPT::cross_entropy_backward(const int32_t* targets, const float* weights,
                                                   double grad_scale) {
  return impl_->model->cross_entropy_backward(targets, weights, grad_scale);
}
Status CudaGPT::logprob_gather(const int32_t* targets, std::span<float> row_logp, const float* row_coef) {
  return impl_->model->logprob_gather(targets, row_logp, row_coef);
}
Result<DeviceLoss> CudaGPT::distill_backward(const float* teacher_logits_device, DistillKind kind, double tau,
                                             double weight, const int32_t* targets, const float* weights,
                                             double ce_weight) {
  return impl_->model->distill_backward(teacher_logits_device, kind, tau, weight, targets, weights, ce_weight);
}

Status CudaGPT::backward() { return impl_->model->backward(); }
Status CudaGPT::backward_from_host(const float* dlogits) { return impl_->model->backward_from_host(dlogits); }
Status CudaGPT::zero_grad() { return impl_->model->zero_grad(); }
Result<float> CudaGPT::clip_grad_norm(float max_norm) { return impl_->model->clip_grad_norm(max_norm); }
Status CudaGPT::adamw_step(const AdamWConfig& cfg, float lr) { return impl_->model->adamw_step(cfg, lr); }
int64_t CudaGPT::adamw_t() const { return impl_->model->adamw_t(); }

Status CudaGPT::download_params(GPT& host) const {
  if (!(host.config() == config()) || host.num_params() != num_params())
    return Status::Invalid("CudaGPT::download_params: host model config differs from the device model's");
  return impl_->model->download_params(host.params());
}
Status CudaGPT::download_grads(std::span<float> out) const { return impl_->model->download_grads(out); }
Status CudaGPT::download_adam_state(std::span<float> m, std::span<float> v) const {
  return impl_->model->download_adam_state(m, v);
}
Status CudaGPT::upload_adam_state(std::span<const float> m, std::span<const float> v, int64_t t) {
  return impl_->model->upload_adam_state(m, v, t);
}

// engine_cuda_rows.h
Status row_scores(CudaGPT& model, std::span<const int32_t> rows, std::span<const int32_t> targets,
                  std::span<RowScore> out) {
  return model.device_model().row_scores(rows, targets, out);
}
Status copy_logit_rows(const CudaGPT& model, std::span<const int32_t> rows, std::span<float> out) {
  return model.device_model().copy_logit_rows(rows, out);
}

}  // namespace assay::engine::cuda
