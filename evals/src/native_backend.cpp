// NativeBackend: loading and scoring on the native GPT engine (generation is
// in native_generate.cpp). See evals_native.h for the semantics.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_rows.h"
#include "assay/evals_native.h"
#include "native_rows.h"

namespace assay::evals {

namespace {

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

std::vector<int32_t> NativeBackend::encode_prompt(const std::string& text) const {
  std::vector<int32_t> ids;
  if (tok_->add_bos_token()) ids.push_back(tok_->bos_id());
  std::vector<int32_t> t = tok_->encode(text, true);
  ids.insert(ids.end(), t.begin(), t.end());
  return ids;
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> NativeBackend::encode_pair(
    const std::string& context, const std::string& continuation) const {
  if (context.empty()) {
    std::vector<int32_t> ctx;
    if (opts_.whole_text_bos || tok_->add_bos_token()) ctx.push_back(tok_->bos_id());
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
  std::vector<int32_t> head;
  // The checkpoint's convention (add_bos_token): the model saw [bos] first.
  if (tok_->add_bos_token()) head.push_back(tok_->bos_id());
  head.insert(head.end(), whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
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
    // Windows from the end backwards, so that a target's window (and so its
    // score) does not depend on first[i].
    for (int64_t b = n; b > first[i]; b -= P)
      windows.push_back({i, std::max<int64_t>(0, b - 1 - P), std::max(first[i], b - P), b});
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
