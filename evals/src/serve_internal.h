// Pieces of the OpenAI-compatible API shared by the one-shot entry point
// (handle_openai_request) and the batching CompletionServer.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_native.h"

namespace assay::evals::serve {

ApiReply error_reply(int status, const std::string& message, const std::string& param = "",
                     const std::string& type = "invalid_request_error");

// A validated POST /v1/completions request.
struct Completion {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;  // as sent, or decoded from ids
  std::vector<bool> bos_added;            // prompt i starts with a [bos] the server added
  int max_tokens = 16;
  std::vector<std::string> stop;
  bool echo = false;
  std::optional<int> logprobs;
  SamplingParams sampling;
  int n = 1;
};

// Parses and validates a completions body; the 4xx reply otherwise.
std::optional<ApiReply> parse_completion(const std::string& body, const NativeBackend& be,
                                         const std::string& model_name, Completion* out);

// Runs the completions together (one scoring call for all echoed prompts,
// one generation call for all choices) and answers each, in order.
std::vector<ApiReply> run_completions(NativeBackend& be, const std::string& model_name,
                                      const std::vector<const Completion*>& reqs);

// Answers every route that needs no inference (models, health, tokenize,
// detokenize, tokenizer_info, errors). nullopt: a valid POST to
// /v1/completions, whose body the caller parses and runs.
std::optional<ApiReply> answer_light(const NativeBackend& be, const std::string& model_name,
                                     const std::string& method, const std::string& target,
                                     const std::string& body);

}  // namespace assay::evals::serve
