// The results database: one SQLite file per deployment.
//
// Store owns the single writing connection (WAL mode, foreign keys on,
// busy_timeout set). It is not thread-safe: the coordinator gives it to one
// writer, which batches work into transactions. Readers open their own
// connections; query_readonly() serves users' SQL and can never write.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "assay/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace assay::store {

// ---- Runs: the state machine -------------------------------------------------
//   queued -> leased -> running -> succeeded | failed | cancelled
//   leased|running -> queued      (lease lost, retried with attempt + 1)
//   queued|leased -> failed       (e.g. attempts exhausted, spawn error)
//   queued|leased|running -> cancelled
//   failed|cancelled -> queued    (user retry)
//   leased|running -> pruned      (stopped at a rung by an adaptive search;
//                                  final: never retried)
enum class RunState { kQueued, kLeased, kRunning, kSucceeded, kFailed, kCancelled, kPruned };
std::string_view to_string(RunState s);
Result<RunState> parse_run_state(std::string_view s);
bool is_terminal(RunState s);
bool can_transition(RunState from, RunState to);

enum class FailureReason { kExitCode, kSignal, kOom, kTimeout, kLostWorker, kCancelled, kSpawnError };
std::string_view to_string(FailureReason r);
Result<FailureReason> parse_failure_reason(std::string_view s);

struct Resources {
  int gpus = 0;
  int64_t gpu_mem_mb = 0;  // per GPU
  int cpus = 1;
};

struct NewRun {
  std::optional<int64_t> sweep_id;
  std::string name;
  std::string spec_json = "{}";
  std::string params_json = "{}";  // a flat JSON object of the run's params
  std::string command;
  int priority = 0;
  Resources resources;
  std::string labels_json = "{}";
  int max_attempts = 1;
  std::optional<double> timeout_s;
};

struct Run {
  int64_t id = 0;
  std::optional<int64_t> sweep_id;
  std::string name, spec_json, params_json, command;
  RunState state = RunState::kQueued;
  int attempt = 1, max_attempts = 1, priority = 0;
  Resources resources;
  std::string labels_json;
  std::optional<double> timeout_s;
  std::optional<std::string> worker_id;
  std::optional<double> lease_expires_at;
  std::optional<FailureReason> failure_reason;
  std::string failure_detail;
  std::optional<int> exit_code;
  double created_at = 0;
  // finished_at: when the run's process exited, as its worker reported it
  // (held between started_at and reported_at); reported_at: when the end was
  // recorded here. Without an exit report (lost worker, a cancel before
  // start) both are the time of recording.
  std::optional<double> started_at, finished_at, reported_at;
  // Peak GPU memory of the latest attempt (MiB) and "process" or "device"
  // (how the worker measured it); empty when not measured.
  std::optional<int64_t> peak_gpu_mem_mb;
  std::string gpu_mem_source;
};

struct RunFilter {
  std::optional<int64_t> sweep_id;
  std::optional<RunState> state;
  // Equality on params: json_extract(params_json, '$.<key>') = value, where
  // value is compared as text (numbers as SQLite prints them).
  std::vector<std::pair<std::string, std::string>> params;
  int64_t after_id = 0;  // keyset pagination
  int limit = 1000;
};

// A state change, applied with compare-and-set on expect_from when given.
struct Transition {
  int64_t run_id = 0;
  RunState to = RunState::kQueued;
  std::optional<RunState> expect_from;
  std::string actor;   // 'coordinator', 'worker:<id>', 'user', 'cli'
  std::string detail;  // free text for the audit log
  // Fields set alongside the state. Leaving queued/leased clears the lease.
  std::optional<std::string> worker_id;
  std::optional<double> lease_expires_at;
  std::optional<FailureReason> failure_reason;
  std::string failure_detail;
  std::optional<int> exit_code;
  bool bump_attempt = false;  // attempt += 1 (lease lost, retry)
  // Set when the worker measured the attempt's GPU memory; going back to
  // queued clears both.
  std::optional<int64_t> peak_gpu_mem_mb;
  std::string gpu_mem_source;  // "process" | "device"
  // Entering a terminal state: when the process exited (unix seconds, the
  // worker's clock). finished_at takes it, held between started_at and now;
  // absent, finished_at is now.
  std::optional<double> exited_at;
};

// One reading of one worker GPU (table gpu_samples).
struct GpuSample {
  std::string worker_id;
  int gpu_index = 0;
  double at = 0;                // unix seconds
  std::optional<int> util_pct;  // 0..100
  int64_t mem_used_mb = 0, mem_total_mb = 0;
};

struct Event {
  int64_t id = 0, run_id = 0;
  double at = 0;
  std::string actor, kind;
  std::optional<std::string> from_state, to_state;
  std::string detail;
};

struct MetricPoint {
  int64_t run_id = 0;
  std::string key;
  int64_t step = 0;
  double value = 0;
  double wall_time = 0;  // unix seconds when the run emitted it
  // The attempt that wrote the point. 0 on write: the run's current attempt.
  int attempt = 0;
};

// Which attempt's points Store::metrics returns: one attempt (>= 1), or
inline constexpr int kCurrentAttempt = 0;  // the run's current attempt
inline constexpr int kAllAttempts = -1;    // every attempt

struct Artifact {
  int64_t id = 0;
  std::optional<int64_t> run_id;
  std::string kind = "checkpoint";
  std::string content_hash, path;
  std::optional<int64_t> step;
  std::optional<int64_t> parent_id;
  std::string metadata_json = "{}";
  double created_at = 0;
};

struct Worker {
  std::string id, host;
  std::string gpus_json = "[]";
  std::string labels_json = "{}";
  int cpus = 1;
  double registered_at = 0, last_heartbeat = 0;
};

struct EvalResult {
  int64_t id = 0;
  std::optional<int64_t> run_id;
  std::string suite, metric, filter = "none";
  std::optional<double> value, stderr_value;
  std::optional<int64_t> n;
  std::string suite_version, checkpoint_hash;
  int64_t seed = 0;
  double created_at = 0;
};

struct Sweep {
  int64_t id = 0;
  std::string name, spec_json, content_hash;
  double created_at = 0;
};

// ---- Coordinator bookkeeping (tables of migrations 0002 and 0003) -----------

// Where a run was last placed (run_placement); kept after the run ends so
// late reports of that worker and attempt can be told from stale ones.
struct Placement {
  int64_t run_id = 0;
  std::string worker_id;
  int attempt = 0;
  std::vector<int> gpus;  // worker GPU indices
  int cpus = 0;
};

// A sweep with its run count per state.
struct SweepCounts {
  int64_t id = 0;
  std::string name, content_hash;
  double created_at = 0;
  std::map<std::string, int64_t> counts;  // state -> runs
};

// The process instance a worker registered with last (worker_instances).
struct WorkerInstance {
  std::string instance;
  int max_runs = 0;
};

// One eval run created by a sweep's eval hook (eval_hook_runs).
struct EvalHookRun {
  int64_t producer_run_id = 0;
  std::string checkpoint_hash;
  std::string suite;            // the hook's suite, as written in the spec
  int64_t eval_run_id = 0;
  std::optional<int64_t> step;  // the checkpoint's step
  int64_t seed = 0;
};

// ---- Adaptive search (migration 0008, search_store.cpp) ---------------------

// One rung decision of an ASHA sweep (table search_rungs).
struct RungRow {
  int64_t sweep_id = 0, run_id = 0;
  int bracket = 0, rung = 0;
  int64_t step = 0;           // the rung's step
  int64_t reported_step = 0;  // the step whose value was recorded there
  std::string values_json = "[]";  // one value per objective; null for NaN
  std::string cutoff_json = "null";
  bool proceed = true;        // decision: 'continue' or 'stop'
  double at = 0;
};

// One proposed sample of a sampled sweep (table search_samples).
struct SampleRow {
  int64_t sweep_id = 0;
  int64_t sample_index = 0;
  std::string params_json = "{}";
  int64_t run_id = 0;
  double at = 0;
};

// When a commit is durable (WAL mode, PRAGMA synchronous):
//   kNormal: a committed transaction survives a crash of the process
//            (kill -9); an OS crash or power loss can drop the last commits.
//   kFull:   the WAL is fsync'd at every commit, so a commit also survives an
//            OS crash or power loss.
enum class Durability { kNormal, kFull };
std::string_view to_string(Durability d);  // "normal" | "full"
Result<Durability> parse_durability(std::string_view s);

struct OpenOptions {
  bool create = true;       // create the file when missing
  bool migrate = true;      // apply pending migrations; otherwise refuse an old schema
  int busy_timeout_ms = 5000;
  std::function<double()> clock;  // unix seconds; the wall clock when empty
  Durability durability = Durability::kNormal;
};

// Schema versions known to this binary.
int latest_schema_version();

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path, const OpenOptions& opts = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  Result<int> schema_version();
  double now() const;
  // The durability this connection was opened with (verified at open by
  // reading PRAGMA synchronous back).
  Durability durability() const { return opts_.durability; }
  // PRAGMA synchronous as the connection reports it now: 0 off, 1 normal,
  // 2 full, 3 extra.
  Result<int> synchronous_pragma();

  // Runs fn inside BEGIN IMMEDIATE..COMMIT; rolls back when fn fails.
  // Nested calls join the outer transaction.
  Status transaction(const std::function<Status()>& fn);

  // Group commit. When on, an outermost transaction() becomes a savepoint in
  // one long transaction (rolled back alone when fn fails) and nothing is
  // durable until commit_group(). A server answering many small requests
  // commits once per batch of them, and answers each only after the commit.
  // Writes made outside transaction() join the open group too.
  void set_group_commit(bool on) { group_commit_ = on; }
  bool group_pending() const { return group_open_; }
  // Commits the open group (no-op when none). On failure everything since the
  // last commit_group() is rolled back.
  Status commit_group();

  // Sweeps.
  Result<int64_t> insert_sweep(const std::string& name, const std::string& spec_json,
                               const std::string& content_hash);
  Result<std::optional<Sweep>> find_sweep(const std::string& name);
  Result<Sweep> get_sweep(int64_t id);

  // Runs. insert_run also writes a 'created' event.
  Result<int64_t> insert_run(const NewRun& run, const std::string& actor);
  Result<Run> get_run(int64_t id);
  Result<std::vector<Run>> list_runs(const RunFilter& filter);
  // Validates the edge (and expect_from), updates the row, writes an event.
  // FailedPrecondition when the run is not in the expected state.
  Status transition(const Transition& t);
  Status add_event(int64_t run_id, const std::string& actor, const std::string& kind,
                   const std::string& detail);
  Result<std::vector<Event>> events(int64_t run_id);

  // Metrics: upsert on (run, attempt, key, step), so re-delivery never
  // doubles and an attempt never overwrites another's points.
  // The per-(run, attempt, metric) summary behind run_metric_summary and
  // runs_wide (table metric_summary, migration 0007) is updated in the same
  // transaction (metric_summary.cpp).
  Status put_metrics(const std::vector<MetricPoint>& points);
  // Ordered by attempt, key, step. `attempt`: a number >= 1, kCurrentAttempt
  // or kAllAttempts. kCurrentAttempt reads the run's curve (view
  // metric_curve): the current attempt, and for an attempt that resumed from
  // a checkpoint at step s, the earlier attempts' points up to s (ordered by
  // key, step; each point keeps its attempt).
  Result<std::vector<MetricPoint>> metrics(int64_t run_id, const std::string& key = "",
                                           int attempt = kCurrentAttempt);

  // Preemption and resume (migration 0006, store/src/resume.cpp).
  // A preempted attempt is counted apart: `attempt - preemptions` is what
  // max_attempts limits.
  Status note_preempted(int64_t run_id);
  Result<int> preemptions(int64_t run_id);
  // Whether the run's next start resumes from its last checkpoint.
  Status set_resume(int64_t run_id, bool resume);
  // The run's checkpoint to resume from: when its resume flag is set, its
  // checkpoint artifact with the highest step (ties: the latest); else none.
  Result<std::optional<Artifact>> resume_point(int64_t run_id);
  // Records that `attempt` started from the checkpoint at `step`; the run's
  // curve (view metric_curve) takes earlier attempts' points up to `step`.
  Status put_resume(int64_t run_id, int attempt, int64_t step, const std::string& path);

  // Artifacts: idempotent on (run, kind, content_hash); returns the row id.
  Result<int64_t> put_artifact(const Artifact& a);
  Result<std::vector<Artifact>> artifacts(int64_t run_id);
  Result<std::optional<Artifact>> find_artifact(const std::string& content_hash);

  // Workers.
  Status upsert_worker(const Worker& w);
  // `gpus_json`, when given, replaces the worker's GPU list (live free
  // memory and utilization).
  Status heartbeat(const std::string& worker_id, double at,
                   const std::optional<std::string>& gpus_json = std::nullopt);
  Status add_gpu_samples(const std::vector<GpuSample>& samples);
  Result<std::vector<Worker>> workers();

  // Eval results: upsert on (checkpoint_hash, suite, suite_version, seed, metric, filter).
  Status put_eval_results(const std::vector<EvalResult>& rows);
  Result<std::vector<EvalResult>> eval_results(const std::string& checkpoint_hash,
                                               const std::string& suite,
                                               const std::string& suite_version, int64_t seed);

  // (Re)creates the runs_wide view: run_summary plus one column per param
  // key and <metric>_final/_min/_max per metric key. Called automatically
  // when a run brings a new param key or a metric brings a new key.
  Status refresh_wide_view();

  // Coordinator bookkeeping (bookkeeping.cpp). Writers run inside the
  // caller's transaction(); `at` is unix seconds.
  Status put_placement(const Placement& p, double at);
  Result<std::optional<Placement>> placement(int64_t run_id);
  // Placements of runs now leased or running.
  Result<std::vector<Placement>> held_placements();
  Status set_cancel_request(int64_t run_id, double at);
  Status clear_cancel_request(int64_t run_id);
  Result<std::set<int64_t>> cancel_requests();
  // Records a metric batch by (run, attempt, batch_seq): true when it is new,
  // false when that batch was applied before.
  Result<bool> note_metric_batch(int64_t run_id, int attempt, int64_t batch_seq, int64_t points,
                                 double at);
  Status put_worker_instance(const std::string& worker_id, const WorkerInstance& w, double at);
  Result<std::map<std::string, WorkerInstance>> worker_instances();
  // All sweeps, or the one with id `only_id`, ordered by id.
  Result<std::vector<SweepCounts>> sweep_counts(const std::optional<int64_t>& only_id);
  Result<std::map<int64_t, std::string>> sweep_names();
  // The eval run already made for (producer, checkpoint, suite), if any.
  Result<std::optional<int64_t>> eval_hook_run(int64_t producer_run_id,
                                               const std::string& checkpoint_hash,
                                               const std::string& suite);
  Status put_eval_hook_run(const EvalHookRun& e, double at);
  // The hook row of an eval run; empty for any other run.
  Result<std::optional<EvalHookRun>> eval_hook_of(int64_t eval_run_id);

  // Adaptive search (search_store.cpp). record_rung writes the decision and
  // its 'rung' audit event (`event_detail`) in one transaction; false when
  // that (run, bracket, rung) was decided before (nothing written).
  Result<bool> record_rung(const RungRow& r, const std::string& actor,
                           const std::string& event_detail);
  // A sweep's rung decisions in the order they were made.
  Result<std::vector<RungRow>> rungs(int64_t sweep_id);
  // Fails (constraint) when the sweep already has that sample index or run.
  Status put_sample(const SampleRow& s);
  // A sweep's samples by index.
  Result<std::vector<SampleRow>> samples(int64_t sweep_id);
  // The first point of `key` at or past `step` of the run's current attempt,
  // or (last_metric) its highest step: {step, value}, NaN for a null value.
  Result<std::optional<std::pair<int64_t, double>>> metric_at_or_after(int64_t run_id,
                                                                       const std::string& key,
                                                                       int64_t step);
  Result<std::optional<std::pair<int64_t, double>>> last_metric(int64_t run_id,
                                                                const std::string& key);

 private:
  Store(sqlite3* db, std::string path, OpenOptions opts);
  // Prepared once per connection, reset after each use. Only for SQL text
  // from a bounded set (no values spliced in).
  Result<sqlite3_stmt*> cached_stmt(std::string_view sql);
  Result<int64_t> intern_key(const std::string& key, bool* added);
  Result<int> current_attempt(int64_t run_id);
  // Metric summary upkeep (metric_summary.cpp). apply_summary: what a batch
  // wrote, per (run, attempt, key). recompute_own: one row's own part from
  // its points. rebuild_prior: the prior part of every resumed attempt >=
  // from_attempt of the run.
  struct SummaryDelta;
  Status apply_summary(const std::vector<SummaryDelta>& deltas);
  Status recompute_own_summary(int64_t run_id, int attempt, int64_t key_id);
  Status rebuild_prior_summary(int64_t run_id, int from_attempt);
  // Rebuilds runs_wide when a migration dropped it.
  Status ensure_wide_view();
  Status note_param_keys(const std::string& params_json);
  void forget_caches();
  // The outermost transaction() call in progress: holds tx_depth_ and rolls
  // back on any exit that did not commit, an exception from the callback
  // included (store.cpp).
  class TxScope;
  // Undoes the open transaction (the savepoint only, under group commit).
  void rollback_tx();

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> stmts_;
  std::string path_;
  OpenOptions opts_;
  int tx_depth_ = 0;
  bool group_commit_ = false;  // see set_group_commit
  bool group_open_ = false;    // a group transaction is open, not yet committed
  std::map<std::string, int64_t> key_ids_;
  std::vector<std::string> param_keys_;
  bool param_keys_loaded_ = false;
  bool wide_dirty_ = false;
};

// Applies pending migrations to the database at path (creating it when
// asked). Returns the resulting version. Refuses a database stamped by a
// newer binary with VersionMismatch naming both versions.
Result<int> migrate(const std::string& path, bool create = true);
// Version of an existing database without changing it (0 = empty).
Result<int> schema_version_of(const std::string& path);

// ---- Read-only SQL for users -------------------------------------------------
using Cell = std::variant<std::monostate, int64_t, double, std::string>;

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
  bool truncated = false;  // more rows than max_rows
};

// Bounds on one user query. A query that runs past time_budget_s, or whose
// cancel flag is set (by another thread), is interrupted and fails with
// InvalidArgument naming the budget (budget_name says where it is set).
struct QueryLimits {
  size_t max_rows = 100000;       // more rows: QueryResult::truncated
  double time_budget_s = 0;       // wall-clock seconds for the whole query; 0 = none
  std::string budget_name;        // e.g. "--query-time-budget", quoted in the error
  const std::atomic<bool>* cancel = nullptr;
};

// Runs one SELECT (or a read-only PRAGMA) on a read-only connection guarded by
// an authorizer. Anything that would write, attach, load code, or smuggle a
// second statement is refused with PermissionDenied before it runs, and so
// are functions that leak process state (fts3_tokenizer) or touch files.
Result<QueryResult> query_readonly(const std::string& db_path, const std::string& sql,
                                   size_t max_rows = 100000);
Result<QueryResult> query_readonly(const std::string& db_path, const std::string& sql,
                                   const QueryLimits& limits);

}  // namespace assay::store
