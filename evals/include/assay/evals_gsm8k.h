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
  SamplingParams sampling;       // greedy unless --gen-kwargs asks otherwise
};

// lm-eval's --gen_kwargs applied to the task, as lm-eval updates the task's
// generation_kwargs: sampling, and max_gen_toks / until when given.
void apply_gen_kwargs(const GenKwargs& g, Gsm8kConfig* cfg);

// The task config lm-eval records in configs.gsm8k (its gsm8k.yaml layout:
// task, dataset_*, doc_to_text, metric_list, filter_list, num_fewshot,
// generation_kwargs with the sampling actually used, metadata.version), plus
// the Assay spec fields the run set (filters, max_gen_tokens, stop,
// fewshot_seed, limit). Use as ReportContext::task_config.
nlohmann::json gsm8k_task_config(const Gsm8kConfig& cfg);
// The generation_kwargs of each request: until, do_sample, temperature,
// max_gen_toks, and top_p / top_k / seed when they are not the defaults.
nlohmann::json gsm8k_generation_kwargs(const Gsm8kConfig& cfg);

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
  std::string prompt;    // empty in predictions mode (unless the file had it)
  std::string question;  // the doc's question when known
  std::string target;    // reference answer
  std::string response;  // raw model output
  std::map<std::string, std::string> filtered;  // filter -> prediction
  std::map<std::string, double> exact_match;    // filter -> 0 or 1
};

struct Gsm8kReport {
  Gsm8kConfig config;  // what was scored (filters, generation settings)
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

// lm-eval's samples_<task>_<date>.jsonl: one line per document PER FILTER,
// filter by filter in config.filters order, documents in order:
//   {"doc_id", "doc": {"question", "answer"}, "target",
//    "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": generation_kwargs}},
//    "resps": [[response]], "filtered_resps": [prediction], "filter",
//    "metrics": ["exact_match"], "doc_hash", "prompt_hash", "target_hash",
//    "exact_match": 0.0 | 1.0}
// Hashes are lm-eval's hash_string (sha256 hex of the UTF-8 text) of
// json.dumps(doc, indent=2, ensure_ascii=False), of the prompt and of the
// target. A doc whose question is unknown (predictions mode) is {"answer"}.
std::string gsm8k_samples_jsonl(const Gsm8kReport& report);

// lm-eval's task_hashes.gsm8k: sha256 of the concatenated doc_hash +
// prompt_hash + target_hash of every samples line, in file order.
std::string gsm8k_task_hash(const Gsm8kReport& report);

// ---- predictions files (--predictions) ---------------------------------------

struct PredictionsOptions {
  std::string path;
  std::string pred_field = "response";  // plain files: the response field
  std::string ref_field = "answer";     // plain files: the reference field
  // --refs-from-test: references are test[doc_id].answer (doc_id: the field,
  // else the line's index); questions come along.
  const std::vector<Gsm8kDoc>* test = nullptr;
  int64_t limit = 0;   // > 0: the first `limit` documents
  std::string filter;  // lm-eval samples files: the filter whose line is read
                       // (empty: the first line of each document)
};

// Responses and references in document order.
struct Gsm8kPredictions {
  std::vector<int64_t> doc_ids;
  std::vector<std::string> responses, references;
  std::vector<std::string> prompts;    // lm-eval samples: arguments.gen_args_0.arg_0
  std::vector<std::string> questions;  // doc.question or the test split's; else ""
  bool lm_eval_samples = false;        // the file was an lm-eval samples file
};

// Reads a predictions JSONL. Two layouts:
// - plain: one line per document, the response in pred_field (a nested list
//   such as [[text]] gives its first element) and the reference in ref_field
//   (or from the test split);
// - lm-eval samples files, recognised by "doc_id", "filter" and "resps" on
//   the first line: one line per document per filter. Lines are grouped by
//   doc_id and the line of `filter` is taken (one per document, so n and
//   stderr count documents); the response is pred_field when the line has
//   it, else resps[0][0] (the raw generation, which Assay filters again);
//   the reference is ref_field when present, else "target", else
//   doc.answer (or the test split's with `test`). Documents come out sorted
//   by doc_id.
Result<Gsm8kPredictions> read_gsm8k_predictions(const PredictionsOptions& opts);

// score_gsm8k over read predictions, keeping their doc ids, prompts and questions.
Result<Gsm8kReport> score_gsm8k_predictions(const Gsm8kPredictions& p, const Gsm8kConfig& cfg);

}  // namespace assay::evals
