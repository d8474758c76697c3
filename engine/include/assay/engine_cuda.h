// Device selection and the CUDA backend of the GPT engine.
//
// Precision: parameters, gradients, optimizer state and activations are fp32
// on the device; matrix products run on tensor cores in TF32 (cuBLAS
// CUBLAS_COMPUTE_32F_FAST_TF32: 10-bit mantissa inputs, fp32 accumulation);
// softmax, LayerNorm, losses and reductions are fp32 (loss sums in double).
//
// This header compiles without the CUDA toolkit. The implementation lives in
// a module, libassay_cuda.so, opened on the first device call
// (engine_cuda_module.h); a CPU-only command never loads it. Without the
// module (a build without nvcc, or the file missing) or without a driver,
// every device entry point returns an error saying which and what to
// install, so callers need no #ifdefs.
//
// Layouts are those of engine.h: tokens [B,T] int32, logits [B,T,V] fp32,
// parameters in param_layout() order, Linear weights Conv1D [in,out].
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "assay/engine.h"
#include "assay/status.h"

namespace assay::engine::cuda {

// ------------------------------------------------------------ devices

struct Device {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // CUDA ordinal (kCuda only)
  bool is_cuda() const { return kind == Kind::kCuda; }
  std::string str() const;  // "cpu" or "cuda:N"
};

// Syntax only: "cpu", "cuda" (= cuda:0), "cuda:N" (N >= 0). "auto" is not a
// device; see resolve_device. Errors name the string and the accepted forms.
Result<Device> parse_device(std::string_view s);

// True when the CUDA backend module can be loaded (it was built with this
// binary and its CUDA libraries are present); loads it.
bool built_with_cuda();

// False when this machine certainly has no NVIDIA GPU (no driver device node,
// no NVIDIA display controller on the PCI bus) or CUDA_VISIBLE_DEVICES is
// empty; true means "ask CUDA". Cheap: loads nothing.
bool gpu_may_be_present();

// Number of visible CUDA devices. Errors: no CUDA in this build, or the CUDA
// runtime failed (the message carries cudaGetDeviceCount's error string).
Result<int> cuda_device_count();

// "auto" (or ""): cuda:0 when this build has CUDA and a GPU is visible, else
// cpu (without loading the module when gpu_may_be_present() is false). Otherwise parse_device plus availability checks: a CUDA device in a
// build without CUDA, no GPU visible, or an ordinal out of range are errors.
Result<Device> resolve_device(std::string_view s);

// Short device description for logs, e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)".
Result<std::string> device_name(int index);

// ------------------------------------------------------ device model

class DeviceModel;  // the module's model behind a CudaGPT (engine_cuda_module.h)

// Kernels for distillation on device (same formulas as obj::distill).
enum class DistillKind { kForwardKL = 0, kReverseKL = 1 };

// Mean losses of a device loss call (over the weights that count).
struct DeviceLoss {
  double loss = 0;     // mean objective (divergence for distill_backward)
  double ce = 0;       // mean cross-entropy on the targets (when targets given)
  double kl = 0;       // mean KL(teacher || student) at tau = 1 (distill only)
  double n_tokens = 0; // sum of the weights that counted
};

// A GPT with parameters, gradients, AdamW state and activations on one CUDA
// device. Created from a host GPT (parameters are uploaded); download_params
// copies them back so checkpoints are written by the CPU code.
//
// The logits buffer of the last forward doubles as the dlogits buffer: the
// loss calls below overwrite it in place with dL/dlogits, and backward()
// reads it from there (llm.c style). All calls are synchronous with respect
// to the host (errors surface at the call that caused them).
class CudaGPT {
 public:
  // mode kFrozen allocates no gradient, optimizer or activation-gradient memory.
  static Result<CudaGPT> create(const GPT& host, int device_index, Mode mode);
  CudaGPT(CudaGPT&&) noexcept;
  CudaGPT& operator=(CudaGPT&&) noexcept;
  ~CudaGPT();

  const GPTConfig& config() const;
  Mode mode() const;
  size_t num_params() const;
  int device_index() const;

  // tokens: host [B,T]; validated like GPT::forward. Logits stay on device.
  Status forward(const int32_t* tokens, int B, int T);
  int batch_B() const;
  int batch_T() const;
  // Device pointer to logits [B,T,V] of the last forward (or dlogits after a
  // loss call). Valid until the next forward.
  float* logits_device();
  // Copies the logits (or dlogits) buffer to the host; out.size() == B*T*V.
  Status copy_logits(std::span<float> out) const;
  // Copies final-LN hidden states [B,T,C] to the host.
  Status copy_hidden(std::span<float> out) const;

  // Fused softmax + cross-entropy on the logits buffer: targets host [B*T]
  // (-1 = ignore), optional host weights [B*T] (null = 1). Overwrites logits
  // with dL/dlogits = w_r (softmax - onehot) * grad_scale / sum(w) (ignored rows 0)
  // and returns the mean CE. Never materializes probabilities separately.
  Result<DeviceLoss> cross_entropy_backward(const int32_t* targets, const float* weights,
                                            double grad_scale = 1.0);
  // Per-row log p(target) into host row_logp [B*T] (0 for ignored rows), and
  // when row_coef (host [B*T]) is non-null overwrites logits with
  // dL/dz = row_coef[r] (onehot - softmax), the chain rule of sequence
  // objectives (DPO/NPO) with row_coef[r] = c_b * mask_r.
  Status logprob_gather(const int32_t* targets, std::span<float> row_logp, const float* row_coef);
  // Distillation against a teacher's device logits of the same shape.
  // weights host [B*T] (null = 1). Overwrites logits with
  // weight·dD/dz/sum(w) + ce_weight·dCE/dz (CE term only when targets given
  // and ce_weight > 0). Temperature tau applies to both models (no tau² factor).
  Result<DeviceLoss> distill_backward(const float* teacher_logits_device, DistillKind kind,
                                      double tau, double weight, const int32_t* targets,
                                      const float* weights, double ce_weight);

  // Backpropagates dlogits (the logits buffer after a loss call), ADDING into
  // the device gradients. Errors: frozen model or no forward.
  Status backward();
  // Same with dlogits from the host ([B,T,V], copied into the logits buffer).
  Status backward_from_host(const float* dlogits);
  Status zero_grad();
  // Global L2 norm of the gradients; scales them by min(1, max_norm/(norm+1e-6))
  // when max_norm > 0. Returns the pre-clip norm.
  Result<float> clip_grad_norm(float max_norm);
  // One AdamW step (torch semantics, decay only on 2-D tensors, t from 1).
  Status adamw_step(const AdamWConfig& cfg, float lr);
  int64_t adamw_t() const;

  // Copies parameters (or gradients) to a host model / buffer of num_params().
  Status download_params(GPT& host) const;
  Status download_grads(std::span<float> out) const;
  // Copies the AdamW moments to the host (num_params() each).
  Status download_adam_state(std::span<float> m, std::span<float> v) const;
  // Replaces the AdamW moments (num_params() each, param_layout() order) and
  // step count t (the next adamw_step is step t + 1): resuming a run from
  // optimizer.bin. Errors: frozen model, sizes, t < 0.
  Status upload_adam_state(std::span<const float> m, std::span<const float> v, int64_t t);

  // The module-side model this handle forwards to.
  DeviceModel& device_model() const;

  struct Impl;

 private:
  explicit CudaGPT(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace assay::engine::cuda
