// Suite runs end to end: shipped suite specs, task runners over backends, and
// results — rows in the SQLite results store (served from it when an
// identical eval was already done), an lm-eval style results document, and
// metric lines for the run metric protocol.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_backend.h"
#include "assay/evals_scores.h"
#include "assay/evals_suite.h"
#include "assay/specs.h"
#include "assay/status.h"
#include "assay/store.h"

namespace assay::evals {

// ---- suite specs -------------------------------------------------------------

// Directory of the shipped suite specs: $ASSAY_EVALS_SUITES, else the
// build-time default (<source>/evals/suites).
std::string shipped_suites_dir();
// A spec by shipped name ("gsm8k", "ood", "provenance", "unlearning") or by
// path to a JSON file, validated by schemas::parse_suite_spec. *spec_dir is
// set to the spec's directory (relative data paths resolve against it).
Result<schemas::SuiteSpec> find_suite_spec(const std::string& name_or_path, std::string* spec_dir);
// A data path of a spec: absolute as is; else relative to spec_dir when that
// file exists; else relative to default_data_dir().
std::string resolve_data_path(const std::string& path, const std::string& spec_dir);

// ---- identity and caching ----------------------------------------------------

// Identifies an eval for the cache: the same (checkpoint, suite, version,
// seed) is served from the store. suite_version is the spec's version plus
// a digest of everything else that changes the numbers (data files, limit,
// options, other models), e.g. "3.0+1a2b3c4d".
struct EvalIdentity {
  std::string checkpoint_hash;
  std::string suite;
  std::string suite_version;
  int64_t seed = 0;
  std::optional<int64_t> run_id;  // the eval run (ASSAY_RUN_ID) when known
};
// "<version>+<first 8 hex of sha256(canonical inputs)>".
std::string versioned(const std::string& version, const nlohmann::json& inputs);

// Rows already stored for this identity; nullopt when there are none.
Result<std::optional<std::vector<ResultRow>>> cached_results(store::Store& db,
                                                             const EvalIdentity& id);
// Upserts the rows (suite/version/hash/seed/run from `id`). A run id unknown
// to this database is dropped (rows keep run_id NULL) and *note says so.
Status record_results(store::Store& db, const EvalIdentity& id, const std::vector<ResultRow>& rows,
                      std::string* note = nullptr);
// Records the results file as an artifact of kind 'eval_results' of the run.
Status record_results_artifact(store::Store& db, int64_t run_id, const std::string& path,
                               const EvalIdentity& id);

// lm-eval style document: results.<suite>.{"<metric>,<filter>": v,
// "<metric>_stderr,<filter>": s}, versions, n-shot, n-samples, higher_is_better,
// configs (the spec), plus an "assay" block (identity, backend, cached).
nlohmann::json results_document(const schemas::SuiteSpec& spec, const EvalIdentity& id,
                                const std::vector<ResultRow>& rows, const std::string& backend,
                                bool cached);
// One metric-protocol line {"step": 0, "metrics": {"<suite>/<metric>[,<filter>]": v}}
// (non-finite values are left out). Written to fd when fd >= 0.
std::string metric_line(const std::string& suite, const std::vector<ResultRow>& rows);
Status write_metric_line(int fd, const std::string& line);

// ---- data --------------------------------------------------------------------

// One example of a data file. JSONL lines carry "id" (else the line number)
// and "text", or "question"/"answer" (text = "Question: q\nAnswer: a", as the
// training recipes build it), or "prompt"/"completion"|"chosen". A file that
// is not JSONL gives one item per non-empty line.
struct TextItem {
  std::string id, text, question, answer;
};
Result<std::vector<TextItem>> load_text_items(const std::string& path);

// ---- task runners --------------------------------------------------------------

// Progress of long work: (done, total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

struct OodSuiteOptions {
  std::string variant = "text";  // "text" (NLR/LR on whole texts) or "qa" (S_{a|q})
};
// Scores every ID (label 0) and OOD (label 1) item under both models.
// text: rows of ood_report. qa: AUROC/AUPR/FPR95 of s_a_given_q, s_qa, s_a.
Result<std::vector<ResultRow>> run_ood_suite(Backend& base, Backend& finetuned,
                                             const std::vector<TextItem>& id_items,
                                             const std::vector<TextItem>& ood_items,
                                             const OodSuiteOptions& opts, const std::string& suite);

// Transcript lines reduced to one order per example: the position of the
// example's LAST occurrence (examples seen again in a later epoch count where
// they were seen last), as ranks 0..n-1.
std::vector<std::pair<std::string, double>> last_occurrence_order(
    const std::vector<std::pair<std::string, double>>& transcript);

struct ProvenanceSuiteOptions {
  int64_t permutations = 1000;
  uint64_t seed = 0;
  double alpha = 0.01;
};
Result<ProvenanceResult> run_provenance_suite(
    Backend& test, Backend& reference, const std::vector<std::pair<std::string, double>>& transcript,
    const std::vector<TextItem>& items, const ProvenanceSuiteOptions& opts,
    const std::string& suite);

// Truth-ratio inputs for one forget item.
struct PerturbedItem {
  std::string question, paraphrased;
  std::vector<std::string> perturbed;
};
// JSONL with "question", "paraphrased_answer", "perturbed_answers" (array).
Result<std::vector<PerturbedItem>> load_perturbed(const std::string& path);

struct UnlearningSuiteOptions {
  double min_k = 0.4;
};
// Answer tokens are scored after "Question: q\nAnswer:" (items need question
// and answer). retain_model may be null (no PrivLeak / forget quality).
Result<UnlearningReport> run_unlearning_suite(Backend& model, Backend* retain_model,
                                              const std::vector<TextItem>& forget,
                                              const std::vector<TextItem>& retain,
                                              const std::vector<TextItem>& holdout,
                                              const std::vector<PerturbedItem>& perturbed,
                                              const UnlearningSuiteOptions& opts,
                                              const std::string& suite);

}  // namespace assay::evals
