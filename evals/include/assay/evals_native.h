// Backend over the native GPT engine (assay_engine), with lm-evaluation-harness
// semantics:
//   scoring     context and continuation are encoded like lm-eval's
//               `_encode_pair`: trailing whitespace of the context moves to the
//               continuation, the pair is encoded whole and the continuation
//               is what follows the context's own encoding. An empty context
//               scores the whole text after the model's start token (unless
//               whole_text_bos is off). Sequences longer than n_positions are
//               scored in rolling windows: each window predicts up to
//               n_positions tokens with the preceding tokens as context.
//               Requests are sorted by length and batched, padded to the
//               longest in the batch.
//   generation  greedy, with a KV cache (prefill of each prompt, then one
//               batched token step per iteration), stopped at EOS, at a stop
//               string or after max_tokens new tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "assay/engine.h"
#include "assay/evals_backend.h"

namespace assay::engine::cuda {
class CudaGPT;
}

namespace assay::evals {

struct NativeOptions {
  int batch_size = 16;              // sequences per scoring forward
  int64_t max_batch_tokens = 4096;  // B*T cap per scoring forward (bounds logits [B,T,V])
  int gen_batch_size = 8;           // sequences decoded together
  bool whole_text_bos = true;       // prepend bos_id() to empty-context requests
  // "cpu", "cuda", "cuda:N" or "auto" (cuda:0 when this build has CUDA and a
  // GPU is visible). On a GPU, scoring reads per-token scores off the device
  // and generation re-runs the whole prefix per new token (no KV cache there).
  std::string device = "cpu";
  // Called after each batch: what ("score" | "generate"), items done, items total.
  std::function<void(const char* what, int64_t done, int64_t total)> progress;
};

// Score of one predicted token.
struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0;      // log p(token | prefix), natural log
  int32_t top_token = 0;   // argmax of the prediction (lowest id on ties)
  double top_logprob = 0;  // its log-prob
};

// One greedy completion.
struct Generation {
  std::vector<int32_t> tokens;       // generated ids (may run past the stop string)
  std::vector<TokenLogprob> scores;  // one per generated token
  std::string text;                  // decoded and cut before the first stop string
  std::string finish_reason;         // "stop" (EOS or stop string) or "length"
};

class NativeBackend final : public Backend {
 public:
  NativeBackend(engine::GPT model, std::unique_ptr<engine::Tokenizer> tokenizer,
                std::string checkpoint_hash, std::string name, NativeOptions opts);
  ~NativeBackend() override;

  std::string describe() const override;
  // Moves the model to a CUDA device (frozen copy); later calls run there.
  Status use_cuda(int device_index);
  bool on_gpu() const { return gpu_ != nullptr; }
  Result<std::vector<TokenScores>> score(const std::vector<ScoreRequest>& reqs) override;
  Result<std::vector<std::string>> generate(const std::vector<GenRequest>& reqs) override;

  // (context ids, continuation ids) as lm-eval's _encode_pair builds them;
  // an empty context gives {bos} when whole_text_bos, else {}.
  std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(
      const std::string& context, const std::string& continuation) const;

  // Scores seqs[i][t] for t in [first[i], size) given seqs[i][0..t); first[i] >= 1.
  // Result i holds size - first[i] entries.
  Result<std::vector<std::vector<TokenLogprob>>> score_tokens(
      const std::vector<std::vector<int32_t>>& seqs, const std::vector<int64_t>& first);

  // Greedy completions of token prompts. A prompt longer than
  // n_positions - max_tokens keeps its last tokens (lm-eval's left truncation);
  // max_tokens is capped so that prompt + completion fit n_positions.
  Result<std::vector<Generation>> generate_tokens(const std::vector<std::vector<int32_t>>& prompts,
                                                  int max_tokens,
                                                  const std::vector<std::string>& stop);

  const engine::Tokenizer& tokenizer() const { return *tok_; }
  engine::GPT& model() { return model_; }
  const std::string& checkpoint_hash() const { return hash_; }
  const std::string& name() const { return name_; }
  NativeOptions& options() { return opts_; }

 private:
  engine::GPT model_;
  std::unique_ptr<engine::cuda::CudaGPT> gpu_;  // set by use_cuda
  std::unique_ptr<engine::Tokenizer> tok_;
  std::string hash_, name_;
  NativeOptions opts_;
};

// Loads a checkpoint directory (frozen) into a NativeBackend named after the
// directory.
Result<std::unique_ptr<NativeBackend>> load_native_backend(const std::string& checkpoint_dir,
                                                           NativeOptions opts = {});

// OpenAI-compatible API over a NativeBackend, transport-free (`assay serve`
// puts it behind an HTTP server):
//   GET  /v1/models       {"object": "list", "data": [{"id": model_name, ...}]}
//   POST /v1/completions  prompt (text, token ids, or a list of either),
//        max_tokens (default 16), temperature 0 only, stop (string or list),
//        echo, logprobs (token_logprobs, tokens, text_offset in code points,
//        top_logprobs with the top-1 entry), n = 1.
// Errors are {"error": {"message", "type", "param", "code"}} with 4xx status.
struct ApiReply {
  int status = 200;
  std::string body;  // JSON
};
ApiReply handle_openai_request(NativeBackend& backend, const std::string& model_name,
                               const std::string& method, const std::string& target,
                               const std::string& body);

// The KV-cache decoder used by generation, exposed for tests: it keeps, per
// slot, the keys and values of every layer for the positions seen so far.
class KvDecoder {
 public:
  explicit KvDecoder(const engine::GPT& model);
  ~KvDecoder();
  KvDecoder(const KvDecoder&) = delete;
  KvDecoder& operator=(const KvDecoder&) = delete;

  // Drops all caches; makes `slots` empty caches of `capacity` positions.
  Status reset(int slots, int capacity);
  int length(int slot) const;
  // Appends tokens[0..n) to slot's cache; logits [V] of the last one go to logits_out.
  Status prefill(int slot, const int32_t* tokens, int n, float* logits_out);
  // Appends tokens[i] to slots[i]'s cache for every i in one batched pass;
  // logits_out [slots.size(), V].
  Status step(const std::vector<int>& slots, const std::vector<int32_t>& tokens,
              float* logits_out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace assay::evals
