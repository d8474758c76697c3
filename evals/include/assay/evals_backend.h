// The seam between eval suites and models. A Backend scores continuations
// token by token and generates text; suites only see these results, so the
// HTTP backend (OpenAI-compatible completions) and the native engine are
// interchangeable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "assay/status.h"

namespace assay::evals {

// Score `continuation` given `context`. An empty context scores the whole
// text: the first token has no prediction, so a text of N tokens yields N-1
// scores unless the backend prepends a start token (then N).
struct ScoreRequest {
  std::string context;
  std::string continuation;
};

// Per-token results for the continuation tokens only, in order.
struct TokenScores {
  std::vector<double> logprobs;   // log p(token_t | prefix), natural log
  std::vector<uint8_t> is_top;    // 1 when token_t was the argmax prediction
  int64_t n_tokens() const { return static_cast<int64_t>(logprobs.size()); }
};

// lm-eval's loglikelihood answer for one request.
struct LoglikResult {
  double logprob = 0;      // sum of the continuation's token log-probs
  bool is_greedy = false;  // every continuation token was the top prediction
  int64_t n_tokens = 0;
};

// How the next token is chosen, with the OpenAI / lm-eval meanings:
// temperature 0 is greedy (argmax, lowest id on ties); otherwise the logits
// are divided by temperature, restricted to the top_k most likely tokens
// (0 = all) and to the smallest set whose probability reaches top_p, and
// sampled. A fixed seed gives the same output for the same request.
struct SamplingParams {
  double temperature = 0;        // >= 0
  double top_p = 1;              // (0, 1]
  int top_k = 0;                 // >= 0; 0 = no limit
  std::optional<uint64_t> seed;  // absent: a seed drawn per request
  bool greedy() const { return temperature == 0; }
};

struct GenRequest {
  std::string prompt;
  std::vector<std::string> stop;  // the output is cut before the first stop string
  int max_tokens = 256;           // at most this many new tokens
  SamplingParams sampling;        // greedy by default
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Human-readable identity recorded with results, e.g. "openai:http://.../v1 model=x".
  virtual std::string describe() const = 0;
  // One TokenScores per request, same order.
  virtual Result<std::vector<TokenScores>> score(const std::vector<ScoreRequest>& reqs) = 0;
  // One completion per request, same order, already cut at the stop strings.
  virtual Result<std::vector<std::string>> generate(const std::vector<GenRequest>& reqs) = 0;
};

// Sum / greedy flag of each request's TokenScores.
LoglikResult to_loglik(const TokenScores& s);
Result<std::vector<LoglikResult>> loglikelihood(Backend& backend,
                                                const std::vector<ScoreRequest>& reqs);

// Per-text mean negative log-likelihood (nats/token) of whole texts: the
// mean of -logprob over the scored tokens. Texts with no scored token fail.
Result<std::vector<double>> mean_nll(Backend& backend, const std::vector<std::string>& texts);

// Cut `text` before the earliest occurrence of any non-empty stop string.
std::string truncate_at_stop(const std::string& text, const std::vector<std::string>& stop);

// ---- lm-eval --gen_kwargs -----------------------------------------------------

// A value as lm-eval's simple_parse_args_string types it: None, bool, int,
// float, or str (quoted values stay strings).
using GenKwargValue = std::variant<std::monostate, bool, int64_t, double, std::string>;

struct GenKwargs {
  SamplingParams sampling;               // greedy unless the text asks otherwise
  std::optional<int> max_gen_toks;       // when given
  std::optional<std::vector<std::string>> until;  // when given (one stop string)
  // Every key=value as parsed, in order (duplicates: the last one wins above),
  // for the results file's config.gen_kwargs.
  std::vector<std::pair<std::string, GenKwargValue>> given;
};

// Parses lm-eval's --gen_kwargs syntax, e.g.
// "temperature=0.7,top_p=0.9,do_sample=True,seed=1,max_gen_toks=64":
// comma-separated key=value; values typed by literal parsing (true/false any
// case, none, integers, floats, quoted strings). Keys: temperature (>= 0),
// top_p (0, 1], top_k (>= 0), seed (>= 0 or None), do_sample (bool),
// max_gen_toks (> 0), until (one stop string). do_sample=False forces greedy
// decoding whatever the temperature; do_sample=True without a temperature
// samples at 1.0 (transformers' default). An empty text gives the defaults.
// Unknown keys and ill-typed values fail, naming the key and what is accepted.
Result<GenKwargs> parse_gen_kwargs(const std::string& text);

}  // namespace assay::evals
