// On-policy preference data and the preference suite through the real
// binary: a tiny checkpoint that answers "#### 1" or "#### 2" about equally
// often is sampled by `assay data prefs --from-model --verifier gsm8k`; the
// pairs it writes are scored by `assay eval preference` into a database,
// where one query gives alignment and diversity side by side.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "assay/engine.h"
#include "support/run_cmd.h"
#include "tiny_models.h"

namespace assay::evals {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using assay::testing::run_cmd;
using namespace assay::evals::testing;

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

void save(const engine::GPT& m, const fs::path& dir) {
  auto tok = engine::make_byte_tokenizer();
  tok->set_add_bos_token(true);  // train_in_order trains on [bos] + text
  auto h = engine::save_checkpoint(dir.string(), m, *tok, {});
  ASSERT_TRUE(h.ok()) << h.status().message();
}

TEST(PrefsCli, OnPolicyPairsThenPreferenceSuiteInOneQuery) {
  engine::set_num_threads(1);
  const fs::path dir = fs::temp_directory_path() / ("prefs-cli-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string prompt = "Question: pick a number\nAnswer:";
  const std::vector<std::string> texts = {prompt + " #### 1 done\nQuestion:", prompt + " #### 2 done\nQuestion:"};
  const auto cfg = tiny_config(64, 32, 1);
  auto tok = engine::make_byte_tokenizer();
  engine::GPT ref = random_model(cfg, 1);
  engine::GPT pol = ref.clone(engine::Mode::kTrain);
  train_in_order(pol, *tok, texts, {0, 1}, 150, 3e-3f);
  save(pol, dir / "policy");
  save(ref, dir / "reference");
  {
    std::ofstream p(dir / "prompts.jsonl");
    for (const char* a : {"#### 1", "#### 2", "#### 7"})
      p << json{{"question", "pick a number"}, {"answer", a}}.dump() << "\n";
  }
  const std::string assay = ASSAY_EXE;
  const fs::path pairs = dir / "pairs.jsonl";
  auto data = run_cmd(assay + " data prefs --from-model " + (dir / "policy").string() +
                      " --verifier gsm8k --samples-per-prompt 8 --prompts " + (dir / "prompts.jsonl").string() +
                      " --gen-kwargs max_gen_toks=24 --seed 3 --out " + pairs.string());
  ASSERT_EQ(data.code, 0) << data.out;
  EXPECT_NE(data.out.find("3 prompts, 24 samples"), std::string::npos) << data.out;
  EXPECT_NE(data.out.find("2 prompts with a correct and an incorrect sample"), std::string::npos) << data.out;
  EXPECT_NE(data.out.find("1 all wrong"), std::string::npos) << data.out;
  const auto lines = read_jsonl(pairs);
  ASSERT_EQ(lines.size(), 2u) << data.out;
  const char* right[] = {"#### 1 ", "#### 2 "};
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lines[i]["prompt"], prompt);
    EXPECT_NE(lines[i]["chosen"].get<std::string>().find(right[i]), std::string::npos) << lines[i].dump();
    EXPECT_EQ(lines[i]["rejected"].get<std::string>().find(right[i]), std::string::npos) << lines[i].dump();
  }

  const fs::path db = dir / "results.db";
  const std::string eval = assay + " eval preference --model-path " + (dir / "policy").string() +
                           " --reference " + (dir / "reference").string() + " --data " + pairs.string() +
                           " --gen-kwargs max_gen_toks=24,seed=1 --db " + db.string() +
                           " --output " + (dir / "results.json").string();
  auto ev = run_cmd(eval);
  ASSERT_EQ(ev.code, 0) << ev.out;
  auto q = run_cmd(assay + " query --json --db " + db.string() +
                   " \"SELECT metric, value, n FROM eval_results WHERE suite = 'preference' AND metric IN "
                   "('reward_accuracy', 'chosen_logp_decreased', 'self_bleu', 'distinct_2', "
                   "'predictive_entropy') ORDER BY metric\"");
  ASSERT_EQ(q.code, 0) << q.out;
  const json rows = json::parse(q.out.substr(q.out.find('[')));
  ASSERT_EQ(rows.size(), 5u) << q.out;
  for (const auto& r : rows) {
    if (r["metric"] == "reward_accuracy") {
      EXPECT_EQ(r["n"], 2);
      // Both chosen answers are the policy's own; the random reference has no preference.
      EXPECT_GE(r["value"].get<double>(), 0.0);
    }
    if (r["metric"] == "self_bleu") EXPECT_EQ(r["n"], 1);  // both pairs share one prompt
  }
  const json doc = json::parse(std::ifstream(dir / "results.json"));
  EXPECT_TRUE(doc["results"]["preference"].contains("reward_accuracy,none")) << doc.dump();
  auto again = run_cmd(eval);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("cached"), std::string::npos) << again.out;

  // Usage errors.
  auto no_ref = run_cmd(assay + " eval preference --model-path " + (dir / "policy").string() + " --data " + pairs.string());
  EXPECT_EQ(no_ref.code, 2) << no_ref.out;
  EXPECT_NE(no_ref.out.find("--reference"), std::string::npos) << no_ref.out;
  auto bad = run_cmd(assay + " data prefs --from-model " + (dir / "policy").string() +
                     " --verifier math --out " + (dir / "x.jsonl").string());
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("--verifier"), std::string::npos) << bad.out;
  auto orphan = run_cmd(assay + " data prefs --samples-per-prompt 3 --out " + (dir / "x.jsonl").string());
  EXPECT_NE(orphan.code, 0) << orphan.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace assay::evals
