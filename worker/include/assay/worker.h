// The worker daemon: registers with a coordinator, leases runs that fit its
// GPUs and CPU slots, supervises each one as a process group, and delivers
// started/metrics/checkpoints/logs/finished reports through an fsync'd spool,
// so a coordinator restart loses nothing and a resend doubles nothing.
//
// Threads: the calling thread supervises processes; one thread each
// heartbeats, leases, and delivers the spool.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "assay/status.h"
#include "assay/worker_gpu.h"

namespace assay::worker {

struct WorkerConfig {
  std::string coordinator_url;  // "http://host:port"
  std::string token;            // the worker bearer token
  std::string worker_id;        // stable across restarts (default: host name)
  std::string host;
  std::vector<GpuInfo> gpus;
  bool gpus_from_nvml = false;  // refresh free memory/utilization in heartbeats
  int cpus = 1;                 // CPU slots offered
  int max_runs = 0;             // concurrent runs; 0: as many as the coordinator places
  std::map<std::string, std::string> labels;
  std::string work_dir;         // per-run directories: <work_dir>/runs/<run>.<attempt>/
  std::string spool_dir;        // default <work_dir>/spool
  // When a spooled report is durable (see worker_spool.h): fdatasync'd per
  // append (full), or written before it counts (normal: survives the
  // worker's death, not its node's OS crash or power loss).
  bool spool_full_sync = true;
  // Idle exit (a SLURM worker job releasing its allocation): with no run
  // leased, running or undelivered for this many seconds, drain and return.
  // 0: never.
  double idle_exit_s = 0;
  // Executor: when set, a run's command C runs as `<command_prefix> 'C'` (C
  // shell-quoted), e.g. `assay slurm exec --partition P --` to run each run
  // as its own SLURM job (`--executor slurm`); the prefix's process speaks
  // the run protocol for it. Empty: runs run here.
  std::string command_prefix;
  std::chrono::milliseconds kill_grace{10000};     // SIGTERM -> SIGKILL
  // Preemption: SIGUSR1 (and ASSAY_PREEMPT_FILE) -> stop as on a cancel.
  std::chrono::milliseconds preempt_grace{30000};
  std::chrono::milliseconds metrics_flush{250};    // batch interval per run
  double lease_wait_s = 5;      // long-poll length of a lease request
  // Runs leased beyond free resources and held unstarted until a slot frees
  // (the coordinator counts a slot busy until its run's `finished` report
  // lands; holding the next run here keeps the slot from idling meanwhile).
  // Handed back unstarted on drain and preemption. -1: as many as `cpus`.
  int lease_ahead = -1;
};

// Runs until `stop` is set, then drains: no new leases, running runs finish
// and every report is delivered. Setting `abort` as well kills the runs and
// returns at once (their leases expire and the coordinator requeues them).
// Progress lines go to `log`.
Status run_worker(const WorkerConfig& cfg, const std::atomic<bool>& stop,
                  const std::atomic<bool>& abort, std::ostream& log);

// The same, and preemption (e.g. a cluster scheduler's SIGTERM): once
// `preempt` is set the worker leases no more, sends SIGUSR1 to each running
// run's process group and creates its ASSAY_PREEMPT_FILE, waits up to
// cfg.preempt_grace for the runs to save a checkpoint and exit (then stops
// them as on a cancel: SIGTERM, SIGKILL after cfg.kill_grace), reports each
// one that did not exit 0 as `preempted` (the coordinator requeues it to
// resume from its last checkpoint), delivers every report and returns.
// `abort` still kills at once.
Status run_worker(const WorkerConfig& cfg, const std::atomic<bool>& stop,
                  const std::atomic<bool>& abort, const std::atomic<bool>& preempt,
                  std::ostream& log);

// "k=v,k2=v2" -> map; errors name the bad item.
Result<std::map<std::string, std::string>> parse_labels(const std::string& text);

}  // namespace assay::worker
