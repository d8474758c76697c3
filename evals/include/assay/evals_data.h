// Eval data files: the items suites score, perturbed answers for the truth
// ratio, and training transcripts reduced to an order.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "assay/status.h"

namespace assay::evals {

// One example of a data file. JSONL lines carry "id" (else the line number)
// and "text", or "question"/"answer" (text = "Question: q\nAnswer: a", as the
// training recipes build it), or "prompt"/"completion"|"chosen". A file that
// is not JSONL gives one item per non-empty line.
struct TextItem {
  std::string id, text, question, answer;
};
Result<std::vector<TextItem>> load_text_items(const std::string& path);

// Truth-ratio inputs for one forget item.
struct PerturbedItem {
  std::string question, paraphrased;
  std::vector<std::string> perturbed;
};
// JSONL with "question", "paraphrased_answer", "perturbed_answers" (array).
Result<std::vector<PerturbedItem>> load_perturbed(const std::string& path);

}  // namespace assay::evals
