// Eval identity and results in the SQLite store: the cache key of an eval,
// cached rows, recording rows and the results artifact, and the metric line
// an eval run reports under a worker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/evals_suite.h"
#include "assay/status.h"
#include "assay/store.h"

namespace assay::evals {

// Identifies an eval for the cache: the same (checkpoint, suite, version,
// seed) is served from the store. suite_version is the spec's version plus
// a digest of everything else that changes the numbers (data files, limit,
// options, other models), e.g. "3.0+1a2b3c4d".
struct EvalIdentity {
  std::string checkpoint_hash;
  std::string suite;
  std::string suite_version;
  int64_t seed = 0;
  std::optional<int64_t> run_id;  // the eval run (ASSAY_RUN_ID) when known
};
// "<version>+<first 8 hex of sha256(canonical inputs)>".
std::string versioned(const std::string& version, const nlohmann::json& inputs);

// Rows already stored for this identity; nullopt when there are none.
Result<std::optional<std::vector<ResultRow>>> cached_results(store::Store& db,
                                                             const EvalIdentity& id);
// Upserts the rows (suite/version/hash/seed/run from `id`). A run id unknown
// to this database is dropped (rows keep run_id NULL) and *note says so.
Status record_results(store::Store& db, const EvalIdentity& id, const std::vector<ResultRow>& rows,
                      std::string* note = nullptr);
// Records the results file as an artifact of kind 'eval_results' of the run.
Status record_results_artifact(store::Store& db, int64_t run_id, const std::string& path,
                               const EvalIdentity& id);

// One metric-protocol line {"step": 0, "metrics": {...}} carrying every row
// as eval keys (common/include/assay/eval_key.h): value, ":stderr" when the
// row has one, and ":n"; non-finite values are left out. The coordinator
// turns the line back into the same eval_results rows that record_results
// writes. Written to fd when fd >= 0.
std::string metric_line(const EvalIdentity& id, const std::vector<ResultRow>& rows);
Status write_metric_line(int fd, const std::string& line);

}  // namespace assay::evals
