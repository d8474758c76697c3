// Host wrappers of the CUDA kernels, llm.c style <op>_forward/<op>_backward.
// Plain C++ declarations (no CUDA syntax), so tests compiled by the host
// compiler can call them with device pointers obtained from cudaMalloc.
//
// Conventions match engine_ops.h (the CPU reference):
//   N = B*T rows, C channels, OC output channels, V vocabulary, NH heads.
//   Every pointer is a DEVICE pointer; shapes are row-major.
//   Every *_backward ACCUMULATES (+=) into its gradient outputs.
//   Matrix products use cuBLAS with TF32 tensor cores (fp32 in and out).
//   All work is queued on the legacy default stream; a wrapper returns after
//   the launch, with launch errors as Status. Call sync() to surface
//   asynchronous faults.
//   No atomics: every reduction has a fixed order, so results are
//   bit-reproducible run to run on the same GPU model and CUDA/cuBLAS version
//   (cuBLAS guarantees this for a fixed architecture and SM count).
#pragma once

#include <cstddef>
#include <cstdint>

#include "assay/status.h"

namespace assay::engine::cuda::k {

// cudaDeviceSynchronize with its error as Status (naming `what`).
Status sync(const char* what);

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]; out [B,T,C], inp [B,T].
Status encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B,
                       int T, int C);
// dwte [V,C], dwpe [T,C] += from dout [B,T,C]. Copies inp to the host to
// bucket positions by token (deterministic sums) and synchronizes.
Status encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B,
                        int T, int C);

// out [N,C], mean/rstd [N]; eps 1e-5, biased variance.
Status layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C);
Status layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C);

// out [N,OC] = inp [N,C] · weight [C,OC] + bias [OC] (bias may be null).
Status matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                      int C, int OC);
// dinp [N,C], dweight [C,OC], dbias [OC] (may be null) += from dout [N,OC].
Status matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int N, int C, int OC);

// logits [N,V] = inp [N,C] · wteᵀ (wte [V,C]).
Status head_forward(float* logits, const float* inp, const float* wte, int N, int C, int V);
// dinp [N,C], dwte [V,C] += from dlogits [N,V].
Status head_backward(float* dinp, float* dwte, const float* dlogits, const float* inp,
                     const float* wte, int N, int C, int V);

// Floats of scratch the attention calls need (q, k, v, and the per-head
// output or its gradient, each [B,NH,T,hs]).
inline size_t attention_scratch_floats(int B, int T, int C) { return 4 * (size_t)B * T * C; }
// Causal self-attention. qkv [B,T,3C] (q,k,v), att [B,NH,T,T] softmax rows
// (zero above the diagonal), out [B,T,C]. scratch: attention_scratch_floats.
Status attention_forward(float* out, float* att, const float* qkv, float* scratch, int B, int T,
                         int C, int NH);
// dqkv [B,T,3C] += from dout [B,T,C]. scratch as above (its q,k,v part is
// recomputed from qkv), datt [B,NH,T,T] scratch, fwd_scratch another
// attention_scratch_floats buffer.
Status attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                          float* datt, float* scratch, float* fwd_scratch, int B, int T, int C,
                          int NH);

// tanh-GELU over n elements; backward: dinp += gelu'(inp) · dout.
Status gelu_forward(float* out, const float* inp, size_t n);
Status gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);
// out = a + b (out may alias a or b).
Status residual_forward(float* out, const float* a, const float* b, size_t n);

// Fused softmax + cross-entropy per row of logits [N,V] (one block per row,
// probabilities never stored). row_logp [N] gets log softmax(z)[target]
// (0 where target < 0). When row_scale (device [N]) is non-null, the row is
// OVERWRITTEN with row_scale[r]·(softmax(z) − onehot(target)) (zeros where
// target < 0); otherwise logits are left unchanged.
Status crossentropy_forward_backward(float* logits, float* row_logp, const int32_t* targets,
                                     const float* row_scale, int N, int V);

// Token distillation per row, student z [N,V] (overwritten with dlogits),
// teacher zt [N,V], q = softmax(z/tau), p = softmax(zt/tau):
//   kind 0 forward KL: D = Σ p (log p − log q), dD/dz = (q − p)/tau
//   kind 1 reverse KL: D = Σ q (log q − log p), dD/dz = q (log q − log p − D)/tau
// Outputs per row: row_div [N] = D, row_kl [N] = KL(p1||q1) at tau 1,
// row_logp [N] = log q1[target] (0 where target < 0 or targets null).
// dlogits = div_scale[r]·dD/dz + ce_scale[r]·(q1 − onehot) (ce part only when
// targets and ce_scale are non-null).
Status distill_forward_backward(float* z, const float* zt, float* row_div, float* row_kl,
                                float* row_logp, const int32_t* targets, const float* div_scale,
                                const float* ce_scale, int kind, float tau, int N, int V);

// AdamW as torch (same op order as the CPU AdamW::step). decay [n] is 1
// where weight decay applies. bc1 = 1 − β1^t, bc2 = 1 − β2^t.
Status adamw_update(float* params, const float* grads, float* m, float* v, const uint8_t* decay,
                    size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                    double bc1, double bc2);
// Used by the matmul wrappers: out [N,OC] += bias; dbias [OC] += Σ_n dout.
Status add_bias(float* out, const float* bias, int N, int OC);
Status bias_backward(float* dbias, const float* dout, int N, int OC);
// Sum of squares of x [n] into *out_host (partials in fp32 per block, summed
// in double on the host in block order). Synchronizes.
Status sum_squares(const float* x, size_t n, double* out_host);
// x *= s over n elements.
Status scale(float* x, size_t n, float s);

}  // namespace assay::engine::cuda::k
