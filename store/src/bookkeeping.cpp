// Store: the coordinator's bookkeeping tables (migrations 0002 and 0003):
// placements, cancel requests, applied metric batches, worker instances,
// eval-hook runs, and the sweep listing. The coordinator reaches them only
// through these members, inside its own transaction() calls.
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "assay/store.h"
#include "sqlite_util.h"

namespace assay::store {

using sql::Stmt;

namespace {

constexpr const char* kPlacementColumns = "p.run_id, p.worker_id, p.attempt, p.gpus_json, p.cpus";

Placement read_placement(const Stmt& s) {
  Placement p;
  p.run_id = s.i64(0);
  p.worker_id = s.text(1);
  p.attempt = int(s.i64(2));
  // Written by put_placement only; anything else reads as no GPUs.
  auto g = nlohmann::json::parse(s.text(3), nullptr, false);
  if (g.is_array())
    for (auto& x : g)
      if (x.is_number_integer()) p.gpus.push_back(x.get<int>());
  p.cpus = int(s.i64(4));
  return p;
}

}  // namespace

// ---- placements ------------------------------------------------------------------

Status Store::put_placement(const Placement& p, double at) {
  ASSAY_CACHED(s, "INSERT INTO run_placement(run_id, worker_id, attempt, gpus_json, cpus, leased_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(run_id) DO UPDATE SET "
      "worker_id = excluded.worker_id, attempt = excluded.attempt, "
      "gpus_json = excluded.gpus_json, cpus = excluded.cpus, leased_at = excluded.leased_at");
  return s.bind(1, p.run_id).bind(2, p.worker_id).bind(3, p.attempt)
      .bind(4, nlohmann::json(p.gpus).dump()).bind(5, p.cpus).bind(6, at).exec()
      .with_context("placement of run " + std::to_string(p.run_id));
}

Result<std::optional<Placement>> Store::placement(int64_t run_id) {
  ASSAY_CACHED(s, std::string("SELECT ") + kPlacementColumns +
                      " FROM run_placement p WHERE p.run_id = ?1");
  s.bind(1, run_id);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<Placement>();
  return std::optional<Placement>(read_placement(s));
}

Result<std::vector<Placement>> Store::held_placements() {
  ASSAY_CACHED(s, std::string("SELECT ") + kPlacementColumns +
                      " FROM run_placement p JOIN runs r ON r.id = p.run_id "
                      "WHERE r.state = 'leased' OR r.state = 'running' ORDER BY p.run_id");
  std::vector<Placement> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(read_placement(s));
  }
  return out;
}

// ---- cancel requests -------------------------------------------------------------

Status Store::set_cancel_request(int64_t run_id, double at) {
  ASSAY_CACHED(s, "INSERT OR IGNORE INTO run_cancel_requests(run_id, requested_at) VALUES (?1, ?2)");
  return s.bind(1, run_id).bind(2, at).exec().with_context("cancel request of run " +
                                                            std::to_string(run_id));
}

Status Store::clear_cancel_request(int64_t run_id) {
  ASSAY_CACHED(s, "DELETE FROM run_cancel_requests WHERE run_id = ?1");
  return s.bind(1, run_id).exec().with_context("cancel request of run " + std::to_string(run_id));
}

Result<std::set<int64_t>> Store::cancel_requests() {
  ASSAY_CACHED(s, "SELECT run_id FROM run_cancel_requests");
  std::set<int64_t> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.insert(s.i64(0));
  }
  return out;
}

// ---- metric batches --------------------------------------------------------------

Result<bool> Store::note_metric_batch(int64_t run_id, int attempt, int64_t batch_seq,
                                      int64_t points, double at) {
  ASSAY_CACHED(s, "INSERT OR IGNORE INTO metric_batches(run_id, attempt, batch_seq, points, "
                  "received_at) VALUES (?1, ?2, ?3, ?4, ?5)");
  ASSAY_RETURN_IF_ERROR(s.bind(1, run_id).bind(2, attempt).bind(3, batch_seq).bind(4, points)
                            .bind(5, at).exec()
                            .with_context("metric batch " + std::to_string(batch_seq) +
                                          " of run " + std::to_string(run_id)));
  return sqlite3_changes(db_) > 0;
}

// ---- worker instances ------------------------------------------------------------

Status Store::put_worker_instance(const std::string& worker_id, const WorkerInstance& w,
                                  double at) {
  ASSAY_CACHED(s, "INSERT INTO worker_instances(worker_id, instance, max_runs, updated_at) "
      "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(worker_id) DO UPDATE SET "
      "instance = excluded.instance, max_runs = excluded.max_runs, updated_at = excluded.updated_at");
  return s.bind(1, worker_id).bind(2, w.instance).bind(3, w.max_runs).bind(4, at).exec()
      .with_context("worker " + worker_id);
}

Result<std::map<std::string, WorkerInstance>> Store::worker_instances() {
  ASSAY_CACHED(s, "SELECT worker_id, instance, max_runs FROM worker_instances");
  std::map<std::string, WorkerInstance> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out[s.text(0)] = {s.text(1), int(s.i64(2))};
  }
  return out;
}

// ---- sweeps ----------------------------------------------------------------------

Result<std::vector<SweepCounts>> Store::sweep_counts(const std::optional<int64_t>& only_id) {
  std::vector<SweepCounts> out;
  std::map<int64_t, size_t> pos;
  ASSAY_CACHED(s, "SELECT id, name, content_hash, created_at FROM sweeps "
                  "WHERE ?1 IS NULL OR id = ?1 ORDER BY id");
  s.bind(1, only_id);
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    SweepCounts c;
    c.id = s.i64(0);
    c.name = s.text(1);
    c.content_hash = s.text(2);
    c.created_at = s.f64(3);
    pos[c.id] = out.size();
    out.push_back(std::move(c));
  }
  ASSAY_CACHED(n, "SELECT sweep_id, state, COUNT(*) FROM runs WHERE sweep_id IS NOT NULL "
                  "AND (?1 IS NULL OR sweep_id = ?1) GROUP BY sweep_id, state");
  n.bind(1, only_id);
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, n.step());
    if (!row) break;
    if (auto it = pos.find(n.i64(0)); it != pos.end()) out[it->second].counts[n.text(1)] = n.i64(2);
  }
  return out;
}

Result<std::map<int64_t, std::string>> Store::sweep_names() {
  ASSAY_CACHED(s, "SELECT id, name FROM sweeps");
  std::map<int64_t, std::string> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out[s.i64(0)] = s.text(1);
  }
  return out;
}

// ---- eval hooks ------------------------------------------------------------------

Result<std::optional<int64_t>> Store::eval_hook_run(int64_t producer_run_id,
                                                    const std::string& checkpoint_hash,
                                                    const std::string& suite) {
  ASSAY_CACHED(s, "SELECT eval_run_id FROM eval_hook_runs WHERE producer_run_id = ?1 "
                  "AND checkpoint_hash = ?2 AND suite = ?3");
  s.bind(1, producer_run_id).bind(2, checkpoint_hash).bind(3, suite);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(s.i64(0));
}

Status Store::put_eval_hook_run(const EvalHookRun& e, double at) {
  ASSAY_CACHED(s, "INSERT INTO eval_hook_runs(producer_run_id, checkpoint_hash, suite, "
                  "eval_run_id, step, seed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  return s.bind(1, e.producer_run_id).bind(2, e.checkpoint_hash).bind(3, e.suite)
      .bind(4, e.eval_run_id).bind(5, e.step).bind(6, e.seed).bind(7, at).exec()
      .with_context("eval hook run " + std::to_string(e.eval_run_id));
}

Result<std::optional<EvalHookRun>> Store::eval_hook_of(int64_t eval_run_id) {
  ASSAY_CACHED(s, "SELECT producer_run_id, checkpoint_hash, suite, eval_run_id, step, seed "
                  "FROM eval_hook_runs WHERE eval_run_id = ?1");
  s.bind(1, eval_run_id);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<EvalHookRun>();
  return std::optional<EvalHookRun>(
      EvalHookRun{s.i64(0), s.text(1), s.text(2), s.i64(3), s.opt_i64(4), s.i64(5)});
}

}  // namespace assay::store
