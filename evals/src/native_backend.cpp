// NativeBackend: scoring and greedy generation on the native GPT engine.
// See evals_native.h for the semantics.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_rows.h"
#include "assay/evals_native.h"
#include "gpu_decoder.h"

namespace assay::evals {

namespace {

// log-softmax of row [V] at `token`, and the row's argmax (lowest id on ties).
TokenLogprob score_row(const float* row, int V, int32_t token) {
  int32_t top = 0;
  for (int i = 1; i < V; ++i)
    if (row[i] > row[top]) top = i;
  const double m = row[top];
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(row[i]) - m);
  const double lse = m + std::log(sum);
  return {token, static_cast<double>(row[token]) - lse, top, m - lse};
}

// A scoring window: input tokens seq[start, start+len) predict targets
// seq[a, b) (the target at j is predicted at input index j-1-start).
struct Window {
  size_t seq = 0;
  int64_t start = 0, a = 0, b = 0;
  int64_t len() const { return b - 1 - start; }
};

}  // namespace

NativeBackend::NativeBackend(engine::GPT model, std::unique_ptr<engine::Tokenizer> tokenizer,
                             std::string checkpoint_hash, std::string name, NativeOptions opts)
    : model_(std::move(model)),
      tok_(std::move(tokenizer)),
      hash_(std::move(checkpoint_hash)),
      name_(std::move(name)),
      opts_(std::move(opts)) {}

NativeBackend::~NativeBackend() = default;

std::string NativeBackend::describe() const {
  return "native:" + name_ + " hash=" + hash_.substr(0, 12) +
         (gpu_ ? " device=cuda:" + std::to_string(gpu_->device_index()) : std::string());
}

Status NativeBackend::use_cuda(int device_index) {
  ASSAY_ASSIGN_OR_RETURN(auto g, engine::cuda::CudaGPT::create(model_, device_index,
                                                               engine::Mode::kFrozen));
  gpu_ = std::make_unique<engine::cuda::CudaGPT>(std::move(g));
  return Status::Ok();
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> NativeBackend::encode_pair(
    const std::string& context, const std::string& continuation) const {
  if (context.empty()) {
    std::vector<int32_t> ctx;
    if (opts_.whole_text_bos) ctx.push_back(tok_->bos_id());
    return {ctx, tok_->encode(continuation, true)};
  }
  // lm-eval moves the context's trailing whitespace to the continuation, then
  // splits the encoding of the whole text after the context's own length.
  size_t keep = context.size();
  while (keep > 0 && std::isspace(static_cast<unsigned char>(context[keep - 1]))) --keep;
  const std::string ctx = context.substr(0, keep);
  const std::string cont = context.substr(keep) + continuation;
  std::vector<int32_t> whole = tok_->encode(ctx + cont, true);
  std::vector<int32_t> ctx_ids = tok_->encode(ctx, true);
  const size_t n = std::min(ctx_ids.size(), whole.size());
  std::vector<int32_t> head(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<int32_t> tail(whole.begin() + static_cast<std::ptrdiff_t>(n), whole.end());
  return {head, tail};
}

Result<std::vector<std::vector<TokenLogprob>>> NativeBackend::score_tokens(
    const std::vector<std::vector<int32_t>>& seqs, const std::vector<int64_t>& first) {
  if (first.size() != seqs.size())
    return Status::Invalid("score_tokens: " + std::to_string(seqs.size()) + " sequences but " +
                           std::to_string(first.size()) + " start offsets");
  const engine::GPTConfig& cfg = model_.config();
  const int64_t P = cfg.n_positions;
  const int V = cfg.vocab_size;
  std::vector<std::vector<TokenLogprob>> out(seqs.size());
  std::vector<Window> windows;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t n = static_cast<int64_t>(seqs[i].size());
    if (first[i] < 1)
      return Status::Invalid("score_tokens: sequence " + std::to_string(i) +
                             ": the first scored token must have a prefix (first >= 1), got " +
                             std::to_string(first[i]));
    for (int32_t t : seqs[i])
      if (t < 0 || t >= V)
        return Status::Invalid("score_tokens: sequence " + std::to_string(i) + ": token id " +
                               std::to_string(t) + " is outside the vocabulary 0.." +
                               std::to_string(V - 1));
    if (first[i] < n) out[i].resize(static_cast<size_t>(n - first[i]));
    for (int64_t a = first[i]; a < n; a += P) {
      const int64_t b = std::min(n, a + P);
      windows.push_back({i, std::max<int64_t>(0, b - 1 - P), a, b});
    }
  }
  // Longest first, so that each batch pads little (lm-eval sorts the same way).
  std::vector<size_t> order(windows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return windows[x].len() > windows[y].len(); });
  std::vector<int32_t> tokens, rows, targets;
  std::vector<engine::cuda::RowScore> scores;
  size_t done = 0;
  while (done < order.size()) {
    // The batch: as many windows as fit batch_size and max_batch_tokens (>= 1).
    const int64_t T = windows[order[done]].len();
    size_t end = done + 1;
    while (end < order.size() && static_cast<int64_t>(end - done) < opts_.batch_size &&
           static_cast<int64_t>(end - done + 1) * T <= opts_.max_batch_tokens)
      ++end;
    const int B = static_cast<int>(end - done);
    tokens.assign(static_cast<size_t>(B) * T, 0);  // right padding; causal, so never read
    for (int r = 0; r < B; ++r) {
      const Window& w = windows[order[done + r]];
      const auto& s = seqs[w.seq];
      std::copy(s.begin() + w.start, s.begin() + w.start + w.len(),
                tokens.begin() + static_cast<std::ptrdiff_t>(r) * T);
    }
    if (gpu_) {
      // Only the scores leave the device, never the [B, T, V] logits.
      ASSAY_RETURN_IF_ERROR(gpu_->forward(tokens.data(), B, static_cast<int>(T)));
      rows.clear();
      targets.clear();
      for (int r = 0; r < B; ++r) {
        const Window& w = windows[order[done + r]];
        for (int64_t j = w.a; j < w.b; ++j) {
          rows.push_back(static_cast<int32_t>(r * T + (j - 1 - w.start)));
          targets.push_back(seqs[w.seq][j]);
        }
      }
      scores.resize(rows.size());
      ASSAY_RETURN_IF_ERROR(engine::cuda::row_scores(*gpu_, rows, targets, scores));
      size_t k = 0;
      for (int r = 0; r < B; ++r) {
        const Window& w = windows[order[done + r]];
        for (int64_t j = w.a; j < w.b; ++j, ++k)
          out[w.seq][static_cast<size_t>(j - first[w.seq])] = {
              targets[k], scores[k].logprob, scores[k].top_token, scores[k].top_logprob};
      }
    } else {
      ASSAY_ASSIGN_OR_RETURN(auto logits, model_.forward(tokens.data(), B, static_cast<int>(T)));
      for (int r = 0; r < B; ++r) {
        const Window& w = windows[order[done + r]];
        const auto& s = seqs[w.seq];
        for (int64_t j = w.a; j < w.b; ++j) {
          const float* row = logits.data() + (static_cast<size_t>(r) * T + (j - 1 - w.start)) * V;
          out[w.seq][static_cast<size_t>(j - first[w.seq])] = score_row(row, V, s[j]);
        }
      }
    }
    done = end;
    if (opts_.progress)
      opts_.progress("score", static_cast<int64_t>(done), static_cast<int64_t>(order.size()));
  }
  return out;
}

Result<std::vector<TokenScores>> NativeBackend::score(const std::vector<ScoreRequest>& reqs) {
  std::vector<std::vector<int32_t>> seqs(reqs.size());
  std::vector<int64_t> first(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto [ctx, cont] = encode_pair(reqs[i].context, reqs[i].continuation);
    // Without a start token the first token of a whole text has no prediction.
    first[i] = std::max<int64_t>(1, static_cast<int64_t>(ctx.size()));
    seqs[i] = std::move(ctx);
    seqs[i].insert(seqs[i].end(), cont.begin(), cont.end());
  }
  ASSAY_ASSIGN_OR_RETURN(auto scored, score_tokens(seqs, first));
  std::vector<TokenScores> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (const TokenLogprob& t : scored[i]) {
      out[i].logprobs.push_back(t.logprob);
      out[i].is_top.push_back(t.top_token == t.token);
    }
  }
  return out;
}

Result<std::vector<Generation>> NativeBackend::generate_tokens(
    const std::vector<std::vector<int32_t>>& prompts, int max_tokens,
    const std::vector<std::string>& stop) {
  const engine::GPTConfig& cfg = model_.config();
  const int P = cfg.n_positions, V = cfg.vocab_size;
  if (max_tokens < 0)
    return Status::Invalid("generate: max_tokens must be >= 0, got " + std::to_string(max_tokens));
  // Prompt and completion share the n_positions window; keep at least one prompt token.
  const int new_max = std::min(max_tokens, P - 1);
  const int max_ctx = P - new_max;
  std::vector<Generation> out(prompts.size());
  // One of the two decoders, behind the same three calls.
  std::unique_ptr<KvDecoder> cpu_dec;
  std::unique_ptr<GpuDecoder> gpu_dec;
  if (gpu_) gpu_dec = std::make_unique<GpuDecoder>(*gpu_);
  else cpu_dec = std::make_unique<KvDecoder>(model_);
  struct {
    KvDecoder* c;
    GpuDecoder* g;
    Status reset(int n, int cap) { return g ? g->reset(n, cap) : c->reset(n, cap); }
    Status prefill(int s, const int32_t* t, int n, float* o) {
      return g ? g->prefill(s, t, n, o) : c->prefill(s, t, n, o);
    }
    Status step(const std::vector<int>& s, const std::vector<int32_t>& t, float* o) {
      return g ? g->step(s, t, o) : c->step(s, t, o);
    }
  } dec{cpu_dec.get(), gpu_dec.get()};
  std::vector<float> logits;
  const int gb = std::max(1, opts_.gen_batch_size);
  for (size_t b0 = 0; b0 < prompts.size(); b0 += static_cast<size_t>(gb)) {
    const size_t b1 = std::min(prompts.size(), b0 + static_cast<size_t>(gb));
    const int nb = static_cast<int>(b1 - b0);
    std::vector<std::vector<int32_t>> ctx(nb);
    int capacity = 1;
    for (int s = 0; s < nb; ++s) {
      const auto& p = prompts[b0 + s];
      if (p.empty()) {
        ctx[s] = {tok_->bos_id()};
      } else {
        const size_t keep = std::min(p.size(), static_cast<size_t>(max_ctx));
        ctx[s].assign(p.end() - static_cast<std::ptrdiff_t>(keep), p.end());
      }
      capacity = std::max(capacity, static_cast<int>(ctx[s].size()) + new_max);
    }
    ASSAY_RETURN_IF_ERROR(dec.reset(nb, std::min(capacity, P)));
    logits.resize(static_cast<size_t>(nb) * V);
    std::vector<int> active;
    std::vector<int32_t> next;
    // Appends the argmax of the logits row to slot s; true while s continues.
    auto advance = [&](int s, const float* row) {
      Generation& g = out[b0 + s];
      const int32_t top = score_row(row, V, 0).top_token;
      g.scores.push_back(score_row(row, V, top));
      g.tokens.push_back(top);
      if (top == tok_->eos_id()) {
        g.finish_reason = "stop";
        return false;
      }
      g.text = tok_->decode(g.tokens);
      const std::string cut = truncate_at_stop(g.text, stop);
      if (cut.size() != g.text.size()) {
        g.text = cut;
        g.finish_reason = "stop";
        return false;
      }
      if (static_cast<int>(g.tokens.size()) >= new_max) {
        g.finish_reason = "length";
        return false;
      }
      return true;
    };
    for (int s = 0; s < nb; ++s) {
      if (new_max == 0) {
        out[b0 + s].finish_reason = "length";
        continue;
      }
      ASSAY_RETURN_IF_ERROR(dec.prefill(s, ctx[s].data(), static_cast<int>(ctx[s].size()),
                                        logits.data()));
      if (advance(s, logits.data())) active.push_back(s);
    }
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
      opts_.progress("generate", static_cast<int64_t>(b1), static_cast<int64_t>(prompts.size()));
  }
  return out;
}

Result<std::vector<std::string>> NativeBackend::generate(const std::vector<GenRequest>& reqs) {
  // Requests with the same max_tokens and stop strings run as one batch group.
  std::vector<std::string> out(reqs.size());
  std::vector<bool> done(reqs.size(), false);
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> group;
    for (size_t j = i; j < reqs.size(); ++j)
      if (!done[j] && reqs[j].max_tokens == reqs[i].max_tokens && reqs[j].stop == reqs[i].stop) {
        group.push_back(j);
        done[j] = true;
      }
    std::vector<std::vector<int32_t>> prompts;
    for (size_t j : group) prompts.push_back(tok_->encode(reqs[j].prompt, true));
    ASSAY_ASSIGN_OR_RETURN(auto gens, generate_tokens(prompts, reqs[i].max_tokens, reqs[i].stop));
    for (size_t k = 0; k < group.size(); ++k) out[group[k]] = std::move(gens[k].text);
  }
  return out;
}

Result<std::unique_ptr<NativeBackend>> load_native_backend(const std::string& checkpoint_dir,
                                                           NativeOptions opts) {
  auto ck = engine::load_checkpoint(checkpoint_dir, engine::Mode::kFrozen);
  if (!ck.ok()) return ck.status().with_context("checkpoint " + checkpoint_dir);
  if (opts.batch_size < 1 || opts.max_batch_tokens < 1 || opts.gen_batch_size < 1)
    return Status::Invalid("native backend: batch_size, max_batch_tokens and gen_batch_size must "
                           "be >= 1");
  std::string name = std::filesystem::path(checkpoint_dir).lexically_normal().string();
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  ASSAY_ASSIGN_OR_RETURN(engine::cuda::Device dev, engine::cuda::resolve_device(opts.device));
  auto be = std::make_unique<NativeBackend>(std::move(ck->model), std::move(ck->tokenizer),
                                            ck->hash, name, std::move(opts));
  if (dev.is_cuda()) ASSAY_RETURN_IF_ERROR(be->use_cuda(dev.index).with_context(dev.str()));
  return be;
}

}  // namespace assay::evals
