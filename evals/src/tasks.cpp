// Task runners of the score-level suites (OOD likelihood ratio, provenance,
// unlearning): they gather per-text scores from backends and hand them to the
// metric code of scores.cpp. See evals_tasks.h.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <map>

#include "assay/evals_tasks.h"
#include "assay/jsonl.h"

namespace assay::evals {

namespace {

Status need_qa(const std::vector<TextItem>& items, const std::string& what) {
  for (const auto& it : items)
    if (it.question.empty() && it.answer.empty())
      return Status::Invalid(what + ": item \"" + it.id +
                             "\" has no question/answer fields (needed here)");
  return Status::Ok();
}

void set_suite(std::vector<ResultRow>* rows, const std::string& suite) {
  for (auto& r : *rows) r.suite = suite;
}

// Each example's LAST position in the transcript (a later epoch counts where
// it was seen last), sorted by it (then by id). Tied positions, e.g. the
// examples of one batch sharing a step, stay tied: the Spearman and the
// permutation test then give them their average rank, as scipy's rankdata
// does. (Dense ranks 0..n-1 would order ties by id, which is arbitrary.)
std::vector<std::pair<std::string, double>> last_positions(
    const std::vector<std::pair<std::string, double>>& transcript) {
  std::map<std::string, double> last;
  for (const auto& [id, order] : transcript) {
    auto it = last.find(id);
    if (it == last.end() || order > it->second) last[id] = order;
  }
  std::vector<std::pair<std::string, double>> out(last.begin(), last.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

}  // namespace

Result<std::vector<ResultRow>> run_ood_suite(Backend& base, Backend& finetuned,
                                             const std::vector<TextItem>& id_items,
                                             const std::vector<TextItem>& ood_items,
                                             const OodSuiteOptions& opts, const std::string& suite) {
  if (id_items.empty() || ood_items.empty())
    return Status::Invalid("ood: need at least one in-distribution and one OOD item");
  std::vector<TextItem> all = id_items;
  all.insert(all.end(), ood_items.begin(), ood_items.end());
  std::vector<int> labels(id_items.size(), 0);
  labels.resize(all.size(), 1);
  const int64_t n = static_cast<int64_t>(all.size());
  if (opts.variant == "text") {
    std::vector<ScoreRequest> reqs;
    for (const auto& it : all) reqs.push_back({"", it.text});
    ASSAY_ASSIGN_OR_RETURN(auto sb, base.score(reqs));
    ASSAY_ASSIGN_OR_RETURN(auto sf, finetuned.score(reqs));
    std::vector<OodText> texts;
    for (size_t i = 0; i < all.size(); ++i) {
      if (sb[i].logprobs.empty() || sf[i].logprobs.empty())
        return Status::Invalid("ood: item \"" + all[i].id + "\" has no scored tokens");
      OodText t;
      for (double lp : sb[i].logprobs) t.loss_base -= lp;
      for (double lp : sf[i].logprobs) t.loss_ft -= lp;
      t.loss_base /= static_cast<double>(sb[i].logprobs.size());
      t.loss_ft /= static_cast<double>(sf[i].logprobs.size());
      t.n_tokens = sf[i].n_tokens();
      t.label = labels[i];
      texts.push_back(t);
    }
    ASSAY_ASSIGN_OR_RETURN(auto rows, ood_report(texts, suite));
    ASSAY_ASSIGN_OR_RETURN(auto loss_rows, ood_loss_report(texts, suite));
    rows.insert(rows.end(), loss_rows.begin(), loss_rows.end());
    return rows;
  }
  if (opts.variant != "qa")
    return Status::Invalid("ood: variant must be \"text\" or \"qa\", got \"" + opts.variant + "\"");
  ASSAY_RETURN_IF_ERROR(need_qa(all, "ood (qa variant)"));
  std::vector<std::string> qs, as;
  for (const auto& it : all) {
    qs.push_back(it.question);
    as.push_back(it.answer);
  }
  ASSAY_ASSIGN_OR_RETURN(auto lb, qa_logliks(base, qs, as));
  ASSAY_ASSIGN_OR_RETURN(auto lf, qa_logliks(finetuned, qs, as));
  std::map<std::string, std::vector<double>> scores;
  for (size_t i = 0; i < all.size(); ++i) {
    // S = ll_base - ll_ft is already "higher = more OOD": finetuning raises
    // ll_ft on in-distribution text, so S falls there (Zhang et al. 2024).
    QaScores s = ood_qa_scores(lb[i], lf[i]);
    scores["s_a_given_q"].push_back(s.s_a_given_q);
    scores["s_qa"].push_back(s.s_qa);
    scores["s_a"].push_back(s.s_a);
    // Likelihood-alone baselines on "q\na\n": summed NLL, higher = more OOD.
    scores["ft_nll_qa"].push_back(-lf[i].qa);
    scores["base_nll_qa"].push_back(-lb[i].qa);
  }
  std::vector<ResultRow> rows;
  for (const auto& [name, v] : scores) {
    ASSAY_ASSIGN_OR_RETURN(auto m, detection_metrics(v, labels));
    rows.push_back({suite, name + "_auroc", "none", m.auroc, std::nullopt, n, ""});
    rows.push_back({suite, name + "_aupr", "none", m.aupr, std::nullopt, n, ""});
    rows.push_back({suite, name + "_ap", "none", m.average_precision, std::nullopt, n, ""});
    rows.push_back({suite, name + "_fpr95", "none", m.fpr95, std::nullopt, n, ""});
  }
  return rows;
}

Result<ProvenanceResult> run_provenance_suite(
    Backend& test, Backend& reference, const std::vector<std::pair<std::string, double>>& transcript,
    const std::vector<TextItem>& items, const ProvenanceSuiteOptions& opts,
    const std::string& suite) {
  auto order = last_positions(transcript);
  if (opts.window < 0)
    return Status::Invalid("provenance: window must be >= 0 (0 = all examples), got " +
                           std::to_string(opts.window));
  if (opts.window > 0 && static_cast<int64_t>(order.size()) > opts.window)
    order.erase(order.begin(), order.end() - static_cast<std::ptrdiff_t>(opts.window));
  if (opts.limit > 0 && static_cast<int64_t>(order.size()) > opts.limit)
    order.resize(static_cast<size_t>(opts.limit));
  std::map<std::string, const TextItem*> by_id;
  for (const auto& it : items) by_id[it.id] = &it;
  std::vector<std::string> texts;
  for (const auto& [id, pos] : order) {
    auto f = by_id.find(id);
    if (f == by_id.end())
      return Status::NotFound("provenance: transcript example \"" + id +
                              "\" is not in the data files (give the training data with --data)");
    texts.push_back(f->second->text);
  }
  if (texts.size() < 3)
    return Status::Invalid("provenance: need at least 3 distinct transcript examples, got " +
                           std::to_string(texts.size()) +
                           (opts.window > 0 ? " (window " + std::to_string(opts.window) + ")" : ""));
  ASSAY_ASSIGN_OR_RETURN(auto nll_test, mean_nll(test, texts));
  ASSAY_ASSIGN_OR_RETURN(auto nll_ref, mean_nll(reference, texts));
  std::vector<ProvenanceExample> ex;
  for (size_t i = 0; i < order.size(); ++i)
    ex.push_back({order[i].first, order[i].second, nll_test[i], nll_ref[i]});
  ASSAY_ASSIGN_OR_RETURN(auto r, provenance_test(ex, opts.permutations, opts.seed,
                                                  opts.alpha, opts.alternative));
  set_suite(&r.rows, suite);
  return r;
}

namespace {

// Answer-token scores after the recipes' prompt "Question: q\nAnswer:".
Result<std::vector<AnswerScores>> answer_scores(Backend& b, const std::vector<std::string>& questions,
                                                const std::vector<std::string>& answers) {
  std::vector<ScoreRequest> reqs;
  for (size_t i = 0; i < questions.size(); ++i)
    reqs.push_back({"Question: " + questions[i] + "\nAnswer:", " " + answers[i]});
  ASSAY_ASSIGN_OR_RETURN(auto s, b.score(reqs));
  std::vector<AnswerScores> out;
  for (const auto& t : s) out.push_back(to_answer_scores(t));
  return out;
}

Result<std::vector<AnswerScores>> item_scores(Backend& b, const std::vector<TextItem>& items) {
  std::vector<std::string> q, a;
  for (const auto& it : items) {
    q.push_back(it.question);
    a.push_back(it.answer);
  }
  return answer_scores(b, q, a);
}

// Truth ratio per perturbed item under one model.
Result<std::vector<double>> truth_ratios(Backend& b, const std::vector<PerturbedItem>& items) {
  std::vector<std::string> q, a;
  for (const auto& p : items) {
    q.push_back(p.question);
    a.push_back(p.paraphrased);
    for (const auto& x : p.perturbed) {
      q.push_back(p.question);
      a.push_back(x);
    }
  }
  ASSAY_ASSIGN_OR_RETURN(auto s, answer_scores(b, q, a));
  std::vector<double> out;
  size_t k = 0;
  for (const auto& p : items) {
    const double para = answer_nll(s[k++]);
    std::vector<double> pert;
    for (size_t i = 0; i < p.perturbed.size(); ++i) pert.push_back(answer_nll(s[k++]));
    out.push_back(truth_ratio(para, pert));
  }
  return out;
}

}  // namespace

Result<UnlearningReport> run_unlearning_suite(Backend& model, Backend* retain_model,
                                              const std::vector<TextItem>& forget,
                                              const std::vector<TextItem>& retain,
                                              const std::vector<TextItem>& holdout,
                                              const std::vector<PerturbedItem>& perturbed,
                                              const UnlearningSuiteOptions& opts,
                                              const std::string& suite) {
  ASSAY_RETURN_IF_ERROR(need_qa(forget, "unlearning forget set"));
  ASSAY_RETURN_IF_ERROR(need_qa(retain, "unlearning retain set"));
  ASSAY_RETURN_IF_ERROR(need_qa(holdout, "unlearning holdout set"));
  UnlearningInputs in;
  in.min_k = opts.min_k;
  ASSAY_ASSIGN_OR_RETURN(in.forget, item_scores(model, forget));
  ASSAY_ASSIGN_OR_RETURN(in.retain, item_scores(model, retain));
  ASSAY_ASSIGN_OR_RETURN(in.holdout, item_scores(model, holdout));
  if (retain_model) {
    ASSAY_ASSIGN_OR_RETURN(auto rf, item_scores(*retain_model, forget));
    ASSAY_ASSIGN_OR_RETURN(auto rh, item_scores(*retain_model, holdout));
    ASSAY_ASSIGN_OR_RETURN(double auc, min_k_auc(rf, rh, opts.min_k));
    in.retain_model_auc = auc;
  }
  if (!perturbed.empty()) {
    if (!retain_model)
      return Status::Invalid("unlearning: forget quality (perturbed answers given) needs a "
                             "retain-only model (--retain-model)");
    ASSAY_ASSIGN_OR_RETURN(in.truth_ratio_unlearned, truth_ratios(model, perturbed));
    ASSAY_ASSIGN_OR_RETURN(in.truth_ratio_retain, truth_ratios(*retain_model, perturbed));
  }
  ASSAY_ASSIGN_OR_RETURN(auto r, unlearning_report(in, suite));
  set_suite(&r.rows, suite);
  return r;
}

}  // namespace assay::evals
