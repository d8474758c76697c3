// Expanding a sweep spec into concrete runs.
//
// Runs = grid points x random samples x seeds, in that nesting order:
//   for each grid point (Cartesian product, dimension names sorted, last fastest)
//     for each random sample s in [0, samples)
//       for each replicate seed (or once when `seeds` is empty)
// The random samples are drawn once per sweep (the same samples at every grid
// point, so grid points compare on equal footing) from a SplitMix64 stream
// seeded with spec.seed; within a sample, random dimensions draw in sorted
// name order. The stream is specified here (not std::*_distribution) so the
// same spec expands to the same runs on every platform.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/specs.h"
#include "assay/status.h"

namespace assay::coordinator {

struct ExpandedRun {
  int index = 0;            // 0-based position in the sweep
  std::string name;         // "<sweep>-<index, 4 digits>"
  nlohmann::json params;    // flat object: param name -> scalar (plus "seed")
  std::string command;      // template with every {param} substituted
};

// Hard cap on the number of runs one sweep may expand to.
inline constexpr int64_t kMaxSweepRuns = 100000;

// A sweep with adaptive-search keys (assay/search.h) is checked here too. A
// sampled sweep (one that names a "sampler" or "max_concurrent") expands to
// its first proposals only: samples 0..n-1 with n = min(max_concurrent,
// samples) (all `samples` when max_concurrent is 0), drawn without results;
// the coordinator proposes the rest as runs finish (search_driver.cpp).
Result<std::vector<ExpandedRun>> expand_sweep(const schemas::SweepSpec& spec);

// Whether the sweep document's runs are proposed one by one.
bool is_sampled_sweep(const nlohmann::json& raw);

// Sample k of a sampled sweep with the proposed `params`: index k, the name
// "<sweep>-<k, 4 digits>" and the rendered command.
Result<ExpandedRun> sampled_run(const schemas::SweepSpec& spec, int k, const nlohmann::json& params);

// Substitutes "{name}" (name: letters, digits, _) with params[name]:
// strings verbatim, numbers in their shortest round-trip form, booleans as
// true/false. "{{" and "}}" are literal braces; "${...}" is left alone for the
// shell, and a brace not forming "{name}" (awk's "{print $1}") stays literal.
// A placeholder naming no param is an error that names it.
Result<std::string> render_command(const std::string& tmpl, const nlohmann::json& params);

// The text a parameter value substitutes as.
std::string param_text(const nlohmann::json& v);

// Content hash of a sweep spec: sha256 of its canonical JSON.
std::string sweep_content_hash(const nlohmann::json& raw);

}  // namespace assay::coordinator
