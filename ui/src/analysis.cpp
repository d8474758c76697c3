// Sweep analysis (GET /v1/ui/analysis) and the best run per sweep (for
// GET /v1/ui/sweeps?metric=K).
//
// A run's final value of a metric is the value at the highest step of its
// current attempt, as in runs_wide: one probe of the metrics primary key per
// run, never a scan of its points, so a 10,000-run sweep answers in
// milliseconds however long its curves are.
#include <cmath>

#include "api_internal.h"
#include "assay/json_limits.h"

namespace assay::ui {

namespace {

// The SQL of one run's final value of metric key `kid` (a key id literal).
std::string final_value_sql(const std::string& kid) {
  return "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.attempt = r.attempt AND "
         "m.key_id = " + kid + " ORDER BY m.step DESC LIMIT 1)";
}

// The key id of a metric name, as SQL: NULL when the database never saw it.
std::string key_id_sql(const std::string& metric) {
  return "(SELECT id FROM metric_keys WHERE name = " + sql_quote(metric) + ")";
}

std::string sweep_where(const std::map<std::string, std::string>& q) {
  auto it = q.find("sweep");
  if (it == q.end() || it->second.empty()) return "r.sweep_id IS NULL";
  return "r.sweep_id = (SELECT id FROM sweeps WHERE name = " + sql_quote(it->second) + ")";
}

}  // namespace

Result<std::map<int64_t, Json>> best_runs(const std::string& db, const std::string& metric,
                                          bool maximize, const ApiLimits& lim) {
  // SQLite returns the bare columns of the row that holds the MIN/MAX.
  auto r_sql = read_sql(db,
      std::string("SELECT sweep, run_id, name, state, ") + (maximize ? "MAX" : "MIN") +
      "(v) FROM (SELECT coalesce(r.sweep_id, 0) AS sweep, r.id AS run_id, r.name, r.state, " +
      final_value_sql(key_id_sql(metric)) + " AS v FROM runs r) WHERE v IS NOT NULL GROUP BY sweep",
      lim);
  ASSAY_ASSIGN_OR_RETURN(auto r, std::move(r_sql));
  std::map<int64_t, Json> out;
  for (const auto& row : r.rows)
    out[cell_json(row[0]).get<int64_t>()] = Json{{"run_id", cell_json(row[1])}, {"name", cell_json(row[2])},
                                                 {"state", cell_json(row[3])}, {"value", cell_json(row[4])}};
  return out;
}

Result<Json> analysis(const std::string& db, const std::map<std::string, std::string>& q,
                      const ApiLimits& lim) {
  auto keys_sql = read_sql(db, "SELECT name FROM metric_keys ORDER BY name", lim);
  ASSAY_ASSIGN_OR_RETURN(auto keys, std::move(keys_sql));
  Json metrics = Json::array();
  for (const auto& row : keys.rows) metrics.push_back(cell_json(row[0]));
  std::string metric = q.count("metric") ? q.at("metric") : "";
  if (metric.empty() && !metrics.empty()) {
    // A sensible first view: loss if there is one, else the first name.
    metric = metrics[0].get<std::string>();
    for (const auto& m : metrics)
      if (m == "loss") metric = "loss";
  }
  auto runs_sql = read_sql(db,
      "SELECT r.id, r.name, r.state, r.params_json, " +
      (metric.empty() ? std::string("NULL") : final_value_sql(key_id_sql(metric))) +
      " FROM runs r WHERE " + sweep_where(q) + " ORDER BY r.id", lim, lim.max_rows);
  ASSAY_ASSIGN_OR_RETURN(auto rows, std::move(runs_sql));
  // Scalar params only (numbers, strings, booleans): what an axis can show.
  std::map<std::string, bool> numeric;  // name -> every value a number
  Json runs = Json::array();
  for (const auto& row : rows.rows) {
    Json params = Json::object();
    auto parsed = parse_json(cell_json(row[3]).is_string() ? cell_json(row[3]).get<std::string>() : "{}",
                             "params_json");
    if (parsed.ok() && parsed->is_object()) {
      for (auto& [k, v] : parsed->items()) {
        if (v.is_object() || v.is_array() || v.is_null()) continue;
        auto [it, fresh] = numeric.emplace(k, v.is_number());
        if (!fresh) it->second = it->second && v.is_number();
        params[k] = v;
      }
    }
    runs.push_back(Json{{"run_id", cell_json(row[0])}, {"name", cell_json(row[1])},
                        {"state", cell_json(row[2])}, {"params", std::move(params)},
                        {"value", cell_json(row[4])}});
  }
  Json param_list = Json::array();
  for (const auto& [k, num] : numeric) param_list.push_back(Json{{"name", k}, {"numeric", num}});
  return Json{{"sweep", q.count("sweep") && !q.at("sweep").empty() ? Json(q.at("sweep")) : Json()},
              {"metric", metric.empty() ? Json() : Json(metric)},
              {"metrics", std::move(metrics)},
              {"params", std::move(param_list)},
              {"runs", std::move(runs)},
              {"truncated", rows.truncated}};
}

}  // namespace assay::ui
