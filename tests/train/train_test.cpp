// Training recipes end to end on tiny models: loss goes down, checkpoints
// chain to their parents, transcripts are byte-identical across runs, the
// metric protocol emits parseable JSON lines, DPO/NPO start at their
// reference values, and config errors name the file and field.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "assay/datagen.h"
#include "assay/engine.h"
#include "assay/train.h"
#include "train_fixture.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using assay::train::RunEnv;
using assay::train::run_recipe_text;

using assay::testing::slurp;

void write_lines(const fs::path& p, const std::vector<std::string>& lines) {
  ASSERT_TRUE(assay::data::write_lines(p.string(), lines).ok());
}

class TrainTest : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string teacher_;  // a briefly pretrained checkpoint shared by the tests

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("assay_train_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::vector<std::string> lines;
    for (const auto& p : assay::data::generate_gsm8k({48, 1, 1})) lines.push_back(assay::data::to_jsonl(p));
    write_lines(dir_ / "gsm.jsonl", lines);
    lines.clear();
    for (const auto& p : assay::data::generate_prefs({24, 1, 2})) lines.push_back(assay::data::to_jsonl(p));
    write_lines(dir_ / "prefs.jsonl", lines);
    assay::testing::write_unlearn_splits(dir_, assay::testing::small_unlearn_options());
    auto r = run("pretrain", base_config("teacher", 12, 3e-3));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    teacher_ = r->checkpoints.back();
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // A tiny random-init LM config on the word problems.
  static json base_config(const std::string& out, int steps, double lr = 2e-3) {
    return json{{"out_dir", (dir_ / out).string()},
                {"seed", 3},
                {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 96}}},
                {"data", {{"train", (dir_ / "gsm.jsonl").string()}}},
                {"batch_size", 4},
                {"seq_len", 96},
                {"steps", steps},
                {"lr", lr},
                {"warmup", 2},
                {"log_every", 4}};
  }
  static json init_config(const std::string& out, int steps, double lr = 1e-3) {
    return json{{"out_dir", (dir_ / out).string()}, {"seed", 3},      {"init", teacher_},
                {"batch_size", 4},                   {"seq_len", 96}, {"steps", steps},
                {"lr", lr},                          {"log_every", 2}};
  }
  static assay::Result<assay::train::RunSummary> run(const std::string& recipe, const json& cfg,
                                                     RunEnv env = {}) {
    return run_recipe_text(recipe, cfg.dump(), "config.json", env);
  }
};

fs::path TrainTest::dir_;
std::string TrainTest::teacher_;

TEST_F(TrainTest, PretrainWritesCheckpointsThatChain) {
  json cfg = base_config("pre", 6);
  cfg["checkpoint_every"] = 3;
  auto r = run("pretrain", cfg);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->checkpoints.size(), 2u);
  EXPECT_EQ(fs::path(r->checkpoints[0]).filename(), "ckpt-000003");
  EXPECT_EQ(fs::path(r->checkpoints[1]).filename(), "final");
  for (const auto& c : r->checkpoints) {
    EXPECT_TRUE(fs::exists(fs::path(c) / "model.safetensors")) << c;
    EXPECT_TRUE(fs::exists(fs::path(c) / "config.json")) << c;
  }
  // Each checkpoint names its parent: ckpt-000003 the random init (none),
  // final/ the hash of ckpt-000003.
  const json mid = json::parse(slurp(fs::path(r->checkpoints[0]) / "config.json"));
  const json fin = json::parse(slurp(fs::path(r->checkpoints[1]) / "config.json"));
  auto mid_hash = assay::engine::checkpoint_hash(r->checkpoints[0]);
  ASSERT_TRUE(mid_hash.ok());
  EXPECT_EQ(mid["assay"]["parent"], "");
  EXPECT_EQ(fin["assay"]["parent"], *mid_hash);
  EXPECT_EQ(fin["assay"]["step"], 6);
  EXPECT_EQ(fin["assay"]["extra"]["recipe"], "pretrain");
  EXPECT_EQ(*assay::engine::checkpoint_hash(r->checkpoints[1]), r->final_hash);
  EXPECT_TRUE(fs::exists(fs::path(r->output_dir) / "transcript.jsonl"));
  EXPECT_TRUE(fs::exists(fs::path(r->output_dir) / "train_config.json"));
}

TEST_F(TrainTest, FineTuneNamesInitAsParentAndOverridesApply) {
  json cfg = init_config("ft", 2);
  cfg["data"] = {{"train", (dir_ / "gsm.jsonl").string()}};
  auto r = run_recipe_text("sft", cfg.dump(), "config.json", {}, {"lr=0.0005", "data.train=[\"" +
                           (dir_ / "gsm.jsonl").string() + "\",\"" + (dir_ / "forget.jsonl").string() + "\"]"});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const json fin = json::parse(slurp(fs::path(r->checkpoints.back()) / "config.json"));
  EXPECT_EQ(fin["assay"]["parent"], *assay::engine::checkpoint_hash(teacher_));
  const json eff = json::parse(slurp(fs::path(r->output_dir) / "train_config.json"));
  EXPECT_EQ(eff["lr"], 0.0005);
  EXPECT_EQ(eff["data"]["train"].size(), 2u);
  auto bad = run_recipe_text("sft", cfg.dump(), "config.json", {}, {"objective.typo=1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("config.json: /objective: unknown field"), std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(run_recipe_text("sft", cfg.dump(), "config.json", {}, {"novalue"}).ok());
}

TEST_F(TrainTest, SftLossDecreasesAndMasksPrompt) {
  auto r = run("sft", base_config("sft", 30, 3e-3));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->steps, 30);
  // From ~ln(257) = 5.55 at init a byte model learns the answer format fast.
  EXPECT_GT(r->first_loss, 4.5);
  EXPECT_LT(r->last_loss, r->first_loss - 1.0) << r->first_loss << " -> " << r->last_loss;
  // Transcript: one line per example, step 1..30 with 4 examples each, ids from the data.
  std::ifstream t(fs::path(r->output_dir) / "transcript.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(t, line)) {
    const json j = json::parse(line);
    EXPECT_EQ(j["order"], n);
    EXPECT_EQ(j["step"], n / 4 + 1);
    EXPECT_EQ(j["example_id"].get<std::string>().rfind("gsm-1-", 0), 0u);
    ++n;
  }
  EXPECT_EQ(n, 120);
}

TEST_F(TrainTest, RunsAreBitForBitDeterministic) {
  auto a = run("sft", base_config("det_a", 5));
  auto b = run("sft", base_config("det_b", 5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(slurp(dir_ / "det_a" / "transcript.jsonl"), slurp(dir_ / "det_b" / "transcript.jsonl"));
  EXPECT_EQ(slurp(dir_ / "det_a" / "final" / "model.safetensors"),
            slurp(dir_ / "det_b" / "final" / "model.safetensors"));
  EXPECT_EQ(a->last_loss, b->last_loss);
  // A different seed changes the data order.
  json other = base_config("det_c", 5);
  other["seed"] = 4;
  ASSERT_TRUE(run("sft", other).ok());
  EXPECT_NE(slurp(dir_ / "det_a" / "transcript.jsonl"), slurp(dir_ / "det_c" / "transcript.jsonl"));
}

TEST_F(TrainTest, MetricLinesOnDescriptorParse) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string received;
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) received.append(buf, static_cast<size_t>(n));
  });
  RunEnv env;
  env.metrics_fd = fds[1];
  json cfg = base_config("metrics", 8);
  cfg["checkpoint_every"] = 4;
  auto r = run("sft", cfg, env);
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::istringstream in(received);
  std::string line;
  int metric_lines = 0, ckpt_lines = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);  // throws (fails the test) on a malformed line
    if (j.contains("checkpoint")) {
      ++ckpt_lines;
      EXPECT_TRUE(fs::exists(j["checkpoint"].get<std::string>()));
      EXPECT_TRUE(j["step"].is_number_integer());
    } else {
      ++metric_lines;
      for (const char* k : {"loss", "lr", "grad_norm", "tokens_per_s"})
        EXPECT_TRUE(j["metrics"][k].is_number()) << k << " in " << line;
    }
  }
  EXPECT_EQ(metric_lines, 3);  // steps 1, 4, 8
  EXPECT_EQ(ckpt_lines, 2);    // ckpt-000004 and final
}

TEST_F(TrainTest, DistillReducesKlToTeacher) {
  for (const char* type : {"fkl", "jsd", "sinkhorn"}) {
    json cfg = base_config(std::string("distill_") + type, 12, 3e-3);
    cfg["teacher"] = teacher_;
    cfg["objective"] = {{"type", type}};
    if (std::string(type) == "sinkhorn") {
      cfg["objective"]["weight"] = 0.5;
      cfg["ce_weight"] = 1.0;
    }
    cfg["log_every"] = 11;
    auto r = run("distill", cfg);
    ASSERT_TRUE(r.ok()) << type << ": " << r.status().to_string();
    EXPECT_TRUE(r->last_metrics.count("kl_to_teacher")) << type;
    EXPECT_LT(r->last_loss, r->first_loss) << type;
  }
}

TEST_F(TrainTest, AlignStartsAtLn2AndReportsRewards) {
  json cfg = init_config("align", 4);
  cfg["data"] = {{"train", (dir_ / "prefs.jsonl").string()}};
  cfg["objective"] = {{"loss", "sigmoid"}, {"beta", 0.1}};
  auto r = run("align", cfg);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_NEAR(r->first_loss, std::log(2.0), 1e-9);  // policy == reference at step 1
  for (const char* k : {"reward_chosen", "reward_rejected", "margin", "accuracy", "chosen_logratio"})
    EXPECT_TRUE(r->last_metrics.count(k)) << k;
  cfg["out_dir"] = (dir_ / "align_ipo").string();
  cfg["objective"] = {{"loss", "ipo"}, {"beta", 0.1}, {"divergence", "reverse_kl"}};
  auto ipo = run("align", cfg);
  ASSERT_TRUE(ipo.ok()) << ipo.status().to_string();
  EXPECT_NEAR(ipo->first_loss, 25.0, 1e-6);
}

TEST_F(TrainTest, UnlearnNpoStartsAtReferenceValueAndRaisesForgetLoss) {
  json cfg = init_config("npo", 6, 3e-3);
  cfg["data"] = {{"forget", (dir_ / "forget.jsonl").string()},
                 {"retain", (dir_ / "retain.jsonl").string()},
                 {"holdout", (dir_ / "holdout.jsonl").string()}};
  cfg["method"] = "npo";
  cfg["objective"] = {{"beta", 0.1}, {"retain_weight", 0.0}};
  auto r = run("unlearn", cfg);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_NEAR(r->first_loss, 20 * std::log(2.0), 1e-6);  // (2/beta) ln 2
  EXPECT_TRUE(r->last_metrics.count("holdout_loss"));
  EXPECT_TRUE(r->last_metrics.count("forget_loss"));
  // Gradient ascent: loss = -NLL(forget), so a falling loss is a rising forget NLL.
  json ga = cfg;
  ga["method"] = "ga";
  ga["out_dir"] = (dir_ / "un_ga").string();
  ga["objective"] = json::object();
  auto g = run("unlearn", ga);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_LT(g->first_loss, 0.0);
  EXPECT_LT(g->last_loss, g->first_loss - 0.1);
  EXPECT_NEAR(g->last_metrics["forget_loss"], -g->last_loss, 1e-9);
  // GA ignores the retain split: a retain weight given with it is an error,
  // not silently dropped.
  ga["objective"] = {{"retain_weight", 1.0}};
  auto g2 = run("unlearn", ga);
  ASSERT_FALSE(g2.ok());
  EXPECT_NE(g2.status().message().find("/objective/retain_weight: method ga trains on the forget "
                                       "split alone"),
            std::string::npos)
      << g2.status().message();
  for (const char* method : {"graddiff", "simnpo", "kl"}) {
    json c = cfg;
    c["method"] = method;
    c["out_dir"] = (dir_ / (std::string("un_") + method)).string();
    c["objective"] = {{"retain_weight", 1.0}};
    auto m = run("unlearn", c);
    ASSERT_TRUE(m.ok()) << method << ": " << m.status().to_string();
    EXPECT_TRUE(m->last_metrics.count("retain_loss")) << method;
    const std::string t = slurp(fs::path(m->output_dir) / "transcript.jsonl");
    EXPECT_NE(t.find("\"split\":\"forget\""), std::string::npos);
    EXPECT_NE(t.find("\"split\":\"retain\""), std::string::npos);
  }
}

TEST_F(TrainTest, ConfigErrorsNameFileAndField) {
  auto expect_error = [&](const std::string& recipe, const json& cfg, const std::string& msg) {
    auto r = run(recipe, cfg);
    ASSERT_FALSE(r.ok()) << cfg.dump();
    EXPECT_NE(r.status().message().find(msg), std::string::npos) << r.status().message();
  };
  json c = base_config("bad", 2);
  c["lr"] = -1;
  expect_error("sft", c, "config.json: /lr: expected a number > 0, got -1");
  c = base_config("bad", 2);
  c["learning_rate"] = 0.1;
  expect_error("sft", c, "config.json: /learning_rate: unknown field");
  c = base_config("bad", 2);
  c["model"]["n_head"] = 5;
  expect_error("sft", c, "config.json: /model/n_head: must divide n_embd (32), got 5");
  c = base_config("bad", 2);
  c["seq_len"] = 500;
  expect_error("sft", c, "config.json: /seq_len: must be <= the model's n_positions (96), got 500");
  c = base_config("bad", 2);
  c.erase("data");
  expect_error("pretrain", c, "config.json: /data: required field is missing");
  expect_error("align", base_config("bad", 2), "config.json: /init: required field is missing");
  json d = base_config("bad", 2);
  d["teacher"] = teacher_;
  d["objective"] = {{"type", "kl"}};
  expect_error("distill", d, "config.json: /objective/type: expected one of fkl, rkl, jsd, tv, skl, srkl, sinkhorn, got \"kl\"");
  c = base_config("bad", 2);
  c["data"]["train"] = (dir_ / "missing.jsonl").string();
  expect_error("sft", c, "missing.jsonl: cannot open data file");
  expect_error("finetune", c, "recipe: expected one of");
}

// The CLI plumbing: ASSAY_METRICS_FD and ASSAY_OUTPUT_DIR from the environment,
// --set overrides, and errors on stderr with exit code 1.
TEST_F(TrainTest, CliUsesEnvironmentAndReportsErrors) {
  if (!fs::exists(ASSAY_EXE)) GTEST_SKIP() << "assay binary not built at " << ASSAY_EXE;
  const fs::path cfg = dir_ / "cli.json";
  write_lines(cfg, {base_config("cli_unused", 2).dump()});
  const fs::path out = dir_ / "cli_out", metrics = dir_ / "cli_metrics.jsonl", err = dir_ / "cli_err.txt";
  const std::string exe = ASSAY_EXE;
  const std::string ok_cmd = "ASSAY_OUTPUT_DIR=" + out.string() + " ASSAY_METRICS_FD=3 " + exe +
                             " train sft --config " + cfg.string() + " --set log_every=1 3>" +
                             metrics.string() + " >/dev/null";
  ASSERT_EQ(std::system(ok_cmd.c_str()), 0) << ok_cmd;
  EXPECT_TRUE(fs::exists(out / "final" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir_ / "cli_unused"));
  std::ifstream m(metrics);
  std::string line;
  int lines = 0;
  while (std::getline(m, line)) {
    EXPECT_TRUE(json::parse(line).is_object()) << line;  // throws on a malformed line
    ++lines;
  }
  EXPECT_EQ(lines, 3);  // steps 1 and 2, then the final checkpoint
  const std::string bad_cmd = exe + " train sft --config " + cfg.string() + " --set lr=-1 2>" + err.string();
  const int rc = std::system(bad_cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc;
  EXPECT_NE(slurp(err).find("assay train: cli.json: /lr: expected a number > 0, got -1"), std::string::npos)
      << slurp(err);
}

}  // namespace
