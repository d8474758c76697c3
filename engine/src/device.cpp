// Device strings and, in a build without the CUDA backend, the device API
// answering "no CUDA support" (engine/cuda/ holds the real implementation).
#include <charconv>
#include <string>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_rows.h"

namespace assay::engine::cuda {

std::string Device::str() const { return is_cuda() ? "cuda:" + std::to_string(index) : "cpu"; }

Result<Device> parse_device(std::string_view s) {
  const auto bad = [&] {
    return Status::Invalid("device: expected cpu, cuda or cuda:N (N >= 0), got '" + std::string(s) + "'");
  };
  if (s == "cpu") return Device{};
  if (s == "cuda") return Device{Device::Kind::kCuda, 0};
  if (s.substr(0, 5) != "cuda:" || s.size() == 5 || s.size() > 9) return bad();
  int n = -1;
  const char* b = s.data() + 5;
  const char* e = s.data() + s.size();
  const auto r = std::from_chars(b, e, n);
  if (r.ec != std::errc() || r.ptr != e || n < 0) return bad();
  return Device{Device::Kind::kCuda, n};
}

Result<Device> resolve_device(std::string_view s) {
  if (s.empty() || s == "auto") {
    if (!built_with_cuda()) return Device{};
    auto n = cuda_device_count();
    return (n.ok() && *n > 0) ? Device{Device::Kind::kCuda, 0} : Device{};
  }
  ASSAY_ASSIGN_OR_RETURN(Device d, parse_device(s));
  if (!d.is_cuda()) return d;
  ASSAY_ASSIGN_OR_RETURN(int n, cuda_device_count());
  if (n == 0)
    return Status::FailedPrecondition("device " + std::string(s) +
                                      ": no CUDA device is visible (cudaGetDeviceCount returned 0); use --device cpu");
  if (d.index >= n)
    return Status::Invalid("device " + std::string(s) + ": only " + std::to_string(n) +
                           " CUDA device(s) visible (ordinals 0.." + std::to_string(n - 1) + ")");
  return d;
}

#ifndef ASSAY_WITH_CUDA

namespace {
Status no_cuda() {
  return Status::FailedPrecondition(
      "this build has no CUDA support (nvcc was not found when it was built); use --device cpu");
}
}  // namespace

bool built_with_cuda() { return false; }
Result<int> cuda_device_count() { return no_cuda(); }
Result<std::string> device_name(int) { return no_cuda(); }

struct CudaGPT::Impl {};
CudaGPT::CudaGPT(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaGPT::CudaGPT(CudaGPT&&) noexcept = default;
CudaGPT& CudaGPT::operator=(CudaGPT&&) noexcept = default;
CudaGPT::~CudaGPT() = default;

Result<CudaGPT> CudaGPT::create(const GPT&, int, Mode) { return no_cuda(); }
// No CudaGPT can exist in this build (create always fails), so the members
// below are unreachable; they still answer with the same error.
const GPTConfig& CudaGPT::config() const {
  static const GPTConfig kNone{};
  return kNone;
}
Mode CudaGPT::mode() const { return Mode::kFrozen; }
size_t CudaGPT::num_params() const { return 0; }
int CudaGPT::device_index() const { return -1; }
Status CudaGPT::forward(const int32_t*, int, int) { return no_cuda(); }
int CudaGPT::batch_B() const { return 0; }
int CudaGPT::batch_T() const { return 0; }
float* CudaGPT::logits_device() { return nullptr; }
Status CudaGPT::copy_logits(std::span<float>) const { return no_cuda(); }
Status CudaGPT::copy_hidden(std::span<float>) const { return no_cuda(); }
Result<DeviceLoss> CudaGPT::cross_entropy_backward(const int32_t*, const float*, double) { return no_cuda(); }
Status CudaGPT::logprob_gather(const int32_t*, std::span<float>, const float*) { return no_cuda(); }
Result<DeviceLoss> CudaGPT::distill_backward(const float*, DistillKind, double, double, const int32_t*,
                                             const float*, double) {
  return no_cuda();
}
Status CudaGPT::backward() { return no_cuda(); }
Status CudaGPT::backward_from_host(const float*) { return no_cuda(); }
Status CudaGPT::zero_grad() { return no_cuda(); }
Result<float> CudaGPT::clip_grad_norm(float) { return no_cuda(); }
Status CudaGPT::adamw_step(const AdamWConfig&, float) { return no_cuda(); }
int64_t CudaGPT::adamw_t() const { return 0; }
Status CudaGPT::download_params(GPT&) const { return no_cuda(); }
Status CudaGPT::download_grads(std::span<float>) const { return no_cuda(); }
Status CudaGPT::download_adam_state(std::span<float>, std::span<float>) const { return no_cuda(); }

// engine_cuda_rows.h
Status row_scores(CudaGPT&, std::span<const int32_t>, std::span<const int32_t>,
                  std::span<RowScore>) {
  return no_cuda();
}
Status copy_logit_rows(const CudaGPT&, std::span<const int32_t>, std::span<float>) {
  return no_cuda();
}

#endif  // ASSAY_WITH_CUDA

}  // namespace assay::engine::cuda
