// Assay on SLURM: worker jobs (`assay slurm up|status|down|autoscale`) and
// what SLURM says about them. The script rendering, the parsers of squeue,
// scontrol, sacct and jobcomp/filetxt output, and the autoscaling decision
// are pure functions; the rest runs SLURM's own commands (sbatch, squeue,
// scancel, scontrol, sacct), found on PATH with SLURM_CONF from the
// environment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::slurm {

// Every worker job is named "assay-worker:<tag>"; status/down/autoscale
// recognise their jobs by it.
inline constexpr const char* kJobNamePrefix = "assay-worker:";

struct WorkerJobSpec {
  std::string assay_exe;     // the assay binary, as the nodes see it
  std::string coordinator;   // coordinator URL
  std::string token_file;    // worker token file (never the token itself)
  std::string partition;
  int nodes = 1;             // one worker per node
  int gpus_per_node = 0;
  int cpus_per_task = 1;     // CPU slots each worker offers
  std::string time;          // sbatch --time, e.g. "04:00:00"
  std::string account, qos, constraint;
  std::vector<std::string> sbatch_args;  // extra "#SBATCH" options, verbatim
  int grace_s = 120;         // SIGTERM this long before the time limit
  double idle_exit_s = 0;    // worker exits after this long idle (0: never)
  std::string work_dir;      // shared: each worker uses <work_dir>/<worker id>
  std::string log_dir;       // job output files: <log_dir>/assay-worker-<job>.out
  std::string tag = "default";
};

// Checks the spec and returns the batch script. Options SLURM parses
// (partition, time, ...) must not hold whitespace or quotes; paths are
// shell-quoted.
Result<std::string> render_worker_script(const WorkerJobSpec& spec);

// The worker's --preempt-grace inside a job with SLURM grace `grace_s`: the
// runs get most of it, the rest is left for delivering their reports.
double worker_preempt_grace(int grace_s);

std::string shell_quote(const std::string& s);

// One line of `squeue -h -o kSqueueFormat`.
inline constexpr const char* kSqueueFormat = "%i|%j|%T|%r|%D|%C|%b|%M|%l|%N";
struct QueuedJob {
  std::string id, name, state, reason;
  int nodes = 0, cpus = 0;
  std::string gres;          // tres-per-node, e.g. "gres:gpu:2" ("N/A": none)
  std::string time_used, time_limit, node_list;
  bool is_worker_job() const { return name.rfind(kJobNamePrefix, 0) == 0; }
  std::string tag() const { return is_worker_job() ? name.substr(13) : ""; }
};
Result<std::vector<QueuedJob>> parse_squeue(const std::string& out);

// A finished (or running) job as scontrol, sacct or the jobcomp log tells it.
struct JobRecord {
  std::string id, name, state, reason, exit_code, node_list;
  std::string start_time, end_time;
};
// `KEY=VALUE KEY=VALUE ...` (scontrol show job -o, jobcomp/filetxt lines);
// values run to the next " KEY=" (scontrol's may hold spaces).
std::map<std::string, std::string> parse_key_values(const std::string& line);
// `scontrol show job -o ID` (one line per job).
std::vector<JobRecord> parse_scontrol_jobs(const std::string& out);
// The jobcomp/filetxt log: one line per finished job; later lines win.
std::vector<JobRecord> parse_jobcomp(const std::string& log);
// `sacct -n -P -X -o JobID,JobName,State,ExitCode,NodeList,Start,End`.
// SLURM 22.05 may record a job that has just started from its first step,
// with JobName "allocation", until slurmctld sends the job's own record
// (seconds later): sacct's JobName can be that meanwhile; its State is right.
inline constexpr const char* kSacctFields = "JobID,JobName,State,ExitCode,NodeList,Start,End";
std::vector<JobRecord> parse_sacct(const std::string& out);

// What a job's end means for the runs that were on it: "" when the job ended
// on its own (COMPLETED) or has not ended, else a failure reason word
// (`slurm_oom`, `slurm_timeout`, `slurm_node_fail`, `slurm_preempted`,
// `slurm_cancelled`, `slurm_failed`, `slurm_boot_fail`, `slurm_deadline`).
std::string triage_reason(const std::string& state);
// The job id inside a worker id "slurm-<job>-<node>-<procid>" ("" if none).
std::string job_of_worker(const std::string& worker_id);

// Autoscaling. Demand is counted in workers of the configured shape.
struct ScaleInput {
  int unplaceable_runs = 0;   // queued runs no registered worker can take now
  int gpus_per_run_max = 0;   // the largest GPU request among them
  int pending_jobs = 0;       // Assay worker jobs waiting in SLURM
  int starting_workers = 0;   // running jobs whose workers have not registered yet
  int running_jobs = 0;       // all running Assay worker jobs
  int max_jobs = 1;           // cap on pending + running jobs
  int runs_per_job = 1;       // runs one job's workers take at once (nodes x slots)
};
// Jobs to submit now. Invariants (tested): never negative; pending + running
// + result <= max_jobs; 0 when nothing is unplaceable; jobs already on their
// way (pending, or running without a registered worker) count as capacity,
// so repeated calls with no change submit nothing more.
int jobs_to_submit(const ScaleInput& in);

// SLURM commands.
struct Cmd {
  int code = -1;
  std::string out, err;
};
// Runs argv (no shell) with `input` on stdin.
Cmd run(const std::vector<std::string>& argv, const std::string& input = "");
// sbatch --parsable with the script on stdin; returns the job id.
Result<std::string> submit(const std::string& script);
// The caller's Assay worker jobs (all tags when `tag` is empty).
Result<std::vector<QueuedJob>> list_worker_jobs(const std::string& tag);
Status cancel(const std::vector<std::string>& job_ids);
// The job as SLURM knows it: sacct when accounting answers with an end
// state, else scontrol (jobs stay there MinJobAge seconds), else the jobcomp
// log named in `scontrol show config` (JobCompLoc), else sacct's state of a
// job not ended. sacct lags the controller (slurmctld sends job ends to
// slurmdbd when it can), so its RUNNING does not hide an end the others know.
// *source says which answered.
Result<JobRecord> job_record(const std::string& job_id, std::string* source);

}  // namespace assay::slurm
