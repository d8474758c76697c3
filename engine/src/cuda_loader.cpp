// Finds and opens the CUDA backend module (engine_cuda_module.h) on first use.
//
// Where it looks, in order:
//   1. $ASSAY_CUDA_MODULE, when set (the one place looked at then);
//   2. the process itself, when an executable linked the module (tests do);
//   3. next to the running executable (/proc/self/exe), where the build puts it;
//   4. <exe dir>/../lib/assay/, an installed layout;
//   5. the build tree that produced this binary (ASSAY_CUDA_MODULE_BUILD_PATH),
//      so test executables in other build folders find it too.
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "assay/engine_cuda_module.h"

namespace assay::engine::cuda {

namespace {

namespace fs = std::filesystem;

using AbiFn = uint64_t (*)();
using EntryFn = Module* (*)();

std::vector<fs::path> candidate_paths() {
  std::vector<fs::path> out;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back(exe.parent_path() / kModuleFile);
    out.push_back(exe.parent_path().parent_path() / "lib" / "assay" / kModuleFile);
  }
#ifdef ASSAY_CUDA_MODULE_BUILD_PATH
  out.emplace_back(ASSAY_CUDA_MODULE_BUILD_PATH);
#endif
  return out;
}

std::string join(const std::vector<fs::path>& paths) {
  std::string s;
  for (const fs::path& p : paths) s += (s.empty() ? "" : ", ") + p.string();
  return s;
}

Status not_found(const std::vector<fs::path>& looked) {
#ifdef ASSAY_CUDA_MODULE_BUILD_PATH
  return Status::FailedPrecondition(
      std::string("the CUDA backend module ") + kModuleFile + " is missing (looked at " + join(looked) +
      "): the default build makes it when nvcc is present (cmake --build build --target assay_cuda); it "
      "must sit next to the assay binary, or set ASSAY_CUDA_MODULE to its path; or use --device cpu");
#else
  return Status::FailedPrecondition(
      std::string("this build has no CUDA support (nvcc was not found when it was built); use --device cpu. "
                  "The CUDA backend is the module ") +
      kModuleFile + " (looked at " + join(looked) +
      "); to build it, install the CUDA toolkit (nvcc in /usr/local/cuda/bin or on PATH) and rebuild");
#endif
}

Result<Module*> from_handle(void* h, const std::string& where) {
  auto abi = reinterpret_cast<AbiFn>(dlsym(h, kModuleAbiSymbol));
  auto entry = reinterpret_cast<EntryFn>(dlsym(h, kModuleEntrySymbol));
  if (!abi || !entry)
    return Status::FailedPrecondition("the CUDA backend module " + where + " does not export " +
                                      kModuleAbiSymbol + " and " + kModuleEntrySymbol +
                                      ": it is not an Assay CUDA module");
  if (abi() != kModuleAbiValue)
    return Status::VersionMismatch("the CUDA backend module " + where + " was built from another version of "
                                   "Assay (interface " + std::to_string(abi()) + ", this binary expects " +
                                   std::to_string(kModuleAbiValue) + "); rebuild it with this binary "
                                   "(cmake --build build --target assay_cuda)");
  Module* m = entry();
  if (!m) return Status::Internal("the CUDA backend module " + where + " returned no entry object");
  return m;
}

Result<Module*> open_path(const fs::path& p) {
  // RTLD_LOCAL: the module's CUDA libraries stay out of the global namespace.
  void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    const std::string why = e ? e : "dlopen failed";
    // A dependency that is not found reads "libX.so.N: cannot open shared object file".
    const bool missing_dep = why.find("cannot open shared object file") != std::string::npos;
    return Status::FailedPrecondition(
        "cannot load the CUDA backend module " + p.string() + ": " + why +
        (missing_dep ? "; it needs the CUDA runtime and cuBLAS libraries (libcudart, libcublas, libcublasLt "
                       "of the CUDA toolkit it was built with) on the library path"
                     : "; it is not a module this binary can load: rebuild it with this binary "
                       "(cmake --build build --target assay_cuda)") +
        "; or use --device cpu");
  }
  return from_handle(h, p.string());  // never closed: models and the Module point into it
}

Result<Module*> load_once() {
  if (const char* env = std::getenv("ASSAY_CUDA_MODULE"); env && *env) {
    std::error_code ec;
    if (!fs::exists(env, ec))
      return Status::FailedPrecondition(std::string("ASSAY_CUDA_MODULE: the CUDA backend module ") + env +
                                        " does not exist; unset it to use the one next to the assay binary");
    return open_path(env);
  }
  if (dlsym(RTLD_DEFAULT, kModuleEntrySymbol)) return from_handle(RTLD_DEFAULT, "linked into this program");
  const std::vector<fs::path> paths = candidate_paths();
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::exists(p, ec)) return open_path(p);
  }
  return not_found(paths);
}

}  // namespace

Result<Module*> load_module() {
  static std::once_flag once;
  static Result<Module*>* loaded = nullptr;  // never destroyed: models may outlive static teardown
  std::call_once(once, [] { loaded = new Result<Module*>(load_once()); });
  return *loaded;
}

}  // namespace assay::engine::cuda
