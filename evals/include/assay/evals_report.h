// lm-eval style results documents written by `assay eval --output`, laid out
// as lm-evaluation-harness 0.4.x writes results_<date>.json (evaluator.py
// simple_evaluate + EvaluationTracker.save_results_aggregated).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_backend.h"
#include "assay/evals_store.h"
#include "assay/evals_suite.h"

namespace assay::evals {

// What a results document is made of. Pointers are borrowed for the call.
struct ReportContext {
  const schemas::SuiteSpec* spec = nullptr;
  const EvalIdentity* id = nullptr;
  const std::vector<ResultRow>* rows = nullptr;
  std::string backend;  // the backend's describe(), or "cached"
  bool cached = false;
  // What the task actually used: the spec's fields with every flag applied
  // (e.g. options.variant "qa" after --variant qa). Applied to the spec as a
  // JSON merge patch (RFC 7396: objects merge, null deletes), giving
  // configs.<suite>; its num_fewshot (when a number) is n-shot.<suite>.
  nlohmann::json task_config = nlohmann::json::object();
  // lm-eval's "config": model, model_args, batch_size, batch_sizes, device,
  // use_cache, limit, bootstrap_iters, gen_kwargs, random_seed, numpy_seed,
  // torch_seed, fewshot_seed. Keys not given are written as lm-eval does
  // when they do not apply (null; batch_sizes []; bootstrap_iters 0, as no
  // metric here is bootstrapped). model_name is taken from model_args
  // ("pretrained=", "model=", "path=", ... as lm-eval does), else model.
  nlohmann::json run_config = nlohmann::json::object();
  // n-samples.<suite>.original: documents in the evaluated split before
  // --limit; default: the effective count.
  std::optional<int64_t> n_original;
  // UNIX seconds the eval started ("date", "start_time"); default: now.
  std::optional<double> start_time;
  // Seconds the eval took ("total_evaluation_time_seconds", a string as
  // lm-eval writes it; "end_time" = start_time + this). Absent: null.
  std::optional<double> total_seconds;
  // task_hashes.<suite>: lm-eval's hash over the samples file (e.g.
  // gsm8k_task_hash); empty: task_hashes is {} as without --log_samples.
  std::string task_hash;
  std::string git_hash;  // "git_hash"; null when empty
};

// lm-eval layout:
//   results.<suite>   {"name", "alias", "sample_len", "<metric>,<filter>": v,
//                      "<metric>_stderr,<filter>": s or "N/A"}
//   group_subtasks.<suite> [], configs.<suite>, versions.<suite> (a number
//   when the version is one, as lm-eval's metadata.version), n-shot.<suite>,
//   higher_is_better.<suite>.<metric>, n-samples.<suite> {original,
//   effective}, config, git_hash, date, task_hashes, model_source,
//   model_name, model_name_sanitized, system_instruction(_sha),
//   fewshot_as_multiturn, chat_template(_sha), start_time, end_time,
//   total_evaluation_time_seconds.
// lm-eval writes "groups" only for groups with aggregate metrics; no suite
// here is one, so it is absent as in lm-eval's single-task files.
// Plus Assay's "assay" block: checkpoint_hash, suite_version, seed, backend,
// cached, run_id.
nlohmann::json results_document(const ReportContext& rc);

// lm-eval's "config.gen_kwargs": the parsed --gen_kwargs dict with the types
// lm-eval gives its values; null when none were given.
nlohmann::json gen_kwargs_json(const GenKwargs& g);

// lm-eval's model name from model_args ("pretrained=x,..." -> "x"; keys
// peft, delta, pretrained, model, path, engine in that order); empty if none.
std::string model_name_from_args(const std::string& model_args);
// sanitize_model_name: runs of "<>:/|\?*[] become "__".
std::string sanitize_model_name(const std::string& name);

}  // namespace assay::evals
