// What every eval suite shares: the result row, and where suite specs come
// from. Specs themselves are schemas::SuiteSpec (schemas/suite.schema.json is
// the single source of truth for their fields).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "assay/specs.h"
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
  std::string suite_version;  // e.g. "3.0+1a2b3c4d"
};
nlohmann::json to_json(const ResultRow& r);

// Directory of the shipped suite specs: $ASSAY_EVALS_SUITES, else the
// build-time default (<source>/evals/suites).
std::string shipped_suites_dir();
// A spec by shipped name (a file stem in shipped_suites_dir(): "gsm8k", "ood", ...) or by
// path to a JSON file, validated by schemas::parse_suite_spec. *spec_dir is
// set to the spec's directory (relative data paths resolve against it).
Result<schemas::SuiteSpec> find_suite_spec(const std::string& name_or_path, std::string* spec_dir);
// A data path of a spec: absolute as is; else relative to spec_dir when that
// file exists; else relative to default_data_dir().
std::string resolve_data_path(const std::string& path, const std::string& spec_dir);

}  // namespace assay::evals
