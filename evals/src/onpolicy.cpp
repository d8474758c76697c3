// On-policy preference pairs ranked by a verifier. See evals_onpolicy.h.
#include "assay/evals_onpolicy.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "assay/evals_diversity.h"
#include "assay/evals_gsm8k.h"
#include "assay/evals_native.h"
#include "assay/jsonl.h"

namespace assay::evals {

Result<std::vector<VerifiedPrompt>> load_verified_prompts(const std::string& path) {
  std::vector<VerifiedPrompt> out;
  int64_t line = 0;
  ASSAY_RETURN_IF_ERROR(for_each_jsonl_object(
      path, "prompts", [&](const nlohmann::json& j, const std::string& where) -> Status {
        ++line;
        VerifiedPrompt p;
        if (!j.contains("answer") || !j["answer"].is_string())
          return Status::Invalid(where + ": expected a string field \"answer\" (the reference, "
                                 "ending in \"#### N\" or just N)");
        p.reference = j["answer"].get<std::string>();
        if (j.contains("prompt") && j["prompt"].is_string()) p.prompt = j["prompt"].get<std::string>();
        else if (j.contains("question") && j["question"].is_string())
          p.prompt = "Question: " + j["question"].get<std::string>() + "\nAnswer:";
        else return Status::Invalid(where + ": expected a string field \"question\" or \"prompt\"");
        if (j.contains("id")) p.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
        else p.id = "p" + std::to_string(line);
        out.push_back(std::move(p));
        return Status::Ok();
      }));
  if (out.empty()) return Status::Invalid(path + ": no prompts");
  return out;
}

std::vector<VerifiedPrompt> verified_prompts(const std::vector<data::MathProblem>& problems) {
  std::vector<VerifiedPrompt> out;
  for (const auto& p : problems) out.push_back({p.id, data::qa_prompt(p.question), p.answer});
  return out;
}

Status apply_gen_kwargs(const std::string& gen_kwargs, OnPolicyOptions* o) {
  auto g = parse_gen_kwargs(gen_kwargs);
  if (!g.ok()) return g.status().with_context("--gen-kwargs");
  bool chose = false;
  for (const auto& [k, v] : g->given) chose = chose || k == "temperature" || k == "do_sample";
  o->sampling = g->sampling;
  if (!chose) o->sampling.temperature = 1.0;
  if (g->max_gen_toks) o->max_gen_toks = *g->max_gen_toks;
  if (g->until) o->stop = *g->until;
  return Status::Ok();
}

Status validate(const OnPolicyOptions& o) {
  if (o.verifier != "gsm8k")
    return Status::Invalid("--verifier: expected gsm8k, got \"" + o.verifier + "\"");
  if (o.filter != "strict-match" && o.filter != "flexible-extract")
    return Status::Invalid("--filter: expected strict-match or flexible-extract, got \"" + o.filter + "\"");
  if (o.samples_per_prompt < 2)
    return Status::Invalid("--samples-per-prompt must be >= 2 (a pair needs two samples), got " +
                           std::to_string(o.samples_per_prompt));
  if (o.pairs_per_prompt < 1)
    return Status::Invalid("--pairs-per-prompt must be >= 1, got " + std::to_string(o.pairs_per_prompt));
  return Status::Ok();
}

std::vector<PrefPair> contrast_pairs(const VerifiedPrompt& p, const std::vector<OnPolicySample>& samples,
                                     int pairs_per_prompt) {
  std::vector<std::string> good, bad;
  std::set<std::string> seen;
  for (const auto& s : samples) {
    if (!seen.insert(s.text).second) continue;  // the same text twice adds no pair
    (s.correct ? good : bad).push_back(s.text);
  }
  std::vector<PrefPair> out;
  const size_t n = std::min({good.size(), bad.size(), static_cast<size_t>(std::max(0, pairs_per_prompt))});
  for (size_t i = 0; i < n; ++i)
    out.push_back({n == 1 ? p.id : p.id + "-" + std::to_string(i), p.prompt, good[i], bad[i]});
  return out;
}

std::string summary(const OnPolicyResult& r) {
  return std::to_string(r.prompts) + " prompts, " + std::to_string(r.samples) + " samples (" +
         std::to_string(r.correct_samples) + " correct); " + std::to_string(r.prompts_with_contrast) +
         " prompts with a correct and an incorrect sample, " + std::to_string(r.prompts_all_correct) +
         " all correct, " + std::to_string(r.prompts_all_wrong) + " all wrong (skipped); " +
         std::to_string(r.pairs.size()) + " pairs";
}

Result<OnPolicyResult> onpolicy_prefs(Backend& policy, const std::vector<VerifiedPrompt>& prompts,
                                      const OnPolicyOptions& opts) {
  ASSAY_RETURN_IF_ERROR(validate(opts));
  const int k = opts.samples_per_prompt;
  const int max_tokens = opts.max_gen_toks > 0 ? opts.max_gen_toks : 256;
  std::vector<GenRequest> reqs;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (int j = 0; j < k; ++j) {
      GenRequest r{prompts[i].prompt, opts.stop, max_tokens, opts.sampling};
      r.sampling.seed = sample_seed(opts.sampling.seed.value_or(opts.seed), static_cast<int64_t>(i), k, j);
      reqs.push_back(std::move(r));
    }
  ASSAY_ASSIGN_OR_RETURN(auto texts, policy.generate(reqs));
  OnPolicyResult out;
  out.prompts = static_cast<int64_t>(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<OnPolicySample> samples;
    int64_t correct = 0;
    for (int j = 0; j < k; ++j) {
      OnPolicySample s;
      s.text = texts[i * static_cast<size_t>(k) + static_cast<size_t>(j)];
      ASSAY_ASSIGN_OR_RETURN(s.extracted, apply_gsm8k_filter(opts.filter, s.text));
      s.correct = gsm8k_exact_match(s.extracted, prompts[i].reference);
      correct += s.correct;
      samples.push_back(std::move(s));
    }
    out.samples += k;
    out.correct_samples += correct;
    if (correct == k) ++out.prompts_all_correct;
    else if (correct == 0) ++out.prompts_all_wrong;
    else ++out.prompts_with_contrast;
    for (auto& p : contrast_pairs(prompts[i], samples, opts.pairs_per_prompt)) out.pairs.push_back(std::move(p));
  }
  return out;
}

Result<OnPolicyResult> onpolicy_prefs_from_checkpoint(const std::string& checkpoint_dir,
                                                      const std::vector<VerifiedPrompt>& prompts,
                                                      OnPolicyOptions opts, const std::string& device) {
  ASSAY_RETURN_IF_ERROR(validate(opts));
  NativeOptions no;
  no.device = device;
  ASSAY_ASSIGN_OR_RETURN(auto policy, load_native_backend(checkpoint_dir, no));
  if (opts.max_gen_toks <= 0) opts.max_gen_toks = std::min(256, policy->config().n_positions / 2);
  return onpolicy_prefs(*policy, prompts, opts);
}

}  // namespace assay::evals
