// Device strings, device selection and the device queries, which open the
// CUDA backend module only when they need it (engine_cuda_module.h).
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "assay/engine_cuda.h"
#include "assay/engine_cuda_module.h"

namespace assay::engine::cuda {

namespace fs = std::filesystem;

std::string Device::str() const { return is_cuda() ? "cuda:" + std::to_string(index) : "cpu"; }

Result<Device> parse_device(std::string_view s) {
  const auto bad = [&] {
    return Status::Invalid("device: expected cpu, cuda or cuda:N (N >= 0), got '" + std::string(s) + "'");
  };
  if (s == "cpu") return Device{};
  if (s == "cuda") return Device{Device::Kind::kCuda, 0};
  if (s.substr(0, 5) != "cuda:" || s.size() == 5 || s.size() > 9) return bad();
  int n = -1;
  const char* b = s.data() + 5;
  const char* e = s.data() + s.size();
  const auto r = std::from_chars(b, e, n);
  if (r.ec != std::errc() || r.ptr != e || n < 0) return bad();
  return Device{Device::Kind::kCuda, n};
}

Result<Device> resolve_device(std::string_view s) {
  if (s.empty() || s == "auto") {
    // Without a GPU the module is not even opened: a CPU run never maps CUDA.
    if (!gpu_may_be_present() || !built_with_cuda()) return Device{};
    auto n = cuda_device_count();
    return (n.ok() && *n > 0) ? Device{Device::Kind::kCuda, 0} : Device{};
  }
  ASSAY_ASSIGN_OR_RETURN(Device d, parse_device(s));
  if (!d.is_cuda()) return d;
  ASSAY_ASSIGN_OR_RETURN(int n, cuda_device_count());
  if (n == 0)
    return Status::FailedPrecondition("device " + std::string(s) +
                                      ": no CUDA device is visible (cudaGetDeviceCount returned 0); use --device cpu");
  if (d.index >= n)
    return Status::Invalid("device " + std::string(s) + ": only " + std::to_string(n) +
                           " CUDA device(s) visible (ordinals 0.." + std::to_string(n - 1) + ")");
  return d;
}

bool gpu_may_be_present() {
  // CUDA_VISIBLE_DEVICES="" hides every GPU (the worker sets it so for CPU runs).
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES"); v && *v == '\0') return false;
  std::error_code ec;
  for (const char* node : {"/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/proc/driver/nvidia/gpus"})
    if (fs::exists(node, ec)) return true;
  // The driver may create its device nodes on first use: an NVIDIA display or
  // 3D controller on the PCI bus (vendor 0x10de, class 0x03xxxx) counts too.
  for (fs::directory_iterator it("/sys/bus/pci/devices", ec), end; !ec && it != end; it.increment(ec)) {
    std::ifstream vendor(it->path() / "vendor"), cls(it->path() / "class");
    std::string v, c;
    if ((vendor >> v) && (cls >> c) && v == "0x10de" && c.rfind("0x03", 0) == 0) return true;
  }
  return false;
}

// The device queries go to the module, opened on first use (cuda_loader.cpp).
bool built_with_cuda() { return load_module().ok(); }

Result<int> cuda_device_count() {
  ASSAY_ASSIGN_OR_RETURN(Module * m, load_module());
  return m->device_count();
}

Result<std::string> device_name(int index) {
  ASSAY_ASSIGN_OR_RETURN(Module * m, load_module());
  return m->device_name(index);
}

}  // namespace assay::engine::cuda
