// Preference evals: implicit reward accuracy/margin and likelihood
// displacement against a reference model. See evals_preference.h.
#include "assay/evals_preference.h"

#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/evals_metrics.h"
#include "assay/jsonl.h"

namespace assay::evals {

Result<std::vector<PrefPair>> load_pref_pairs(const std::string& path) {
  std::vector<PrefPair> out;
  int64_t line = 0;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "preference pairs", [&](const nlohmann::json& j, const std::string& where) -> Status {
        ++line;
        PrefPair p;
        for (auto [key, dst] : {std::pair{"prompt", &p.prompt}, std::pair{"chosen", &p.chosen},
                                std::pair{"rejected", &p.rejected}}) {
          if (!j.contains(key) || !j[key].is_string())
            return Status::Invalid(where + ": expected a string field \"" + key +
                                   "\" (lines as `assay data prefs` writes them)");
          *dst = j[key].get<std::string>();
        }
        if (j.contains("id")) p.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
        else p.id = std::to_string(line);
        out.push_back(std::move(p));
        return Status::Ok();
      }));
  if (out.empty()) return Status::Invalid(path + ": no preference pairs");
  return out;
}

Result<std::vector<ResultRow>> preference_report(const std::vector<PrefLogps>& pairs, double beta,
                                                 const std::string& suite) {
  if (pairs.empty()) return Status::Invalid("preference: no pairs to score");
  if (!(beta > 0) || !std::isfinite(beta))
    return Status::Invalid("preference: beta must be a finite number > 0, got " + std::to_string(beta));
  std::vector<double> acc, margin, rc, rr, dc, dr, dec, lacc, lc, lr;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const PrefLogps& p = pairs[i];
    for (double v : {p.chosen, p.rejected, p.ref_chosen, p.ref_rejected})
      if (!std::isfinite(v))
        return Status::Invalid("preference: pair " + std::to_string(i) + " has a non-finite log-prob");
    const double delta_c = p.chosen - p.ref_chosen, delta_r = p.rejected - p.ref_rejected;
    const double r_c = beta * delta_c, r_r = beta * delta_r;
    acc.push_back(r_c > r_r ? 1.0 : 0.0);
    margin.push_back(r_c - r_r);
    rc.push_back(r_c);
    rr.push_back(r_r);
    dc.push_back(delta_c);
    dr.push_back(delta_r);
    dec.push_back(delta_c < 0 ? 1.0 : 0.0);
    lacc.push_back(p.chosen > p.rejected ? 1.0 : 0.0);
    lc.push_back(p.chosen);
    lr.push_back(p.rejected);
  }
  std::vector<ResultRow> rows;
  auto row = [&](const char* metric, const std::vector<double>& v) {
    const MeanStderr m = mean_stderr(v);
    ResultRow r{suite, metric, "none", m.mean, std::nullopt, m.n, ""};
    if (std::isfinite(m.stderr_)) r.stderr_ = m.stderr_;
    rows.push_back(r);
  };
  row("reward_accuracy", acc);
  row("reward_margin", margin);
  row("reward_chosen", rc);
  row("reward_rejected", rr);
  row("chosen_logp_change", dc);
  row("rejected_logp_change", dr);
  row("chosen_logp_decreased", dec);
  row("logp_accuracy", lacc);
  row("logp_chosen", lc);
  row("logp_rejected", lr);
  return rows;
}

Result<std::vector<PrefLogps>> score_pref_pairs(Backend& policy, Backend& reference,
                                                const std::vector<PrefPair>& pairs) {
  std::vector<ScoreRequest> reqs;
  for (const auto& p : pairs) {
    reqs.push_back({p.prompt, p.chosen});
    reqs.push_back({p.prompt, p.rejected});
  }
  ASSAY_ASSIGN_OR_RETURN(auto pol, loglikelihood(policy, reqs));
  ASSAY_ASSIGN_OR_RETURN(auto ref, loglikelihood(reference, reqs));
  std::vector<PrefLogps> out;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pol[2 * i].n_tokens == 0 || pol[2 * i + 1].n_tokens == 0)
      return Status::Invalid("preference: pair \"" + pairs[i].id +
                             "\" has an empty chosen or rejected response");
    out.push_back({pol[2 * i].logprob, pol[2 * i + 1].logprob, ref[2 * i].logprob,
                   ref[2 * i + 1].logprob});
  }
  return out;
}

Result<std::vector<ResultRow>> run_preference_suite(Backend& policy, Backend& reference,
                                                    const std::vector<PrefPair>& pairs,
                                                    const PreferenceSuiteOptions& opts,
                                                    const std::string& suite) {
  ASSAY_ASSIGN_OR_RETURN(auto logps, score_pref_pairs(policy, reference, pairs));
  ASSAY_ASSIGN_OR_RETURN(auto rows, preference_report(logps, opts.beta, suite));
  if (opts.samples_per_prompt <= 0) return rows;
  std::vector<std::string> prompts;
  std::set<std::string> seen;
  for (const auto& p : pairs) {
    if (opts.diversity_prompts > 0 && static_cast<int64_t>(prompts.size()) >= opts.diversity_prompts) break;
    if (seen.insert(p.prompt).second) prompts.push_back(p.prompt);
  }
  DiversityOptions d = opts.diversity;
  d.samples_per_prompt = opts.samples_per_prompt;
  ASSAY_ASSIGN_OR_RETURN(auto gens, sample_for_diversity(policy, prompts, d));
  ASSAY_ASSIGN_OR_RETURN(auto drows, diversity_report(gens, suite));
  rows.insert(rows.end(), drows.begin(), drows.end());
  return rows;
}

}  // namespace assay::evals
