// Score-level suites: pure computations over per-text backend outputs.
//   OOD likelihood ratio (Zhang et al. 2024), provenance by palimpsestic
//   membership inference in the query setting (Kuditipudi et al. 2025), and
//   unlearning metrics (TOFU / MUSE / open-unlearning definitions).
// Log-probs are natural logs; NLL values are nats per token.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "assay/evals_backend.h"
#include "assay/evals_metrics.h"
#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

// ---- OOD likelihood ratio --------------------------------------------------

// Per text: mean next-token loss over its N-1 predicted tokens under the
// base and the finetuned model, and N (tokens in the text).
struct OodText {
  double loss_base = 0;
  double loss_ft = 0;
  int64_t n_tokens = 0;
  int label = 0;  // 1 = OOD (positive), 0 = in-distribution
};

// Higher = more OOD.
double ood_nlr(const OodText& t);          // loss_ft - loss_base
double ood_lr(const OodText& t);           // N (loss_ft - loss_base)
double ood_loss(const OodText& t);         // loss_ft
double ood_total_loss(const OodText& t);   // N loss_ft

struct DetectionMetrics {
  double auroc = 0, aupr = 0, average_precision = 0, fpr95 = 0;
};
Result<DetectionMetrics> detection_metrics(const std::vector<double>& scores,
                                           const std::vector<int>& labels);

// Metrics of each score ("nlr", "lr", "loss", "total_loss") as rows
// (metric "<score>_auroc" etc., filter "none").
Result<std::vector<ResultRow>> ood_report(const std::vector<OodText>& texts,
                                          const std::string& suite = "ood");

// Loss-alone baselines and per-set losses, beside ood_report's rows, so the
// ratio can be compared with likelihood alone in one query. Sign convention:
// a higher loss is "more OOD", for either model (no score is negated).
//   base_loss_auroc / _aupr / _ap / _fpr95: loss_base as the detector
//   (ood_report's loss_* rows are loss_ft, the finetuned model's loss);
//   mean_loss with filter id_base, id_finetuned, ood_base, ood_finetuned:
//   mean per-token loss of each set under each model (stderr, n = texts).
Result<std::vector<ResultRow>> ood_loss_report(const std::vector<OodText>& texts,
                                               const std::string& suite = "ood");

// QA variant: summed log-likelihoods of q ("q\n"), a ("a\n") and qa ("q\na\n").
struct QaLogliks {
  double q = 0, a = 0, qa = 0;
};
// S = ll_base - ll_ft on each of q, a, qa; and S_{a|q}. Like NLR, every
// score is "higher = more OOD" as it stands (the finetuned model raises
// ll_ft on in-distribution text); none is negated.
struct QaScores {
  double s_q = 0, s_a = 0, s_qa = 0;
  double s_a_given_q = 0;  // (ll_base(qa) - ll_base(q)) - (ll_ft(qa) - ll_ft(q))
};
QaScores ood_qa_scores(const QaLogliks& base, const QaLogliks& ft);

// Summed log-likelihoods of "q\n", "a\n", "q\na\n" under one backend
// (whole-text scoring, empty context).
Result<std::vector<QaLogliks>> qa_logliks(Backend& backend, const std::vector<std::string>& questions,
                                          const std::vector<std::string>& answers);

// ---- provenance (query setting) -------------------------------------------

struct ProvenanceExample {
  std::string id;
  double order = 0;     // position in Alice's training transcript
  double nll_test = 0;  // mean per-token NLL under Bob's model
  double nll_ref = 0;   // same under the independent reference model
};

// The p-values follow one alternative hypothesis, named for rho as scipy's
// spearmanr names it (evals_metrics.h Alternative). The paper's is kLess: the
// model derived from Alice's run has relatively lower NLL on the examples it
// saw last, so rho < 0 (phi = -rho is the permutation statistic).
struct ProvenanceResult {
  int64_t n = 0;
  double rho = 0;            // Spearman(order, nll_test - nll_ref); expected negative
  Alternative alternative = Alternative::kLess;
  double p_t = 1;            // t approximation (scipy spearmanr(..., alternative=))
  double p_perm = 1;         // (1 + #{phi_perm >= phi_obs}) / (T + 1)
  double p_perm_floor = 1;   // 1 / (T + 1): the smallest p_perm T permutations can give
  std::optional<double> p_exact;  // exact permutation p, n <= kMaxExactSpearmanN only
  // The p of the verdict: p_exact when there is one; else p_perm when some
  // permutation reached phi_obs; else (p_perm is at its floor, the true p is
  // below it) min(p_perm_floor, p_t).
  double p_value = 1;
  int64_t permutations = 0;
  double alpha = 0.01;
  bool derived = false;      // p_value <= alpha (Bob's model descends from Alice's run)
  // spearman_rho (filter "none"); p_t, p_perm, p_perm_floor, [p_exact],
  // p_value, derived with the alternative as filter ("less", ...).
  std::vector<ResultRow> rows;
};
Result<ProvenanceResult> provenance_test(const std::vector<ProvenanceExample>& examples,
                                         int64_t permutations, uint64_t seed, double alpha,
                                         Alternative alternative = Alternative::kLess);

// Reads a transcript: JSONL lines with `id_field` (string or number) and a
// numeric `order_field`, e.g. {"example_id": "a17", "order": 3}.
Result<std::vector<std::pair<std::string, double>>> read_transcript_jsonl(
    const std::string& path, const std::string& id_field, const std::string& order_field);

// Joins the transcript with per-example NLLs keyed by id; an id missing from
// either map fails with the id named.
Result<std::vector<ProvenanceExample>> join_provenance(
    const std::vector<std::pair<std::string, double>>& transcript,
    const std::map<std::string, double>& nll_test, const std::map<std::string, double>& nll_ref);

// Observational setting (reshuffle test): the metric (summed log-prob of
// Bob's text) under the original order vs m models retrained on reshuffled
// data. z = (orig - mean) / (std + 1e-6), std with ddof 0 (numpy default);
// p = (1 + #{shuffled >= orig}) / (m + 1).
struct ReshuffleResult {
  double z = 0;
  double p_value = 1;
  int64_t m = 0;
};
Result<ReshuffleResult> reshuffle_test(double metric_orig, const std::vector<double>& shuffled);

// ---- unlearning ------------------------------------------------------------

// Token-level scores of one answer (question tokens masked out).
struct AnswerScores {
  std::vector<double> logprobs;   // log p(label_t)
  std::vector<uint8_t> is_top;    // argmax == label_t
};
AnswerScores to_answer_scores(const TokenScores& s);

double answer_nll(const AnswerScores& s);            // mean -logprob
double answer_prob(const AnswerScores& s);           // exp(-answer_nll)
double token_accuracy(const AnswerScores& s);        // mean is_top (exact memorization)
// 1 - k/len, k = smallest index such that is_top holds for every t >= k.
double extraction_strength(const AnswerScores& s);
// -mean of the lowest max(1, floor(k len)) log-probs (higher = more member-like).
double min_k_score(const std::vector<double>& logprobs, double k = 0.4);
// R = exp(L_para - mean_k L_pert_k), L = mean answer NLL.
double truth_ratio(double nll_paraphrased, const std::vector<double>& nll_perturbed);

struct SetSummary {
  MeanStderr nll, prob, token_accuracy, extraction_strength;
};
SetSummary summarize_set(const std::vector<AnswerScores>& set);

struct UnlearningInputs {
  std::vector<AnswerScores> forget, retain, holdout;  // unlearned model
  // Min-K% AUC of a retain-only model on the same forget/holdout texts.
  std::optional<double> retain_model_auc;
  // Truth ratios on the forget set: unlearned model and retain-only model.
  std::vector<double> truth_ratio_unlearned, truth_ratio_retain;
  double min_k = 0.4;
};

struct UnlearningReport {
  SetSummary forget, retain, holdout;
  double mia_auc = 0;                 // Min-K% AUC, forget vs holdout (see min_k_auc)
  std::optional<double> privleak;     // (AUC - AUC_retain) / AUC_retain * 100
  std::optional<KsResult> forget_quality;  // KS test of the truth-ratio samples
  std::vector<ResultRow> rows;
};
Result<UnlearningReport> unlearning_report(const UnlearningInputs& in,
                                           const std::string& suite = "unlearning");

// DPO likelihood displacement: delta_w = log pi(y_w) - log pi_ref(y_w) per pair.
struct Displacement {
  double fraction_negative = 0;  // share of pairs with delta_w < 0
  double mean_delta = 0;
  int64_t n = 0;
};
Result<Displacement> likelihood_displacement(const std::vector<double>& logp_chosen,
                                             const std::vector<double>& logp_chosen_ref);

// Min-K% AUC of members (forget) vs non-members (holdout): the probability
// that a non-member scores higher than a member (ties 1/2). 1 = the members
// are fully exposed (memorized); 0.5 = indistinguishable.
Result<double> min_k_auc(const std::vector<AnswerScores>& members,
                         const std::vector<AnswerScores>& non_members, double k = 0.4);

}  // namespace assay::evals
