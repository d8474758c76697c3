// Backend over the native GPT engine (assay_engine), with lm-evaluation-harness
// semantics:
//   scoring     context and continuation are encoded like lm-eval's
//               `_encode_pair`: trailing whitespace of the context moves to the
//               continuation, the pair is encoded whole and the continuation
//               is what follows the context's own encoding. An empty context
//               scores the whole text after the model's start token (unless
//               whole_text_bos is off). Sequences longer than n_positions are
//               scored in windows laid from the END of the sequence backwards:
//               the last window predicts the last n_positions tokens, the one
//               before it the n_positions tokens before those, and so on; each
//               window reads the n_positions tokens that precede its last
//               target. A token's score therefore depends only on its position
//               and the sequence's length, never on where scoring starts: a
//               continuation of up to n_positions tokens is scored in one
//               window ending at it (exactly lm-eval's HF loglikelihood), and
//               `assay serve` echoing the whole prompt gives every token the
//               same number as scoring it as a continuation.
//               Requests are sorted by length and batched, padded to the
//               longest in the batch.
//   generation  with a KV cache (prefill of each prompt, then one batched
//               token step per iteration), stopped at EOS, at a stop string or
//               after max_tokens new tokens. Each request chooses its tokens
//               with its own SamplingParams (greedy by default) and its own
//               random stream, so a seeded request gives the same text alone
//               or in any batch. A prompt longer than n_positions - max_tokens
//               keeps its last n_positions - max_tokens tokens (lm-eval's HF
//               left truncation; the start token may be cut too, as there),
//               reported once per backend through NativeOptions::warn;
//               max_tokens >= n_positions is an error.
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
  // Receives warnings meant for the user (once per backend: a generation
  // prompt was left-truncated). Empty: they go to stderr.
  std::function<void(const std::string&)> warn;
};

// Score of one predicted token.
struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0;      // log p(token | prefix), natural log
  int32_t top_token = 0;   // argmax of the prediction (lowest id on ties)
  double top_logprob = 0;  // its log-prob
};

// One generation request on token ids.
struct TokenGenRequest {
  std::vector<int32_t> prompt;    // empty: [bos]
  int max_tokens = 256;           // at most this many new tokens, < n_positions
  std::vector<std::string> stop;  // the text is cut before the first stop string
  SamplingParams sampling;        // greedy by default
  int top_logprobs = 0;           // alternatives kept per generated token (Generation::top)
};

// A token and its log-prob under the model (natural log).
struct TokenAlt {
  int32_t token = 0;
  double logprob = 0;
};

// One completion. Log-probs are the model's own (log-softmax of the raw
// logits), whatever the sampling parameters, as vLLM reports them.
struct Generation {
  std::vector<int32_t> tokens;       // generated ids (may run past the stop string)
  std::vector<TokenLogprob> scores;  // one per generated token
  // Per generated token, the top_logprobs most likely tokens, most likely
  // first (lowest id on ties); empty unless the request asked for them.
  std::vector<std::vector<TokenAlt>> top;
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

  // Text as the model reads it: [bos] first when the checkpoint declares
  // add_bos_token (every Assay-trained one does), then the text's ids.
  std::vector<int32_t> encode_prompt(const std::string& text) const;
  // (context ids, continuation ids) as lm-eval's _encode_pair builds them,
  // with [bos] in front of the context when the checkpoint declares
  // add_bos_token; an empty context gives {bos} when whole_text_bos or
  // add_bos_token, else {}.
  std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(
      const std::string& context, const std::string& continuation) const;

  // Scores seqs[i][t] for t in [first[i], size) given seqs[i][0..t); first[i] >= 1.
  // Result i holds size - first[i] entries. Past n_positions, windows are laid
  // from the end (see the header comment): the score of seqs[i][t] does not
  // depend on first[i].
  Result<std::vector<std::vector<TokenLogprob>>> score_tokens(
      const std::vector<std::vector<int32_t>>& seqs, const std::vector<int64_t>& first);

  // Completions of token prompts, each with its own limits and sampling,
  // decoded gen_batch_size at a time. A prompt longer than
  // n_positions - max_tokens keeps its last n_positions - max_tokens tokens
  // (lm-eval's HF left truncation, warned about once); max_tokens must be
  // below n_positions (InvalidArgument otherwise, naming both).
  Result<std::vector<Generation>> generate_tokens(const std::vector<TokenGenRequest>& reqs);
  // The same with one max_tokens and stop list for all prompts, greedy.
  Result<std::vector<Generation>> generate_tokens(const std::vector<std::vector<int32_t>>& prompts,
                                                  int max_tokens,
                                                  const std::vector<std::string>& stop);

  const engine::Tokenizer& tokenizer() const { return *tok_; }
  engine::GPT& model() { return model_; }
  const engine::GPTConfig& config() const { return model_.config(); }
  const std::string& checkpoint_hash() const { return hash_; }
  const std::string& name() const { return name_; }
  NativeOptions& options() { return opts_; }

 private:
  engine::GPT model_;
  std::unique_ptr<engine::cuda::CudaGPT> gpu_;  // set by use_cuda
  std::unique_ptr<engine::Tokenizer> tok_;
  std::string hash_, name_;
  NativeOptions opts_;
  bool warned_truncation_ = false;  // the truncation warning is given once
  // Left-truncates prompts to fit max_tokens (see generate_tokens).
  Result<std::vector<std::vector<int32_t>>> fit_prompts(const std::vector<TokenGenRequest>& reqs);
  void warn(const std::string& msg) const;
};

// Loads a checkpoint directory (frozen) into a NativeBackend named after the
// directory.
Result<std::unique_ptr<NativeBackend>> load_native_backend(const std::string& checkpoint_dir,
                                                           NativeOptions opts = {});

// OpenAI-compatible API over a NativeBackend, transport-free; see
// evals_serve.h for the endpoints and CompletionServer, which `assay serve`
// puts behind an HTTP server. This entry point answers one request on the
// calling thread.
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
