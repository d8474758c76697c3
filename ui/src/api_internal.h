// Private to assay_ui: helpers shared by api.cpp and series.cpp.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/store.h"
#include "assay/ui.h"

namespace assay::ui {

using Json = nlohmann::json;

// Runs one read-only statement under the limits (store::query_readonly, the
// path `assay query` and /v1/query take).
Result<store::QueryResult> read_sql(const std::string& db_path, const std::string& sql,
                                    const ApiLimits& limits, size_t max_rows = 1000000);

Json cell_json(const store::Cell& c);
// {"columns": [...], "rows": [[...], ...], "truncated": bool}
Json table_json(const store::QueryResult& r);
// A SQL string literal: 'it''s'.
std::string sql_quote(std::string_view s);

// A request target split into decoded path segments and query parameters.
struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};
Target parse_target(std::string_view target);

// Rows as objects keyed by column name.
Json objects(const store::QueryResult& r);

// An integer query parameter (> 0); Invalid naming it otherwise.
Result<int64_t> parse_positive(const std::string& s, const char* what);

// GET /v1/ui/runs/{id}/series?key=K&max_points=N&from=S&to=S.
Result<Json> series(const std::string& db_path, int64_t run_id,
                    const std::map<std::string, std::string>& query, const ApiLimits& limits);

// GET /v1/ui/analysis?sweep=NAME&metric=K (analysis.cpp).
Result<Json> analysis(const std::string& db_path, const std::map<std::string, std::string>& query,
                      const ApiLimits& limits);

// The best run of each sweep by a metric's final value (analysis.cpp):
// sweep id (0: runs without a sweep) -> {"run_id","name","state","value"}.
Result<std::map<int64_t, Json>> best_runs(const std::string& db_path, const std::string& metric,
                                          bool maximize, const ApiLimits& limits);

// GET /v1/ui/runs/{id}/logs?stdout=OFF&stderr=OFF&max_bytes=B&attempt=A (logs.cpp).
Result<Json> log_tail(const std::string& db_path, const std::string& logs_dir, int64_t run_id,
                      const std::map<std::string, std::string>& query, const ApiLimits& limits);

}  // namespace assay::ui
