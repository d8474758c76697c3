// engine_cuda_rows.h in a build without CUDA: every call says so.
#ifndef ASSAY_WITH_CUDA

#include "assay/engine_cuda_rows.h"

namespace assay::engine::cuda {

namespace {
Status no_cuda() {
  return Status::FailedPrecondition(
      "this build has no CUDA support (nvcc was not found when it was built); use --device cpu");
}
}  // namespace

Status row_scores(CudaGPT&, std::span<const int32_t>, std::span<const int32_t>,
                  std::span<RowScore>) {
  return no_cuda();
}

Status copy_logit_rows(const CudaGPT&, std::span<const int32_t>, std::span<float>) {
  return no_cuda();
}

}  // namespace assay::engine::cuda

#endif  // ASSAY_WITH_CUDA
