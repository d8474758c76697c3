// LoKU (unlearn, method loku) resumes like the train_loop recipes: a run
// preempted at step k (ASSAY_PREEMPT_FILE, created the moment the console
// shows step k) stops there with a checkpoint holding the adapters, their
// AdamW state and the sampler positions; resumed (ASSAY_RESUME_FROM) in the
// same output directory it ends with a final checkpoint — model, config,
// adapter files, optimizer — and a transcript byte-identical to an
// uninterrupted run's, on one thread, for both adapter inits. The resumed
// attempt's metric lines start after the checkpoint's step.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <streambuf>
#include <vector>

#include "assay/datagen.h"
#include "assay/train.h"
#include "train_fixture.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using assay::testing::slurp;

// A console that creates `flag` as soon as a line containing `marker` is
// flushed, in the training thread: the preemption check of that same step
// sees it, so the stop step is exact.
class TriggerBuf : public std::stringbuf {
 public:
  TriggerBuf(std::string marker, fs::path flag) : marker_(std::move(marker)), flag_(std::move(flag)) {}

 protected:
  int sync() override {
    if (str().find(marker_) != std::string::npos && !fs::exists(flag_)) std::ofstream(flag_) << "x";
    return std::stringbuf::sync();
  }

 private:
  std::string marker_;
  fs::path flag_;
};

class LokuResumeTest : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string init_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("assay_loku_resume_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const auto s = assay::testing::write_unlearn_splits(dir_, assay::testing::small_unlearn_options());
    assay::testing::write_jsonl(dir_ / "mix.jsonl", assay::data::unlearn_train_mix(s, 1));
    // A briefly fine-tuned init is enough: resume is about state, not quality.
    json sft = {{"out_dir", (dir_ / "init").string()},
                {"seed", 2},
                {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "mix.jsonl").string()}}},
                {"batch_size", 8},
                {"seq_len", 96},
                {"steps", 10},
                {"lr", 3e-3},
                {"log_every", 10},
                {"device", "cpu"}};
    auto r = assay::train::run_recipe_text("sft", sft.dump(), "init.json", {});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    init_ = r->checkpoints.back();
  }
  static void TearDownTestSuite() {
    if (!getenv("KEEP")) fs::remove_all(dir_);
  }
  void SetUp() override {
    ::unsetenv("ASSAY_RESUME_FROM");
    ::unsetenv("ASSAY_PREEMPT_FILE");
  }
  void TearDown() override {
    ::unsetenv("ASSAY_RESUME_FROM");
    ::unsetenv("ASSAY_PREEMPT_FILE");
  }

  // Batch 4 over the small splits: at step 3 the retain sampler is mid-epoch,
  // so its position must be restored, not restarted.
  static json config(const std::string& init) {
    return json{{"seed", 3},
                {"threads", 1},
                {"init", init_},
                {"data", {{"forget", (dir_ / "forget.jsonl").string()},
                          {"retain", (dir_ / "retain.jsonl").string()},
                          {"holdout", (dir_ / "holdout.jsonl").string()}}},
                {"method", "loku"},
                {"lora", {{"r", 2}, {"alpha", 4}, {"init", init}}},
                {"batch_size", 4},
                {"seq_len", 96},
                {"steps", 7},
                {"lr", 1e-2},
                {"warmup", 2},
                {"log_every", 1},
                {"checkpoint_every", 5}};
  }

  // Runs the config into `out` (the output directory from the environment,
  // as under a worker); `metric_steps` gets the steps of its metric lines.
  static assay::Result<assay::train::RunSummary> run(const json& cfg, const fs::path& out,
                                                     std::vector<int64_t>* metric_steps,
                                                     std::ostream* console = nullptr) {
    const fs::path mp = out.string() + ".metrics";
    const int fd = ::open(mp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assay::train::RunEnv env;
    env.output_dir = out.string();
    env.metrics_fd = fd;
    env.console = console;
    auto r = assay::train::run_recipe_text("unlearn", cfg.dump(), "loku.json", env);
    ::close(fd);
    std::istringstream in(slurp(mp));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line);
      if (j.contains("metrics")) metric_steps->push_back(j["step"].get<int64_t>());
    }
    return r;
  }

  // Uninterrupted, then preempted at step 3 and resumed, in the same output
  // directory (the uninterrupted run is moved aside first: the FILA base
  // path, recorded in config.json and adapter_config.json, is then the same).
  static void expect_exact_resume(const std::string& init) {
    const json cfg = config(init);
    const fs::path out = dir_ / ("loku_" + init), full = dir_ / ("loku_" + init + "_full");
    std::vector<int64_t> steps_full, steps1, steps2;
    auto a = run(cfg, out, &steps_full);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    fs::rename(out, full);

    const fs::path flag = dir_ / ("preempt_" + init);
    ::setenv("ASSAY_PREEMPT_FILE", flag.c_str(), 1);
    TriggerBuf buf("step 3/7", flag);
    std::ostream console(&buf);
    auto b1 = run(cfg, out, &steps1, &console);
    ::unsetenv("ASSAY_PREEMPT_FILE");
    ASSERT_FALSE(b1.ok()) << init << ": a preemption request must stop the run";
    EXPECT_EQ(b1.status().code(), assay::Code::kUnavailable);
    EXPECT_NE(b1.status().message().find("preempted at step 3"), std::string::npos) << b1.status().message();
    const fs::path ck = out / "ckpt-000003";
    for (const char* f : {"model.safetensors", "optimizer.bin", "trainer_state.json", "adapter/adapter_model.safetensors"})
      EXPECT_TRUE(fs::exists(ck / f)) << ck / f;
    EXPECT_FALSE(fs::exists(out / "final"));
    EXPECT_EQ(steps1, (std::vector<int64_t>{1, 2, 3}));

    ::setenv("ASSAY_RESUME_FROM", ck.c_str(), 1);
    auto b2 = run(cfg, out, &steps2);
    ::unsetenv("ASSAY_RESUME_FROM");
    ASSERT_TRUE(b2.ok()) << b2.status().to_string();
    EXPECT_EQ(steps2, (std::vector<int64_t>{4, 5, 6, 7})) << init << ": metrics continue after step 3";
    EXPECT_EQ(steps_full, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));

    for (const char* f : {"model.safetensors", "optimizer.bin", "adapter/adapter_model.safetensors",
                          "adapter/adapter_config.json"}) {
      const std::string x = slurp(full / "final" / f), y = slurp(out / "final" / f);
      EXPECT_FALSE(x.empty()) << f;
      EXPECT_TRUE(x == y) << init << ": final/" << f << " differs after resume";
    }
    // config.json too (step, init, lora_base, ...), except the parent: the
    // preempted attempt's ckpt-000003 is a real link in the lineage.
    json ca = json::parse(slurp(full / "final" / "config.json")), cb = json::parse(slurp(out / "final" / "config.json"));
    EXPECT_NE(ca["assay"]["parent"], cb["assay"]["parent"]);
    ca["assay"].erase("parent");
    cb["assay"].erase("parent");
    EXPECT_EQ(ca, cb) << init;
    // The periodic checkpoint after the resume point matches too.
    EXPECT_TRUE(slurp(full / "ckpt-000005" / "model.safetensors") == slurp(out / "ckpt-000005" / "model.safetensors"));
    EXPECT_TRUE(slurp(full / "transcript.jsonl") == slurp(out / "transcript.jsonl")) << init;
  }
};

fs::path LokuResumeTest::dir_;
std::string LokuResumeTest::init_;

TEST_F(LokuResumeTest, DefaultInitPreemptedAndResumedEqualsUninterruptedBitForBit) {
  expect_exact_resume("default");
}

TEST_F(LokuResumeTest, FilaPreemptedAndResumedEqualsUninterruptedBitForBit) {
  expect_exact_resume("fila");
}

// Resuming FILA reuses the residual base the first attempt saved; without
// it the run says which base is missing instead of recomputing the Fisher.
TEST_F(LokuResumeTest, FilaResumeWithoutItsBaseSaysSo) {
  json cfg = config("fila");
  const fs::path out = dir_ / "loku_nobase";
  std::vector<int64_t> steps;
  auto a = run(cfg, out, &steps);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  fs::remove_all(out / "base");
  ::setenv("ASSAY_RESUME_FROM", (out / "ckpt-000005").c_str(), 1);
  steps.clear();
  auto b = run(cfg, dir_ / "loku_nobase2", &steps);
  ::unsetenv("ASSAY_RESUME_FROM");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("lora_base"), std::string::npos) << b.status().message();
  EXPECT_NE(b.status().message().find((out / "base").string()), std::string::npos) << b.status().message();
  EXPECT_NE(b.status().message().find("missing"), std::string::npos) << b.status().message();
  EXPECT_TRUE(steps.empty());
}

}  // namespace
