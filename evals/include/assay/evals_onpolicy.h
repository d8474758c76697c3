// On-policy preference data: sample K answers per prompt from a checkpoint,
// rank them by a verifier and write chosen/rejected pairs (`assay data prefs
// --from-model CKPT --verifier gsm8k`), so alignment can train on its own
// policy's outputs.
//
// Verifier gsm8k: a sample is correct when exact_match(filter(sample),
// reference) holds with the gsm8k filter (strict-match by default, or
// flexible-extract) and lm-eval's exact_match normalization (evals_gsm8k.h).
// Prompts with at least one correct and one incorrect sample give up to
// pairs_per_prompt pairs: the i-th distinct correct sample against the i-th
// distinct incorrect one, in sampling order. Prompts without contrast (all
// correct or all wrong) give none and are counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assay/datagen.h"
#include "assay/evals_backend.h"
#include "assay/evals_preference.h"
#include "assay/status.h"

namespace assay::evals {

// One prompt and its reference answer ("... #### N", or N).
struct VerifiedPrompt {
  std::string id, prompt, reference;
};
// Prompts of generated word problems (assay data gsm8k): id, "Question: q\nAnswer:", answer.
std::vector<VerifiedPrompt> verified_prompts(const std::vector<data::MathProblem>& problems);
// JSONL: "question" + "answer" (the GSM8K layout; prompt "Question: q\nAnswer:"),
// or "prompt" + "answer". id optional (else "p<line>").
Result<std::vector<VerifiedPrompt>> load_verified_prompts(const std::string& path);

struct OnPolicyOptions {
  std::string verifier = "gsm8k";
  std::string filter = "strict-match";  // or "flexible-extract"
  int samples_per_prompt = 4;
  int pairs_per_prompt = 1;
  int max_gen_toks = 0;  // <= 0: 256 (from a checkpoint: at most half its n_positions)
  std::vector<std::string> stop = {"Question:", "</s>", "<|im_end|>"};
  SamplingParams sampling{.temperature = 1.0};  // its seed, when set, is the base of each sample's seed
  uint64_t seed = 0;        // base seed when sampling.seed is absent
};
Status validate(const OnPolicyOptions& o);
// Applies lm-eval --gen_kwargs text (evals_backend.h): sampling (temperature
// 1 unless temperature or do_sample is given), max_gen_toks, until.
Status apply_gen_kwargs(const std::string& gen_kwargs, OnPolicyOptions* o);

struct OnPolicySample {
  std::string text, extracted;
  bool correct = false;
};

// Pairs of one prompt from its verified samples (see the header comment).
std::vector<PrefPair> contrast_pairs(const VerifiedPrompt& p, const std::vector<OnPolicySample>& samples,
                                     int pairs_per_prompt);

struct OnPolicyResult {
  std::vector<PrefPair> pairs;
  int64_t prompts = 0, samples = 0, correct_samples = 0;
  int64_t prompts_with_contrast = 0, prompts_all_correct = 0, prompts_all_wrong = 0;
};
// One line for people: counts of prompts, samples, correct samples, prompts
// with contrast / all correct / all wrong, and pairs.
std::string summary(const OnPolicyResult& r);

// Samples with `policy`, verifies and pairs.
Result<OnPolicyResult> onpolicy_prefs(Backend& policy, const std::vector<VerifiedPrompt>& prompts,
                                      const OnPolicyOptions& opts);

// The same from a native checkpoint directory. max_gen_toks <= 0 means 256,
// or half the model's n_positions when that is smaller. device as
// NativeOptions::device.
Result<OnPolicyResult> onpolicy_prefs_from_checkpoint(const std::string& checkpoint_dir,
                                                      const std::vector<VerifiedPrompt>& prompts,
                                                      OnPolicyOptions opts,
                                                      const std::string& device = "cpu");

}  // namespace assay::evals
