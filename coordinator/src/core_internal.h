// Private to the coordinator library: the Coordinator's state and helpers
// shared by the handler files (core.cpp, handlers_worker.cpp, handlers_user.cpp).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/coordinator.h"
#include "assay/scheduler.h"
#include "assay/store.h"
#include "metric_batch.h"

namespace assay::coordinator {

using Json = nlohmann::json;

// ---- HTTP helpers (http_util.cpp) -------------------------------------------

struct Target {
  std::string path;
  std::vector<std::string> segments;          // path split on '/', empty parts dropped
  std::map<std::string, std::string> query;   // percent-decoded
  std::vector<std::pair<std::string, std::string>> query_list;  // in order
};
Result<Target> parse_target(const std::string& target);
std::string percent_decode(const std::string& s, bool plus_as_space);

// Serialises without throwing on invalid UTF-8 (replaced by U+FFFD).
std::string dump_json(const Json& j);
Response json_response(int status, const Json& body);
Response error_response(int status, const std::string& code, const std::string& message);
// Maps a Status to an HTTP error: invalid_argument->400 bad_request,
// not_found->404, already_exists/failed_precondition->409, else 500.
Response status_response(const Status& st);

// Typed field access that never throws; errors name the field and what was found.
Result<int64_t> get_int(const Json& obj, const char* key, std::optional<int64_t> dflt = {});
Result<double> get_number(const Json& obj, const char* key, std::optional<double> dflt = {});
Result<std::string> get_string(const Json& obj, const char* key,
                               std::optional<std::string> dflt = {});
Result<bool> get_bool(const Json& obj, const char* key, std::optional<bool> dflt = {});
std::string describe(const Json& v);  // short rendering of a value for errors
Result<int64_t> parse_int(const std::string& s, const std::string& what);
Result<double> parse_double(const std::string& s, const std::string& what);

// ---- The state ----------------------------------------------------------------

enum class Role { kNone, kUser, kWorker };

struct Coordinator::Impl {
  Options opts;
  // The results database; the coordinator's own tables too (run_placement,
  // cancel requests, metric batches, eval hooks) through its API.
  std::unique_ptr<store::Store> db;
  Scheduler sched;
  std::map<int64_t, std::string> sweep_names;
  std::set<int64_t> cancel_requested;
  // When each held run was handed out (or first seen missing from its
  // worker's heartbeat after a restart): a run the worker has not listed as
  // active for a whole lease ttl since then was never received (a lost lease
  // reply) and is requeued. Cleared when the lease ends.
  std::map<int64_t, double> lease_granted_at;
  // When each worker's GPUs were last written to gpu_samples.
  std::map<std::string, double> gpu_sampled_at;

  double now() const;
  double ttl() const { return opts.lease_ttl_s; }

  Status reload();
  // Drops the in-memory state and reloads it (after a failed group commit).
  Status rebuild();
  Response route(const Request& req);

  // Lease lost (expiry, worker restart): requeue with attempt + 1, or fail
  // lost_worker when attempts are used up (cancelled when a cancel was pending).
  Status lose_lease(int64_t run_id, const std::string& why);
  void requeue_unreceived(const std::string& worker_id,
                          const std::vector<std::pair<int64_t, int64_t>>& active, double t);
  void expire_leases();

  // A worker's GPUs as stored in workers.gpus_json.
  static Json gpus_json(const WorkerInfo& w);
  // Appends the worker's GPU state to gpu_samples, at most every
  // kGpuSampleEvery seconds per worker (heartbeats come every few seconds).
  Status sample_gpus(const WorkerInfo& w, double t);
  static constexpr double kGpuSampleEvery = 10.0;

  // Helpers shared by handlers.
  Json run_json(const store::Run& r);
  RunNeeds needs_of(const store::Run& r);
  std::string log_path(int64_t run_id, int attempt, const std::string& stream) const;
  std::string log_tail(int64_t run_id, int attempt, size_t max_bytes) const;
  // Checks a worker report against the run's current owner and attempt.
  // Returns the run, or a 404/409 response in *err.
  std::optional<store::Run> worker_run(int64_t run_id, const std::string& worker_id,
                                       int64_t attempt, bool allow_terminal, Response* err);
  Status cancel_run(const store::Run& r, const std::string& actor, bool* pending);

  // Eval hooks (eval_hooks.cpp). Each runs inside the caller's transaction
  // and appends the ids of eval runs it created to *created; the caller
  // enqueues them (enqueue_runs) once the transaction has committed.
  // A checkpoint artifact was recorded for `producer` (also when re-sent).
  Status on_checkpoint(const store::Run& producer, int64_t artifact_id,
                       std::vector<int64_t>* created);
  // `r` has just succeeded: final-checkpoint hooks, and for an eval run the
  // copy of its metrics into eval_results.
  Status on_succeeded(const store::Run& r, std::vector<int64_t>* created);
  // Metrics arrived for `r`; a succeeded eval run re-copies its results.
  Status on_metrics(const store::Run& r);
  void enqueue_runs(const std::vector<int64_t>& ids);

  // Worker endpoints (handlers_worker.cpp).
  Response h_register(const Json& body);
  Response h_heartbeat(const Json& body);
  Response h_lease(const Json& body, bool wait_expired);
  Response h_started(int64_t run_id, const Json& body);
  Response h_finished(int64_t run_id, const Json& body);
  Response h_metrics(int64_t run_id, const Json& body);
  Response h_metrics_batch(int64_t run_id, MetricBatch b);
  Response too_many_points(size_t n) const;
  Response h_log_chunk(int64_t run_id, const Target& t, const std::string& body);
  Response h_artifact(int64_t run_id, const Json& body);
  Response h_event(int64_t run_id, const Json& body);

  // User endpoints (handlers_user.cpp).
  Response h_submit_sweep(const Json& body);
  Response h_submit_run(const Json& body);
  Response h_list_sweeps();
  Response h_get_sweep(const std::string& name);
  Response h_cancel_sweep(const std::string& name);
  Response h_list_runs(const Target& t);
  Response h_get_run(int64_t run_id);
  Response h_cancel(int64_t run_id);
  Response h_retry(int64_t run_id);
  Response h_get_logs(int64_t run_id, const Target& t, bool wait_expired);
  Response h_get_metrics(int64_t run_id, const Target& t);
  Response h_workers();
  // Runs the SQL inline, or (defer) returns it as Response::deferred.
  Response h_query(const Json& body, bool defer);
};

// POST /v1/slurm/jobs/{job} (handlers_slurm.cpp).
Response slurm_job_ended(Coordinator::Impl& c, const std::string& job, const Json& body);

}  // namespace assay::coordinator
