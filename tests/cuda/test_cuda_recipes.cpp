// Training recipes with device cuda against the same runs on the CPU: the
// step-1 loss (identical parameters, so only TF32 rounding differs), loss
// falling, reproducible checkpoints, and every recipe running on the GPU
// path (device kernels or the host-objective bridge). Skips without a GPU.
#include "cuda_test_util.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/train.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class CudaRecipes : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!assay::engine::cuda::built_with_cuda()) GTEST_SKIP() << "this build has no CUDA support";
    auto n = assay::engine::cuda::cuda_device_count();
    if (!n.ok() || *n == 0) GTEST_SKIP() << "no GPU visible";
    dir_ = fs::temp_directory_path() / ("assay_cuda_recipes_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto put = [&](const std::string& name, const std::vector<std::string>& lines) {
      ASSERT_TRUE(assay::data::write_lines((dir_ / name).string(), lines).ok());
    };
    std::vector<std::string> l;
    for (const auto& p : assay::data::generate_gsm8k({32, 1, 1})) l.push_back(assay::data::to_jsonl(p));
    put("gsm.jsonl", l);
    l.clear();
    for (const auto& p : assay::data::generate_prefs({16, 1, 2})) l.push_back(assay::data::to_jsonl(p));
    put("prefs.jsonl", l);
    assay::data::UnlearnOptions uo;
    uo.n_authors = 8;
    uo.facts_per_author = 3;
    uo.forget_frac = 0.25;
    uo.holdout_frac = 0.25;
    const auto s = assay::data::generate_unlearn(uo);
    l.clear();
    for (const auto& q : s.forget) l.push_back(assay::data::to_jsonl(q));
    put("forget.jsonl", l);
    l.clear();
    for (const auto& q : s.retain) l.push_back(assay::data::to_jsonl(q));
    put("retain.jsonl", l);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  json lm(const std::string& out, const std::string& device) const {
    return json{{"out_dir", (dir_ / out).string()},
                {"seed", 3},
                {"device", device},
                {"model", {{"n_layer", 2}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "gsm.jsonl").string()}}},
                {"batch_size", 4},
                {"seq_len", 96},
                {"steps", 10},
                {"lr", 3e-3},
                {"log_every", 5}};
  }
  json from_init(const std::string& out, const std::string& device, const std::string& init) const {
    return json{{"out_dir", (dir_ / out).string()}, {"seed", 3}, {"device", device}, {"init", init},
                {"batch_size", 4}, {"seq_len", 96}, {"steps", 3}, {"lr", 1e-3}, {"log_every", 1}};
  }
  static assay::Result<assay::train::RunSummary> run(const std::string& recipe, const json& cfg) {
    return assay::train::run_recipe_text(recipe, cfg.dump(), "config.json", {});
  }
  // Runs `recipe` on cpu and on cuda; step-1 losses must agree.
  void compare(const std::string& recipe, json cfg, const std::string& tag) {
    cfg["out_dir"] = (dir_ / (tag + "-cpu")).string();
    cfg["device"] = "cpu";
    auto c = run(recipe, cfg);
    ASSERT_TRUE(c.ok()) << tag << " cpu: " << c.status().message();
    cfg["out_dir"] = (dir_ / (tag + "-cuda")).string();
    cfg["device"] = "cuda";
    auto g = run(recipe, cfg);
    ASSERT_TRUE(g.ok()) << tag << " cuda: " << g.status().message();
    EXPECT_NEAR(g->first_loss, c->first_loss, 1e-2 * std::fabs(c->first_loss) + 1e-4) << tag;
    EXPECT_TRUE(std::isfinite(g->last_loss)) << tag;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(CudaRecipes, PretrainTracksCpuAndIsReproducible) {
  auto c = run("pretrain", lm("cpu", "cpu"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  auto g = run("pretrain", lm("cuda", "cuda"));
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_NEAR(g->first_loss, c->first_loss, 1e-2 * c->first_loss);
  EXPECT_NEAR(g->last_loss, c->last_loss, 5e-2 * c->last_loss);
  EXPECT_LT(g->last_loss, g->first_loss - 0.3);
  // No atomics: a second GPU run writes the same checkpoint bytes.
  auto g2 = run("pretrain", lm("cuda2", "cuda"));
  ASSERT_TRUE(g2.ok()) << g2.status().message();
  EXPECT_EQ(g->final_hash, g2->final_hash);
  auto ck = assay::engine::load_checkpoint(g->checkpoints.back());
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->meta.extra["device"], "cuda:0");
}

TEST_F(CudaRecipes, SftDistillAlignUnlearnMatchCpuAtStepOne) {
  auto t = run("pretrain", lm("teacher", "cpu"));
  ASSERT_TRUE(t.ok()) << t.status().message();
  const std::string teacher = t->checkpoints.back();
  // The student: a second, shorter pretrain run.
  json sc = lm("student", "cpu");
  sc["steps"] = 3;
  sc["seed"] = 5;
  auto s = run("pretrain", sc);
  ASSERT_TRUE(s.ok()) << s.status().message();
  const std::string student = s->checkpoints.back();

  json sft = from_init("", "", student);
  sft["data"] = {{"train", (dir_ / "gsm.jsonl").string()}};
  compare("sft", sft, "sft");
  for (const char* type : {"fkl", "rkl", "jsd"}) {  // jsd: the host-objective bridge
    json d = from_init("", "", student);
    d["teacher"] = teacher;
    d["data"] = {{"train", (dir_ / "gsm.jsonl").string()}};
    d["objective"] = {{"type", type}, {"tau", 2.0}};
    d["ce_weight"] = 0.5;
    compare("distill", d, std::string("distill-") + type);
  }
  json a = from_init("", "", student);
  a["data"] = {{"train", (dir_ / "prefs.jsonl").string()}};
  compare("align", a, "align");
  json u = from_init("", "", student);
  u["data"] = {{"forget", (dir_ / "forget.jsonl").string()}, {"retain", (dir_ / "retain.jsonl").string()}};
  u["method"] = "npo";
  compare("unlearn", u, "unlearn-npo");
}
