// LoRA kernels, target matching, adapter state and the FILA initialisation.
// Formulas and shapes: assay/lora.h.
#include "assay/lora.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace assay::engine::lora {

// LAPACK's SVD, shipped inside Debian's OpenBLAS (which the engine opens on
// first use, blas_loader.cpp); libopenblas-dev installs no LAPACK header, so
// the Fortran symbol is declared here. The trailing lengths are gfortran's hidden CHARACTER lengths.
extern "C" void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a,
                        const int* lda, double* s, double* u, const int* ldu, double* vt,
                        const int* ldvt, double* work, const int* lwork, int* info, size_t jobu_len,
                        size_t jobvt_len);

// ------------------------------------------------------------- kernels

template <class F>
void lora_merge(F* w_eff, const F* w, const F* A, const F* B, double s, int in, int out, int r) {
  // Row i of W_eff needs column i of A (a_i [r]) against every row of B.
#pragma omp parallel for schedule(static) if ((size_t)in * out * r >= (1u << 18))
  for (int i = 0; i < in; i++) {
    double a_i[64];
    std::vector<double> a_big;
    double* a = a_i;
    if (r > 64) {
      a_big.resize(r);
      a = a_big.data();
    }
    for (int k = 0; k < r; k++) a[k] = (double)A[(size_t)k * in + i];
    for (int o = 0; o < out; o++) {
      const F* b = B + (size_t)o * r;
      double acc = 0;
      for (int k = 0; k < r; k++) acc += a[k] * (double)b[k];
      w_eff[(size_t)i * out + o] = (F)((double)w[(size_t)i * out + o] + s * acc);
    }
  }
}

template <class F>
void lora_backward_from_dense(F* dA, F* dB, const F* dW, const F* A, const F* B, double s, int in,
                              int out, int r) {
  // dA[k,i] = s Σ_o B[o,k] dW[i,o]: one row of dW per i, independent across i.
#pragma omp parallel for schedule(static) if ((size_t)in * out * r >= (1u << 18))
  for (int i = 0; i < in; i++) {
    std::vector<double> acc(r, 0.0);
    const F* g = dW + (size_t)i * out;
    for (int o = 0; o < out; o++) {
      const double go = (double)g[o];
      const F* b = B + (size_t)o * r;
      for (int k = 0; k < r; k++) acc[k] += (double)b[k] * go;
    }
    for (int k = 0; k < r; k++) dA[(size_t)k * in + i] += (F)(s * acc[k]);
  }
  // dB[o,k] = s Σ_i dW[i,o] A[k,i]: rows of dW in order i = 0..in-1 (fixed
  // order), each output row o owned by one thread.
#pragma omp parallel for schedule(static) if ((size_t)in * out * r >= (1u << 18))
  for (int o = 0; o < out; o++) {
    std::vector<double> acc(r, 0.0);
    for (int i = 0; i < in; i++) {
      const double g = (double)dW[(size_t)i * out + o];
      for (int k = 0; k < r; k++) acc[k] += g * (double)A[(size_t)k * in + i];
    }
    for (int k = 0; k < r; k++) dB[(size_t)o * r + k] += (F)(s * acc[k]);
  }
}

template void lora_merge<float>(float*, const float*, const float*, const float*, double, int, int,
                                int);
template void lora_merge<double>(double*, const double*, const double*, const double*, double, int,
                                 int, int);
template void lora_backward_from_dense<float>(float*, float*, const float*, const float*,
                                              const float*, double, int, int, int);
template void lora_backward_from_dense<double>(double*, double*, const double*, const double*,
                                               const double*, double, int, int, int);

// -------------------------------------------------------------- config

Status LoraConfig::validate() const {
  if (r < 1 || r > 4096) return Status::Invalid("lora: r must be 1..4096, got " + std::to_string(r));
  if (!(alpha > 0) || !std::isfinite(alpha))
    return Status::Invalid("lora: alpha must be a finite number > 0, got " + std::to_string(alpha));
  if (targets.empty()) return Status::Invalid("lora: targets must name at least one module");
  return Status::Ok();
}

namespace {

bool module_matches(const std::string& module, const std::string& target) {
  if (module == target) return true;
  return module.size() > target.size() &&
         module.compare(module.size() - target.size(), target.size(), target) == 0 &&
         module[module.size() - target.size() - 1] == '.';
}

// Uniform in [0,1) from splitmix64: fixed across platforms, unlike <random>'s
// distributions.
class UniformRng {
 public:
  explicit UniformRng(uint64_t seed) : s_(seed) {}
  double next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (z >> 11) * (1.0 / 9007199254740992.0);
  }

 private:
  uint64_t s_;
};

}  // namespace

Result<std::vector<AdapterTarget>> match_targets(const GPT& model, const LoraConfig& cfg) {
  ASSAY_RETURN_IF_ERROR(cfg.validate());
  std::vector<AdapterTarget> out;
  std::vector<bool> used(cfg.targets.size(), false);
  size_t off = 0;
  for (const ParamTensor& t : model.param_info()) {
    const std::string suffix = ".weight";
    if (t.shape.size() != 2 || t.name.size() <= suffix.size() ||
        t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    std::string module = t.name.substr(0, t.name.size() - suffix.size());
    // Embeddings are not Conv1D layers (PEFT would wrap them as Embedding).
    if (module == "transformer.wte" || module == "transformer.wpe") continue;
    bool hit = false;
    for (size_t j = 0; j < cfg.targets.size(); j++) {
      if (module_matches(module, cfg.targets[j])) {
        used[j] = true;
        hit = true;
      }
    }
    if (!hit) continue;
    AdapterTarget a;
    a.module = std::move(module);
    a.in = (int)t.shape[0];
    a.out = (int)t.shape[1];
    a.w_offset = t.offset;
    a.a_offset = off;
    off += (size_t)cfg.r * a.in;
    a.b_offset = off;
    off += (size_t)a.out * cfg.r;
    out.push_back(std::move(a));
  }
  for (size_t j = 0; j < cfg.targets.size(); j++) {
    if (!used[j])
      return Status::Invalid("lora: target '" + cfg.targets[j] +
                             "' matches no Conv1D weight of the model (expected e.g. c_attn, c_proj, "
                             "c_fc, attn.c_proj, mlp.c_proj)");
  }
  return out;
}

// --------------------------------------------------------------- adapters

Result<LoraAdapters> LoraAdapters::create(const GPT& model, const LoraConfig& cfg, uint64_t seed) {
  LoraAdapters a;
  a.cfg_ = cfg;
  ASSAY_ASSIGN_OR_RETURN(a.targets_, match_targets(model, cfg));
  const size_t n = a.targets_.empty() ? 0 : a.targets_.back().b_offset + (size_t)a.targets_.back().out * cfg.r;
  a.params_.assign(n, 0.0f);
  a.grads_.assign(n, 0.0f);
  a.base_.assign(model.params().begin(), model.params().end());
  UniformRng rng(seed);
  for (const AdapterTarget& t : a.targets_) {
    const double bound = 1.0 / std::sqrt((double)t.in);
    float* A = a.params_.data() + t.a_offset;
    for (size_t i = 0; i < (size_t)cfg.r * t.in; i++) A[i] = (float)((2 * rng.next() - 1) * bound);
  }
  return a;
}

Result<LoraAdapters> LoraAdapters::from_values(const GPT& model, const LoraConfig& cfg,
                                               std::span<const float> params) {
  ASSAY_ASSIGN_OR_RETURN(LoraAdapters a, create(model, cfg, 0));
  if (params.size() != a.params_.size())
    return Status::Invalid("lora: expected " + std::to_string(a.params_.size()) +
                           " adapter values for this model and config, got " + std::to_string(params.size()));
  std::copy(params.begin(), params.end(), a.params_.begin());
  return a;
}

void LoraAdapters::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

Status LoraAdapters::apply(GPT& model) const {
  if (model.num_params() != base_.size())
    return Status::Invalid("lora: model has " + std::to_string(model.num_params()) +
                           " parameters, the adapters' base " + std::to_string(base_.size()));
  std::span<float> p = model.params();
  std::copy(base_.begin(), base_.end(), p.begin());
  for (const AdapterTarget& t : targets_) {
    lora_merge<float>(p.data() + t.w_offset, base_.data() + t.w_offset, params_.data() + t.a_offset,
                      params_.data() + t.b_offset, cfg_.scale(), t.in, t.out, cfg_.r);
  }
  return Status::Ok();
}

Status LoraAdapters::collect_grads(const GPT& model) {
  std::span<const float> g = model.grads();
  if (g.size() != base_.size())
    return Status::FailedPrecondition("lora: collect_grads needs a kTrain model with " +
                                      std::to_string(base_.size()) + " gradients, got " +
                                      std::to_string(g.size()));
  for (const AdapterTarget& t : targets_) {
    lora_backward_from_dense<float>(grads_.data() + t.a_offset, grads_.data() + t.b_offset,
                                    g.data() + t.w_offset, params_.data() + t.a_offset,
                                    params_.data() + t.b_offset, cfg_.scale(), t.in, t.out, cfg_.r);
  }
  return Status::Ok();
}

void accumulate_fisher(std::span<double> imp, std::span<const float> grads,
                       const std::vector<AdapterTarget>& targets, double n_tokens) {
  for (const AdapterTarget& t : targets) {
    const size_t n = (size_t)t.in * t.out;
    for (size_t i = t.w_offset; i < t.w_offset + n; i++) {
      const double g = grads[i];
      imp[i] += n_tokens * g * g;
    }
  }
}

// ------------------------------------------------------------------ FILA

namespace {

// Top-r singular triplets of M [out,in] (row-major): U [out,r], S [r], V [in,r].
Status truncated_svd(const std::vector<double>& M, int out, int in, int r, std::vector<double>& U,
                     std::vector<double>& S, std::vector<double>& V, const std::string& what) {
  // LAPACK is column-major: the buffer of M read column-major is Mᵀ [in,out].
  // SVD Mᵀ = U' S V'ᵀ gives M = V' S U'ᵀ, so U = V' and V = U'.
  std::vector<double> a = M;
  const int m = in, n = out, mn = std::min(in, out);
  std::vector<double> s(mn), u((size_t)m * mn), vt((size_t)mn * n);
  int lwork = -1, info = 0;
  double wq = 0;
  const char job = 'S';
  dgesvd_(&job, &job, &m, &n, a.data(), &m, s.data(), u.data(), &m, vt.data(), &mn, &wq, &lwork, &info,
          1, 1);
  lwork = std::max(1, (int)wq);
  std::vector<double> work(lwork);
  dgesvd_(&job, &job, &m, &n, a.data(), &m, s.data(), u.data(), &m, vt.data(), &mn, work.data(), &lwork,
          &info, 1, 1);
  if (info != 0)
    return Status::Internal("FILA: SVD of " + what + " failed (LAPACK dgesvd info " + std::to_string(info) + ")");
  U.assign((size_t)out * r, 0.0);
  V.assign((size_t)in * r, 0.0);
  S.assign(s.begin(), s.begin() + r);
  for (int k = 0; k < r; k++) {
    for (int o = 0; o < out; o++) U[(size_t)o * r + k] = vt[k + (size_t)o * mn];
    for (int i = 0; i < in; i++) V[(size_t)i * r + k] = u[i + (size_t)k * m];
  }
  return Status::Ok();
}

}  // namespace

Status LoraAdapters::fila_init(std::span<const double> imp_f, double n_f, std::span<const double> imp_r,
                               double n_r) {
  if (imp_f.size() != base_.size() || imp_r.size() != base_.size())
    return Status::Invalid("FILA: importance buffers must hold " + std::to_string(base_.size()) +
                           " values (one per model parameter), got " + std::to_string(imp_f.size()) +
                           " and " + std::to_string(imp_r.size()));
  if (!(n_f > 0)) return Status::Invalid("FILA: the forget data has no loss tokens");
  const double nr = n_r > 0 ? n_r : 1.0;  // no retain data: imp_r is 0 and F = imp_f/n_f/1e-5
  const int r = cfg_.r;
  const double s = cfg_.scale();
  for (const AdapterTarget& t : targets_) {
    if (r > std::min(t.in, t.out))
      return Status::Invalid("FILA: r = " + std::to_string(r) + " exceeds the rank of " + t.module +
                             ".weight [" + std::to_string(t.in) + ", " + std::to_string(t.out) + "]");
    const float* W = base_.data() + t.w_offset;
    // Row weights of W_lin = Wᵀ: w[o] = sqrt(Σ_i F[i,o]).
    std::vector<double> wrow(t.out, 0.0);
    for (int i = 0; i < t.in; i++) {
      for (int o = 0; o < t.out; o++) {
        const size_t j = t.w_offset + (size_t)i * t.out + o;
        wrow[o] += (imp_f[j] / n_f) / (1e-5 + imp_r[j] / nr);
      }
    }
    for (double& x : wrow) x = std::sqrt(x);
    std::vector<double> M((size_t)t.out * t.in);  // diag(w)·W_lin, [out,in]
    for (int o = 0; o < t.out; o++)
      for (int i = 0; i < t.in; i++) M[(size_t)o * t.in + i] = wrow[o] * (double)W[(size_t)i * t.out + o];
    std::vector<double> U, S, V;
    ASSAY_RETURN_IF_ERROR(truncated_svd(M, t.out, t.in, r, U, S, V, t.module + ".weight"));
    float* A = params_.data() + t.a_offset;
    float* B = params_.data() + t.b_offset;
    for (int k = 0; k < r; k++) {
      const double root = std::sqrt(S[k] / s);
      for (int i = 0; i < t.in; i++) A[(size_t)k * t.in + i] = (float)(V[(size_t)i * r + k] * root);
      for (int o = 0; o < t.out; o++)
        B[(size_t)o * r + k] = (float)(U[(size_t)o * r + k] * root / (wrow[o] + 1e-5));
    }
    // W_res = W − s·Aᵀ·Bᵀ from the fp32 A and B that training starts from.
    float* Wm = base_.data() + t.w_offset;
    lora_merge<float>(Wm, Wm, A, B, -s, t.in, t.out, r);
  }
  return Status::Ok();
}

}  // namespace assay::engine::lora
