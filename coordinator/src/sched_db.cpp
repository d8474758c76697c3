#include "core_internal.h"

namespace assay::coordinator {
namespace {

std::string col_text(sqlite3_stmt* st, int i) {
  auto* p = sqlite3_column_text(st, i);
  return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
}

void bind_text(sqlite3_stmt* st, int i, const std::string& s) {
  sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
}

}  // namespace

SchedDb::~SchedDb() {
  for (auto& [_, st] : cache_) sqlite3_finalize(st);
}

Status SchedDb::exec_bind(const char* sql, const std::function<void(sqlite3_stmt*)>& bind,
                          const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3_stmt*& st = cache_[sql];
  if (!st && sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) {
    st = nullptr;
    return Status::Internal(std::string("coordinator db: prepare failed: ") + sqlite3_errmsg(db_));
  }
  if (bind) bind(st);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    if (row) row(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE)
    return Status::Internal(std::string("coordinator db: ") + sqlite3_errmsg(db_));
  return Status::Ok();
}

Status SchedDb::put_placement(const Placement& p, double at) {
  Json gpus = p.gpus;
  std::string gj = gpus.dump();
  return exec_bind(
      "INSERT INTO run_placement(run_id, worker_id, attempt, gpus_json, cpus, leased_at) "
      "VALUES(?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET worker_id=excluded.worker_id, "
      "attempt=excluded.attempt, gpus_json=excluded.gpus_json, cpus=excluded.cpus, "
      "leased_at=excluded.leased_at",
      [&](sqlite3_stmt* st) {
        sqlite3_bind_int64(st, 1, p.run_id);
        bind_text(st, 2, p.worker_id);
        sqlite3_bind_int(st, 3, p.attempt);
        bind_text(st, 4, gj);
        sqlite3_bind_int(st, 5, p.cpus);
        sqlite3_bind_double(st, 6, at);
      });
}

namespace {
Placement read_placement(sqlite3_stmt* st) {
  Placement p;
  p.run_id = sqlite3_column_int64(st, 0);
  p.worker_id = col_text(st, 1);
  p.attempt = sqlite3_column_int(st, 2);
  Json g = Json::parse(col_text(st, 3), nullptr, false);
  if (g.is_array())
    for (auto& x : g)
      if (x.is_number_integer()) p.gpus.push_back(x.get<int>());
  p.cpus = sqlite3_column_int(st, 4);
  return p;
}
}  // namespace

Result<std::optional<Placement>> SchedDb::placement(int64_t run_id) {
  std::optional<Placement> out;
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT run_id, worker_id, attempt, gpus_json, cpus FROM run_placement WHERE run_id=?",
      [&](sqlite3_stmt* st) { sqlite3_bind_int64(st, 1, run_id); },
      [&](sqlite3_stmt* st) { out = read_placement(st); }));
  return out;
}

Result<std::vector<Placement>> SchedDb::placements() {
  std::vector<Placement> out;
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT p.run_id, p.worker_id, p.attempt, p.gpus_json, p.cpus FROM run_placement p "
      "JOIN runs r ON r.id = p.run_id WHERE r.state IN ('leased','running')",
      {}, [&](sqlite3_stmt* st) { out.push_back(read_placement(st)); }));
  return out;
}

Status SchedDb::set_cancel_request(int64_t run_id, double at) {
  return exec_bind("INSERT OR IGNORE INTO run_cancel_requests(run_id, requested_at) VALUES(?,?)",
                   [&](sqlite3_stmt* st) {
                     sqlite3_bind_int64(st, 1, run_id);
                     sqlite3_bind_double(st, 2, at);
                   });
}

Status SchedDb::clear_cancel_request(int64_t run_id) {
  return exec_bind("DELETE FROM run_cancel_requests WHERE run_id=?",
                   [&](sqlite3_stmt* st) { sqlite3_bind_int64(st, 1, run_id); });
}

Result<std::set<int64_t>> SchedDb::cancel_requests() {
  std::set<int64_t> out;
  ASSAY_RETURN_IF_ERROR(exec_bind("SELECT run_id FROM run_cancel_requests", {},
                                  [&](sqlite3_stmt* st) {
                                    out.insert(sqlite3_column_int64(st, 0));
                                  }));
  return out;
}

Result<bool> SchedDb::note_batch(int64_t run_id, int attempt, int64_t seq, int64_t points,
                                 double at) {
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "INSERT OR IGNORE INTO metric_batches(run_id, attempt, batch_seq, points, received_at) "
      "VALUES(?,?,?,?,?)",
      [&](sqlite3_stmt* st) {
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int(st, 2, attempt);
        sqlite3_bind_int64(st, 3, seq);
        sqlite3_bind_int64(st, 4, points);
        sqlite3_bind_double(st, 5, at);
      }));
  return sqlite3_changes(db_) > 0;
}

Status SchedDb::put_worker_instance(const std::string& worker_id, const std::string& instance,
                                    int max_runs, double at) {
  return exec_bind(
      "INSERT INTO worker_instances(worker_id, instance, max_runs, updated_at) VALUES(?,?,?,?) "
      "ON CONFLICT(worker_id) DO UPDATE SET instance=excluded.instance, "
      "max_runs=excluded.max_runs, updated_at=excluded.updated_at",
      [&](sqlite3_stmt* st) {
        bind_text(st, 1, worker_id);
        bind_text(st, 2, instance);
        sqlite3_bind_int(st, 3, max_runs);
        sqlite3_bind_double(st, 4, at);
      });
}

Result<std::map<std::string, std::pair<std::string, int>>> SchedDb::worker_instances() {
  std::map<std::string, std::pair<std::string, int>> out;
  ASSAY_RETURN_IF_ERROR(exec_bind("SELECT worker_id, instance, max_runs FROM worker_instances",
                                  {}, [&](sqlite3_stmt* st) {
                                    out[col_text(st, 0)] = {col_text(st, 1),
                                                            sqlite3_column_int(st, 2)};
                                  }));
  return out;
}

Result<std::vector<SweepRow>> SchedDb::sweeps(const std::optional<int64_t>& only_id) {
  std::vector<SweepRow> out;
  std::map<int64_t, size_t> pos;
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT id, name, content_hash, created_at FROM sweeps WHERE (?1 IS NULL OR id = ?1) "
      "ORDER BY id",
      [&](sqlite3_stmt* st) {
        if (only_id) sqlite3_bind_int64(st, 1, *only_id);
      },
      [&](sqlite3_stmt* st) {
        SweepRow s;
        s.id = sqlite3_column_int64(st, 0);
        s.name = col_text(st, 1);
        s.content_hash = col_text(st, 2);
        s.created_at = sqlite3_column_double(st, 3);
        pos[s.id] = out.size();
        out.push_back(std::move(s));
      }));
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT sweep_id, state, COUNT(*) FROM runs WHERE sweep_id IS NOT NULL "
      "AND (?1 IS NULL OR sweep_id = ?1) GROUP BY sweep_id, state",
      [&](sqlite3_stmt* st) {
        if (only_id) sqlite3_bind_int64(st, 1, *only_id);
      },
      [&](sqlite3_stmt* st) {
        auto it = pos.find(sqlite3_column_int64(st, 0));
        if (it != pos.end()) out[it->second].counts[col_text(st, 1)] = sqlite3_column_int64(st, 2);
      }));
  return out;
}

Result<std::map<int64_t, std::string>> SchedDb::sweep_names() {
  std::map<int64_t, std::string> out;
  ASSAY_RETURN_IF_ERROR(exec_bind("SELECT id, name FROM sweeps", {}, [&](sqlite3_stmt* st) {
    out[sqlite3_column_int64(st, 0)] = col_text(st, 1);
  }));
  return out;
}

Result<std::optional<int64_t>> SchedDb::eval_hook_run(int64_t producer_run_id,
                                                      const std::string& checkpoint_hash,
                                                      const std::string& suite) {
  std::optional<int64_t> out;
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT eval_run_id FROM eval_hook_runs WHERE producer_run_id=? AND checkpoint_hash=? "
      "AND suite=?",
      [&](sqlite3_stmt* st) {
        sqlite3_bind_int64(st, 1, producer_run_id);
        bind_text(st, 2, checkpoint_hash);
        bind_text(st, 3, suite);
      },
      [&](sqlite3_stmt* st) { out = sqlite3_column_int64(st, 0); }));
  return out;
}

Status SchedDb::put_eval_hook_run(const EvalHookRun& e, double at) {
  return exec_bind(
      "INSERT INTO eval_hook_runs(producer_run_id, checkpoint_hash, suite, eval_run_id, step, "
      "seed, created_at) VALUES(?,?,?,?,?,?,?)",
      [&](sqlite3_stmt* st) {
        sqlite3_bind_int64(st, 1, e.producer_run_id);
        bind_text(st, 2, e.checkpoint_hash);
        bind_text(st, 3, e.suite);
        sqlite3_bind_int64(st, 4, e.eval_run_id);
        if (e.step) sqlite3_bind_int64(st, 5, *e.step);
        else sqlite3_bind_null(st, 5);
        sqlite3_bind_int64(st, 6, e.seed);
        sqlite3_bind_double(st, 7, at);
      });
}

Result<std::optional<EvalHookRun>> SchedDb::eval_hook_of(int64_t eval_run_id) {
  std::optional<EvalHookRun> out;
  ASSAY_RETURN_IF_ERROR(exec_bind(
      "SELECT producer_run_id, checkpoint_hash, suite, eval_run_id, step, seed "
      "FROM eval_hook_runs WHERE eval_run_id=?",
      [&](sqlite3_stmt* st) { sqlite3_bind_int64(st, 1, eval_run_id); },
      [&](sqlite3_stmt* st) {
        EvalHookRun e;
        e.producer_run_id = sqlite3_column_int64(st, 0);
        e.checkpoint_hash = col_text(st, 1);
        e.suite = col_text(st, 2);
        e.eval_run_id = sqlite3_column_int64(st, 3);
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) e.step = sqlite3_column_int64(st, 4);
        e.seed = sqlite3_column_int64(st, 5);
        out = std::move(e);
      }));
  return out;
}

}  // namespace assay::coordinator
