// Synthetic, self-contained data sets for the demo experiments: GSM8K-format
// arithmetic word problems, preference pairs built from them, forget /
// retain / holdout splits of fictitious author facts for unlearning, and an
// out-of-distribution text corpus (weather reports or recipes).
//
// Everything is a pure function of its options: the same seed gives the same
// bytes on every platform (an in-house xoshiro256** generator; no
// std::*_distribution, whose output is implementation-defined).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::data {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  // Uniform integer in [lo, hi] (inclusive); lo <= hi.
  int64_t uniform(int64_t lo, int64_t hi);
  double uniform01();  // [0, 1)
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(uniform(0, static_cast<int64_t>(v.size()) - 1))];
  }

 private:
  uint64_t s_[4];
};

// The prompt every recipe and eval uses for a question/answer example:
// "Question: <question>\nAnswer:" (the completion starts with a space).
std::string qa_prompt(const std::string& question);

// ---------------------------------------------------------------- GSM8K

struct GsmOptions {
  int n = 100;
  // 1..8: the number of reasoning steps; operands grow with it
  // (start value up to 20*difficulty, added/subtracted amounts up to
  // 10*difficulty, factors and divisors 2..(2+difficulty) capped at 9).
  int difficulty = 2;
  uint64_t seed = 1;
};

struct MathStep {
  char op = '+';       // + - * /
  int64_t a = 0, b = 0, result = 0;
};

struct MathProblem {
  std::string id;        // "gsm-<seed>-<index>"
  std::string question;
  std::string answer;    // steps with <<a op b=c>> annotations, then "#### N"
  int64_t final_answer = 0;
  std::vector<MathStep> steps;
};

Status validate(const GsmOptions& o);
std::vector<MathProblem> generate_gsm8k(const GsmOptions& o);

// ------------------------------------------------------ preference pairs

struct PrefExample {
  std::string id;
  std::string prompt;    // qa_prompt(question)
  std::string chosen;    // " " + correct answer
  std::string rejected;  // " " + an answer with one arithmetic slip propagated to a wrong final number
};

std::vector<PrefExample> generate_prefs(const GsmOptions& o);

// ------------------------------------------------------------ unlearning

struct UnlearnOptions {
  int n_authors = 40;
  int facts_per_author = 6;     // 1..6
  double forget_frac = 0.1;     // fraction of authors to forget
  double holdout_frac = 0.1;    // authors never trained on (membership baseline)
  uint64_t seed = 1;
  int n_perturbed = 5;          // 1..kMaxPerturbed false answers per fact (perturbed sets)
};
// The smallest attribute pool (awards) has 6 values: 5 false ones.
inline constexpr int kMaxPerturbed = 5;

struct FactQA {
  std::string id;        // "<split>-<author index>-<fact index>"
  std::string author;
  std::string question;
  std::string answer;    // a full sentence
};

struct UnlearnSplits {
  std::vector<FactQA> forget, retain, holdout;
};

// The inputs of the truth ratio and forget quality (TOFU): per fact, a
// paraphrased correct answer and n_perturbed answers in the same wording
// with a false value of the same kind (another year, city, genre, title,
// award or job from the generator's pools).
struct PerturbedQA {
  std::string id;        // the fact's id in UnlearnSplits
  std::string question;  // the fact's question, unchanged
  std::string paraphrased_answer;
  std::vector<std::string> perturbed_answers;
};

struct PerturbedSplits {
  std::vector<PerturbedQA> forget, retain, holdout;
};

Status validate(const UnlearnOptions& o);
UnlearnSplits generate_unlearn(const UnlearnOptions& o);
// The facts of generate_unlearn(o), split the same way, with paraphrased and
// perturbed answers; generate_unlearn's output does not depend on it.
PerturbedSplits generate_unlearn_perturbed(const UnlearnOptions& o);
// forget + retain in a seeded shuffled order: the fine-tuning set that
// teaches the facts before unlearning (holdout is never trained on).
std::vector<FactQA> unlearn_train_mix(const UnlearnSplits& s, uint64_t seed);

// --------------------------------------------------------- OOD corpus

struct OodOptions {
  int n = 200;
  std::string kind = "weather";  // "weather" or "recipes"
  uint64_t seed = 1;
};

struct TextDoc {
  std::string id;
  std::string text;
};

Status validate(const OodOptions& o);
std::vector<TextDoc> generate_ood(const OodOptions& o);

// ------------------------------------------------------------ writers

// One JSON object per line:
//   gsm8k:   {"id","question","answer"}
//   prefs:   {"id","prompt","chosen","rejected"}
//   facts:   {"id","author","question","answer","text"} (text = answer sentence)
//   text:    {"id","text"}
//   perturbed: {"id","question","paraphrased_answer","perturbed_answers":[...]}
//            (the layout the unlearning eval's --perturbed reads)
std::string to_jsonl(const MathProblem& p);
std::string to_jsonl(const PrefExample& p);
std::string to_jsonl(const FactQA& f);
std::string to_jsonl(const TextDoc& d);
std::string to_jsonl(const PerturbedQA& p);

// Writes lines (each gets a trailing newline) to `path` atomically
// (temporary file, then rename); creates the parent directory.
Status write_lines(const std::string& path, const std::vector<std::string>& lines);

}  // namespace assay::data
