// Store: adaptive search tables (migration 0008): rung decisions of ASHA
// sweeps and the samples of sampled sweeps. The coordinator rebuilds its rung
// state from rungs() after a restart, so a decision is written together with
// its audit event, and a sample together with its run (the caller's
// transaction), or not at all.
#include <sqlite3.h>

#include <limits>

#include "assay/store.h"
#include "sqlite_util.h"

namespace assay::store {

using sql::Stmt;

Result<bool> Store::record_rung(const RungRow& r, const std::string& actor,
                                const std::string& event_detail) {
  bool fresh = false;
  ASSAY_RETURN_IF_ERROR(transaction([&]() -> Status {
    ASSAY_CACHED(s, "INSERT INTO search_rungs(sweep_id, run_id, bracket, rung, step, "
        "reported_step, values_json, cutoff_json, decision, at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
        "ON CONFLICT(run_id, bracket, rung) DO NOTHING");
    s.bind(1, r.sweep_id).bind(2, r.run_id).bind(3, r.bracket).bind(4, r.rung).bind(5, r.step)
        .bind(6, r.reported_step).bind(7, r.values_json).bind(8, r.cutoff_json)
        .bind(9, r.proceed ? "continue" : "stop").bind(10, r.at > 0 ? r.at : now());
    ASSAY_RETURN_IF_ERROR(s.exec().with_context("rung " + std::to_string(r.rung) + " of run " +
                                                std::to_string(r.run_id)));
    fresh = sqlite3_changes(db_) > 0;
    if (!fresh) return Status::Ok();
    return add_event(r.run_id, actor, "rung", event_detail);
  }));
  return fresh;
}

Result<std::vector<RungRow>> Store::rungs(int64_t sweep_id) {
  // rowid: insertion order, the order the decisions were made in.
  ASSAY_CACHED(s, "SELECT sweep_id, run_id, bracket, rung, step, reported_step, values_json, "
      "cutoff_json, decision, at FROM search_rungs WHERE sweep_id = ?1 ORDER BY rowid");
  s.bind(1, sweep_id);
  std::vector<RungRow> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    RungRow r;
    r.sweep_id = s.i64(0);
    r.run_id = s.i64(1);
    r.bracket = int(s.i64(2));
    r.rung = int(s.i64(3));
    r.step = s.i64(4);
    r.reported_step = s.i64(5);
    r.values_json = s.text(6);
    r.cutoff_json = s.text(7);
    r.proceed = s.text(8) == "continue";
    r.at = s.f64(9);
    out.push_back(std::move(r));
  }
  return out;
}

Status Store::put_sample(const SampleRow& r) {
  ASSAY_CACHED(s, "INSERT INTO search_samples(sweep_id, sample_index, params_json, run_id, at) "
      "VALUES (?1, ?2, ?3, ?4, ?5)");
  return s.bind(1, r.sweep_id).bind(2, r.sample_index).bind(3, r.params_json).bind(4, r.run_id)
      .bind(5, r.at > 0 ? r.at : now()).exec()
      .with_context("sample " + std::to_string(r.sample_index) + " of sweep " +
                    std::to_string(r.sweep_id));
}

Result<std::vector<SampleRow>> Store::samples(int64_t sweep_id) {
  ASSAY_CACHED(s, "SELECT sweep_id, sample_index, params_json, run_id, at FROM search_samples "
      "WHERE sweep_id = ?1 ORDER BY sample_index");
  s.bind(1, sweep_id);
  std::vector<SampleRow> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back({s.i64(0), s.i64(1), s.text(2), s.i64(3), s.f64(4)});
  }
  return out;
}

namespace {

Result<std::optional<std::pair<int64_t, double>>> point_of(Stmt& s) {
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<std::pair<int64_t, double>>();
  const double v = s.is_null(1) ? std::numeric_limits<double>::quiet_NaN() : s.f64(1);
  return std::optional<std::pair<int64_t, double>>(std::make_pair(s.i64(0), v));
}

}  // namespace

// The current attempt only, through the metrics primary key: a rung below a
// resume point was decided on the attempt before, and stays decided.
Result<std::optional<std::pair<int64_t, double>>> Store::metric_at_or_after(
    int64_t run_id, const std::string& key, int64_t step) {
  ASSAY_CACHED(s, "SELECT m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
      "WHERE m.run_id = ?1 AND m.attempt = r.attempt "
      "AND m.key_id = (SELECT id FROM metric_keys WHERE name = ?2) AND m.step >= ?3 "
      "ORDER BY m.step LIMIT 1");
  s.bind(1, run_id).bind(2, key).bind(3, step);
  return point_of(s);
}

Result<std::optional<std::pair<int64_t, double>>> Store::last_metric(int64_t run_id,
                                                                     const std::string& key) {
  ASSAY_CACHED(s, "SELECT m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
      "WHERE m.run_id = ?1 AND m.attempt = r.attempt "
      "AND m.key_id = (SELECT id FROM metric_keys WHERE name = ?2) "
      "ORDER BY m.step DESC LIMIT 1");
  s.bind(1, run_id).bind(2, key);
  return point_of(s);
}

}  // namespace assay::store
