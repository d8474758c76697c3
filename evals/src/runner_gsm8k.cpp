// The gsm8k runner: generation through a backend, or scoring a predictions
// file. Configuration = the spec's fields with the flags applied.
#include <cstdio>
#include <filesystem>
#include <fstream>

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

// lm-eval sample files nest responses as [[text]]; take the first leaf.
const json* first_leaf(const json& v) {
  const json* p = &v;
  while (p->is_array() && !p->empty()) p = &(*p)[0];
  return p;
}

Status read_predictions(const EvalOptions& o, const std::vector<Gsm8kDoc>* test,
                        std::vector<std::string>* preds, std::vector<std::string>* refs) {
  std::ifstream in(o.predictions);
  if (!in) return Status::IoError(o.predictions + ": cannot open predictions file");
  std::string line;
  int64_t lineno = 0, index = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (o.limit > 0 && index >= o.limit) break;
    const std::string where = o.predictions + ":" + std::to_string(lineno);
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Status::Corruption(where + ": not a JSON object");
    if (!j.contains(o.pred_field))
      return Status::Invalid(where + ": missing prediction field \"" + o.pred_field +
                             "\" (set --pred-field)");
    const json* p = first_leaf(j[o.pred_field]);
    if (!p->is_string())
      return Status::Invalid(where + ": field \"" + o.pred_field + "\" must be a string, got " +
                             p->dump());
    preds->push_back(p->get<std::string>());
    if (test) {
      int64_t doc = index;
      if (j.contains("doc_id") && j["doc_id"].is_number_integer()) doc = j["doc_id"].get<int64_t>();
      if (doc < 0 || doc >= static_cast<int64_t>(test->size()))
        return Status::Invalid(where + ": doc " + std::to_string(doc) +
                               " is outside the GSM8K test split (0.." +
                               std::to_string(test->size() - 1) + ")");
      refs->push_back((*test)[doc].answer);
    } else {
      if (!j.contains(o.ref_field))
        return Status::Invalid(where + ": missing reference field \"" + o.ref_field +
                               "\" (set --ref-field, or --refs-from-test)");
      const json* r = first_leaf(j[o.ref_field]);
      refs->push_back(r->is_string() ? r->get<std::string>() : r->dump());
    }
    ++index;
  }
  if (preds->empty()) return Status::Invalid(o.predictions + ": no predictions");
  return Status::Ok();
}

}  // namespace

Status prepare_gsm8k(EvalContext& c) {
  const Gsm8kConfig cfg = gsm8k_config(c);
  for (const auto& f : cfg.filters)
    if (f != "strict-match" && f != "flexible-extract" && f != "none")
      return Status::Invalid("--filter: expected strict-match, flexible-extract or none, got \"" + f + "\"");
  c.inputs["config"] = {{"num_fewshot", cfg.num_fewshot}, {"fewshot_seed", cfg.fewshot_seed},
                        {"max_gen_toks", cfg.max_gen_toks}, {"stop", cfg.stop},
                        {"filters", cfg.filters}, {"limit", cfg.limit ? json(*cfg.limit) : json()}};
  c.task_config = {{"num_fewshot", cfg.num_fewshot}, {"fewshot_seed", cfg.fewshot_seed},
                   {"max_gen_tokens", cfg.max_gen_toks}, {"stop", cfg.stop},
                   {"filters", cfg.filters}, {"limit", cfg.limit ? json(*cfg.limit) : json()}};
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
  if (!c.o.predictions.empty()) {
    std::vector<Gsm8kDoc> test;
    if (c.o.refs_from_test) {
      ASSAY_ASSIGN_OR_RETURN(test, load_gsm8k_jsonl(test_file(c)));
    }
    std::vector<std::string> preds, refs;
    ASSAY_RETURN_IF_ERROR(read_predictions(c.o, c.o.refs_from_test ? &test : nullptr, &preds, &refs));
    report = score_gsm8k(preds, refs, cfg);
    c.backend_desc = "predictions:" + c.o.predictions;
  } else {
    ASSAY_ASSIGN_OR_RETURN(auto test, load_gsm8k_jsonl(test_file(c)));
    ASSAY_ASSIGN_OR_RETURN(auto train, load_gsm8k_jsonl(fewshot_file(c)));
    ASSAY_ASSIGN_OR_RETURN(auto backend, main_backend(c));
    c.backend_desc = backend->describe();
    report = run_gsm8k(*backend, test, train, cfg);
  }
  if (!report.ok()) return report.status();
  if (!c.o.samples.empty()) {
    ASSAY_RETURN_IF_ERROR(write_text_file(c.o.samples, gsm8k_samples_jsonl(*report)));
    c.log("wrote per-item samples to " + c.o.samples);
  }
  return TaskOutput{report->rows, report->results};
}

}  // namespace assay::evals
