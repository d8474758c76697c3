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

// Transcript lines reduced to one order per example: the position of the
// example's LAST occurrence (examples seen again in a later epoch count where
// they were seen last), as ranks 0..n-1.
std::vector<std::pair<std::string, double>> last_occurrence_order(
    const std::vector<std::pair<std::string, double>>& transcript);

// Truth-ratio inputs for one forget item.
struct PerturbedItem {
  std::string question, paraphrased;
  std::vector<std::string> perturbed;
};
// JSONL with "question", "paraphrased_answer", "perturbed_answers" (array).
Result<std::vector<PerturbedItem>> load_perturbed(const std::string& path);

}  // namespace assay::evals
