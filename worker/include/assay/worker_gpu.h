// GPU inventory of a worker: NVML discovery at run time, or a fixed list given
// on the command line (the seam tests and laptops use).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "assay/status.h"

namespace assay::worker {

struct GpuInfo {
  int index = 0;            // CUDA/NVML device index, as CUDA_VISIBLE_DEVICES names it
  std::string uuid;         // "GPU-..." from NVML; "fake-<index>" for a given inventory
  std::string name;
  int64_t mem_total_mb = 0;
  int64_t mem_free_mb = 0;
  int util_pct = -1;        // 0..100; -1 when unknown
};

nlohmann::json to_json(const GpuInfo& g);

// NVML loaded with dlopen; the driver is never a link-time dependency.
// A machine without the library or without a working driver has no GPUs:
// open() then returns null and `why` says what was missing.
// A process holding memory on a GPU, as NVML reports it.
struct GpuProcess {
  int pid = 0;               // as the driver sees it (the host's pid namespace)
  int64_t used_mb = -1;      // -1 when NVML does not know
};

// The NVML library to load: $ASSAY_NVML_LIBRARY when set (a driver installed
// off the loader path), else "libnvidia-ml.so.1".
const char* default_nvml_library();

class Nvml {
 public:
  // lib == nullptr: default_nvml_library().
  static std::unique_ptr<Nvml> open(std::string* why, const char* lib = nullptr);
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  // Current state of every device (free memory and utilization change).
  std::vector<GpuInfo> query() const;
  // Compute processes on device `index`; false when NVML cannot list them
  // (entry point missing, or an error).
  bool processes(int index, std::vector<GpuProcess>* out) const;

 private:
  struct Api;
  explicit Nvml(std::unique_ptr<Api> api);
  std::unique_ptr<Api> api_;
};

// Devices NVML reports, or none (with `note` saying why) when it is absent.
std::vector<GpuInfo> discover_gpus(std::string* note, const char* lib = nullptr);

// Parses --gpus: "N" (N devices of 80 GB each) or "0:80GB,1:24GB" (index:memory,
// memory in GB, GiB, MB or MiB; a bare number is MB). "0" means no GPUs.
Result<std::vector<GpuInfo>> parse_gpu_override(std::string_view spec);

}  // namespace assay::worker
