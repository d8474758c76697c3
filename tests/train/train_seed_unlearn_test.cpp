// Recipes end to end on tiny models: the data-order seed (data_seed) is
// independent of the init seed, retain_loss is logged by every unlearning
// method that is given retain data, and f-DPO reports clamped log-ratios
// (clamped_frac and a console warning).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/train.h"
#include "train_fixture.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using assay::train::RunEnv;

using assay::testing::slurp;

// The example ids of a transcript, in training order.
std::vector<std::string> order_of(const std::string& out_dir) {
  std::vector<std::string> ids;
  std::ifstream f(fs::path(out_dir) / "transcript.jsonl");
  std::string line;
  while (std::getline(f, line)) ids.push_back(json::parse(line)["example_id"].get<std::string>());
  return ids;
}

class SeedUnlearnTest : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string teacher_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("assay_seed_unlearn_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    assay::testing::write_jsonl(dir_ / "gsm.jsonl", assay::data::generate_gsm8k({32, 1, 1}));
    assay::testing::write_jsonl(dir_ / "prefs.jsonl", assay::data::generate_prefs({16, 1, 2}));
    const auto uo = assay::testing::small_unlearn_options();
    assay::testing::write_unlearn_splits(dir_, uo);
    assay::testing::write_jsonl(dir_ / "perturbed.jsonl", assay::data::generate_unlearn_perturbed(uo).forget);
    json pre = random_init("teacher", 8);
    pre["lr"] = 3e-3;
    auto r = run("pretrain", pre);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    teacher_ = r->checkpoints.back();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static json random_init(const std::string& out, int steps) {
    return json{{"out_dir", (dir_ / out).string()},
                {"seed", 3},
                {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "gsm.jsonl").string()}}},
                {"batch_size", 4},
                {"seq_len", 96},
                {"steps", steps},
                {"lr", 2e-3},
                {"log_every", 4}};
  }
  static json from_teacher(const std::string& out, int steps) {
    return json{{"out_dir", (dir_ / out).string()}, {"seed", 3}, {"init", teacher_}, {"batch_size", 4},
                {"seq_len", 96}, {"steps", steps}, {"lr", 1e-3}, {"log_every", 2}};
  }
  static json unlearn(const std::string& out, const std::string& method) {
    json c = from_teacher(out, 4);
    c["data"] = {{"forget", (dir_ / "forget.jsonl").string()}, {"retain", (dir_ / "retain.jsonl").string()}};
    c["method"] = method;
    return c;
  }
  static assay::Result<assay::train::RunSummary> run(const std::string& recipe, const json& cfg,
                                                     RunEnv env = {}) {
    return assay::train::run_recipe_text(recipe, cfg.dump(), "config.json", env);
  }
};

fs::path SeedUnlearnTest::dir_;
std::string SeedUnlearnTest::teacher_;

// ------------------------------------------------------------- data_seed

TEST_F(SeedUnlearnTest, DataSeedSetsOrderAndSeedDoesNotInUnlearnAndAlign) {
  for (const std::string recipe : {"unlearn", "align"}) {
    auto cfg = [&](const std::string& out, int seed, int data_seed) {
      json c = recipe == "unlearn" ? unlearn(out, "graddiff") : from_teacher(out, 4);
      if (recipe == "align") c["data"] = {{"train", (dir_ / "prefs.jsonl").string()}};
      c["seed"] = seed;
      if (data_seed >= 0) c["data_seed"] = data_seed;
      return c;
    };
    auto a = run(recipe, cfg(recipe + "_s3", 3, -1));        // data_seed defaults to seed
    auto b = run(recipe, cfg(recipe + "_s3_d3", 3, 3));
    auto c = run(recipe, cfg(recipe + "_s3_d9", 3, 9));
    auto d = run(recipe, cfg(recipe + "_s5_d9", 5, 9));
    ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok()) << recipe;
    EXPECT_EQ(order_of(a->output_dir), order_of(b->output_dir)) << recipe;
    EXPECT_NE(order_of(b->output_dir), order_of(c->output_dir)) << recipe;
    EXPECT_EQ(order_of(c->output_dir), order_of(d->output_dir)) << recipe;
    // Default data_seed = seed: the same bytes as before the field existed.
    EXPECT_EQ(slurp(fs::path(a->checkpoints.back()) / "model.safetensors"),
              slurp(fs::path(b->checkpoints.back()) / "model.safetensors"));
    const json meta = json::parse(slurp(fs::path(c->checkpoints.back()) / "config.json"));
    EXPECT_EQ(meta["assay"]["extra"]["seed"], "3");
    EXPECT_EQ(meta["assay"]["extra"]["data_seed"], "9");
  }
}

// Random init follows seed alone: with a learning rate far below float
// resolution the final weights are the initial ones, so runs that differ only
// in data_seed must agree to ~1e-28 and runs with another seed must not.
TEST_F(SeedUnlearnTest, InitWeightsFollowSeedNotDataSeed) {
  auto weights = [&](const std::string& out, int seed, int data_seed) {
    json c = random_init(out, 2);
    c["seed"] = seed;
    c["data_seed"] = data_seed;
    c["lr"] = 1e-30;
    c["weight_decay"] = 0.0;
    auto r = run("pretrain", c);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    auto ck = assay::engine::load_checkpoint(r->checkpoints.back());
    EXPECT_TRUE(ck.ok());
    auto p = ck->model.params();
    return std::vector<float>(p.begin(), p.end());
  };
  const auto a = weights("init_s3_d3", 3, 3), b = weights("init_s3_d9", 3, 9), c = weights("init_s4_d3", 4, 3);
  ASSERT_EQ(a.size(), b.size());
  double max_ab = 0, max_ac = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    max_ab = std::max(max_ab, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ac = std::max(max_ac, std::fabs(static_cast<double>(a[i]) - c[i]));
  }
  EXPECT_LT(max_ab, 1e-28);
  EXPECT_GT(max_ac, 1e-3);
}

// The random-init recipes shuffle with data_seed too (recipe_lm's sampler).
TEST_F(SeedUnlearnTest, PretrainOrderFollowsDataSeed) {
  auto order = [&](const std::string& out, int seed, int data_seed) {
    json c = random_init(out, 4);
    c["seed"] = seed;
    c["data_seed"] = data_seed;
    auto r = run("pretrain", c);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return order_of(r->output_dir);
  };
  const auto a = order("ord_s3_d3", 3, 3), b = order("ord_s3_d9", 3, 9), c = order("ord_s5_d9", 5, 9);
  EXPECT_NE(a, b);
  EXPECT_EQ(b, c);
}

TEST_F(SeedUnlearnTest, DataSeedIsValidated) {
  json c = random_init("bad", 1);
  c["data_seed"] = -1;
  auto r = run("pretrain", c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config.json: /data_seed: expected an integer >= 0, got -1"),
            std::string::npos)
      << r.status().message();
}

// ---------------------------------------------------------- retain_loss

TEST_F(SeedUnlearnTest, RetainLossLoggedForEveryMethod) {
  for (const std::string method : {"ga", "graddiff", "kl", "npo", "simnpo"}) {
    json c = unlearn("rl_" + method, method);
    if (method == "npo") c["objective"] = {{"retain_weight", 0.0}};  // scored, not trained on
    auto r = run("unlearn", c);
    ASSERT_TRUE(r.ok()) << method << ": " << r.status().to_string();
    ASSERT_TRUE(r->last_metrics.count("retain_loss")) << method;
    EXPECT_GT(r->last_metrics["retain_loss"], 0.0) << method;
    EXPECT_TRUE(std::isfinite(r->last_metrics["retain_loss"])) << method;
    // GA and a zero retain weight train on the forget split alone: the
    // retain batches they score are not in the transcript.
    const bool trains_retain = method != "ga" && method != "npo";
    EXPECT_EQ(slurp(fs::path(r->output_dir) / "transcript.jsonl").find("\"split\":\"retain\"") != std::string::npos,
              trains_retain)
        << method;
    if (method == "ga") {
      EXPECT_NEAR(r->last_loss, -r->last_metrics["forget_loss"], 1e-9);
    }
  }
  // The GA refusal stays.
  json bad = unlearn("rl_ga_bad", "ga");
  bad["objective"] = {{"retain_weight", 1.0}};
  EXPECT_FALSE(run("unlearn", bad).ok());
}

// The generated perturbed answers are what the unlearning suite's truth
// ratio reads: with them (and a retain model) forget_quality is a number.
TEST_F(SeedUnlearnTest, GeneratedPerturbedAnswersGiveForgetQuality) {
  if (!fs::exists(ASSAY_EXE)) GTEST_SKIP() << "assay binary not built at " << ASSAY_EXE;
  auto u = run("unlearn", unlearn("fq_npo", "npo"));
  ASSERT_TRUE(u.ok()) << u.status().to_string();
  const fs::path out = dir_ / "fq_results.json";
  const std::string cmd = std::string(ASSAY_EXE) + " eval unlearning --model-path " + u->checkpoints.back() +
                          " --forget " + (dir_ / "forget.jsonl").string() + " --retain " +
                          (dir_ / "retain.jsonl").string() + " --holdout " + (dir_ / "holdout.jsonl").string() +
                          " --perturbed " + (dir_ / "perturbed.jsonl").string() + " --retain-model " + teacher_ +
                          " --output " + out.string() + " > " + (dir_ / "fq_log.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << slurp(dir_ / "fq_log.txt");
  // lm-eval layout: results.<suite>["<metric>,<set>"].
  const json res = json::parse(slurp(out));
  ASSERT_TRUE(res.contains("results") && res["results"].contains("unlearning")) << res.dump();
  const json& u_res = res["results"]["unlearning"];
  ASSERT_TRUE(u_res.contains("forget_quality,forget")) << u_res.dump();
  EXPECT_TRUE(u_res["forget_quality,forget"].is_number()) << u_res.dump();
  const double fq = u_res["forget_quality,forget"].get<double>();
  EXPECT_GE(fq, 0.0);
  EXPECT_LE(fq, 1.0);
}

// ------------------------------------------------------ f-DPO clamping

TEST_F(SeedUnlearnTest, AlignReportsClampedLogRatios) {
  // A tiny bound makes the policy's first moves leave it: the log-ratios are
  // 0 at step 1 (policy = reference) and move by far more than 1e-3 nats.
  json c = from_teacher("align_clamp", 6);
  c["data"] = {{"train", (dir_ / "prefs.jsonl").string()}};
  c["objective"] = {{"divergence", "forward_kl"}, {"max_log_ratio", 1e-3}};
  c["lr"] = 3e-3;
  c["log_every"] = 1;
  const fs::path metrics = dir_ / "align_clamp_metrics.jsonl";
  const int fd = ::open(metrics.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::ostringstream console;
  RunEnv env;
  env.metrics_fd = fd;
  env.console = &console;
  auto r = run("align", c, env);
  ::close(fd);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::ifstream m(metrics);
  std::string line;
  double max_frac = 0;
  int with_metric = 0;
  while (std::getline(m, line)) {
    const json j = json::parse(line);
    if (!j.contains("metrics")) continue;
    ASSERT_TRUE(j["metrics"].contains("clamped_frac")) << line;
    ++with_metric;
    if (j["step"] == 1) {
      EXPECT_EQ(j["metrics"]["clamped_frac"], 0.0);  // Delta = 0 exactly
    }
    max_frac = std::max(max_frac, j["metrics"]["clamped_frac"].get<double>());
    EXPECT_TRUE(j["metrics"]["loss"].is_number()) << line;
  }
  EXPECT_EQ(with_metric, 6);
  EXPECT_GT(max_frac, 0.0);
  const std::string out = console.str();
  const auto first = out.find("warning: step");
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.find("forward_kl score clamped"), std::string::npos) << out;
  EXPECT_EQ(out.find("warning: step", first + 1), std::string::npos) << "warned more than once:\n" << out;

  // Reverse KL never clamps, whatever the bound.
  c["out_dir"] = (dir_ / "align_noclamp").string();
  c["objective"] = {{"divergence", "reverse_kl"}, {"max_log_ratio", 1e-3}};
  auto rk = run("align", c);
  ASSERT_TRUE(rk.ok()) << rk.status().to_string();
  EXPECT_EQ(rk->last_metrics["clamped_frac"], 0.0);

  c["objective"] = {{"divergence", "alpha"}, {"max_log_ratio", 81}};
  auto bad = run("align", c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("config.json: /objective/max_log_ratio: expected a number in (0, 80]"),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
