// Store: the writing connection and the row-level API.
#include "assay/store.h"

#include <malloc.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include <nlohmann/json.hpp>

#include "migrations.h"
#include "sqlite_util.h"

namespace assay::store {

using sql::Stmt;

namespace {

constexpr const char* kRunColumns =
    "id, sweep_id, name, spec_json, params_json, command, state, attempt, max_attempts, "
    "priority, gpus, gpu_mem_mb, cpus, labels_json, timeout_s, worker_id, lease_expires_at, "
    "failure_reason, failure_detail, exit_code, created_at, started_at, finished_at, "
    "peak_gpu_mem_mb, coalesce(gpu_mem_source, ''), reported_at";

Run read_run(const Stmt& s) {
  Run r;
  r.id = s.i64(0);
  r.sweep_id = s.opt_i64(1);
  r.name = s.text(2);
  r.spec_json = s.text(3);
  r.params_json = s.text(4);
  r.command = s.text(5);
  r.state = parse_run_state(s.text(6)).value();  // CHECK constraint guarantees validity
  r.attempt = int(s.i64(7));
  r.max_attempts = int(s.i64(8));
  r.priority = int(s.i64(9));
  r.resources = {int(s.i64(10)), s.i64(11), int(s.i64(12))};
  r.labels_json = s.text(13);
  r.timeout_s = s.opt_f64(14);
  r.worker_id = s.opt_text(15);
  r.lease_expires_at = s.opt_f64(16);
  if (!s.is_null(17)) r.failure_reason = parse_failure_reason(s.text(17)).value();
  r.failure_detail = s.text(18);
  if (!s.is_null(19)) r.exit_code = int(s.i64(19));
  r.created_at = s.f64(20);
  r.started_at = s.opt_f64(21);
  r.finished_at = s.opt_f64(22);
  r.peak_gpu_mem_mb = s.opt_i64(23);
  r.gpu_mem_source = s.text(24);
  r.reported_at = s.opt_f64(25);
  return r;
}

// SQL identifier quoting: "name" with embedded quotes doubled.
std::string quote_ident(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string quote_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

}  // namespace

// ---- state machine ---------------------------------------------------------------

std::string_view to_string(RunState s) {
  switch (s) {
    case RunState::kQueued: return "queued";
    case RunState::kLeased: return "leased";
    case RunState::kRunning: return "running";
    case RunState::kSucceeded: return "succeeded";
    case RunState::kFailed: return "failed";
    case RunState::kCancelled: return "cancelled";
    case RunState::kPruned: return "pruned";
  }
  return "?";
}

Result<RunState> parse_run_state(std::string_view s) {
  for (RunState r : {RunState::kQueued, RunState::kLeased, RunState::kRunning,
                     RunState::kSucceeded, RunState::kFailed, RunState::kCancelled,
                     RunState::kPruned})
    if (to_string(r) == s) return r;
  return Status::Invalid("run state must be one of queued, leased, running, succeeded, failed, "
                         "cancelled, pruned; got '" + std::string(s) + "'");
}

bool is_terminal(RunState s) {
  return s == RunState::kSucceeded || s == RunState::kFailed || s == RunState::kCancelled ||
         s == RunState::kPruned;
}

bool can_transition(RunState from, RunState to) {
  using S = RunState;
  switch (from) {
    case S::kQueued: return to == S::kLeased || to == S::kFailed || to == S::kCancelled;
    case S::kLeased:
      return to == S::kRunning || to == S::kQueued || to == S::kFailed || to == S::kCancelled ||
             to == S::kPruned;
    case S::kRunning:
      return to == S::kSucceeded || to == S::kFailed || to == S::kCancelled || to == S::kQueued ||
             to == S::kPruned;
    case S::kSucceeded: return false;
    // Stopped at a rung by an adaptive search: final, never retried.
    case S::kPruned: return false;
    case S::kFailed:
    case S::kCancelled: return to == S::kQueued;
  }
  return false;
}

std::string_view to_string(FailureReason r) {
  switch (r) {
    case FailureReason::kExitCode: return "exit_code";
    case FailureReason::kSignal: return "signal";
    case FailureReason::kOom: return "oom";
    case FailureReason::kTimeout: return "timeout";
    case FailureReason::kLostWorker: return "lost_worker";
    case FailureReason::kCancelled: return "cancelled";
    case FailureReason::kSpawnError: return "spawn_error";
  }
  return "?";
}

Result<FailureReason> parse_failure_reason(std::string_view s) {
  using F = FailureReason;
  for (F r : {F::kExitCode, F::kSignal, F::kOom, F::kTimeout, F::kLostWorker, F::kCancelled,
              F::kSpawnError})
    if (to_string(r) == s) return r;
  return Status::Invalid("failure reason must be one of exit_code, signal, oom, timeout, "
                         "lost_worker, cancelled, spawn_error; got '" + std::string(s) + "'");
}

// ---- open ------------------------------------------------------------------------

Store::Store(sqlite3* db, std::string path, OpenOptions opts)
    : db_(db), path_(std::move(path)), opts_(std::move(opts)) {}

Store::~Store() {
  for (auto& [sql_text, st] : stmts_) sqlite3_finalize(st);
  if (db_) sqlite3_close(db_);
}

Result<sqlite3_stmt*> Store::cached_stmt(std::string_view text) {
  auto it = stmts_.find(std::string(text));
  if (it != stmts_.end()) return it->second;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, text.data(), int(text.size()), SQLITE_PREPARE_PERSISTENT, &st,
                         nullptr) != SQLITE_OK)
    return sql::error(db_, "prepare '" + std::string(text.substr(0, 60)) + "'");
  stmts_.emplace(std::string(text), st);
  return st;
}

double Store::now() const {
  if (opts_.clock) return opts_.clock();
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

namespace {

// SQLite builds a small in-memory table for every IN list it evaluates (the
// CHECK constraints on runs.state and runs.failure_reason among them), so each
// write statement mallocs and frees a page-cache bulk block. glibc's default
// trim threshold hands that memory back to the kernel after the statement and
// page-faults it in again on the next one: about 100 faults per run, which
// halved the coordinator's dispatch rate (bench/coordinator dispatch). Keeping
// up to 64 MiB of freed heap in the process removes the churn.
void keep_freed_heap() {
  static std::once_flag once;
  std::call_once(once, [] { mallopt(M_TRIM_THRESHOLD, 64 << 20); });
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path, const OpenOptions& opts) {
  keep_freed_heap();
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (opts.create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Status s = opts.create ? sql::error(db, path + ": cannot open database")
                           : Status::NotFound(path + ": no such database (run `assay db init`)");
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<Store> st(new Store(db, path, opts));
  sqlite3_busy_timeout(db, opts.busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  // WAL: readers never block the writer. synchronous=NORMAL in WAL keeps every
  // committed transaction across a process crash (kill -9); only an OS crash
  // or power loss can drop the last commits. FULL fsyncs the WAL at each
  // commit, which survives those too. Read back: the answer a caller gives
  // about durability must be what the connection does.
  const bool full = opts.durability == Durability::kFull;
  ASSAY_RETURN_IF_ERROR(sql::exec(db, std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                                          (full ? "FULL" : "NORMAL") + "; PRAGMA foreign_keys=ON;")
                            .with_context(path));
  ASSAY_ASSIGN_OR_RETURN(int sync, st->synchronous_pragma());
  if (sync != (full ? 2 : 1))
    return Status::Internal(path + ": PRAGMA synchronous reads " + std::to_string(sync) +
                            " after setting it for durability '" +
                            std::string(to_string(opts.durability)) + "'; expected " +
                            (full ? "2 (FULL)" : "1 (NORMAL)"));
  ASSAY_ASSIGN_OR_RETURN(int cur, current_version(db));
  const int latest = latest_schema_version();
  if (cur > latest || (opts.migrate && cur < latest)) {
    auto r = apply_migrations(db, embedded_migrations(), latest, st->now());
    if (!r.ok()) return r.status();
  } else if (cur < latest) {
    return Status::FailedPrecondition(path + ": database is at schema version " +
                                      std::to_string(cur) + ", this binary needs " +
                                      std::to_string(latest) + "; run `assay db migrate`");
  }
  ASSAY_RETURN_IF_ERROR(st->ensure_wide_view().with_context(path));
  return st;
}

Result<int> Store::schema_version() { return current_version(db_); }

// A migration that changes what runs_wide reads drops it (its columns depend
// on the data, so no migration can write it); it is rebuilt here.
Status Store::ensure_wide_view() {
  ASSAY_CACHED(s, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = 'runs_wide'");
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (row && s.i64(0) > 0) return Status::Ok();
  (void)s.reset();
  return refresh_wide_view();
}

class Store::TxScope {
 public:
  explicit TxScope(Store* s) : s_(s) { ++s_->tx_depth_; }
  ~TxScope() {
    --s_->tx_depth_;
    if (!done_) s_->rollback_tx();
  }
  TxScope(const TxScope&) = delete;
  TxScope& operator=(const TxScope&) = delete;
  // fn and the view refresh returned: commit or roll back by their Status.
  Status finish(Status st) {
    done_ = true;
    if (st.ok()) st = sql::exec(s_->db_, s_->group_open_ ? "RELEASE assay_tx" : "COMMIT");
    if (!st.ok()) s_->rollback_tx();
    s_->wide_dirty_ = false;
    return st;
  }

 private:
  Store* s_;
  bool done_ = false;
};

void Store::rollback_tx() {
  if (group_open_) {
    // Undo this call's writes only; the rest of the group stands.
    (void)sql::exec(db_, "ROLLBACK TO assay_tx");
    (void)sql::exec(db_, "RELEASE assay_tx");
  } else {
    (void)sql::exec(db_, "ROLLBACK");
  }
  forget_caches();
  wide_dirty_ = false;
}

Status Store::transaction(const std::function<Status()>& fn) {
  if (tx_depth_ > 0) return fn();
  if (group_commit_ && !group_open_) {
    ASSAY_RETURN_IF_ERROR(sql::exec(db_, "BEGIN IMMEDIATE"));
    group_open_ = true;
  }
  ASSAY_RETURN_IF_ERROR(sql::exec(db_, group_open_ ? "SAVEPOINT assay_tx" : "BEGIN IMMEDIATE"));
  // From here every exit, a throw from fn included, leaves tx_depth_ at 0 and
  // no half-done transaction behind: the next call starts its own.
  TxScope scope(this);
  Status st = fn();
  if (st.ok() && wide_dirty_) st = refresh_wide_view();  // joins this transaction
  return scope.finish(std::move(st));
}

Status Store::commit_group() {
  if (!group_open_) return Status::Ok();
  group_open_ = false;
  Status st = sql::exec(db_, "COMMIT");
  if (!st.ok()) {
    (void)sql::exec(db_, "ROLLBACK");
    forget_caches();
  }
  return st;
}

// Caches may hold ids that a rollback erased.
void Store::forget_caches() {
  key_ids_.clear();
  param_keys_.clear();
  param_keys_loaded_ = false;
}

// ---- sweeps ----------------------------------------------------------------------

Result<int64_t> Store::insert_sweep(const std::string& name, const std::string& spec_json,
                                    const std::string& content_hash) {
  ASSAY_CACHED(s, "INSERT INTO sweeps(name, spec_json, content_hash, created_at) VALUES (?1, ?2, ?3, ?4)");
  Status st = s.bind(1, name).bind(2, spec_json).bind(3, content_hash).bind(4, now()).exec();
  if (!st.ok()) return st.with_context("sweep '" + name + "'");
  return sqlite3_last_insert_rowid(db_);
}

namespace {
Sweep read_sweep(const Stmt& s) { return {s.i64(0), s.text(1), s.text(2), s.text(3), s.f64(4)}; }
}  // namespace

Result<std::optional<Sweep>> Store::find_sweep(const std::string& name) {
  ASSAY_CACHED(s, "SELECT id, name, spec_json, content_hash, created_at FROM sweeps WHERE name = ?1");
  s.bind(1, name);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<Sweep>();
  return std::optional<Sweep>(read_sweep(s));
}

Result<Sweep> Store::get_sweep(int64_t id) {
  ASSAY_CACHED(s, "SELECT id, name, spec_json, content_hash, created_at FROM sweeps WHERE id = ?1");
  s.bind(1, id);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return Status::NotFound("sweep " + std::to_string(id) + ": no such sweep");
  return read_sweep(s);
}

// ---- runs ------------------------------------------------------------------------

Result<int64_t> Store::insert_run(const NewRun& r, const std::string& actor) {
  int64_t id = 0;
  Status st = transaction([&]() -> Status {
    ASSAY_CACHED(s, "INSERT INTO runs(sweep_id, name, spec_json, params_json, command, priority, gpus, "
        "gpu_mem_mb, cpus, labels_json, max_attempts, timeout_s, created_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
    s.bind(1, r.sweep_id).bind(2, r.name).bind(3, r.spec_json).bind(4, r.params_json)
        .bind(5, r.command).bind(6, r.priority).bind(7, r.resources.gpus)
        .bind(8, r.resources.gpu_mem_mb).bind(9, r.resources.cpus).bind(10, r.labels_json)
        .bind(11, r.max_attempts).bind(12, r.timeout_s).bind(13, now());
    ASSAY_RETURN_IF_ERROR(s.exec().with_context("run '" + r.name + "'"));
    id = sqlite3_last_insert_rowid(db_);
    ASSAY_CACHED(e, "INSERT INTO run_events(run_id, at, actor, kind, to_state, detail) "
        "VALUES (?1, ?2, ?3, 'state', 'queued', 'created')");
    ASSAY_RETURN_IF_ERROR(e.bind(1, id).bind(2, now()).bind(3, actor).exec());
    return note_param_keys(r.params_json);
  });
  if (!st.ok()) return st;
  return id;
}

Result<Run> Store::get_run(int64_t id) {
  ASSAY_CACHED(s, std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?1");
  s.bind(1, id);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return Status::NotFound("run " + std::to_string(id) + ": no such run");
  return read_run(s);
}

Result<std::vector<Run>> Store::list_runs(const RunFilter& f) {
  std::string q = std::string("SELECT ") + kRunColumns + " FROM runs WHERE id > ?1";
  if (f.sweep_id) q += " AND sweep_id = ?2";
  if (f.state) q += " AND state = ?3";
  for (size_t i = 0; i < f.params.size(); ++i)
    q += " AND CAST(json_extract(params_json, ?" + std::to_string(10 + 2 * i) +
         ") AS TEXT) = ?" + std::to_string(11 + 2 * i);
  q += " ORDER BY id LIMIT ?4";
  ASSAY_CACHED(s, q);
  s.bind(1, f.after_id).bind(4, f.limit);
  if (f.sweep_id) s.bind(2, *f.sweep_id);
  if (f.state) s.bind(3, to_string(*f.state));
  for (size_t i = 0; i < f.params.size(); ++i) {
    s.bind(int(10 + 2 * i), "$." + quote_ident(f.params[i].first));
    s.bind(int(11 + 2 * i), f.params[i].second);
  }
  std::vector<Run> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(read_run(s));
  }
  return out;
}

Status Store::transition(const Transition& t) {
  return transaction([&]() -> Status {
    ASSAY_ASSIGN_OR_RETURN(Run cur, get_run(t.run_id));
    const std::string who = "run " + std::to_string(t.run_id);
    if (t.expect_from && cur.state != *t.expect_from)
      return Status::FailedPrecondition(who + ": expected state " +
                                        std::string(to_string(*t.expect_from)) + ", found " +
                                        std::string(to_string(cur.state)));
    if (!can_transition(cur.state, t.to))
      return Status::FailedPrecondition(who + ": cannot go from " +
                                        std::string(to_string(cur.state)) + " to " +
                                        std::string(to_string(t.to)));
    const double at = now();
    const bool holds_lease = t.to == RunState::kLeased || t.to == RunState::kRunning;
    ASSAY_CACHED(s, "UPDATE runs SET state = ?2, worker_id = ?3, lease_expires_at = ?4, "
        "failure_reason = ?5, failure_detail = ?6, exit_code = ?7, attempt = attempt + ?8, "
        "started_at = CASE WHEN ?2 = 'running' THEN ?9 WHEN ?2 = 'queued' THEN NULL "
        "  ELSE started_at END, "
        "finished_at = CASE WHEN ?2 = 'succeeded' OR ?2 = 'failed' OR ?2 = 'cancelled' "
        "  OR ?2 = 'pruned' THEN coalesce(?12, ?9) ELSE NULL END, "
        "reported_at = CASE WHEN ?2 = 'succeeded' OR ?2 = 'failed' OR ?2 = 'cancelled' "
        "  OR ?2 = 'pruned' THEN ?9 "
        "ELSE NULL END, "
        "peak_gpu_mem_mb = CASE WHEN ?2 = 'queued' THEN NULL ELSE coalesce(?10, peak_gpu_mem_mb) END, "
        "gpu_mem_source = CASE WHEN ?2 = 'queued' THEN NULL ELSE coalesce(?11, gpu_mem_source) END "
        "WHERE id = ?1");
    s.bind(1, t.run_id).bind(2, to_string(t.to));
    if (holds_lease) {
      s.bind(3, t.worker_id ? t.worker_id : cur.worker_id);
      s.bind(4, t.lease_expires_at ? t.lease_expires_at : cur.lease_expires_at);
    } else {
      s.bind_null(3).bind_null(4);
    }
    if (t.failure_reason) s.bind(5, to_string(*t.failure_reason)); else s.bind_null(5);
    s.bind(6, t.failure_detail);
    if (t.exit_code) s.bind(7, int64_t(*t.exit_code)); else s.bind_null(7);
    s.bind(8, t.bump_attempt ? 1 : 0).bind(9, at);
    if (t.peak_gpu_mem_mb) s.bind(10, *t.peak_gpu_mem_mb); else s.bind_null(10);
    if (!t.gpu_mem_source.empty()) s.bind(11, t.gpu_mem_source); else s.bind_null(11);
    // The exit time comes from the worker's clock: keep it between the start
    // this database saw and now, so a skewed clock cannot make a negative
    // duration or a run that ended in the future.
    std::optional<double> ended;
    if (t.exited_at && std::isfinite(*t.exited_at)) {
      ended = std::min(*t.exited_at, at);
      if (cur.started_at) ended = std::max(*ended, *cur.started_at);
    }
    s.bind(12, ended);
    ASSAY_RETURN_IF_ERROR(s.exec().with_context(who));
    ASSAY_CACHED(e, "INSERT INTO run_events(run_id, at, actor, kind, from_state, to_state, detail) "
        "VALUES (?1, ?2, ?3, 'state', ?4, ?5, ?6)");
    std::string detail = t.detail;
    if (t.failure_reason) {
      detail += (detail.empty() ? "" : "; ") + std::string("reason=") +
                std::string(to_string(*t.failure_reason));
      if (!t.failure_detail.empty()) detail += ": " + t.failure_detail;
    }
    return e.bind(1, t.run_id).bind(2, at).bind(3, t.actor).bind(4, to_string(cur.state))
        .bind(5, to_string(t.to)).bind(6, detail).exec();
  });
}

Status Store::add_event(int64_t run_id, const std::string& actor, const std::string& kind,
                        const std::string& detail) {
  ASSAY_CACHED(e, "INSERT INTO run_events(run_id, at, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
  return e.bind(1, run_id).bind(2, now()).bind(3, actor).bind(4, kind).bind(5, detail).exec()
      .with_context("run " + std::to_string(run_id));
}

Result<std::vector<Event>> Store::events(int64_t run_id) {
  ASSAY_CACHED(s, "SELECT id, run_id, at, actor, kind, from_state, to_state, coalesce(detail, '') "
      "FROM run_events WHERE run_id = ?1 ORDER BY id");
  s.bind(1, run_id);
  std::vector<Event> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back({s.i64(0), s.i64(1), s.f64(2), s.text(3), s.text(4), s.opt_text(5),
                   s.opt_text(6), s.text(7)});
  }
  return out;
}

// ---- metrics ---------------------------------------------------------------------

Result<int64_t> Store::intern_key(const std::string& key, bool* added) {
  if (auto it = key_ids_.find(key); it != key_ids_.end()) return it->second;
  ASSAY_CACHED(q, "SELECT id FROM metric_keys WHERE name = ?1");
  q.bind(1, key);
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  int64_t id;
  if (row) {
    id = q.i64(0);
  } else {
    ASSAY_CACHED(ins, "INSERT INTO metric_keys(name) VALUES (?1)");
    ASSAY_RETURN_IF_ERROR(ins.bind(1, key).exec());
    id = sqlite3_last_insert_rowid(db_);
    *added = true;
  }
  key_ids_[key] = id;
  return id;
}

// Store::put_metrics: metric_summary.cpp (it maintains the summary too).

Result<int> Store::current_attempt(int64_t run_id) {
  ASSAY_CACHED(q, "SELECT attempt FROM runs WHERE id = ?1");
  q.bind(1, run_id);
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return Status::NotFound("run " + std::to_string(run_id) + ": no such run");
  return int(q.i64(0));
}

Result<std::vector<MetricPoint>> Store::metrics(int64_t run_id, const std::string& key,
                                                int attempt) {
  if (attempt < kAllAttempts)
    return Status::Invalid("run " + std::to_string(run_id) + ": attempt must be >= 1, got " +
                           std::to_string(attempt));
  if (attempt == kCurrentAttempt) {
    // The run's curve: the current attempt plus, below a resume, the points
    // of the attempts it continues (migration 0006).
    ASSAY_RETURN_IF_ERROR(current_attempt(run_id).status());
    ASSAY_CACHED(curve, "SELECT c.run_id, k.name, c.step, c.value, c.wall_time, c.attempt "
        "FROM metric_curve c JOIN metric_keys k ON k.id = c.key_id "
        "WHERE c.run_id = ?1 AND (?2 = '' OR k.name = ?2) ORDER BY k.name, c.step");
    curve.bind(1, run_id).bind(2, key);
    std::vector<MetricPoint> out;
    while (true) {
      ASSAY_ASSIGN_OR_RETURN(bool row, curve.step());
      if (!row) break;
      out.push_back({curve.i64(0), curve.text(1), curve.i64(2), curve.f64(3), curve.f64(4),
                     int(curve.i64(5))});
    }
    return out;
  }
  // Two statements, so that one attempt is an index range, not a filter.
  ASSAY_CACHED(one, "SELECT m.run_id, k.name, m.step, m.value, m.wall_time, m.attempt "
      "FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
      "WHERE m.run_id = ?1 AND m.attempt = ?3 AND (?2 = '' OR k.name = ?2) "
      "ORDER BY k.name, m.step");
  ASSAY_CACHED(all, "SELECT m.run_id, k.name, m.step, m.value, m.wall_time, m.attempt "
      "FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
      "WHERE m.run_id = ?1 AND (?2 = '' OR k.name = ?2) ORDER BY m.attempt, k.name, m.step");
  Stmt& s = attempt == kAllAttempts ? all : one;
  s.bind(1, run_id).bind(2, key);
  if (attempt != kAllAttempts) s.bind(3, int64_t(attempt));
  std::vector<MetricPoint> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back({s.i64(0), s.text(1), s.i64(2), s.f64(3), s.f64(4), int(s.i64(5))});
  }
  return out;
}

// ---- artifacts -------------------------------------------------------------------

namespace {
constexpr const char* kArtifactColumns =
    "id, run_id, kind, content_hash, path, step, parent_id, metadata_json, created_at";
Artifact read_artifact(const Stmt& s) {
  return {s.i64(0), s.opt_i64(1), s.text(2), s.text(3), s.text(4),
          s.opt_i64(5), s.opt_i64(6), s.text(7), s.f64(8)};
}
}  // namespace

Result<int64_t> Store::put_artifact(const Artifact& a) {
  ASSAY_CACHED(s, "INSERT INTO artifacts(run_id, kind, content_hash, path, step, parent_id, metadata_json, "
      "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
      "ON CONFLICT(run_id, kind, content_hash) DO NOTHING");
  s.bind(1, a.run_id).bind(2, a.kind).bind(3, a.content_hash).bind(4, a.path).bind(5, a.step)
      .bind(6, a.parent_id).bind(7, a.metadata_json).bind(8, a.created_at > 0 ? a.created_at : now());
  ASSAY_RETURN_IF_ERROR(s.exec().with_context("artifact " + a.content_hash));
  ASSAY_CACHED(q, "SELECT id FROM artifacts WHERE run_id IS ?1 AND kind = ?2 AND content_hash = ?3");
  q.bind(1, a.run_id).bind(2, a.kind).bind(3, a.content_hash);
  ASSAY_ASSIGN_OR_RETURN(bool row, q.step());
  if (!row) return Status::Internal("artifact " + a.content_hash + ": not found after insert");
  return q.i64(0);
}

Result<std::vector<Artifact>> Store::artifacts(int64_t run_id) {
  ASSAY_CACHED(s, std::string("SELECT ") + kArtifactColumns +
                                                        " FROM artifacts WHERE run_id = ?1 ORDER BY id");
  s.bind(1, run_id);
  std::vector<Artifact> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back(read_artifact(s));
  }
  return out;
}

Result<std::optional<Artifact>> Store::find_artifact(const std::string& hash) {
  ASSAY_CACHED(s, std::string("SELECT ") + kArtifactColumns +
      " FROM artifacts WHERE content_hash = ?1 ORDER BY id LIMIT 1");
  s.bind(1, hash);
  ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
  if (!row) return std::optional<Artifact>();
  return std::optional<Artifact>(read_artifact(s));
}

// ---- workers ---------------------------------------------------------------------

Status Store::upsert_worker(const Worker& w) {
  ASSAY_CACHED(s, "INSERT INTO workers(id, host, gpus_json, labels_json, cpus, registered_at, last_heartbeat) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO UPDATE SET host = excluded.host, "
      "gpus_json = excluded.gpus_json, labels_json = excluded.labels_json, cpus = excluded.cpus, "
      "last_heartbeat = excluded.last_heartbeat");
  const double at = now();
  return s.bind(1, w.id).bind(2, w.host).bind(3, w.gpus_json).bind(4, w.labels_json)
      .bind(5, w.cpus).bind(6, w.registered_at > 0 ? w.registered_at : at)
      .bind(7, w.last_heartbeat > 0 ? w.last_heartbeat : at).exec()
      .with_context("worker " + w.id);
}

Status Store::heartbeat(const std::string& worker_id, double at,
                        const std::optional<std::string>& gpus_json) {
  ASSAY_CACHED(s, "UPDATE workers SET last_heartbeat = ?2, gpus_json = coalesce(?3, gpus_json) "
                  "WHERE id = ?1");
  s.bind(1, worker_id).bind(2, at);
  if (gpus_json) s.bind(3, *gpus_json); else s.bind_null(3);
  ASSAY_RETURN_IF_ERROR(s.exec());
  if (sqlite3_changes(db_) == 0)
    return Status::NotFound("worker " + worker_id + ": not registered");
  return Status::Ok();
}

Status Store::add_gpu_samples(const std::vector<GpuSample>& samples) {
  return transaction([&]() -> Status {
    ASSAY_CACHED(s, "INSERT OR REPLACE INTO gpu_samples(worker_id, gpu_index, at, util_pct, "
                    "mem_used_mb, mem_total_mb) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    for (const auto& g : samples) {
      s.bind(1, g.worker_id).bind(2, int64_t(g.gpu_index)).bind(3, g.at);
      if (g.util_pct) s.bind(4, int64_t(*g.util_pct)); else s.bind_null(4);
      ASSAY_RETURN_IF_ERROR(s.bind(5, g.mem_used_mb).bind(6, g.mem_total_mb).exec()
                                .with_context("worker " + g.worker_id));
      ASSAY_RETURN_IF_ERROR(s.reset());
    }
    return Status::Ok();
  });
}

Result<std::vector<Worker>> Store::workers() {
  ASSAY_CACHED(s, "SELECT id, host, gpus_json, labels_json, cpus, registered_at, last_heartbeat "
      "FROM workers ORDER BY id");
  std::vector<Worker> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    out.push_back({s.text(0), s.text(1), s.text(2), s.text(3), int(s.i64(4)), s.f64(5), s.f64(6)});
  }
  return out;
}

// ---- eval results ----------------------------------------------------------------

Status Store::put_eval_results(const std::vector<EvalResult>& rows) {
  return transaction([&]() -> Status {
    ASSAY_CACHED(s, "INSERT INTO eval_results(run_id, suite, metric, filter, value, stderr, n, suite_version, "
        "checkpoint_hash, seed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
        "ON CONFLICT(checkpoint_hash, suite, suite_version, seed, metric, filter) DO UPDATE SET "
        "run_id = excluded.run_id, value = excluded.value, stderr = excluded.stderr, "
        "n = excluded.n, created_at = excluded.created_at");
    for (const auto& r : rows) {
      (void)s.reset();
      s.bind(1, r.run_id).bind(2, r.suite).bind(3, r.metric).bind(4, r.filter).bind(5, r.value)
          .bind(6, r.stderr_value).bind(7, r.n).bind(8, r.suite_version).bind(9, r.checkpoint_hash)
          .bind(10, r.seed).bind(11, r.created_at > 0 ? r.created_at : now());
      ASSAY_RETURN_IF_ERROR(s.exec().with_context("eval result " + r.suite + "/" + r.metric));
    }
    return Status::Ok();
  });
}

Result<std::vector<EvalResult>> Store::eval_results(const std::string& checkpoint_hash,
                                                    const std::string& suite,
                                                    const std::string& suite_version,
                                                    int64_t seed) {
  ASSAY_CACHED(s, "SELECT id, run_id, suite, metric, filter, value, stderr, n, suite_version, "
      "checkpoint_hash, seed, created_at FROM eval_results WHERE checkpoint_hash = ?1 "
      "AND suite = ?2 AND suite_version = ?3 AND seed = ?4 ORDER BY metric, filter");
  s.bind(1, checkpoint_hash).bind(2, suite).bind(3, suite_version).bind(4, seed);
  std::vector<EvalResult> out;
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) break;
    EvalResult r;
    r.id = s.i64(0); r.run_id = s.opt_i64(1); r.suite = s.text(2); r.metric = s.text(3);
    r.filter = s.text(4); r.value = s.opt_f64(5); r.stderr_value = s.opt_f64(6);
    r.n = s.opt_i64(7); r.suite_version = s.text(8); r.checkpoint_hash = s.text(9);
    r.seed = s.i64(10); r.created_at = s.f64(11);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- the wide view ---------------------------------------------------------------

Status Store::note_param_keys(const std::string& params_json) {
  auto doc = nlohmann::json::parse(params_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return Status::Invalid("params_json: expected a JSON object, got '" +
                           params_json.substr(0, 80) + "'");
  if (!param_keys_loaded_) {
    param_keys_loaded_ = true;
    // Load what the database already knows, once per connection.
    ASSAY_CACHED(s, "SELECT DISTINCT j.key FROM runs, json_each(runs.params_json) j ORDER BY j.key");
    while (true) {
      ASSAY_ASSIGN_OR_RETURN(bool row, s.step());
      if (!row) break;
      param_keys_.push_back(s.text(0));
    }
    wide_dirty_ = true;
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (std::find(param_keys_.begin(), param_keys_.end(), it.key()) == param_keys_.end()) {
      param_keys_.push_back(it.key());
      wide_dirty_ = true;
    }
  }
  return Status::Ok();
}

namespace {
// A name the view can carry as a column: control characters (NUL above all,
// which ends the SQL text early) would make the view's SQL invalid and fail
// every later write. Such names stay queryable through metrics/runs.
bool usable_column_name(const std::string& n) {
  for (unsigned char c : n)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}
}  // namespace

Status Store::refresh_wide_view() {
  // Column names: a param keeps its name unless it collides with a run_summary
  // column, then it becomes param_<name>; metrics give <m>_final/_min/_max.
  static const char* kBase[] = {"run_id", "sweep", "name", "state", "attempt", "priority",
                                "gpus", "failure_reason", "exit_code", "params_json", "command",
                                "created_at", "started_at", "finished_at", "duration_s"};
  std::vector<std::string> used(std::begin(kBase), std::end(kBase));
  auto take = [&](std::string n) {
    while (std::find(used.begin(), used.end(), n) != used.end()) n = "param_" + n;
    used.push_back(n);
    return n;
  };
  std::string q = "CREATE VIEW runs_wide AS SELECT rs.*";
  ASSAY_CACHED(pk, "SELECT DISTINCT j.key FROM runs, json_each(runs.params_json) j "
      "WHERE j.type NOT IN ('object', 'array') ORDER BY j.key");
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, pk.step());
    if (!row) break;
    std::string k = pk.text(0);
    if (!usable_column_name(k)) continue;
    q += ", json_extract(rs.params_json, " + quote_literal("$." + quote_ident(k)) + ") AS " +
         quote_ident(take(k));
  }
  ASSAY_CACHED(mk, "SELECT id, name FROM metric_keys ORDER BY name");
  while (true) {
    ASSAY_ASSIGN_OR_RETURN(bool row, mk.step());
    if (!row) break;
    const std::string kid = std::to_string(mk.i64(0)), name = mk.text(1);
    if (!usable_column_name(name)) continue;
    // The run's curve, as run_metric_summary: one summary row of the
    // current attempt (migrations/0007), not a scan of its points.
    const std::string where = " FROM metric_summary s WHERE s.run_id = rs.run_id AND "
                              "s.attempt = rs.attempt AND s.key_id = " + kid + ")";
    q += ", (SELECT s.final" + where + " AS " + quote_ident(take(name + "_final"));
    q += ", (SELECT s.curve_min" + where + " AS " + quote_ident(take(name + "_min"));
    q += ", (SELECT s.curve_max" + where + " AS " + quote_ident(take(name + "_max"));
  }
  q += " FROM run_summary rs";
  wide_dirty_ = false;
  return transaction([&]() -> Status {
    ASSAY_RETURN_IF_ERROR(sql::exec(db_, "DROP VIEW IF EXISTS runs_wide"));
    return sql::exec(db_, q).with_context("refresh runs_wide");
  });
}

}  // namespace assay::store
