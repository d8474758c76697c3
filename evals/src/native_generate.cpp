// NativeBackend generation: per-request sampling, lm-eval's left truncation
// of over-long prompts, KV-cache (CPU) or re-run (GPU) decoding in batches.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "assay/engine_cuda.h"
#include "assay/evals_metrics.h"
#include "assay/evals_native.h"
#include "gpu_decoder.h"
#include "native_rows.h"

namespace assay::evals {

namespace {

// Chooses each next token of one request. The random stream belongs to the
// request (one uniform draw per sampled token), so the choices do not depend
// on which requests share its batch or on the thread count.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& p)
      : p_(p), rng_(p.seed ? *p.seed : std::random_device{}() * 0x9E3779B97F4A7C15ull ^
                                           std::random_device{}()) {}

  int32_t pick(const float* row, int V) {
    if (p_.greedy()) return score_row(row, V, 0).top_token;
    // logits / temperature, shifted by the max for exp (double: a small
    // temperature makes the differences large).
    double m = row[0];
    for (int i = 1; i < V; ++i) m = std::max(m, static_cast<double>(row[i]));
    cand_.resize(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) cand_[i] = {std::exp((row[i] - m) / p_.temperature), i};
    // Most likely first, lowest id on ties: a total order, so the kept set
    // and the scan below are the same on every run.
    auto more_likely = [](const Cand& a, const Cand& b) {
      return a.w != b.w ? a.w > b.w : a.id < b.id;
    };
    size_t n = cand_.size();
    const bool cut_k = p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n;
    if (cut_k) {
      std::nth_element(cand_.begin(), cand_.begin() + p_.top_k - 1, cand_.end(), more_likely);
      n = static_cast<size_t>(p_.top_k);
    }
    if (p_.top_p < 1) {
      std::sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(n), more_likely);
      double total = 0;
      for (size_t i = 0; i < n; ++i) total += cand_[i].w;
      // Keep tokens while the mass before them is below top_p (at least one):
      // the smallest most-likely set whose probability reaches top_p.
      double before = 0;
      size_t keep = 0;
      while (keep < n && (keep == 0 || before < p_.top_p * total)) before += cand_[keep++].w;
      n = keep;
    }
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += cand_[i].w;
    const double u = static_cast<double>(rng_.next() >> 11) * 0x1.0p-53 * total;
    double acc = 0;
    for (size_t i = 0; i < n; ++i) {
      acc += cand_[i].w;
      if (u < acc) return cand_[i].id;
    }
    // Rounding left u at the very top: the last token with any mass.
    for (size_t i = n; i-- > 0;)
      if (cand_[i].w > 0) return cand_[i].id;
    return cand_[0].id;
  }

 private:
  struct Cand {
    double w;
    int32_t id;
  };
  SamplingParams p_;
  SplitMix64 rng_;
  std::vector<Cand> cand_;
};

// The k most likely tokens of row [V] with their log-probs, most likely first.
std::vector<TokenAlt> top_alternatives(const float* row, int V, int k) {
  k = std::min(k, V);
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (int i = 0; i < V; ++i) ids[i] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return row[a] != row[b] ? row[a] > row[b] : a < b;
  });
  const TokenLogprob best = score_row(row, V, ids[0]);
  const double lse = row[ids[0]] - best.logprob;
  std::vector<TokenAlt> out;
  for (int i = 0; i < k; ++i) out.push_back({ids[i], row[ids[i]] - lse});
  return out;
}

// One of the two decoders behind the same three calls.
struct Decoder {
  std::unique_ptr<KvDecoder> cpu;
  std::unique_ptr<GpuDecoder> gpu;
  Status reset(int n, int cap) { return gpu ? gpu->reset(n, cap) : cpu->reset(n, cap); }
  Status prefill(int s, const int32_t* t, int n, float* o) {
    return gpu ? gpu->prefill(s, t, n, o) : cpu->prefill(s, t, n, o);
  }
  Status step(const std::vector<int>& s, const std::vector<int32_t>& t, float* o) {
    return gpu ? gpu->step(s, t, o) : cpu->step(s, t, o);
  }
};

}  // namespace

void NativeBackend::warn(const std::string& msg) const {
  if (opts_.warn) {
    opts_.warn(msg);
  } else {
    std::fprintf(stderr, "warning: %s\n", msg.c_str());
    std::fflush(stderr);
  }
}

Result<std::vector<std::vector<int32_t>>> NativeBackend::fit_prompts(
    const std::vector<TokenGenRequest>& reqs) {
  const int P = model_.config().n_positions;
  std::vector<std::vector<int32_t>> ctx(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const TokenGenRequest& r = reqs[i];
    if (r.max_tokens < 0)
      return Status::Invalid("generate: max_tokens must be >= 0, got " +
                             std::to_string(r.max_tokens));
    // lm-eval's HF generate_until: the context keeps its last
    // max_length - max_gen_toks tokens, which must be at least one.
    const int max_ctx = P - r.max_tokens;
    if (max_ctx < 1)
      return Status::Invalid("generate: max_tokens " + std::to_string(r.max_tokens) +
                             " leaves no room for the prompt in the model's n_positions " +
                             std::to_string(P) + " (need max_tokens < n_positions)");
    const auto& p = r.prompt;
    if (p.empty()) {
      ctx[i] = {tok_->bos_id()};
      continue;
    }
    const size_t keep = std::min(p.size(), static_cast<size_t>(max_ctx));
    if (keep < p.size() && !warned_truncation_) {
      warned_truncation_ = true;
      warn("generation prompt of " + std::to_string(p.size()) + " tokens + max_gen_toks " +
           std::to_string(r.max_tokens) + " exceeds n_positions " + std::to_string(P) +
           ": keeping its last " + std::to_string(keep) + " tokens (" +
           std::to_string(p.size() - keep) +
           " cut, lm-eval's left truncation); further truncated prompts are not reported");
    }
    ctx[i].assign(p.end() - static_cast<std::ptrdiff_t>(keep), p.end());
  }
  return ctx;
}

Result<std::vector<Generation>> NativeBackend::generate_tokens(
    const std::vector<TokenGenRequest>& reqs) {
  const engine::GPTConfig& cfg = model_.config();
  const int P = cfg.n_positions, V = cfg.vocab_size;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const SamplingParams& sp = reqs[i].sampling;
    if (!(sp.temperature >= 0) || !std::isfinite(sp.temperature) || !(sp.top_p > 0) ||
        sp.top_p > 1 || sp.top_k < 0 || reqs[i].top_logprobs < 0)
      return Status::Invalid("generate: request " + std::to_string(i) +
                             ": need temperature >= 0, top_p in (0, 1], top_k >= 0 and "
                             "top_logprobs >= 0");
    for (int32_t t : reqs[i].prompt)
      if (t < 0 || t >= V)
        return Status::Invalid("generate: request " + std::to_string(i) + ": token id " +
                               std::to_string(t) + " is outside the vocabulary 0.." +
                               std::to_string(V - 1));
  }
  ASSAY_ASSIGN_OR_RETURN(auto ctx, fit_prompts(reqs));
  std::vector<Generation> out(reqs.size());
  Decoder dec;
  if (gpu_) dec.gpu = std::make_unique<GpuDecoder>(*gpu_);
  else dec.cpu = std::make_unique<KvDecoder>(model_);
  std::vector<float> logits;
  const size_t gb = static_cast<size_t>(std::max(1, opts_.gen_batch_size));
  for (size_t b0 = 0; b0 < reqs.size(); b0 += gb) {
    const size_t b1 = std::min(reqs.size(), b0 + gb);
    const int nb = static_cast<int>(b1 - b0);
    int capacity = 1;
    std::vector<Sampler> samplers;
    for (int s = 0; s < nb; ++s) {
      capacity = std::max(capacity, static_cast<int>(ctx[b0 + s].size()) + reqs[b0 + s].max_tokens);
      samplers.emplace_back(reqs[b0 + s].sampling);
    }
    ASSAY_RETURN_IF_ERROR(dec.reset(nb, std::min(capacity, P)));
    logits.resize(static_cast<size_t>(nb) * V);
    // Appends the chosen token of the logits row to slot s; true while s continues.
    auto advance = [&](int s, const float* row) {
      const TokenGenRequest& r = reqs[b0 + s];
      Generation& g = out[b0 + s];
      const int32_t tok = samplers[s].pick(row, V);
      g.scores.push_back(score_row(row, V, tok));
      if (r.top_logprobs > 0) g.top.push_back(top_alternatives(row, V, r.top_logprobs));
      g.tokens.push_back(tok);
      if (tok == tok_->eos_id()) {
        g.finish_reason = "stop";
        return false;
      }
      g.text = tok_->decode(g.tokens);
      const std::string cut = truncate_at_stop(g.text, r.stop);
      if (cut.size() != g.text.size()) {
        g.text = cut;
        g.finish_reason = "stop";
        return false;
      }
      if (static_cast<int>(g.tokens.size()) >= r.max_tokens) {
        g.finish_reason = "length";
        return false;
      }
      return true;
    };
    std::vector<int> active;
    for (int s = 0; s < nb; ++s) {
      if (reqs[b0 + s].max_tokens == 0) {
        out[b0 + s].finish_reason = "length";
        continue;
      }
      const auto& c = ctx[b0 + s];
      ASSAY_RETURN_IF_ERROR(dec.prefill(s, c.data(), static_cast<int>(c.size()), logits.data()));
      if (advance(s, logits.data())) active.push_back(s);
    }
    std::vector<int32_t> next;
    while (!active.empty()) {
      next.clear();
      for (int s : active) next.push_back(out[b0 + s].tokens.back());
      ASSAY_RETURN_IF_ERROR(dec.step(active, next, logits.data()));
      std::vector<int> still;
      for (size_t i = 0; i < active.size(); ++i)
        if (advance(active[i], logits.data() + i * static_cast<size_t>(V)))
          still.push_back(active[i]);
      active.swap(still);
    }
    if (opts_.progress)
      opts_.progress("generate", static_cast<int64_t>(b1), static_cast<int64_t>(reqs.size()));
  }
  return out;
}

Result<std::vector<Generation>> NativeBackend::generate_tokens(
    const std::vector<std::vector<int32_t>>& prompts, int max_tokens,
    const std::vector<std::string>& stop) {
  std::vector<TokenGenRequest> reqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) reqs[i] = {prompts[i], max_tokens, stop, {}, 0};
  return generate_tokens(reqs);
}

Result<std::vector<std::string>> NativeBackend::generate(const std::vector<GenRequest>& reqs) {
  // Every request carries its own limits and sampling: one call for all.
  std::vector<TokenGenRequest> treqs(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i)
    treqs[i] = {encode_prompt(reqs[i].prompt), reqs[i].max_tokens, reqs[i].stop,
                reqs[i].sampling, 0};
  ASSAY_ASSIGN_OR_RETURN(auto gens, generate_tokens(treqs));
  std::vector<std::string> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) out[i] = std::move(gens[i].text);
  return out;
}

}  // namespace assay::evals
