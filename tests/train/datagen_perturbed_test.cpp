// Paraphrased and perturbed answers for the unlearning truth ratio: same facts
// and splits as generate_unlearn, one wording shared by the paraphrase and the
// false answers, distinct false values, deterministic, and the CLI files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "assay/datagen.h"

namespace {

namespace fs = std::filesystem;
using namespace assay::data;

// The text before and after the first position where a and b differ.
std::pair<std::string, std::string> frame(const std::string& a, const std::string& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::size_t j = 0;
  while (j < a.size() - i && j < b.size() - i && a[a.size() - 1 - j] == b[b.size() - 1 - j]) ++j;
  return {a.substr(0, i), a.substr(a.size() - j)};
}

TEST(DatagenPerturbed, MatchesTheSplitsAndPerturbsOnlyTheValue) {
  UnlearnOptions o;
  o.n_authors = 12;
  o.forget_frac = 0.25;
  o.holdout_frac = 0.25;
  o.seed = 5;
  const UnlearnSplits s = generate_unlearn(o);
  const PerturbedSplits p = generate_unlearn_perturbed(o);
  auto check = [&](const std::vector<FactQA>& facts, const std::vector<PerturbedQA>& pert, const char* split) {
    ASSERT_EQ(facts.size(), pert.size()) << split;
    for (std::size_t i = 0; i < facts.size(); ++i) {
      const PerturbedQA& q = pert[i];
      EXPECT_EQ(q.id, facts[i].id);
      EXPECT_EQ(q.question, facts[i].question);
      EXPECT_NE(q.paraphrased_answer, facts[i].answer) << q.id;  // reworded
      EXPECT_NE(q.paraphrased_answer.find(facts[i].author), std::string::npos) << q.id;
      ASSERT_EQ(static_cast<int>(q.perturbed_answers.size()), o.n_perturbed) << q.id;
      std::set<std::string> distinct(q.perturbed_answers.begin(), q.perturbed_answers.end());
      EXPECT_EQ(distinct.size(), q.perturbed_answers.size()) << q.id;
      EXPECT_FALSE(distinct.count(q.paraphrased_answer)) << q.id;
      for (const auto& x : q.perturbed_answers) {
        // Same wording, another value: prefix and suffix around the value
        // come from the paraphrase's template.
        const auto [pre, post] = frame(q.paraphrased_answer, x);
        EXPECT_NE(pre.find(facts[i].author), std::string::npos) << q.id << ": " << x;
        EXPECT_EQ(post.back(), '.') << q.id << ": " << x;
      }
    }
  };
  check(s.forget, p.forget, "forget");
  check(s.retain, p.retain, "retain");
  check(s.holdout, p.holdout, "holdout");
  // The true value appears in the paraphrase: the year fact of the first author.
  const std::string year = s.forget[0].answer.substr(s.forget[0].answer.size() - 5, 4);
  EXPECT_NE(p.forget[0].paraphrased_answer.find(year), std::string::npos) << p.forget[0].paraphrased_answer;
  for (const auto& x : p.forget[0].perturbed_answers) EXPECT_EQ(x.find(year), std::string::npos) << x;
  // Deterministic, and the splits do not depend on the perturbation stream.
  EXPECT_EQ(to_jsonl(generate_unlearn_perturbed(o).forget[3]), to_jsonl(p.forget[3]));
  o.n_perturbed = 2;
  EXPECT_EQ(to_jsonl(generate_unlearn(o).retain[4]), to_jsonl(s.retain[4]));
  EXPECT_EQ(generate_unlearn_perturbed(o).forget[0].perturbed_answers.size(), 2u);
  o.n_perturbed = kMaxPerturbed + 1;
  EXPECT_FALSE(validate(o).ok());
}

TEST(DatagenPerturbed, JsonlIsTheEvalLayout) {
  const PerturbedQA q{"forget-0-1", "Q?", "P.", {"A.", "B."}};
  const auto j = nlohmann::json::parse(to_jsonl(q));
  EXPECT_EQ(j["question"], "Q?");
  EXPECT_EQ(j["paraphrased_answer"], "P.");
  EXPECT_EQ(j["perturbed_answers"], nlohmann::json::array({"A.", "B."}));
  EXPECT_EQ(j["id"], "forget-0-1");
}

TEST(DatagenPerturbed, CliWritesPerturbedFiles) {
  if (!fs::exists(ASSAY_EXE)) GTEST_SKIP() << "assay binary not built at " << ASSAY_EXE;
  const fs::path dir = fs::temp_directory_path() / ("assay_datagen_pert_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string cmd = std::string(ASSAY_EXE) + " data unlearn --authors 10 --perturbed 3 --out-dir " +
                          (dir / "u").string() + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  for (const char* name : {"perturbed.jsonl", "retain_perturbed.jsonl", "holdout_perturbed.jsonl"}) {
    std::ifstream f(dir / "u" / name);
    ASSERT_TRUE(f) << name;
    std::string line;
    int n = 0;
    while (std::getline(f, line)) {
      const auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["perturbed_answers"].size(), 3u) << line;
      ++n;
    }
    EXPECT_GT(n, 0) << name;
  }
  // One perturbed line per forget fact, in the same order.
  std::ifstream fo(dir / "u" / "forget.jsonl"), pe(dir / "u" / "perturbed.jsonl");
  std::string a, b;
  while (std::getline(fo, a)) {
    ASSERT_TRUE(static_cast<bool>(std::getline(pe, b)));
    EXPECT_EQ(nlohmann::json::parse(a)["question"], nlohmann::json::parse(b)["question"]);
  }
  EXPECT_FALSE(static_cast<bool>(std::getline(pe, b)));
  fs::remove_all(dir);
}

}  // namespace
