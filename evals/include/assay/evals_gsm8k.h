// GSM8K with lm-evaluation-harness `gsm8k` (version 3.0) semantics: 5-shot
// prompts from the train split drawn with Python's random.Random(1234)
// `sample`, greedy generation stopped at "Question:", "</s>", "<|im_end|>",
// filters `strict-match` / `flexible-extract`, and exact_match after deleting
// ",", "$", everything up to the last "#### ", a final ".", and lowercasing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_backend.h"
#include "assay/evals_metrics.h"
#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

struct Gsm8kDoc {
  std::string question;
  std::string answer;  // worked solution; last line "#### N"
};

// Reads a JSONL file of {"question", "answer"} lines.
Result<std::vector<Gsm8kDoc>> load_gsm8k_jsonl(const std::string& path);

// Where shipped data lives: $ASSAY_EVALS_DATA, else the build-time default
// (<source>/evals/data). `gsm8k/test.jsonl` etc. resolve under it.
std::string default_data_dir();

struct Gsm8kConfig {
  int num_fewshot = 5;
  uint64_t fewshot_seed = 1234;
  int max_gen_toks = 256;
  std::vector<std::string> stop = {"Question:", "</s>", "<|im_end|>"};
  std::vector<std::string> filters = {"strict-match", "flexible-extract"};
  std::optional<int64_t> limit;  // first N test docs
};

// Few-shot train indices for each of the first `n_docs` test docs: one
// random.Random(seed).sample(range(n_train), k) call per doc, in doc order.
std::vector<std::vector<uint64_t>> gsm8k_fewshot_indices(int64_t n_docs, uint64_t n_train,
                                                         int k, uint64_t seed);

// "Question: q\nAnswer: a\n\n" per shot, then "Question: q\nAnswer:".
std::string gsm8k_prompt(const Gsm8kDoc& doc, const std::vector<const Gsm8kDoc*>& shots);

// Filters; both return "[invalid]" when nothing matches.
std::string filter_strict_match(const std::string& response);
std::string filter_flexible_extract(const std::string& response);
// Applies a filter by name; unknown names fail.
Result<std::string> apply_gsm8k_filter(const std::string& filter, const std::string& response);

// exact_match normalization (regexes_to_ignore, then lowercase).
std::string gsm8k_normalize(const std::string& s);
bool gsm8k_exact_match(const std::string& prediction, const std::string& reference);

struct Gsm8kSample {
  int64_t doc_id = 0;
  std::string prompt;    // empty in predictions mode
  std::string target;    // reference answer
  std::string response;  // raw model output
  std::map<std::string, std::string> filtered;  // filter -> prediction
  std::map<std::string, double> exact_match;    // filter -> 0 or 1
};

struct Gsm8kReport {
  std::vector<Gsm8kSample> samples;
  std::map<std::string, MeanStderr> exact_match;  // per filter
  std::vector<ResultRow> rows;
  nlohmann::json results;  // lm-eval style results document
};

// Scores responses against references (same length).
Result<Gsm8kReport> score_gsm8k(const std::vector<std::string>& responses,
                                const std::vector<std::string>& references,
                                const Gsm8kConfig& cfg);

// Builds prompts for the (limited) test docs, generates with `backend` and scores.
Result<Gsm8kReport> run_gsm8k(Backend& backend, const std::vector<Gsm8kDoc>& test,
                              const std::vector<Gsm8kDoc>& train, const Gsm8kConfig& cfg);

// JSONL samples, one line per doc (doc_id, target, resps, filtered_resps, exact_match).
std::string gsm8k_samples_jsonl(const Gsm8kReport& report);

}  // namespace assay::evals
