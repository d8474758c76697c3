// Shared state and helpers of the suite runners (runner*.cpp). Each task has
// one runner: prepare() checks options and adds everything that changes the
// numbers to `inputs` (hashed into the suite version, so the cache key is
// exact) before any model is loaded; run() loads models and data, scores and
// returns rows. The flow around them (identity, cache, recording, files) is
// run_eval in runner.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_backend.h"
#include "assay/evals_data.h"
#include "assay/evals_native.h"
#include "assay/evals_runner.h"
#include "assay/evals_store.h"
#include "assay/store.h"

namespace assay::evals {

// Everything one eval carries around.
struct EvalContext {
  EvalOptions o;
  schemas::SuiteSpec spec;
  std::string spec_dir;
  std::unique_ptr<store::Store> db;  // when --db
  EvalIdentity id;
  nlohmann::json inputs = nlohmann::json::object();  // hashed into id.suite_version
  // What the run actually used, for the results document (configs.<task>).
  nlohmann::json task_config = nlohmann::json::object();
  std::string backend_desc;
  std::optional<GenKwargs> gen_kwargs;  // --gen-kwargs, parsed in setup
  double start_time = 0;                // UNIX seconds

  void log(const std::string& m) const {
    if (o.log) o.log(m);
  }
};

// What a task run produced: rows, plus an lm-eval results document when the
// task builds its own (gsm8k), else null.
struct TaskOutput {
  std::vector<ResultRow> rows;
  nlohmann::json results;
  std::optional<int64_t> n_original;  // documents before --limit, when known
  std::string task_hash;              // lm-eval's task hash of the samples, when known
};

struct SuiteRunner {
  const char* task;
  Status (*prepare)(EvalContext&);
  Result<TaskOutput> (*run)(EvalContext&);
};

Status prepare_gsm8k(EvalContext& c);
Result<TaskOutput> run_gsm8k_task(EvalContext& c);
Status prepare_ood(EvalContext& c);
Result<TaskOutput> run_ood_task(EvalContext& c);
Status prepare_provenance(EvalContext& c);
Result<TaskOutput> run_provenance_task(EvalContext& c);
Status prepare_unlearning(EvalContext& c);
Result<TaskOutput> run_unlearning_task(EvalContext& c);
Status prepare_preference(EvalContext& c);
Result<TaskOutput> run_preference_task(EvalContext& c);
Status prepare_diversity(EvalContext& c);
Result<TaskOutput> run_diversity_task(EvalContext& c);

// ---- helpers (runner.cpp) ----------------------------------------------------

// A native checkpoint with the run's options (batch size, device, progress).
Result<std::unique_ptr<NativeBackend>> load_native(const EvalContext& c, const std::string& dir);
// The model under evaluation: --model-path or --endpoint.
Result<std::unique_ptr<Backend>> main_backend(const EvalContext& c);
// A data role of the spec, overridden by `flag`, resolved against the spec dir.
std::string data_path(const EvalContext& c, const std::string& flag, const std::string& role);
// Adds sha256(path) as inputs[key]; nothing for an empty path.
Status add_file_input(EvalContext& c, const std::string& key, const std::string& path);
// Text items of a data file, cut to --limit; `what` names the flag/role.
Result<std::vector<TextItem>> load_items(const EvalContext& c, const std::string& path,
                                         const char* what);
// A task option: the flag when set (> 0), else spec.options[key], else def.
int64_t option_int(const EvalContext& c, const char* key, int64_t flag, int64_t def);
double option_double(const EvalContext& c, const char* key, double flag, double def);
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace assay::evals
