// The eval-result key: how one eval result travels as a run metric.
//
// An eval run (`assay eval ...` under a worker) reports its rows on
// ASSAY_METRICS_FD as ordinary metrics, one key per number:
//
//   <suite>@<version>/<metric>[,<filter>]            the value
//   <suite>@<version>/<metric>[,<filter>]:stderr     its standard error
//   <suite>@<version>/<metric>[,<filter>]:n          items aggregated
//
// e.g. "gsm8k@3.0+1a2b3c4d/exact_match,strict-match". The coordinator parses
// these keys back into eval_results rows (coordinator/src/eval_hooks.cpp),
// so a sweep-hook eval stores the same (suite, version, metric, filter,
// value, stderr, n) as `assay eval --db` on the same checkpoint, and the two
// share one cache row. `version` is the suite spec's version plus the digest
// of the eval's inputs (evals_store.h: versioned()).
//
// Invariants: suite is non-empty and holds no '@', '/'; version holds no '/';
// metric is non-empty and holds no ',', ':' or '/'; filter ("none" when the
// metric is unfiltered) holds no ':'. format() of a valid key parses back to
// the same key. Keys without "@<version>" (written by older Assay builds or
// other tools) parse with version kLegacyVersion.
#pragma once

#include <string>
#include <string_view>

namespace assay {

struct EvalKey {
  enum class Stat { kValue, kStderr, kN };
  std::string suite, version, metric, filter = "none";
  Stat stat = Stat::kValue;
};

inline constexpr const char* kLegacyEvalVersion = "1";

// The key text; filter "none" (or empty) is left out.
std::string format_eval_key(const EvalKey& k);
// Parses any of the three forms; false for text that is not one (e.g.
// "loss"). A plain "train/loss" parses as suite "train", metric "loss": only
// the metrics of eval runs are read as eval keys.
bool parse_eval_key(std::string_view key, EvalKey* out);
// True when `part` can stand in a key as a suite name (no '@', '/', ':', ',').
bool valid_eval_suite_name(std::string_view part);

}  // namespace assay
