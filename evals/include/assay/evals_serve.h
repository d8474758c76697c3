// OpenAI-compatible API over a NativeBackend, transport-free (`assay serve`
// puts it behind an HTTP server):
//   GET  /v1/models       {"object": "list", "data": [{"id": model_name, ...}]}
//   GET  /health          {"ok": true, "batches", "completions"}
//   POST /v1/completions  prompt (text, token ids, or a list of either),
//        max_tokens (default 16, below n_positions), temperature (0..2, 0 =
//        greedy), top_p, top_k (vLLM's extension; -1 or 0 = off), seed, n
//        (choices indexed prompt-major: prompt i, choice k has index i*n+k),
//        stop (string or list), echo, logprobs 0..20.
//        Text prompts are encoded as the checkpoint reads text: [bos] first
//        when it declares add_bos_token; with echo that [bos] is the first
//        token (logprob null, text_offset 0) and adds no text, as vLLM does
//        for Llama. Token-id prompts are taken as given (ids below the
//        model's vocab_size).
//        logprobs: token_logprobs are the model's own log-probs (raw logits,
//        whatever the sampling parameters); top_logprobs hold the `logprobs`
//        most likely tokens plus the chosen one (echoed prompt tokens: the
//        most likely one plus the token itself); text_offset counts code
//        points. Echoed prompt tokens are scored as NativeBackend scores
//        them (windows laid from the end past n_positions), so a prompt's
//        echoed scores equal native scores of any context/continuation split.
//        A seed makes a choice reproducible: prompt i, choice 0 samples with
//        the seed itself, choice k > 0 with a seed derived from (seed, k),
//        independent of the other prompts and requests in the batch.
//   POST /tokenize, /v1/tokenize     vLLM's: {"prompt", "add_special_tokens"
//        (default true: [bos] when the checkpoint declares add_bos_token),
//        "return_token_strs"} -> {"count", "max_model_len", "tokens", "token_strs"}
//   POST /detokenize, /v1/detokenize {"tokens"} -> {"prompt"}
//   GET  /tokenizer_info, /v1/tokenizer_info  eos_token, bos_token, pad_token,
//        add_bos_token, model_max_length: what lm-eval's remote tokenizer reads.
// Errors are {"error": {"message", "type", "param", "code"}} with 4xx status.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "assay/evals_native.h"

namespace assay::evals {

namespace serve {
struct Completion;
}

struct CompletionServerOptions {
  size_t max_queued = 256;        // completions waiting; more are answered 503
  size_t max_batch_choices = 64;  // choices (prompts x n) run in one batch, at least one request
};

// Answers the API with inference on one thread of its own: requests that
// need no inference are answered at once on the calling thread; completions
// are validated there (4xx at once), queued, and every request waiting when
// the inference thread is free runs in one batch (one scoring call for all
// echoed prompts, one generation call for all choices). Thread-safe.
class CompletionServer {
 public:
  using Reply = std::function<void(ApiReply)>;
  CompletionServer(NativeBackend& backend, std::string model_name,
                   CompletionServerOptions opts = {});
  // Finishes the batch that runs; what is still queued is answered 503.
  ~CompletionServer();
  CompletionServer(const CompletionServer&) = delete;
  CompletionServer& operator=(const CompletionServer&) = delete;

  // `reply` is called exactly once, on this thread or the inference thread.
  void handle(const std::string& method, const std::string& target, const std::string& body,
              Reply reply);

 private:
  struct Job {
    std::unique_ptr<serve::Completion> req;
    Reply reply;
  };
  void loop();

  NativeBackend& be_;
  std::string name_;
  CompletionServerOptions opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  int64_t batches_ = 0, completions_ = 0;  // under mu_
  std::thread thread_;
};

}  // namespace assay::evals
