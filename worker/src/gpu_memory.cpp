#include "gpu_memory.h"

#include <algorithm>
#include <map>
#include <set>

#include "leftovers.h"

namespace assay::worker {

std::optional<std::pair<int64_t, std::string>> GpuPeak::report() const {
  if (process_mb >= 0) return std::make_pair(process_mb, std::string("process"));
  if (device_mb >= 0) return std::make_pair(device_mb, std::string("device"));
  return std::nullopt;
}

void sample_gpu_memory(const Nvml& nvml, const std::vector<TrackedRun>& runs) {
  std::set<int> wanted;
  for (const auto& r : runs)
    if (r.gpus) wanted.insert(r.gpus->begin(), r.gpus->end());
  if (wanted.empty()) return;
  std::map<int, int64_t> used_mb;  // device index -> used MiB
  for (const auto& g : nvml.query())
    if (wanted.count(g.index) && g.mem_total_mb > 0 && g.mem_free_mb >= 0)
      used_mb[g.index] = g.mem_total_mb - g.mem_free_mb;
  std::map<int, std::vector<GpuProcess>> procs;  // absent: NVML cannot list them
  for (int index : wanted) {
    std::vector<GpuProcess> p;
    if (nvml.processes(index, &p)) procs[index] = std::move(p);
  }
  std::map<int, pid_t> sessions;  // pid -> session, looked up once per sample
  auto session = [&](int pid) {
    auto it = sessions.find(pid);
    if (it == sessions.end()) it = sessions.emplace(pid, session_of(pid)).first;
    return it->second;
  };
  for (const auto& r : runs) {
    if (!r.gpus || r.gpus->empty() || !r.peak) continue;
    int64_t proc_sum = 0, dev_sum = 0;
    bool matched = false, dev_known = true;
    for (int g : *r.gpus) {
      auto u = used_mb.find(g);
      if (u == used_mb.end()) dev_known = false; else dev_sum += u->second;
      auto p = procs.find(g);
      if (p == procs.end()) continue;
      for (const auto& x : p->second) {
        if (x.used_mb < 0 || session(x.pid) != r.sid) continue;
        proc_sum += x.used_mb;
        matched = true;
      }
    }
    if (matched) r.peak->process_mb = std::max(r.peak->process_mb, proc_sum);
    if (dev_known) r.peak->device_mb = std::max(r.peak->device_mb, dev_sum);
  }
}

}  // namespace assay::worker
