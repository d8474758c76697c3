// `assay eval provenance` through the built binary: --window and
// --alternative (and the spec's options) reach the rows, are part of the
// cache key, and bad values are usage errors; --help documents them.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "../evalnative/tiny_models.h"
#include "assay/store.h"
#include "support/run_cmd.h"
#include "support/temp_dir.h"

namespace assay::evals {
namespace {

using json = nlohmann::json;
using assay::testing::CmdResult;

class ProvenanceCli : public ::testing::Test {
 protected:
  // runA/final trained on 24 texts in its transcript's order (two examples
  // per step, so positions tie), runR/final an independent random model.
  static void SetUpTestSuite() {
    dir_ = new assay::testing::TempDir("provenance-cli");
    engine::set_num_threads(1);
    auto tok = engine::make_byte_tokenizer();
    const auto cfg = testing::tiny_config(40, 32, 1);
    const auto texts = testing::word_texts(24, 5, 30, 4);
    std::ofstream data(dir_->file("data.jsonl"));
    for (size_t i = 0; i < texts.size(); ++i)
      data << json{{"id", "ex" + std::to_string(i)}, {"text", texts[i]}}.dump() << "\n";
    data.close();
    const auto order = testing::shuffled(texts.size(), 3);
    engine::GPT a = testing::random_model(cfg, 31), r = testing::random_model(cfg, 32);
    testing::train_in_order(a, *tok, texts, order, 1, 3e-3f);
    ASSERT_TRUE(engine::save_checkpoint(dir_->file("runA/final"), a, *tok, {}).ok());
    ASSERT_TRUE(engine::save_checkpoint(dir_->file("runR/final"), r, *tok, {}).ok());
    std::ofstream tr(dir_->file("runA/transcript.jsonl"));
    for (size_t k = 0; k < order.size(); ++k)
      tr << json{{"step", k / 2}, {"example_id", "ex" + std::to_string(order[k])}, {"order", k / 2}}.dump()
         << "\n";
    std::ofstream(dir_->file("runA/train_config.json")) << json{{"data", {{"train", "data.jsonl"}}}}.dump();
  }
  static void TearDownTestSuite() { delete dir_; }

  static CmdResult eval(const std::string& args) {
    return assay::testing::run_cmd(std::string(ASSAY_EXE) + " eval " + args + " --model-path " +
                                   dir_->file("runA/final") + " --reference " +
                                   dir_->file("runR/final") + " --permutations 300 --threads 1");
  }
  // metric -> (filter, value, n, suite_version) of the rows stored last.
  static std::map<std::string, std::tuple<std::string, double, int64_t, std::string>> rows(
      const std::string& db, const std::string& where) {
    auto q = store::query_readonly(db, "SELECT metric, filter, value, n, suite_version FROM eval_results "
                                       "WHERE suite = 'provenance' AND " + where);
    EXPECT_TRUE(q.ok()) << q.status().message();
    std::map<std::string, std::tuple<std::string, double, int64_t, std::string>> out;
    if (!q.ok()) return out;
    for (const auto& row : q->rows)
      out[std::get<std::string>(row[0])] = {std::get<std::string>(row[1]), std::get<double>(row[2]),
                                            std::get<int64_t>(row[3]), std::get<std::string>(row[4])};
    return out;
  }
  static assay::testing::TempDir* dir_;
};
assay::testing::TempDir* ProvenanceCli::dir_ = nullptr;

TEST_F(ProvenanceCli, WindowAndAlternativeReachTheRowsAndTheCacheKey) {
  const std::string db = dir_->file("w.db"), out = dir_->file("w.json");
  CmdResult r = eval("provenance --window 10 --alternative two-sided --db " + db + " --output " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  std::printf("%s", r.out.c_str());
  EXPECT_NE(r.out.find("window: the last 10 examples"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("alternative two-sided"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("floor 0.00332"), std::string::npos) << r.out;  // 1/301
  auto got = rows(db, "filter != 'x'");
  ASSERT_EQ(got.size(), 7u) << r.out;  // n = 10: p_exact too
  for (const auto& [metric, row] : got) {
    EXPECT_EQ(std::get<0>(row), metric == "spearman_rho" ? "none" : "two-sided") << metric;
    EXPECT_EQ(std::get<2>(row), 10) << metric;
    EXPECT_EQ(std::get<3>(row).substr(0, 4), "1.1+") << metric;
  }
  EXPECT_DOUBLE_EQ(std::get<1>(got["p_perm_floor"]), 1.0 / 301);
  EXPECT_DOUBLE_EQ(std::get<1>(got["p_value"]), std::get<1>(got["p_exact"]));
  std::ifstream f(out);
  const json doc = json::parse(f);
  EXPECT_TRUE(doc["results"]["provenance"].contains("p_perm_floor,two-sided")) << doc["results"].dump();
  const json& opts = doc["configs"]["provenance"]["options"];
  EXPECT_EQ(opts["window"], 10) << doc["configs"].dump();
  EXPECT_EQ(opts["alternative"], "two-sided");

  // The same eval is served from the database; another window or
  // alternative is another eval.
  EXPECT_NE(eval("provenance --window 10 --alternative two-sided --db " + db).out.find("cached"),
            std::string::npos);
  for (const char* other : {"--window 12 --alternative two-sided", "--window 10",
                                   "--alternative two-sided"}) {
    CmdResult o = eval(std::string("provenance ") + other + " --db " + db);
    ASSERT_EQ(o.code, 0) << o.out;
    EXPECT_EQ(o.out.find("cached"), std::string::npos) << other << "\n" << o.out;
  }
  // The default window is the whole transcript (n = 24: no p_exact); the
  // default alternative is less.
  EXPECT_EQ(rows(db, "filter = 'two-sided' AND n = 24").size(), 5u);  // p_t .. derived
  EXPECT_EQ(rows(db, "filter = 'less' AND n = 10").size(), 6u);       // with p_exact
}

TEST_F(ProvenanceCli, SpecOptionsAndUsageErrors) {
  // A copy of the suite with its own options.
  const std::string spec = dir_->file("prov-greater.json");
  std::ofstream(spec) << json{{"name", "provenance"},
                              {"version", "1.1"},
                              {"task", "provenance"},
                              {"options", {{"permutations", 100}, {"window", 12}, {"alternative", "greater"}}}}
                             .dump();
  const std::string db = dir_->file("s.db");
  CmdResult r = eval(spec + " --db " + db);
  ASSERT_EQ(r.code, 0) << r.out;
  auto got = rows(db, "metric = 'p_t'");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<0>(got["p_t"]), "greater");
  EXPECT_EQ(std::get<2>(got["p_t"]), 12);
  // Flags override the spec.
  CmdResult o = eval(spec + " --window 0 --alternative less --db " + db);
  ASSERT_EQ(o.code, 0) << o.out;
  EXPECT_EQ(rows(db, "metric = 'p_t' AND filter = 'less' AND n = 24").size(), 1u) << o.out;

  CmdResult w = eval("provenance --window 2");
  EXPECT_EQ(w.code, 2) << w.out;
  EXPECT_NE(w.out.find("needs at least 3 examples"), std::string::npos) << w.out;
  CmdResult a = eval("provenance --alternative sideways");
  EXPECT_NE(a.code, 0) << a.out;
  EXPECT_NE(a.out.find("--alternative"), std::string::npos) << a.out;
  std::ofstream(dir_->file("bad.json")) << json{{"name", "provenance"}, {"version", "1.1"},
                                                 {"task", "provenance"},
                                                 {"options", {{"alternative", "lower"}}}}.dump();
  CmdResult b = eval(dir_->file("bad.json"));
  EXPECT_EQ(b.code, 2) << b.out;
  EXPECT_NE(b.out.find("\"lower\""), std::string::npos) << b.out;

  CmdResult h = assay::testing::run_cmd(std::string(ASSAY_EXE) + " eval --help");
  for (const char* s : {"--window", "--alternative", "p_perm_floor", "transcript_from"})
    EXPECT_NE(h.out.find(s), std::string::npos) << s;
}

}  // namespace
}  // namespace assay::evals
