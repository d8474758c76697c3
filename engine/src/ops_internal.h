// Fused kernels used by the model (not part of the public kernel set in
// assay/engine_ops.h). Same conventions: row-major, shapes in comments,
// deterministic for a given thread count.
#pragma once

namespace assay::engine::ops {

// out [N,OC] = residual [N,OC] + bias [OC] + inp [N,C] · weight [C,OC]
// (bias may be null; out may alias residual). One pass fewer over the rows
// than matmul_forward followed by residual_forward.
template <class F>
void matmul_residual_forward(F* out, const F* inp, const F* weight, const F* bias,
                             const F* residual, int N, int C, int OC);

// dinp ← gelu'(inp) ⊙ dinp, elementwise on n: the tanh-GELU backward with
// the result OVERWRITING the incoming gradient (gelu_backward accumulates
// into a separate buffer, which then has to be zeroed first).
template <class F>
void gelu_backward_inplace(F* d, const F* inp, size_t n);

// attention_backward that OVERWRITES dqkv [B,T,3C] instead of adding to it
// (same products, beta = 0), so dqkv need not be zeroed first.
template <class F>
void attention_backward_set(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T,
                            int C, int NH);

// attention_forward for forward-only use: out [B,T,C] as attention_forward,
// with the probabilities of every head written to the same scratch [T,T]
// (which stays in cache) and not kept; rows are not zeroed past the end of
// their query block.
template <class F>
void attention_forward_scratch(F* out, F* scratch, const F* qkv, int B, int T, int C, int NH);

}  // namespace assay::engine::ops
