// The dashboard's JSON API (/v1/ui/...): read-only SQL over the results
// database, one statement per query_readonly call. Ids are formatted as
// integers and names quoted as SQL literals, so nothing from a request
// reaches SQL unescaped. Contract: coordinator/API.md, "Dashboard".
#include <cctype>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include "api_internal.h"
#include "assay/json_limits.h"
#include "web_assets.h"

namespace assay::ui {

Result<store::QueryResult> read_sql(const std::string& db_path, const std::string& sql,
                                    const ApiLimits& limits, size_t max_rows) {
  store::QueryLimits ql;
  ql.max_rows = max_rows;
  ql.time_budget_s = limits.time_budget_s;
  ql.budget_name = limits.budget_name;
  ql.cancel = limits.cancel;
  return store::query_readonly(db_path, sql, ql);
}

Json cell_json(const store::Cell& c) {
  if (auto i = std::get_if<int64_t>(&c)) return *i;
  if (auto d = std::get_if<double>(&c)) return *d;  // NaN/inf dump as null
  if (auto s = std::get_if<std::string>(&c)) return *s;
  return nullptr;
}

Json table_json(const store::QueryResult& r) {
  Json rows = Json::array();
  for (const auto& row : r.rows) {
    Json jr = Json::array();
    for (const auto& c : row) jr.push_back(cell_json(c));
    rows.push_back(std::move(jr));
  }
  return Json{{"columns", r.columns}, {"rows", std::move(rows)}, {"truncated", r.truncated}};
}

std::string sql_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("''") : std::string(1, c);
  return out + "'";
}

const Asset* find_asset(std::string_view name) {
  if (name.empty()) name = "index.html";
  for (const auto& a : embedded_assets())
    if (a.name == name) return &a;
  return nullptr;
}

Result<std::string> chartjs() {
  static std::mutex mu;
  static std::string cached;
  std::lock_guard<std::mutex> lock(mu);
  if (!cached.empty()) return cached;
  std::ifstream in(ASSAY_CHARTJS_PATH, std::ios::binary);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  if (!in || ss.str().empty())
    return Status::NotFound(std::string(ASSAY_CHARTJS_PATH) +
                            ": Chart.js is missing or empty; install Debian's libjs-chart.js "
                            "(scripts/install-deps)");
  cached = ss.str();
  return cached;
}

bool is_api_path(std::string_view path) {
  return path == "/v1/ui" || path.rfind("/v1/ui/", 0) == 0;
}

namespace {
std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() + 0 && std::isxdigit(uint8_t(s[i + 1])) &&
               std::isxdigit(uint8_t(s[i + 2]))) {
      out += char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Target parse_target(std::string_view target) {
  Target t;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) t.segments.push_back(percent_decode(path.substr(i, j - i)));
    i = j + 1;
  }
  if (q == std::string_view::npos) return t;
  std::string_view qs = target.substr(q + 1);
  while (!qs.empty()) {
    size_t amp = qs.find('&');
    std::string_view kv = qs.substr(0, amp);
    size_t eq = kv.find('=');
    t.query[percent_decode(kv.substr(0, eq))] =
        eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1));
    qs = amp == std::string_view::npos ? std::string_view() : qs.substr(amp + 1);
  }
  return t;
}

// Rows as objects keyed by column name.
Json objects(const store::QueryResult& r) {
  Json out = Json::array();
  for (const auto& row : r.rows) {
    Json o = Json::object();
    for (size_t i = 0; i < r.columns.size(); ++i) o[r.columns[i]] = cell_json(row[i]);
    out.push_back(std::move(o));
  }
  return out;
}

namespace {

Reply json_reply(int status, const Json& j) {
  Reply r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

Reply error_reply(int status, const std::string& code, const std::string& message) {
  return json_reply(status, Json{{"error", {{"code", code}, {"message", message}}}});
}

Reply status_reply(const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return error_reply(400, "bad_request", st.message());
    case Code::kPermissionDenied: return error_reply(403, "forbidden", st.message());
    case Code::kNotFound: return error_reply(404, "not_found", st.message());
    default: return error_reply(500, "internal", st.message());
  }
}

// Per sweep: run counts by state (whatever states the database has, so a
// state added later, e.g. `pruned`, shows without a change here), the
// metric names for a chooser, and with ?metric=K the best run by K's final
// value (&mode=min, the default, or max).
Result<Json> sweeps(const std::string& db, const std::map<std::string, std::string>& q,
                    const ApiLimits& lim) {
  // Runs recorded outside any sweep (assay record) show as one entry with
  // a null id and name.
  const std::string cols =
      "COUNT(r.id) AS runs, MIN(r.started_at) AS first_started_at, "
      "MAX(r.finished_at) AS last_finished_at";
  auto r_sql = read_sql(db,
      "SELECT * FROM (SELECT s.id, s.name, s.created_at, " + cols +
      " FROM sweeps s LEFT JOIN runs r ON r.sweep_id = s.id GROUP BY s.id"
      " UNION ALL SELECT NULL, NULL, MIN(r.created_at), " + cols +
      " FROM runs r WHERE r.sweep_id IS NULL HAVING COUNT(r.id) > 0)"
      " ORDER BY id IS NULL, id DESC", lim);
  ASSAY_ASSIGN_OR_RETURN(auto r, std::move(r_sql));
  auto counts_sql = read_sql(db,
      "SELECT coalesce(sweep_id, 0), state, COUNT(*) FROM runs GROUP BY sweep_id, state", lim);
  ASSAY_ASSIGN_OR_RETURN(auto counts, std::move(counts_sql));
  auto keys_sql = read_sql(db, "SELECT name FROM metric_keys ORDER BY name", lim);
  ASSAY_ASSIGN_OR_RETURN(auto keys, std::move(keys_sql));
  std::map<int64_t, Json> by_sweep;
  for (const auto& row : counts.rows)
    by_sweep[cell_json(row[0]).get<int64_t>()][cell_json(row[1]).get<std::string>()] =
        cell_json(row[2]);
  std::map<int64_t, Json> best;
  std::string metric;
  if (auto it = q.find("metric"); it != q.end() && !it->second.empty()) {
    metric = it->second;
    std::string mode = q.count("mode") ? q.at("mode") : "min";
    if (mode != "min" && mode != "max")
      return Status::Invalid("query parameter 'mode': expected min or max, got '" + mode + "'");
    ASSAY_ASSIGN_OR_RETURN(best, best_runs(db, metric, mode == "max", lim));
  }
  Json out = objects(r);
  static const char* kLegacy[] = {"queued", "leased", "running", "succeeded", "failed", "cancelled"};
  for (auto& s : out) {
    const int64_t id = s["id"].is_null() ? 0 : s["id"].get<int64_t>();
    Json c = by_sweep.count(id) ? by_sweep[id] : Json::object();
    for (const char* k : kLegacy) s[k] = c.value(k, 0);
    for (auto& [k, v] : c.items()) s[k] = v;  // pruned and any newer state
    s["counts"] = std::move(c);
    if (!metric.empty()) s["best"] = best.count(id) ? best[id] : Json();
  }
  Json names = Json::array();
  for (const auto& row : keys.rows) names.push_back(cell_json(row[0]));
  return Json{{"sweeps", std::move(out)}, {"metrics", std::move(names)}};
}

Result<Json> runs(const std::string& db, const std::map<std::string, std::string>& q,
                  const ApiLimits& lim) {
  std::string where;
  if (auto it = q.find("sweep"); it != q.end())
    where = it->second.empty() ? " WHERE sweep IS NULL" : " WHERE sweep = " + sql_quote(it->second);
  auto r_sql = read_sql(db, "SELECT * FROM runs_wide" + where + " ORDER BY run_id",
                                          lim, lim.max_rows);
  ASSAY_ASSIGN_OR_RETURN(auto r, std::move(r_sql));
  return table_json(r);
}

Result<Json> run_detail(const std::string& db, int64_t id, const ApiLimits& lim) {
  const std::string sid = std::to_string(id);
  auto run_sql = read_sql(db,
      "SELECT r.id, s.name AS sweep, r.name, r.state, r.attempt, r.max_attempts, r.failure_reason, "
      "r.failure_detail, r.exit_code, r.params_json, r.command, r.worker_id, r.created_at, "
      "r.started_at, r.finished_at FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id "
      "WHERE r.id = " + sid, lim);
  ASSAY_ASSIGN_OR_RETURN(auto run, std::move(run_sql));
  if (run.rows.empty()) return Status::NotFound("run " + sid + ": no such run");
  auto events_sql = read_sql(db,
      "SELECT id, at, actor, kind, from_state, to_state, detail FROM run_events WHERE run_id = " +
      sid + " ORDER BY id", lim);
  ASSAY_ASSIGN_OR_RETURN(auto events, std::move(events_sql));
  auto artifacts_sql = read_sql(db,
      "SELECT a.id, a.kind, a.content_hash, a.path, a.step, a.parent_id, a.created_at, "
      "p.run_id AS parent_run_id, p.step AS parent_step, p.content_hash AS parent_hash "
      "FROM artifacts a LEFT JOIN artifacts p ON p.id = a.parent_id "
      "WHERE a.run_id = " + sid + " ORDER BY a.id", lim);
  ASSAY_ASSIGN_OR_RETURN(auto artifacts, std::move(artifacts_sql));
  auto evals_sql = read_sql(db,
      "SELECT suite, suite_version, metric, filter, value, stderr, n, checkpoint_hash, "
      "checkpoint_step, eval_run_id FROM eval_summary WHERE producer_run_id = " + sid +
      " ORDER BY checkpoint_step, suite, metric", lim);
  ASSAY_ASSIGN_OR_RETURN(auto evals, std::move(evals_sql));
  // Per metric of the current attempt: how many points and the last step,
  // which is what a live page compares to know a series grew.
  auto metrics_sql = read_sql(db,
      "SELECT k.name AS metric, COUNT(*) AS points, MAX(m.step) AS last_step FROM metrics m "
      "JOIN metric_keys k ON k.id = m.key_id WHERE m.run_id = " + sid +
      " AND m.attempt = (SELECT attempt FROM runs WHERE id = " + sid + ") GROUP BY m.key_id "
      "ORDER BY k.name", lim);
  ASSAY_ASSIGN_OR_RETURN(auto metrics, std::move(metrics_sql));
  return Json{{"run", objects(run)[0]},       {"events", objects(events)},
              {"artifacts", objects(artifacts)}, {"evals", objects(evals)},
              {"metrics", objects(metrics)}};
}

Result<Json> evals(const std::string& db, const ApiLimits& lim) {
  auto r_sql = read_sql(db,
      "SELECT suite, suite_version, metric, filter, value, stderr, n, checkpoint_hash, "
      "checkpoint_step, producer_run_id, producer_sweep, eval_run_id FROM eval_summary "
      "ORDER BY suite, metric, value DESC", lim, lim.max_rows);
  ASSAY_ASSIGN_OR_RETURN(auto r, std::move(r_sql));
  return table_json(r);
}

Result<Json> user_query(const std::string& db, std::string_view body, const ApiLimits& lim) {
  ASSAY_ASSIGN_OR_RETURN(auto doc, parse_json(body, "request body"));
  if (!doc.is_object() || !doc.contains("sql") || !doc["sql"].is_string())
    return Status::Invalid("request body: expected {\"sql\": \"SELECT ...\"}");
  size_t max_rows = std::min<size_t>(10000, lim.max_rows);
  if (doc.contains("max_rows")) {
    const Json& m = doc["max_rows"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1 || m.get<uint64_t>() > lim.max_rows)
      return Status::Invalid("field 'max_rows': expected 1.." + std::to_string(lim.max_rows) +
                             ", got " + m.dump());
    max_rows = m.get<size_t>();
  }
  ASSAY_ASSIGN_OR_RETURN(auto r, read_sql(db, doc["sql"].get<std::string>(), lim, max_rows));
  return table_json(r);
}

Result<Json> route(const std::string& db, const std::string& logs_dir, std::string_view method,
                   const Target& t, std::string_view body, const ApiLimits& lim) {
  const auto& s = t.segments;  // "v1", "ui", ...
  auto want = [&](const char* m) -> Status {
    if (method == m) return Status::Ok();
    return Status::Invalid(std::string("use ") + m + " for this path, got " + std::string(method));
  };
  if (s.size() == 3 && s[2] == "sweeps") return want("GET").ok() ? sweeps(db, t.query, lim) : want("GET");
  if (s.size() == 3 && s[2] == "analysis")
    return want("GET").ok() ? analysis(db, t.query, lim) : want("GET");
  if (s.size() == 3 && s[2] == "evals") return want("GET").ok() ? evals(db, lim) : want("GET");
  if (s.size() == 3 && s[2] == "query")
    return want("POST").ok() ? user_query(db, body, lim) : want("POST");
  if (s.size() == 3 && s[2] == "runs") return want("GET").ok() ? runs(db, t.query, lim) : want("GET");
  if ((s.size() == 4 || s.size() == 5) && s[2] == "runs") {
    ASSAY_RETURN_IF_ERROR(want("GET"));
    int64_t id = 0;
    try {
      size_t used = 0;
      id = std::stoll(s[3], &used);
      if (used != s[3].size() || id <= 0) id = 0;
    } catch (const std::exception&) {
    }
    if (id == 0) return Status::Invalid("run id in the path: expected an integer > 0, got '" + s[3] + "'");
    if (s.size() == 4) return run_detail(db, id, lim);
    if (s[4] == "series") return series(db, id, t.query, lim);
    if (s[4] == "logs") return log_tail(db, logs_dir, id, t.query, lim);
  }
  return Status::NotFound("no such path under /v1/ui (see coordinator/API.md, Dashboard)");
}

}  // namespace

Reply api(const std::string& db_path, std::string_view method, std::string_view target,
          std::string_view body, const ApiLimits& limits, const std::string& logs_dir) {
  try {
    Target t = parse_target(target);
    auto r = route(db_path, logs_dir.empty() ? db_path + ".logs" : logs_dir, method, t, body, limits);
    if (!r.ok()) return status_reply(r.status());
    return json_reply(200, *r);
  } catch (const std::exception& e) {
    return error_reply(500, "internal", std::string("unexpected error: ") + e.what());
  }
}

}  // namespace assay::ui
