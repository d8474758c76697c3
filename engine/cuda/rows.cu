// Per-row scores on the device: one block per requested row of the logits
// [B*T, V]; max/argmax and the sum of exponentials are block reductions.
#include <vector>

#include "cuda_common.cuh"
#include "cuda_model.cuh"

namespace assay::engine::cuda {

namespace {

constexpr int kThreads = 256;

// rows [n], targets [n] -> out [n]. Argmax ties go to the lowest id, as in the
// CPU scorer: each thread keeps its first maximum (it scans ids in order), and
// the reduction prefers the lower id among equal values.
__global__ void row_scores_kernel(RowScore* out, const float* logits, const int32_t* rows,
                                  const int32_t* targets, int V) {
  __shared__ float sh_v[kThreads];
  __shared__ int sh_i[kThreads];
  __shared__ double sh_s[kThreads];
  const float* x = logits + static_cast<size_t>(rows[blockIdx.x]) * V;
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    if (x[i] > best) { best = x[i]; best_i = i; }
  sh_v[threadIdx.x] = best;
  sh_i[threadIdx.x] = best_i;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float ov = sh_v[threadIdx.x + s];
      const int oi = sh_i[threadIdx.x + s];
      if (ov > sh_v[threadIdx.x] || (ov == sh_v[threadIdx.x] && oi < sh_i[threadIdx.x])) {
        sh_v[threadIdx.x] = ov;
        sh_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const float m = sh_v[0];
  const int top = sh_i[0];
  double sum = 0;  // double, as the CPU scorer: V terms of very different size
  for (int i = threadIdx.x; i < V; i += blockDim.x) sum += exp(static_cast<double>(x[i]) - m);
  sh_s[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh_s[threadIdx.x] += sh_s[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double lse = m + log(sh_s[0]);
    const int t = targets[blockIdx.x] < 0 ? top : targets[blockIdx.x];
    out[blockIdx.x] = {static_cast<float>(x[t] - lse), top, static_cast<float>(m - lse)};
  }
}

// Device buffer freed on scope exit.
template <class T>
struct Buf {
  T* p = nullptr;
  ~Buf() { if (p) cudaFree(p); }
};

Status check_rows(const CudaModel& model, std::span<const int32_t> rows) {
  const int64_t n = static_cast<int64_t>(model.batch_B()) * model.batch_T();
  if (n <= 0) return Status::FailedPrecondition("row scores: no forward has run");
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i] < 0 || rows[i] >= n)
      return Status::Invalid("row scores: rows[" + std::to_string(i) + "] = " +
                             std::to_string(rows[i]) + " is outside 0.." + std::to_string(n - 1));
  return Status::Ok();
}

}  // namespace

Status CudaModel::row_scores(std::span<const int32_t> rows, std::span<const int32_t> targets,
                             std::span<RowScore> out) {
  CudaModel& model = *this;
  const int V = model.config().vocab_size;
  if (targets.size() != rows.size() || out.size() != rows.size())
    return Status::Invalid("row scores: rows, targets and out must have the same length");
  ASSAY_RETURN_IF_ERROR(check_rows(model, rows));
  for (size_t i = 0; i < targets.size(); ++i)
    if (targets[i] >= V)
      return Status::Invalid("row scores: targets[" + std::to_string(i) + "] = " +
                             std::to_string(targets[i]) + " is outside the vocabulary");
  if (rows.empty()) return Status::Ok();
  ACU_CHECK(cudaSetDevice(model.device_index()));
  const size_t n = rows.size();
  Buf<int32_t> d_rows, d_targets;
  Buf<RowScore> d_out;
  ACU_CHECK(cudaMalloc(&d_rows.p, n * sizeof(int32_t)));
  ACU_CHECK(cudaMalloc(&d_targets.p, n * sizeof(int32_t)));
  ACU_CHECK(cudaMalloc(&d_out.p, n * sizeof(RowScore)));
  ACU_CHECK(cudaMemcpy(d_rows.p, rows.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
  ACU_CHECK(cudaMemcpy(d_targets.p, targets.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
  // Grid x is capped at 2^31-1 blocks; rows of one batch are far fewer.
  row_scores_kernel<<<static_cast<unsigned>(n), kThreads>>>(d_out.p, model.logits_device(),
                                                           d_rows.p, d_targets.p, V);
  ACU_LAUNCHED("row_scores_kernel");
  ACU_CHECK(cudaMemcpy(out.data(), d_out.p, n * sizeof(RowScore), cudaMemcpyDeviceToHost));
  return Status::Ok();
}

Status CudaModel::copy_logit_rows(std::span<const int32_t> rows, std::span<float> out) const {
  const CudaModel& model = *this;
  const int V = model.config().vocab_size;
  if (out.size() != rows.size() * static_cast<size_t>(V))
    return Status::Invalid("copy_logit_rows: out must hold rows.size() * vocab_size floats");
  ASSAY_RETURN_IF_ERROR(check_rows(model, rows));
  ACU_CHECK(cudaSetDevice(model.device_index()));
  // logits_device() is non-const only because loss calls write through it.
  const float* logits = const_cast<CudaModel&>(model).logits_device();
  for (size_t i = 0; i < rows.size(); ++i)
    ACU_CHECK(cudaMemcpy(out.data() + i * V, logits + static_cast<size_t>(rows[i]) * V,
                         V * sizeof(float), cudaMemcpyDeviceToHost));
  return Status::Ok();
}

}  // namespace assay::engine::cuda
