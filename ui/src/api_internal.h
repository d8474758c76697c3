// Private to assay_ui: helpers shared by api.cpp and series.cpp.
#pragma once

#include <map>
#include <string>
#include <string_view>

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

// GET /v1/ui/runs/{id}/series?key=K&max_points=N.
Result<Json> series(const std::string& db_path, int64_t run_id,
                    const std::map<std::string, std::string>& query, const ApiLimits& limits);

}  // namespace assay::ui
