// AdamW (as torch.optim.AdamW), global-norm clipping and the LR schedule.
//
// optimizer.bin layout (little-endian):
//   "ASSAYAW1" (8 bytes) | t u64 | n u64 | beta1, beta2, eps, weight_decay f32
//   | m[n] f32 | v[n] f32        (file size = 40 + 8n bytes)
// load() restores t, m and v; the hyperparameters of the live optimizer are
// kept, so a resumed run may change them. save_adamw_state/load_adamw_state
// are the one writer and reader, for AdamW and for a CUDA device model's
// downloaded state alike.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "assay/engine.h"

namespace assay::engine {
namespace {
// Elementwise loops over fewer parameters than this stay on one thread.
constexpr size_t kParallelElems = 1 << 20;
}  // namespace

AdamW::AdamW(const AdamWConfig& cfg, const GPT& model)
    : cfg_(cfg), m_(model.num_params(), 0.0f), v_(model.num_params(), 0.0f) {
  decay_.assign(model.num_params(), 0);
  for (const ParamTensor& t : model.param_info()) {
    if (t.decay) std::fill(decay_.begin() + t.offset, decay_.begin() + t.offset + t.numel, 1);
  }
}

AdamW::AdamW(const AdamWConfig& cfg, size_t n, std::vector<uint8_t> decay_mask)
    : cfg_(cfg), m_(n, 0.0f), v_(n, 0.0f), decay_(std::move(decay_mask)) {
  if (decay_.empty()) decay_.assign(n, 1);
}

Status AdamW::step(GPT& model, float lr) { return step(model.params(), model.grads(), lr); }

Status AdamW::step(std::span<float> params, std::span<const float> grads, float lr) {
  const size_t n = m_.size();
  if (params.size() != n || grads.size() != n || decay_.size() != n) {
    return Status::Invalid("AdamW::step: optimizer holds " + std::to_string(n) +
                           " parameters, got params " + std::to_string(params.size()) +
                           " and grads " + std::to_string(grads.size()));
  }
  t_++;
  // Same operation order as PyTorch's single-tensor AdamW.
  const double bc1 = 1.0 - std::pow((double)cfg_.beta1, (double)t_);
  const double bc2 = 1.0 - std::pow((double)cfg_.beta2, (double)t_);
  const float step_size = (float)(lr / bc1);
  const float bc2_sqrt = (float)std::sqrt(bc2);
  const float b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
  const float decay_mul = 1.0f - lr * cfg_.weight_decay;
  float* p = params.data();
  const float* g = grads.data();
  float* m = m_.data();
  float* v = v_.data();
  const uint8_t* dm = decay_.data();
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
  for (size_t i = 0; i < n; i++) {
    float pi = p[i];
    if (dm[i]) pi *= decay_mul;
    const float gi = g[i];
    m[i] += (gi - m[i]) * (1.0f - b1);
    v[i] = v[i] * b2 + (1.0f - b2) * gi * gi;
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] = pi - step_size * (m[i] / denom);
  }
  return Status::Ok();
}

namespace {
constexpr char kMagic[8] = {'A', 'S', 'S', 'A', 'Y', 'A', 'W', '1'};
constexpr size_t kHeader = 8 + 8 + 8 + 16;
}  // namespace

Status save_adamw_state(const std::string& path, const AdamWConfig& cfg, int64_t t,
                        std::span<const float> m, std::span<const float> v) {
  if (m.size() != v.size())
    return Status::Invalid("optimizer state " + path + ": m holds " + std::to_string(m.size()) +
                           " floats, v " + std::to_string(v.size()) + "; expected the same count");
  if (t < 0) return Status::Invalid("optimizer state " + path + ": step count " + std::to_string(t) + " < 0");
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IoError("optimizer state " + tmp + ": cannot open for writing");
    const uint64_t tu = (uint64_t)t, n = m.size();
    const float hp[4] = {cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay};
    f.write(kMagic, 8);
    f.write(reinterpret_cast<const char*>(&tu), 8);
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(reinterpret_cast<const char*>(hp), sizeof(hp));
    f.write(reinterpret_cast<const char*>(m.data()), (std::streamsize)(n * 4));
    f.write(reinterpret_cast<const char*>(v.data()), (std::streamsize)(n * 4));
    if (!f) return Status::IoError("optimizer state " + tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IoError("optimizer state " + path + ": rename failed: " + ec.message());
  return Status::Ok();
}

Result<AdamWState> load_adamw_state(const std::string& path, size_t n_expected) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return Status::IoError("optimizer state " + path + ": " + ec.message());
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError("optimizer state " + path + ": cannot open");
  char magic[8];
  uint64_t t = 0, n = 0;
  float hp[4];
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&t), 8);
  f.read(reinterpret_cast<char*>(&n), 8);
  f.read(reinterpret_cast<char*>(hp), sizeof(hp));
  if (!f || std::memcmp(magic, kMagic, 8) != 0) {
    return Status::Corruption("optimizer state " + path + ": not an ASSAYAW1 file");
  }
  if (n != n_expected) {
    return Status::Invalid("optimizer state " + path + ": holds " + std::to_string(n) +
                           " parameters, the model has " + std::to_string(n_expected));
  }
  if (size != kHeader + 8 * n) {
    return Status::Corruption("optimizer state " + path + ": size " + std::to_string(size) +
                              " bytes, expected " + std::to_string(kHeader + 8 * n));
  }
  if (t > (uint64_t)INT64_MAX)
    return Status::Corruption("optimizer state " + path + ": step count " + std::to_string(t) + " out of range");
  AdamWState st;
  st.t = (int64_t)t;
  st.m.resize(n);
  st.v.resize(n);
  f.read(reinterpret_cast<char*>(st.m.data()), (std::streamsize)(n * 4));
  f.read(reinterpret_cast<char*>(st.v.data()), (std::streamsize)(n * 4));
  if (!f) return Status::IoError("optimizer state " + path + ": short read");
  return st;
}

Status AdamW::save(const std::string& path) const { return save_adamw_state(path, cfg_, t_, m_, v_); }

Status AdamW::load(const std::string& path) {
  ASSAY_ASSIGN_OR_RETURN(AdamWState st, load_adamw_state(path, m_.size()));
  t_ = st.t;
  m_ = std::move(st.m);
  v_ = std::move(st.v);
  return Status::Ok();
}

float grad_norm(std::span<const float> grads) {
  // A fixed number of chunks (not one per thread) keeps the summation order,
  // and so the result, independent of the thread count.
  constexpr int kChunks = 64;
  const size_t n = grads.size();
  double part[kChunks] = {0};
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
  for (int c = 0; c < kChunks; c++) {
    const size_t lo = n * c / kChunks, hi = n * (c + 1) / kChunks;
    double s = 0;
    for (size_t i = lo; i < hi; i++) s += (double)grads[i] * grads[i];
    part[c] = s;
  }
  double total = 0;
  for (double s : part) total += s;
  return (float)std::sqrt(total);
}

float clip_grad_norm(std::span<float> grads, float max_norm) {
  const float total = grad_norm(grads);
  if (max_norm > 0) {
    const float coef = std::min(1.0f, max_norm / (total + 1e-6f));
    if (coef < 1.0f) {
      float* g = grads.data();
      const size_t n = grads.size();
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
      for (size_t i = 0; i < n; i++) g[i] *= coef;
    }
  }
  return total;
}

float LrSchedule::at(int64_t step) const {
  if (step < 0) step = 0;
  if (warmup > 0 && step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
  if (decay == Decay::kConstant) return lr_max;
  if (step >= total || total <= warmup) return step >= total ? lr_min : lr_max;
  const double ratio = (double)(step - warmup) / (double)(total - warmup);  // in [0, 1)
  const double span = (double)lr_max - (double)lr_min;
  if (decay == Decay::kLinear) return (float)(lr_max - ratio * span);
  return (float)(lr_min + 0.5 * (1.0 + std::cos(M_PI * ratio)) * span);
}

}  // namespace assay::engine
