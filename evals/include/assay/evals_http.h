// Backend over an OpenAI-compatible /v1/completions endpoint (vLLM, llama.cpp
// server, text-generation-inference, `assay serve`), with the semantics of
// lm-eval's `local-completions` model:
//   scoring:    prompt = context + continuation, echo: true, logprobs: 1,
//               max_tokens: 1, temperature: 0; the continuation's scores are
//               the echoed token_logprobs after the context (the generated
//               token at the end is dropped). Token boundaries come from
//               logprobs.text_offset, or from the lengths of logprobs.tokens.
//   generation: the request's sampling parameters (temperature, top_p, seed;
//               top_k when > 0), `stop` sent to the server and applied again
//               to the returned text.
// Requests run on `concurrency` threads; connection failures, HTTP 429 and 5xx
// are retried with exponential backoff.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/evals_backend.h"

namespace assay::evals {

struct HttpBackendOptions {
  std::string base_url;      // e.g. "http://127.0.0.1:8000/v1"; "/completions" is appended
  std::string model;         // the "model" field of every request
  std::string api_key;       // sent as "Authorization: Bearer <key>" when non-empty
  int concurrency = 4;       // parallel requests, 1..256
  int max_retries = 5;       // retries after the first attempt
  double backoff_s = 0.5;    // first retry delay; doubles each retry
  double timeout_s = 600;    // per request
  // Prepended to whole-text scoring requests (empty context) so that the
  // first real token is predicted, e.g. "<|endoftext|>". Empty: the first
  // token of the text has no score (unless the server adds BOS itself).
  // "auto" (kAutoBosText): make_http_backend asks the server once, POST
  // <root>/tokenize {"model", "prompt": "", "add_special_tokens": true}
  // (vLLM's and `assay serve`'s route; root = base_url without "/v1"). A
  // non-empty token list means the server adds BOS itself, so nothing is
  // prepended; an empty list or a failed probe (404, no server) means
  // "<|endoftext|>". describe() says which was chosen and why.
  std::string bos_text;
};

inline constexpr const char* kAutoBosText = "auto";
inline constexpr const char* kDefaultBosText = "<|endoftext|>";

class HttpBackend final : public Backend {
 public:
  explicit HttpBackend(HttpBackendOptions opts);
  std::string describe() const override;
  Result<std::vector<TokenScores>> score(const std::vector<ScoreRequest>& reqs) override;
  Result<std::vector<std::string>> generate(const std::vector<GenRequest>& reqs) override;
  // The text prepended to whole-text scoring (bos_text, or what "auto" chose).
  const std::string& resolved_bos_text() const { return bos_; }
  // Probes the server for bos_text "auto" (called by make_http_backend).
  void resolve_auto_bos();

 private:
  // POSTs `body` to the completions URL with retries; returns the parsed reply.
  Result<nlohmann::json> post(const nlohmann::json& body) const;
  HttpBackendOptions opts_;
  std::string url_;
  std::string bos_;       // resolved bos_text
  std::string bos_note_;  // why "auto" chose bos_
};

Result<std::unique_ptr<HttpBackend>> make_http_backend(HttpBackendOptions opts);

// Extracts the continuation's scores from one echoed completion response:
// the tokens whose character offset lies in [context_chars, prompt_chars).
// Offsets count Unicode code points, as OpenAI's text_offset does.
Result<TokenScores> parse_echo_logprobs(const nlohmann::json& response, int64_t context_chars,
                                        int64_t prompt_chars);

// The server root of a completions base URL: trailing "/", "/completions"
// and "/v1" removed ("http://h:8000/v1" -> "http://h:8000").
std::string server_root(const std::string& base_url);

// Number of Unicode code points in a UTF-8 string.
int64_t utf8_length(const std::string& s);

}  // namespace assay::evals
