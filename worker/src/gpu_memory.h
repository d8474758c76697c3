// Peak GPU memory per run, sampled through NVML while the run lives.
//
// Two measures, because NVML cannot always see a run's processes: inside a
// container the driver reports host pids, which match nothing here.
//   process: memory NVML attributes to processes of the run's session (the
//            run and everything it forked), summed over the run's GPUs;
//   device:  used memory of the run's GPUs (total - free). The scheduler never
//            shares a GPU between runs, so this is the run's usage plus the
//            driver's own and any process outside Assay.
// The report prefers `process` whenever at least one sample matched.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "assay/worker_gpu.h"

namespace assay::worker {

struct GpuPeak {
  int64_t process_mb = -1;  // -1: never measured
  int64_t device_mb = -1;
  // (peak MiB, "process" | "device"), or nothing when never measured.
  std::optional<std::pair<int64_t, std::string>> report() const;
};

struct TrackedRun {
  pid_t sid = -1;                      // the run's session id
  const std::vector<int>* gpus = nullptr;  // device indices it holds
  GpuPeak* peak = nullptr;             // updated in place
};

// One sample of every tracked run that holds a GPU.
void sample_gpu_memory(const Nvml& nvml, const std::vector<TrackedRun>& runs);

}  // namespace assay::worker
