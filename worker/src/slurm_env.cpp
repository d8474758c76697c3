#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "assay/worker_slurm.h"

extern char** environ;

namespace assay::worker {

namespace {

std::string get(const EnvMap& env, const char* k) {
  auto it = env.find(k);
  return it == env.end() ? "" : it->second;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t c = s.find(',', pos);
    std::string item = s.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    if (!item.empty()) out.push_back(item);
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

bool to_int(const std::string& s, int* v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

EnvMap current_env() {
  EnvMap env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

bool in_slurm_job(const EnvMap& env) { return !get(env, "SLURM_JOB_ID").empty(); }

std::string slurm_worker_id(const EnvMap& env) {
  if (!in_slurm_job(env)) return "";
  std::string node = get(env, "SLURMD_NODENAME");
  if (node.empty()) {
    char buf[256] = {0};
    node = gethostname(buf, sizeof buf - 1) == 0 ? buf : "node";
  }
  std::string proc = get(env, "SLURM_PROCID");
  return "slurm-" + get(env, "SLURM_JOB_ID") + "-" + node + "-" + (proc.empty() ? "0" : proc);
}

std::vector<GpuInfo> slurm_allocated_gpus(const std::vector<GpuInfo>& found, const EnvMap& env,
                                          std::string* note) {
  const char* source = nullptr;
  std::string list;
  for (const char* k : {"SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"}) {
    if (env.count(k)) {
      source = k;
      list = get(env, k);
      break;
    }
  }
  auto say = [&](const std::string& s) {
    if (note) *note = s;
  };
  if (!source) {
    say("SLURM job without GPUs (no SLURM_STEP_GPUS, SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES): "
        "none used");
    return {};
  }
  auto names = split_list(list);
  std::vector<GpuInfo> out;
  std::set<std::string> wanted(names.begin(), names.end());
  for (const auto& g : found) {
    if (wanted.count(std::to_string(g.index)) || (!g.uuid.empty() && wanted.count(g.uuid)))
      out.push_back(g);
  }
  if (out.size() < names.size() && found.size() == names.size()) {
    // Device cgroups: NVML sees exactly the allocated devices, renumbered.
    out = found;
  }
  if (out.size() > names.size()) out.resize(names.size());
  say(std::string(source) + "=" + list + ": " + std::to_string(out.size()) + " of " +
      std::to_string(found.size()) + " GPU(s) NVML reports");
  return out;
}

int slurm_allocated_cpus(const EnvMap& env) {
  int v = 0;
  if (to_int(get(env, "SLURM_CPUS_PER_TASK"), &v) && v > 0) return v;
  // SLURM_CPUS_ON_NODE may be "4" or, on heterogeneous lists, "4(x2)".
  std::string on = get(env, "SLURM_CPUS_ON_NODE");
  on = on.substr(0, on.find('('));
  if (to_int(on, &v) && v > 0) return v;
  return -1;
}

std::string expand_worker_dir(const std::string& dir, const std::string& worker_id) {
  std::string out = dir;
  for (size_t p = out.find("{id}"); p != std::string::npos; p = out.find("{id}", p + worker_id.size()))
    out.replace(p, 4, worker_id);
  return out;
}

}  // namespace assay::worker
