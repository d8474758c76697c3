// Task runners of the score-level suites (OOD likelihood ratio, provenance,
// unlearning) over backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assay/evals_backend.h"
#include "assay/evals_data.h"
#include "assay/evals_scores.h"
#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

struct OodSuiteOptions {
  std::string variant = "text";  // "text" (NLR/LR on whole texts) or "qa" (S_{a|q})
};
// Scores every ID (label 0) and OOD (label 1) item under both models.
// text: rows of ood_report, then of ood_loss_report (base-loss baseline,
// mean losses per set and model). qa: AUROC/AUPR/AP/FPR95 of s_a_given_q,
// s_qa, s_a and of the likelihood-alone baselines ft_nll_qa and base_nll_qa
// (-ll of "q\na\n" under each model; higher = more OOD).
Result<std::vector<ResultRow>> run_ood_suite(Backend& base, Backend& finetuned,
                                             const std::vector<TextItem>& id_items,
                                             const std::vector<TextItem>& ood_items,
                                             const OodSuiteOptions& opts, const std::string& suite);

struct ProvenanceSuiteOptions {
  int64_t permutations = 1000;
  uint64_t seed = 0;
  double alpha = 0.01;
  // > 0: only the last `window` examples by last position (the end of
  // training, where the paper finds the order signal concentrated); 0 = all.
  int64_t window = 0;
  int64_t limit = 0;  // > 0: then only the first `limit` of those examples
  Alternative alternative = Alternative::kLess;  // of p_t, p_perm and p_exact alike
};
// Each transcript example is placed at its LAST position (a later epoch
// counts where it was seen last); tied positions (one batch per step) keep
// their tie and share their average rank in the Spearman rho and in the
// permutation test (scipy.stats.rankdata 'average'). The window is cut from
// the examples sorted by (last position, id), so a tie at its edge is split
// by id. Only the examples kept must be among `items`.
Result<ProvenanceResult> run_provenance_suite(
    Backend& test, Backend& reference, const std::vector<std::pair<std::string, double>>& transcript,
    const std::vector<TextItem>& items, const ProvenanceSuiteOptions& opts,
    const std::string& suite);

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
