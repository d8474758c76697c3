// LoRA adapters on the GPT engine's Conv1D weights, in the layout of
// Hugging Face PEFT, and the Fisher-weighted low-rank initialisation (FILA)
// used by LoKU unlearning.
//
// Shapes (one target matrix; PEFT names and shapes, GPT-2 fan_in_fan_out):
//   W [in, out]   the frozen base weight, Conv1D layout: y = x · W + b
//   A [r, in]     lora_A.weight
//   B [out, r]    lora_B.weight
//   s = alpha / r the PEFT scaling
//   y = x · W + s · (x · Aᵀ) · Bᵀ  =  x · W_eff,   W_eff = W + s · Aᵀ · Bᵀ
// The model runs on W_eff (lora_merge) and its ordinary dense backward gives
// dW_eff = xᵀ · dy; the chain rule through W_eff then yields exactly the
// factorised gradients (lora_backward_from_dense):
//   dA = s · Bᵀ · dW_effᵀ  [r, in]      dB = s · dW_effᵀ · Aᵀ  [out, r]
// and dx = dy · W_effᵀ = dy · Wᵀ + s · (dy · B) · A is the sum over both
// paths. Base tensors are never written: LoraAdapters keeps them and only
// the adapter parameters are optimised. Training with adapters runs on the
// CPU engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "assay/engine.h"
#include "assay/status.h"

namespace assay::engine::lora {

// ------------------------------------------------------------- kernels
// Instantiated for float (the engine) and double (gradient checks). Sums
// over r run in double with a fixed order: bit-identical for any thread count.

// w_eff [in,out] = w [in,out] + s · Aᵀ · Bᵀ; A [r,in], B [out,r]. w_eff may alias w.
template <class F>
void lora_merge(F* w_eff, const F* w, const F* A, const F* B, double s, int in, int out, int r);

// dA [r,in] += s · Bᵀ · dWᵀ and dB [out,r] += s · dWᵀ · Aᵀ, from dW [in,out]
// = ∂L/∂W_eff. ACCUMULATES, like every *_backward in engine_ops.h.
template <class F>
void lora_backward_from_dense(F* dA, F* dB, const F* dW, const F* A, const F* B, double s, int in,
                              int out, int r);

// -------------------------------------------------------------- config

struct LoraConfig {
  int r = 8;
  double alpha = 16;  // scaling s = alpha / r
  // PEFT target_modules: a module matches when its name equals a target or
  // ends with "." + target ("c_proj" is both attn.c_proj and mlp.c_proj).
  std::vector<std::string> targets = {"c_attn", "c_proj", "c_fc"};
  double scale() const { return alpha / r; }
  Status validate() const;
};

// One adapted matrix.
struct AdapterTarget {
  std::string module;      // "transformer.h.0.attn.c_attn" (weight = module + ".weight")
  int in = 0, out = 0;     // Conv1D weight shape [in, out]
  size_t w_offset = 0;     // of the weight in GPT::params(), in floats
  size_t a_offset = 0;     // of A [r,in] in LoraAdapters::params()
  size_t b_offset = 0;     // of B [out,r] in LoraAdapters::params()
};

// The Conv1D weights of `model` that `cfg.targets` select, in parameter order.
// Errors when a target matches nothing.
Result<std::vector<AdapterTarget>> match_targets(const GPT& model, const LoraConfig& cfg);

// --------------------------------------------------------------- adapters

class LoraAdapters {
 public:
  // PEFT's default init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with
  // a = sqrt(5)), B = 0, so W_eff = W at step 0. The base is a copy of
  // model.params(); the same seed gives the same A.
  static Result<LoraAdapters> create(const GPT& model, const LoraConfig& cfg, uint64_t seed);
  // Adapters with given A/B values (a loaded adapter file), `params` in this
  // object's layout (see targets()).
  static Result<LoraAdapters> from_values(const GPT& model, const LoraConfig& cfg,
                                          std::span<const float> params);

  const LoraConfig& config() const { return cfg_; }
  const std::vector<AdapterTarget>& targets() const { return targets_; }
  // The frozen base parameters (a full GPT parameter buffer).
  std::span<const float> base() const { return base_; }
  // All adapters, target after target: A then B.
  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  void zero_grad();

  // Writes the base into `model` with W_eff for every target. Call after
  // each change of params() (optimizer step, init).
  Status apply(GPT& model) const;
  // grads() += the adapters' share of model.grads() (dense dW_eff of the
  // targets). Call once per optimisation step, after all backward passes.
  Status collect_grads(const GPT& model);

  // FILA (LoKU): replaces A, B and the base of every target from the
  // relative Fisher F = (imp_f/n_f) / (1e-5 + imp_r/n_r), each imp a full
  // parameter-sized buffer of summed squared gradients (accumulate_fisher):
  //   W_lin = Wᵀ [out,in];  w[o] = sqrt(Σ_i F[i,o]);  U S Vᵀ = rank-r SVD of diag(w)·W_lin
  //   S' = S / s;  A = (V·diag(√S'))ᵀ;  B = diag(1/(w + 1e-5))·U·diag(√S')
  //   W_res = W − s·Aᵀ·Bᵀ (the new frozen base), so W_res + s·Aᵀ·Bᵀ = W up to
  //   fp32 rounding and the model's outputs are unchanged.
  Status fila_init(std::span<const double> imp_f, double n_f, std::span<const double> imp_r,
                   double n_r);

 private:
  LoraConfig cfg_;
  std::vector<AdapterTarget> targets_;
  std::vector<float> base_, params_, grads_;
};

// imp[t] += n_tokens · g[t]² over the targets' weights: the batch-level
// squared gradient of a token-mean loss, weighted by its token count (LoKU's
// importance measurement). imp is a full parameter-sized buffer.
void accumulate_fisher(std::span<double> imp, std::span<const float> grads,
                       const std::vector<AdapterTarget>& targets, double n_tokens);

// ------------------------------------------------------------ PEFT files

inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterModelFile = "adapter_model.safetensors";

// Writes adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r,
// lora_alpha, target_modules, fan_in_fan_out true, bias none, lora_dropout 0,
// base_model_name_or_path) and adapter_model.safetensors with PEFT names
// "base_model.model.<module>.lora_A.weight" [r,in] and ".lora_B.weight"
// [out,r] into dir (created if missing).
Status save_adapter(const std::string& dir, const LoraAdapters& adapters,
                    const std::string& base_model_name_or_path);

// A PEFT LoRA adapter directory as read from disk.
struct AdapterFile {
  LoraConfig config;
  std::string base_model_name_or_path;
  std::vector<std::string> modules;  // in file order
  SafeTensors tensors;
};
// Reads and checks an adapter directory: peft_type "LORA", r, lora_alpha,
// target_modules (list or a single name), no DoRA / rsLoRA / per-module rank,
// lora_dropout 0 or absent, bias "none". Unknown keys are ignored as PEFT does.
Result<AdapterFile> read_adapter(const std::string& dir);
// The adapters of `file` on `model`: every target module must have both
// tensors with the shapes [r,in] / [out,r], and every tensor must belong to
// a target of the model.
Result<LoraAdapters> load_adapter(const GPT& model, const AdapterFile& file);

// `assay train merge`: loads the base checkpoint and the adapter, writes a
// plain checkpoint whose target weights are W + s·Aᵀ·Bᵀ (the PEFT
// merge_and_unload result) and whose parent is the base. Returns its hash.
Result<std::string> merge_to_checkpoint(const std::string& base_dir, const std::string& adapter_dir,
                                        const std::string& out_dir);

}  // namespace assay::engine::lora
