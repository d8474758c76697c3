// GPT-2 style decoder (fp32, CPU): parameter layout, forward and backward.
//
// Parameters live in one contiguous buffer, tensor after tensor in the order
//   wte [V,C], wpe [P,C], then per block
//   ln_1.{weight,bias} [C], attn.c_attn.{weight [C,3C], bias [3C]},
//   attn.c_proj.{weight [C,C], bias [C]}, ln_2.{weight,bias} [C],
//   mlp.c_fc.{weight [C,4C], bias [4C]}, mlp.c_proj.{weight [4C,C], bias [C]},
//   then ln_f.{weight,bias} [C].
// Linear weights are Hugging Face Conv1D [in, out], so checkpoints copy
// tensors as they are.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "assay/engine.h"
#include "assay/engine_ops.h"
#include "ops_internal.h"

namespace assay::engine {

void set_num_threads(int n) {
  n = std::max(1, n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
int num_threads() { return omp_get_max_threads(); }

Status GPTConfig::validate() const {
  auto bad = [](const char* f, int v, const char* want) {
    return Status::Invalid(std::string("GPT config: ") + f + " must be " + want + ", got " +
                           std::to_string(v));
  };
  if (vocab_size < 1 || vocab_size > (1 << 24)) return bad("vocab_size", vocab_size, "1..16777216");
  if (n_positions < 1 || n_positions > (1 << 20))
    return bad("n_positions", n_positions, "1..1048576");
  if (n_layer < 1 || n_layer > 1024) return bad("n_layer", n_layer, "1..1024");
  if (n_embd < 1 || n_embd > 65536) return bad("n_embd", n_embd, "1..65536");
  if (n_head < 1 || n_head > n_embd) return bad("n_head", n_head, "1..n_embd");
  if (n_embd % n_head != 0) {
    return Status::Invalid("GPT config: n_head must divide n_embd (" + std::to_string(n_embd) +
                           "), got " + std::to_string(n_head));
  }
  return Status::Ok();
}

size_t GPTConfig::num_params() const {
  const size_t V = vocab_size, P = n_positions, C = n_embd, L = n_layer;
  const size_t per_layer =
      2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C);
  return V * C + P * C + L * per_layer + 2 * C;
}

namespace {

// Offsets (in floats) of one block's tensors in the parameter buffer.
struct LayerOffsets {
  size_t ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
};

// Deterministic normal sampler: splitmix64 bits, Box-Muller pairs. Chosen
// over <random> distributions, whose output is implementation-defined.
class NormalRng {
 public:
  explicit NormalRng(uint64_t seed) : s_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t bits() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // In (0, 1]: 53 random bits, never 0 so that log() is finite.
  double uniform() { return ((bits() >> 11) + 1) * (1.0 / 9007199254740992.0); }
  uint64_t s_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace

struct GPT::Impl {
  GPTConfig cfg;
  Mode mode = Mode::kTrain;
  std::vector<ParamTensor> info;
  std::vector<float> params, grads;
  size_t wte = 0, wpe = 0, lnfw = 0, lnfb = 0;
  std::vector<LayerOffsets> layers;

  // Activations of the last forward. Per-layer buffers hold L copies in
  // kTrain and one reused copy in kFrozen (stride 0 between layers).
  int B = 0, T = 0;
  std::vector<int32_t> tokens;
  std::vector<float> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, res2, ln2, ln2_mean,
      ln2_rstd, fch, fchg, res3, lnf, lnf_mean, lnf_rstd, logits;
  // Backward scratch, reused across layers (kTrain only).
  std::vector<float> dres, dln, dqkv, datty, dfchg, dlnf;

  void build_layout();
  void ensure_activations(int B_, int T_);
  void forward_impl();
  void backward_impl(const float* dlogits, const float* dhidden);
};

std::vector<ParamTensor> param_layout(const GPTConfig& cfg) {
  const int64_t V = cfg.vocab_size, P = cfg.n_positions, C = cfg.n_embd;
  std::vector<ParamTensor> info;
  size_t off = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    ParamTensor t;
    t.name = std::move(name);
    t.numel = 1;
    for (int64_t d : shape) t.numel *= (size_t)d;
    t.decay = shape.size() == 2;
    t.shape = std::move(shape);
    t.offset = off;
    off += t.numel;
    info.push_back(std::move(t));
  };
  add("transformer.wte.weight", {V, C});
  add("transformer.wpe.weight", {P, C});
  for (int l = 0; l < cfg.n_layer; l++) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    add(p + "ln_1.weight", {C});
    add(p + "ln_1.bias", {C});
    add(p + "attn.c_attn.weight", {C, 3 * C});
    add(p + "attn.c_attn.bias", {3 * C});
    add(p + "attn.c_proj.weight", {C, C});
    add(p + "attn.c_proj.bias", {C});
    add(p + "ln_2.weight", {C});
    add(p + "ln_2.bias", {C});
    add(p + "mlp.c_fc.weight", {C, 4 * C});
    add(p + "mlp.c_fc.bias", {4 * C});
    add(p + "mlp.c_proj.weight", {4 * C, C});
    add(p + "mlp.c_proj.bias", {C});
  }
  add("transformer.ln_f.weight", {C});
  add("transformer.ln_f.bias", {C});
  return info;
}

void GPT::Impl::build_layout() {
  info = param_layout(cfg);
  // Offsets follow the fixed order of param_layout: 2 embeddings, 12 tensors
  // per block, 2 for ln_f.
  wte = info[0].offset;
  wpe = info[1].offset;
  layers.clear();
  for (int l = 0; l < cfg.n_layer; l++) {
    const ParamTensor* t = &info[2 + 12 * (size_t)l];
    layers.push_back({t[0].offset, t[1].offset, t[2].offset, t[3].offset, t[4].offset, t[5].offset,
                      t[6].offset, t[7].offset, t[8].offset, t[9].offset, t[10].offset,
                      t[11].offset});
  }
  lnfw = info[info.size() - 2].offset;
  lnfb = info[info.size() - 1].offset;
}

void GPT::Impl::ensure_activations(int B_, int T_) {
  B = B_;
  T = T_;
  const size_t BT = (size_t)B * T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size;
  const size_t Lk = mode == Mode::kTrain ? cfg.n_layer : 1;
  // resize() keeps the allocation when the size repeats, the common case.
  tokens.resize(BT);
  encoded.resize(BT * C);
  ln1.resize(Lk * BT * C);
  ln1_mean.resize(Lk * BT);
  ln1_rstd.resize(Lk * BT);
  qkv.resize(Lk * BT * 3 * C);
  atty.resize(Lk * BT * C);
  // kFrozen keeps no probabilities: one [T,T] scratch serves every head.
  att.resize(mode == Mode::kTrain ? Lk * B * NH * T * T : (size_t)T * T);
  res2.resize(Lk * BT * C);
  ln2.resize(Lk * BT * C);
  ln2_mean.resize(Lk * BT);
  ln2_rstd.resize(Lk * BT);
  fch.resize(Lk * BT * 4 * C);
  fchg.resize(Lk * BT * 4 * C);
  res3.resize(Lk * BT * C);
  lnf.resize(BT * C);
  lnf_mean.resize(BT);
  lnf_rstd.resize(BT);
  logits.resize(BT * V);
  if (mode == Mode::kTrain) {
    dres.resize(BT * C);
    dln.resize(BT * C);
    dqkv.resize(BT * 3 * C);
    datty.resize(BT * C);
    dfchg.resize(BT * 4 * C);
    dlnf.resize(BT * C);
  }
}

void GPT::Impl::forward_impl() {
  using namespace ops;
  const int BT = B * T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size;
  const size_t s = mode == Mode::kTrain ? 1 : 0;  // layer stride selector
  const float* p = params.data();
  encoder_forward(encoded.data(), tokens.data(), p + wte, p + wpe, B, T, C);
  const float* residual = encoded.data();
  for (int l = 0; l < cfg.n_layer; l++) {
    const LayerOffsets& o = layers[l];
    const size_t li = s * l;
    float* l_ln1 = ln1.data() + li * BT * C;
    float* l_ln1m = ln1_mean.data() + li * BT;
    float* l_ln1r = ln1_rstd.data() + li * BT;
    float* l_qkv = qkv.data() + li * BT * 3 * C;
    float* l_atty = atty.data() + li * BT * C;
    float* l_att = att.data() + li * (size_t)B * NH * T * T;
    float* l_res2 = res2.data() + li * BT * C;
    float* l_ln2 = ln2.data() + li * BT * C;
    float* l_ln2m = ln2_mean.data() + li * BT;
    float* l_ln2r = ln2_rstd.data() + li * BT;
    float* l_fch = fch.data() + li * BT * 4 * C;
    float* l_fchg = fchg.data() + li * BT * 4 * C;
    float* l_res3 = res3.data() + li * BT * C;

    layernorm_forward(l_ln1, l_ln1m, l_ln1r, residual, p + o.ln1w, p + o.ln1b, BT, C);
    matmul_forward(l_qkv, l_ln1, p + o.qkvw, p + o.qkvb, BT, C, 3 * C);
    if (mode == Mode::kTrain) {
      attention_forward(l_atty, l_att, l_qkv, B, T, C, NH);
    } else {
      attention_forward_scratch(l_atty, l_att, l_qkv, B, T, C, NH);
    }
    matmul_residual_forward(l_res2, l_atty, p + o.attprojw, p + o.attprojb, residual, BT, C, C);
    layernorm_forward(l_ln2, l_ln2m, l_ln2r, l_res2, p + o.ln2w, p + o.ln2b, BT, C);
    matmul_forward(l_fch, l_ln2, p + o.fcw, p + o.fcb, BT, C, 4 * C);
    gelu_forward(l_fchg, l_fch, (size_t)BT * 4 * C);
    // In kFrozen l_res3 aliases `residual`, which is no longer read here.
    matmul_residual_forward(l_res3, l_fchg, p + o.fcprojw, p + o.fcprojb, l_res2, BT, 4 * C, C);
    residual = l_res3;
  }
  layernorm_forward(lnf.data(), lnf_mean.data(), lnf_rstd.data(), residual, p + lnfw, p + lnfb, BT,
                    C);
  head_forward(logits.data(), lnf.data(), p + wte, BT, C, V);
}

void GPT::Impl::backward_impl(const float* dlogits, const float* dhidden) {
  using namespace ops;
  const int BT = B * T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size, L = cfg.n_layer;
  const float* p = params.data();
  float* g = grads.data();
  auto zero = [](std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); };

  zero(dlnf);
  if (dlogits) head_backward(dlnf.data(), g + wte, dlogits, lnf.data(), p + wte, BT, C, V);
  if (dhidden) {
    for (size_t i = 0; i < dlnf.size(); i++) dlnf[i] += dhidden[i];
  }
  zero(dres);
  const float* last = res3.data() + (size_t)(L - 1) * BT * C;
  layernorm_backward(dres.data(), g + lnfw, g + lnfb, dlnf.data(), last, p + lnfw, lnf_mean.data(),
                     lnf_rstd.data(), BT, C);
  for (int l = L - 1; l >= 0; l--) {
    const LayerOffsets& o = layers[l];
    const float* residual = l == 0 ? encoded.data() : res3.data() + (size_t)(l - 1) * BT * C;
    const float* l_ln1 = ln1.data() + (size_t)l * BT * C;
    const float* l_ln1m = ln1_mean.data() + (size_t)l * BT;
    const float* l_ln1r = ln1_rstd.data() + (size_t)l * BT;
    const float* l_qkv = qkv.data() + (size_t)l * BT * 3 * C;
    const float* l_atty = atty.data() + (size_t)l * BT * C;
    const float* l_att = att.data() + (size_t)l * B * NH * T * T;
    const float* l_res2 = res2.data() + (size_t)l * BT * C;
    const float* l_ln2 = ln2.data() + (size_t)l * BT * C;
    const float* l_ln2m = ln2_mean.data() + (size_t)l * BT;
    const float* l_ln2r = ln2_rstd.data() + (size_t)l * BT;
    const float* l_fch = fch.data() + (size_t)l * BT * 4 * C;
    const float* l_fchg = fchg.data() + (size_t)l * BT * 4 * C;

    // dres holds ∂L/∂res3 here; the MLP branch adds its part of ∂L/∂res2.
    zero(dfchg);
    matmul_backward(dfchg.data(), g + o.fcprojw, g + o.fcprojb, dres.data(), l_fchg, p + o.fcprojw,
                    BT, 4 * C, C);
    // ∂L/∂fchg becomes ∂L/∂fch in place.
    gelu_backward_inplace(dfchg.data(), l_fch, (size_t)BT * 4 * C);
    zero(dln);
    matmul_backward(dln.data(), g + o.fcw, g + o.fcb, dfchg.data(), l_ln2, p + o.fcw, BT, C, 4 * C);
    layernorm_backward(dres.data(), g + o.ln2w, g + o.ln2b, dln.data(), l_res2, p + o.ln2w, l_ln2m,
                       l_ln2r, BT, C);
    // dres holds ∂L/∂res2; the attention branch adds its part of ∂L/∂residual.
    zero(datty);
    matmul_backward(datty.data(), g + o.attprojw, g + o.attprojb, dres.data(), l_atty,
                    p + o.attprojw, BT, C, C);
    attention_backward_set(dqkv.data(), datty.data(), l_qkv, l_att, B, T, C, NH);
    zero(dln);
    matmul_backward(dln.data(), g + o.qkvw, g + o.qkvb, dqkv.data(), l_ln1, p + o.qkvw, BT, C,
                    3 * C);
    layernorm_backward(dres.data(), g + o.ln1w, g + o.ln1b, dln.data(), residual, p + o.ln1w,
                       l_ln1m, l_ln1r, BT, C);
  }
  encoder_backward(g + wte, g + wpe, dres.data(), tokens.data(), B, T, C);
}

// ------------------------------------------------------------- GPT API

GPT::GPT(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GPT::GPT(GPT&&) noexcept = default;
GPT& GPT::operator=(GPT&&) noexcept = default;
GPT::~GPT() = default;

Result<GPT> GPT::init_random(const GPTConfig& cfg, uint64_t seed, Mode mode) {
  ASSAY_RETURN_IF_ERROR(cfg.validate());
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  impl->mode = mode;
  impl->build_layout();
  impl->params.assign(cfg.num_params(), 0.0f);
  if (mode == Mode::kTrain) impl->grads.assign(impl->params.size(), 0.0f);
  NormalRng rng(seed);
  const double std_resid = 0.02 / std::sqrt(2.0 * cfg.n_layer);
  auto ends_with = [](const std::string& s, std::string_view suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
  };
  for (const ParamTensor& t : impl->info) {
    float* d = impl->params.data() + t.offset;
    if (t.shape.size() == 2) {
      const bool resid =
          ends_with(t.name, "attn.c_proj.weight") || ends_with(t.name, "mlp.c_proj.weight");
      const double sd = resid ? std_resid : 0.02;
      for (size_t i = 0; i < t.numel; i++) d[i] = (float)(rng.next() * sd);
    } else if (ends_with(t.name, "ln_1.weight") || ends_with(t.name, "ln_2.weight") ||
               ends_with(t.name, "ln_f.weight")) {
      std::fill(d, d + t.numel, 1.0f);
    }  // biases stay 0
  }
  return GPT(std::move(impl));
}

Result<GPT> GPT::from_params(const GPTConfig& cfg, std::span<const float> params, Mode mode) {
  ASSAY_RETURN_IF_ERROR(cfg.validate());
  if (params.size() != cfg.num_params()) {
    return Status::Invalid("GPT::from_params: expected " + std::to_string(cfg.num_params()) +
                           " parameters for this config, got " + std::to_string(params.size()));
  }
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  impl->mode = mode;
  impl->build_layout();
  impl->params.assign(params.begin(), params.end());
  if (mode == Mode::kTrain) impl->grads.assign(impl->params.size(), 0.0f);
  return GPT(std::move(impl));
}

GPT GPT::clone(Mode mode) const {
  auto impl = std::make_unique<Impl>();
  impl->cfg = impl_->cfg;
  impl->mode = mode;
  impl->build_layout();
  impl->params = impl_->params;
  if (mode == Mode::kTrain) impl->grads.assign(impl->params.size(), 0.0f);
  return GPT(std::move(impl));
}

const GPTConfig& GPT::config() const { return impl_->cfg; }
Mode GPT::mode() const { return impl_->mode; }
size_t GPT::num_params() const { return impl_->params.size(); }
std::span<float> GPT::params() { return impl_->params; }
std::span<const float> GPT::params() const { return impl_->params; }
std::span<float> GPT::grads() { return impl_->grads; }
std::span<const float> GPT::grads() const { return impl_->grads; }
const std::vector<ParamTensor>& GPT::param_info() const { return impl_->info; }

const ParamTensor* GPT::find_param(std::string_view name) const {
  for (const ParamTensor& t : impl_->info) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<std::span<const float>> GPT::forward(const int32_t* tokens, int B, int T) {
  const GPTConfig& c = impl_->cfg;
  if (B < 1) return Status::Invalid("GPT::forward: B must be >= 1, got " + std::to_string(B));
  if (T < 1 || T > c.n_positions) {
    return Status::Invalid("GPT::forward: T must be 1.." + std::to_string(c.n_positions) +
                           " (n_positions), got " + std::to_string(T));
  }
  const size_t BT = (size_t)B * T;
  for (size_t i = 0; i < BT; i++) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size) {
      return Status::Invalid("GPT::forward: token at index " + std::to_string(i) + " is " +
                             std::to_string(tokens[i]) + ", expected 0.." +
                             std::to_string(c.vocab_size - 1));
    }
  }
  impl_->ensure_activations(B, T);
  std::copy(tokens, tokens + BT, impl_->tokens.begin());
  impl_->forward_impl();
  return logits();
}

std::span<const float> GPT::logits() const {
  return {impl_->logits.data(), (size_t)impl_->B * impl_->T * impl_->cfg.vocab_size};
}
std::span<const float> GPT::hidden() const {
  return {impl_->lnf.data(), (size_t)impl_->B * impl_->T * impl_->cfg.n_embd};
}
int GPT::batch_B() const { return impl_->B; }
int GPT::batch_T() const { return impl_->T; }

Status GPT::backward(const float* dlogits, const float* dhidden) {
  if (impl_->mode != Mode::kTrain) {
    return Status::FailedPrecondition("GPT::backward: model is frozen (forward only)");
  }
  if (impl_->B == 0) return Status::FailedPrecondition("GPT::backward: no forward() yet");
  if (!dlogits && !dhidden) {
    return Status::Invalid("GPT::backward: dlogits and dhidden are both null");
  }
  impl_->backward_impl(dlogits, dhidden);
  return Status::Ok();
}

void GPT::zero_grad() { std::fill(impl_->grads.begin(), impl_->grads.end(), 0.0f); }

float lm_cross_entropy(const float* logits, const int32_t* targets, int BT, int V, float* dlogits) {
  int n = 0;
  for (int i = 0; i < BT; i++) n += (targets[i] >= 0 && targets[i] < V) ? 1 : 0;
  const double scale = n > 0 ? 1.0 / n : 0.0;
  int count = 0;
  const double sum =
      ops::crossentropy_forward_backward(dlogits, logits, targets, BT, V, scale, &count);
  return count > 0 ? (float)(sum / count) : 0.0f;
}

}  // namespace assay::engine
