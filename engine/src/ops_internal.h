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

}  // namespace assay::engine::ops
