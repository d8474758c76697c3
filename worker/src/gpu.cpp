// NVML through dlopen. Only the handful of entry points the worker needs are
// declared here, with the C ABI NVML documents (nvmlReturn_t is an int, 0 is
// success; handles are opaque pointers).
#include <dlfcn.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>

#include "assay/worker_gpu.h"

namespace assay::worker {

namespace {

using nvmlReturn_t = int;
using nvmlDevice_t = void*;
struct NvmlMemory {  // nvmlMemory_t: bytes
  unsigned long long total, free, used;
};
struct NvmlUtilization {  // nvmlUtilization_t: percent over the last sample period
  unsigned int gpu, memory;
};
// nvmlProcessInfo_t as the _v2/_v3 entry points fill it; the unversioned one
// fills the first two fields only (nvmlProcessInfo_v1_t).
struct NvmlProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // bytes; all ones when unavailable
  unsigned int gpu_instance_id, compute_instance_id;
};
struct NvmlProcessInfoV1 {
  unsigned int pid;
  unsigned long long used_gpu_memory;
};
constexpr nvmlReturn_t kNvmlInsufficientSize = 7;

constexpr int64_t kMiB = 1024 * 1024;

}  // namespace

struct Nvml::Api {
  void* handle = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*count)(unsigned int*) = nullptr;
  nvmlReturn_t (*by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*uuid)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, NvmlMemory*) = nullptr;
  nvmlReturn_t (*util)(nvmlDevice_t, NvmlUtilization*) = nullptr;
  nvmlReturn_t (*procs)(nvmlDevice_t, unsigned int*, NvmlProcessInfo*) = nullptr;
  nvmlReturn_t (*procs_v1)(nvmlDevice_t, unsigned int*, NvmlProcessInfoV1*) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
};

namespace {

template <class F>
bool bind(void* h, const char* sym, const char* fallback, F* out) {
  void* p = dlsym(h, sym);
  if (!p && fallback) p = dlsym(h, fallback);
  *out = reinterpret_cast<F>(p);
  return p != nullptr;
}

}  // namespace

const char* default_nvml_library() {
  const char* env = std::getenv("ASSAY_NVML_LIBRARY");
  return env && *env ? env : "libnvidia-ml.so.1";
}

std::unique_ptr<Nvml> Nvml::open(std::string* why, const char* lib) {
  if (!lib) lib = default_nvml_library();
  auto api = std::make_unique<Api>();
  api->handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!api->handle) {
    if (why) *why = std::string("NVML not loadable (") + lib + "): " + dlerror();
    return nullptr;
  }
  bool ok = bind(api->handle, "nvmlInit_v2", "nvmlInit", &api->init) &&
            bind(api->handle, "nvmlShutdown", nullptr, &api->shutdown) &&
            bind(api->handle, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount", &api->count) &&
            bind(api->handle, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex",
                 &api->by_index) &&
            bind(api->handle, "nvmlDeviceGetName", nullptr, &api->name) &&
            bind(api->handle, "nvmlDeviceGetUUID", nullptr, &api->uuid) &&
            bind(api->handle, "nvmlDeviceGetMemoryInfo", nullptr, &api->memory);
  // Utilization and error strings are optional extras.
  (void)bind(api->handle, "nvmlDeviceGetUtilizationRates", nullptr, &api->util);
  (void)bind(api->handle, "nvmlErrorString", nullptr, &api->error_string);
  if (!bind(api->handle, "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetComputeRunningProcesses_v2", &api->procs))
    (void)bind(api->handle, "nvmlDeviceGetComputeRunningProcesses", nullptr, &api->procs_v1);
  if (!ok) {
    if (why) *why = std::string(lib) + ": missing NVML entry points";
    dlclose(api->handle);
    return nullptr;
  }
  nvmlReturn_t rc = api->init();
  if (rc != 0) {
    if (why) {
      *why = "nvmlInit failed (" + std::to_string(rc) + ")";
      if (api->error_string) *why += std::string(": ") + api->error_string(rc);
    }
    dlclose(api->handle);
    return nullptr;
  }
  return std::unique_ptr<Nvml>(new Nvml(std::move(api)));
}

Nvml::Nvml(std::unique_ptr<Api> api) : api_(std::move(api)) {}

Nvml::~Nvml() {
  if (api_ && api_->handle) {
    api_->shutdown();
    dlclose(api_->handle);
  }
}

std::vector<GpuInfo> Nvml::query() const {
  std::vector<GpuInfo> out;
  unsigned int n = 0;
  if (api_->count(&n) != 0) return out;
  for (unsigned int i = 0; i < n; ++i) {
    nvmlDevice_t dev = nullptr;
    if (api_->by_index(i, &dev) != 0) continue;
    GpuInfo g;
    g.index = static_cast<int>(i);
    char buf[128] = {0};
    if (api_->name(dev, buf, sizeof buf) == 0) g.name = buf;
    char ubuf[128] = {0};
    if (api_->uuid(dev, ubuf, sizeof ubuf) == 0) g.uuid = ubuf;
    NvmlMemory mem{};
    if (api_->memory(dev, &mem) == 0) {
      g.mem_total_mb = static_cast<int64_t>(mem.total / kMiB);
      g.mem_free_mb = static_cast<int64_t>(mem.free / kMiB);
    }
    NvmlUtilization u{};
    if (api_->util && api_->util(dev, &u) == 0) g.util_pct = static_cast<int>(u.gpu);
    out.push_back(std::move(g));
  }
  return out;
}

bool Nvml::processes(int index, std::vector<GpuProcess>* out) const {
  out->clear();
  nvmlDevice_t dev = nullptr;
  if (index < 0 || api_->by_index(static_cast<unsigned int>(index), &dev) != 0) return false;
  auto mb = [](unsigned long long bytes) {
    return bytes == ~0ULL ? int64_t(-1) : static_cast<int64_t>(bytes / kMiB);
  };
  // The list can grow between the sizing call and the read: retry larger.
  for (unsigned int cap = 64; cap <= 4096; cap *= 4) {
    unsigned int n = cap;
    nvmlReturn_t rc;
    if (api_->procs) {
      std::vector<NvmlProcessInfo> buf(cap);
      rc = api_->procs(dev, &n, buf.data());
      if (rc == 0)
        for (unsigned int i = 0; i < n && i < cap; ++i)
          out->push_back({static_cast<int>(buf[i].pid), mb(buf[i].used_gpu_memory)});
    } else if (api_->procs_v1) {
      std::vector<NvmlProcessInfoV1> buf(cap);
      rc = api_->procs_v1(dev, &n, buf.data());
      if (rc == 0)
        for (unsigned int i = 0; i < n && i < cap; ++i)
          out->push_back({static_cast<int>(buf[i].pid), mb(buf[i].used_gpu_memory)});
    } else {
      return false;
    }
    if (rc == 0) return true;
    if (rc != kNvmlInsufficientSize) return false;
  }
  return false;
}

std::vector<GpuInfo> discover_gpus(std::string* note, const char* lib) {
  std::string why;
  auto nvml = Nvml::open(&why, lib);
  if (!nvml) {
    if (note) *note = why;
    return {};
  }
  auto gpus = nvml->query();
  if (note) *note = "NVML: " + std::to_string(gpus.size()) + " device(s)";
  return gpus;
}

nlohmann::json to_json(const GpuInfo& g) {
  return {{"index", g.index},          {"uuid", g.uuid},
          {"name", g.name},            {"mem_total_mb", g.mem_total_mb},
          {"mem_free_mb", g.mem_free_mb}, {"util_pct", g.util_pct}};
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool parse_int(std::string_view s, int64_t* out) {
  s = trim(s);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "80GB" -> 81920 MB; "24GiB" the same base; "500MB"; bare "40960" is MB.
Result<int64_t> parse_mem_mb(std::string_view s, std::string_view item) {
  s = trim(s);
  size_t d = 0;
  while (d < s.size() && (std::isdigit(static_cast<unsigned char>(s[d])) || s[d] == '.')) ++d;
  std::string num(s.substr(0, d));
  std::string unit;
  for (char c : s.substr(d)) unit += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(num, &used);
    if (used != num.size()) throw std::invalid_argument(num);
  } catch (const std::exception&) {
    return Status::Invalid("--gpus: item '" + std::string(item) +
                           "': expected memory like 80GB or 40960MB");
  }
  double mb;
  if (unit == "GB" || unit == "GIB" || unit == "G") {
    mb = v * 1024;
  } else if (unit.empty() || unit == "MB" || unit == "MIB" || unit == "M") {
    mb = v;
  } else {
    return Status::Invalid("--gpus: item '" + std::string(item) + "': unknown memory unit '" +
                           unit + "', expected GB or MB");
  }
  if (mb <= 0) {
    return Status::Invalid("--gpus: item '" + std::string(item) + "': memory must be > 0");
  }
  return static_cast<int64_t>(mb);
}

GpuInfo fake_gpu(int index, int64_t mem_mb) {
  GpuInfo g;
  g.index = index;
  g.uuid = "fake-" + std::to_string(index);
  g.name = "fake GPU";
  g.mem_total_mb = mem_mb;
  g.mem_free_mb = mem_mb;
  g.util_pct = 0;
  return g;
}

}  // namespace

Result<std::vector<GpuInfo>> parse_gpu_override(std::string_view spec) {
  spec = trim(spec);
  std::vector<GpuInfo> out;
  int64_t n = 0;
  if (parse_int(spec, &n)) {
    if (n < 0 || n > 64) {
      return Status::Invalid("--gpus: expected a count 0..64, got " + std::string(spec));
    }
    for (int i = 0; i < n; ++i) out.push_back(fake_gpu(i, 80 * 1024));
    return out;
  }
  std::set<int> seen;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string_view item = trim(spec.substr(pos, comma == std::string_view::npos
                                                      ? std::string_view::npos
                                                      : comma - pos));
    size_t colon = item.find(':');
    int64_t idx = 0;
    if (colon == std::string_view::npos || !parse_int(item.substr(0, colon), &idx) || idx < 0 ||
        idx > 63) {
      return Status::Invalid("--gpus: item '" + std::string(item) +
                             "': expected INDEX:MEMORY like 0:80GB, or a count");
    }
    if (!seen.insert(static_cast<int>(idx)).second) {
      return Status::Invalid("--gpus: GPU index " + std::to_string(idx) + " listed twice");
    }
    ASSAY_ASSIGN_OR_RETURN(int64_t mb, parse_mem_mb(item.substr(colon + 1), item));
    out.push_back(fake_gpu(static_cast<int>(idx), mb));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace assay::worker
