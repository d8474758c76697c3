// One run as its own SLURM job (`assay worker --executor slurm`): the worker
// on a login node starts `assay slurm exec ... -- COMMAND` in place of the
// run's command. That process submits COMMAND with sbatch, relays the job's
// metric lines (written to a file on the shared filesystem through
// ASSAY_METRICS_FD), stdout and stderr to its own, forwards the worker's
// signals (SIGUSR1: preempt, to the job script; SIGTERM/SIGINT: cancel, scancel),
// follows the job with squeue and exits as the job did. The run script's
// protocol is unchanged: it sees the same ASSAY_* variables.
#pragma once

#include <string>
#include <vector>

#include "assay/status.h"

namespace assay::slurm {

struct RunJobSpec {
  std::string command;       // the run's command, run with /bin/sh -c
  std::string job_dir;       // shared: metrics.jsonl, job.out, job.err
  std::string partition, time, account, qos, constraint;
  std::vector<std::string> sbatch_args;
  int gpus = 0;              // GPUs for the job (sbatch --gpus)
  int cpus = 1;              // --cpus-per-task
  std::string name = "assay-run";
};

// The job script (pure; tested).
Result<std::string> render_run_script(const RunJobSpec& spec);

// Submits and follows the job; returns the exit status to exit with (the
// job's exit code, 128 + signal when it was killed, 1 when it could not be
// submitted). Reads the relay files every `poll_s` seconds.
int exec_run(const RunJobSpec& spec, double poll_s = 0.5);

}  // namespace assay::slurm
