// What the coordinator's queue asks of the cluster: queued runs that no
// registered worker can take now, by resources.
#include <algorithm>

#include "assay/slurm_autoscale.h"

namespace assay::slurm {

namespace {

int int_or(const nlohmann::json& j, const char* k, int dflt) {
  auto it = j.find(k);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : dflt;
}

}  // namespace

Demand unplaceable_runs(const nlohmann::json& queued_runs, const nlohmann::json& workers) {
  // Free capacity per alive worker: GPUs without a run, CPU slots unused.
  struct Free {
    int gpus = 0, cpus = 0;
  };
  std::vector<Free> free;
  if (workers.is_array()) {
    for (const auto& w : workers) {
      if (!w.is_object() || !w.value("alive", false)) continue;
      Free f;
      f.cpus = std::max(0, int_or(w, "cpus", 0) - int_or(w, "cpus_used", 0));
      if (auto g = w.find("gpus"); g != w.end() && g->is_array())
        for (const auto& gpu : *g)
          if (gpu.is_object() && (!gpu.contains("run_id") || gpu["run_id"].is_null())) ++f.gpus;
      free.push_back(f);
    }
  }
  Demand d;
  if (!queued_runs.is_array()) return d;
  for (const auto& r : queued_runs) {
    if (!r.is_object()) continue;
    const auto res = r.value("resources", nlohmann::json::object());
    const int gpus = res.is_object() ? int_or(res, "gpus", 0) : 0;
    const int cpus = res.is_object() ? std::max(1, int_or(res, "cpus", 1)) : 1;
    // First fit, as the scheduler would: GPU runs need whole free GPUs on
    // one worker, CPU runs CPU slots.
    auto fit = std::find_if(free.begin(), free.end(), [&](const Free& f) {
      return gpus > 0 ? f.gpus >= gpus : f.cpus >= cpus;
    });
    if (fit != free.end()) {
      if (gpus > 0) fit->gpus -= gpus;
      else fit->cpus -= cpus;
      continue;
    }
    ++d.runs;
    d.max_gpus = std::max(d.max_gpus, gpus);
    d.max_cpus = std::max(d.max_cpus, cpus);
  }
  return d;
}

int runs_per_job(int nodes, int gpus_per_node, int cpus_per_task, const Demand& d) {
  const int per_node = gpus_per_node > 0 && d.max_gpus > 0
                           ? gpus_per_node / d.max_gpus
                           : cpus_per_task / std::max(1, d.max_cpus);
  return std::max(1, nodes * std::max(1, per_node));
}

}  // namespace assay::slurm
