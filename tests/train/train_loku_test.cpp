// assay train unlearn with method loku end to end on a tiny model: the
// forget NLL rises while only the adapters change (every non-target tensor
// and the frozen base are bit-identical to the init, targets are exactly
// base + adapter), FILA starts from the init's outputs, the PEFT adapter of
// the final checkpoint merges (assay train merge) into the final weights,
// and CUDA is refused with a clear message.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/lora.h"
#include "assay/train.h"
#include "train_fixture.h"
#include "support/run_cmd.h"

namespace {

namespace fs = std::filesystem;
namespace lora = assay::engine::lora;
using nlohmann::json;

using assay::testing::slurp;

class LokuTest : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string facts_;  // the model that memorised forget + retain
  static int n_forget_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("assay_loku_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const auto s = assay::testing::write_unlearn_splits(dir_, assay::testing::small_unlearn_options());
    assay::testing::write_jsonl(dir_ / "mix.jsonl", assay::data::unlearn_train_mix(s, 1));
    n_forget_ = static_cast<int>(s.forget.size());
    json sft = {{"out_dir", (dir_ / "facts").string()},
                {"seed", 2},
                {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "mix.jsonl").string()}}},
                {"batch_size", 8},
                {"seq_len", 96},
                {"steps", 300},
                {"lr", 3e-3},
                {"log_every", 20},
                {"device", "cpu"}};
    auto r = assay::train::run_recipe_text("sft", sft.dump(), "facts.json", {});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    facts_ = r->checkpoints.back();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static json loku_config(const std::string& out, const std::string& init) {
    return json{{"out_dir", (dir_ / out).string()},
                {"seed", 3},
                {"init", facts_},
                {"data", {{"forget", (dir_ / "forget.jsonl").string()},
                          {"retain", (dir_ / "retain.jsonl").string()},
                          {"holdout", (dir_ / "holdout.jsonl").string()}}},
                {"method", "loku"},
                {"lora", {{"r", 4}, {"alpha", 8}, {"init", init}}},
                // The whole forget split in every batch: forget_loss at step 1
                // and at the last step are measured on the same examples.
                {"batch_size", n_forget_},
                {"seq_len", 96},
                {"steps", 8},
                {"lr", 1e-2},
                {"schedule", "constant"},
                {"log_every", 1}};
  }

  // Runs a config and returns the metric lines by step.
  static assay::Result<assay::train::RunSummary> run(const json& cfg, std::map<int64_t, json>* metrics) {
    const fs::path mp = dir_ / (cfg["out_dir"].get<std::string>() + ".metrics");
    fs::create_directories(mp.parent_path());
    const int fd = ::open(mp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assay::train::RunEnv env;
    env.metrics_fd = fd;
    auto r = assay::train::run_recipe_text("unlearn", cfg.dump(), "loku.json", env);
    ::close(fd);
    std::istringstream in(slurp(mp));
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line);
      if (j.contains("metrics")) (*metrics)[j["step"].get<int64_t>()] = j["metrics"];
    }
    return r;
  }

  // Final model parameters must be the base outside the targets and exactly
  // base + s·Aᵀ·Bᵀ (from the saved adapter) on them.
  static void expect_only_adapters_changed(const std::string& final_dir, const std::string& base_dir) {
    auto fin = assay::engine::load_checkpoint(final_dir, assay::engine::Mode::kFrozen);
    auto base = assay::engine::load_checkpoint(base_dir, assay::engine::Mode::kFrozen);
    ASSERT_TRUE(fin.ok() && base.ok());
    auto file = lora::read_adapter(final_dir + "/adapter");
    ASSERT_TRUE(file.ok()) << file.status().to_string();
    EXPECT_EQ(file->base_model_name_or_path, base_dir);
    auto ad = lora::load_adapter(base->model, *file);
    ASSERT_TRUE(ad.ok()) << ad.status().to_string();
    std::vector<bool> is_target(base->model.num_params(), false);
    for (const auto& t : ad->targets())
      std::fill(is_target.begin() + t.w_offset, is_target.begin() + t.w_offset + (size_t)t.in * t.out, true);
    const auto p0 = base->model.params(), p1 = fin->model.params();
    size_t changed = 0;
    for (size_t i = 0; i < p0.size(); i++) {
      if (!is_target[i]) {
        ASSERT_EQ(p0[i], p1[i]) << "non-target parameter " << i << " changed";
      } else {
        changed += p0[i] != p1[i];
      }
    }
    EXPECT_GT(changed, 0u);
    ASSERT_TRUE(ad->apply(base->model).ok());
    EXPECT_TRUE(std::equal(p1.begin(), p1.end(), base->model.params().begin()));
  }

  static fs::path dir_prefix() { return dir_; }
};

fs::path LokuTest::dir_;
std::string LokuTest::facts_;
int LokuTest::n_forget_ = 0;

TEST_F(LokuTest, DefaultInitRaisesForgetLossAndTrainsOnlyAdapters) {
  std::map<int64_t, json> m;
  auto r = run(loku_config("loku_default", "default"), &m);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE(m.count(1) && m.count(8));
  const double f1 = m[1]["forget_loss"], f8 = m[8]["forget_loss"];
  EXPECT_GT(f8, f1 + 0.2) << "forget NLL " << f1 << " -> " << f8;
  EXPECT_LT(m[8]["ihl"].get<double>(), m[1]["ihl"].get<double>());
  EXPECT_TRUE(m[8].contains("retain_loss"));
  EXPECT_TRUE(m[8].contains("holdout_loss"));
  // The base is the init checkpoint itself, untouched on disk.
  const std::string init = fs::absolute(facts_).lexically_normal().string();
  expect_only_adapters_changed(r->checkpoints.back(), init);
  auto ck = assay::engine::load_checkpoint(r->checkpoints.back(), assay::engine::Mode::kFrozen);
  ASSERT_TRUE(ck.ok());
  EXPECT_EQ(ck->meta.extra["method"], "loku");
  EXPECT_EQ(ck->meta.extra["lora_r"], "4");
  EXPECT_EQ(ck->meta.extra["lora_base"], init);
  EXPECT_FALSE(fs::exists(fs::path(r->output_dir) / "base"));
}

TEST_F(LokuTest, FilaStartsFromInitOutputsAndMergesWithCli) {
  std::map<int64_t, json> md, mf;
  auto d = run(loku_config("loku_ref", "default"), &md);
  auto f = run(loku_config("loku_fila", "fila"), &mf);
  ASSERT_TRUE(d.ok() && f.ok()) << f.status().to_string();
  // Step 1 is measured before any update: FILA's W_res + s·Aᵀ·Bᵀ reproduces
  // the init (default init has B = 0, i.e. exactly the init).
  EXPECT_NEAR(mf[1]["forget_loss"].get<double>(), md[1]["forget_loss"].get<double>(), 1e-5);
  EXPECT_NEAR(mf[1]["retain_loss"].get<double>(), md[1]["retain_loss"].get<double>(), 1e-5);
  EXPECT_GT(mf[8]["forget_loss"].get<double>(), mf[1]["forget_loss"].get<double>() + 0.05);
  // The residual base: non-targets equal the init bit for bit.
  const std::string base = (fs::path(f->output_dir) / "base").string();
  auto b = assay::engine::load_checkpoint(base, assay::engine::Mode::kFrozen);
  auto init = assay::engine::load_checkpoint(facts_, assay::engine::Mode::kFrozen);
  ASSERT_TRUE(b.ok() && init.ok());
  EXPECT_EQ(b->meta.parent, init->hash);
  lora::LoraConfig lc;
  auto targets = lora::match_targets(init->model, lc);
  ASSERT_TRUE(targets.ok());
  std::vector<bool> is_t(init->model.num_params(), false);
  for (const auto& t : *targets) std::fill(is_t.begin() + t.w_offset, is_t.begin() + t.w_offset + (size_t)t.in * t.out, true);
  size_t moved = 0;
  for (size_t i = 0; i < is_t.size(); i++) {
    if (!is_t[i]) ASSERT_EQ(b->model.params()[i], init->model.params()[i]) << i;
    else moved += b->model.params()[i] != init->model.params()[i];
  }
  EXPECT_GT(moved, 0u);
  expect_only_adapters_changed(f->checkpoints.back(), fs::absolute(base).lexically_normal().string());
  // assay train merge: base + adapter = the final checkpoint's weights.
  const std::string out = (dir_prefix() / "merged").string();
  auto res = assay::testing::run_cmd(std::string(ASSAY_EXE) + " train merge --base " + base + " --adapter " +
                                     f->checkpoints.back() + "/adapter --out " + out);
  ASSERT_EQ(res.code, 0) << res.out;
  EXPECT_EQ(slurp(fs::path(out) / "model.safetensors"), slurp(fs::path(f->checkpoints.back()) / "model.safetensors"));
  res = assay::testing::run_cmd(std::string(ASSAY_EXE) + " train merge --base " + base + " --adapter " + base +
                                " --out " + out + "2");
  EXPECT_EQ(res.code, 1);
  EXPECT_NE(res.out.find("adapter_config.json: cannot open"), std::string::npos) << res.out;
}

TEST_F(LokuTest, ConfigErrors) {
  auto expect_error = [&](json cfg, const std::string& msg) {
    std::map<int64_t, json> m;
    auto r = run(cfg, &m);
    ASSERT_FALSE(r.ok()) << cfg.dump();
    EXPECT_NE(r.status().message().find(msg), std::string::npos) << r.status().message();
  };
  json c = loku_config("bad", "fila");
  c["device"] = "cuda";
  expect_error(c, "loku.json: /device: method loku trains LoRA adapters on the CPU engine only, got 'cuda'");
  c = loku_config("bad", "fila");
  c["lora"]["init"] = "pissa";
  expect_error(c, "loku.json: /lora/init");
  c = loku_config("bad", "default");
  c["lora"]["targets"] = json::array({"q_proj"});
  expect_error(c, "'q_proj' matches no Conv1D weight");
  c = loku_config("bad", "default");
  c["objective"] = {{"beta", 0.1}};
  expect_error(c, "loku.json: /objective/beta: not used by method loku");
}

}  // namespace
