// Preference evals on held-out chosen/rejected pairs: the DPO implicit
// reward of a policy against its reference model (TRL's rewards/* names) and
// the likelihood-displacement numbers of Razin et al. 2025.
//
// Per pair, lp = log pi(y | x) summed over the response tokens (natural log)
// under the policy, lp_ref the same under the reference, and the implicit
// reward r = beta (lp - lp_ref). Rows (filter "none"; mean, sample stderr
// (n-1)/sqrt(n) and n = pairs):
//   reward_accuracy        mean [r_chosen > r_rejected] (strict; a tie is 0).
//                          Independent of beta (> 0).
//   reward_margin          mean (r_chosen - r_rejected)
//   reward_chosen, reward_rejected   mean r
//   chosen_logp_change     mean (lp_chosen - lp_ref_chosen): the displacement
//                          paper's preferred_logprobs_change_mean
//   rejected_logp_change   mean (lp_rejected - lp_ref_rejected)
//   chosen_logp_decreased  fraction of pairs with lp_chosen < lp_ref_chosen
//                          (likelihood displacement; our name for it, the
//                          paper's code has no such fraction)
//   logp_accuracy          mean [lp_chosen > lp_rejected] under the policy
//                          (the paper's preference_classifier_accuracy)
//   logp_chosen, logp_rejected       mean policy lp
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assay/evals_backend.h"
#include "assay/evals_diversity.h"
#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

// One line of `assay data prefs`: {"id", "prompt", "chosen", "rejected"}.
struct PrefPair {
  std::string id, prompt, chosen, rejected;
};
// JSONL with string fields prompt, chosen, rejected (id optional: else the
// line number).
Result<std::vector<PrefPair>> load_pref_pairs(const std::string& path);

// Summed response log-probs of one pair under the policy and the reference.
struct PrefLogps {
  double chosen = 0, rejected = 0;
  double ref_chosen = 0, ref_rejected = 0;
};

Result<std::vector<ResultRow>> preference_report(const std::vector<PrefLogps>& pairs, double beta,
                                                 const std::string& suite);

// Scores each pair's chosen and rejected response after its prompt under
// both models (lm-eval context/continuation encoding).
Result<std::vector<PrefLogps>> score_pref_pairs(Backend& policy, Backend& reference,
                                                const std::vector<PrefPair>& pairs);

struct PreferenceSuiteOptions {
  double beta = 0.1;
  // > 0: also sample this many generations per distinct prompt and add the
  // diversity rows (evals_diversity.h).
  int samples_per_prompt = 0;
  int64_t diversity_prompts = 0;  // > 0: only the first this many distinct prompts
  DiversityOptions diversity;     // samples_per_prompt is taken from above
};

// preference_report rows, then diversity_report rows when sampling is on.
Result<std::vector<ResultRow>> run_preference_suite(Backend& policy, Backend& reference,
                                                    const std::vector<PrefPair>& pairs,
                                                    const PreferenceSuiteOptions& opts,
                                                    const std::string& suite);

}  // namespace assay::evals
