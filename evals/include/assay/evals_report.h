// lm-eval style results documents written by `assay eval --output`.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_store.h"
#include "assay/evals_suite.h"

namespace assay::evals {

// What a results document is made of. task_config is what the task actually
// used (the spec's fields with every flag applied, e.g. variant "qa" when
// --variant qa was given); run_config describes the model and run (model,
// model_args, batch_size, device, limit, gen_kwargs, random_seed). Pointers
// are borrowed for the call.
struct ReportContext {
  const schemas::SuiteSpec* spec = nullptr;
  const EvalIdentity* id = nullptr;
  const std::vector<ResultRow>* rows = nullptr;
  std::string backend;  // the backend's describe(), or "cached"
  bool cached = false;
  nlohmann::json task_config = nlohmann::json::object();
  nlohmann::json run_config = nlohmann::json::object();
};

// lm-eval style document: results.<suite>.{"<metric>,<filter>": v,
// "<metric>_stderr,<filter>": s}, versions, n-shot, n-samples, higher_is_better,
// configs.<suite> (task_config over the spec), config (run_config), plus an
// "assay" block (identity, backend, cached).
nlohmann::json results_document(const ReportContext& rc);

}  // namespace assay::evals
