// Diversity of sampled generations (the f-DPO "alignment vs diversity"
// measurements): distinct-n, self-BLEU, word entropy and the model's own
// predictive entropy over the tokens it generated.
//
// Definitions (words = the text split on ASCII whitespace; no punctuation
// splitting, unlike nltk.word_tokenize):
//   distinct_n      corpus level: distinct n-grams over ALL samples / total
//                   n-grams over all samples (sum of max(0, len - n + 1)),
//                   i.e. divided by n-grams, not by tokens; 0 when there is
//                   no n-gram at all.
//   self_bleu       per prompt: each sample is the hypothesis and the other
//                   samples of the same prompt are the references (never the
//                   hypothesis itself); BLEU-4 with uniform weights and NLTK's
//                   SmoothingFunction().method1 (epsilon 0.1), as
//                   nltk.translate.bleu_score.sentence_bleu computes it;
//                   averaged over the prompt's samples, then over prompts.
//                   Lower = more diverse.
//   word_entropy    empirical: Shannon entropy (nats) of the word unigram
//                   distribution pooled over all samples.
//   predictive_entropy  the model's: at each generated position t,
//                   H_t = -sum_v p(v|ctx_t) log p(v|ctx_t) (nats, raw logits,
//                   whatever the sampling temperature), averaged over the
//                   sample's generated tokens (a final EOS excluded), then
//                   over samples. Native checkpoints only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "assay/evals_backend.h"
#include "assay/evals_metrics.h"
#include "assay/evals_suite.h"
#include "assay/status.h"

namespace assay::evals {

std::vector<std::string> split_words(const std::string& text);

struct DistinctN {
  int64_t unique = 0, total = 0;
  double value = 0;  // unique / total; 0 when total is 0
};
DistinctN distinct_n(const std::vector<std::vector<std::string>>& samples, int n);

// nltk sentence_bleu(references, hypothesis, weights = (1/max_n,)*max_n,
// smoothing_function = SmoothingFunction().method1): clipped n-gram
// precisions, a zero count smoothed to 0.1 / max(1, #hypothesis n-grams),
// 0 when no unigram matches, brevity penalty against the reference length
// closest to the hypothesis (the shorter on ties).
double sentence_bleu(const std::vector<std::vector<std::string>>& references,
                     const std::vector<std::string>& hypothesis, int max_n = 4);

// Mean over i of sentence_bleu(samples without i, samples[i]); NaN for
// fewer than 2 samples.
double self_bleu(const std::vector<std::vector<std::string>>& samples, int max_n = 4);

// -sum p log p of the pooled word counts; 0 for no words.
double word_entropy(const std::vector<std::vector<std::string>>& samples);

// Entropy (nats) of softmax(logits[0..V)), computed as LSE(z) - sum softmax(z) z.
double logits_entropy(const float* logits, int V);

// The generations of one run: per prompt, its samples' texts, and per sample
// its mean predictive entropy when known.
struct DiversityInputs {
  std::vector<std::vector<std::string>> texts;             // [prompt][sample]
  std::vector<std::vector<double>> predictive_entropy;     // same shape, or empty
};

// Rows (filter "none"): distinct_1, distinct_2 (n = samples), self_bleu
// (mean and stderr over prompts with >= 2 samples, n = those prompts),
// word_entropy (n = words), sample_words (mean words per sample, stderr,
// n = samples) and, when given, predictive_entropy (mean, stderr over
// samples, n = samples).
Result<std::vector<ResultRow>> diversity_report(const DiversityInputs& in, const std::string& suite);

struct DiversityOptions {
  int samples_per_prompt = 4;
  int max_gen_toks = 64;
  std::vector<std::string> stop;
  SamplingParams sampling;  // a seed, when given, is the base of every request's seed
  uint64_t seed = 0;        // base seed when sampling.seed is absent
};

// The seed of sample j of prompt i: splitmix64 of (base, i * k + j), so a
// prompt's samples do not depend on which other prompts are evaluated.
uint64_t sample_seed(uint64_t base, int64_t prompt_index, int samples_per_prompt, int sample);

// Generates samples_per_prompt samples per prompt through `backend`. When
// the backend is a NativeBackend, each sample is re-scored by the model for
// its predictive entropy.
Result<DiversityInputs> sample_for_diversity(Backend& backend, const std::vector<std::string>& prompts,
                                             const DiversityOptions& opts);

// Prompts of a data file: JSONL "prompt", else "question" (as
// "Question: q\nAnswer:"), else "text"; duplicates dropped, order kept.
Result<std::vector<std::string>> load_prompts(const std::string& path);

}  // namespace assay::evals
