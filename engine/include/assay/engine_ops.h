// CPU kernels of the GPT engine, llm.c style: <op>_forward / <op>_backward
// pairs over plain row-major arrays. They are instantiated for float (the
// engine) and double (finite-difference gradient checks in tests).
//
// Conventions:
//   N = B*T rows; C channels; OC output channels; V vocabulary; NH heads.
//   Linear weights use the Conv1D layout [C, OC]: out = inp · W + b.
//   Every *_backward ACCUMULATES (+=) into all of its gradient outputs, so
//   callers zero them first when they want plain values.
//   Parallel loops use static OpenMP schedules and every reduction has a
//   fixed order, so results are bit-identical for a given thread count.
//   Loops below ~2^18 multiply-adds run on one thread. Matrix products
//   (matmul, head, attention) go to OpenBLAS sgemm/dgemm.
//   The float kernels use a vectorisable exp (~2 ulp) in GELU and softmax;
//   the double kernels use std::exp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace assay::engine::ops {

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
// out [B,T,C], inp [B,T], wte [V,C], wpe [>=T,C]
template <class F>
void encoder_forward(F* out, const int32_t* inp, const F* wte, const F* wpe, int B, int T, int C);
// dwte [V,C], dwpe [>=T,C] += from dout [B,T,C]
template <class F>
void encoder_backward(F* dwte, F* dwpe, const F* dout, const int32_t* inp, int B, int T, int C);

// Per row: out = (inp - mean) * rstd * weight + bias, biased variance,
// rstd = 1/sqrt(var + 1e-5). out/inp [N,C]; mean, rstd [N] (saved for backward).
template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias,
                       int N, int C);
template <class F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                        const F* mean, const F* rstd, int N, int C);

// out [N,OC] = inp [N,C] · weight [C,OC] + bias [OC] (bias may be null).
template <class F>
void matmul_forward(F* out, const F* inp, const F* weight, const F* bias, int N, int C, int OC);
// dinp [N,C], dweight [C,OC], dbias [OC] (may be null) += from dout [N,OC].
template <class F>
void matmul_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight,
                     int N, int C, int OC);

// Tied output head: logits [N,V] = inp [N,C] · wteᵀ, wte [V,C], no bias.
template <class F>
void head_forward(F* logits, const F* inp, const F* wte, int N, int C, int V);
template <class F>
void head_backward(F* dinp, F* dwte, const F* dlogits, const F* inp, const F* wte, int N, int C,
                   int V);

// Causal multi-head self-attention. qkv [B,T,3C] holds q, k, v in that
// order; head h uses channels [h*hs, (h+1)*hs) of each, hs = C/NH.
// att [B,NH,T,T]: softmax(q·k/sqrt(hs)) rows, zero above the diagonal.
// out [B,T,C]: per head att · v, heads concatenated.
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH);
// dqkv [B,T,3C] += from dout [B,T,C], given qkv and att of the forward.
template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C,
                        int NH);

// tanh-GELU: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), elementwise on n.
template <class F>
void gelu_forward(F* out, const F* inp, size_t n);
template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, size_t n);

// out = a + b, elementwise on n (out may alias a or b).
template <class F>
void residual_forward(F* out, const F* a, const F* b, size_t n);

// Row softmax + cross-entropy over targets (-1 = ignore). Returns the SUM of
// -log p[target] over counted rows (in double) and sets *count. When dlogits
// is non-null it is OVERWRITTEN with scale·(p - onehot) for counted rows and 0
// for ignored rows. logits/dlogits [N,V].
template <class F>
double crossentropy_forward_backward(F* dlogits, const F* logits, const int32_t* targets, int N,
                                     int V, double scale, int* count);

}  // namespace assay::engine::ops
