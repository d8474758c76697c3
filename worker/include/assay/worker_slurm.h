// A worker inside a SLURM job: its id from the job, and no more GPUs or CPUs
// than the job was given. Pure functions over the environment, so tests
// pass their own.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "assay/worker_gpu.h"

namespace assay::worker {

using EnvMap = std::map<std::string, std::string>;

// The process's environment as a map.
EnvMap current_env();

// True inside a SLURM job (SLURM_JOB_ID set).
bool in_slurm_job(const EnvMap& env);

// "slurm-<SLURM_JOB_ID>-<SLURMD_NODENAME>-<SLURM_PROCID>", or "" outside a job.
// The same after a requeue (same job id), so the worker finds its spool.
std::string slurm_worker_id(const EnvMap& env);

// The GPUs of `found` (NVML's view of the node) that the job may use:
// SLURM_STEP_GPUS, else SLURM_JOB_GPUS, else CUDA_VISIBLE_DEVICES (indices or
// GPU UUIDs). Inside a job that names none, no GPUs. When the indices do not
// match NVML's (device cgroups renumber them) and the counts agree, NVML's
// list stands. Never more devices than the allocation names. `note` says
// what was used.
std::vector<GpuInfo> slurm_allocated_gpus(const std::vector<GpuInfo>& found, const EnvMap& env,
                                          std::string* note);

// CPU slots the job gives this task: SLURM_CPUS_PER_TASK, else
// SLURM_CPUS_ON_NODE; -1 when neither is set.
int slurm_allocated_cpus(const EnvMap& env);

// "{id}" in a --work-dir becomes the worker id (one shared root, one
// directory per worker: its spool and runs are its own).
std::string expand_worker_dir(const std::string& dir, const std::string& worker_id);

}  // namespace assay::worker
