// The gsm8k runner: generation through a backend, or scoring a predictions
// file. Configuration = the spec's fields with the flags applied.
#include <filesystem>

#include "assay/evals_gsm8k.h"
#include "runner_internal.h"

namespace assay::evals {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Gsm8kConfig gsm8k_config(const EvalContext& c) {
  Gsm8kConfig cfg;
  const EvalOptions& o = c.o;
  cfg.num_fewshot = o.num_fewshot >= 0 ? o.num_fewshot : c.spec.num_fewshot;
  cfg.fewshot_seed = static_cast<uint64_t>(o.fewshot_seed >= 0 ? o.fewshot_seed : c.spec.fewshot_seed);
  cfg.max_gen_toks = o.max_gen_toks > 0 ? o.max_gen_toks : c.spec.max_gen_tokens;
  if (!c.spec.stop.empty()) cfg.stop = c.spec.stop;
  if (!o.filters.empty()) cfg.filters = o.filters;
  else if (!c.spec.filters.empty()) cfg.filters = c.spec.filters;
  if (o.limit > 0) cfg.limit = o.limit;
  else if (c.spec.limit) cfg.limit = *c.spec.limit;
  if (c.gen_kwargs) apply_gen_kwargs(*c.gen_kwargs, &cfg);
  return cfg;
}

// A data role of the gsm8k spec: --data-dir applies to relative paths.
std::string gsm8k_file(const EvalContext& c, const std::string& role, const char* fallback) {
  auto it = c.spec.data.find(role);
  const std::string rel = it == c.spec.data.end() ? fallback : it->second;
  if (!c.o.data_dir.empty() && !fs::path(rel).is_absolute())
    return (fs::path(c.o.data_dir) / rel).string();
  return resolve_data_path(rel, c.spec_dir);
}

std::string test_file(const EvalContext& c) { return gsm8k_file(c, "test", "gsm8k/test.jsonl"); }
std::string fewshot_file(const EvalContext& c) { return gsm8k_file(c, "fewshot", "gsm8k/train.jsonl"); }

}  // namespace

Status prepare_gsm8k(EvalContext& c) {
  const Gsm8kConfig cfg = gsm8k_config(c);
  for (const auto& f : cfg.filters)
    if (f != "strict-match" && f != "flexible-extract" && f != "none")
      return Status::Invalid("--filter: expected strict-match, flexible-extract or none, got \"" + f + "\"");
  // Everything that changes the numbers, sampling included, is in the key.
  c.inputs["config"] = {{"num_fewshot", cfg.num_fewshot}, {"fewshot_seed", cfg.fewshot_seed},
                        {"max_gen_toks", cfg.max_gen_toks}, {"stop", cfg.stop},
                        {"filters", cfg.filters}, {"limit", cfg.limit ? json(*cfg.limit) : json()},
                        {"generation", gsm8k_generation_kwargs(cfg)}};
  c.task_config = gsm8k_task_config(cfg);
  if (!c.o.predictions.empty()) {
    c.inputs["pred_field"] = c.o.pred_field;
    c.inputs["ref_field"] = c.o.refs_from_test ? "test-split" : c.o.ref_field;
    if (c.o.refs_from_test) ASSAY_RETURN_IF_ERROR(add_file_input(c, "test", test_file(c)));
    return Status::Ok();
  }
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "test", test_file(c)));
  ASSAY_RETURN_IF_ERROR(add_file_input(c, "fewshot", fewshot_file(c)));
  return Status::Ok();
}

Result<TaskOutput> run_gsm8k_task(EvalContext& c) {
  const Gsm8kConfig cfg = gsm8k_config(c);
  Result<Gsm8kReport> report = Status::Internal("unset");
  std::optional<int64_t> n_original;
  if (!c.o.predictions.empty()) {
    std::vector<Gsm8kDoc> test;
    if (c.o.refs_from_test) {
      ASSAY_ASSIGN_OR_RETURN(test, load_gsm8k_jsonl(test_file(c)));
    }
    PredictionsOptions po;
    po.path = c.o.predictions;
    po.pred_field = c.o.pred_field;
    po.ref_field = c.o.ref_field;
    po.test = c.o.refs_from_test ? &test : nullptr;
    po.limit = c.o.limit;
    po.filter = cfg.filters.empty() ? "" : cfg.filters.front();
    ASSAY_ASSIGN_OR_RETURN(auto preds, read_gsm8k_predictions(po));
    report = score_gsm8k_predictions(preds, cfg);
    c.backend_desc = "predictions:" + c.o.predictions;
  } else {
    ASSAY_ASSIGN_OR_RETURN(auto test, load_gsm8k_jsonl(test_file(c)));
    ASSAY_ASSIGN_OR_RETURN(auto train, load_gsm8k_jsonl(fewshot_file(c)));
    n_original = static_cast<int64_t>(test.size());
    ASSAY_ASSIGN_OR_RETURN(auto backend, main_backend(c));
    c.backend_desc = backend->describe();
    report = run_gsm8k(*backend, test, train, cfg);
  }
  if (!report.ok()) return report.status();
  if (!c.o.samples.empty()) {
    ASSAY_RETURN_IF_ERROR(write_text_file(c.o.samples, gsm8k_samples_jsonl(*report)));
    c.log("wrote per-item samples to " + c.o.samples);
  }
  TaskOutput out;
  out.rows = report->rows;
  out.n_original = n_original;
  out.task_hash = gsm8k_task_hash(*report);
  return out;
}

}  // namespace assay::evals
