// In-memory placement state: the queue, the workers' GPUs and CPU slots, and
// which run holds what. Pure data structure (no I/O, no clock); the
// coordinator persists every change it makes here in SQLite and rebuilds this
// state from the database on restart.
//
// Invariants:
//   - a GPU is held by at most one run (GpuInfo::held_by);
//   - a worker's cpus_used is the sum of its holders' cpus and never exceeds cpus;
//   - a run is either queued here, or holds an Assignment, or is unknown.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::coordinator {

struct GpuInfo {
  int index = 0;               // the worker's own device index
  std::string uuid, name;
  int64_t mem_total_mb = 0;
  int64_t mem_free_mb = -1;    // last reported; -1 = unknown (use total)
  int util_pct = 0;
  int64_t held_by = 0;         // run id, 0 when free
};

struct WorkerInfo {
  std::string id, host, instance;
  int cpus = 0;                // CPU slots offered
  int max_runs = 0;            // 0 = no cap beyond resources
  std::map<std::string, std::string> labels;
  std::vector<GpuInfo> gpus;
  int cpus_used = 0;           // maintained by Scheduler
  double last_heartbeat = 0;   // unix seconds
};

struct RunNeeds {
  int64_t run_id = 0;
  int attempt = 1;             // carried into the Assignment
  int priority = 0;
  int gpus = 0;
  int64_t gpu_mem_mb = 0;      // free memory needed on each GPU
  int cpus = 1;
  std::map<std::string, std::string> labels;  // required worker labels
};

struct Assignment {
  int64_t run_id = 0;
  int attempt = 1;
  std::string worker_id;
  std::vector<int> gpus;       // worker GPU indices
  int cpus = 0;
  double lease_expires_at = 0; // unix seconds
};

// A reserved label every worker carries with its own id as value: a run
// that requires {"assay.worker": "node1"} is placed on node1 only.
inline constexpr const char* kWorkerIdLabel = "assay.worker";

class Scheduler {
 public:
  // Adds or updates a worker's capacity. Holds on existing GPU indices survive;
  // a GPU that disappeared while held stays listed until released.
  void upsert_worker(WorkerInfo w);
  WorkerInfo* worker(const std::string& id);
  const std::map<std::string, WorkerInfo>& workers() const { return workers_; }

  void enqueue(const RunNeeds& r);
  bool dequeue(int64_t run_id);  // false when not queued
  bool is_queued(int64_t run_id) const { return queued_.count(run_id) != 0; }
  size_t queued_count() const { return queued_.size(); }

  // Whether `r` fits on `w` now, and which GPUs it would get.
  static bool fits(const WorkerInfo& w, size_t runs_on_worker, const RunNeeds& r,
                   std::vector<int>* gpus_out);

  // Places up to max_runs queued runs on the worker, highest priority first,
  // then lowest run id (FIFO). A run that does not fit is skipped, so smaller
  // runs behind it may backfill. Placed runs leave the queue and hold their
  // resources with the given lease deadline.
  std::vector<Assignment> lease(const std::string& worker_id, int max_runs,
                                double lease_expires_at);

  // Restores a hold (coordinator restart). Fails when the worker is unknown
  // or a GPU is missing or already held.
  Status hold(const Assignment& a);
  // Frees a run's resources; no-op when it holds none.
  void release(int64_t run_id);
  const Assignment* assignment(int64_t run_id) const;
  std::vector<int64_t> runs_of(const std::string& worker_id) const;
  const std::map<int64_t, Assignment>& assignments() const { return held_; }

  // Extends every lease held on the worker to `until`.
  void renew(const std::string& worker_id, double until);
  void renew_all(double until);
  // Runs whose lease deadline is before `now` (they stay held until released).
  std::vector<int64_t> expired(double now) const;

 private:
  std::map<std::string, WorkerInfo> workers_;
  std::set<std::pair<int, int64_t>> order_;  // (-priority, run id)
  std::map<int64_t, RunNeeds> queued_;
  size_t queued_cpuless_ = 0;  // queued runs with cpus <= 0 (they fit a worker with no free CPU)
  std::map<int64_t, Assignment> held_;
  std::map<std::string, std::set<int64_t>> by_worker_;
};

}  // namespace assay::coordinator
