// `assay eval`: one suite run end to end. The command line fills EvalOptions;
// run_eval finds the suite spec, works out the eval's identity (checkpoint
// hash, suite, versioned inputs, seed), serves it from the results store when
// the same eval was already done, else runs the suite's task through a table
// of runners (one per task: gsm8k, ood, provenance, unlearning, preference,
// diversity), then records
// rows, writes the lm-eval style results file and reports the metric line.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

struct EvalOptions {
  std::string suite;  // shipped name or path to a suite spec
  // Model: exactly one of model_path (native checkpoint), endpoint (OpenAI-
  // compatible server, with model) or predictions (gsm8k only).
  std::string model_path, endpoint, model, api_key_env = "OPENAI_API_KEY", checkpoint_hash;
  std::string bos_text = "auto";  // --endpoint whole-text scoring; see evals_http.h
  int concurrency = 4, max_retries = 5, threads = 0, batch_size = 16;
  std::string device = "auto";
  double timeout_s = 600;
  // Predictions (gsm8k).
  std::string predictions, pred_field = "response", ref_field = "answer";
  bool refs_from_test = false;
  // Results.
  std::string db, output, samples, data_dir;
  int64_t limit = 0, seed = 0;
  bool force = false;
  // gsm8k overrides (negative / empty = the spec's).
  std::vector<std::string> filters;
  int num_fewshot = -1, max_gen_toks = -1;
  int64_t fewshot_seed = -1;
  std::string gen_kwargs;  // lm-eval --gen_kwargs syntax, e.g. "temperature=0.7,seed=1"
  // ood.
  std::string base, id_file, ood_file, variant;
  // provenance.
  std::string reference, transcript;
  std::vector<std::string> data;
  int64_t permutations = 0;
  double alpha = 0;
  int64_t window = -1;      // last K examples by last position; 0 = all; -1 = the spec's
  std::string alternative;  // less | greater | two-sided; empty = the spec's
  // unlearning.
  std::string forget, retain, holdout, retain_model, perturbed;
  // Environment of an eval run under a worker (read by the CLI).
  std::optional<int64_t> run_id;  // ASSAY_RUN_ID
  int metrics_fd = -1;            // ASSAY_METRICS_FD
  std::string output_dir;         // ASSAY_OUTPUT_DIR: default --output <dir>/results_<suite>.json
  // Progress and notes for a person (stderr in the CLI).
  std::function<void(const std::string&)> log;
};

struct EvalOutcome {
  std::string suite, suite_version, checkpoint_hash;
  bool cached = false;
  std::vector<ResultRow> rows;
};

// Where a failed eval stopped: in setup (options, spec, identity, inputs:
// nothing was run; InvalidArgument and NotFound there are usage errors) or
// while running the task and recording its results.
enum class EvalStage { kSetup, kRun };

// *failed_in (when given) is set on failure.
Result<EvalOutcome> run_eval(const EvalOptions& opts, EvalStage* failed_in = nullptr);

// Tasks that have a runner, in table order (gsm8k, ood, provenance, ...).
std::vector<std::string> eval_tasks();

}  // namespace assay::evals
