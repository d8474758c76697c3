// Device selection: parse_device/resolve_device, and `assay train --device`
// through the real binary. Runs with or without CUDA and a GPU.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "assay/engine_cuda.h"
#include "assay/train.h"
#include "support/run_cmd.h"

namespace fs = std::filesystem;
using assay::engine::cuda::Device;

namespace {

bool gpu_visible() {
  auto n = assay::engine::cuda::cuda_device_count();
  return n.ok() && *n > 0;
}

struct Proc {
  int rc = -1;
  std::string out;  // stdout and stderr
};

Proc run(const std::string& cmd) {
  auto r = assay::testing::run_cmd(cmd);
  return {r.code, std::move(r.out)};
}

// A tiny pretrain config and its text data in a fresh directory.
fs::path tiny_run(const std::string& name) {
  const fs::path d = fs::path(ASSAY_BINARY_DIR) / "test_tmp" / "cuda_device" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  std::ofstream(d / "data.txt") << std::string(400, 'a') << "the quick brown fox jumps over the lazy dog\n";
  std::ofstream(d / "cfg.json") << R"({"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32},
    "data": {"train": ")" << (d / "data.txt").string()
                                << R"("}, "steps": 2, "seq_len": 16, "batch_size": 2, "log_every": 1})";
  return d;
}

std::string train_cmd(const fs::path& d, const std::string& device) {
  return std::string(ASSAY_EXE) + " train pretrain --config " + (d / "cfg.json").string() + " --out-dir " +
         (d / "out").string() + (device.empty() ? "" : " --device " + device);
}

}  // namespace

TEST(CudaDevice, ParseDevice) {
  auto cpu = assay::engine::cuda::parse_device("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_FALSE(cpu->is_cuda());
  EXPECT_EQ(cpu->str(), "cpu");
  auto c = assay::engine::cuda::parse_device("cuda");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->is_cuda());
  EXPECT_EQ(c->index, 0);
  auto c3 = assay::engine::cuda::parse_device("cuda:3");
  ASSERT_TRUE(c3.ok());
  EXPECT_EQ(c3->index, 3);
  EXPECT_EQ(c3->str(), "cuda:3");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "CUDA", "cuda:99999999", "auto"}) {
    auto r = assay::engine::cuda::parse_device(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "' should not parse";
    EXPECT_NE(r.status().message().find("expected cpu, cuda or cuda:N"), std::string::npos)
        << r.status().message();
  }
}

TEST(CudaDevice, ResolveDevice) {
  auto a = assay::engine::cuda::resolve_device("auto");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->is_cuda(), assay::engine::cuda::built_with_cuda() && gpu_visible());
  auto cpu = assay::engine::cuda::resolve_device("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_FALSE(cpu->is_cuda());
  auto c = assay::engine::cuda::resolve_device("cuda");
  if (!assay::engine::cuda::built_with_cuda()) {
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("this build has no CUDA support"), std::string::npos) << c.status().message();
  } else if (!gpu_visible()) {
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("cudaGetDeviceCount"), std::string::npos) << c.status().message();
  } else {
    ASSERT_TRUE(c.ok()) << c.status().message();
    auto far = assay::engine::cuda::resolve_device("cuda:4096");
    ASSERT_FALSE(far.ok());
    EXPECT_NE(far.status().message().find("CUDA device(s) visible"), std::string::npos) << far.status().message();
  }
}

TEST(CudaDevice, TrainDeviceFlagThroughBinary) {
  const fs::path d = tiny_run("flag");
  // A malformed device is a config error naming the field.
  Proc bad = run(train_cmd(d, "gpu0"));
  EXPECT_EQ(bad.rc, 1) << bad.out;
  EXPECT_NE(bad.out.find("/device: expected auto, cpu, cuda or cuda:N"), std::string::npos) << bad.out;
  // cpu always works.
  Proc cpu = run(train_cmd(d, "cpu"));
  EXPECT_EQ(cpu.rc, 0) << cpu.out;
  EXPECT_NE(cpu.out.find("done: 2 steps"), std::string::npos) << cpu.out;
  Proc cuda = run(train_cmd(d, "cuda"));
  if (gpu_visible()) {
    EXPECT_EQ(cuda.rc, 0) << cuda.out;
    EXPECT_NE(cuda.out.find("device cuda:0"), std::string::npos) << cuda.out;
  } else {
    EXPECT_EQ(cuda.rc, 1) << cuda.out;
    const bool clear = cuda.out.find("this build has no CUDA support (nvcc was not found when it was built); "
                                     "use --device cpu") != std::string::npos ||
                       cuda.out.find("no usable CUDA device: cudaGetDeviceCount returned") != std::string::npos;
    EXPECT_TRUE(clear) << cuda.out;
  }
}

// The same errors through the library (no binary needed).
TEST(CudaDevice, RecipeDeviceErrorsInLibrary) {
  const fs::path d = tiny_run("lib");
  std::ifstream f(d / "cfg.json");
  const std::string cfg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  assay::train::RunEnv env;
  env.output_dir = (d / "out").string();
  auto bad = assay::train::run_recipe_text("pretrain", cfg, "cfg.json", env, {"device=cuda:"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cfg.json: /device: expected auto, cpu, cuda or cuda:N"), std::string::npos)
      << bad.status().message();
  if (gpu_visible()) GTEST_SKIP() << "a GPU is visible: --device cuda is expected to work here";
  auto r = assay::train::run_recipe_text("pretrain", cfg, "cfg.json", env, {"device=cuda:1"});
  ASSERT_FALSE(r.ok());
  const std::string m = r.status().message();
  if (assay::engine::cuda::built_with_cuda()) {
    EXPECT_NE(m.find("cudaGetDeviceCount"), std::string::npos) << m;
  } else {
    EXPECT_NE(m.find("this build has no CUDA support (nvcc was not found when it was built); use --device cpu"),
              std::string::npos)
        << m;
  }
  // auto falls back to the CPU.
  auto a = assay::train::run_recipe_text("pretrain", cfg, "cfg.json", env, {"device=auto", "steps=1"});
  EXPECT_TRUE(a.ok()) << a.status().message();
}
