// Greedy decoding on a CudaGPT without a KV cache: every step runs the whole
// prefix of each active slot again (right-padded into one batch; causal
// attention never reads the padding) and copies only the last row of logits
// of each slot to the host. Same interface as KvDecoder.
#pragma once

#include <cstdint>
#include <vector>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_rows.h"
#include "assay/status.h"

namespace assay::evals {

class GpuDecoder {
 public:
  explicit GpuDecoder(engine::cuda::CudaGPT& model) : model_(model) {}

  Status reset(int slots, int capacity) {
    seqs_.assign(static_cast<size_t>(slots), {});
    capacity_ = capacity;
    return Status::Ok();
  }
  // Appends tokens[0..n) to the slot; logits [V] of the last one go to out.
  Status prefill(int slot, const int32_t* tokens, int n, float* out) {
    seqs_[slot].insert(seqs_[slot].end(), tokens, tokens + n);
    return run({slot}, out);
  }
  // Appends tokens[i] to slots[i]; out [slots.size(), V].
  Status step(const std::vector<int>& slots, const std::vector<int32_t>& tokens, float* out) {
    for (size_t i = 0; i < slots.size(); ++i) seqs_[slots[i]].push_back(tokens[i]);
    return run(slots, out);
  }

 private:
  Status run(const std::vector<int>& slots, float* out) {
    int T = 1;
    for (int s : slots) T = std::max(T, static_cast<int>(seqs_[s].size()));
    if (T > capacity_)
      return Status::Invalid("gpu decoder: " + std::to_string(T) + " tokens exceed the capacity " +
                             std::to_string(capacity_));
    const int B = static_cast<int>(slots.size());
    batch_.assign(static_cast<size_t>(B) * T, 0);
    rows_.clear();
    for (int b = 0; b < B; ++b) {
      const auto& q = seqs_[slots[b]];
      std::copy(q.begin(), q.end(), batch_.begin() + static_cast<std::ptrdiff_t>(b) * T);
      rows_.push_back(b * T + static_cast<int32_t>(q.size()) - 1);
    }
    ASSAY_RETURN_IF_ERROR(model_.forward(batch_.data(), B, T));
    const size_t V = static_cast<size_t>(model_.config().vocab_size);
    return engine::cuda::copy_logit_rows(model_, rows_, std::span<float>(out, rows_.size() * V));
  }

  engine::cuda::CudaGPT& model_;
  std::vector<std::vector<int32_t>> seqs_;
  std::vector<int32_t> batch_, rows_;
  int capacity_ = 0;
};

}  // namespace assay::evals
