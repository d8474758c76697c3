// Resume from a checkpoint (ASSAY_RESUME_FROM): a run stopped at step k and
// resumed ends with the same weights, optimizer state and transcript as an
// uninterrupted run, bit for bit on one thread; a preemption request
// (ASSAY_PREEMPT_FILE) stops `assay train` at a step boundary with a
// resumable checkpoint and exit code 75. The same on a CUDA device, and
// across devices (CudaTrainResume, skipped without a GPU).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/train.h"
#include "cuda/cuda_test_util.h"
#include "train_fixture.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using assay::train::run_recipe_text;

using assay::testing::slurp;

class TrainResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("assay_train_resume_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::vector<std::string> lines;
    for (const auto& p : assay::data::generate_gsm8k({12, 1, 1})) lines.push_back(assay::data::to_jsonl(p));
    ASSERT_TRUE(assay::data::write_lines((dir_ / "gsm.jsonl").string(), lines).ok());
    ::unsetenv("ASSAY_RESUME_FROM");
    ::unsetenv("ASSAY_PREEMPT_FILE");
  }
  void TearDown() override {
    ::unsetenv("ASSAY_RESUME_FROM");
    if (!getenv("KEEP")) fs::remove_all(dir_);
  }
  // 12 examples, batch 4: an epoch is 3 steps, so step 4 is mid-epoch 2.
  json config(const std::string& out, int steps) const {
    return json{{"out_dir", (dir_ / out).string()},
                {"seed", 3},
                {"threads", 1},
                {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "gsm.jsonl").string()}}},
                {"batch_size", 4},
                {"seq_len", 96},
                {"steps", steps},
                {"lr", 2e-3},
                {"warmup", 2},
                {"log_every", 1},
                {"checkpoint_every", 4}};
  }
  // Runs `recipe` uninterrupted, then again resumed from ckpt-000004 of the
  // first run into a new directory; both finals must match byte for byte.
  void expect_exact_resume(const std::string& recipe, json cfg) {
    // One config text for both (its hash is in every checkpoint); the output
    // directory comes from the environment, as under a worker.
    cfg.erase("out_dir");
    assay::train::RunEnv env;
    env.output_dir = (dir_ / (recipe + "_full")).string();
    auto full = run_recipe_text(recipe, cfg.dump(), "config.json", env);
    ASSERT_TRUE(full.ok()) << full.status().to_string();
    const fs::path ck = dir_ / (recipe + "_full") / "ckpt-000004";
    ASSERT_TRUE(fs::exists(ck / "optimizer.bin"));
    ASSERT_TRUE(fs::exists(ck / "trainer_state.json"));
    env.output_dir = (dir_ / (recipe + "_resumed")).string();
    ::setenv("ASSAY_RESUME_FROM", ck.c_str(), 1);
    auto res = run_recipe_text(recipe, cfg.dump(), "config.json", env);
    ::unsetenv("ASSAY_RESUME_FROM");
    ASSERT_TRUE(res.ok()) << res.status().to_string();
    const fs::path a = dir_ / (recipe + "_full"), b = dir_ / (recipe + "_resumed");
    EXPECT_EQ(full->final_hash, res->final_hash) << recipe;
    EXPECT_EQ(slurp(a / "final" / "model.safetensors"), slurp(b / "final" / "model.safetensors")) << recipe;
    EXPECT_EQ(slurp(a / "final" / "optimizer.bin"), slurp(b / "final" / "optimizer.bin")) << recipe;
    EXPECT_EQ(slurp(a / "transcript.jsonl"), slurp(b / "transcript.jsonl")) << recipe;
    EXPECT_EQ(res->steps, full->steps);
  }
  fs::path dir_;
};

TEST_F(TrainResumeTest, PretrainResumedMidEpochEqualsUninterruptedBitForBit) {
  expect_exact_resume("pretrain", config("p", 9));
}

TEST_F(TrainResumeTest, SftResumedEqualsUninterruptedBitForBit) {
  expect_exact_resume("sft", config("s", 7));
}

TEST_F(TrainResumeTest, DistillResumedEqualsUninterruptedBitForBit) {
  json t = config("teacher", 3);
  t["checkpoint_every"] = 0;
  auto teacher = run_recipe_text("pretrain", t.dump(), "config.json", {});
  ASSERT_TRUE(teacher.ok()) << teacher.status().to_string();
  json cfg = config("d", 7);
  cfg["teacher"] = teacher->checkpoints.back();
  cfg["objective"] = {{"type", "fkl"}};
  expect_exact_resume("distill", cfg);
}

TEST_F(TrainResumeTest, ResumeRefusesACheckpointOfAnotherRecipe) {
  json cfg = config("p", 5);
  ASSERT_TRUE(run_recipe_text("pretrain", cfg.dump(), "config.json", {}).ok());
  ::setenv("ASSAY_RESUME_FROM", (dir_ / "p" / "ckpt-000004").c_str(), 1);
  cfg["out_dir"] = (dir_ / "s").string();
  auto r = run_recipe_text("sft", cfg.dump(), "config.json", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("written by 'pretrain'"), std::string::npos)
      << r.status().message();
}

// A hostile trainer_state.json (100,000 nested arrays) is an error naming
// the file and the depth limit, not a crash.
TEST_F(TrainResumeTest, DeepTrainerStateIsAnError) {
  json cfg = config("deep", 5);
  ASSERT_TRUE(run_recipe_text("pretrain", cfg.dump(), "config.json", {}).ok());
  const fs::path ck = dir_ / "deep" / "ckpt-000004";
  std::ofstream(ck / "trainer_state.json", std::ios::trunc)
      << std::string(100000, '[') << std::string(100000, ']');
  ::setenv("ASSAY_RESUME_FROM", ck.c_str(), 1);
  cfg["out_dir"] = (dir_ / "deep2").string();
  auto r = run_recipe_text("pretrain", cfg.dump(), "config.json", {});
  ::unsetenv("ASSAY_RESUME_FROM");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trainer_state.json"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("64 levels"), std::string::npos) << r.status().message();
}

// The CLI under a preemption request: the file exists from the start, so the
// run stops after step 1 with ckpt-000001, exit 75; `--resume` finishes it
// with the weights of an uninterrupted run.
TEST_F(TrainResumeTest, PreemptFileStopsAtStepBoundaryAndResumeFinishesExactly) {
  json cfg = config("cli", 6);
  cfg["checkpoint_every"] = 0;
  const fs::path conf = dir_ / "cli.json";
  std::ofstream(conf) << cfg.dump();
  const fs::path flag = dir_ / "preempt";
  std::ofstream(flag) << "x";
  auto sh = [&](const std::string& cmd) {
    int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  const std::string exe = ASSAY_EXE;
  EXPECT_EQ(sh("ASSAY_PREEMPT_FILE=" + flag.string() + " " + exe + " train pretrain --config " +
               conf.string() + " --out-dir " + (dir_ / "cli_a").string() + " >/dev/null 2>&1"),
            75);
  ASSERT_TRUE(fs::exists(dir_ / "cli_a" / "ckpt-000001" / "trainer_state.json"));
  EXPECT_FALSE(fs::exists(dir_ / "cli_a" / "final"));
  EXPECT_EQ(sh(exe + " train pretrain --config " + conf.string() + " --out-dir " +
               (dir_ / "cli_a").string() + " --resume " + (dir_ / "cli_a" / "ckpt-000001").string() +
               " >/dev/null 2>&1"),
            0);
  EXPECT_EQ(sh(exe + " train pretrain --config " + conf.string() + " --out-dir " +
               (dir_ / "cli_b").string() + " >/dev/null 2>&1"),
            0);
  EXPECT_EQ(slurp(dir_ / "cli_a" / "final" / "model.safetensors"),
            slurp(dir_ / "cli_b" / "final" / "model.safetensors"));
  EXPECT_EQ(slurp(dir_ / "cli_a" / "transcript.jsonl"), slurp(dir_ / "cli_b" / "transcript.jsonl"));
}

// ------------------------------------------------------- on a CUDA device
//
// Named Cuda* so that `ctest -R '^Cuda'` (scripts/gpu-check) selects them;
// they skip, saying why, without a CUDA build or a visible GPU.

class CudaTrainResume : public TrainResumeTest {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    TrainResumeTest::SetUp();
  }
  void TearDown() override {
    if (!dir_.empty()) TrainResumeTest::TearDown();
  }
  static std::vector<float> weights(const fs::path& ckpt) {
    auto ck = assay::engine::load_checkpoint(ckpt.string());
    EXPECT_TRUE(ck.ok()) << ckpt << ": " << ck.status().message();
    if (!ck.ok()) return {};
    return std::vector<float>(ck->model.params().begin(), ck->model.params().end());
  }
  static assay::engine::AdamWState optimizer(const fs::path& ckpt, std::size_t n) {
    auto st = assay::engine::load_adamw_state((ckpt / "optimizer.bin").string(), n);
    EXPECT_TRUE(st.ok()) << ckpt << ": " << st.status().message();
    return st.ok() ? std::move(*st) : assay::engine::AdamWState{};
  }
  // Elements of `got` off `want` by more than atol + rtol·|want| + rms_rtol·rms(want).
  static std::size_t count_off(const std::vector<float>& got, const std::vector<float>& want, Tol tol) {
    if (got.size() != want.size()) return std::max<std::size_t>(got.size(), want.size()) + 1;
    double ss = 0;
    for (float w : want) ss += (double)w * w;
    const double rms = want.empty() ? 0 : std::sqrt(ss / (double)want.size());
    std::size_t off = 0;
    for (std::size_t i = 0; i < got.size(); i++)
      off += !(std::fabs((double)got[i] - want[i]) <= tol.atol + tol.rtol * std::fabs((double)want[i]) +
                                                          tol.rms_rtol * rms);
    return off;
  }
  // `a` (run on one device throughout) against `b` (resumed on the other
  // from a's ckpt-000004): same step count, same data order (transcript),
  // and weights and AdamW moments within the CUDA-vs-CPU tolerance of
  // CudaModel.TrainingStepsTrackCpu. Adam's update is ~lr per element
  // whatever the gradient's size, so where a gradient is tiny TF32 noise can
  // flip a step: up to 1% of elements may be outliers. Moments restored
  // wrongly (zero, or from another step) differ by tens of percent almost
  // everywhere and fail; the step count must match exactly.
  void expect_cross_device_match(const fs::path& a, const fs::path& b, int64_t steps) {
    const json st = json::parse(slurp(b / "final" / "trainer_state.json"));
    EXPECT_EQ(st["optimizer"], true);
    EXPECT_EQ(slurp(a / "transcript.jsonl"), slurp(b / "transcript.jsonl"));
    const std::vector<float> wa = weights(a / "final"), wb = weights(b / "final");
    ASSERT_FALSE(wa.empty());
    ASSERT_EQ(wa.size(), wb.size());
    EXPECT_LE(count_off(wb, wa, Tol{2e-3, 5e-2, 0}), wa.size() / 100) << "weights";
    const auto oa = optimizer(a / "final", wa.size()), ob = optimizer(b / "final", wa.size());
    EXPECT_EQ(oa.t, steps);
    EXPECT_EQ(ob.t, steps);
    EXPECT_LE(count_off(ob.m, oa.m, Tol{0, 5e-2, 2e-2}), wa.size() / 100) << "AdamW m";
    EXPECT_LE(count_off(ob.v, oa.v, Tol{0, 5e-2, 2e-2}), wa.size() / 100) << "AdamW v";
  }
  // Runs cfg on `first` uninterrupted (checkpoint at step 4), then resumes
  // its ckpt-000004 on `second`.
  void run_then_resume_on(json cfg, const std::string& first, const std::string& second) {
    cfg.erase("out_dir");
    cfg["device"] = first;
    assay::train::RunEnv env;
    env.output_dir = (dir_ / "full").string();
    auto full = run_recipe_text("pretrain", cfg.dump(), "config.json", env);
    ASSERT_TRUE(full.ok()) << full.status().to_string();
    const fs::path ck = dir_ / "full" / "ckpt-000004";
    ASSERT_TRUE(fs::exists(ck / "optimizer.bin")) << "a " << first << " checkpoint carries optimizer.bin";
    EXPECT_EQ(json::parse(slurp(ck / "trainer_state.json"))["optimizer"], true);
    cfg["device"] = second;
    env.output_dir = (dir_ / "resumed").string();
    ::setenv("ASSAY_RESUME_FROM", ck.c_str(), 1);
    auto res = run_recipe_text("pretrain", cfg.dump(), "config.json", env);
    ::unsetenv("ASSAY_RESUME_FROM");
    ASSERT_TRUE(res.ok()) << "resume on " << second << ": " << res.status().to_string();
    EXPECT_EQ(res->steps, full->steps);
    expect_cross_device_match(dir_ / "full", dir_ / "resumed", cfg["steps"].get<int64_t>());
  }
};

// The kernels use no atomics (engine/cuda/kernels.cuh: every reduction has a
// fixed order) and cuBLAS picks the same algorithms for the same shapes, so
// a resumed device run is bit-identical to an uninterrupted one, as on the
// CPU: weights, optimizer.bin (downloaded moments and step) and transcript.
TEST_F(CudaTrainResume, PretrainResumedOnCudaEqualsUninterruptedBitForBit) {
  json cfg = config("p", 9);
  cfg["device"] = "cuda:0";
  expect_exact_resume("pretrain", cfg);
  const fs::path ck = dir_ / "pretrain_full" / "ckpt-000004";
  EXPECT_EQ(json::parse(slurp(ck / "trainer_state.json"))["optimizer"], true);
  EXPECT_EQ(optimizer(ck, weights(ck).size()).t, 4);

  // Preempted (ASSAY_PREEMPT_FILE present from the start: stops after step
  // 1 with ckpt-000001), then resumed on the device: the same final weights.
  json c = cfg;
  c.erase("out_dir");
  const fs::path flag = dir_ / "preempt";
  std::ofstream(flag) << "x";
  assay::train::RunEnv env;
  env.output_dir = (dir_ / "preempted").string();
  ::setenv("ASSAY_PREEMPT_FILE", flag.c_str(), 1);
  auto stopped = run_recipe_text("pretrain", c.dump(), "config.json", env);
  ::unsetenv("ASSAY_PREEMPT_FILE");
  ASSERT_FALSE(stopped.ok());
  ASSERT_TRUE(fs::exists(dir_ / "preempted" / "ckpt-000001" / "optimizer.bin")) << stopped.status().to_string();
  ::setenv("ASSAY_RESUME_FROM", (dir_ / "preempted" / "ckpt-000001").c_str(), 1);
  auto res = run_recipe_text("pretrain", c.dump(), "config.json", env);
  ::unsetenv("ASSAY_RESUME_FROM");
  ASSERT_TRUE(res.ok()) << res.status().to_string();
  EXPECT_EQ(slurp(dir_ / "pretrain_full" / "final" / "model.safetensors"),
            slurp(dir_ / "preempted" / "final" / "model.safetensors"));
  EXPECT_EQ(slurp(dir_ / "pretrain_full" / "final" / "optimizer.bin"),
            slurp(dir_ / "preempted" / "final" / "optimizer.bin"));
  EXPECT_EQ(slurp(dir_ / "pretrain_full" / "transcript.jsonl"), slurp(dir_ / "preempted" / "transcript.jsonl"));
}

// A CPU checkpoint (optimizer.bin from AdamW::save) resumed on the device
// ends near the uninterrupted CPU run: the same file format both ways.
TEST_F(CudaTrainResume, CpuCheckpointResumedOnCudaTracksTheCpuRun) {
  run_then_resume_on(config("x", 8), "cpu", "cuda:0");
}

// The reverse: a device checkpoint (downloaded moments) resumed on the CPU.
TEST_F(CudaTrainResume, CudaCheckpointResumedOnCpuTracksTheCudaRun) {
  run_then_resume_on(config("x", 8), "cuda:0", "cpu");
}

}  // namespace
