// CudaModel, the device model behind CudaGPT: the GPT of model.cpp with
// parameters, gradients, AdamW state and activations on one CUDA device. The
// forward/backward sequence mirrors GPT::Impl::forward_impl/backward_impl op
// for op, calling the kernels of kernels.cuh instead of engine_ops.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_common.cuh"
#include "cuda_model.cuh"
#include "kernels.cuh"

namespace assay::engine::cuda {

namespace {

// An owned device allocation of n elements of T.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { reset(); }
  void reset() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  // Frees, then allocates n elements (contents undefined; n == 0 frees only).
  Status alloc(size_t n, const char* what) {
    reset();
    if (n == 0) return Status::Ok();
    const cudaError_t e = cudaMalloc(&p_, n * sizeof(T));
    if (e != cudaSuccess) {
      p_ = nullptr;
      return Status::Internal(std::string("cudaMalloc of ") + what + " (" + std::to_string(n * sizeof(T)) +
                              " bytes) failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
    }
    n_ = n;
    return Status::Ok();
  }
  Status zero() {
    if (n_) ACU_CHECK(cudaMemset(p_, 0, n_ * sizeof(T)));
    return Status::Ok();
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

struct LayerOffsets {
  size_t ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
};

Status upload(void* dst, const void* src, size_t bytes, const char* what) {
  const cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) return cuda_error((std::string("cudaMemcpy (upload ") + what + ")").c_str(), e);
  return Status::Ok();
}
Status download(void* dst, const void* src, size_t bytes, const char* what) {
  const cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) return cuda_error((std::string("cudaMemcpy (download ") + what + ")").c_str(), e);
  return Status::Ok();
}

}  // namespace

struct CudaModel::Impl {
  GPTConfig cfg;
  Mode mode = Mode::kTrain;
  int device = 0;
  std::vector<ParamTensor> info;
  size_t wte = 0, wpe = 0, lnfw = 0, lnfb = 0;
  std::vector<LayerOffsets> layers;
  DeviceArray<float> params, grads, adam_m, adam_v;
  DeviceArray<uint8_t> decay;
  int64_t t = 0;

  // Activations (per-layer buffers hold L copies in kTrain, one in kFrozen).
  int B = 0, T = 0;
  DeviceArray<int32_t> tokens, targets;
  DeviceArray<float> row_a, row_b, row_out1, row_out2, row_out3;  // [BT] per-row scalars
  DeviceArray<float> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, res2, ln2, ln2_mean, ln2_rstd,
      fch, fchg, res3, lnf, lnf_mean, lnf_rstd, logits;
  DeviceArray<float> attn_fwd, attn_bwd, datt, dres, dln, dqkv, datty, dfchg, dfch, dlnf;

  Status use() const {
    ACU_CHECK(cudaSetDevice(device));
    return Status::Ok();
  }
  void build_layout(std::span<const ParamTensor> layout);
  Status ensure_activations(int B_, int T_);
  Status forward_impl();
  Status backward_impl();
};

void CudaModel::Impl::build_layout(std::span<const ParamTensor> layout) {
  info.assign(layout.begin(), layout.end());
  wte = info[0].offset;
  wpe = info[1].offset;
  layers.clear();
  for (int l = 0; l < cfg.n_layer; l++) {
    const ParamTensor* p = &info[2 + 12 * (size_t)l];
    layers.push_back({p[0].offset, p[1].offset, p[2].offset, p[3].offset, p[4].offset, p[5].offset,
                      p[6].offset, p[7].offset, p[8].offset, p[9].offset, p[10].offset, p[11].offset});
  }
  lnfw = info[info.size() - 2].offset;
  lnfb = info[info.size() - 1].offset;
}

Status CudaModel::Impl::ensure_activations(int B_, int T_) {
  if (B_ == B && T_ == T) return Status::Ok();
  B = T = 0;  // stays 0 if an allocation fails
  const size_t BT = (size_t)B_ * T_, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size;
  const size_t Lk = mode == Mode::kTrain ? cfg.n_layer : 1;
  const size_t att_n = (size_t)B_ * NH * T_ * T_;
  ASSAY_RETURN_IF_ERROR(tokens.alloc(BT, "tokens"));
  ASSAY_RETURN_IF_ERROR(targets.alloc(BT, "targets"));
  for (DeviceArray<float>* r : {&row_a, &row_b, &row_out1, &row_out2, &row_out3})
    ASSAY_RETURN_IF_ERROR(r->alloc(BT, "per-row scalars"));
  ASSAY_RETURN_IF_ERROR(encoded.alloc(BT * C, "encoded"));
  ASSAY_RETURN_IF_ERROR(ln1.alloc(Lk * BT * C, "ln1"));
  ASSAY_RETURN_IF_ERROR(ln1_mean.alloc(Lk * BT, "ln1_mean"));
  ASSAY_RETURN_IF_ERROR(ln1_rstd.alloc(Lk * BT, "ln1_rstd"));
  ASSAY_RETURN_IF_ERROR(qkv.alloc(Lk * BT * 3 * C, "qkv"));
  ASSAY_RETURN_IF_ERROR(atty.alloc(Lk * BT * C, "atty"));
  ASSAY_RETURN_IF_ERROR(att.alloc(Lk * att_n, "att"));
  ASSAY_RETURN_IF_ERROR(res2.alloc(Lk * BT * C, "res2"));
  ASSAY_RETURN_IF_ERROR(ln2.alloc(Lk * BT * C, "ln2"));
  ASSAY_RETURN_IF_ERROR(ln2_mean.alloc(Lk * BT, "ln2_mean"));
  ASSAY_RETURN_IF_ERROR(ln2_rstd.alloc(Lk * BT, "ln2_rstd"));
  ASSAY_RETURN_IF_ERROR(fch.alloc(Lk * BT * 4 * C, "fch"));
  ASSAY_RETURN_IF_ERROR(fchg.alloc(Lk * BT * 4 * C, "fchg"));
  ASSAY_RETURN_IF_ERROR(res3.alloc(Lk * BT * C, "res3"));
  ASSAY_RETURN_IF_ERROR(lnf.alloc(BT * C, "lnf"));
  ASSAY_RETURN_IF_ERROR(lnf_mean.alloc(BT, "lnf_mean"));
  ASSAY_RETURN_IF_ERROR(lnf_rstd.alloc(BT, "lnf_rstd"));
  ASSAY_RETURN_IF_ERROR(logits.alloc(BT * V, "logits"));
  ASSAY_RETURN_IF_ERROR(attn_fwd.alloc(k::attention_scratch_floats(B_, T_, (int)C), "attention scratch"));
  if (mode == Mode::kTrain) {
    ASSAY_RETURN_IF_ERROR(attn_bwd.alloc(k::attention_scratch_floats(B_, T_, (int)C), "attention grad scratch"));
    ASSAY_RETURN_IF_ERROR(datt.alloc(att_n, "datt"));
    ASSAY_RETURN_IF_ERROR(dres.alloc(BT * C, "dres"));
    ASSAY_RETURN_IF_ERROR(dln.alloc(BT * C, "dln"));
    ASSAY_RETURN_IF_ERROR(dqkv.alloc(BT * 3 * C, "dqkv"));
    ASSAY_RETURN_IF_ERROR(datty.alloc(BT * C, "datty"));
    ASSAY_RETURN_IF_ERROR(dfchg.alloc(BT * 4 * C, "dfchg"));
    ASSAY_RETURN_IF_ERROR(dfch.alloc(BT * 4 * C, "dfch"));
    ASSAY_RETURN_IF_ERROR(dlnf.alloc(BT * C, "dlnf"));
  }
  B = B_;
  T = T_;
  return Status::Ok();
}

Status CudaModel::Impl::forward_impl() {
  using namespace k;
  const int BT = B * T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size;
  const size_t s = mode == Mode::kTrain ? 1 : 0;
  const size_t att_n = (size_t)B * NH * T * T;
  const float* p = params.get();
  ASSAY_RETURN_IF_ERROR(encoder_forward(encoded.get(), tokens.get(), p + wte, p + wpe, B, T, C));
  const float* residual = encoded.get();
  for (int l = 0; l < cfg.n_layer; l++) {
    const LayerOffsets& o = layers[l];
    const size_t li = s * l;
    float* l_ln1 = ln1.get() + li * BT * C;
    float* l_ln1m = ln1_mean.get() + li * BT;
    float* l_ln1r = ln1_rstd.get() + li * BT;
    float* l_qkv = qkv.get() + li * BT * 3 * C;
    float* l_atty = atty.get() + li * BT * C;
    float* l_att = att.get() + li * att_n;
    float* l_res2 = res2.get() + li * BT * C;
    float* l_ln2 = ln2.get() + li * BT * C;
    float* l_ln2m = ln2_mean.get() + li * BT;
    float* l_ln2r = ln2_rstd.get() + li * BT;
    float* l_fch = fch.get() + li * BT * 4 * C;
    float* l_fchg = fchg.get() + li * BT * 4 * C;
    float* l_res3 = res3.get() + li * BT * C;
    ASSAY_RETURN_IF_ERROR(layernorm_forward(l_ln1, l_ln1m, l_ln1r, residual, p + o.ln1w, p + o.ln1b, BT, C));
    ASSAY_RETURN_IF_ERROR(matmul_forward(l_qkv, l_ln1, p + o.qkvw, p + o.qkvb, BT, C, 3 * C));
    ASSAY_RETURN_IF_ERROR(attention_forward(l_atty, l_att, l_qkv, attn_fwd.get(), B, T, C, NH));
    ASSAY_RETURN_IF_ERROR(matmul_forward(l_res2, l_atty, p + o.attprojw, p + o.attprojb, BT, C, C));
    ASSAY_RETURN_IF_ERROR(residual_forward(l_res2, l_res2, residual, (size_t)BT * C));
    ASSAY_RETURN_IF_ERROR(layernorm_forward(l_ln2, l_ln2m, l_ln2r, l_res2, p + o.ln2w, p + o.ln2b, BT, C));
    ASSAY_RETURN_IF_ERROR(matmul_forward(l_fch, l_ln2, p + o.fcw, p + o.fcb, BT, C, 4 * C));
    ASSAY_RETURN_IF_ERROR(gelu_forward(l_fchg, l_fch, (size_t)BT * 4 * C));
    // In kFrozen l_res3 aliases `residual`, which is no longer read here.
    ASSAY_RETURN_IF_ERROR(matmul_forward(l_res3, l_fchg, p + o.fcprojw, p + o.fcprojb, BT, 4 * C, C));
    ASSAY_RETURN_IF_ERROR(residual_forward(l_res3, l_res3, l_res2, (size_t)BT * C));
    residual = l_res3;
  }
  ASSAY_RETURN_IF_ERROR(
      layernorm_forward(lnf.get(), lnf_mean.get(), lnf_rstd.get(), residual, p + lnfw, p + lnfb, BT, C));
  return head_forward(logits.get(), lnf.get(), p + wte, BT, C, V);
}

Status CudaModel::Impl::backward_impl() {
  using namespace k;
  const int BT = B * T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size, L = cfg.n_layer;
  const size_t att_n = (size_t)B * NH * T * T;
  const float* p = params.get();
  float* g = grads.get();
  const float* dlogits = logits.get();

  ASSAY_RETURN_IF_ERROR(dlnf.zero());
  ASSAY_RETURN_IF_ERROR(head_backward(dlnf.get(), g + wte, dlogits, lnf.get(), p + wte, BT, C, V));
  ASSAY_RETURN_IF_ERROR(dres.zero());
  const float* last = res3.get() + (size_t)(L - 1) * BT * C;
  ASSAY_RETURN_IF_ERROR(layernorm_backward(dres.get(), g + lnfw, g + lnfb, dlnf.get(), last, p + lnfw,
                                           lnf_mean.get(), lnf_rstd.get(), BT, C));
  for (int l = L - 1; l >= 0; l--) {
    const LayerOffsets& o = layers[l];
    const float* residual = l == 0 ? encoded.get() : res3.get() + (size_t)(l - 1) * BT * C;
    const float* l_ln1 = ln1.get() + (size_t)l * BT * C;
    const float* l_ln1m = ln1_mean.get() + (size_t)l * BT;
    const float* l_ln1r = ln1_rstd.get() + (size_t)l * BT;
    const float* l_qkv = qkv.get() + (size_t)l * BT * 3 * C;
    const float* l_atty = atty.get() + (size_t)l * BT * C;
    const float* l_att = att.get() + (size_t)l * att_n;
    const float* l_res2 = res2.get() + (size_t)l * BT * C;
    const float* l_ln2 = ln2.get() + (size_t)l * BT * C;
    const float* l_ln2m = ln2_mean.get() + (size_t)l * BT;
    const float* l_ln2r = ln2_rstd.get() + (size_t)l * BT;
    const float* l_fch = fch.get() + (size_t)l * BT * 4 * C;
    const float* l_fchg = fchg.get() + (size_t)l * BT * 4 * C;

    // dres holds ∂L/∂res3; the MLP branch adds its part of ∂L/∂res2.
    ASSAY_RETURN_IF_ERROR(dfchg.zero());
    ASSAY_RETURN_IF_ERROR(matmul_backward(dfchg.get(), g + o.fcprojw, g + o.fcprojb, dres.get(), l_fchg,
                                          p + o.fcprojw, BT, 4 * C, C));
    ASSAY_RETURN_IF_ERROR(dfch.zero());
    ASSAY_RETURN_IF_ERROR(gelu_backward(dfch.get(), l_fch, dfchg.get(), (size_t)BT * 4 * C));
    ASSAY_RETURN_IF_ERROR(dln.zero());
    ASSAY_RETURN_IF_ERROR(
        matmul_backward(dln.get(), g + o.fcw, g + o.fcb, dfch.get(), l_ln2, p + o.fcw, BT, C, 4 * C));
    ASSAY_RETURN_IF_ERROR(layernorm_backward(dres.get(), g + o.ln2w, g + o.ln2b, dln.get(), l_res2, p + o.ln2w,
                                             l_ln2m, l_ln2r, BT, C));
    // dres holds ∂L/∂res2; the attention branch adds its part of ∂L/∂residual.
    ASSAY_RETURN_IF_ERROR(datty.zero());
    ASSAY_RETURN_IF_ERROR(matmul_backward(datty.get(), g + o.attprojw, g + o.attprojb, dres.get(), l_atty,
                                          p + o.attprojw, BT, C, C));
    ASSAY_RETURN_IF_ERROR(dqkv.zero());
    ASSAY_RETURN_IF_ERROR(attention_backward(dqkv.get(), datty.get(), l_qkv, l_att, datt.get(), attn_bwd.get(),
                                             attn_fwd.get(), B, T, C, NH));
    ASSAY_RETURN_IF_ERROR(dln.zero());
    ASSAY_RETURN_IF_ERROR(
        matmul_backward(dln.get(), g + o.qkvw, g + o.qkvb, dqkv.get(), l_ln1, p + o.qkvw, BT, C, 3 * C));
    ASSAY_RETURN_IF_ERROR(layernorm_backward(dres.get(), g + o.ln1w, g + o.ln1b, dln.get(), residual,
                                             p + o.ln1w, l_ln1m, l_ln1r, BT, C));
  }
  return encoder_backward(g + wte, g + wpe, dres.get(), tokens.get(), B, T, C);
}

// ---------------------------------------------------------------- API

CudaModel::CudaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaModel::~CudaModel() {
  if (impl_) cudaSetDevice(impl_->device);  // buffers are freed on their device
}

Result<std::unique_ptr<DeviceModel>> CudaModel::create(const ModelInit& init) {
  const int device_index = init.device;
  const Mode mode = init.mode;
  const size_t np = init.params.size();
  const size_t want_tensors = 4 + 12 * (size_t)std::max(init.config.n_layer, 0);
  if (init.layout.size() != want_tensors ||
      init.layout.back().offset + init.layout.back().numel != np)
    return Status::Invalid("CudaGPT: the host parameters (" + std::to_string(np) + " floats in " +
                           std::to_string(init.layout.size()) +
                           " tensors) do not match the parameter layout of the config");
  ASSAY_ASSIGN_OR_RETURN(int n, visible_device_count());
  if (device_index < 0 || device_index >= n)
    return Status::Invalid("CudaGPT: device ordinal " + std::to_string(device_index) + " out of range (" +
                           std::to_string(n) + " CUDA device(s) visible)");
  auto impl = std::make_unique<Impl>();
  impl->cfg = init.config;
  impl->mode = mode;
  impl->device = device_index;
  ASSAY_RETURN_IF_ERROR(impl->use());
  impl->build_layout(init.layout);
  ASSAY_RETURN_IF_ERROR(impl->params.alloc(np, "parameters"));
  ASSAY_RETURN_IF_ERROR(upload(impl->params.get(), init.params.data(), np * sizeof(float), "parameters"));
  if (mode == Mode::kTrain) {
    ASSAY_RETURN_IF_ERROR(impl->grads.alloc(np, "gradients"));
    ASSAY_RETURN_IF_ERROR(impl->grads.zero());
    ASSAY_RETURN_IF_ERROR(impl->adam_m.alloc(np, "AdamW m"));
    ASSAY_RETURN_IF_ERROR(impl->adam_m.zero());
    ASSAY_RETURN_IF_ERROR(impl->adam_v.alloc(np, "AdamW v"));
    ASSAY_RETURN_IF_ERROR(impl->adam_v.zero());
    std::vector<uint8_t> mask(np, 0);
    for (const ParamTensor& t : impl->info)
      if (t.decay) std::fill(mask.begin() + t.offset, mask.begin() + t.offset + t.numel, 1);
    ASSAY_RETURN_IF_ERROR(impl->decay.alloc(np, "AdamW decay mask"));
    ASSAY_RETURN_IF_ERROR(upload(impl->decay.get(), mask.data(), np, "AdamW decay mask"));
  }
  return std::unique_ptr<DeviceModel>(new CudaModel(std::move(impl)));
}

const GPTConfig& CudaModel::config() const { return impl_->cfg; }
Mode CudaModel::mode() const { return impl_->mode; }
size_t CudaModel::num_params() const { return impl_->params.size(); }
int CudaModel::device_index() const { return impl_->device; }
int CudaModel::batch_B() const { return impl_->B; }
int CudaModel::batch_T() const { return impl_->T; }
float* CudaModel::logits_device() { return impl_->logits.get(); }
int64_t CudaModel::adamw_t() const { return impl_->t; }

Status CudaModel::forward(const int32_t* tokens, int B, int T) {
  const GPTConfig& c = impl_->cfg;
  if (B < 1) return Status::Invalid("CudaGPT::forward: B must be >= 1, got " + std::to_string(B));
  if (T < 1 || T > c.n_positions)
    return Status::Invalid("CudaGPT::forward: T must be 1.." + std::to_string(c.n_positions) +
                           " (n_positions), got " + std::to_string(T));
  const size_t BT = (size_t)B * T;
  for (size_t i = 0; i < BT; i++) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      return Status::Invalid("CudaGPT::forward: token at index " + std::to_string(i) + " is " +
                             std::to_string(tokens[i]) + ", expected 0.." + std::to_string(c.vocab_size - 1));
  }
  ASSAY_RETURN_IF_ERROR(impl_->use());
  ASSAY_RETURN_IF_ERROR(impl_->ensure_activations(B, T));
  ASSAY_RETURN_IF_ERROR(upload(impl_->tokens.get(), tokens, BT * sizeof(int32_t), "tokens"));
  ASSAY_RETURN_IF_ERROR(impl_->forward_impl());
  return k::sync("CudaGPT::forward");
}

Status CudaModel::copy_logits(std::span<float> out) const {
  const size_t n = (size_t)impl_->B * impl_->T * impl_->cfg.vocab_size;
  if (impl_->B == 0) return Status::FailedPrecondition("CudaGPT::copy_logits: no forward() yet");
  if (out.size() != n)
    return Status::Invalid("CudaGPT::copy_logits: expected " + std::to_string(n) + " floats, got " +
                           std::to_string(out.size()));
  ASSAY_RETURN_IF_ERROR(impl_->use());
  return download(out.data(), impl_->logits.get(), n * sizeof(float), "logits");
}

Status CudaModel::copy_hidden(std::span<float> out) const {
  const size_t n = (size_t)impl_->B * impl_->T * impl_->cfg.n_embd;
  if (impl_->B == 0) return Status::FailedPrecondition("CudaGPT::copy_hidden: no forward() yet");
  if (out.size() != n)
    return Status::Invalid("CudaGPT::copy_hidden: expected " + std::to_string(n) + " floats, got " +
                           std::to_string(out.size()));
  ASSAY_RETURN_IF_ERROR(impl_->use());
  return download(out.data(), impl_->lnf.get(), n * sizeof(float), "hidden");
}

namespace {

// Host-side checks shared by the loss calls: a forward happened and the
// targets are < V (negative = ignored).
Status check_targets(const char* fn, int B, const int32_t* targets, size_t n, int V) {
  if (B == 0) return Status::FailedPrecondition(std::string(fn) + ": no forward() yet");
  if (!targets) return Status::Ok();
  for (size_t r = 0; r < n; r++)
    if (targets[r] >= V)
      return Status::Invalid(std::string(fn) + ": targets[" + std::to_string(r) + "]: expected < vocab size " +
                             std::to_string(V) + ", got " + std::to_string(targets[r]));
  return Status::Ok();
}

}  // namespace

Result<DeviceLoss> CudaModel::cross_entropy_backward(const int32_t* targets, const float* weights,
                                                   double grad_scale) {
  Impl& m = *impl_;
  const size_t n = (size_t)m.B * m.T;
  const int V = m.cfg.vocab_size;
  if (!targets) return Status::Invalid("CudaGPT::cross_entropy_backward: targets are required");
  ASSAY_RETURN_IF_ERROR(check_targets("CudaGPT::cross_entropy_backward", m.B, targets, n, V));
  std::vector<double> w(n);
  double N = 0;
  for (size_t r = 0; r < n; r++) {
    w[r] = targets[r] < 0 ? 0.0 : (weights ? (double)weights[r] : 1.0);
    N += w[r];
  }
  std::vector<float> scale(n);
  for (size_t r = 0; r < n; r++) scale[r] = N > 0 ? (float)(grad_scale * w[r] / N) : 0.0f;
  ASSAY_RETURN_IF_ERROR(m.use());
  ASSAY_RETURN_IF_ERROR(upload(m.targets.get(), targets, n * sizeof(int32_t), "targets"));
  ASSAY_RETURN_IF_ERROR(upload(m.row_a.get(), scale.data(), n * sizeof(float), "row scales"));
  ASSAY_RETURN_IF_ERROR(k::crossentropy_forward_backward(m.logits.get(), m.row_out1.get(), m.targets.get(),
                                                         m.row_a.get(), (int)n, V));
  std::vector<float> logp(n);
  ASSAY_RETURN_IF_ERROR(download(logp.data(), m.row_out1.get(), n * sizeof(float), "row log-probs"));
  DeviceLoss out;
  out.n_tokens = N;
  double s = 0;
  for (size_t r = 0; r < n; r++) s -= w[r] * logp[r];
  out.loss = out.ce = N > 0 ? s / N : 0.0;
  return out;
}

Status CudaModel::logprob_gather(const int32_t* targets, std::span<float> row_logp, const float* row_coef) {
  Impl& m = *impl_;
  const size_t n = (size_t)m.B * m.T;
  if (!targets) return Status::Invalid("CudaGPT::logprob_gather: targets are required");
  ASSAY_RETURN_IF_ERROR(check_targets("CudaGPT::logprob_gather", m.B, targets, n, m.cfg.vocab_size));
  if (row_logp.size() != n)
    return Status::Invalid("CudaGPT::logprob_gather: row_logp must hold B*T = " + std::to_string(n) +
                           " floats, got " + std::to_string(row_logp.size()));
  ASSAY_RETURN_IF_ERROR(m.use());
  ASSAY_RETURN_IF_ERROR(upload(m.targets.get(), targets, n * sizeof(int32_t), "targets"));
  const float* scale = nullptr;
  if (row_coef) {
    // dL/dz = c (onehot − q) = (−c)(q − onehot)
    std::vector<float> neg(n);
    for (size_t r = 0; r < n; r++) neg[r] = -row_coef[r];
    ASSAY_RETURN_IF_ERROR(upload(m.row_a.get(), neg.data(), n * sizeof(float), "row coefficients"));
    scale = m.row_a.get();
  }
  ASSAY_RETURN_IF_ERROR(k::crossentropy_forward_backward(m.logits.get(), m.row_out1.get(), m.targets.get(),
                                                         scale, (int)n, m.cfg.vocab_size));
  return download(row_logp.data(), m.row_out1.get(), n * sizeof(float), "row log-probs");
}

Result<DeviceLoss> CudaModel::distill_backward(const float* teacher_logits, DistillKind kind, double tau,
                                             double weight, const int32_t* targets, const float* weights,
                                             double ce_weight) {
  Impl& m = *impl_;
  const size_t n = (size_t)m.B * m.T;
  const int V = m.cfg.vocab_size;
  if (!teacher_logits) return Status::Invalid("CudaGPT::distill_backward: teacher logits are null");
  if (!(tau > 0)) return Status::Invalid("CudaGPT::distill_backward: tau must be > 0, got " + std::to_string(tau));
  ASSAY_RETURN_IF_ERROR(check_targets("CudaGPT::distill_backward", m.B, targets, n, V));
  // Divergence weights: the mask only; CE weights: mask and target >= 0.
  std::vector<double> wd(n), wc(n);
  double Nd = 0, Nc = 0;
  for (size_t r = 0; r < n; r++) {
    wd[r] = weights ? (double)weights[r] : 1.0;
    wc[r] = (targets && targets[r] >= 0) ? wd[r] : 0.0;
    Nd += wd[r];
    Nc += wc[r];
  }
  std::vector<float> ds(n), cs(n);
  for (size_t r = 0; r < n; r++) {
    ds[r] = Nd > 0 ? (float)(weight * wd[r] / Nd) : 0.0f;
    cs[r] = Nc > 0 ? (float)(ce_weight * wc[r] / Nc) : 0.0f;
  }
  const bool use_ce = targets && ce_weight > 0;
  ASSAY_RETURN_IF_ERROR(m.use());
  if (targets) ASSAY_RETURN_IF_ERROR(upload(m.targets.get(), targets, n * sizeof(int32_t), "targets"));
  ASSAY_RETURN_IF_ERROR(upload(m.row_a.get(), ds.data(), n * sizeof(float), "divergence scales"));
  ASSAY_RETURN_IF_ERROR(upload(m.row_b.get(), cs.data(), n * sizeof(float), "CE scales"));
  ASSAY_RETURN_IF_ERROR(k::distill_forward_backward(
      m.logits.get(), teacher_logits, m.row_out1.get(), m.row_out2.get(), m.row_out3.get(),
      targets ? m.targets.get() : nullptr, m.row_a.get(), use_ce ? m.row_b.get() : nullptr,
      kind == DistillKind::kForwardKL ? 0 : 1, (float)tau, (int)n, V));
  std::vector<float> div(n), kl(n), lp(n);
  ASSAY_RETURN_IF_ERROR(download(div.data(), m.row_out1.get(), n * sizeof(float), "row divergences"));
  ASSAY_RETURN_IF_ERROR(download(kl.data(), m.row_out2.get(), n * sizeof(float), "row KL"));
  ASSAY_RETURN_IF_ERROR(download(lp.data(), m.row_out3.get(), n * sizeof(float), "row log-probs"));
  DeviceLoss out;
  out.n_tokens = Nd;
  double sd = 0, sk = 0, sc = 0;
  for (size_t r = 0; r < n; r++) {
    sd += wd[r] * div[r];
    sk += wd[r] * kl[r];
    sc -= wc[r] * lp[r];
  }
  if (Nd > 0) {
    out.loss = sd / Nd;
    out.kl = sk / Nd;
  }
  if (Nc > 0) out.ce = sc / Nc;
  return out;
}

Status CudaModel::backward() {
  if (impl_->mode != Mode::kTrain)
    return Status::FailedPrecondition("CudaGPT::backward: model is frozen (forward only)");
  if (impl_->B == 0) return Status::FailedPrecondition("CudaGPT::backward: no forward() yet");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  ASSAY_RETURN_IF_ERROR(impl_->backward_impl());
  return k::sync("CudaGPT::backward");
}

Status CudaModel::backward_from_host(const float* dlogits) {
  if (!dlogits) return Status::Invalid("CudaGPT::backward_from_host: dlogits is null");
  if (impl_->B == 0) return Status::FailedPrecondition("CudaGPT::backward_from_host: no forward() yet");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  ASSAY_RETURN_IF_ERROR(upload(impl_->logits.get(), dlogits, impl_->logits.size() * sizeof(float), "dlogits"));
  return backward();
}

Status CudaModel::zero_grad() {
  if (impl_->mode != Mode::kTrain) return Status::Ok();
  ASSAY_RETURN_IF_ERROR(impl_->use());
  return impl_->grads.zero();
}

Result<float> CudaModel::clip_grad_norm(float max_norm) {
  if (impl_->mode != Mode::kTrain)
    return Status::FailedPrecondition("CudaGPT::clip_grad_norm: model is frozen (no gradients)");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  double ss = 0;
  ASSAY_RETURN_IF_ERROR(k::sum_squares(impl_->grads.get(), impl_->grads.size(), &ss));
  const float norm = (float)std::sqrt(ss);
  if (max_norm > 0) {
    const float s = std::min(1.0f, max_norm / (norm + 1e-6f));
    if (s < 1.0f) ASSAY_RETURN_IF_ERROR(k::scale(impl_->grads.get(), impl_->grads.size(), s));
  }
  return norm;
}

Status CudaModel::adamw_step(const AdamWConfig& cfg, float lr) {
  if (impl_->mode != Mode::kTrain)
    return Status::FailedPrecondition("CudaGPT::adamw_step: model is frozen (no optimizer state)");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  impl_->t++;
  const double bc1 = 1.0 - std::pow((double)cfg.beta1, (double)impl_->t);
  const double bc2 = 1.0 - std::pow((double)cfg.beta2, (double)impl_->t);
  ASSAY_RETURN_IF_ERROR(k::adamw_update(impl_->params.get(), impl_->grads.get(), impl_->adam_m.get(),
                                        impl_->adam_v.get(), impl_->decay.get(), impl_->params.size(), lr,
                                        cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, bc1, bc2));
  return k::sync("CudaGPT::adamw_step");
}

Status CudaModel::download_params(std::span<float> out) const {
  if (out.size() != impl_->params.size())
    return Status::Invalid("CudaGPT::download_params: expected " + std::to_string(impl_->params.size()) +
                           " floats, got " + std::to_string(out.size()));
  ASSAY_RETURN_IF_ERROR(impl_->use());
  return download(out.data(), impl_->params.get(), out.size() * sizeof(float), "parameters");
}

Status CudaModel::download_grads(std::span<float> out) const {
  if (impl_->mode != Mode::kTrain) return Status::FailedPrecondition("CudaGPT::download_grads: model is frozen");
  if (out.size() != impl_->grads.size())
    return Status::Invalid("CudaGPT::download_grads: expected " + std::to_string(impl_->grads.size()) +
                           " floats, got " + std::to_string(out.size()));
  ASSAY_RETURN_IF_ERROR(impl_->use());
  return download(out.data(), impl_->grads.get(), out.size() * sizeof(float), "gradients");
}

Status CudaModel::download_adam_state(std::span<float> m, std::span<float> v) const {
  if (impl_->mode != Mode::kTrain)
    return Status::FailedPrecondition("CudaGPT::download_adam_state: model is frozen");
  const size_t n = impl_->params.size();
  if (m.size() != n || v.size() != n)
    return Status::Invalid("CudaGPT::download_adam_state: expected " + std::to_string(n) + " floats each");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  ASSAY_RETURN_IF_ERROR(download(m.data(), impl_->adam_m.get(), n * sizeof(float), "AdamW m"));
  return download(v.data(), impl_->adam_v.get(), n * sizeof(float), "AdamW v");
}

Status CudaModel::upload_adam_state(std::span<const float> m, std::span<const float> v, int64_t t) {
  if (impl_->mode != Mode::kTrain)
    return Status::FailedPrecondition("CudaGPT::upload_adam_state: model is frozen (no optimizer state)");
  const size_t n = impl_->params.size();
  if (m.size() != n || v.size() != n)
    return Status::Invalid("CudaGPT::upload_adam_state: expected " + std::to_string(n) + " floats each, got m " +
                           std::to_string(m.size()) + " and v " + std::to_string(v.size()));
  if (t < 0) return Status::Invalid("CudaGPT::upload_adam_state: step count " + std::to_string(t) + " < 0");
  ASSAY_RETURN_IF_ERROR(impl_->use());
  ASSAY_RETURN_IF_ERROR(upload(impl_->adam_m.get(), m.data(), n * sizeof(float), "AdamW m"));
  ASSAY_RETURN_IF_ERROR(upload(impl_->adam_v.get(), v.data(), n * sizeof(float), "AdamW v"));
  impl_->t = t;  // set only once both moments are in place
  return Status::Ok();
}

}  // namespace assay::engine::cuda
