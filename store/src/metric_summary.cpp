// Metric ingest and the per-(run, attempt, metric) summary (migration 0007).
//
// put_metrics writes the points and, in the same transaction, one upsert of
// metric_summary per (run, attempt, key) of the batch, aggregated here first.
// The incremental upsert is exact for points that are new; the rare writes
// it cannot fold in (a point that overwrites another with a different value,
// a point below a resume step, a point for an attempt below a resumed one, a
// resume itself) recompute the rows they touch from `metrics`.
#include <sqlite3.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "assay/store.h"
#include "sqlite_util.h"

namespace assay::store {

// What one batch wrote for one (run, attempt, key).
struct Store::SummaryDelta {
  int64_t run_id = 0;
  int attempt = 0;
  int64_t key_id = 0;
  int64_t new_points = 0;
  int64_t last_step = std::numeric_limits<int64_t>::min();
  double last_value = 0;
  // Over the values written (NaN is stored as NULL, which min/max skip).
  double min = std::numeric_limits<double>::quiet_NaN();
  double max = std::numeric_limits<double>::quiet_NaN();
  int64_t lowest_new_step = std::numeric_limits<int64_t>::max();
  // A point replaced an existing one with a different value: its old value
  // may be this row's min or max, so the row is recomputed from the points.
  bool overwrote = false;

  void add(int64_t step, double value, bool fresh) {
    if (fresh) {
      ++new_points;
      lowest_new_step = std::min(lowest_new_step, step);
    }
    // >=: a later write of the same step wins, as in the table.
    if (step >= last_step) {
      last_step = step;
      last_value = value;
    }
    if (!std::isnan(value)) {
      min = std::isnan(min) ? value : std::min(min, value);
      max = std::isnan(max) ? value : std::max(max, value);
    }
  }
};

namespace {

// Equal as stored: NaN (NULL) equals NaN; otherwise bit for bit.
bool same_stored_value(std::optional<double> old_value, double v) {
  if (!old_value) return std::isnan(v);
  if (std::isnan(v)) return false;
  return std::memcmp(&*old_value, &v, sizeof v) == 0;
}

std::optional<double> nan_as_null(double v) {
  return std::isnan(v) ? std::nullopt : std::optional<double>(v);
}

}  // namespace

// ---- durability -------------------------------------------------------------------

std::string_view to_string(Durability d) { return d == Durability::kFull ? "full" : "normal"; }

Result<Durability> parse_durability(std::string_view s) {
  if (s == "full") return Durability::kFull;
  if (s == "normal") return Durability::kNormal;
  return Status::Invalid("durability must be 'full' or 'normal', got '" + std::string(s) + "'");
}

Result<int> Store::synchronous_pragma() {
  ASSAY_CACHED(q, "PRAGMA synchronous");
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return Status::Internal(path_ + ": PRAGMA synchronous returned no row");
  return int(q.i64(0));
}

// ---- ingest -------------------------------------------------------------------------

Status Store::put_metrics(const std::vector<MetricPoint>& points) {
  if (points.empty()) return Status::Ok();
  return transaction([&]() -> Status {
    ASSAY_CACHED(ins, "INSERT INTO metrics(run_id, attempt, key_id, step, value, wall_time) "
        "VALUES (?1, ?6, ?2, ?3, ?4, ?5) ON CONFLICT(run_id, attempt, key_id, step) DO NOTHING");
    std::vector<SummaryDelta> aggs;
    size_t hint = 0;
    // Points written without an attempt belong to the run's current one;
    // looked up once per run (a batch holds one run's points).
    int64_t current_of = 0;
    int current = 0;
    for (const auto& p : points) {
      const std::string who = "run " + std::to_string(p.run_id);
      if (p.key.empty()) return Status::Invalid(who + ": metric key is empty");
      if (p.attempt < 0)
        return Status::Invalid(who + ": metric '" + p.key + "': attempt must be >= 1, got " +
                               std::to_string(p.attempt));
      int attempt = p.attempt;
      if (attempt == 0) {
        if (current == 0 || current_of != p.run_id) {
          ASSAY_ASSIGN_OR_RETURN(current, current_attempt(p.run_id));
          current_of = p.run_id;
        }
        attempt = current;
      }
      bool added = false;
      ASSAY_ASSIGN_OR_RETURN(int64_t kid, intern_key(p.key, &added));
      wide_dirty_ = wide_dirty_ || added;
      (void)ins.reset();
      ins.bind(1, p.run_id).bind(2, kid).bind(3, p.step).bind(4, p.value).bind(5, p.wall_time)
          .bind(6, int64_t(attempt));
      ASSAY_RETURN_IF_ERROR(ins.exec().with_context(who + ": metric '" + p.key + "'"));
      const bool fresh = sqlite3_changes(db_) == 1;
      bool overwrote = false;
      if (!fresh) {
        // Re-delivered or re-logged step: overwrite it, noting whether the
        // value changed (then the summary row is recomputed).
        ASSAY_CACHED(old, "SELECT value FROM metrics WHERE run_id = ?1 AND attempt = ?2 "
                          "AND key_id = ?3 AND step = ?4");
        old.bind(1, p.run_id).bind(2, int64_t(attempt)).bind(3, kid).bind(4, p.step);
        ASSAY_ASSIGN_OR_RETURN(bool row, old.step());
        overwrote = row && !same_stored_value(old.opt_f64(0), p.value);
        (void)old.reset();
        ASSAY_CACHED(upd, "UPDATE metrics SET value = ?5, wall_time = ?6 WHERE run_id = ?1 "
                          "AND attempt = ?2 AND key_id = ?3 AND step = ?4");
        ASSAY_RETURN_IF_ERROR(upd.bind(1, p.run_id).bind(2, int64_t(attempt)).bind(3, kid)
                                  .bind(4, p.step).bind(5, p.value).bind(6, p.wall_time).exec()
                                  .with_context(who + ": metric '" + p.key + "'"));
      }
      if (hint >= aggs.size() || aggs[hint].key_id != kid || aggs[hint].run_id != p.run_id ||
          aggs[hint].attempt != attempt) {
        hint = 0;
        while (hint < aggs.size() && (aggs[hint].key_id != kid || aggs[hint].run_id != p.run_id ||
                                      aggs[hint].attempt != attempt))
          ++hint;
        if (hint == aggs.size()) aggs.push_back({p.run_id, attempt, kid});
      }
      aggs[hint].add(p.step, p.value, fresh);
      aggs[hint].overwrote = aggs[hint].overwrote || overwrote;
    }
    return apply_summary(aggs);
  });
}

// ---- the summary ---------------------------------------------------------------

Status Store::apply_summary(const std::vector<SummaryDelta>& deltas) {
  // New points only ever extend a row: add their count, keep the higher last
  // step (a tie is a rewrite of that step: the newer value), widen min/max.
  ASSAY_CACHED(up, "INSERT INTO metric_summary(run_id, attempt, key_id, points, last_step, "
      "last_value, min_value, max_value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
      "ON CONFLICT(run_id, attempt, key_id) DO UPDATE SET points = points + excluded.points, "
      "last_value = CASE WHEN last_step IS NULL OR excluded.last_step >= last_step "
      "  THEN excluded.last_value ELSE last_value END, "
      "last_step = CASE WHEN last_step IS NULL OR excluded.last_step >= last_step "
      "  THEN excluded.last_step ELSE last_step END, "
      "min_value = coalesce(min(min_value, excluded.min_value), min_value, excluded.min_value), "
      "max_value = coalesce(max(max_value, excluded.max_value), max_value, excluded.max_value)");
  for (const auto& d : deltas) {
    const std::string who = "run " + std::to_string(d.run_id) + " attempt " +
                            std::to_string(d.attempt) + ": metric summary";
    if (d.overwrote) {
      ASSAY_RETURN_IF_ERROR(recompute_own_summary(d.run_id, d.attempt, d.key_id));
      continue;
    }
    if (d.new_points == 0) continue;  // rewrites of the same values
    (void)up.reset();
    up.bind(1, d.run_id).bind(2, int64_t(d.attempt)).bind(3, d.key_id).bind(4, d.new_points)
        .bind(5, d.last_step).bind(6, d.last_value).bind(7, nan_as_null(d.min))
        .bind(8, nan_as_null(d.max));
    ASSAY_RETURN_IF_ERROR(up.exec().with_context(who));
  }
  // Resumed attempts whose prior part this batch may have changed: any
  // resumed attempt above one it wrote to (its chain may reach that one),
  // and an attempt that resumed at step s and got new points at or below s
  // (those steps are its own now). One index probe per (run, attempt).
  ASSAY_CACHED(rq, "SELECT attempt, step FROM run_resumes WHERE run_id = ?1 AND attempt >= ?2 "
                   "ORDER BY attempt");
  for (size_t i = 0; i < deltas.size(); ++i) {
    const auto& d = deltas[i];
    bool seen = false;
    int64_t lowest_new = d.lowest_new_step;
    for (size_t j = 0; j < deltas.size(); ++j) {
      if (deltas[j].run_id != d.run_id || deltas[j].attempt != d.attempt) continue;
      if (j < i) seen = true;
      lowest_new = std::min(lowest_new, deltas[j].lowest_new_step);
    }
    if (seen) continue;
    (void)rq.reset();
    rq.bind(1, d.run_id).bind(2, int64_t(d.attempt));
    std::optional<int> from;
    while (!from) {
      ASSAY_ASSIGN_OR_RETURN(bool row, rq.step());
      if (!row) break;
      const int resumed = int(rq.i64(0));
      if (resumed > d.attempt || lowest_new <= rq.i64(1)) from = resumed;
    }
    (void)rq.reset();
    if (from) ASSAY_RETURN_IF_ERROR(rebuild_prior_summary(d.run_id, *from));
  }
  return Status::Ok();
}

Status Store::recompute_own_summary(int64_t run_id, int attempt, int64_t key_id) {
  ASSAY_CACHED(s, "INSERT INTO metric_summary(run_id, attempt, key_id, points, last_step, "
      "last_value, min_value, max_value) "
      "SELECT ?1, ?2, ?3, count(*), max(step), (SELECT value FROM metrics WHERE run_id = ?1 "
      "  AND attempt = ?2 AND key_id = ?3 ORDER BY step DESC LIMIT 1), min(value), max(value) "
      "FROM metrics WHERE run_id = ?1 AND attempt = ?2 AND key_id = ?3 "
      "ON CONFLICT(run_id, attempt, key_id) DO UPDATE SET points = excluded.points, "
      "last_step = excluded.last_step, last_value = excluded.last_value, "
      "min_value = excluded.min_value, max_value = excluded.max_value");
  return s.bind(1, run_id).bind(2, int64_t(attempt)).bind(3, key_id).exec()
      .with_context("run " + std::to_string(run_id) + " attempt " + std::to_string(attempt) +
                    ": recompute metric summary");
}

// The prior part of each resumed attempt a >= from_attempt: the run's curve
// (migrations/0006 metric_curve) computed as if a were the current attempt,
// less a's own points. The same statement as the backfill in
// migrations/0007_metric_summary.sql, for one run.
Status Store::rebuild_prior_summary(int64_t run_id, int from_attempt) {
  const std::string who = "run " + std::to_string(run_id) + ": rebuild metric summary from "
                          "attempt " + std::to_string(from_attempt);
  ASSAY_CACHED(clear, "UPDATE metric_summary SET prior_points = 0, prior_last_step = NULL, "
      "prior_last_value = NULL, prior_min = NULL, prior_max = NULL "
      "WHERE run_id = ?1 AND attempt >= ?2 AND prior_points > 0");
  ASSAY_RETURN_IF_ERROR(clear.bind(1, run_id).bind(2, int64_t(from_attempt)).exec()
                            .with_context(who));
  ASSAY_CACHED(fill, "INSERT INTO metric_summary(run_id, attempt, key_id, prior_points, "
      "prior_last_step, prior_last_value, prior_min, prior_max) "
      "WITH RECURSIVE chain(run_id, start, attempt, below) AS ("
      "  SELECT run_id, attempt, attempt, 9223372036854775807 FROM run_resumes "
      "   WHERE run_id = ?1 AND attempt >= ?2 "
      "  UNION ALL "
      "  SELECT c.run_id, c.start, (SELECT max(m.attempt) FROM metrics m "
      "          WHERE m.run_id = c.run_id AND m.attempt < c.attempt), "
      "         min(c.below, rr.step + 1) "
      "  FROM chain c JOIN run_resumes rr ON rr.run_id = c.run_id AND rr.attempt = c.attempt "
      "  WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = c.run_id AND m.attempt < c.attempt)"
      "), curve AS ("
      "  SELECT c.run_id, c.start, m.key_id, m.step, max(m.attempt) AS attempt, m.value "
      "  FROM chain c JOIN metrics m "
      "    ON m.run_id = c.run_id AND m.attempt = c.attempt AND m.step < c.below "
      "  GROUP BY c.run_id, c.start, m.key_id, m.step"
      "), prior AS ("
      "  SELECT run_id, start, key_id, step, value, first_value(value) OVER "
      "    (PARTITION BY run_id, start, key_id ORDER BY step DESC) AS lastv "
      "  FROM curve WHERE attempt < start"
      ") "
      "SELECT run_id, start, key_id, count(*), max(step), max(lastv), min(value), max(value) "
      "FROM prior WHERE true GROUP BY run_id, start, key_id "
      "ON CONFLICT(run_id, attempt, key_id) DO UPDATE SET "
      "prior_points = excluded.prior_points, prior_last_step = excluded.prior_last_step, "
      "prior_last_value = excluded.prior_last_value, prior_min = excluded.prior_min, "
      "prior_max = excluded.prior_max");
  ASSAY_RETURN_IF_ERROR(fill.bind(1, run_id).bind(2, int64_t(from_attempt)).exec()
                            .with_context(who));
  ASSAY_CACHED(drop, "DELETE FROM metric_summary WHERE run_id = ?1 AND attempt >= ?2 "
                     "AND points = 0 AND prior_points = 0");
  return drop.bind(1, run_id).bind(2, int64_t(from_attempt)).exec().with_context(who);
}

}  // namespace assay::store
