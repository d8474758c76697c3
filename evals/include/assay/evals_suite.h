// Suite specs and result rows shared by every eval suite.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay::evals {

// One aggregated metric, ready for the results store.
struct ResultRow {
  std::string suite;          // e.g. "gsm8k"
  std::string metric;         // e.g. "exact_match", "auroc"
  std::string filter;         // e.g. "strict-match"; "none" when not filtered
  double value = 0;
  std::optional<double> stderr_;  // absent when the metric has none
  int64_t n = 0;              // items aggregated
  std::string suite_version;  // e.g. "3.0"
};
nlohmann::json to_json(const ResultRow& r);

// Description of an eval suite run. JSON field names equal the member names.
struct SuiteSpec {
  std::string name;                  // free label, e.g. "gsm8k-5shot"
  std::string version;               // suite semantics version, e.g. "3.0"
  std::string task;                  // "gsm8k" | "ood" | "provenance" | "unlearning"
  std::vector<std::string> data;     // data files (task-specific meaning)
  std::string prompt_template;       // e.g. "Question: {question}\nAnswer:"; empty = task default
  int num_fewshot = 0;
  uint64_t fewshot_seed = 1234;
  std::vector<std::string> filters;  // e.g. {"strict-match", "flexible-extract"}
  std::vector<std::string> metrics;  // e.g. {"exact_match"}
  std::optional<int64_t> limit;      // first N documents only
};
// Unknown fields are rejected so that typos do not pass silently.
Result<SuiteSpec> suite_spec_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json to_json(const SuiteSpec& s);
// Task defaults, e.g. gsm8k: 5-shot, seed 1234, both filters, exact_match.
Result<SuiteSpec> default_suite_spec(const std::string& task);

}  // namespace assay::evals
