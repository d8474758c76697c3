// Demand for worker jobs, read from the coordinator's documents
// (GET /v1/runs?state=queued and GET /v1/workers). Pure.
#pragma once

#include <nlohmann/json.hpp>

#include "assay/slurm.h"

namespace assay::slurm {

struct Demand {
  int runs = 0;      // queued runs no alive worker has room for now
  int max_gpus = 0;  // the largest GPU request among them
  int max_cpus = 0;  // the largest CPU request among them
};
// Places the queued runs (in the order given) first-fit onto the alive
// workers' free GPUs and CPU slots; what does not fit is the demand.
Demand unplaceable_runs(const nlohmann::json& queued_runs, const nlohmann::json& workers);

// Runs one job of this shape takes at once for this demand (>= 1).
int runs_per_job(int nodes, int gpus_per_node, int cpus_per_task, const Demand& d);

}  // namespace assay::slurm
