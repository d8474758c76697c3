// KV-cache incremental forward of the GPT engine for generation. It reads the
// model's parameters by name and runs the public kernels of engine_ops.h on
// "rows": (slot, position, token) triples. Each row's keys and values are
// stored in its slot's cache before attention, so a row attends to the cached
// positions 0..pos of its own slot, which is exactly the causal attention of
// the full forward.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "assay/engine_ops.h"
#include "assay/evals_native.h"

namespace assay::evals {

namespace ops = engine::ops;

namespace {

struct Row {
  int slot = 0;
  int pos = 0;
  int32_t token = 0;
};

struct LayerParams {
  const float *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw,
      *fcprojb;
};

}  // namespace

struct KvDecoder::Impl {
  const engine::GPT* model = nullptr;
  engine::GPTConfig cfg;
  const float *wte = nullptr, *wpe = nullptr, *lnfw = nullptr, *lnfb = nullptr;
  std::vector<LayerParams> layers;
  int capacity = 0;
  // Per slot: keys and values [L, capacity, C], and the number of positions filled.
  std::vector<std::vector<float>> k, v;
  std::vector<int> len;
  // Scratch, sized for the largest N seen.
  std::vector<float> x, ln, mean, rstd, qkv, atty, tmp, fch, fchg, scores, sel;

  Status bind();
  Status forward_rows(const std::vector<Row>& rows, const std::vector<int>& logit_rows,
                      float* logits_out);
  void attend(const std::vector<Row>& rows, int l);
};

Status KvDecoder::Impl::bind() {
  cfg = model->config();
  const float* base = model->params().data();
  auto get = [&](const std::string& name, const float** out) -> Status {
    const engine::ParamTensor* t = model->find_param(name);
    if (!t) return Status::NotFound("KV decoder: model has no parameter " + name);
    *out = base + t->offset;
    return Status::Ok();
  };
  ASSAY_RETURN_IF_ERROR(get("transformer.wte.weight", &wte));
  ASSAY_RETURN_IF_ERROR(get("transformer.wpe.weight", &wpe));
  ASSAY_RETURN_IF_ERROR(get("transformer.ln_f.weight", &lnfw));
  ASSAY_RETURN_IF_ERROR(get("transformer.ln_f.bias", &lnfb));
  layers.resize(cfg.n_layer);
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    LayerParams& L = layers[l];
    ASSAY_RETURN_IF_ERROR(get(p + "ln_1.weight", &L.ln1w));
    ASSAY_RETURN_IF_ERROR(get(p + "ln_1.bias", &L.ln1b));
    ASSAY_RETURN_IF_ERROR(get(p + "attn.c_attn.weight", &L.qkvw));
    ASSAY_RETURN_IF_ERROR(get(p + "attn.c_attn.bias", &L.qkvb));
    ASSAY_RETURN_IF_ERROR(get(p + "attn.c_proj.weight", &L.projw));
    ASSAY_RETURN_IF_ERROR(get(p + "attn.c_proj.bias", &L.projb));
    ASSAY_RETURN_IF_ERROR(get(p + "ln_2.weight", &L.ln2w));
    ASSAY_RETURN_IF_ERROR(get(p + "ln_2.bias", &L.ln2b));
    ASSAY_RETURN_IF_ERROR(get(p + "mlp.c_fc.weight", &L.fcw));
    ASSAY_RETURN_IF_ERROR(get(p + "mlp.c_fc.bias", &L.fcb));
    ASSAY_RETURN_IF_ERROR(get(p + "mlp.c_proj.weight", &L.fcprojw));
    ASSAY_RETURN_IF_ERROR(get(p + "mlp.c_proj.bias", &L.fcprojb));
  }
  return Status::Ok();
}

// atty[r, h*hs:(h+1)*hs] = softmax(q·K[0..pos]ᵀ / sqrt(hs)) · V[0..pos] for
// every row r and head h, reading q from qkv [N, 3C] and K, V from the cache.
void KvDecoder::Impl::attend(const std::vector<Row>& rows, int l) {
  const int C = cfg.n_embd, NH = cfg.n_head, hs = C / NH, N = static_cast<int>(rows.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const size_t layer_off = static_cast<size_t>(l) * capacity * C;
  int max_pos = 0;
  for (const Row& r : rows) max_pos = std::max(max_pos, r.pos);
  const int64_t work = static_cast<int64_t>(N) * NH * (max_pos + 1) * hs;
  std::vector<float>& sc = scores;
  // One score row per (row, head) so that the loop can run in parallel.
  sc.resize(static_cast<size_t>(N) * NH * (max_pos + 1));
#pragma omp parallel for schedule(static) if (work > (1 << 18))
  for (int rh = 0; rh < N * NH; ++rh) {
    const int r = rh / NH, h = rh % NH;
    const Row& row = rows[r];
    const float* q = qkv.data() + static_cast<size_t>(r) * 3 * C + h * hs;
    const float* kc = k[row.slot].data() + layer_off + h * hs;
    const float* vc = v[row.slot].data() + layer_off + h * hs;
    float* s = sc.data() + static_cast<size_t>(rh) * (max_pos + 1);
    float maxv = -INFINITY;
    for (int t = 0; t <= row.pos; ++t) {
      const float* kt = kc + static_cast<size_t>(t) * C;
      float d = 0;
      for (int i = 0; i < hs; ++i) d += q[i] * kt[i];
      s[t] = d * scale;
      maxv = std::max(maxv, s[t]);
    }
    float sum = 0;
    for (int t = 0; t <= row.pos; ++t) {
      s[t] = std::exp(s[t] - maxv);
      sum += s[t];
    }
    const float inv = 1.0f / sum;
    float* out = atty.data() + static_cast<size_t>(r) * C + h * hs;
    std::fill(out, out + hs, 0.0f);
    for (int t = 0; t <= row.pos; ++t) {
      const float a = s[t] * inv;
      const float* vt = vc + static_cast<size_t>(t) * C;
      for (int i = 0; i < hs; ++i) out[i] += a * vt[i];
    }
  }
}

Status KvDecoder::Impl::forward_rows(const std::vector<Row>& rows,
                                     const std::vector<int>& logit_rows, float* logits_out) {
  const int N = static_cast<int>(rows.size()), C = cfg.n_embd, V = cfg.vocab_size;
  if (N == 0) return Status::Ok();
  for (const Row& r : rows) {
    if (r.slot < 0 || r.slot >= static_cast<int>(len.size()))
      return Status::Invalid("KV decoder: slot " + std::to_string(r.slot) + " out of range");
    if (r.pos >= capacity || r.pos >= cfg.n_positions)
      return Status::Invalid("KV decoder: position " + std::to_string(r.pos) +
                             " exceeds the cache capacity " + std::to_string(capacity) +
                             " / n_positions " + std::to_string(cfg.n_positions));
    if (r.token < 0 || r.token >= V)
      return Status::Invalid("KV decoder: token " + std::to_string(r.token) +
                             " out of range 0.." + std::to_string(V - 1));
  }
  const size_t NC = static_cast<size_t>(N) * C;
  x.resize(NC);
  ln.resize(NC);
  mean.resize(N);
  rstd.resize(N);
  qkv.resize(3 * NC);
  atty.resize(NC);
  tmp.resize(NC);
  fch.resize(4 * NC);
  fchg.resize(4 * NC);
  // Embedding: x[r] = wte[token] + wpe[pos].
  for (int r = 0; r < N; ++r) {
    const float* te = wte + static_cast<size_t>(rows[r].token) * C;
    const float* pe = wpe + static_cast<size_t>(rows[r].pos) * C;
    float* xr = x.data() + static_cast<size_t>(r) * C;
    for (int i = 0; i < C; ++i) xr[i] = te[i] + pe[i];
  }
  for (int l = 0; l < cfg.n_layer; ++l) {
    const LayerParams& P = layers[l];
    ops::layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), P.ln1w, P.ln1b, N, C);
    ops::matmul_forward(qkv.data(), ln.data(), P.qkvw, P.qkvb, N, C, 3 * C);
    const size_t layer_off = static_cast<size_t>(l) * capacity * C;
    for (int r = 0; r < N; ++r) {
      const float* src = qkv.data() + static_cast<size_t>(r) * 3 * C;
      const size_t dst = layer_off + static_cast<size_t>(rows[r].pos) * C;
      std::memcpy(k[rows[r].slot].data() + dst, src + C, sizeof(float) * C);
      std::memcpy(v[rows[r].slot].data() + dst, src + 2 * C, sizeof(float) * C);
    }
    attend(rows, l);
    ops::matmul_forward(tmp.data(), atty.data(), P.projw, P.projb, N, C, C);
    ops::residual_forward(x.data(), tmp.data(), x.data(), NC);
    ops::layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), P.ln2w, P.ln2b, N, C);
    ops::matmul_forward(fch.data(), ln.data(), P.fcw, P.fcb, N, C, 4 * C);
    ops::gelu_forward(fchg.data(), fch.data(), 4 * NC);
    ops::matmul_forward(tmp.data(), fchg.data(), P.fcprojw, P.fcprojb, N, 4 * C, C);
    ops::residual_forward(x.data(), tmp.data(), x.data(), NC);
  }
  for (const Row& r : rows) len[r.slot] = std::max(len[r.slot], r.pos + 1);
  // Final LayerNorm and the tied head only on the rows whose logits are wanted.
  const int M = static_cast<int>(logit_rows.size());
  sel.resize(static_cast<size_t>(M) * C);
  for (int m = 0; m < M; ++m)
    std::memcpy(sel.data() + static_cast<size_t>(m) * C,
                x.data() + static_cast<size_t>(logit_rows[m]) * C, sizeof(float) * C);
  ops::layernorm_forward(ln.data(), mean.data(), rstd.data(), sel.data(), lnfw, lnfb, M, C);
  ops::head_forward(logits_out, ln.data(), wte, M, C, V);
  return Status::Ok();
}

KvDecoder::KvDecoder(const engine::GPT& model) : impl_(std::make_unique<Impl>()) {
  impl_->model = &model;
}
KvDecoder::~KvDecoder() = default;

Status KvDecoder::reset(int slots, int capacity) {
  Impl& d = *impl_;
  if (d.layers.empty()) ASSAY_RETURN_IF_ERROR(d.bind());
  if (slots < 1 || capacity < 1 || capacity > d.cfg.n_positions)
    return Status::Invalid("KV decoder: need slots >= 1 and capacity 1.." +
                           std::to_string(d.cfg.n_positions) + ", got " + std::to_string(slots) +
                           " slots of " + std::to_string(capacity));
  d.capacity = capacity;
  const size_t per_slot = static_cast<size_t>(d.cfg.n_layer) * capacity * d.cfg.n_embd;
  d.k.assign(slots, std::vector<float>(per_slot));
  d.v.assign(slots, std::vector<float>(per_slot));
  d.len.assign(slots, 0);
  return Status::Ok();
}

int KvDecoder::length(int slot) const { return impl_->len.at(slot); }

Status KvDecoder::prefill(int slot, const int32_t* tokens, int n, float* logits_out) {
  Impl& d = *impl_;
  if (slot < 0 || slot >= static_cast<int>(d.len.size()))
    return Status::Invalid("KV decoder: slot " + std::to_string(slot) + " out of range");
  if (n < 1) return Status::Invalid("KV decoder: prefill needs at least one token");
  std::vector<Row> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = {slot, d.len[slot] + i, tokens[i]};
  return d.forward_rows(rows, {n - 1}, logits_out);
}

Status KvDecoder::step(const std::vector<int>& slots, const std::vector<int32_t>& tokens,
                       float* logits_out) {
  Impl& d = *impl_;
  if (slots.size() != tokens.size())
    return Status::Invalid("KV decoder: step got " + std::to_string(slots.size()) +
                           " slots and " + std::to_string(tokens.size()) + " tokens");
  std::vector<Row> rows(slots.size());
  std::vector<int> all(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0 || slots[i] >= static_cast<int>(d.len.size()))
      return Status::Invalid("KV decoder: slot " + std::to_string(slots[i]) + " out of range");
    for (size_t j = 0; j < i; ++j)
      if (slots[j] == slots[i])
        return Status::Invalid("KV decoder: slot " + std::to_string(slots[i]) +
                               " appears twice in one step");
    rows[i] = {slots[i], d.len[slots[i]], tokens[i]};
    all[i] = static_cast<int>(i);
  }
  return d.forward_rows(rows, all, logits_out);
}

}  // namespace assay::evals
