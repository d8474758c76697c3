// Reading results out of a CudaGPT's logits without copying [B,T,V] to the
// host (for GPT-2's V = 50257 a 8x1024 batch is 1.6 GB): per-row scores
// computed on the device, and single rows copied out. Used by the evals.
// Compiles without CUDA; the calls then fail with the "no CUDA support" error
// (engine/src/device.cpp).
#pragma once

#include <cstdint>
#include <span>

#include "assay/engine_cuda.h"
#include "assay/status.h"

namespace assay::engine::cuda {

// Scores of one logits row, natural log.
struct RowScore {
  float logprob = 0;      // log softmax at the target (at the argmax when target < 0)
  int32_t top_token = 0;  // argmax, lowest id on ties (as the CPU scorer)
  float top_logprob = 0;  // log softmax at the argmax
};

// rows: indices into the [B*T] rows of the last forward; targets: one per row
// (-1: score the argmax). out.size() == rows.size().
Status row_scores(CudaGPT& model, std::span<const int32_t> rows, std::span<const int32_t> targets,
                  std::span<RowScore> out);

// Copies logits rows (each V floats) to the host: out.size() == rows.size() * V.
Status copy_logit_rows(const CudaGPT& model, std::span<const int32_t> rows, std::span<float> out);

}  // namespace assay::engine::cuda
