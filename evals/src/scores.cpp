// OOD likelihood ratio, provenance and unlearning metrics. See evals_scores.h.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "assay/evals_scores.h"
#include "assay/jsonl.h"

namespace assay::evals {

// ---- OOD -------------------------------------------------------------------

double ood_nlr(const OodText& t) { return t.loss_ft - t.loss_base; }
double ood_lr(const OodText& t) { return static_cast<double>(t.n_tokens) * (t.loss_ft - t.loss_base); }
double ood_loss(const OodText& t) { return t.loss_ft; }
double ood_total_loss(const OodText& t) { return static_cast<double>(t.n_tokens) * t.loss_ft; }

Result<DetectionMetrics> detection_metrics(const std::vector<double>& scores,
                                           const std::vector<int>& labels) {
  DetectionMetrics m;
  ASSAY_ASSIGN_OR_RETURN(m.auroc, auroc(scores, labels));
  ASSAY_ASSIGN_OR_RETURN(m.aupr, aupr(scores, labels));
  ASSAY_ASSIGN_OR_RETURN(m.average_precision, average_precision(scores, labels));
  ASSAY_ASSIGN_OR_RETURN(m.fpr95, fpr_at_tpr(scores, labels, 0.95));
  return m;
}

Result<std::vector<ResultRow>> ood_report(const std::vector<OodText>& texts,
                                          const std::string& suite) {
  struct Named {
    const char* name;
    double (*fn)(const OodText&);
  } scores[] = {{"nlr", ood_nlr}, {"lr", ood_lr}, {"loss", ood_loss}, {"total_loss", ood_total_loss}};
  std::vector<int> labels;
  for (const auto& t : texts) labels.push_back(t.label);
  std::vector<ResultRow> rows;
  const int64_t n = static_cast<int64_t>(texts.size());
  for (const auto& s : scores) {
    std::vector<double> v;
    for (const auto& t : texts) v.push_back(s.fn(t));
    auto m = detection_metrics(v, labels);
    if (!m.ok()) return m.status().with_context(std::string("ood score ") + s.name);
    const std::string p = s.name;
    rows.push_back({suite, p + "_auroc", "none", m->auroc, std::nullopt, n, "1.0"});
    rows.push_back({suite, p + "_aupr", "none", m->aupr, std::nullopt, n, "1.0"});
    rows.push_back({suite, p + "_ap", "none", m->average_precision, std::nullopt, n, "1.0"});
    rows.push_back({suite, p + "_fpr95", "none", m->fpr95, std::nullopt, n, "1.0"});
  }
  return rows;
}

Result<std::vector<ResultRow>> ood_loss_report(const std::vector<OodText>& texts,
                                               const std::string& suite) {
  std::vector<int> labels;
  std::vector<double> base, by_set[2][2];  // [label][0 = base, 1 = finetuned]
  for (const auto& t : texts) {
    if (t.label != 0 && t.label != 1)
      return Status::Invalid("ood: label must be 0 (ID) or 1 (OOD), got " + std::to_string(t.label));
    labels.push_back(t.label);
    base.push_back(t.loss_base);
    by_set[t.label][0].push_back(t.loss_base);
    by_set[t.label][1].push_back(t.loss_ft);
  }
  auto m = detection_metrics(base, labels);
  if (!m.ok()) return m.status().with_context("ood score base_loss");
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<ResultRow> rows = {
      {suite, "base_loss_auroc", "none", m->auroc, std::nullopt, n, "1.0"},
      {suite, "base_loss_aupr", "none", m->aupr, std::nullopt, n, "1.0"},
      {suite, "base_loss_ap", "none", m->average_precision, std::nullopt, n, "1.0"},
      {suite, "base_loss_fpr95", "none", m->fpr95, std::nullopt, n, "1.0"}};
  const char* set_names[2] = {"id", "ood"};
  const char* model_names[2] = {"base", "finetuned"};
  for (int label = 0; label < 2; ++label)
    for (int model = 0; model < 2; ++model) {
      const MeanStderr ms = mean_stderr(by_set[label][model]);
      ResultRow r{suite, "mean_loss", std::string(set_names[label]) + "_" + model_names[model],
                  ms.mean, std::nullopt, ms.n, "1.0"};
      if (std::isfinite(ms.stderr_)) r.stderr_ = ms.stderr_;
      rows.push_back(r);
    }
  return rows;
}

QaScores ood_qa_scores(const QaLogliks& base, const QaLogliks& ft) {
  QaScores s;
  s.s_q = base.q - ft.q;
  s.s_a = base.a - ft.a;
  s.s_qa = base.qa - ft.qa;
  s.s_a_given_q = (base.qa - base.q) - (ft.qa - ft.q);
  return s;
}

Result<std::vector<QaLogliks>> qa_logliks(Backend& backend, const std::vector<std::string>& questions,
                                          const std::vector<std::string>& answers) {
  if (questions.size() != answers.size())
    return Status::Invalid("qa_logliks: " + std::to_string(questions.size()) + " questions but " +
                           std::to_string(answers.size()) + " answers");
  std::vector<ScoreRequest> reqs;
  for (size_t i = 0; i < questions.size(); ++i) {
    reqs.push_back({"", questions[i] + "\n"});
    reqs.push_back({"", answers[i] + "\n"});
    reqs.push_back({"", questions[i] + "\n" + answers[i] + "\n"});
  }
  ASSAY_ASSIGN_OR_RETURN(auto ll, loglikelihood(backend, reqs));
  std::vector<QaLogliks> out;
  for (size_t i = 0; i < questions.size(); ++i)
    out.push_back({ll[3 * i].logprob, ll[3 * i + 1].logprob, ll[3 * i + 2].logprob});
  return out;
}

// ---- provenance --------------------------------------------------------------

Result<ProvenanceResult> provenance_test(const std::vector<ProvenanceExample>& examples,
                                         int64_t permutations, uint64_t seed, double alpha,
                                         Alternative alternative) {
  if (!(alpha > 0 && alpha < 1))
    return Status::Invalid("provenance: alpha must be in (0, 1), got " + std::to_string(alpha));
  std::vector<double> order, d;
  for (const auto& e : examples) {
    if (!std::isfinite(e.nll_test) || !std::isfinite(e.nll_ref))
      return Status::Invalid("provenance: example " + e.id + " has a non-finite NLL");
    order.push_back(e.order);
    d.push_back(e.nll_test - e.nll_ref);
  }
  ProvenanceResult r;
  ASSAY_ASSIGN_OR_RETURN(SpearmanResult s, spearman(order, d, alternative));
  ASSAY_ASSIGN_OR_RETURN(PermutationResult p,
                         spearman_permutation_test(order, d, permutations, seed, alternative));
  r.n = s.n;
  r.rho = s.rho;
  r.alternative = alternative;
  r.p_t = s.p_value;
  r.p_perm = p.p_value;
  r.p_perm_floor = p.floor;
  r.permutations = p.permutations;
  r.alpha = alpha;
  if (r.n <= kMaxExactSpearmanN) {
    ASSAY_ASSIGN_OR_RETURN(double exact, spearman_exact_p(order, d, alternative));
    r.p_exact = exact;
  }
  if (r.p_exact) r.p_value = *r.p_exact;
  else if (p.n_ge > 0) r.p_value = r.p_perm;
  else r.p_value = std::min(r.p_perm_floor, r.p_t);
  r.derived = r.p_value <= alpha;
  const std::string alt = to_string(alternative);
  auto row = [&](const char* metric, const std::string& filter, double v) {
    r.rows.push_back({"provenance", metric, filter, v, std::nullopt, r.n, "1.0"});
  };
  row("spearman_rho", "none", r.rho);
  row("p_t", alt, r.p_t);
  row("p_perm", alt, r.p_perm);
  row("p_perm_floor", alt, r.p_perm_floor);
  if (r.p_exact) row("p_exact", alt, *r.p_exact);
  row("p_value", alt, r.p_value);
  row("derived", alt, r.derived ? 1.0 : 0.0);
  return r;
}

Result<std::vector<std::pair<std::string, double>>> read_transcript_jsonl(
    const std::string& path, const std::string& id_field, const std::string& order_field) {
  std::vector<std::pair<std::string, double>> out;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "transcript", [&](const nlohmann::json& j, const std::string& where) -> Status {
        if (!j.contains(id_field)) return Status::Invalid(where + ": missing field \"" + id_field + "\"");
        if (!j.contains(order_field) || !j[order_field].is_number())
          return Status::Invalid(where + ": field \"" + order_field + "\" must be a number");
        const auto& id = j[id_field];
        out.emplace_back(id.is_string() ? id.get<std::string>() : id.dump(), j[order_field].get<double>());
        return Status::Ok();
      }));
  if (out.empty()) return Status::Invalid(path + ": transcript has no entries");
  return out;
}

Result<ReshuffleResult> reshuffle_test(double metric_orig, const std::vector<double>& shuffled) {
  if (shuffled.empty()) return Status::Invalid("reshuffle test: need at least one reshuffled metric");
  const double m = static_cast<double>(shuffled.size());
  double mean = std::accumulate(shuffled.begin(), shuffled.end(), 0.0) / m;
  double ss = 0;
  int64_t ge = 0;
  for (double v : shuffled) {
    ss += (v - mean) * (v - mean);
    ge += v >= metric_orig;
  }
  ReshuffleResult r;
  r.m = static_cast<int64_t>(shuffled.size());
  r.z = (metric_orig - mean) / (std::sqrt(ss / m) + 1e-6);
  r.p_value = (1.0 + static_cast<double>(ge)) / (m + 1.0);
  return r;
}

Result<std::vector<ProvenanceExample>> join_provenance(
    const std::vector<std::pair<std::string, double>>& transcript,
    const std::map<std::string, double>& nll_test, const std::map<std::string, double>& nll_ref) {
  std::vector<ProvenanceExample> out;
  out.reserve(transcript.size());
  for (const auto& [id, order] : transcript) {
    auto t = nll_test.find(id);
    if (t == nll_test.end()) return Status::NotFound("provenance: example \"" + id + "\" has no NLL under the tested model");
    auto r = nll_ref.find(id);
    if (r == nll_ref.end()) return Status::NotFound("provenance: example \"" + id + "\" has no NLL under the reference model");
    out.push_back({id, order, t->second, r->second});
  }
  return out;
}

// ---- unlearning --------------------------------------------------------------

AnswerScores to_answer_scores(const TokenScores& s) { return {s.logprobs, s.is_top}; }

double answer_nll(const AnswerScores& s) {
  if (s.logprobs.empty()) return std::nan("");
  return -std::accumulate(s.logprobs.begin(), s.logprobs.end(), 0.0) /
         static_cast<double>(s.logprobs.size());
}

double answer_prob(const AnswerScores& s) { return std::exp(-answer_nll(s)); }

double token_accuracy(const AnswerScores& s) {
  if (s.is_top.empty()) return std::nan("");
  double hits = 0;
  for (uint8_t t : s.is_top) hits += t ? 1 : 0;
  return hits / static_cast<double>(s.is_top.size());
}

double extraction_strength(const AnswerScores& s) {
  const size_t len = s.is_top.size();
  if (len == 0) return std::nan("");
  size_t k = len;
  while (k > 0 && s.is_top[k - 1]) --k;
  return 1.0 - static_cast<double>(k) / static_cast<double>(len);
}

double min_k_score(const std::vector<double>& logprobs, double k) {
  if (logprobs.empty()) return std::nan("");
  size_t m = std::max<size_t>(1, static_cast<size_t>(std::floor(k * logprobs.size())));
  std::vector<double> v = logprobs;
  std::partial_sort(v.begin(), v.begin() + m, v.end());
  return -std::accumulate(v.begin(), v.begin() + m, 0.0) / static_cast<double>(m);
}

double truth_ratio(double nll_paraphrased, const std::vector<double>& nll_perturbed) {
  if (nll_perturbed.empty()) return std::nan("");
  double mean = std::accumulate(nll_perturbed.begin(), nll_perturbed.end(), 0.0) /
                static_cast<double>(nll_perturbed.size());
  return std::exp(nll_paraphrased - mean);
}

SetSummary summarize_set(const std::vector<AnswerScores>& set) {
  std::vector<double> nll, prob, acc, es;
  for (const auto& s : set) {
    if (s.logprobs.empty()) continue;
    nll.push_back(answer_nll(s));
    prob.push_back(answer_prob(s));
    acc.push_back(token_accuracy(s));
    es.push_back(extraction_strength(s));
  }
  return {mean_stderr(nll), mean_stderr(prob), mean_stderr(acc), mean_stderr(es)};
}

Result<Displacement> likelihood_displacement(const std::vector<double>& logp_chosen,
                                             const std::vector<double>& logp_chosen_ref) {
  if (logp_chosen.size() != logp_chosen_ref.size() || logp_chosen.empty())
    return Status::Invalid("likelihood displacement: need equal, non-zero numbers of policy and "
                           "reference log-probs, got " + std::to_string(logp_chosen.size()) +
                           " and " + std::to_string(logp_chosen_ref.size()));
  Displacement d;
  d.n = static_cast<int64_t>(logp_chosen.size());
  for (size_t i = 0; i < logp_chosen.size(); ++i) {
    double delta = logp_chosen[i] - logp_chosen_ref[i];
    d.mean_delta += delta;
    d.fraction_negative += delta < 0;
  }
  d.mean_delta /= static_cast<double>(d.n);
  d.fraction_negative /= static_cast<double>(d.n);
  return d;
}

Result<double> min_k_auc(const std::vector<AnswerScores>& members,
                         const std::vector<AnswerScores>& non_members, double k) {
  if (!(k > 0 && k <= 1)) return Status::Invalid("min-k: k must be in (0, 1], got " + std::to_string(k));
  // The score is an NLL (higher = less member-like), so non-members are the
  // positive class, as open-unlearning labels forget 0 / holdout 1.
  std::vector<double> scores;
  std::vector<int> labels;
  for (const auto& s : members)
    if (!s.logprobs.empty()) scores.push_back(min_k_score(s.logprobs, k)), labels.push_back(0);
  for (const auto& s : non_members)
    if (!s.logprobs.empty()) scores.push_back(min_k_score(s.logprobs, k)), labels.push_back(1);
  return auroc(scores, labels);
}

namespace {
void add_set_rows(std::vector<ResultRow>* rows, const std::string& suite, const std::string& set,
                  const SetSummary& s) {
  auto row = [&](const char* metric, const MeanStderr& m) {
    ResultRow r{suite, std::string(metric), set, m.mean, std::nullopt, m.n, "1.0"};
    if (std::isfinite(m.stderr_)) r.stderr_ = m.stderr_;
    rows->push_back(r);
  };
  row("nll", s.nll);
  row("prob", s.prob);
  row("token_accuracy", s.token_accuracy);
  row("extraction_strength", s.extraction_strength);
}
}  // namespace

Result<UnlearningReport> unlearning_report(const UnlearningInputs& in, const std::string& suite) {
  if (in.forget.empty() || in.holdout.empty())
    return Status::Invalid("unlearning: forget and holdout sets must be non-empty, got " +
                           std::to_string(in.forget.size()) + " and " +
                           std::to_string(in.holdout.size()));
  UnlearningReport r;
  r.forget = summarize_set(in.forget);
  r.retain = summarize_set(in.retain);
  r.holdout = summarize_set(in.holdout);
  // Rows use the filter column for the evaluated set.
  add_set_rows(&r.rows, suite, "forget", r.forget);
  if (!in.retain.empty()) add_set_rows(&r.rows, suite, "retain", r.retain);
  add_set_rows(&r.rows, suite, "holdout", r.holdout);
  ASSAY_ASSIGN_OR_RETURN(r.mia_auc, min_k_auc(in.forget, in.holdout, in.min_k));
  const int64_t n_mia = static_cast<int64_t>(in.forget.size() + in.holdout.size());
  r.rows.push_back({suite, "mink_auc", "forget_vs_holdout", r.mia_auc, std::nullopt, n_mia, "1.0"});
  if (in.retain_model_auc) {
    if (*in.retain_model_auc <= 0)
      return Status::Invalid("unlearning: retain_model_auc must be > 0, got " +
                             std::to_string(*in.retain_model_auc));
    r.privleak = (r.mia_auc - *in.retain_model_auc) / *in.retain_model_auc * 100.0;
    r.rows.push_back({suite, "privleak", "forget_vs_holdout", *r.privleak, std::nullopt, n_mia, "1.0"});
  }
  if (!in.truth_ratio_unlearned.empty() || !in.truth_ratio_retain.empty()) {
    auto ks = ks_2samp(in.truth_ratio_unlearned, in.truth_ratio_retain);
    if (!ks.ok()) return ks.status().with_context("unlearning forget quality");
    r.forget_quality = *ks;
    r.rows.push_back({suite, "forget_quality", "forget", ks->p_value, std::nullopt,
                      static_cast<int64_t>(in.truth_ratio_unlearned.size()), "1.0"});
  }
  return r;
}

}  // namespace assay::evals
