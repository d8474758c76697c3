// The scoring convention is the checkpoint's: `assay train` saves
// add_bos_token true (every recipe trains on [bos] + tokens), and every eval
// path then scores with BOS first. Checked end to end through the real
// binary: a model SFT-trained on a set scores that set, through the
// unlearning suite, within 5% of its last training loss.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "support/run_cmd.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using assay::testing::run_cmd;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in, nullptr, false);
}

// The loss of the last metric line of a metrics file (one JSON per line).
double last_loss(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::string line;
  double loss = -1;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("metrics") && j["metrics"].contains("loss"))
      loss = j["metrics"]["loss"].get<double>();
  }
  return loss;
}

TEST(BosConvention, SftModelScoresItsTrainingSetAsTrainingDid) {
  const assay::testing::TempDir tmp("bos-cli");
  const fs::path dir = tmp.path;
  const std::string assay = ASSAY_EXE;
  auto data = run_cmd(assay + " data unlearn --authors 4 --seed 4 --out-dir " + (dir / "data").string());
  ASSERT_EQ(data.code, 0) << data.out;
  const fs::path set = dir / "data" / "retain.jsonl";
  int n = 0;
  {
    std::ifstream in(set);
    std::string line;
    while (std::getline(in, line)) n += !line.empty();
  }
  ASSERT_GT(n, 4);
  // Full-batch SFT (loss about 1.9 nats), with a vanishing learning rate at the end
  // so that the last reported loss (before the last step) is the final model's.
  json cfg = {{"out_dir", (dir / "run").string()},
              {"seed", 1},
              {"threads", 1},
              {"model", {{"n_layer", 2}, {"n_head", 2}, {"n_embd", 48}, {"n_positions", 160}}},
              {"data", {{"train", set.string()}}},
              {"batch_size", n},
              {"seq_len", 160},
              {"steps", 40},
              {"lr", 1e-2},
              {"lr_min", 1e-5},
              {"warmup", 5},
              {"log_every", 1}};
  std::ofstream(dir / "sft.json") << cfg.dump(2);
  // The metric lines go to a file through ASSAY_METRICS_FD, as under a worker.
  const fs::path metrics = dir / "metrics.jsonl";
  auto train = run_cmd("ASSAY_METRICS_FD=3 " + assay + " train sft --config " +
                       (dir / "sft.json").string() + " 3>" + metrics.string());
  ASSERT_EQ(train.code, 0) << train.out;
  const double loss = last_loss(metrics);
  ASSERT_GT(loss, 0) << "no loss in " << metrics;
  const fs::path ck = dir / "run" / "final";
  json tok = read_json(ck / "tokenizer_config.json");
  EXPECT_EQ(tok.value("add_bos_token", false), true) << tok.dump();

  auto ev = run_cmd(assay + " eval unlearning --model-path " + ck.string() + " --forget " +
                    set.string() + " --retain " + set.string() + " --holdout " + set.string() +
                    " --output " + (dir / "res.json").string());
  ASSERT_EQ(ev.code, 0) << ev.out;
  json res = read_json(dir / "res.json");
  ASSERT_TRUE(res.is_object()) << ev.out;
  const json& r = res["results"]["unlearning"];
  ASSERT_TRUE(r.contains("nll,retain")) << r.dump();
  const double nll = r["nll,retain"].get<double>();
  // Training's loss also counts the EOS after each answer (near 0 once
  // learnt), so it sits slightly below the answer-only NLL.
  EXPECT_NEAR(nll, loss, 0.05 * loss) << "suite NLL " << nll << " vs last training loss " << loss;
}

// A sweep's eval hook (an eval run under the worker, reported as metrics)
// and `assay eval --db` on the same checkpoint store the same key: suite,
// versioned inputs, stderr and n. The direct eval is then served from the
// row the hook wrote.
TEST(EvalKeyEndToEnd, SweepHookEvalAndDirectEvalShareOneCacheRow) {
  const assay::testing::TempDir tmp("hook-cli");
  const fs::path dir = tmp.path;
  const std::string assay = ASSAY_EXE;
  ASSERT_EQ(run_cmd(assay + " data unlearn --authors 3 --seed 2 --out-dir " + (dir / "data").string()).code, 0);
  const std::string set = (dir / "data" / "retain.jsonl").string();
  json cfg = {{"out_dir", (dir / "run").string()}, {"seed", 1}, {"threads", 1},
              {"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 32}, {"n_positions", 128}}},
              {"data", {{"train", set}}}, {"batch_size", 4}, {"seq_len", 128}, {"steps", 5},
              {"lr", 1e-3}, {"log_every", 5}};
  std::ofstream(dir / "sft.json") << cfg.dump();
  json sweep = {{"name", "hooked"},
                {"command", assay + " train sft --config " + (dir / "sft.json").string()},
                {"evals", {{{"suite", "unlearning"},
                            {"on", "final"},
                            {"args", {{"forget", set}, {"retain", set}, {"holdout", set}}}}}}};
  std::ofstream(dir / "sweep.json") << sweep.dump();
  const std::string db = (dir / "r.db").string();
  auto local = run_cmd(assay + " local " + (dir / "sweep.json").string() + " --db " + db +
                       " --work-dir " + (dir / "work").string());
  ASSERT_EQ(local.code, 0) << local.out;
  auto rows = run_cmd(assay + " query --db " + db + " --csv \"SELECT suite_version, metric, filter, "
                      "stderr IS NOT NULL, n FROM eval_results WHERE metric = 'nll' ORDER BY filter\"");
  ASSERT_EQ(rows.code, 0) << rows.out;
  // One row per set, each with a versioned key ("1.x+<digest>"), a stderr and n.
  std::istringstream lines(rows.out);
  std::string line, version;
  int n_rows = 0;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    if (line.empty() || line == "\r") continue;
    ++n_rows;
    EXPECT_NE(line.find('+'), std::string::npos) << line;
    EXPECT_NE(line.find(",1,6"), std::string::npos) << "stderr and n carried: " << line;
    if (version.empty()) version = line.substr(0, line.find(','));
  }
  EXPECT_EQ(n_rows, 3) << rows.out;
  // The checkpoint the hook evaluated (under the worker's output directory).
  auto ck = run_cmd(assay + " query --db " + db + " --csv \"SELECT path FROM artifacts WHERE "
                    "kind = 'checkpoint' ORDER BY step DESC LIMIT 1\"");
  ASSERT_EQ(ck.code, 0) << ck.out;
  std::string ck_path = ck.out.substr(ck.out.find('\n') + 1);
  while (!ck_path.empty() && (ck_path.back() == '\n' || ck_path.back() == '\r')) ck_path.pop_back();
  auto direct = run_cmd(assay + " eval unlearning --model-path " + ck_path +
                        " --forget " + set + " --retain " + set + " --holdout " + set + " --db " + db);
  ASSERT_EQ(direct.code, 0) << direct.out;
  EXPECT_NE(direct.out.find("cached results"), std::string::npos) << direct.out;
  EXPECT_NE(direct.out.find(version), std::string::npos) << version << "\n" << direct.out;
}

}  // namespace
