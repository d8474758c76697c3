// The CUDA backend is a module opened on demand (engine_cuda_module.h):
// CPU-only commands never map CUDA libraries, --device cuda loads the module,
// and a missing or foreign module is a clear error, not a crash. Through the
// real binary, with the dynamic loader's own trace (LD_DEBUG=files) as the
// witness of what was mapped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "assay/engine_cuda.h"
#include "support/run_cmd.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(ASSAY_BINARY_DIR) / "test_tmp" / "cuda_module" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A tiny pretrain config and its text data in d.
void write_tiny_run(const fs::path& d) {
  std::ofstream(d / "data.txt") << std::string(400, 'a') << "the quick brown fox jumps over the lazy dog\n";
  std::ofstream(d / "cfg.json") << R"({"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32},
    "data": {"train": ")" << (d / "data.txt").string()
                                << R"("}, "steps": 2, "seq_len": 16, "batch_size": 2, "log_every": 1})";
}

std::string train_args(const fs::path& d, const std::string& device) {
  return " train pretrain --config " + (d / "cfg.json").string() + " --out-dir " +
         (d / ("out-" + device)).string() + " --device " + device;
}

struct Traced {
  int rc = -1;
  std::string out;    // stdout and stderr
  std::string trace;  // every LD_DEBUG=files line of the process
};

// Runs `env ASSAY_EXE args` with the dynamic loader tracing each file it maps.
Traced run_traced(const fs::path& d, const std::string& env, const std::string& args) {
  const fs::path tdir = d / "ld";
  fs::remove_all(tdir);
  fs::create_directories(tdir);
  const auto r = assay::testing::run_cmd("env LD_DEBUG=files LD_DEBUG_OUTPUT=" + (tdir / "trace").string() +
                                         " " + env + " " + ASSAY_EXE + args);
  Traced t{r.code, r.out, ""};
  for (const auto& f : fs::directory_iterator(tdir)) {
    std::ifstream in(f.path());
    std::stringstream ss;
    ss << in.rdbuf();
    t.trace += ss.str();
  }
  return t;
}

bool maps_cuda(const std::string& trace) {
  for (const char* lib : {"libcudart", "libcublas", "libassay_cuda"})
    if (trace.find(lib) != std::string::npos) return true;
  return false;
}

bool module_built() {
#ifdef ASSAY_TEST_CUDA_MODULE
  return true;
#else
  return false;
#endif
}

}  // namespace

TEST(CudaModule, CpuCommandsMapNoCuda) {
  const fs::path d = fresh_dir("cpu");
  write_tiny_run(d);
  Traced v = run_traced(d, "", " --version");
  ASSERT_EQ(v.rc, 0) << v.out;
  ASSERT_NE(v.trace.find("file="), std::string::npos) << "LD_DEBUG wrote no trace: " << v.trace;
  EXPECT_FALSE(maps_cuda(v.trace)) << v.trace;

  Traced cpu = run_traced(d, "", train_args(d, "cpu"));
  ASSERT_EQ(cpu.rc, 0) << cpu.out;
  EXPECT_NE(cpu.out.find("done: 2 steps"), std::string::npos) << cpu.out;
  EXPECT_FALSE(maps_cuda(cpu.trace)) << cpu.trace;

  // auto with every GPU hidden (how the worker starts CPU runs) decides
  // without opening the module.
  Traced hidden = run_traced(d, "CUDA_VISIBLE_DEVICES=", train_args(d, "auto"));
  ASSERT_EQ(hidden.rc, 0) << hidden.out;
  EXPECT_NE(hidden.out.find("done: 2 steps"), std::string::npos) << hidden.out;
  EXPECT_FALSE(maps_cuda(hidden.trace)) << hidden.trace;
}

TEST(CudaModule, DeviceCudaOpensTheModule) {
  const fs::path d = fresh_dir("gpu");
  write_tiny_run(d);
  Traced t = run_traced(d, "", train_args(d, "cuda"));
  if (!module_built()) {
    EXPECT_EQ(t.rc, 1) << t.out;
    EXPECT_NE(t.out.find("this build has no CUDA support"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("libassay_cuda.so"), std::string::npos) << t.out;
    return;
  }
  EXPECT_NE(t.trace.find("libassay_cuda.so"), std::string::npos) << t.trace;
  EXPECT_NE(t.trace.find("libcublas"), std::string::npos) << t.trace;
  auto n = assay::engine::cuda::cuda_device_count();
  if (n.ok() && *n > 0) {
    EXPECT_EQ(t.rc, 0) << t.out;
  } else {
    // A module without a driver: the CUDA runtime's own error, and advice.
    EXPECT_EQ(t.rc, 1) << t.out;
    EXPECT_NE(t.out.find("no usable CUDA device: cudaGetDeviceCount returned"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("use --device cpu"), std::string::npos) << t.out;
  }
}

TEST(CudaModule, MissingModuleIsAnErrorNamingIt) {
  const fs::path d = fresh_dir("missing");
  write_tiny_run(d);
  const fs::path nowhere = d / "nowhere" / "libassay_cuda.so";
  Traced t = run_traced(d, "ASSAY_CUDA_MODULE=" + nowhere.string(), train_args(d, "cuda"));
  EXPECT_EQ(t.rc, 1) << t.out;
  EXPECT_NE(t.out.find("ASSAY_CUDA_MODULE: the CUDA backend module " + nowhere.string() + " does not exist"),
            std::string::npos)
      << t.out;
  EXPECT_FALSE(maps_cuda(t.trace)) << t.trace;
}

TEST(CudaModule, ForeignFilesAreRefused) {
  const fs::path d = fresh_dir("foreign");
  write_tiny_run(d);
  // Not a shared object at all: dlopen's own reason, and what to install.
  const fs::path text = d / "libassay_cuda.so";
  std::ofstream(text) << "not an ELF file\n";
  Traced t = run_traced(d, "ASSAY_CUDA_MODULE=" + text.string(), train_args(d, "cuda"));
  EXPECT_EQ(t.rc, 1) << t.out;
  EXPECT_NE(t.out.find("cannot load the CUDA backend module " + text.string() + ": "), std::string::npos)
      << t.out;
  EXPECT_NE(t.out.find("use --device cpu"), std::string::npos) << t.out;

  // A real shared object that is not an Assay module (the loader of this
  // very process): refused by its missing entry points.
  std::string ld;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (auto p = line.find("/ld-linux"); p != std::string::npos) ld = line.substr(line.find('/'));
  ASSERT_FALSE(ld.empty());
  Traced f = run_traced(d, "ASSAY_CUDA_MODULE=" + ld, train_args(d, "cuda"));
  EXPECT_EQ(f.rc, 1) << f.out;
  EXPECT_NE(f.out.find("does not export assay_cuda_module_abi"), std::string::npos) << f.out;
}
